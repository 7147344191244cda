"""Real HAADF micrographs and another simulator's images: is a model faithful off our simulator?

A network can learn the quirks of the simulator it was trained on.  This benchmark
scores the models on data our simulator never made, from the example data of the PyPI
package ``tk-r-em`` 1.0.4 (I. Lobato, T. Friedrich and S. Van Aert, "Deep convolutional
neural networks to restore single-shot electron microscopy images", arXiv:2303.17025,
2023 — the citation the package's README gives):

* **Real micrographs** (no ground truth): ``tk_r_em/test_data/exp_hrstem.h5`` (key
  ``x``: five 768² uint16 atomic-resolution HAADF images) and ``sgl_exp_hrstem.h5`` (one
  2048² image).  Scored reference-free: the noise model fitted to each image
  (:func:`napari_pinned.noise.estimate.estimate_noise`) and the faithfulness readout
  (:func:`napari_pinned.quality.faithfulness.faithfulness`: share of the input's strong Bragg
  reflections kept within ±25 %, invented reflections, verdict) with its residual checks
  (residual variance over the estimated noise variance, reflections left in the
  residual).  As a classical reference, VST + BM3D at the nominal σ = 1 (there is no
  truth to tune against; the VST uses the fitted noise model) on the 768² images.
  Where the fitted noise is essentially Gaussian, the "VST" is a plain normalisation to
  unit noise (``_bench.vst_from_noise``).
* **MULTEM pairs**: ``sfr_hrstem.h5`` (keys ``x`` noisy, ``y`` clean: eight 256² pairs
  from the tk-r-em authors' simulations — MULTEM, their multislice code, not our
  incoherent model — degraded with tk-r-em's own detector and scan noise model).
  Their noise is *not* Poisson at a known dose, so the VST uses the Poisson–Gaussian
  model fitted to each noisy image with ``estimate_noise`` (said again in the tables).
  ``x`` is on a slightly different scale than ``y`` (``x ≈ 0.9 y + 2000``), so next to
  the plain PSNR against ``y`` every output is also scored after the least-squares
  affine map ``a · out + b`` onto ``y`` ("affine PSNR", an oracle that takes the
  calibration out of the comparison, the same for every method).  Gaussian and
  VST + BM3D are tuned per pair on the affine PSNR (oracle).

* **atomap's ADF image** (no ground truth): ``atomap/tests/datasets/test_ADF_cropped.hdf5``
  of the PyPI package ``atomap`` 0.4.2 (M. Nord et al., "Atomap: a new software tool for
  the automated analysis of atomic resolution images using two-dimensional Gaussian
  fitting", Adv. Struct. Chem. Imaging 3, 9, 2017), an experimental 400 × 380 ADF image
  stored as float16, scored as the real micrographs are.  Its noise is correlated along
  both axes (a resampled frame), much more than the frames the default was trained on.

The data are GPL-3 licensed: they are used here as benchmark data only, downloaded at
benchmark time (``pip download --no-deps tk-r-em==1.0.4``, ``pip download --no-deps
atomap==0.4.2``) into a cache directory
(default ``~/.cache/napari-pinned-bench/``, or ``$NAPARI_PINNED_BENCH_CACHE``) and read
from the source archive with h5py.  They are never committed to this BSD project.

Run::

    python benchmarks/real_micrographs.py                        # shipped default + cdn
    python benchmarks/real_micrographs.py --model new=/tmp/exp/quick.pt --model default
    python benchmarks/real_micrographs.py --quick                # 2 real images, 2 pairs
    python benchmarks/real_micrographs.py --tables-only          # re-print from the JSON

Writes ``benchmarks/real_micrographs.json`` and ``docs/images/real-micrographs.png``
(crops of input | model output | residual) unless ``--quick``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _bench import (
    CLASSICAL,
    HIGH_FREQUENCY,
    LINE_PATTERN_BAND,
    bm3d_available,
    dump_json,
    finite,
    fmt,
    high_frequency_left,
    line_pattern_share,
    load_spec,
    machine,
    markdown_table,
    parse_model_specs,
    run_classical,
    save_png,
    vst_from_noise,
)

from napari_pinned.denoising.denoiser import denoise
from napari_pinned.noise.estimate import estimate_noise
from napari_pinned.quality.faithfulness import faithfulness as _faithfulness
from napari_pinned.quality.metrics import compute_metrics

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE, VERSION = "tk-r-em", "1.0.4"
SDIST = f"tk_r_em-{VERSION}.tar.gz"
DATA = f"tk_r_em-{VERSION}/tk_r_em/test_data"
REAL_FILES = ("exp_hrstem.h5", "sgl_exp_hrstem.h5")
PAIRS_FILE = "sfr_hrstem.h5"
# A second source of real data: the experimental ADF image of atomap's tests.
ATOMAP, ATOMAP_VERSION = "atomap", "0.4.2"
ATOMAP_WHEEL = f"atomap-{ATOMAP_VERSION}-py3-none-any.whl"
ATOMAP_FILE = "atomap/tests/datasets/test_ADF_cropped.hdf5"
ATOMAP_KEY = "Experiments/__unnamed__/data"
BM3D = "VST + BM3D"
NOISY = "noisy"
CROP = 192


# --------------------------------------------------------------------------- the data


def cache_dir(given: pathlib.Path | None) -> pathlib.Path:
    if given is not None:
        return given.expanduser()
    env = os.environ.get("NAPARI_PINNED_BENCH_CACHE")
    return (
        pathlib.Path(env).expanduser()
        if env
        else pathlib.Path.home() / ".cache/napari-pinned-bench"
    )


def _pip_download(cache: pathlib.Path, name: str, *, what: str, binary: str) -> pathlib.Path:
    """``cache / name``, downloaded with ``pip download --no-deps WHAT BINARY :all:`` when
    missing (the data are GPL-3: benchmark data only, never committed)."""
    path = cache / name
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"# downloading {what} (GPL-3 data) into {cache}")
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--no-deps"),
                *(what, binary, ":all:", "-d", str(cache)),
            ],
            check=True,
        )
    if not path.is_file():
        raise SystemExit(f"pip did not leave {name} in {cache}")
    return path


def fetch_sdist(cache: pathlib.Path) -> pathlib.Path:
    """The tk-r-em source archive (≈ 190 MB) in ``cache``, downloaded when missing."""
    return _pip_download(cache, SDIST, what=f"{PACKAGE}=={VERSION}", binary="--no-binary")


def fetch_atomap(cache: pathlib.Path) -> pathlib.Path:
    """atomap's wheel (≈ 1 MB; its tests' data) in ``cache``, downloaded when missing."""
    return _pip_download(
        cache, ATOMAP_WHEEL, what=f"{ATOMAP}=={ATOMAP_VERSION}", binary="--only-binary"
    )


def load_atomap(wheel: pathlib.Path) -> list[tuple[str, np.ndarray]]:
    """atomap's experimental ADF test image (400 × 380, stored as float16)."""
    import zipfile

    import h5py

    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(ATOMAP_FILE)
    with h5py.File(io.BytesIO(data), "r") as f:
        image = np.asarray(f[ATOMAP_KEY][()], np.float32)
    return [("atomap ADF", image)]


