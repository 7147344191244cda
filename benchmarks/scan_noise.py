"""A scanning detector's noise on held-out specimens: afterglow, line gains and offsets,
jitter, dark counts and a clipping converter.  Does a model beat colored-noise BM3D?

The realistic benchmark (``realistic.py``) records white shot and read noise; real scans
are not white.  This one records the same held-out images
(:func:`realistic.held_out_set`, the core set by default) as a scintillator detector on
a raster scan would (:func:`napari_pinned.noise.synthesis.record_stem_image`):

* **Recording** per image and dose (1, 3, 10, 30, 100 detected e⁻/px), drawn from a seed
  of the image's name and the dose: an afterglow τ uniform in 0.5–2.5 px, line gains of
  0–3 %, line offsets of 0–0.2 × the shot noise, row jitter 0–0.3 px, read noise 0.5 e⁻,
  0.05 dark e⁻/px, and a converter offset of 0.5 e⁻ clipped at zero.  The truth is the
  expected image *as recorded*: smeared by the afterglow (and shifted by it along x),
  without line gains or offsets (``record_stem_image``'s expected image).
* **Detector response** (``--response``): ``afterglow`` (above; what the default is
  trained on) or ``bandwidth``, a held-out family: no afterglow, each recorded pixel
  smeared symmetrically with its horizontal neighbours by a detector of finite bandwidth
  (``StemRecording.smear`` a uniform in 0.1–0.3, ``[a, 1 − 2a, a]``, signal and noise
  alike; the spectrum of ``a = 1/4`` has no noise at all at the Nyquist frequency), the
  other defects as above.  It shows whether a model keeps its footing on a correlation
  it was not drawn (the default fine-tuned further on the afterglow alone lost 2.6 dB on
  a smear of this kind, issue 20).  ``resampled``, another held-out family: the
  afterglow recordings above, then resampled as drift correction or registration does
  (:func:`napari_pinned.noise.scanning.resample_frame`: a rotation uniform in 1–4°, a
  shift uniform in 0.2–0.8 px along each axis, linear or cubic interpolation at even
  odds), the truth alike, and a border of the rotation's reach cut off: noise
  correlated along both axes.  ``upsampled``, a third held-out family: the resampled
  frames above, magnified by a factor uniform in 1.1–1.4 as well (a frame resized after
  recording, or registered onto a finer grid): noise correlated over more than a pixel
  along both axes, as in atomap's experimental ADF test image
  (``real_micrographs.py``).
* **Classical methods, tuned per image against the truth** (an oracle, as in
  ``realistic.py``): a Gaussian filter, and BM3D given the noise's power spectral
  density (``bm3d``'s ``sigma_psd`` array) after the generalised Anscombe transform.
  The transform uses the known gain per pixel (the afterglow's ``Σh²``), read noise and
  offset; the PSD is the residual's own (``|FFT(VST(noisy) − VST(truth))|²`` averaged
  over the slow-scan frequency, which keeps the afterglow's and the line offsets'
  shape; for resampled frames the 2D periodogram smoothed by a Gaussian of 2 bins, as
  their noise is correlated along both axes), scaled by a factor tuned over 0.35–4 (σ
  multiples).  A resampled frame's transform also takes the interpolation's share of
  the variance per pixel (that of unit white noise resampled alike).
* **Models** given with ``--model`` (default: the shipped ``default``), run as a user would
  (``denoise(noisy, model)``: told the noise a pixel carries,
  ``noise.correlation.pixel_equivalent``).  ``--variants`` adds each model told the raw
  Poisson–Gaussian fit ("told the fit", the behaviour before the correlation correction)
  and told the white noise of the image's dose, the zero-frequency level ("told the
  dose"), measured in the same run.
* **Metrics**: PSNR against the truth (``data_range`` = its max − min), the
  faithfulness verdict (:func:`napari_pinned.quality.faithfulness.faithfulness`,
  reference-free), **no harm** (output PSNR ≥ the input's), and **streaks**: the power
  of the residual's row means (``mean_x(output − truth)`` per row, squared, averaged
  over rows) over the noisy input's, in %.

Run::

    python benchmarks/scan_noise.py                      # core set, ~15 min on 2 cores
    python benchmarks/scan_noise.py --quick              # 2 images, 2 doses, ~1 min
    python benchmarks/scan_noise.py --model new=runs/x.pt --model default --variants
    python benchmarks/scan_noise.py --response bandwidth --variants
    python benchmarks/scan_noise.py --response resampled --variants
    python benchmarks/scan_noise.py --response upsampled --variants
    python benchmarks/scan_noise.py --tables-only        # re-print the table from the JSON

Writes ``benchmarks/scan_noise.json`` (``scan_noise_bandwidth.json``,
``scan_noise_resampled.json`` and ``scan_noise_upsampled.json`` for the held-out
families; nothing with ``--quick``);
``benchmarks/docs_tables.py`` writes their tables into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import pathlib
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _bench import (
    GAT,
    ModelSpec,
    bm3d_module,
    dump_json,
    fmt,
    geometric,
    load_spec,
    machine,
    markdown_table,
    parse_model_specs,
    tune,
)
from realistic import ImageSpec, _seed, held_out_set, make_clean

ROOT = pathlib.Path(__file__).resolve().parent.parent
JSON = ROOT / "benchmarks" / "scan_noise.json"
RESPONSES = ("afterglow", "bandwidth", "resampled", "upsampled")
JSONS = {
    "afterglow": JSON,
    "bandwidth": ROOT / "benchmarks" / "scan_noise_bandwidth.json",
    "resampled": ROOT / "benchmarks" / "scan_noise_resampled.json",
    "upsampled": ROOT / "benchmarks" / "scan_noise_upsampled.json",
}
DOSES = (1.0, 3.0, 10.0, 30.0, 100.0)
QUICK_DOSES = (1.0, 10.0)
READ_NOISE = 0.5  # e⁻
DARK = 0.05  # e⁻/px
ADC_OFFSET = 0.5  # e⁻, clipped at zero
CORE_IMAGES = 14
UPSAMPLED_ZOOM = (1.1, 1.4)  # the ``upsampled`` family's magnification
NOISY, GAUSSIAN, BM3D_PSD = "noisy", "Gaussian (VST)", "VST + BM3D (PSD)"
# BM3D's PSD scaled by factor² for σ factors 0.35–4 in steps of √2, starting at 1.
BM3D_GRID = tuple(geometric(0.354, 2**0.5, 8))
GAUSSIAN_GRID = tuple(geometric(0.25, 2**0.25, 25))


def recording(spec: ImageSpec, dose: float, response: str = "afterglow"):
    """The recording conditions of one image at one dose (seeded by both; the
    afterglow family's draws are the ones it always had)."""
    from napari_pinned.noise.synthesis import StemRecording

    rng = np.random.default_rng([_seed(spec.id), round(dose * 1000), 20])
    jitter = float(rng.uniform(0.0, 0.3))
    line = float(rng.uniform(0.0, 0.2)) * math.sqrt(dose + READ_NOISE**2)
    afterglow = float(rng.uniform(0.5, 2.5))
    line_gain = float(rng.uniform(0.0, 0.03))
    smear = 0.0
    if response == "bandwidth":
        afterglow, smear = 0.0, float(rng.uniform(0.1, 0.3))
    return StemRecording(
        dose,
        read_noise=READ_NOISE,
        row_jitter=jitter,
        line_noise=line,
        afterglow=afterglow,
        line_gain=line_gain,
        dark=DARK,
        adc_offset=ADC_OFFSET,
        smear=smear,
    )


@dataclass(frozen=True)
class Resampling:
    """How a ``resampled`` frame was resampled after recording (seeded by image and
    dose): :func:`napari_pinned.noise.scanning.resample_frame`'s arguments."""

    rotation: float
    shift: tuple[float, float]
    order: int
    zoom: float = 1.0

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The frame resampled, less a border as wide as the rotation moves a corner."""
        from napari_pinned.noise.scanning import resample_frame

        out = resample_frame(image, self.rotation, self.shift, self.order, zoom=self.zoom)
        margin = math.ceil(max(image.shape) / 2 * math.sin(math.radians(self.rotation))) + 1
        return out[margin:-margin, margin:-margin]

    def variance_share(self, shape: tuple[int, int]) -> float:
        """The per-pixel variance unit white noise keeps when resampled alike."""
        white = np.random.default_rng(0).standard_normal(shape)
        return float(np.var(self.apply(white)))


def resampling(spec: ImageSpec, dose: float, response: str) -> Resampling | None:
    """The resampling of a ``resampled`` or ``upsampled`` frame (the same draws, and an
    ``upsampled`` one's magnification drawn after them); None for the other families."""
    if response not in ("resampled", "upsampled"):
        return None
    rng = np.random.default_rng([_seed(spec.id), round(dose * 1000), 22])
    rotation = float(rng.uniform(1.0, 4.0))
    shift = (float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.2, 0.8)))
    order = int(rng.choice([1, 3]))
    zoom = float(rng.uniform(*UPSAMPLED_ZOOM)) if response == "upsampled" else 1.0
    return Resampling(rotation, shift, order, zoom)


