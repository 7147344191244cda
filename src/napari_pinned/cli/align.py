"""``napari-pinned align``: register a frame series, write its drift-corrected mean."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_pinned._util.jobs import run_job
from napari_pinned._util.memory import check_memory, registration_bytes
from napari_pinned.cli.checks import about, check_inputs_exist, input_shape
from napari_pinned.cli.exits import EXIT_OK
from napari_pinned.cli.options import add_overwrite, output_file, positive, positive_int, subparser
from napari_pinned.cli.progress import ProgressBar
from napari_pinned.io.safe_write import check_outputs, write_together

if TYPE_CHECKING:
    from napari_pinned.denoising.registration import RegistrationProgress, RegistrationResult


def add_parser(sub: Any) -> None:
    """Add ``align`` to the subcommands ``sub``."""
    p = subparser(
        sub,
        "align",
        "register a frame series; write its drift-corrected mean",
        "Register a frame series (drift correction) and write its drift-corrected mean\n"
        "(docs/real-data.md).",
        "  napari-pinned align series.tif -o mean.tif --shifts shifts.csv\n"
        "  napari-pinned align series.emd -o mean.tif --halves even.tif odd.tif",
    )
    p.add_argument("input", type=Path, help="frame series (a TIFF stack or a microscope file)")
    p.add_argument(
        "-o", "--output", type=output_file, required=True, help="drift-corrected mean (TIFF)"
    )
    p.add_argument("--aligned", type=output_file, help="also write the aligned stack")
    p.add_argument(
        "--halves",
        nargs=2,
        type=Path,
        metavar=("EVEN", "ODD"),
        help="also write the means of the even and odd frames (Noise2Noise pairs)",
    )
    p.add_argument(
        "--shifts", type=output_file, help="also write the shifts as CSV (frame, dy, dx)"
    )
    p.add_argument(
        "--reference",
        default="mean",
        choices=["mean", "previous", "first"],
        help="match frames against the series mean, the previous or the first frame",
    )
    p.add_argument("--upsample", type=positive_int, default=20, help="1/upsample px precision")
    p.add_argument("--max-shift", type=positive, help="largest shift one match may find (px)")
    add_overwrite(p)
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    """The input is a stack, the outputs may be written, the registration fits."""
    check_inputs_exist([args.input])
    shape = input_shape(args.input)
    if len(shape) != 3:
        raise ValueError(
            f"{args.input} is a single 2D image (shape {shape}); registration needs a stack "
            "of frames (N, H, W)"
        )
    outputs = [args.output, args.aligned, args.shifts, *(args.halves or [])]
    check_outputs([o for o in outputs if o is not None], [args.input], overwrite=args.overwrite)
    check_memory(registration_bytes(shape), f"{args.input}: registering its frames")


def _write(args: argparse.Namespace, result: RegistrationResult, pixel_size: float | None) -> list:
    """Write the mean and the outputs asked for, all or none; returns what was written."""
    from napari_pinned.io.images import write_csv
    from napari_pinned.io.tiff import write_tiff

    written = [args.output]
    with write_together():
        write_tiff(args.output, result.mean, pixel_size=pixel_size)
        if args.aligned is not None:
            write_tiff(args.aligned, result.aligned, pixel_size=pixel_size)
            written.append(args.aligned)
        if args.halves:
            for path, half in zip(args.halves, result.halves(), strict=True):
                write_tiff(path, half, pixel_size=pixel_size)
                written.append(path)
        if args.shifts is not None:
            table = np.column_stack([np.arange(len(result.shifts)), result.shifts])
            write_csv(args.shifts, table, ["frame", "dy", "dx"], fmt=["%d", "%.4f", "%.4f"])
            written.append(args.shifts)
    return written


def run(args: argparse.Namespace) -> int:
    """Register with a progress bar, write the outputs; print the drift found."""
    from napari_pinned.io.images import read_image, read_pixel_size

    _check(args)

    from napari_pinned.denoising.registration import check_frames, register_frames

    stack = check_frames(read_image(args.input), name=str(args.input))
    bar = ProgressBar(1, f"align {Path(args.input).name}")

    def show(record: RegistrationProgress) -> None:
        bar.total = record.total
        bar.update(record.done)

    try:
        with about(args.input):
            job = register_frames(
                stack, reference=args.reference, upsample=args.upsample, max_shift=args.max_shift
            )
            result = run_job(job, show)
    finally:
        bar.close()
    pixel_size = read_pixel_size(args.input)
    written = _write(args, result, pixel_size)
    drift = f"max drift {result.max_drift:.2f} px"
    if pixel_size is not None:
        drift += f" ({result.max_drift * pixel_size:.2f} Å)"
    h, w = result.mean.shape
    print(f"{len(stack)} frames, {drift}; mean of the common {h}×{w} px region")
    print(f"{args.input} → {', '.join(str(p) for p in written)}")
    return EXIT_OK
