"""The ``napari-pinned`` command line: simulate, add noise, train, denoise, score.

User mistakes (bad files, wrong shapes, invalid parameters) print one line starting
with ``napari-pinned: error:`` and exit with status 2; nothing prints a traceback
unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

EXIT_USAGE = 2


class _ProgressBar:
    """A one-line text progress bar on stderr (no dependency, works in any terminal)."""

    def __init__(self, total: int, label: str, width: int = 28, stream=None):
        self.total = max(total, 1)
        self.label = label
        self.width = width
        self.stream = stream or sys.stderr
        # Logs and pipes cannot redraw a line: there, print a new line every 10 %.
        isatty = getattr(self.stream, "isatty", None)
        self._interactive = bool(isatty and isatty())
        self._last = 0.0
        self._last_decile = -1
        self._open = False

    def update(self, done: int, extra: str = "", force: bool = False) -> None:
        filled = int(self.width * done / self.total)
        line = f"{self.label} [{'#' * filled}{'-' * (self.width - filled)}] {done}/{self.total}"
        line = f"{line} {extra}".rstrip()
        if not self._interactive:
            decile = 10 * done // self.total
            if decile > self._last_decile or force:
                self._last_decile = decile
                self.stream.write(line + "\n")
                self.stream.flush()
            return
        now = time.perf_counter()
        if not force and now - self._last < 0.2 and done < self.total:
            return
        self._last = now
        self._open = True
        self.stream.write(f"\r{line}".ljust(100))
        self.stream.flush()

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


# ---------------------------------------------------------------------------- commands
def _cmd_materials(args: argparse.Namespace) -> int:
    from napari_pinned.crystal import list_materials, zone_label

    for material in list_materials():
        zones = ", ".join(zone_label(z) for z in material.zone_axes)
        print(f"{material.name:<12} {zones:<22} {material.description}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from napari_pinned.io import write_tiff
    from napari_pinned.simulate import AberratedProbe, GaussianProbe, simulate

    source = args.cif if args.cif is not None else args.material
    probe = (
        GaussianProbe(fwhm=args.probe_fwhm)
        if args.probe_fwhm is not None
        else AberratedProbe(
            voltage_kv=args.voltage,
            convergence_mrad=args.convergence,
            defocus=args.defocus,
            cs_mm=args.cs,
            source_size=args.source_size,
        )
    )
    result = simulate(
        source,
        args.zone,
        shape=(args.size, args.size),
        pixel_size=args.pixel_size,
        probe=probe,
        thickness=args.thickness,
        rotation=args.rotation,
        vacancy_fraction=args.vacancies,
        seed=args.seed,
    )
    write_tiff(args.output, result.image, pixel_size=result.pixel_size)
    if args.columns is not None:
        cols = result.columns
        table = np.column_stack([cols.positions, cols.weights])
        np.savetxt(args.columns, table, delimiter=",", header="row,col,weight", comments="")
    print(
        f"{result.label()}: {args.size}×{args.size} px at {result.pixel_size} Å/px, "
        f"{len(result.columns.weights)} columns → {args.output}"
    )
    return 0


def _cmd_noise(args: argparse.Namespace) -> int:
    from napari_pinned.io import read_image, read_pixel_size, write_tiff
    from napari_pinned.noise import add_cdn_noise, add_dose_noise

    image = read_image(args.input)
    pixel_size = read_pixel_size(args.input)
    if args.model == "dose":
        if args.dose is None:
            raise ValueError("the dose model needs --dose (e⁻/Å² per frame)")
        size = args.pixel_size or pixel_size
        if size is None:
            raise ValueError(f"{args.input} has no pixel size; give --pixel-size in Å")
        noisy = add_dose_noise(
            image,
            args.dose,
            pixel_size=size,
            collection=args.collection,
            read_noise=args.read_noise,
            row_jitter=args.jitter,
            drift=tuple(args.drift),
            seed=args.seed,
        )
        write_tiff(args.output, noisy, pixel_size=pixel_size or size)
        print(f"dose {args.dose:g} e⁻/Å² at {size:g} Å/px → {args.output}")
        return 0
    noisy = add_cdn_noise(
        image,
        args.level,
        gaussian_std=args.gaussian_std,
        static_fraction=args.static_fraction,
        speckle_variance=args.speckle_variance,
        clip=not args.no_clip,
        seed=args.seed,
    )
    write_tiff(args.output, noisy, pixel_size=pixel_size)
    print(f"CDN level {args.level} → {args.output}")
    return 0


def _cmd_metrics(args: argparse.Namespace) -> int:
    from napari_pinned.io import read_image
    from napari_pinned.metrics import compute_metrics_stack, format_metrics_table, mean_metrics

    reference = read_image(args.reference)
    rows = {}
    for path in args.images:
        image = read_image(path)
        if image.shape != reference.shape:
            raise ValueError(
                f"{path} has shape {image.shape} but the reference has shape {reference.shape}"
            )
        rows[str(path)] = mean_metrics(compute_metrics_stack(image, reference))
    print(format_metrics_table(rows))
    return 0


def _load_training_images(args: argparse.Namespace) -> tuple[list[np.ndarray], list | None]:
    from napari_pinned.io import read_image
    from napari_pinned.simulate import simulate

    if args.blind_spot:
        if args.clean or args.materials or not args.noisy:
            raise ValueError(
                "--blind-spot learns from --noisy images alone (no --clean or --materials)"
            )
        return [read_image(p) for p in args.noisy], None
    clean = [read_image(p) for p in (args.clean or [])]
    noisy = [read_image(p) for p in args.noisy] if args.noisy else None
    if noisy is not None and len(noisy) != len(clean):
        raise ValueError(f"{len(noisy)} --noisy files for {len(clean)} --clean files")
    for i, name in enumerate(args.materials or []):
        if noisy is not None:
            raise ValueError("--materials cannot be combined with --noisy (no paired noisy data)")
        clean.append(
            simulate(
                name,
                shape=(args.sim_size, args.sim_size),
                pixel_size=args.pixel_size,
                seed=args.seed + i,
            ).image
        )
    if not clean:
        raise ValueError("no training data: give --clean files and/or --materials names")
    return clean, noisy


def _cmd_train(args: argparse.Namespace) -> int:
    from napari_pinned.losses import LossWeights
    from napari_pinned.model import ModelConfig, count_parameters
    from napari_pinned.model_files import save_model
    from napari_pinned.training import TrainConfig, train

    out = Path(args.output)
    if not out.parent.is_dir():
        raise ValueError(f"{out}: folder {out.parent} does not exist")
    clean, noisy = _load_training_images(args)
    defaults = LossWeights()
    weights = LossWeights(
        tv=defaults.tv if args.lambda_tv is None else args.lambda_tv,
        sf=defaults.sf if args.lambda_sf is None else args.lambda_sf,
        brightness=defaults.brightness if args.lambda_b is None else args.lambda_b,
        contrast=defaults.contrast if args.lambda_c is None else args.lambda_c,
    )
    overrides = {k: v for k, v in (("width", args.width), ("depth", args.depth)) if v is not None}
    config = TrainConfig(
        model=ModelConfig.preset(args.architecture, **overrides),
        loss_weights=weights,
        steps=args.steps,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        learning_rate=args.lr,
        noise_levels=(args.levels[0], args.levels[1]),
        noise_model=args.noise,
        dose_counts=(args.dose_counts[0], args.dose_counts[1]),
        self_supervised="blind-spot" if args.blind_spot else None,
        validate_every=max(1, min(100, args.steps // 10)),
        init_model=args.init,
        num_threads=args.threads,
    )
    run = train(config, clean, noisy, seed=args.seed, device=args.device)
    if args.blind_spot:
        data = "noisy images only (blind-spot)"
    else:
        data = "paired noisy data" if noisy else f"synthetic {args.noise} noise"
    print(
        f"training {run.model_config.architecture} model "
        f"({count_parameters(run.model):,} parameters) on {len(clean)} image(s), "
        f"{data}, device {run.device}",
        file=sys.stderr,
    )
    bar = _ProgressBar(config.steps, "train")
    try:
        for p in run:
            val = f" val {p.best_val_psnr:.2f} dB" if p.best_val_psnr is not None else ""
            bar.update(p.step, f"loss {p.loss.total:.4f}{val} ETA {_duration(p.eta)}")
    except KeyboardInterrupt:
        print("\ninterrupted: saving the best model so far", file=sys.stderr)
    finally:
        bar.close()
    if run.step == 0:
        raise ValueError("training stopped before the first step; nothing saved")
    bundle = run.result()
    save_model(bundle, out)
    meta = bundle.metadata
    if args.blind_spot:
        # No clean target: the score is the prediction of hidden pixels vs their noisy values.
        score = f"blind-spot PSNR {meta['val_psnr']:.2f} dB"
    else:
        score = f"PSNR {meta['val_psnr']:.2f} dB / SSIM {meta['val_ssim']:.3f}"
    print(
        f"saved {out}: {meta['steps']} steps in {_duration(meta['elapsed_s'])}, best validation "
        f"{score} at step {meta['best_step']}"
    )
    return 0


def _cmd_denoise(args: argparse.Namespace) -> int:
    from napari_pinned.inference import denoise
    from napari_pinned.io import read_image, read_pixel_size, write_tiff
    from napari_pinned.metrics import compute_metrics_stack, format_metrics_table, mean_metrics
    from napari_pinned.model_files import load_model

    if (args.output is None) == (args.output_dir is None):
        raise ValueError("give exactly one of -o/--output or --output-dir")
    if args.output is not None and len(args.inputs) > 1:
        raise ValueError("several inputs need --output-dir, not -o")
    if args.output_dir is not None and not Path(args.output_dir).is_dir():
        raise ValueError(f"{args.output_dir}: output folder does not exist")
    for path in args.inputs:
        if not Path(path).is_file():
            raise ValueError(f"{path}: no such file")
    bundle = load_model(args.model, device="cpu")
    reference = read_image(args.reference) if args.reference else None
    rows = {}
    for path in args.inputs:
        image = read_image(path)
        bar = _ProgressBar(1, f"denoise {Path(path).name}")

        def report(p, bar=bar):
            bar.total = p.tiles_total
            bar.update(p.tiles_done)

        output = denoise(
            image,
            bundle,
            tile=args.tile,
            overlap=args.overlap,
            device=args.device,
            progress=report,
        )
        bar.close()
        target = (
            Path(args.output)
            if args.output is not None
            else Path(args.output_dir) / f"{Path(path).stem}_denoised.tif"
        )
        write_tiff(target, output, pixel_size=read_pixel_size(path))
        print(f"{path} → {target}")
        if reference is not None:
            if image.shape != reference.shape:
                raise ValueError(
                    f"{path} has shape {image.shape} but the reference has shape {reference.shape}"
                )
            rows[f"{Path(path).name} (input)"] = mean_metrics(
                compute_metrics_stack(image, reference)
            )
            rows[f"{Path(path).name} (denoised)"] = mean_metrics(
                compute_metrics_stack(output, reference)
            )
    if rows:
        print(format_metrics_table(rows))
    return 0


def _cmd_align(args: argparse.Namespace) -> int:
    from napari_pinned.frames import RegistrationResult, check_frames, register_frames
    from napari_pinned.io import read_image, read_pixel_size, write_tiff

    outputs = [args.output, args.aligned, args.shifts, *(args.halves or [])]
    for target in (Path(o) for o in outputs if o is not None):
        if not target.parent.is_dir():
            raise ValueError(f"{target}: folder {target.parent} does not exist")
    stack = check_frames(read_image(args.input), name=str(args.input))
    bar = _ProgressBar(1, f"align {Path(args.input).name}")
    result = None
    for record in register_frames(
        stack, reference=args.reference, upsample=args.upsample, max_shift=args.max_shift
    ):
        if isinstance(record, RegistrationResult):
            result = record
        else:
            bar.total = record.total
            bar.update(record.done)
    bar.close()
    pixel_size = read_pixel_size(args.input)
    write_tiff(args.output, result.mean, pixel_size=pixel_size)
    written = [args.output]
    if args.aligned is not None:
        write_tiff(args.aligned, result.aligned, pixel_size=pixel_size)
        written.append(args.aligned)
    if args.halves:
        for path, half in zip(args.halves, result.halves(), strict=True):
            write_tiff(path, half, pixel_size=pixel_size)
            written.append(path)
    if args.shifts is not None:
        table = np.column_stack([np.arange(len(result.shifts)), result.shifts])
        np.savetxt(
            args.shifts,
            table,
            fmt=["%d", "%.4f", "%.4f"],
            delimiter=",",
            header="frame,dy,dx",
            comments="",
        )
        written.append(args.shifts)
    drift = f"max drift {result.max_drift:.2f} px"
    if pixel_size is not None:
        drift += f" ({result.max_drift * pixel_size:.2f} Å)"
    h, w = result.mean.shape
    print(f"{len(stack)} frames, {drift}; mean of the common {h}×{w} px region")
    print(f"{args.input} → {', '.join(str(p) for p in written)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """The main job headlessly: simulate → noise → short training → denoise → metrics."""
    from scipy.ndimage import median_filter

    from napari_pinned.inference import denoise
    from napari_pinned.io import write_tiff
    from napari_pinned.losses import LossWeights
    from napari_pinned.metrics import compute_metrics, format_metrics_table
    from napari_pinned.model import ModelConfig
    from napari_pinned.model_files import default_model_path, load_model, save_model
    from napari_pinned.noise import add_cdn_noise
    from napari_pinned.simulate import simulate
    from napari_pinned.training import TrainConfig, train

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    size, px = args.size, 0.1
    train_names = ["InN", "graphene", "ZrO2", "AlGaN", "NaCN"]
    print(f"1. simulating training materials {', '.join(train_names)} ({size}² px, {px} Å/px)")
    clean = [
        simulate(n, shape=size, pixel_size=px, seed=i).image for i, n in enumerate(train_names)
    ]
    print(f"2. training a small model for {args.steps} steps on synthetic CDN levels 1–5")
    config = TrainConfig(
        # Direct output and plain MSE: what benchmarks/quality.py measured best.
        model=ModelConfig.preset("unet", width=args.width, depth=3, residual=False),
        loss_weights=LossWeights.none(),
        steps=args.steps,
        batch_size=8,
        patch_size=min(64, size // 2),
        learning_rate=1e-3,
        validate_every=max(1, args.steps // 5),
    )
    run = train(config, clean, seed=0, device=args.device)
    bar = _ProgressBar(config.steps, "   train")
    for p in run:
        bar.update(p.step, f"loss {p.loss.total:.4f} ETA {_duration(p.eta)}")
    bar.close()
    bundle = run.result()
    save_model(bundle, out / "demo-model.pt")
    print(f"3. denoising {args.material} (never seen in training) at CDN levels 1–5")
    reference = simulate(args.material, shape=size, pixel_size=px, seed=99)
    write_tiff(out / "reference.tif", reference.image, pixel_size=px)
    shipped = load_model("default") if default_model_path().is_file() else None
    rows = {}
    for level in range(1, 6):
        noisy = add_cdn_noise(reference.image, level, seed=level)
        output = denoise(noisy, bundle, device=args.device)
        write_tiff(out / f"noisy_L{level}.tif", noisy, pixel_size=px)
        write_tiff(out / f"denoised_L{level}.tif", output, pixel_size=px)
        rows[f"L{level} noisy"] = compute_metrics(noisy, reference.image)
        # The best classical filter on CDN in our measurements, as the baseline to beat.
        rows[f"L{level} median 3×3"] = compute_metrics(median_filter(noisy, 3), reference.image)
        rows[f"L{level} PINNED (demo model)"] = compute_metrics(output, reference.image)
        if shipped is not None:
            default_output = denoise(noisy, shipped, device=args.device)
            rows[f"L{level} PINNED (default model)"] = compute_metrics(
                default_output, reference.image
            )
    print(format_metrics_table(rows))
    print(f"files in {out}/")
    return 0


# ------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="napari-pinned",
        description="Physics-informed denoising of atomic-resolution STEM images (PINNED).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("materials", help="list bundled materials and their zone axes")
    p.set_defaults(func=_cmd_materials)

    p = sub.add_parser("simulate", help="simulate a HAADF-STEM image from a crystal structure")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--material", default="SrTiO3", help="bundled material (see 'materials')")
    src.add_argument("--cif", type=Path, help="a CIF file instead of a bundled material")
    p.add_argument(
        "--zone",
        nargs="+",
        type=int,
        metavar="I",
        help="zone axis, 3 or 4 indices (e.g. 1 1 0 or 1 1 -2 0); default: the "
        "material's usual one",
    )
    p.add_argument("--size", type=int, default=512, help="image edge in pixels (default 512)")
    p.add_argument("--pixel-size", type=float, default=0.1, help="Å per pixel (default 0.1)")
    p.add_argument("--probe-fwhm", type=float, help="use a Gaussian probe of this FWHM (Å)")
    p.add_argument("--voltage", type=float, default=200.0, help="kV (default 200)")
    p.add_argument("--convergence", type=float, default=22.0, help="mrad (default 22)")
    p.add_argument("--defocus", type=float, default=0.0, help="Å (default 0)")
    p.add_argument("--cs", type=float, default=0.0, help="spherical aberration, mm (default 0)")
    p.add_argument("--source-size", type=float, default=0.3, help="Å FWHM (default 0.3)")
    p.add_argument("--thickness", type=float, default=200.0, help="Å (default 200)")
    p.add_argument("--rotation", type=float, default=0.0, help="degrees (default 0)")
    p.add_argument("--vacancies", type=float, default=0.0, help="column vacancy fraction")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--columns", type=Path, help="also write ground-truth columns as CSV")
    p.add_argument("-o", "--output", type=Path, required=True, help="output TIFF")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("noise", help="apply Composite Degradation Noise (paper Table 1)")
    p.add_argument("input", type=Path, help="clean image or stack (TIFF)")
    p.add_argument("--level", type=float, default=3.0, help="CDN level 0–5 (default 3)")
    p.add_argument("--gaussian-std", type=float, help="override the Gaussian std (8-bit units)")
    p.add_argument("--static-fraction", type=float, help="override the replaced-pixel fraction")
    p.add_argument("--speckle-variance", type=float, help="override the speckle variance")
    p.add_argument("--no-clip", action="store_true", help="do not clip to the data range")
    p.add_argument(
        "--model", choices=["cdn", "dose"], default="cdn", help="noise model (default cdn)"
    )
    p.add_argument("--dose", type=float, help="dose model: electrons per Å² per frame")
    p.add_argument("--pixel-size", type=float, help="dose model: Å/px (default: from the file)")
    p.add_argument(
        "--collection", type=float, default=1.0, help="dose model: detector collection 0–1"
    )
    p.add_argument("--read-noise", type=float, default=0.0, help="dose model: read noise, e⁻")
    p.add_argument("--jitter", type=float, default=0.0, help="dose model: scan-line jitter, px")
    p.add_argument(
        "--drift",
        nargs=2,
        type=float,
        default=(0.0, 0.0),
        metavar=("DY", "DX"),
        help="dose model: drift in px per frame",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output TIFF (float32)")
    p.set_defaults(func=_cmd_noise)

    p = sub.add_parser("metrics", help="PSNR, SSIM, FSC and EPI against a reference")
    p.add_argument("images", nargs="+", type=Path, help="images or stacks to score (TIFF)")
    p.add_argument("--reference", type=Path, required=True, help="clean reference (TIFF)")
    p.set_defaults(func=_cmd_metrics)

    p = sub.add_parser("train", help="train a PINNED model")
    p.add_argument("--clean", nargs="+", type=Path, help="clean training images (TIFF)")
    p.add_argument(
        "--noisy",
        nargs="+",
        type=Path,
        help="noisy images paired with --clean (Noise2Noise: a second noisy recording as "
        "--clean), or the only data with --blind-spot",
    )
    p.add_argument("--materials", nargs="+", help="also train on simulated bundled materials")
    p.add_argument("--sim-size", type=int, default=256, help="simulated image edge (px)")
    p.add_argument("--pixel-size", type=float, default=0.1, help="simulated Å/px")
    p.add_argument(
        "--architecture",
        default="unet",
        choices=["paper", "unet", "tiny"],
        help="paper: no skips (as published); unet: skips + residual (default); tiny: tests",
    )
    p.add_argument("--width", type=int, help="base channel count")
    p.add_argument("--depth", type=int, help="number of down-samplings")
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps (default 2000)")
    p.add_argument("--batch-size", type=int, default=8, help="patches per step (default 8)")
    p.add_argument("--patch-size", type=int, default=64, help="patch edge, px (default 64)")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default 5e-4)")
    p.add_argument(
        "--levels",
        nargs=2,
        type=float,
        default=(1.0, 5.0),
        metavar=("LOW", "HIGH"),
        help="CDN level range for synthetic noise (default 1 5)",
    )
    p.add_argument(
        "--noise",
        choices=["cdn", "dose", "mix"],
        default="cdn",
        help="synthetic noise: the paper's CDN, the dose model, or a mix (default cdn)",
    )
    p.add_argument(
        "--dose-counts",
        nargs=2,
        type=float,
        default=(5.0, 500.0),
        metavar=("LOW", "HIGH"),
        help="dose model: detected e⁻ per pixel at full intensity (default 5 500)",
    )
    p.add_argument(
        "--blind-spot",
        action="store_true",
        help="self-supervised: learn from the --noisy images alone, no clean target",
    )
    p.add_argument("--lambda-tv", type=float, help="weight of total variation")
    p.add_argument("--lambda-sf", type=float, help="weight of spectral fidelity")
    p.add_argument("--lambda-b", type=float, help="weight of the brightness term")
    p.add_argument("--lambda-c", type=float, help="weight of the contrast term")
    p.add_argument("--init", help="fine-tune from a model ('default' or a file)")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("-o", "--output", type=Path, required=True, help="model file to write")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("denoise", help="denoise TIFF images or stacks")
    p.add_argument("inputs", nargs="+", type=Path, help="noisy images or stacks (TIFF)")
    p.add_argument("-o", "--output", type=Path, help="output TIFF (one input)")
    p.add_argument(
        "--output-dir", type=Path, help="folder for <input>_denoised.tif (several inputs)"
    )
    p.add_argument("--model", default="default", help="'default' or a model file")
    p.add_argument("--reference", type=Path, help="clean reference: print metrics")
    p.add_argument("--tile", type=int, default=512, help="tile edge in pixels (default 512)")
    p.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels (default 64)")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps")
    p.set_defaults(func=_cmd_denoise)

    p = sub.add_parser("align", help="register a frame series; write its drift-corrected mean")
    p.add_argument("input", type=Path, help="frame series (TIFF stack)")
    p.add_argument("-o", "--output", type=Path, required=True, help="drift-corrected mean (TIFF)")
    p.add_argument("--aligned", type=Path, help="also write the aligned stack")
    p.add_argument(
        "--halves",
        nargs=2,
        type=Path,
        metavar=("EVEN", "ODD"),
        help="also write the means of the even and odd frames (Noise2Noise pairs)",
    )
    p.add_argument("--shifts", type=Path, help="also write the shifts as CSV (frame, dy, dx)")
    p.add_argument(
        "--reference",
        default="mean",
        choices=["mean", "previous", "first"],
        help="match frames against the series mean (default), the previous or the first frame",
    )
    p.add_argument("--upsample", type=int, default=20, help="1/upsample px precision (20)")
    p.add_argument("--max-shift", type=float, help="largest shift one match may find (px)")
    p.set_defaults(func=_cmd_align)

    p = sub.add_parser("demo", help="the whole path headlessly: simulate, noise, train, denoise")
    p.add_argument(
        "--output-dir", type=Path, default=Path("pinned-demo"), help="default pinned-demo"
    )
    p.add_argument("--material", default="BaTiO3", help="held-out material to denoise")
    p.add_argument("--size", type=int, default=256, help="image edge, px (default 256)")
    p.add_argument("--steps", type=int, default=1500, help="training steps (default 1500)")
    p.add_argument("--width", type=int, default=8, help="base channel count (default 8)")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-pinned`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, FloatingPointError) as exc:
        if args.debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"napari-pinned: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
