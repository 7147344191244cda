#!/usr/bin/env bash
# The default model's recipe on one lent GPU machine (the `device` tool's `run`), in
# about 8 minutes of training, then GPU inference speed.  Everything it makes lands in
# $OUT: the model, the training log and the speed table.
#
# Prepare here, once per machine (the device machine has torch, numpy, scipy and
# scikit-image but not gemmi, and cannot reach a package index):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl gemmi tifffile
# Try it here on the CPU with tiny settings:
#   OUT=/tmp/out TINY=1 bash scripts/device_train.sh
# Run it there (device tool):  run(command="bash scripts/device_train.sh",
#   carry=[".whl"], timeout_s=600)
#
# Knobs: MINUTES (training budget, default 7.5), WORKERS (default: CPUs - 1),
# EXTRA (more train_default.py arguments, e.g. "--init default --grow --depth 5
# --max-width-factor 16").
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder for the results}"
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && python=.venv/bin/python
workers=${WORKERS:-$(($(nproc) - 1))}
if [ -n "${TINY:-}" ]; then
  device=cpu minutes=${MINUTES:-0.5}
  size=(--images 8 --shape 192 --batch 4 --patch 64 --steps 20)
  sizes=(256)
else
  device=cuda minutes=${MINUTES:-7.5}
  # Batches of 32: the workers record about a thousand patches a second (the noise
  # estimate the model is told takes most of that), which a batch of 32 keeps up with.
  size=(--images 3000 --shape 256 --batch 32 --patch 128 --steps 20000 --fit-steps)
  sizes=(2048 4096)
fi
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
"$python" scripts/train_default.py --scanning-detector --device "$device" --workers "$workers" \
  --lr 2e-3 --warmup 300 --minutes "$minutes" "${size[@]}" ${EXTRA:-} \
  --out "$OUT/default-gpu.pt" --checkpoint "$OUT/default-gpu.ckpt" --export-now \
  2>&1 | tee "$OUT/train.log"
"$python" benchmarks/speed.py --model "$OUT/default-gpu.pt" --device "$device" \
  --sizes "${sizes[@]}" --repeats 2 2>&1 | tee "$OUT/speed.md"
rm -f "$OUT/default-gpu.ckpt"  # 3× the model's size, and only this machine could resume it