def record(spec: ImageSpec, dose: float, response: str = "afterglow"):
    """``(noisy, truth, recording)``: one fixed draw per image and dose."""
    from napari_pinned.noise.synthesis import record_stem_image

    rec = recording(spec, dose, response)
    rng = np.random.default_rng([_seed(spec.id), round(dose * 1000), 21])
    noisy, truth = record_stem_image(make_clean(spec).image, rec, rng)
    noisy, truth = noisy.astype(np.float64), truth.astype(np.float64)
    resampled = resampling(spec, dose, response)
    if resampled is not None:
        noisy, truth = resampled.apply(noisy), resampled.apply(truth)
    return noisy, truth, rec


def oracle_vst(rec, share: float = 1.0) -> GAT:
    """The generalised Anscombe transform for the recording's known noise: per-pixel
    variance ``Σh²·λ`` (the afterglow's and the smear's shares, and a resampling's
    ``share``), read noise (smeared with the counts, as the smear comes last), the
    converter's offset."""
    from napari_pinned.noise.scanning import afterglow_response

    h = afterglow_response(rec.afterglow)
    a = rec.smear
    smear = float(np.sum(np.array([a, 1.0 - 2.0 * a, a]) ** 2)) * share
    return GAT(
        gain=float(np.sum(h**2)) * smear,
        sigma=rec.read_noise * math.sqrt(smear),
        mu=rec.adc_offset or 0.0,
    )


