"""How close does training without a clean image get to supervised training?

A microscopist's situation, simulated so that the truth is known: a held-out material
(BaTiO3 [001], never in the default model's training data) recorded at 0.1 Å/px as

* one image at a total dose ``D`` (Poisson shot noise and 0.5 e⁻ read noise), and
* a series of 8 frames at ``D / 8`` each with 0.3 and 0.5 px/frame of drift (the same
  total dose), which the Frame series dock registers.

Methods, each scored against the clean image with PSNR / SSIM and column positions:

* the noisy image; the drift-corrected mean of the series (registration only);
* the shipped default model as is (noise-aware, trained on simulated recordings);
* **Adapt to this image** (:func:`napari_pinned.training.adapt.adapt`, the Denoise
  dock's button): blind-spot fine-tuning of the default on the single image with its
  own settings, kept only where the held-out rows say it helped;
* **blind-spot** training on the single noisy image alone (Noise2Void-style) from
  scratch, and fine-tuning the default for every step with no held-out choice;
* **Noise2Noise** on the even/odd halves of the registered series, applied to the
  drift-corrected mean;
* **supervised** training on matched synthetic data (random BaTiO3 specimens at the
  image's pixel size, the "train for this image" path): from scratch with the dose
  noise model, and fine-tuning the default on recordings at the image's dose.

Models trained from scratch are a small U-Net (width 8, depth 3) on 8 × 64² px patches;
fine-tunes take the learning rate adapting uses (a fifth of training's) and, with clean
targets, the patch size the default learned from
(:func:`~napari_pinned.training.data.fine_tune_patch_size`, as the CLI and the Train
dock); every training gets the same number of steps.  The
JSON holds the settings and the default's SHA-256; the table in docs/real-data.md is
written from it (``benchmarks/docs_tables.py``)::

    python benchmarks/self_supervised.py --threads 1            # ≈ 30 min on 2 cores
    python benchmarks/self_supervised.py --steps 20 --adapt-steps 20 --doses 200 \\
        --json /tmp/s.json                                       # a smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _bench import machine

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
from napari_pinned.settings import (
    AdaptSettings,
    LossWeights,
    ModelConfig,
    StemNoiseRanges,
    TrainConfig,
)
from napari_pinned.training.adapt import adapt
from napari_pinned.training.data import fine_tune_patch_size
from napari_pinned.training.run import train

ROOT = pathlib.Path(__file__).resolve().parent.parent
JSON = ROOT / "benchmarks" / "self_supervised.json"
MATERIAL = "BaTiO3"
PIXEL_SIZE = 0.1
SHAPE = 256
FRAMES = 8
DRIFT = (0.3, 0.5)
READ_NOISE = 0.5
#: Full-scale intensity of the simulated images (add_dose_noise's data range).
FULL_SCALE = 255.0
#: Learning rate of training from scratch; fine-tunes take adapting's (a fifth).
LEARNING_RATE = 1e-3
#: The rows of the table, in order (JSON keys).
METHODS = (
    "noisy image",
    "drift-corrected mean",
    "default model",
    "Adapt to this image",
    "blind-spot (from scratch)",
    "blind-spot (fine-tuned default, every step)",
    "Noise2Noise (series)",
    "supervised (matched synthetic, from scratch)",
    "supervised (matched synthetic, fine-tuned default)",
)


def _config(steps: int, threads: int | None, **overrides) -> TrainConfig:
    base = {
        "model": ModelConfig.preset("unet", width=8, depth=3, residual=False),
        "loss_weights": LossWeights.none(),
        "steps": steps,
        "batch_size": 8,
        "patch_size": 64,
        "learning_rate": LEARNING_RATE,
        "warmup_steps": min(100, max(1, steps // 10)),
        "validate_every": max(1, steps // 10),
        "num_threads": threads,
    }
    if "init_model" in overrides:
        # A fine-tune as the CLI and the Train dock make it: adapting's learning rate
        # and, with clean targets, the patches the start model learned from.
        base["learning_rate"] = AdaptSettings().learning_rate
        if "self_supervised" not in overrides:
            start = load_model(overrides["init_model"], device="cpu")
            base["patch_size"] = fine_tune_patch_size(start.metadata, base["patch_size"])
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


def _matched_recordings(mean_counts: float) -> StemNoiseRanges:
    """Recordings like the image's: its mean dose within 2× either way, its read noise,
    no scan defects (the test image has none)."""
    return StemNoiseRanges(
        dose=(mean_counts / 2, mean_counts * 2),
        clean_fraction=0.0,
        read_noise=(READ_NOISE, READ_NOISE),
        jitter_fraction=0.0,
        line_fraction=0.0,
        drift_fraction=0.0,
        quantum_fraction=0.0,
    )


def run_dose(
    dose: float, steps: int, threads: int | None, seed: int, adapt_steps: int | None = None
) -> dict[str, dict]:
    """Every method at one total dose (e⁻/Å²); adapting takes its own settings
    (:class:`~napari_pinned.settings.AdaptSettings`), ``adapt_steps`` steps if given."""
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
        data_range=(0.0, FULL_SCALE),
        seed=seed,
    )
    series_big = add_dose_noise(
        np.repeat(big[None], FRAMES, axis=0),
        dose / FRAMES,
        pixel_size=PIXEL_SIZE,
        read_noise=READ_NOISE,
        drift=DRIFT,
        data_range=(0.0, FULL_SCALE),
        seed=seed + 1,
    )
    series = series_big[:, margin : margin + SHAPE, margin : margin + SHAPE]
    counts_at_max = dose * PIXEL_SIZE**2
    mean_counts = counts_at_max * float(np.mean(clean)) / FULL_SCALE

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

    def timed(name: str, run) -> object:
        started = time.perf_counter()
        bundle = run.run_to_end()
        timings[name] = time.perf_counter() - started
        print(f"  {name}: {timings[name] / 60:.1f} min", flush=True)
        return bundle

    def fit(name: str, config: TrainConfig, images, noisy=None) -> object:
        return timed(name, train(config, images, noisy, seed=seed, device="cpu"))

    settings = AdaptSettings() if adapt_steps is None else AdaptSettings(steps=adapt_steps)
    adapted = timed(
        "Adapt to this image",
        adapt(single, default, settings=settings, seed=seed, device="cpu"),
    )
    results["Adapt to this image"] = _score(denoise(single, adapted, device="cpu"), clean, columns)
    results["Adapt to this image"]["best_step"] = int(adapted.metadata.get("best_step", 0))

    blind = fit("blind-spot", _config(steps, threads, self_supervised="blind-spot"), [single])
    results["blind-spot (from scratch)"] = _score(
        denoise(single, blind, device="cpu"), clean, columns
    )
    tuned = fit(
        "blind-spot fine-tune",
        _config(steps, threads, self_supervised="blind-spot", init_model="default"),
        [single],
    )
    results["blind-spot (fine-tuned default, every step)"] = _score(
        denoise(single, tuned, device="cpu"), clean, columns
    )

    even, odd = noise2noise_pairs(aligned, crop)
    n2n = fit("noise2noise", _config(steps, threads), [even, odd], [odd, even])
    results["Noise2Noise (series)"] = _score(denoise(mean_full, n2n, device="cpu"), clean, columns)

    rng = np.random.default_rng(seed + 7)
    matched = [
        random_simulation(rng, SHAPE, [MATERIAL], pixel_size=PIXEL_SIZE).image for _ in range(40)
    ]
    supervised = fit(
        "supervised",
        _config(
            steps,
            threads,
            noise_model="dose",
            dose_counts=(counts_at_max / 2, counts_at_max * 2),
        ),
        matched,
    )
    results["supervised (matched synthetic, from scratch)"] = _score(
        denoise(single, supervised, device="cpu"), clean, columns
    )
    supervised_tuned = fit(
        "supervised fine-tune",
        _config(
            steps,
            threads,
            noise_model="stem",
            stem_noise=_matched_recordings(mean_counts),
            init_model="default",
        ),
        matched,
    )
    results["supervised (matched synthetic, fine-tuned default)"] = _score(
        denoise(single, supervised_tuned, device="cpu"), clean, columns
    )
    results["_mean_counts"] = round(mean_counts, 3)
    results["_timings_s"] = {name: round(seconds, 1) for name, seconds in timings.items()}
    return results


def markdown(result: dict) -> str:
    """The docs' table: one row per method, one column per dose."""
    doses = list(result["doses"])
    head = " | ".join(
        f"D = {float(d):,.0f} e⁻/Å² ({result['doses'][d]['_mean_counts']:.2g} e⁻/px mean)"
        for d in doses
    )
    lines = [f"| method | {head} |", "|---" * (len(doses) + 1) + "|"]
    for method in METHODS:
        cells = []
        for d in doses:
            r = result["doses"][d].get(method)
            if r is None:
                cells.append("–")
                continue
            recall = 100 * r["recall"]
            cell = f"{r['psnr']:.2f} / {r['ssim']:.3f} / {recall:.0f} % / {r['rms_pm']:.1f} pm"
            if "best_step" in r:
                cell += (
                    " (kept the default)" if r["best_step"] == 0 else f" (step {r['best_step']})"
                )
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    s = result["settings"]
    lines.append("")
    lines.append(
        f"PSNR (dB) / SSIM / column recall / RMS column error against the clean image; "
        f"{s['steps']:,} steps per training; default model SHA-256 {s['default_sha256'][:8]}…; "
        f"{s['machine']}; `{s['command']}`."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--doses", type=float, nargs="+", default=[200.0, 2000.0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument(
        "--adapt-steps", type=int, default=None, help="adapting's steps (its own by default)"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--json", type=pathlib.Path, default=JSON)
    parser.add_argument("--tables-only", action="store_true", help="re-print from the JSON")
    args = parser.parse_args(argv)
    if args.tables_only:
        print(markdown(json.loads(args.json.read_text(encoding="utf-8"))))
        return 0
    path = default_model_path()
    if not path.is_file():
        parser.error("the default model is missing; train it with scripts/train_default.py")
    if args.threads:
        torch.set_num_threads(args.threads)
    doses = {}
    for dose in args.doses:
        print(f"dose {dose:g} e⁻/Å² ({dose * PIXEL_SIZE**2:g} e⁻ per pixel at the maximum)")
        doses[str(dose)] = run_dose(dose, args.steps, args.threads, args.seed, args.adapt_steps)
    result = {
        "settings": {
            "steps": args.steps,
            "adapt_steps": args.adapt_steps or AdaptSettings().steps,
            "seed": args.seed,
            "default_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "machine": machine(),
            "command": "python benchmarks/self_supervised.py " + " ".join(argv or sys.argv[1:]),
        },
        "doses": doses,
    }
    print(markdown(result))
    write_text(args.json, json.dumps(result, indent=1))
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
