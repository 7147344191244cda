"""``napari-pinned demo``: the main job headlessly — simulate, noise, a short training,
denoise a material the model never saw, score against the noisy input, a flat image,
a median filter and a shipped model.

The recipe below is fixed (not the training defaults): ``benchmarks/demo.py`` runs
this command and the docs quote its ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_pinned._util.jobs import run_job
from napari_pinned.cli.checks import check_finite_output, check_torch_device
from napari_pinned.cli.exits import EXIT_OK
from napari_pinned.cli.options import add_device, positive_int, subparser
from napari_pinned.cli.progress import ProgressBar, duration
from napari_pinned.cli.signals import import_torch
from napari_pinned.io.safe_write import check_writable_folder, write_together
from napari_pinned.physics.defaults import DEFAULT_PIXEL_SIZE

#: Materials the demo trains on (the paper's training split).
DEMO_TRAINING = ("InN", "graphene", "ZrO2", "AlGaN", "NaCN")
#: The shipped model the demo compares with: the one trained on CDN noise, as the demo's.
DEMO_SHIPPED = "cdn"
#: The CDN levels the held-out material is denoised at.
DEMO_LEVELS = range(1, 6)
#: The smallest image edge the demo's patches and network need.
DEMO_MIN_SIZE = 64
#: The summary figure's columns, but for the shipped model's ("<name> model").
DEMO_COLUMNS = ("clean", "noisy", "demo model")
# The summary figure: pixels between panels, around a label; the title of the row labels.
_GAP = 4
_LABEL_PAD = 6
_LEVELS_TITLE = "CDN"


def add_parser(sub: Any) -> None:
    """Add ``demo`` to the subcommands ``sub``."""
    p = subparser(
        sub,
        "demo",
        "the whole path headlessly: simulate, noise, train, denoise, score",
        "Simulate five training materials, train a small model on CDN noise, denoise a\n"
        f"material it never saw at CDN levels 1–5 and compare with the noisy input, a flat\n"
        f"image at the true mean, a median filter and the shipped '{DEMO_SHIPPED}' model.\n"
        "Writes the images, summary.png, metrics.csv, metrics.json and the model.  About 2\n"
        "minutes on 2 CPU cores with the defaults.",
        "  napari-pinned demo --output-dir pinned-demo\n"
        "  napari-pinned demo --material SrTiO3 --steps 4000 --output-dir longer-demo",
    )
    p.add_argument("--output-dir", type=Path, default=Path("pinned-demo"), help="output folder")
    p.add_argument("--material", default="BaTiO3", help="held-out material to denoise")
    p.add_argument("--size", type=positive_int, default=256, help="image edge, px")
    p.add_argument("--steps", type=positive_int, default=1500, help="training steps")
    p.add_argument("--width", type=positive_int, default=8, help="base channel count")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Simulate → noise → short training → denoise → metrics; write the files."""
    out = _prepare(args)
    check_torch_device(args.device)
    import_torch()
    size, px = args.size, DEFAULT_PIXEL_SIZE

    from napari_pinned.nn.model_files import shipped_model
    from napari_pinned.nn.resolve import load_model
    from napari_pinned.physics.simulate import simulate
    from napari_pinned.quality.metrics import format_metrics_table

    bundle, started = _train(args, size, px)
    print(f"3. denoising {args.material} (never seen in training) at CDN levels 1–5")
    truth = simulate(args.material, shape=size, pixel_size=px, seed=99).image
    shipped = shipped_model(DEMO_SHIPPED)
    comparison = load_model(DEMO_SHIPPED) if shipped and shipped.path.is_file() else None
    methods = ["noisy", "flat image (true mean)", "median 3×3", "PINNED (demo model)"]
    if comparison is not None:
        methods.append(f"PINNED ({DEMO_SHIPPED} model)")
    rows, results, images, panels = _compare(args, bundle, comparison, truth, methods)
    for name, data in images.items():
        check_finite_output(data, name)
    summary = {
        "material": args.material,
        "training_materials": list(DEMO_TRAINING),
        "size": size,
        "pixel_size": px,
        "steps": args.steps,
        "width": args.width,
        "shipped_model": DEMO_SHIPPED if comparison is not None else None,
        "seconds": round(time.perf_counter() - started, 1),
        "methods": methods,
        "levels": {str(level): values for level, values in results.items()},
    }
    titles = list(DEMO_COLUMNS)
    if comparison is not None:
        titles.append(f"{DEMO_SHIPPED} model")
    figure = _summary_figure(panels, truth, titles)
    _write_files(out, bundle, images, figure, results, summary)
    print(format_metrics_table(rows))
    columns = " | ".join(titles)
    print(f"files in {out}/: summary.png (rows: levels 1–5; columns: {columns}),")
    print("  metrics.csv, metrics.json, the images and demo-model.pt")
    return EXIT_OK


