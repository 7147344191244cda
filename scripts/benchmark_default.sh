#!/usr/bin/env bash
# Every benchmark that names the shipped default, run again after its file changed
# (src/napari_pinned/data/models/default.pt), in the order docs/benchmarks.md needs them.
# About 85–100 minutes on two cores (the peer's outputs cached); run it in the background:
#
#   nohup bash scripts/benchmark_default.sh > /tmp/benchmark-default.log 2>&1 &
#   bash scripts/benchmark_default.sh real adapt      # only these steps
#
# Steps: realistic afterglow bandwidth resampled upsampled other-noise real adapt
# uncertainty peer self-supervised.  The uncertainty step fits the calibration and checks it: copy the
# fitted constants it prints into napari_pinned/denoising/uncertainty.py (CALIBRATION).
# The peer step needs tk_r_em's own environment (TK_PYTHON, default
# /tmp/tkvenv/bin/python; see benchmarks/peer_tk_r_em.py).  The tables are rewritten
# into the docs at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
TK=${TK_PYTHON:-/tmp/tkvenv/bin/python}
ALL=(realistic afterglow bandwidth resampled upsampled other-noise real adapt uncertainty peer self-supervised)
STEPS=("${@:-${ALL[@]}}")

run() {
    echo "# $(date -u '+%Y-%m-%d %H:%M') $*"
    "$@"
}

for step in "${STEPS[@]}"; do
    case $step in
    realistic)
        run "$PY" benchmarks/realistic.py --model default --model "default ×8=default@8" \
            --model cdn --reuse --jobs 2 ;;
    afterglow | bandwidth | resampled | upsampled)
        run "$PY" benchmarks/scan_noise.py --response "$step" --variants --jobs 2 ;;
    other-noise)
        run "$PY" benchmarks/other_noise.py --jobs 2 ;;
    real)
        run "$PY" benchmarks/real_micrographs.py ;;
    adapt)
        run "$PY" benchmarks/adapt.py --threads 1 ;;
    uncertainty)
        run "$PY" benchmarks/uncertainty.py --use-fitted --write-docs --threads 1
        echo "# copy the fitted constants above into denoising/uncertainty.py CALIBRATION" ;;
    peer)
        run "$PY" benchmarks/peer_tk_r_em.py --python "$TK" --threads 1 ;;
    self-supervised)
        run "$PY" benchmarks/self_supervised.py --threads 1 ;;
    *)
        echo "unknown step '$step' (steps: ${ALL[*]})" >&2
        exit 2 ;;
    esac
done
run "$PY" benchmarks/docs_tables.py
