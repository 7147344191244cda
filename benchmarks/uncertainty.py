"""Calibrate and check the uncertainty map (issue 22, §4).

The model (:mod:`napari_pinned.denoising.uncertainty`): each output pixel's error is
Gaussian with variance ``a · s² + b · σ_n² + c · σ_n · r + d · u · r · σ_n`` in counts
(``s²``: the variance of the network over the orientations averaged; ``σ_n``: the noise
map the network is given, strength 1; ``r``: the frame's robust range, the model unit;
``u``: the network's output in model units, 0 at the frame's 1st percentile).

* **Calibration split** (fits ``a``–``d`` by maximum likelihood, per number of
  orientations 1, 2, 4, 8): 256² px recordings of training materials only — crystals
  from :func:`~napari_pinned.physics.simulate.simulate` and specimens from
  :func:`~napari_pinned.physics.specimens.random_structure` (seeds from
  ``CALIBRATION_SEED``, far from the training recipe's and below the held-out range) —
  recorded as ``benchmarks/realistic.py`` records (Poisson, read noise 0.5 e⁻) at 1, 3,
  10, 30, 100 e⁻/px.
* **Check**: the held-out set of ``benchmarks/realistic.py`` (its first ``--images``, the
  core set by default), same doses, with the constants of :data:`CALIBRATION` (or the
  ones just fitted, ``--use-fitted``): the share of pixels whose true value (the
  expected counts) lies within ±2σ of the output, per dose and orientations, and per
  region of the truth (dark: below 15 % of its 5–99.5th percentile range, bright:
  above 50 %, between).  Target: 90–98 % at every dose.
* **Cost**: seconds of a plain ``denoise`` and of ``denoise_with_uncertainty`` per image.

Run::

    python benchmarks/uncertainty.py                      # fit + check, ~6 min on 2 cores
    python benchmarks/uncertainty.py --use-fitted         # check the constants just fitted
    python benchmarks/uncertainty.py --write-docs         # also into docs/benchmarks.md

Writes ``benchmarks/uncertainty.json`` (fitted constants, coverage rows).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _bench import dump_json, machine, markdown_table
from _docs_block import write_docs_block
from realistic import DOSES, READ_NOISE, SHAPE, held_out_set, make_clean, record

from napari_pinned._util.jobs import run_job
from napari_pinned.denoising.denoiser import denoise, denoise_with_uncertainty
from napari_pinned.denoising.engine import Denoiser, guard_frame
from napari_pinned.denoising.uncertainty import (
    CALIBRATION,
    UncertaintyWeights,
    fit_weights,
)
from napari_pinned.nn.conditioning import prepare
from napari_pinned.nn.resolve import load_model
from napari_pinned.noise.synthesis import StemRecording, record_stem_image
from napari_pinned.physics.materials import get_material, training_materials
from napari_pinned.physics.simulate import simulate
from napari_pinned.physics.specimens import random_structure
from napari_pinned.quality.lattice_guard import guard_applies
from napari_pinned.settings import ORIENTATION_COUNTS, FrameOptions

ROOT = pathlib.Path(__file__).resolve().parent.parent
JSON = ROOT / "benchmarks" / "uncertainty.json"
#: Seeds of the calibration specimens (training materials; the training recipe uses
#: small seeds, the held-out set ≥ BENCHMARK_SEED_START = 10⁹).
CALIBRATION_SEED = 700_000_000
#: Specimen kinds of the calibration split (with the crystals).
CALIBRATION_KINDS = (
    "weak_strong",
    "amorphous",
    "nanoparticle",
    "grain_boundary",
    "vacancies",
    "surface",
    "vacuum",
    "dopants",
)
#: Crystals of the calibration split: the first zone axis of these training materials.
CALIBRATION_CRYSTALS = ("SrTiO3", "GaN", "Si", "MoS2")
#: Pixels per image and dose that enter the fit (a fixed random subset).
FIT_PIXELS = 8192
#: Region thresholds on the truth, as a fraction of its 5–99.5th percentile range.
DARK, BRIGHT = 0.15, 0.5


def calibration_images() -> list[tuple[str, np.ndarray]]:
    """The calibration split: ``(name, clean image)``."""
    out = []
    for i, name in enumerate(CALIBRATION_CRYSTALS):
        material = get_material(name)
        rng = np.random.default_rng(CALIBRATION_SEED + 100 + i)
        result = simulate(
            name,
            material.zone_axes[0],
            shape=SHAPE,
            pixel_size=0.1,
            thickness=20.0 if material.two_dimensional else 200.0,
            rotation=float(rng.uniform(0.0, 90.0)),
            background=0.05,
            background_variation=0.5,
            seed=CALIBRATION_SEED + i,
        )
        out.append((f"{name} crystal", result.image))
    for slot, kind in enumerate(CALIBRATION_KINDS):
        rng = np.random.default_rng(CALIBRATION_SEED + 1000 * (slot + 1))
        s = random_structure(rng, SHAPE, training_materials(), kind=kind)
        out.append((f"{kind}: {s.label}", s.image))
    return out


def terms(noisy: np.ndarray, model, orientations: int) -> dict[str, np.ndarray | float]:
    """The output and the model's terms in counts, through the product's engine: the
    output (lattice guard as ``denoise`` applies it), the orientations' standard
    deviation ``s``, the noise map ``σ_n`` at strength 1, the frame's range ``r`` and
    the network's output above the frame's low end ``u·r`` (before the guard, as the
    engine reads it)."""
    denoiser = Denoiser(
        model,
        FrameOptions(device="cpu", orientations=orientations, keep_lattice=False),
        uncertainty=True,
    )
    denoiser.weights = UncertaintyWeights(spread=1.0, noise=0.0)  # s alone
    frame = noisy.astype(np.float32)
    network, spread, prepared = run_job(denoiser.iter_frame_uncertain(frame))
    output = network
    if guard_applies(denoiser.training_noise, frame):  # what the engine does with it on
        output = guard_frame(prepared.repaired, network, frame.dtype)
    again = prepare(frame, denoiser.config.normalization, conditioned=True)
    state = again.state
    return {
        "output": output,
        "s": spread,
        "noise_sd": again.channels[1] * np.float32(state.scale),
        "r": float(state.scale),
        "ur": np.maximum(network - np.float32(state.low), 0.0),
    }


def regions(truth: np.ndarray) -> dict[str, np.ndarray]:
    low, high = np.percentile(truth, (5.0, 99.5))
    level = (truth - low) / max(high - low, 1e-12)
    return {"dark": level < DARK, "bright": level > BRIGHT}


def collect(images, model, doses, seed_of) -> list[dict]:
    """Per image × dose × orientations: the error, the model's features (in counts²:
    ``s²``, ``σ_n²``, ``σ_n·r``, ``u·r·σ_n``, whose weights are ``a``–``d``) and the
    regions."""
    cases = []
    for name, clean_or_spec in images:
        for dose in doses:
            noisy, truth = seed_of(clean_or_spec, dose)
            for k in ORIENTATION_COUNTS:
                t = terms(noisy, model, k)
                n = t["noise_sd"].astype(np.float64)
                features = (t["s"].astype(np.float64) ** 2, n**2, n * t["r"], n * t["ur"])
                cases.append(
                    {
                        "image": name,
                        "dose": dose,
                        "orientations": k,
                        "error": (t["output"] - truth).astype(np.float64),
                        "features": features,
                        "regions": regions(truth),
                    }
                )
        print(f"# {name}", flush=True)
    return cases


def calibration_record(clean: np.ndarray, dose: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([CALIBRATION_SEED, round(dose * 1000), int(clean.sum()) % 997])
    noisy, expected = record_stem_image(clean, StemRecording(dose, read_noise=READ_NOISE), rng)
    return noisy.astype(np.float64), expected.astype(np.float64)


def fit(cases: list[dict]) -> dict[int, tuple[float, ...]]:
    """``(a, b, c, d)`` per orientations, by maximum likelihood over a fixed pixel
    subset of every image and dose."""
    rng = np.random.default_rng(0)
    fitted = {}
    for k in ORIENTATION_COUNTS:
        columns: list[list[np.ndarray]] = [[], [], [], []]
        errors = []
        for c in (c for c in cases if c["orientations"] == k):
            pick = rng.choice(c["error"].size, FIT_PIXELS, replace=False)
            for column, feature in zip(columns, c["features"], strict=True):
                column.append(feature.ravel()[pick])
            errors.append(c["error"].ravel()[pick] ** 2)
        features = [np.concatenate(column) for column in columns]
        fitted[k] = fit_weights(features, np.concatenate(errors))
    return fitted


def check(cases: list[dict], constants: dict[int, tuple[float, ...]]) -> list[dict]:
    """Coverage of ±2σ per orientations and dose, overall and per region, and the share
    of the variance the orientations' spread gives."""
    rows = []
    for k in ORIENTATION_COUNTS:
        weights = constants[k]
        for dose in sorted({c["dose"] for c in cases}):
            inside = {"all": [0, 0], "dark": [0, 0], "bright": [0, 0], "between": [0, 0]}
            ratio, spread_share = [], []
            for c in (c for c in cases if c["orientations"] == k and c["dose"] == dose):
                variance = sum(w * f for w, f in zip(weights, c["features"], strict=True))
                sigma = np.sqrt(variance)
                hit = np.abs(c["error"]) <= 2.0 * sigma
                dark, bright = c["regions"]["dark"], c["regions"]["bright"]
                for name, mask in (
                    ("all", np.ones_like(hit)),
                    ("dark", dark),
                    ("bright", bright),
                    ("between", ~dark & ~bright),
                ):
                    inside[name][0] += int(hit[mask].sum())
                    inside[name][1] += int(mask.sum())
                ratio.append(np.sqrt(np.mean(c["error"] ** 2) / np.mean(variance)))
                spread_share.append(np.mean(weights[0] * c["features"][0]) / np.mean(variance))
            row = {"orientations": k, "dose": dose}
            for name, (hits, total) in inside.items():
                row[name] = hits / total if total else None
            row["rms_error_over_rms_sigma"] = float(np.mean(ratio))
            row["spread_share_of_variance"] = float(np.mean(spread_share))
            rows.append(row)
    return rows


