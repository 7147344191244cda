#!/usr/bin/env bash
# One-shot set-up of a development/test environment on a fresh Debian/Ubuntu machine:
# system libraries for napari's Qt/OpenGL under a virtual display, a virtual environment
# in .venv, a CPU build of torch, and napari-pinned in editable mode with its test extras.
#
# Environment knobs:
#   PINNED_TORCH  torch requirement installed before the package (default torch==2.13.0;
#                 GPU users set it to the build for their hardware, or install torch first).
#   PINNED_VENV   where the virtual environment lives (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${PINNED_VENV:-.venv}
torch_req=${PINNED_TORCH:-torch==2.13.0}

# napari draws with OpenGL; tests run on Xvfb with Mesa, and Qt's xcb plugin needs these.
apt_packages=(xvfb xauth libgl1 libegl1 libglx-mesa0 libgl1-mesa-dri libxkbcommon-x11-0
  libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0
  libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1)
if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${apt_packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    echo "setup: installing system packages: ${missing[*]}"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first, so the package's torch range is already satisfied and pip pulls no CUDA build.
"$py" -c "import torch" >/dev/null 2>&1 || "$py" -m pip install -q "$torch_req"
"$py" -m pip install -q -e ".[testing]"
echo "setup: done ($("$py" -c 'import torch, napari_pinned; print("torch", torch.__version__, "| napari-pinned", napari_pinned.__version__)'))"
