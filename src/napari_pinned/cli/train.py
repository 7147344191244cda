"""``napari-pinned train``: train a PINNED model and write one model file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from napari_pinned.cli.checks import (
    check_inputs_exist,
    check_torch_device,
    input_shape,
    shipped_name_or_file,
)
from napari_pinned.cli.options import (
    add_device,
    add_overwrite,
    add_seed,
    add_threads,
    level,
    non_negative,
    output_file,
    positive,
    positive_int,
    subparser,
)
from napari_pinned.cli.signals import import_torch
from napari_pinned.cli.training_job import save_best_model, saved_status, took, training_to_end
from napari_pinned.io.safe_write import check_outputs
from napari_pinned.physics.defaults import DEFAULT_PIXEL_SIZE
from napari_pinned.settings import (
    NOISE_AWARE_MODEL,
    NOISE_MODELS,
    LossWeights,
    ModelConfig,
    StemNoiseRanges,
    TrainConfig,
)

#: What the pairing rule calls the training files.
_FILE_KINDS = ("--clean file", "--noisy file")


def add_parser(sub: Any) -> None:
    """Add ``train`` to the subcommands ``sub``; its defaults are the core's
    (:class:`~napari_pinned.settings.TrainConfig`, :class:`~napari_pinned.settings.ModelConfig`)."""
    model = ModelConfig()
    p = subparser(
        sub,
        "train",
        "train a PINNED model",
        "Train a PINNED model and write one model file (docs/model.md).  Without --noisy,\n"
        "noise is drawn afresh for every patch.  Ctrl-C or SIGTERM stops after the step in\n"
        "progress and saves the best model so far (exit status 130 / 143).  The defaults\n"
        f"are those of the shipped models (U-Net, width {model.width}, depth {model.depth}): "
        "2000 steps take about\n3 minutes on 2 CPU cores.",
        "  napari-pinned train --materials InN graphene ZrO2 AlGaN NaCN --steps 2000 -o model.pt\n"
        "  napari-pinned train --init default --clean sum1.tif sum2.tif --steps 500 -o mine.pt\n"
        "  napari-pinned train --init default --materials SrTiO3 --pixel-size 0.079 "
        "--doses 1 30 -o srtio3.pt\n"
        "  napari-pinned train --blind-spot --noisy scan.dm4 --init default -o scan-model.pt",
    )
    p.add_argument("--clean", nargs="+", type=Path, help="clean training images")
    p.add_argument(
        "--noisy",
        nargs="+",
        type=Path,
        help="noisy images paired with --clean (Noise2Noise: a second noisy recording as "
        "--clean), or the only data with --blind-spot",
    )
    p.add_argument("--materials", nargs="+", help="also train on simulated bundled materials")
    p.add_argument("--sim-size", type=positive_int, default=256, help="simulated image edge (px)")
    p.add_argument(
        "--pixel-size",
        type=positive,
        default=DEFAULT_PIXEL_SIZE,
        help="simulated Å/px",
    )
    _add_model_options(p, model)
    _add_schedule_options(p, TrainConfig())
    _add_noise_options(p, TrainConfig())
    _add_loss_options(p)
    p.add_argument(
        "--init", help="fine-tune from a model: a shipped one ('default', 'cdn') or a file"
    )
    add_device(p)
    add_threads(p)
    add_seed(p)
    p.add_argument("-o", "--output", type=output_file, required=True, help="model file to write")
    add_overwrite(p)
    p.set_defaults(func=run)


def _add_model_options(p: argparse.ArgumentParser, model: ModelConfig) -> None:
    """Options on the network: architecture, width and depth (``model``'s by default)."""
    p.add_argument(
        "--architecture",
        choices=["paper", "unet", "tiny"],
        help=f"paper: no skips (as published); unet: skips + residual; tiny: tests "
        f"(default: {model.architecture})",
    )
    p.add_argument(
        "--width",
        type=positive_int,
        help=f"base channel count (default: {model.width} for {model.architecture}, the "
        "preset's otherwise)",
    )
    p.add_argument(
        "--depth",
        type=positive_int,
        help=f"number of down-samplings (default: {model.depth} for {model.architecture}, "
        "the preset's otherwise)",
    )


def _add_schedule_options(p: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    """Options on the optimisation, defaulting to ``defaults`` (the core's config)."""
    p.add_argument("--steps", type=positive_int, default=defaults.steps, help="optimiser steps")
    p.add_argument(
        "--batch-size", type=positive_int, default=defaults.batch_size, help="patches per step"
    )
    p.add_argument(
        "--patch-size",
        type=positive_int,
        help="patch edge, px (default: the one the --init model was trained on, except "
        f"with --blind-spot, else {defaults.patch_size})",
    )
    p.add_argument("--lr", type=positive, default=defaults.learning_rate, help="peak learning rate")


def _add_noise_options(p: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    """Options on the synthetic noise (CDN levels, dose) or self-supervision."""
    _add_range(p, "--levels", level, defaults.noise_levels, "CDN level range for synthetic noise")
    p.add_argument(
        "--noise",
        choices=NOISE_MODELS,
        help="synthetic noise: the paper's CDN, the dose model, a mix of the two, or "
        "realistic STEM recordings at any dose (stem: what the default model learned "
        "from). Default: stem when fine-tuning a noise-aware model such as 'default', "
        f"else {defaults.noise_model}",
    )
    _add_range(
        p,
        "--dose-counts",
        positive,
        defaults.dose_counts,
        "dose model: detected e⁻ per pixel at full intensity",
    )
    _add_range(
        p,
        "--doses",
        positive,
        defaults.stem_noise.dose,
        "stem noise: mean detected e⁻ per pixel, drawn log-uniformly",
    )
    p.add_argument(
        "--blind-spot",
        action="store_true",
        help="self-supervised: learn from the --noisy images alone, no clean target",
    )


def _add_range(p: argparse.ArgumentParser, flag: str, kind: Any, default: tuple, text: str) -> None:
    """An option of two numbers, LOW and HIGH, that synthetic noise is drawn between."""
    p.add_argument(flag, nargs=2, type=kind, default=default, metavar=("LOW", "HIGH"), help=text)


def _add_loss_options(p: argparse.ArgumentParser) -> None:
    """Options on the physics-informed loss terms' weights (the core's unless given)."""
    p.add_argument("--lambda-tv", type=non_negative, help="weight of total variation")
    p.add_argument("--lambda-sf", type=non_negative, help="weight of spectral fidelity")
    p.add_argument("--lambda-b", type=non_negative, help="weight of the brightness term")
    p.add_argument("--lambda-c", type=non_negative, help="weight of the contrast term")


def _check_data_args(args: argparse.Namespace) -> None:
    """Which data was given: paired, synthetic-noise or blind-spot, not a mix."""
    from napari_pinned.training.data import check_pairs

    if args.blind_spot:
        if args.clean or args.materials or not args.noisy:
            raise ValueError(
                "--blind-spot learns from --noisy images alone (no --clean or --materials)"
            )
        return
    if args.noisy and args.materials:
        raise ValueError("--materials cannot be combined with --noisy (no paired noisy data)")
    if args.noisy:
        # The counts now, before any file is opened; shapes below.
        check_pairs([()] * len(args.clean or []), [()] * len(args.noisy), kinds=_FILE_KINDS)
    if not args.clean and not args.materials:
        raise ValueError("no training data: give --clean files and/or --materials names")


def _check_init(args: argparse.Namespace) -> None:
    """``--init`` fine-tunes a model as it is: no architecture options with it."""
    if args.init is None:
        return
    given = [
        f"--{name}"
        for name in ("architecture", "width", "depth")
        if getattr(args, name) is not None
    ]
    if given:
        raise ValueError(
            f"{' and '.join(given)} cannot be combined with --init: fine-tuning keeps the "
            "start model's architecture"
        )
    shipped_name_or_file(args.init, "--init")


def _check_args(args: argparse.Namespace) -> dict[Path, tuple[int, ...]]:
    """Everything about ``train`` that can be checked without torch or reading data;
    returns the input files' shapes (from their headers)."""
    from napari_pinned.physics.materials import get_material
    from napari_pinned.training.data import check_pairs

    _check_data_args(args)
    _check_init(args)
    for name in args.materials or []:
        get_material(name)
    files = [*(args.clean or []), *(args.noisy or [])]
    check_inputs_exist(files)
    shapes = {path: input_shape(path) for path in files}
    if args.noisy and not args.blind_spot:
        check_pairs(
            [shapes[p] for p in args.clean],
            [shapes[p] for p in args.noisy],
            [str(p) for p in args.clean],
            [str(p) for p in args.noisy],
            kinds=_FILE_KINDS,
        )
    inputs = [*files] + ([Path(args.init)] if args.init is not None else [])
    check_outputs([args.output], inputs, overwrite=args.overwrite)
    _check_sizes(args, shapes)
    check_torch_device(args.device)
    if args.materials:
        from napari_pinned.physics.probe import AberratedProbe
        from napari_pinned.physics.rendering import check_simulation_memory

        check_simulation_memory(
            args.sim_size,
            args.pixel_size,
            AberratedProbe(),
            f"simulating {args.sim_size}² px training images",
        )
    return shapes


def _check_sizes(args: argparse.Namespace, shapes: dict[Path, tuple[int, ...]]) -> None:
    """Every training frame large enough for the patches, and a batch of them within
    the memory, from the headers (the core checks both again with the model known)."""
    from napari_pinned._util.memory import check_memory, training_bytes
    from napari_pinned.training.data import check_training_shapes

    frames: list[tuple[int, ...]] = []
    names: list[str] = []
    for path in args.noisy if args.blind_spot else (args.clean or []):
        shape = shapes[path]
        count = shape[0] if len(shape) == 3 else 1
        frames += [shape[-2:]] * count
        names += [str(path) if count == 1 else f"{path} (frame {k})" for k in range(count)]
    for name in args.materials or []:
        frames.append((args.sim_size, args.sim_size))
        names.append(f"the simulated {name} image (--sim-size)")
    config = _settings(args)
    # A model to fine-tune is read with torch: until then, either kind of patch may do.
    model = None if args.init is not None else config.model
    paired = bool(args.noisy) and not args.blind_spot
    check_training_shapes(frames, config, model, paired=paired, names=names)
    # The shipped models, the usual start of fine-tuning, have the default width.
    width = config.model.width if args.init is None else ModelConfig().width
    check_memory(
        training_bytes(args.batch_size, config.patch_size, width),
        f"training a width-{width} network on batches of {args.batch_size} patches of "
        f"{config.patch_size}² px",
        advice="use a smaller --batch-size or --patch-size",
    )


def _load_training_images(args: argparse.Namespace) -> tuple[list[np.ndarray], list | None]:
    """The clean images (files, then simulated materials) and the paired noisy ones."""
    from napari_pinned.io.images import read_image
    from napari_pinned.physics.simulate import simulate

    if args.blind_spot:
        return [read_image(p) for p in args.noisy], None
    clean = [read_image(p) for p in (args.clean or [])]
    noisy = [read_image(p) for p in args.noisy] if args.noisy else None
    for i, name in enumerate(args.materials or []):
        clean.append(
            simulate(
                name,
                shape=(args.sim_size, args.sim_size),
                pixel_size=args.pixel_size,
                seed=args.seed + i,
            ).image
        )
    return clean, noisy


def _model_config(args: argparse.Namespace) -> ModelConfig:
    """The network to train: ``--architecture``'s preset, at the default model's size
    for the default architecture (the shipped models'), with ``--width``/``--depth``;
    noise-aware (:data:`~napari_pinned.settings.NOISE_AWARE_MODEL`) for ``--noise
    stem``, as in the Train dock."""
    default = ModelConfig()
    architecture = args.architecture or default.architecture
    # The paper's network and "tiny" keep their preset's size.
    sizes = (
        {"width": default.width, "depth": default.depth}
        if architecture == default.architecture
        else {}
    )
    sizes.update({k: v for k, v in (("width", args.width), ("depth", args.depth)) if v is not None})
    aware = dict(NOISE_AWARE_MODEL) if args.noise == "stem" else {}
    return ModelConfig.preset(architecture, **sizes, **aware)


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The run's settings from the options, with the network's size checked."""
    from napari_pinned.nn.model_files import check_model_size

    config = _settings(args)
    if args.init is None:
        check_model_size(config.model, source="--width/--depth")
    return config


def _settings(args: argparse.Namespace) -> TrainConfig:
    """The run's settings from the options, without torch; unset loss weights, and an
    unset ``--noise`` or ``--patch-size``, are the core's (:func:`_resolve_from_start`
    sets the last two once the model to fine-tune is known)."""
    defaults = LossWeights()
    weights = LossWeights(
        tv=defaults.tv if args.lambda_tv is None else args.lambda_tv,
        sf=defaults.sf if args.lambda_sf is None else args.lambda_sf,
        brightness=defaults.brightness if args.lambda_b is None else args.lambda_b,
        contrast=defaults.contrast if args.lambda_c is None else args.lambda_c,
    )
    return TrainConfig(
        model=_model_config(args),
        loss_weights=weights,
        steps=args.steps,
        batch_size=args.batch_size,
        patch_size=args.patch_size or TrainConfig().patch_size,
        learning_rate=args.lr,
        noise_levels=(args.levels[0], args.levels[1]),
        noise_model=args.noise or TrainConfig().noise_model,
        dose_counts=(args.dose_counts[0], args.dose_counts[1]),
        stem_noise=StemNoiseRanges(dose=(args.doses[0], args.doses[1])),
        self_supervised="blind-spot" if args.blind_spot else None,
        validate_every=None,  # auto, as the dock
        init_model=args.init,
        num_threads=args.threads,
    )


def _describe_run(args: argparse.Namespace, run: Any, clean: list, noisy: list | None) -> str:
    """One line on what is trained, on what data, where."""
    from napari_pinned.nn.network import count_parameters

    if args.blind_spot:
        data = "noisy images only (blind-spot)"
    else:
        data = "paired noisy data" if noisy else f"synthetic {args.noise} noise"
    start = f", fine-tuning {args.init}" if args.init is not None else ""
    return (
        f"training {run.model_config.architecture} model "
        f"({count_parameters(run.model):,} parameters{start}) on {len(clean)} image(s), "
        f"{data}, device {run.device}"
    )


def _resolve_from_start(args: argparse.Namespace) -> None:
    """Set ``args.noise`` and ``args.patch_size`` where they were left out, from the
    model to fine-tune (its kind of input; the patches it learned from, for fine-tunes
    with clean targets), and refuse synthetic noise that a noise-aware start model (the
    shipped default) cannot learn from, before any data is read.  Loads the start
    model (torch is loaded by then)."""
    from napari_pinned.training.data import fine_tune_patch_size

    aware = False
    if args.init is not None:
        from napari_pinned.nn.resolve import load_model

        start = load_model(args.init, device="cpu")
        aware = start.config.conditioned
        if args.patch_size is None and not args.blind_spot:
            # Blind-spot fine-tunes lost more on larger patches (benchmarks/
            # self_supervised.py): they keep the core's size, as `adapt` keeps its own.
            args.patch_size = fine_tune_patch_size(start.metadata, TrainConfig().patch_size)
    if args.blind_spot or args.noisy:
        return  # no synthetic noise
    if args.noise is None:
        args.noise = "stem" if aware else TrainConfig().noise_model
    elif aware and args.noise != "stem":
        raise ValueError(
            f"--init {args.init} is a noise-aware model: it learns from --noise stem "
            "(realistic recordings, the default with it), paired --noisy images or "
            f"--blind-spot, not --noise {args.noise}"
        )


def run(args: argparse.Namespace) -> int:
    """Check, load the data, train with a progress bar, save the best model."""
    shapes = _check_args(args)
    import_torch()

    from napari_pinned.training.run import train

    _resolve_from_start(args)
    if args.init is not None:
        _check_sizes(args, shapes)  # again, with the start model's patch size
    config = _train_config(args)
    clean, noisy = _load_training_images(args)
    job = train(config, clean, noisy, seed=args.seed, device=args.device)
    print(_describe_run(args, job, clean, noisy), file=sys.stderr)
    with training_to_end(job, config.steps, "train", "val", "training") as (bundle, received):
        out, problem = save_best_model(bundle, Path(args.output))
    meta = bundle.metadata
    if args.blind_spot:
        # No clean target: the score is the prediction of hidden pixels vs their noisy values.
        score = f"blind-spot PSNR {meta['val_psnr']:.2f} dB"
    else:
        score = f"PSNR {meta['val_psnr']:.2f} dB / SSIM {meta['val_ssim']:.3f}"
    best = f"best validation {score} at step {meta['best_step']}"
    steps, elapsed = meta["steps"], took(meta["elapsed_s"])
    return saved_status(
        out,
        received,
        after=f"{steps} of {config.steps} steps ({elapsed} of training)",
        so_far=best,
        done=f"{steps} steps in {elapsed}, {best}",
        finished=steps >= config.steps,
        problem=problem,
    )
