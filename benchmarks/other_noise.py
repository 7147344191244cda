"""Noise the default was never trained on: is it still a good denoiser, and never harmful?

Every recording the default learnt from is counted electrons with shot noise, read
noise and a scanning detector's defects.  Users bring images made otherwise, and this
benchmark draws four such kinds on the white-noise benchmark's held-out images
(``realistic.py``'s core 14, the same expected counts at the same mean doses):

* ``additive``: the expected counts plus Gaussian noise of the same variance as shot
  and read noise at the mean dose, the same everywhere (an analogue detector, or noise
  added to a test image);
* ``adc``: shot and read noise in converter units, 7 units per electron above an offset
  of 300, rounded to integers (a detector read out without conversion to electrons);
* ``8-bit``: shot and read noise, stretched from the 0.1st to the 99.9th percentile to
  0–255 and rounded (an image exported for a slide or a web page);
* ``filtered``: shot and read noise, then a Gaussian filter of 0.7 px (smoothing by the
  acquisition software, or a frame resized by a smooth kernel): noise correlated over
  about two pixels along both axes.

The truth is the recorded signal without noise, in the image's own units: the expected
counts (``additive``), ``7 · counts + 300`` (``adc``), the same stretch clipped to 0–255
(``8-bit``) and the filtered expected counts (``filtered``).  The classical methods are
oracles, tuned per image against that truth: a Gaussian filter and BM3D (``bm3d``) given
the residual's own power spectrum (smoothed), both after the variance-stabilising
transform for the kind's known shot and read noise (none for ``additive``).  The models
run as a user would run them, the noise estimated from the image.  Also reported: how
much noise the model was told (the estimate's variance at every pixel, as the denoiser
computes it, over the true residual's mean square).

Run::

    python benchmarks/other_noise.py --jobs 2            # ~20 min on 2 cores (BM3D)
    python benchmarks/other_noise.py --quick --no-bm3d   # 2 images, 2 doses, ~20 s
    python benchmarks/other_noise.py --tables-only

The full run writes ``benchmarks/other_noise.json`` and the ``other-noise`` block of
docs/benchmarks.md (``benchmarks/docs_tables.py``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import sys
import time
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _bench import (
    GAT,
    ModelSpec,
    bm3d_module,
    dump_json,
    fmt,
    load_spec,
    machine,
    markdown_table,
    parse_model_specs,
    tune,
)
from realistic import READ_NOISE, ImageSpec, _seed, held_out_set, make_clean
from scan_noise import BM3D_GRID, CORE_IMAGES, GAUSSIAN_GRID, oracle_psd

ROOT = pathlib.Path(__file__).resolve().parent.parent
JSON = ROOT / "benchmarks" / "other_noise.json"
KINDS = ("additive", "adc", "8-bit", "filtered")
DOSES = (1.0, 10.0, 100.0)
QUICK_DOSES = (1.0, 10.0)
ADC_GAIN, ADC_OFFSET = 7.0, 300.0  # converter units per electron, and the offset
STRETCH = (0.1, 99.9)  # the 8-bit export's percentiles
FILTER_SIGMA = 0.7  # px, the filtered kind's Gaussian
NOISY, GAUSSIAN, BM3D = "noisy", "Gaussian (VST)", "VST + BM3D (PSD)"


class _Identity:
    """No variance-stabilising transform (signal-independent noise)."""

    @staticmethod
    def forward(x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64)

    @staticmethod
    def inverse(x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64)


@dataclass
class Drawn:
    """One image of one kind at one dose: the input, its truth, the oracle VST."""

    noisy: np.ndarray
    truth: np.ndarray
    vst: GAT | _Identity


def draw(spec: ImageSpec, dose: float, kind: str) -> Drawn:
    """One fixed draw per image, dose and kind."""
    from scipy import ndimage

    from napari_pinned.noise.synthesis import StemRecording, record_stem_image

    rng = np.random.default_rng([_seed(spec.id), round(dose * 1000), KINDS.index(kind), 31])
    counts, expected = record_stem_image(
        make_clean(spec).image, StemRecording(dose, read_noise=READ_NOISE), rng
    )
    counts, expected = counts.astype(np.float64), expected.astype(np.float64)
    if kind == "additive":
        noise = rng.normal(0.0, np.sqrt(dose + READ_NOISE**2), expected.shape)
        return Drawn(expected + noise, expected, _Identity())
    if kind == "adc":
        noisy = np.round(ADC_GAIN * counts + ADC_OFFSET)
        vst = GAT(gain=ADC_GAIN, sigma=ADC_GAIN * READ_NOISE, mu=ADC_OFFSET)
        return Drawn(noisy, ADC_GAIN * expected + ADC_OFFSET, vst)
    if kind == "8-bit":
        lo, hi = np.percentile(counts, STRETCH)
        scale = 255.0 / max(hi - lo, 1e-9)
        noisy = np.clip(np.round((counts - lo) * scale), 0, 255).astype(np.uint8)
        # Rounding to integers adds 1/12 of a unit² of variance.
        sigma = float(np.hypot(READ_NOISE * scale, np.sqrt(1 / 12)))
        vst = GAT(gain=scale, sigma=sigma, mu=-lo * scale)
        return Drawn(noisy, np.clip((expected - lo) * scale, 0, 255), vst)
    if kind == "filtered":
        noisy = ndimage.gaussian_filter(counts, FILTER_SIGMA)
        truth = ndimage.gaussian_filter(expected, FILTER_SIGMA)
        # The filter keeps Σh² of the variance: the VST's gain for the per-pixel noise.
        share = float(np.sum(_gaussian_kernel(FILTER_SIGMA) ** 2))
        vst = GAT(gain=share, sigma=READ_NOISE * np.sqrt(share))
        return Drawn(noisy, truth, vst)
    raise ValueError(f"unknown kind {kind!r} (kinds: {', '.join(KINDS)})")


def _gaussian_kernel(sigma: float) -> np.ndarray:
    from scipy import ndimage

    delta = np.zeros((33, 33))
    delta[16, 16] = 1.0
    return ndimage.gaussian_filter(delta, sigma)


def score_case(
    spec: ImageSpec, dose: float, kind: str, models: tuple[ModelSpec, ...], bm3d: bool
) -> list[dict]:
    """Every method on one image, dose and kind: rows of the JSON."""
    import torch

    torch.set_num_threads(1)
    from scipy import ndimage

    from napari_pinned import denoise
    from napari_pinned.noise.correlation import pixel_equivalent
    from napari_pinned.noise.estimate import estimate_noise
    from napari_pinned.quality.faithfulness import faithfulness
    from napari_pinned.quality.metrics import psnr

    drawn = draw(spec, dose, kind)
    x = np.asarray(drawn.noisy, np.float64)
    truth = drawn.truth
    span = float(truth.max() - truth.min())
    residual_power = float(np.mean((x - truth) ** 2))
    rows: list[dict] = []

    def score(out: np.ndarray) -> float:
        return psnr(truth, out, data_range=span)

    def row(method: str, out: np.ndarray, seconds: float, **extra) -> None:
        rows.append(
            {
                "image": spec.id,
                "dose": dose,
                "kind": kind,
                "method": method,
                "psnr": score(np.asarray(out, np.float64)),
                "seconds": seconds,
                **extra,
            }
        )

    row(NOISY, x, 0.0)
    vst = drawn.vst
    z = vst.forward(x)
    best = tune(
        lambda s: vst.inverse(ndimage.gaussian_filter(z, s, mode="reflect")),
        score,
        GAUSSIAN_GRID,
        8,
        4,
    )
    row(GAUSSIAN, best.output, best.seconds, parameter=best.parameter)
    if bm3d:
        bm3d_lib = bm3d_module()
        psd = oracle_psd(x, truth, vst, both_axes=True)
        best = tune(
            lambda f: vst.inverse(bm3d_lib.bm3d(z, sigma_psd=psd * f**2)),
            score,
            BM3D_GRID,
            3,
            1,
        )
        row(BM3D, best.output, best.seconds, parameter=best.parameter)
    told = pixel_equivalent(estimate_noise(x), x)
    told_ratio = float(np.mean(told.variance(x))) / residual_power
    for model in models:
        bundle = load_spec(model)
        t0 = time.perf_counter()
        out = np.asarray(
            denoise(drawn.noisy, bundle, device="cpu", orientations=model.orientations),
            np.float64,
        )
        seconds = time.perf_counter() - t0
        faithful = bool(faithfulness(x, out, pixel_size=spec.pixel_size).faithful)
        row(model.label, out, seconds, faithful=faithful, told_ratio=told_ratio)
    return rows


def summarise(result: dict) -> dict:
    """Per kind, method and dose: mean PSNR, mean and worst gain over the best oracle
    classical method (BM3D where it ran, else the Gaussian), no-harm and faithful counts,
    and the noise told over the true noise (median over images)."""
    rows = result["rows"]
    out: dict = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = [r for r in rows if r["kind"] == kind]
        doses = sorted({r["dose"] for r in mine})
        methods = list(dict.fromkeys(r["method"] for r in mine))
        reference = BM3D if BM3D in methods else GAUSSIAN
        per_kind: dict = {"reference": reference, "methods": {}}
        for method in methods:
            per = {}
            for dose in doses:
                them = {r["image"]: r for r in mine if r["method"] == method and r["dose"] == dose}
                ref = {
                    r["image"]: r for r in mine if r["method"] == reference and r["dose"] == dose
                }
                noisy = {r["image"]: r for r in mine if r["method"] == NOISY and r["dose"] == dose}
                gains = [them[i]["psnr"] - ref[i]["psnr"] for i in them if i in ref]
                faithful = [r["faithful"] for r in them.values() if "faithful" in r]
                told = [r["told_ratio"] for r in them.values() if "told_ratio" in r]
                per[str(dose)] = {
                    "psnr": float(np.mean([r["psnr"] for r in them.values()])),
                    "gain": float(np.mean(gains)),
                    "worst_gain": float(np.min(gains)),
                    "no_harm": sum(them[i]["psnr"] >= noisy[i]["psnr"] for i in them),
                    "faithful": sum(faithful) if faithful else None,
                    "told_ratio": float(np.median(told)) if told else None,
                    "images": len(them),
                }
            per_kind["methods"][method] = per
        out[kind] = per_kind
    return out


def markdown(result: dict) -> list[str]:
    """One table per kind for docs/benchmarks.md."""
    lines: list[str] = []
    for kind, per_kind in result["summary"].items():
        reference = per_kind["reference"]
        methods = per_kind["methods"]
        doses = sorted({float(d) for per in methods.values() for d in per})
        header = [kind, *(f"{d:g} e⁻/px" for d in doses), "worst", "no harm", "faithful"]
        rows = []
        for method, per in methods.items():
            cells = []
            for d in doses:
                p = per[str(d)]
                gain = "" if method == reference else f" ({p['gain']:+.2f})"
                cells.append(f"{fmt(p['psnr'])}{gain}")
            n = sum(p["images"] for p in per.values())
            worst = (
                "" if method == reference else f"{min(p['worst_gain'] for p in per.values()):+.2f}"
            )
            faithful = [p["faithful"] for p in per.values() if p["faithful"] is not None]
            rows.append(
                [
                    method,
                    *cells,
                    worst,
                    f"{sum(p['no_harm'] for p in per.values())}/{n}",
                    f"{sum(faithful)}/{n}" if faithful else "–",
                ]
            )
        lines += [markdown_table(header, rows), ""]
        # The noise told is the estimate's, the same for every model: the first one's.
        model = next(m for m, per in methods.items() if per[str(doses[0])]["told_ratio"])
        told = ", ".join(f"{fmt(methods[model][str(d)]['told_ratio'])}×" for d in doses)
        lines += [f"Noise the models were told over the true noise (median), by dose: {told}.", ""]
    lines.append(
        f"Mean PSNR (dB) over {result['images']} held-out images per dose; in brackets the "
        "mean gain over the best oracle-tuned classical method (the last classical row); "
        "worst: the worst single image's gain over it, at any dose."
    )
    lines.append(f"Machine: {result['machine']}; `{result['command']}`.")
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", help="NAME, PATH or LABEL=PATH_OR_NAME[@N]")
    p.add_argument("--kind", action="append", choices=KINDS, help="only these kinds")
    p.add_argument("--images-limit", type=int, default=CORE_IMAGES)
    p.add_argument("--quick", action="store_true", help="2 images, 2 doses")
    p.add_argument("--no-bm3d", dest="bm3d", action="store_false", help="skip BM3D (slow)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--json", type=pathlib.Path)
    p.add_argument("--tables-only", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    path = args.json or (None if args.quick else JSON)
    if args.tables_only:
        result = json.loads((path or JSON).read_text())
    else:
        models = tuple(parse_model_specs(args.model, ["default"]))
        specs = held_out_set()[: (2 if args.quick else args.images_limit)]
        doses = QUICK_DOSES if args.quick else DOSES
        kinds = tuple(args.kind or KINDS)
        cases = [(s, d, k) for k in kinds for s in specs for d in doses]
        started = time.perf_counter()
        rows: list = []
        with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(score_case, s, d, k, models, args.bm3d) for s, d, k in cases]
            for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
                rows += future.result()
                print(f"[{i}/{len(cases)}] {time.perf_counter() - started:.0f} s", flush=True)
        order = {(s.id, d, k): i for i, (s, d, k) in enumerate(cases)}
        rows.sort(key=lambda r: order[(r["image"], r["dose"], r["kind"])])
        result = {
            "command": "python benchmarks/other_noise.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": machine(),
            "images": len(specs),
            "models": [m.describe() for m in models],
            "rows": rows,
        }
        result["summary"] = summarise(result)
        if path is not None:
            dump_json(result, path, one_line=("rows",))
    print("\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
