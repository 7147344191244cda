"""``napari-pinned metrics``: PSNR, SSIM, FSC and EPI against a reference."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_pinned.cli.checks import about, check_inputs_exist, check_reference_shape, input_shape
from napari_pinned.cli.exits import EXIT_OK
from napari_pinned.cli.options import subparser


def add_parser(sub: Any) -> None:
    """Add ``metrics`` to the subcommands ``sub``."""
    p = subparser(
        sub,
        "metrics",
        "PSNR, SSIM, FSC and EPI against a reference",
        "Score images against a clean reference (docs/metrics.md).  A stack is scored frame\n"
        "by frame (against a stack of the same shape, or every frame against a 2D reference)\n"
        "and the mean is printed.",
        "  napari-pinned metrics --reference si.tif si_L3.tif si_L3_denoised.tif",
    )
    p.add_argument("images", nargs="+", type=Path, help="images or stacks to score")
    p.add_argument("--reference", type=Path, required=True, help="clean reference image or stack")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score every image against the reference; print the table of mean metrics."""
    from napari_pinned.io.images import read_image
    from napari_pinned.quality.metrics import (
        compute_metrics_stack,
        format_metrics_table,
        mean_metrics,
    )

    check_inputs_exist([args.reference, *args.images])
    ref_shape = input_shape(args.reference)
    for path in args.images:
        check_reference_shape(path, input_shape(path), args.reference, ref_shape)
    reference = read_image(args.reference)
    with about(args.reference):
        from napari_pinned._util.intensity import check_image

        check_image(reference, name="the reference")
    rows = {}
    for path in args.images:
        image = read_image(path)
        with about(path):
            rows[str(path)] = mean_metrics(compute_metrics_stack(image, reference))
    print(format_metrics_table(rows))
    return EXIT_OK