def read_h5(archive: tarfile.TarFile, name: str) -> dict[str, np.ndarray]:
    import h5py

    member = archive.extractfile(f"{DATA}/{name}")
    if member is None:
        raise SystemExit(f"{name} is not in the archive")
    with h5py.File(io.BytesIO(member.read()), "r") as f:
        return {key: f[key][()] for key in f}


def load_data(sdist: pathlib.Path) -> tuple[list[tuple[str, np.ndarray]], np.ndarray, np.ndarray]:
    """``(real images [(name, uint16 image)], noisy pairs x, clean pairs y)``."""
    with tarfile.open(sdist) as archive:
        exp = read_h5(archive, REAL_FILES[0])["x"]
        single = read_h5(archive, REAL_FILES[1])["x"]
        pairs = read_h5(archive, PAIRS_FILE)
    real = [(f"exp_hrstem #{i}", np.asarray(exp[i, 0])) for i in range(exp.shape[0])]
    real.append(("sgl_exp_hrstem", np.asarray(single)))
    return real, np.asarray(pairs["x"][:, 0]), np.asarray(pairs["y"][:, 0])


# --------------------------------------------------------------------------- scoring


def _faithful(image: np.ndarray, out: np.ndarray, noise) -> dict:
    f = _faithfulness(image, out, noise=noise)
    return {
        "faithful": bool(f.faithful),
        "kept_fraction": finite(f.kept_fraction),
        "n_peaks": f.n_peaks,
        "n_kept": f.n_kept,
        "n_invented": f.n_invented,
        "n_in_residual": f.n_in_residual,
        "residual_noise_ratio": finite(f.residual_noise_ratio),
        "summary": f.summary(),
        "warnings": list(f.warnings),
    }