def _prepare(args: argparse.Namespace) -> Path:
    """Check the demo's options and make its output folder, before any slow work.

    Returns
    -------
    Path
        The output folder (created if missing, checked writable).

    Raises
    ------
    ValueError
        For an unknown material, an unusable output folder, a size under 64 px, or
        images that would not fit in memory.
    """
    from napari_pinned.physics.materials import get_material

    get_material(args.material)
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if not out.parent.is_dir():
        raise ValueError(f"{out}: folder {out.parent} does not exist")
    out.mkdir(exist_ok=True)
    check_writable_folder(out / "demo-model.pt")
    size, px = args.size, DEFAULT_PIXEL_SIZE
    if size < DEMO_MIN_SIZE:
        raise ValueError(f"--size {size}: the demo needs at least {DEMO_MIN_SIZE} px")
    from napari_pinned.physics.probe import AberratedProbe
    from napari_pinned.physics.rendering import check_simulation_memory

    check_simulation_memory(size, px, AberratedProbe(), f"simulating {size}² px images")
    return out


def _train(args: argparse.Namespace, size: int, px: float) -> tuple[Any, float]:
    """Steps 1 and 2: simulate the training materials, train the demo model on them.

    Returns
    -------
    bundle
        The trained model.
    started : float
        ``time.perf_counter()`` when training began (the summary's ``seconds`` count
        from there).
    """
    from napari_pinned.physics.simulate import simulate
    from napari_pinned.training.run import train

    names = list(DEMO_TRAINING)
    print(f"1. simulating training materials {', '.join(names)} ({size}² px, {px} Å/px)")
    clean = [simulate(n, shape=size, pixel_size=px, seed=i).image for i, n in enumerate(names)]
    print(f"2. training a small model for {args.steps} steps on synthetic CDN levels 1–5")
    config = _train_config(args, size)
    started = time.perf_counter()
    job = train(config, clean, seed=0, device=args.device)
    bar = ProgressBar(config.steps, "   train")
    try:
        bundle = run_job(
            job, lambda p: bar.update(p.step, f"loss {p.loss.total:.4f} ETA {duration(p.eta)}")
        )
    finally:
        bar.close()
    return bundle, started


