"""``napari-pinned noise``: Composite Degradation Noise or detector dose noise."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_pinned._util.memory import check_memory, noise_bytes
from napari_pinned.cli.checks import about, check_finite_output, check_inputs_exist, input_shape
from napari_pinned.cli.exits import EXIT_OK
from napari_pinned.cli.options import (
    add_overwrite,
    add_seed,
    finite,
    fraction,
    level,
    non_negative,
    output_file,
    positive,
    subparser,
)
from napari_pinned.io.safe_write import check_outputs


def add_parser(sub: Any) -> None:
    """Add ``noise`` to the subcommands ``sub``."""
    p = subparser(
        sub,
        "noise",
        "add Composite Degradation Noise (paper Table 1) or detector dose noise",
        "Degrade a clean image: CDN of the paper's Table 1 (levels 0–5, fractional levels\n"
        "interpolate), or with --model dose shot and read noise at a given electron dose.",
        "  napari-pinned noise si.tif --level 3 --seed 1 -o si_L3.tif\n"
        "  napari-pinned noise si.tif --model dose --dose 5000 --read-noise 0.5 -o si_dose.tif",
    )
    p.add_argument("input", type=Path, help="clean image or stack (TIFF or a microscope file)")
    p.add_argument("--level", type=level, default=3.0, help="CDN level 0–5")
    p.add_argument(
        "--gaussian-std", type=non_negative, help="override the Gaussian std (8-bit units)"
    )
    p.add_argument("--static-fraction", type=fraction, help="override the replaced-pixel fraction")
    p.add_argument("--speckle-variance", type=non_negative, help="override the speckle variance")
    p.add_argument("--no-clip", action="store_true", help="do not clip to the data range")
    p.add_argument("--model", choices=["cdn", "dose"], default="cdn", help="noise model")
    p.add_argument("--dose", type=positive, help="dose model: electrons per Å² per frame")
    p.add_argument("--pixel-size", type=positive, help="dose model: Å/px (default: from the file)")
    p.add_argument(
        "--collection", type=fraction, default=1.0, help="dose model: detector collection 0–1"
    )
    p.add_argument(
        "--read-noise", type=non_negative, default=0.0, help="dose model: read noise, e⁻"
    )
    p.add_argument(
        "--jitter", type=non_negative, default=0.0, help="dose model: scan-line jitter, px"
    )
    p.add_argument(
        "--drift",
        nargs=2,
        type=finite,
        default=(0.0, 0.0),
        metavar=("DY", "DX"),
        help="dose model: drift in px per frame",
    )
    add_seed(p)
    p.add_argument("-o", "--output", type=output_file, required=True, help="output TIFF (float32)")
    add_overwrite(p)
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> tuple[tuple[int, ...], float | None, float | None]:
    """The checks without torch or reading pixels; returns the input's shape, its
    pixel size, and the pixel size the noise uses."""
    from napari_pinned.io.images import read_pixel_size

    check_inputs_exist([args.input])
    if args.model == "dose" and args.dose is None:
        raise ValueError("--model dose needs --dose (e⁻/Å² per frame)")
    if args.model == "cdn" and args.dose is not None:
        raise ValueError("--dose applies to --model dose only")
    shape = input_shape(args.input)
    check_outputs([args.output], [args.input], overwrite=args.overwrite)
    pixel_size = read_pixel_size(args.input)
    size = args.pixel_size or pixel_size
    if args.model == "dose" and size is None:
        raise ValueError(f"{args.input}: the file has no pixel size; give --pixel-size in Å")
    return shape, pixel_size, size


def run(args: argparse.Namespace) -> int:
    """Add the noise, write the result; print the noise added."""
    from napari_pinned.io.images import read_image
    from napari_pinned.io.tiff import write_tiff

    shape, pixel_size, size = _check(args)
    check_memory(noise_bytes(shape), f"{args.input}: adding noise")

    from napari_pinned.noise.synthesis import add_cdn_noise, add_dose_noise

    image = read_image(args.input)
    with about(args.input):
        if args.model == "dose":
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
        else:
            noisy = add_cdn_noise(
                image,
                args.level,
                gaussian_std=args.gaussian_std,
                static_fraction=args.static_fraction,
                speckle_variance=args.speckle_variance,
                clip=not args.no_clip,
                seed=args.seed,
            )
    check_finite_output(noisy, args.input)
    write_tiff(args.output, noisy, pixel_size=pixel_size or size)
    if args.model == "dose":
        print(f"dose {args.dose:g} e⁻/Å² at {size:g} Å/px → {args.output}")
    else:
        print(f"CDN level {args.level:g} → {args.output}")
    return EXIT_OK
