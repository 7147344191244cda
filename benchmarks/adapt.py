"""What does "Adapt to this image" add, and how long does it take?

For each held-out image (1024² px, materials the default model never saw) and dose, the
default model denoises the recording as shipped, then :func:`napari_pinned.training.adapt.adapt`
fine-tunes it on that same noisy recording (blind-spot, no clean image; the default 500
steps) and the adapted model denoises it again.  Two kinds of recording:

* ``white``: shot noise and 0.5 e⁻ read noise, what the default model was trained on;
* ``correlated``: the same, then the noise smeared along the fast scan by a detector
  with a finite bandwidth (each pixel keeps half its own noise and gets a quarter of
  each horizontal neighbour's) — a common trait of real HAADF detectors at short dwell
  times that the training data did not have.

Run::

    python benchmarks/adapt.py            # ~20 min on 2 CPU cores
    python benchmarks/adapt.py --quick    # one image, one dose, 100 steps

Writes ``benchmarks/adapt.json`` and prints a markdown table (``--tables-only``
re-prints it from the JSON).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _bench import high_frequency_left

from napari_pinned.denoising.denoiser import denoise
from napari_pinned.io.safe_write import write_text
from napari_pinned.noise.synthesis import StemRecording, record_counts
from napari_pinned.physics.simulate import simulate
from napari_pinned.quality.metrics import psnr
from napari_pinned.settings import AdaptSettings
from napari_pinned.training.adapt import adapt

ROOT = pathlib.Path(__file__).resolve().parent.parent
JSON = ROOT / "benchmarks" / "adapt.json"
IMAGES = (("BaTiO3", (0, 0, 1)), ("Al", (1, 1, 0)), ("ZnMgTe", (1, 1, 0)))
DOSES = (3.0, 30.0)
READ_NOISE = 0.5
#: Smearing of the noise along the fast scan (a detector of finite bandwidth).
_SMEAR = np.array([[0.25, 0.5, 0.25]])


def record(clean: np.ndarray, dose: float, kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, truth) in counts; ``kind`` is "white" or "correlated"."""
    rng = np.random.default_rng(seed)
    truth = (clean / clean.mean() * dose).astype(np.float32)
    noisy = record_counts(truth, rng, read_noise=StemRecording(dose, READ_NOISE).read_noise)
    if kind == "correlated":
        # Filtering the noise, not the signal: the detector smears what it adds.
        noise = ndimage.correlate(noisy - truth, _SMEAR, mode="reflect")
        noisy = truth + noise.astype(np.float32)
    return noisy, truth


def run(quick: bool, threads: int | None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    images = IMAGES[:1] if quick else IMAGES
    doses = DOSES[:1] if quick else DOSES
    settings = AdaptSettings(steps=100) if quick else AdaptSettings()
    shape = 512 if quick else 1024
    rows = []
    for i, (material, zone) in enumerate(images):
        clean = simulate(material, zone, shape=shape, pixel_size=0.1, seed=i).image
        for dose in doses:
            for kind in ("white", "correlated"):
                noisy, truth = record(clean, dose, kind, seed=1000 * i + int(dose))
                span = float(np.ptp(truth))
                shipped = denoise(noisy, device="cpu")
                before = psnr(shipped, truth, data_range=span)
                started = time.perf_counter()
                adapted = adapt(noisy, "default", settings=settings, device="cpu").run_to_end()
                seconds = time.perf_counter() - started
                output = denoise(noisy, adapted, device="cpu")
                after = psnr(output, truth, data_range=span)
                row = {
                    "image": f"{material} {shape}²",
                    "dose": dose,
                    "noise": kind,
                    "noisy": psnr(noisy, truth, data_range=span),
                    "default": before,
                    "adapted": after,
                    "best_step": adapted.metadata["best_step"],
                    "hf_default_pct": high_frequency_left(noisy, shipped),
                    "hf_adapted_pct": high_frequency_left(noisy, output),
                    "steps": settings.steps,
                    "seconds": seconds,
                }
                rows.append(row)
                print(
                    f"{row['image']} {dose:g} e⁻/px {kind}: noisy {row['noisy']:.2f}, "
                    f"default {before:.2f}, adapted {after:.2f} dB "
                    f"(best step {row['best_step']}, {seconds:.0f} s)",
                    flush=True,
                )
    return {
        "rows": rows,
        "threads": torch.get_num_threads(),
        "quick": quick,
        "date": time.strftime("%Y-%m-%d"),
    }


def markdown(result: dict) -> str:
    lines = [
        "| image | dose (e⁻/px) | noise | noisy | default | adapted | gain | kept | "
        "HF left default / adapted (%) | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        # "kept": adapting chose the starting model (best at step 0).
        kept = "start" if r["best_step"] == 0 else f"step {r['best_step']}"
        hf = (
            f"{r['hf_default_pct']:.1f} / {r['hf_adapted_pct']:.1f}"
            if "hf_default_pct" in r
            else "–"
        )
        lines.append(
            f"| {r['image']} | {r['dose']:g} | {r['noise']} | {r['noisy']:.2f} | "
            f"{r['default']:.2f} | {r['adapted']:.2f} | {r['adapted'] - r['default']:+.2f} | "
            f"{kept} | {hf} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one image, one dose, 100 steps")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--tables-only", action="store_true", help="re-print from the JSON")
    args = parser.parse_args(argv)
    if args.tables_only:
        print(markdown(json.loads(JSON.read_text(encoding="utf-8"))))
        return 0
    result = run(args.quick, args.threads)
    if not args.quick:
        write_text(JSON, json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