def affine(out: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``a · out + b`` closest to ``truth`` in the least-squares sense."""
    a, b = np.polyfit(out.ravel().astype(np.float64), truth.ravel().astype(np.float64), 1)
    return a * out + b


def score_real(real, models, args) -> tuple[list[dict], dict]:
    rows, crops = [], {}
    shown = example_model([m.label for m in models])
    for name, image in real:
        x = image.astype(np.float64)
        noise = estimate_noise(x)
        base = {"image": name, "shape": list(image.shape), "dtype": str(image.dtype)}
        base["noise"] = noise.describe()
        base["estimated_counts"] = finite(noise.mean_counts)
        outputs = {}
        for model in models:
            t0 = time.perf_counter()
            out = np.asarray(denoise(image, load_spec(model), device="cpu"), np.float64)
            seconds = time.perf_counter() - t0
            rows.append(
                dict(
                    base,
                    method=model.label,
                    seconds=round(seconds, 2),
                    high_frequency_left_pct=round(high_frequency_left(x, out), 2),
                    line_pattern_pct=round(line_pattern_share(out), 1),
                    **_faithful(x, out, noise),
                )
            )
            outputs[model.label] = out
        if args.bm3d and (max(image.shape) <= 1024 or args.bm3d_large):
            t0 = time.perf_counter()
            out = _bm3d(x, vst_from_noise(noise), 1.0)
            rows.append(
                dict(
                    base,
                    method=f"{BM3D} (σ = 1)",
                    seconds=round(time.perf_counter() - t0, 2),
                    high_frequency_left_pct=round(high_frequency_left(x, out), 2),
                    line_pattern_pct=round(line_pattern_share(out), 1),
                    **_faithful(x, out, noise),
                )
            )
        if shown in outputs:
            h, w = image.shape
            r0, c0 = (h - CROP) // 2, (w - CROP) // 2
            crop = np.s_[r0 : r0 + CROP, c0 : c0 + CROP]
            crops[name] = (x[crop], outputs[shown][crop])
        print(f"# real: {name} {image.shape} — {noise.describe()}", flush=True)
    return rows, crops


def _bm3d(x: np.ndarray, gat, factor: float) -> np.ndarray:
    method = next(m for m in CLASSICAL if m.name == BM3D)
    return method.run(x, gat, factor)


def score_pairs(xs: np.ndarray, ys: np.ndarray, models, args) -> list[dict]:
    rows = []
    classical = [m for m in CLASSICAL if m.name == "Gaussian" or (m.name == BM3D and args.bm3d)]
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        rows += score_pair(i, x.astype(np.float64), y.astype(np.float64), classical, models, args)
    return rows


def score_pair(i: int, x: np.ndarray, y: np.ndarray, classical, models, args) -> list[dict]:
    """Every method on one MULTEM pair (noisy ``x``, clean ``y``)."""
    rows = []
    data_range = float(y.max() - y.min())
    noise = estimate_noise(x)
    gat = vst_from_noise(noise)
    base = {"pair": i, "noise": noise.describe(), "estimated_counts": finite(noise.mean_counts)}

    def psnr_affine(out: np.ndarray) -> float:
        fitted = affine(out, y)
        return float(10 * np.log10(data_range**2 / np.mean((fitted - y) ** 2)))

    def add(method: str, out: np.ndarray, seconds: float | None, **extra) -> None:
        plain = compute_metrics(out, y, data_range=data_range)
        fitted = compute_metrics(affine(out, y), y, data_range=data_range)
        row = dict(base, method=method, seconds=finite(seconds), **extra)
        row.update(psnr=finite(plain.psnr), ssim=finite(plain.ssim))
        row.update(psnr_affine=finite(fitted.psnr), ssim_affine=finite(fitted.ssim))
        if method != NOISY:
            row.update({k: v for k, v in _faithful(x, out, noise).items() if k != "warnings"})
        rows.append(row)

    add(NOISY, x, None)
    for method in classical:
        t = run_classical(method, x, gat, psnr_affine, quick=args.quick)
        add(method.name, t.output, t.seconds, parameter=t.parameter, at_edge=t.at_edge)
    for model in models:
        t0 = time.perf_counter()
        out = denoise(x.astype(np.float32), load_spec(model), device="cpu")
        add(model.label, np.asarray(out, np.float64), time.perf_counter() - t0)
    print(f"# MULTEM pair {i}: {noise.describe()}", flush=True)
    return rows


def _noise_cell(row: dict) -> str:
    counts = row.get("estimated_counts")
    return f"≈ {counts:.3g} e⁻/px" if counts is not None else row["noise"]


def example_model(labels: list[str]) -> str:
    if "default" in labels:
        return "default"
    return next((m for m in labels if m != "cdn"), labels[0] if labels else "")


# --------------------------------------------------------------------------- tables


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def markdown(result: dict) -> str:
    """The tables of this benchmark, from the JSON alone."""
    parts = []
    real = result["real"]
    if real:
        methods = list(dict.fromkeys(r["method"] for r in real))
        images = list(dict.fromkeys(r["image"] for r in real))
        body = []
        for name in images:
            first = next(r for r in real if r["image"] == name)
            for j, m in enumerate(methods):
                r = next((r for r in real if r["image"] == name and r["method"] == m), None)
                if r is None:
                    continue
                where = [name, _noise_cell(first)] if j == 0 else ["", ""]
                if "faithful" not in r:
                    body.append([name, first["noise"], m, *["–"] * 7, fmt(r["seconds"])])
                    continue
                left = r.get("high_frequency_left_pct")
                lines = r.get("line_pattern_pct")
                body.append(
                    [
                        *where,
                        m,
                        "yes" if r["faithful"] else "**no**",
                        f"{r['n_kept']}/{r['n_peaks']}",
                        str(r["n_invented"]),
                        fmt(r["residual_noise_ratio"]),
                        str(r["n_in_residual"]),
                        "–" if left is None else f"{left:.1f} %",
                        "–" if lines is None else f"{lines:.0f} %",
                        fmt(r["seconds"], ".1f"),
                    ]
                )
        parts.append(
            "Real HAADF micrographs (tk-r-em 1.0.4 example data; atomap 0.4.2's ADF test "
            "image), no ground truth: noise "
            "fitted to each image, and the faithfulness readout of each output — verdict, "
            "strong reflections kept within ±25 %, invented reflections, residual variance "
            "over the estimated noise variance (≈ 1 for a residual that is just the noise), "
            "reflections left in the residual, the output's power above "
            f"{HIGH_FREQUENCY:g} cycles/px (where a probe-limited image has no signal) as a "
            "share of the input's, how much of that repeats in every scan line (within "
            f"{LINE_PATTERN_BAND:g} cycles/px of zero along y: a pattern synchronous with the "
            "scan), seconds:\n\n"
            + markdown_table(
                [
                    *("image", "estimated noise", "method", "faithful", "kept", "invented"),
                    *("residual / noise", "in residual", "above 0.4 c/px", "of it in lines"),
                    "s",
                ],
                body,
            )
        )
        body = []
        for m in methods:
            sel = [r for r in real if r["method"] == m and "faithful" in r]
            if sel:
                body.append(
                    [
                        m,
                        f"{sum(r['faithful'] for r in sel)}/{len(sel)}",
                        fmt(_mean([r["kept_fraction"] for r in sel])),
                        fmt(_mean([r["n_invented"] for r in sel]), ".1f"),
                        fmt(_mean([r["residual_noise_ratio"] for r in sel])),
                    ]
                )
        parts.append(
            "Summary over the real images:\n\n"
            + markdown_table(
                ["method", "faithful", "mean kept", "mean invented", "residual / noise"], body
            )
        )
    pairs = result["pairs"]
    if pairs:
        methods = list(dict.fromkeys(r["method"] for r in pairs))
        body = []
        for m in methods:
            sel = [r for r in pairs if r["method"] == m]
            faith = [r for r in sel if "faithful" in r]
            body.append(
                [
                    m,
                    fmt(_mean([r["psnr"] for r in sel])),
                    fmt(_mean([r["ssim"] for r in sel]), ".3f"),
                    fmt(_mean([r["psnr_affine"] for r in sel])),
                    fmt(_mean([r["ssim_affine"] for r in sel]), ".3f"),
                    f"{sum(r['faithful'] for r in faith)}/{len(faith)}" if faith else "–",
                ]
            )
        parts.append(
            f"MULTEM pairs (tk-r-em `{PAIRS_FILE}`: {len({r['pair'] for r in pairs})} × 256², "
            "a different simulator and noise model; the VST uses the noise fitted with "
            "`estimate_noise`, Gaussian and VST + BM3D are tuned per pair on the affine PSNR "
            "against the clean image — an oracle), mean over pairs:\n\n"
            + markdown_table(
                ["method", "PSNR (dB)", "SSIM", "affine PSNR", "affine SSIM", "faithful"], body
            )
        )
        body = []
        for i in sorted({r["pair"] for r in pairs}):
            sel = {r["method"]: r for r in pairs if r["pair"] == i}
            body.append(
                [str(i), _noise_cell(sel[NOISY])]
                + [fmt(sel[m]["psnr_affine"]) if m in sel else "–" for m in methods]
            )
        parts.append(
            "Affine PSNR (dB) per MULTEM pair:\n\n"
            + markdown_table(["pair", "estimated noise", *methods], body)
        )
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------- figure


def plot(crops: dict, label: str, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(crops)
    fig, axes = plt.subplots(len(names), 3, figsize=(8.4, 2.95 * len(names)))
    axes = np.atleast_2d(axes)
    for row, name in enumerate(names):
        x, out = crops[name]
        lo, hi = np.percentile(x, (0.5, 99.5))
        residual = x - out
        r = np.percentile(np.abs(residual), 99.5)
        panels = ((x, "input", lo, hi, "gray"), (out, label, lo, hi, "gray"))
        panels += ((residual, "residual (input − output)", -r, r, "RdBu_r"),)
        for col, (img, title, vmin, vmax, cmap) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_title(f"{name}: {title}" if col == 0 else title, fontsize=9)
            ax.axis("off")
    fig.suptitle(f"Real micrographs (tk-r-em example data, atomap ADF), central {CROP}² crops")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path, 80)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        metavar="[LABEL=]PATH_OR_NAME",
        help="a model to score (repeatable); default: the shipped 'default' and 'cdn'",
    )
    parser.add_argument("--cache", type=pathlib.Path, help="where the tk-r-em archive is kept")
    parser.add_argument("--quick", action="store_true", help="2 real images, 2 pairs, coarse grids")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-bm3d", dest="bm3d", action="store_false", help="skip VST + BM3D")
    parser.add_argument("--bm3d-large", action="store_true", help="BM3D on the 2048² image too")
    parser.add_argument(
        "--json", type=pathlib.Path, help="default: benchmarks/real_micrographs.json"
    )
    parser.add_argument("--images", type=pathlib.Path, help="default: docs/images")
    parser.add_argument("--markdown", type=pathlib.Path, help="also write the tables here")
    parser.add_argument(
        "--tables-only", action="store_true", help="re-print the tables from --json"
    )
    args = parser.parse_args()
    json_path = args.json or (None if args.quick else ROOT / "benchmarks" / "real_micrographs.json")
    image_dir = args.images or (None if args.quick else ROOT / "docs" / "images")
    if args.tables_only:
        result = json.loads(
            (json_path or ROOT / "benchmarks" / "real_micrographs.json").read_text()
        )
        print(markdown(result))
        return

    import torch

    torch.set_num_threads(args.threads)
    if args.bm3d and not bm3d_available():
        print("# bm3d not installed (pip install -e '.[benchmarks]'): VST + BM3D left out")
        args.bm3d = False
    models = parse_model_specs(args.model, ["default", "cdn"])
    sdist = fetch_sdist(cache_dir(args.cache))
    real, xs, ys = load_data(sdist)
    wheel = fetch_atomap(cache_dir(args.cache))
    real += load_atomap(wheel)
    if args.quick:
        real, xs, ys = real[:2], xs[:2], ys[:2]
    start = time.perf_counter()
    real_rows, crops = score_real(real, models, args)
    pair_rows = score_pairs(xs, ys, models, args)
    seconds = time.perf_counter() - start
    result = {
        "meta": {
            "benchmark": "real micrographs and MULTEM pairs (benchmarks/real_micrographs.py)",
            "date": time.strftime("%Y-%m-%d"),
            "machine": machine(),
            "threads": args.threads,
            "seconds": round(seconds),
            "quick": args.quick,
            "data": f"{PACKAGE}=={VERSION} sdist {SDIST}: "
            + ", ".join(f"{DATA}/{name}" for name in (*REAL_FILES, PAIRS_FILE))
            + f"; {ATOMAP}=={ATOMAP_VERSION} wheel {ATOMAP_WHEEL}: {ATOMAP_FILE}",
            "data_sha256": hashlib.sha256(sdist.read_bytes()).hexdigest(),
            "atomap_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
            "data_license": "GPL-3.0 (tk-r-em, atomap); used as benchmark data only, "
            "never committed",
            "models": [m.describe() for m in models],
            "figure_model": example_model([m.label for m in models]),
        },
        "real": real_rows,
        "pairs": pair_rows,
    }
    text = markdown(result)
    print()
    print(text)
    print(f"# scored in {seconds / 60:.1f} min")
    if json_path is not None:
        dump_json(result, json_path, one_line=("real", "pairs"))
        print(f"# wrote {json_path}")
    if args.markdown:
        args.markdown.write_text(text)
    if image_dir is not None and crops:
        path = image_dir / "real-micrographs.png"
        plot(crops, result["meta"]["figure_model"], path)
        print(f"# wrote {path}")


if __name__ == "__main__":
    main()