def oracle_psd(
    noisy: np.ndarray, truth: np.ndarray, gat: GAT, both_axes: bool = False
) -> np.ndarray:
    """The residual's power spectrum in the VST domain, averaged over the slow-scan
    frequency (the noise is stationary along y), or with ``both_axes`` (noise correlated
    along both, a resampled frame) its 2D periodogram smoothed by a Gaussian of 2 bins;
    in ``bm3d``'s convention (white noise of variance v has ``v · M · N`` everywhere)."""
    r = gat.forward(noisy) - gat.forward(truth)
    power = np.abs(np.fft.fft2(r - r.mean())) ** 2
    if both_axes:
        from scipy import ndimage

        return ndimage.gaussian_filter(power, 2.0, mode="wrap")
    return np.broadcast_to(power.mean(axis=0, keepdims=True), power.shape).copy()


def streaks(out: np.ndarray, truth: np.ndarray) -> float:
    """Mean square of the residual's row means."""
    return float(np.mean(np.mean(out - truth, axis=1) ** 2))


def score_case(
    spec: ImageSpec,
    dose: float,
    models: tuple[ModelSpec, ...],
    variants: bool,
    response: str = "afterglow",
) -> list:
    """Every method on one image at one dose: rows of the JSON."""
    import torch

    torch.set_num_threads(1)
    from napari_pinned import denoise
    from napari_pinned.noise.correlation import correlation_factor, noise_correlation
    from napari_pinned.noise.estimate import estimate_noise
    from napari_pinned.quality.faithfulness import faithfulness
    from napari_pinned.quality.metrics import psnr

    noisy, truth, rec = record(spec, dose, response)
    resampled = resampling(spec, dose, response)
    span = float(truth.max() - truth.min())
    base_streaks = streaks(noisy, truth)
    rows = []

    def row(method: str, out: np.ndarray, seconds: float, check: bool = False, **extra):
        entry = {
            "image": spec.id,
            "dose": dose,
            "afterglow": rec.afterglow,
            "smear": rec.smear,
            **({} if resampled is None else {"resampled": asdict(resampled)}),
            "method": method,
            "psnr": psnr(truth, out, data_range=span),
            "streaks_pct": 100.0 * streaks(out, truth) / base_streaks,
            "seconds": seconds,
            **extra,
        }
        if check:
            entry["faithful"] = bool(faithfulness(noisy, out, pixel_size=spec.pixel_size).faithful)
        rows.append(entry)

    row(NOISY, noisy, 0.0)
    gat = oracle_vst(rec, 1.0 if resampled is None else resampled.variance_share(noisy.shape))
    z = gat.forward(noisy)

    def score(out: np.ndarray) -> float:
        return psnr(truth, out, data_range=span)

    from scipy import ndimage

    best = tune(
        lambda s: gat.inverse(ndimage.gaussian_filter(z, s, mode="reflect")),
        score,
        GAUSSIAN_GRID,
        8,
        4,
    )
    row(GAUSSIAN, best.output, best.seconds, parameter=best.parameter)
    bm3d = bm3d_module()
    psd = oracle_psd(noisy, truth, gat, both_axes=resampled is not None)
    best = tune(lambda f: gat.inverse(bm3d.bm3d(z, sigma_psd=psd * f**2)), score, BM3D_GRID, 3, 1)
    row(BM3D_PSD, best.output, best.seconds, parameter=best.parameter)
    for spec_m in models:
        bundle = load_spec(spec_m)
        t0 = time.perf_counter()
        out = denoise(noisy, bundle, device="cpu", orientations=spec_m.orientations)
        row(spec_m.label, out, time.perf_counter() - t0, check=True)
        if variants:
            fit = estimate_noise(noisy)
            dose_level = fit.correlated(correlation_factor(noise_correlation(noisy)))
            for name, told in (("told the fit", fit), ("told the dose", dose_level)):
                t0 = time.perf_counter()
                out = denoise(noisy, bundle, device="cpu", noise=told)
                row(f"{spec_m.label} {name}", out, time.perf_counter() - t0, check=True)
    return rows