def cost(images, model, dose: float = 10.0, repeats: int = 3) -> list[dict]:
    """Seconds per 256² image: plain denoise at 1 and 8 orientations vs with uncertainty,
    the runs interleaved, best of ``repeats``."""
    noisy = [calibration_record(clean, dose)[0] for _, clean in images[:3]]
    cpu = {"device": "cpu"}
    calls = (
        ("denoise, 1 orientation", lambda x: denoise(x, model, **cpu)),
        (
            "with uncertainty, 1 orientation",
            lambda x: denoise_with_uncertainty(x, model, orientations=1, **cpu),
        ),
        ("denoise, 8 orientations", lambda x: denoise(x, model, orientations=8, **cpu)),
        (
            "with uncertainty, 8 orientations",
            lambda x: denoise_with_uncertainty(x, model, orientations=8, **cpu),
        ),
    )
    best = {label: np.inf for label, _ in calls}
    for _, call in calls:
        call(noisy[0])  # warm-up
    for _ in range(repeats):
        for label, call in calls:
            t0 = time.perf_counter()
            for x in noisy:
                call(x)
            best[label] = min(best[label], (time.perf_counter() - t0) / len(noisy))
    return [{"run": label, "seconds": seconds} for label, seconds in best.items()]


def table(rows: list[dict], constants, source: str) -> list[str]:
    out = []
    header = ["e⁻/px", "inside ±2σ", "dark", "between", "bright", "rms error / rms σ"]
    for k in ORIENTATION_COUNTS:
        a, b, c, d = constants[k]
        plural = "s" if k > 1 else ""
        out.append(
            f"**{k} orientation{plural}** (a = {a:.4g}, b = {b:.4g}, c = {c:.4g}, "
            f"d = {d:.4g}; {source})"
        )
        out.append("")
        body = [
            [
                f"{r['dose']:g}",
                *(
                    f"{100 * r[n]:.1f} %" if r[n] is not None else "–"
                    for n in ("all", "dark", "between", "bright")
                ),
                f"{r['rms_error_over_rms_sigma']:.2f}",
                f"{100 * r['spread_share_of_variance']:.0f} %",
            ]
            for r in rows
            if r["orientations"] == k
        ]
        out.append(markdown_table([*header, "a·s² share of σ²"], body))
        out.append("")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--images", type=int, default=14, help="held-out images (core set: 14)")
    parser.add_argument("--use-fitted", action="store_true", help="check the constants just fitted")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write-docs", action="store_true", help="into docs/benchmarks.md")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    model = load_model(args.model, device="cpu")
    calibration = calibration_images()
    cases = collect(calibration, model, DOSES, calibration_record)
    fitted = fit(cases)
    for k, weights in fitted.items():
        print(f"# fitted, {k} orientations: a, b, c, d = {weights}", flush=True)
    fit_rows = check(cases, fitted)
    del cases
    specs = held_out_set()[: args.images]
    held = [(s.id, s) for s in specs]
    cases = collect(held, model, DOSES, lambda spec, dose: record(make_clean(spec), spec, dose))
    constants = fitted if args.use_fitted else CALIBRATION
    source = "just fitted" if args.use_fitted else "as shipped"
    rows = check(cases, constants)
    timing = cost(calibration, model)
    lines = [
        "`" + " ".join(["python benchmarks/uncertainty.py", *sys.argv[1:]]) + "`",
        f"({machine()}; model {args.model}; calibration: {len(calibration)} images of "
        f"training materials; check: the first {len(specs)} held-out images of "
        f"benchmarks/realistic.py, {SHAPE}² px; {time.strftime('%Y-%m-%d')}).",
        "",
        "Share of true pixels inside ±2σ on the held-out set (target 90–98 %):",
        "",
        *table(rows, constants, source),
        "Cost per 256² image (best of 3, interleaved):",
        "",
        markdown_table(["run", "seconds"], [[r["run"], f"{r['seconds']:.3f}"] for r in timing]),
    ]
    print("\n".join(lines))
    result = {
        "meta": {
            "command": " ".join(["python benchmarks/uncertainty.py", *sys.argv[1:]]),
            "machine": machine(),
            "model": args.model,
            "doses": list(DOSES),
            "calibration_images": [name for name, _ in calibration],
            "held_out_images": [s.id for s in specs],
            "constants_checked": source,
            "seconds": round(time.perf_counter() - t_start, 1),
        },
        "fitted": {str(k): dict(zip("abcd", w, strict=True)) for k, w in fitted.items()},
        "calibration_coverage": fit_rows,
        "held_out_coverage": rows,
        "cost": timing,
    }
    dump_json(result, JSON, one_line=("calibration_coverage", "held_out_coverage"))
    if args.write_docs:
        write_docs_block(lines, "uncertainty")


if __name__ == "__main__":
    main()
