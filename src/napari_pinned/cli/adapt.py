"""``napari-pinned adapt``: fine-tune a noise-aware model on the user's noisy images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from napari_pinned.cli.checks import (
    about,
    check_inputs_exist,
    check_torch_device,
    input_shape,
    model_inputs,
    shipped_name_or_file,
)
from napari_pinned.cli.options import (
    add_device,
    add_overwrite,
    add_seed,
    add_threads,
    output_file,
    positive_int,
    subparser,
)
from napari_pinned.cli.progress import duration
from napari_pinned.cli.signals import import_torch
from napari_pinned.cli.training_job import save_best_model, saved_status, training_to_end
from napari_pinned.io.safe_write import check_outputs, check_writable_folder
from napari_pinned.settings import AdaptSettings


def add_parser(sub: Any) -> None:
    """Add ``adapt`` to the subcommands ``sub``."""
    p = subparser(
        sub,
        "adapt",
        "fine-tune a noise-aware model on your own noisy image(s), no clean image needed",
        "Adapt the default model (or another noise-aware model) to your detector, scan and\n"
        "specimen by blind-spot training on the noisy images themselves.  The fine-tuned\n"
        "model is saved only if its estimated error on held-out rows of the data is clearly\n"
        "below the starting model's; otherwise the starting model is saved unchanged.\n"
        "Ctrl-C or SIGTERM stops after the current step and saves the best model so far.",
        "  napari-pinned adapt scan.dm4 -o mine.pt\n"
        "  napari-pinned denoise scan.dm4 -o denoised.tif --model mine.pt",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="noisy images or stacks")
    p.add_argument("-o", "--output", type=output_file, required=True, help="model file to write")
    p.add_argument("--model", default="default", help="model to start from")
    p.add_argument(
        "--steps", type=positive_int, default=AdaptSettings().steps, help="training steps"
    )
    add_threads(p)
    add_seed(p)
    add_device(p)
    add_overwrite(p)
    p.set_defaults(func=run)


def _read_inputs(args: argparse.Namespace) -> list[np.ndarray]:
    """Check the arguments and the files' headers, then read and check the images."""
    check_inputs_exist(args.inputs)
    shipped_name_or_file(args.model, "--model")
    out = Path(args.output)
    check_outputs([out], [*args.inputs, *model_inputs(args.model)], overwrite=args.overwrite)
    check_writable_folder(out.parent if str(out.parent) else Path("."))
    for path in args.inputs:
        input_shape(path)

    from napari_pinned._util.intensity import check_image
    from napari_pinned.io.images import read_image

    images = []
    for path in args.inputs:
        image = read_image(path)
        with about(path):
            check_image(image, name="the image")
        images.append(image)
    return images


def run(args: argparse.Namespace) -> int:
    """Adapt with a progress bar, SIGINT/SIGTERM meaning Stop; save the best model."""
    images = _read_inputs(args)
    check_torch_device(args.device)
    import_torch()

    import torch

    from napari_pinned.training.adapt import adapt, outcome

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    job = adapt(
        images,
        args.model,
        settings=AdaptSettings(steps=args.steps),
        seed=args.seed,
        device=args.device,
    )
    print(
        f"adapting {args.model!r} to {len(images)} image(s) by blind-spot training "
        f"({args.steps} steps, device {job.device})",
        file=sys.stderr,
    )
    out = Path(args.output)
    with training_to_end(job, args.steps, "adapt", "best", "adaptation") as (bundle, received):
        bundle.metadata["name"] = f"adapted to {', '.join(p.name for p in args.inputs)}"
        out, problem = save_best_model(bundle, out)
    kept = outcome(bundle.metadata)
    done = f"{job.step} steps in {duration(bundle.metadata['elapsed_s'])}; {kept}"
    return saved_status(
        out,
        received,
        after=f"{job.step} steps",
        so_far=kept,
        done=done,
        finished=job.step >= args.steps,
        problem=problem,
    )