def _train_config(args: argparse.Namespace, size: int) -> Any:
    """The demo's short training run: a small U-Net on synthetic CDN levels 1–5."""
    from napari_pinned.settings import LossWeights, ModelConfig, TrainConfig

    return TrainConfig(
        # Direct output and plain MSE: what benchmarks/quality.py measured best.
        model=ModelConfig.preset("unet", width=args.width, depth=3, residual=False),
        loss_weights=LossWeights.none(),
        steps=args.steps,
        batch_size=8,
        patch_size=min(64, size // 2),
        learning_rate=1e-3,
        validate_every=max(1, args.steps // 5),
    )


def _compare(
    args: argparse.Namespace,
    bundle: Any,
    comparison: Any,
    truth: np.ndarray,
    methods: list[str],
) -> tuple[dict[str, Any], dict[int, dict[str, Any]], dict[str, np.ndarray], list]:
    """Noise ``truth`` at CDN levels 1–5 and score every method against it.

    Returns
    -------
    rows : dict
        ``"L<level> <method>"`` → metrics, for the printed table.
    results : dict
        level → method → metrics as a dict, for the CSV and JSON files.
    images : dict
        File name → image to write (the reference, each level's noisy and denoised).
    panels : list
        Per level, the images of the summary figure's row.
    """
    from scipy.ndimage import median_filter

    from napari_pinned.denoising.denoiser import denoise
    from napari_pinned.noise.synthesis import add_cdn_noise
    from napari_pinned.quality.metrics import compute_metrics

    # A flat image at the true mean: the score any method must beat to have found the
    # lattice at all (at levels 4–5 some do not).
    flat = np.full_like(truth, float(truth.mean()))
    rows: dict[str, Any] = {}
    results: dict[int, dict[str, Any]] = {}
    images: dict[str, np.ndarray] = {"reference.tif": truth}
    panels = []
    for level in DEMO_LEVELS:
        noisy = add_cdn_noise(truth, level, seed=level)
        output = denoise(noisy, bundle, device=args.device)
        outputs = {
            "noisy": noisy,
            "flat image (true mean)": flat,
            "median 3×3": median_filter(noisy, 3),
            "PINNED (demo model)": output,
        }
        if comparison is not None:
            outputs[methods[-1]] = denoise(noisy, comparison, device=args.device)
        results[level] = {}
        for method in methods:
            metrics = compute_metrics(outputs[method], truth)
            rows[f"L{level} {method}"] = metrics
            results[level][method] = metrics.as_dict()
        images[f"noisy_L{level}.tif"] = noisy
        images[f"denoised_L{level}.tif"] = output
        shown = [truth, noisy, output]  # in the order of DEMO_COLUMNS
        if comparison is not None:
            shown.append(outputs[methods[-1]])
        panels.append(shown)
    return rows, results, images, panels


def _summary_figure(
    rows: list[list[np.ndarray]], reference: np.ndarray, titles: list[str]
) -> np.ndarray:
    """One 8-bit greyscale mosaic: a row per CDN level, panels side by side, all on
    the reference's intensity range (so brightness compares across panels); each column's
    title above it and each row's level on its left, in :mod:`~napari_pinned.io.bitmap_text`.
    """
    from napari_pinned.io.bitmap_text import GLYPH_HEIGHT, text_width

    lo, hi = float(reference.min()), float(reference.max())
    span = hi - lo if hi > lo else 1.0
    h, w = reference.shape
    levels = [f"level {level}" for level in DEMO_LEVELS][: len(rows)]
    # Dots of 2 px where the longest title fits a panel (256-px images), else 1 px.
    scale = 2 if max(text_width(t, 2) for t in titles) <= w else 1
    left = max(text_width(t, scale) for t in [*levels, _LEVELS_TITLE]) + 2 * _LABEL_PAD
    top = GLYPH_HEIGHT * scale + 2 * _LABEL_PAD
    cols = max(len(r) for r in rows)
    canvas = np.full(
        (top + len(rows) * (h + _GAP) - _GAP, left + cols * (w + _GAP) - _GAP), 255, np.uint8
    )
    _stamp(canvas, _LEVELS_TITLE, scale, _LABEL_PAD, _LABEL_PAD, left - 2 * _LABEL_PAD)
    for j, title in enumerate(titles[:cols]):
        x = left + j * (w + _GAP)
        x += max(0, (w - text_width(title, scale)) // 2)  # centred over the panel
        _stamp(canvas, title, scale, _LABEL_PAD, x, left + j * (w + _GAP) + w - x)
    for i, row in enumerate(rows):
        y = top + i * (h + _GAP)
        label_y = y + max(0, (h - GLYPH_HEIGHT * scale) // 2)
        _stamp(canvas, levels[i], scale, label_y, _LABEL_PAD, left - 2 * _LABEL_PAD)
        for j, panel in enumerate(row):
            scaled = np.clip((np.asarray(panel, np.float64) - lo) / span, 0.0, 1.0)
            x = left + j * (w + _GAP)
            canvas[y : y + h, x : x + w] = np.round(scaled * 255).astype(np.uint8)
    return canvas


def _stamp(canvas: np.ndarray, text: str, scale: int, y: int, x: int, room: int) -> None:
    """Draw ``text`` in black with its top-left corner at ``(y, x)``, cut at ``room`` px."""
    from napari_pinned.io.bitmap_text import render_text

    mask = render_text(text, scale)[:, : max(room, 0)]
    region = canvas[y : y + mask.shape[0], x : x + mask.shape[1]]
    region[mask[: region.shape[0], : region.shape[1]]] = 0


def _write_files(
    out: Path,
    bundle: Any,
    images: dict[str, np.ndarray],
    figure: np.ndarray,
    results: dict[int, dict[str, Any]],
    summary: dict[str, Any],
) -> None:
    """Write the model, images, summary figure and metrics together (all or none)."""
    from napari_pinned.io.images import write_csv, write_png
    from napari_pinned.io.safe_write import write_text
    from napari_pinned.io.tiff import write_tiff
    from napari_pinned.nn.model_files import save_model

    table = np.array(
        [
            [level, method, *values.values()]
            for level, by_method in results.items()
            for method, values in by_method.items()
        ],
        dtype=object,
    )
    with write_together():
        save_model(bundle, out / "demo-model.pt")
        for name, data in images.items():
            write_tiff(out / name, data, pixel_size=summary["pixel_size"])
        write_png(out / "summary.png", figure)
        write_csv(
            out / "metrics.csv",
            table,
            ["level", "method", "psnr", "ssim", "fsc", "epi"],
            fmt=["%d", "%s", "%.4f", "%.5f", "%.5f", "%.4f"],
        )
        write_text(out / "metrics.json", json.dumps(summary, indent=2) + "\n")