def summarise(result: dict) -> dict:
    """Per method and dose: mean PSNR gain over the oracle BM3D, worst image's gain,
    no-harm and faithful counts, mean streaks."""
    rows = result["rows"]
    doses = sorted({r["dose"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out: dict = {}
    for method in methods:
        per = {}
        for dose in doses:
            mine = {r["image"]: r for r in rows if r["method"] == method and r["dose"] == dose}
            ref = {r["image"]: r for r in rows if r["method"] == BM3D_PSD and r["dose"] == dose}
            noisy = {r["image"]: r for r in rows if r["method"] == NOISY and r["dose"] == dose}
            gains = [mine[i]["psnr"] - ref[i]["psnr"] for i in mine if i in ref]
            faithful = [r["faithful"] for r in mine.values() if "faithful" in r]
            per[str(dose)] = {
                "psnr": float(np.mean([r["psnr"] for r in mine.values()])),
                "gain": float(np.mean(gains)) if gains else None,
                "worst_gain": float(np.min(gains)) if gains else None,
                "no_harm": sum(mine[i]["psnr"] >= noisy[i]["psnr"] for i in mine if i in noisy),
                "faithful": sum(faithful) if faithful else None,
                "images": len(mine),
                "streaks_pct": float(np.mean([r["streaks_pct"] for r in mine.values()])),
            }
        out[method] = per
    return out


def markdown(result: dict) -> list[str]:
    """The table for docs/benchmarks.md."""
    summary = result["summary"]
    doses = sorted({float(d) for per in summary.values() for d in per})
    header = ["method", *(f"{d:g} e⁻/px" for d in doses), "streaks", "no harm", "faithful"]
    lines = []
    rows = []
    for method, per in summary.items():
        cells = []
        for d in doses:
            p = per[str(d)]
            gain = "" if method == BM3D_PSD or p["gain"] is None else f" ({p['gain']:+.2f})"
            cells.append(f"{fmt(p['psnr'])}{gain}")
        n = sum(p["images"] for p in per.values())
        harm = sum(p["no_harm"] for p in per.values())
        faithful = [p["faithful"] for p in per.values() if p["faithful"] is not None]
        streak = np.mean([p["streaks_pct"] for p in per.values()])
        rows.append(
            [
                method,
                *cells,
                f"{streak:.0f} %",
                f"{harm}/{n}",
                f"{sum(faithful)}/{n}" if faithful else "–",
            ]
        )
    lines.append(markdown_table(header, rows))
    worst = {
        m: min(per[str(d)]["worst_gain"] for d in doses if per[str(d)]["worst_gain"] is not None)
        for m, per in summary.items()
        if m not in (BM3D_PSD,)
    }
    lines.append("")
    lines.append(
        f"Mean PSNR (dB) over {result['images']} held-out images per dose; in brackets the "
        f"mean gain over {BM3D_PSD} (oracle-tuned). Worst single-image gain: "
        + ", ".join(f"{m} {w:+.2f} dB" for m, w in worst.items())
        + ". Streaks: the residual's row-mean power, % of the noisy input's."
    )
    lines.append(f"Machine: {result['machine']}; `{result['command']}`.")
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", help="NAME, PATH or LABEL=PATH_OR_NAME[@N]")
    p.add_argument("--images-limit", type=int, default=CORE_IMAGES)
    p.add_argument("--quick", action="store_true")
    p.add_argument(
        "--response",
        choices=RESPONSES,
        default="afterglow",
        help="the detector's response along the fast scan (bandwidth: a held-out smear; "
        "resampled: afterglow recordings resampled after recording; upsampled: resampled "
        "and magnified 1.1-1.4x)",
    )
    p.add_argument(
        "--variants", action="store_true", help="also tell each model the raw fit and the dose"
    )
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--json", type=pathlib.Path)
    p.add_argument("--tables-only", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    path = args.json or (None if args.quick else JSONS[args.response])
    if args.tables_only:
        result = json.loads((path or JSONS[args.response]).read_text())
    else:
        models = tuple(parse_model_specs(args.model, ["default"]))
        specs = held_out_set()[: (2 if args.quick else args.images_limit)]
        doses = QUICK_DOSES if args.quick else DOSES
        cases = [(s, d) for s in specs for d in doses]
        started = time.perf_counter()
        rows: list = []
        with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
            futures = [
                pool.submit(score_case, s, d, models, args.variants, args.response)
                for s, d in cases
            ]
            for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
                rows += future.result()
                print(f"[{i}/{len(cases)}] {time.perf_counter() - started:.0f} s", flush=True)
        order = {(s.id, d): i for i, (s, d) in enumerate(cases)}
        rows.sort(key=lambda r: order[(r["image"], r["dose"])])
        result = {
            "command": "python benchmarks/scan_noise.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": machine(),
            "images": len(specs),
            "response": args.response,
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
