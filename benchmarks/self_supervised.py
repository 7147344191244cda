"""How close does training without a clean image get to supervised training?

A microscopist's situation, simulated so that the truth is known: a held-out material
(BaTiO3 [001], never in the default model's training data) recorded at 0.1 Å/px as

* one image at a total dose ``D`` (Poisson shot noise and 0.5 e⁻ read noise), and
* a series of 8 frames at ``D / 8`` each with 0.3 and 0.5 px/frame of drift (the same
  total dose), which the Frame series dock registers.

Methods, each scored against the clean image with PSNR / SSIM and column positions:

* the noisy image; the drift-corrected mean of the series (registration only);
* the shipped default model as is (trained on CDN, a different noise);
* **blind-spot** training on the single noisy image alone, from scratch and fine-tuning
  the default model (Noise2Void-style, :mod:`napari_pinned.training.run`);
* **Noise2Noise** on the even/odd halves of the registered series, applied to the
  drift-corrected mean;
* **supervised** training on matched synthetic data: random BaTiO3 specimens at the
  image's pixel size with the dose noise model (the "train for this image" path), from
  scratch and fine-tuning the default model: what a microscopist gets when the material
  is known.

Every trained model is the default model's architecture (U-Net width 8, depth 3) and
gets the same number of steps::

    python benchmarks/self_supervised.py --threads 2            # ≈ 20 min on 2 cores
    python benchmarks/self_supervised.py --steps 300 --doses 2000  # a smoke run
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np
import torch

from napari_pinned.denoising.denoiser import denoise
from napari_pinned.denoising.registration import (
    align_frames,
    common_region,
    estimate_drift,
    noise2noise_pairs,
)
from napari_pinned.io.safe_write import write_text
from napari_pinned.nn.model_files import default_model_path
from napari_pinned.nn.resolve import load_model
from napari_pinned.noise.synthesis import add_dose_noise
from napari_pinned.physics.simulate import random_simulation, simulate
from napari_pinned.quality.columns import column_accuracy
from napari_pinned.quality.metrics import compute_metrics
from napari_pinned.settings import LossWeights, ModelConfig, TrainConfig
from napari_pinned.training.run import train

ROOT = pathlib.Path(__file__).resolve().parent.parent
MATERIAL = "BaTiO3"
PIXEL_SIZE = 0.1
SHAPE = 256
FRAMES = 8
DRIFT = (0.3, 0.5)
READ_NOISE = 0.5


def _config(steps: int, threads: int | None, **overrides) -> TrainConfig:
    base = {
        "model": ModelConfig.preset("unet", width=8, depth=3, residual=False),
        "loss_weights": LossWeights.none(),
        "steps": steps,
        "batch_size": 8,
        "patch_size": 64,
        "learning_rate": 1e-3,
        "warmup_steps": 100,
        "validate_every": max(1, steps // 10),
        "num_threads": threads,
    }
    base.update(overrides)
    return TrainConfig(**base)


def _score(
    image: np.ndarray, clean: np.ndarray, truth: tuple[np.ndarray, np.ndarray]
) -> dict[str, float]:
    m = compute_metrics(image, clean)
    positions, weights = truth
    cols = column_accuracy(image, positions, PIXEL_SIZE, weights=weights)
    return {
        "psnr": m.psnr,
        "ssim": m.ssim,
        "recall": cols.recall,
        "rms_pm": cols.rms_error_pm,
    }


def run_dose(dose: float, steps: int, threads: int | None, seed: int) -> dict[str, dict]:
    """Every method at one total dose (e⁻/Å²)."""
    truth = simulate(MATERIAL, shape=SHAPE + 32, pixel_size=PIXEL_SIZE, seed=seed)
    # The series needs room to drift: simulate larger, keep the centre as frame 0.
    margin = 16
    big = truth.image
    window = np.s_[margin : margin + SHAPE, margin : margin + SHAPE]
    clean = big[window]
    columns = (truth.columns.positions - margin, truth.columns.weights)
    single = add_dose_noise(
        clean,
        dose,
        pixel_size=PIXEL_SIZE,
        read_noise=READ_NOISE,
        data_range=(0.0, 255.0),
        seed=seed,
    )
    series_big = add_dose_noise(
        np.repeat(big[None], FRAMES, axis=0),
        dose / FRAMES,
        pixel_size=PIXEL_SIZE,
        read_noise=READ_NOISE,
        drift=DRIFT,
        data_range=(0.0, 255.0),
        seed=seed + 1,
    )
    series = series_big[:, margin : margin + SHAPE, margin : margin + SHAPE]

    results: dict[str, dict] = {}
    timings: dict[str, float] = {}
    results["noisy image"] = _score(single, clean, columns)

    shifts = estimate_drift(series)
    aligned = align_frames(series, shifts)
    crop = common_region(series.shape, shifts)
    mean_full = aligned.mean(axis=0)
    # Score on frame 0's full field: pixels outside the common region repeat edges.
    results["drift-corrected mean"] = _score(mean_full, clean, columns)

    default = load_model("default", device="cpu")
    results["default model"] = _score(denoise(single, default, device="cpu"), clean, columns)

    def fit(name: str, config: TrainConfig, images, noisy=None) -> object:
        started = time.perf_counter()
        bundle = train(config, images, noisy, seed=seed, device="cpu").run_to_end()
        timings[name] = time.perf_counter() - started
        print(f"  {name}: {timings[name] / 60:.1f} min", flush=True)
        return bundle

    blind = fit("blind-spot", _config(steps, threads, self_supervised="blind-spot"), [single])
    results["blind-spot (from scratch)"] = _score(
        denoise(single, blind, device="cpu"), clean, columns
    )
    tuned = fit(
        "blind-spot fine-tune",
        _config(steps, threads, self_supervised="blind-spot", init_model="default"),
        [single],
    )
    results["blind-spot (fine-tuned default)"] = _score(
        denoise(single, tuned, device="cpu"), clean, columns
    )

    even, odd = noise2noise_pairs(aligned, crop)
    n2n = fit("noise2noise", _config(steps, threads), [even, odd], [odd, even])
    results["Noise2Noise (series)"] = _score(denoise(mean_full, n2n, device="cpu"), clean, columns)

    rng = np.random.default_rng(seed + 7)
    matched = [
        random_simulation(rng, SHAPE, [MATERIAL], pixel_size=PIXEL_SIZE).image for _ in range(40)
    ]
    counts = dose * PIXEL_SIZE**2
    supervised = fit(
        "supervised",
        _config(steps, threads, noise_model="dose", dose_counts=(counts / 2, counts * 2)),
        matched,
    )
    results["supervised (matched synthetic)"] = _score(
        denoise(single, supervised, device="cpu"), clean, columns
    )
    supervised_tuned = fit(
        "supervised fine-tune",
        _config(
            steps,
            threads,
            noise_model="dose",
            dose_counts=(counts / 2, counts * 2),
            init_model="default",
        ),
        matched,
    )
    results["supervised (fine-tuned default, matched synthetic)"] = _score(
        denoise(single, supervised_tuned, device="cpu"), clean, columns
    )
    for name, seconds in timings.items():
        results.setdefault("_timings_s", {})[name] = round(seconds, 1)
    return results


def print_table(all_results: dict[float, dict[str, dict]]) -> None:
    doses = list(all_results)
    methods = [m for m in all_results[doses[0]] if not m.startswith("_")]
    header = "| method | " + " | ".join(f"{d:g} e⁻/Å²: PSNR / SSIM / recall / RMS" for d in doses)
    print(header + " |")
    print("|---" * (len(doses) + 1) + "|")
    for method in methods:
        cells = []
        for d in doses:
            r = all_results[d][method]
            cells.append(
                f"{r['psnr']:.2f} / {r['ssim']:.3f} / {r['recall']:.2f} / {r['rms_pm']:.1f} pm"
            )
        print(f"| {method} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--doses", type=float, nargs="+", default=[2000.0, 20000.0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--json", type=pathlib.Path, default=ROOT / "benchmarks" / "self_supervised.json"
    )
    args = parser.parse_args(argv)
    if not default_model_path().is_file():
        parser.error("the default model is missing; train it with scripts/train_default.py")
    if args.threads:
        torch.set_num_threads(args.threads)
    all_results = {}
    for dose in args.doses:
        print(f"dose {dose:g} e⁻/Å² ({dose * PIXEL_SIZE**2:g} e⁻ per pixel at the maximum)")
        all_results[dose] = run_dose(dose, args.steps, args.threads, args.seed)
    print_table(all_results)
    write_text(args.json, json.dumps({str(k): v for k, v in all_results.items()}, indent=1))
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
