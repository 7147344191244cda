#!/usr/bin/env bash
# One-shot set-up of a development/test environment on a fresh Debian/Ubuntu machine:
# system libraries for napari's Qt/OpenGL under a virtual display, a virtual environment
# in .venv, a CPU build of torch, and napari-pinned in editable mode with its test extras.
#
# Environment knobs:
#   PINNED_TORCH  torch requirement installed before the package (default torch==2.13.0;
#                 GPU users set it to the build for their hardware, or install torch first).
#   PINNED_VENV   where the virtual environment lives (default .venv).
#   QT_API        qtpy's binding choice; with QT_API=pyqt5 a PyQt5 already in the venv is
#                 kept (otherwise it is removed, see below: the project runs on PyQt6).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${PINNED_VENV:-.venv}
torch_req=${PINNED_TORCH:-torch==2.13.0}

# napari draws with OpenGL; tests run on Xvfb with Mesa, and PyQt6's Qt (its xcb platform
# plugin, and QtCore's GLib event loop) needs these besides what they pull in themselves.
apt_packages=(xvfb xauth libgl1 libegl1 libglx-mesa0 libgl1-mesa-dri libglib2.0-0
  libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1)
if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${apt_packages[@]}"; do
    # Ubuntu 24.04 renamed some libraries with a t64 suffix (libglib2.0-0t64); apt-get
    # still installs them by the old name.
    dpkg -s "$p" >/dev/null 2>&1 || dpkg -s "${p}t64" >/dev/null 2>&1 || missing+=("$p")
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
# The test extras bring PyQt6. qtpy (and so napari) takes the first binding it finds in the
# order PyQt5, PySide2, PyQt6, PySide6 unless QT_API says otherwise, so a PyQt5 left in an
# older .venv would still be used, with napari's "PyQt5 backend is deprecated" notice on
# every start. Remove it, so that this environment runs on PyQt6 like CI's fresh one
# (unless QT_API=pyqt5 asks for PyQt5 on purpose).
leftover=()
if [ "${QT_API:-}" != "pyqt5" ]; then
  for p in PyQt5 PyQt5-Qt5 PyQt5-sip PyQt5-stubs; do
    if "$py" -m pip show -q "$p" >/dev/null 2>&1; then leftover+=("$p"); fi
  done
fi
if [ ${#leftover[@]} -gt 0 ]; then
  echo "setup: removing ${leftover[*]} (this environment uses PyQt6)"
  "$py" -m pip uninstall -q -y "${leftover[@]}"
fi
echo "setup: done ($("$py" -c 'import torch, napari_pinned, qtpy; print("torch", torch.__version__, "| napari-pinned", napari_pinned.__version__, "|", qtpy.API_NAME)'))"
