"""``napari-pinned denoise``: images, stacks and batches, locally, on a dask cluster,
or with another runtime (ONNX, another tool's BMZ package).

This module parses and dispatches; :mod:`.denoise_checks` checks everything it can
before torch, and :mod:`.denoise_local`, :mod:`.denoise_cluster` and
:mod:`.denoise_other` run the three ways.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_pinned.cli.checks import about, check_inputs_exist, input_shape
from napari_pinned.cli.denoise_checks import check_args, precheck_frames, precheck_inputs
from napari_pinned.cli.denoise_cluster import denoise_on_cluster
from napari_pinned.cli.denoise_local import denoise_locally, load_denoise_model
from napari_pinned.cli.denoise_other import denoise_other_runtime, other_runtime_model
from napari_pinned.cli.denoise_uncertainty import (
    add_uncertainty_option,
    check_uncertainty_args,
    check_uncertainty_model,
)
from napari_pinned.cli.options import (
    add_device,
    add_overwrite,
    non_negative_int,
    output_file,
    positive_int,
    strength,
    subparser,
    workers,
)
from napari_pinned.settings import DEFAULT_TILE, ORIENTATION_COUNTS, FrameOptions


def add_parser(sub: Any) -> None:
    """Add ``denoise`` to the subcommands ``sub``."""
    p = subparser(
        sub,
        "denoise",
        "denoise images or stacks (TIFF, .dm3/.dm4/.emd/.ser/.mrc)",
        "Denoise images or stacks with a shipped or trained model, frame by frame and in\n"
        "exact tiles (any tile size gives the whole-image result).  Reads TIFF, zarr and\n"
        "OME-Zarr (level 0) and, with the [io] extra, .dm3/.dm4/.emd/.ser/.mrc files; writes\n"
        "float32 TIFF or zarr with the pixel size.  Memory does not grow with the number of\n"
        "frames.  A zarr output is written under a temporary name; --resume continues an\n"
        "interrupted one.  --workers N or --scheduler tcp://host:port run on dask.distributed.\n"
        "In a batch, a bad file is reported at the end and the others are denoised (exit\n"
        "status 2 if any failed).",
        "  napari-pinned denoise noisy.tif -o denoised.tif\n"
        "  napari-pinned denoise a.tif b.dm4 --output-dir out/ --model mine.pt\n"
        "  napari-pinned denoise noisy.tif -o denoised.tif --reference clean.tif\n"
        "  napari-pinned denoise scan.dm4 -o out.tif --strength 0.7 --check\n"
        "  napari-pinned denoise scan.tif -o out.tif --orientations 8 --uncertainty\n"
        "  napari-pinned denoise series.zarr -o series_denoised.zarr --resume\n"
        "  napari-pinned denoise series.tif -o series.zarr --workers 2\n"
        "  napari-pinned denoise big.zarr -o out.zarr --scheduler tcp://head-node:8786",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="noisy images or stacks (files, .zarr)")
    p.add_argument("-o", "--output", type=output_file, help="output .tif or .zarr (one input)")
    p.add_argument(
        "--output-dir", type=Path, help="folder for <input>_denoised.tif (several inputs)"
    )
    p.add_argument(
        "--model",
        default="default",
        help="a shipped model ('default', 'cdn'), a model file, an .onnx file, or a "
        "BioImage Model Zoo package (.zip)",
    )
    p.add_argument("--reference", type=Path, help="clean reference: print metrics")
    _add_output_options(p, FrameOptions())
    _add_tiling_options(p)
    _add_runtime_options(p)
    add_device(p)
    add_overwrite(p)
    p.set_defaults(func=run)


def _add_output_options(p: argparse.ArgumentParser, defaults: FrameOptions) -> None:
    """Options on what the output holds: strength, lattice, checks, format."""
    p.add_argument(
        "--strength",
        type=strength,
        default=defaults.strength,
        help="noise-aware models: factor on the estimated noise level (below 1 denoises "
        "less, above 1 more; 0 only repairs hot and dead pixels)",
    )
    p.add_argument(
        "--no-keep-lattice",
        action="store_true",
        help="give the network's output as it is, without giving back what it took from the "
        "input's strong lattice reflections",
    )
    p.add_argument(
        "--orientations",
        type=int,
        choices=ORIENTATION_COUNTS,
        default=defaults.orientations,
        help="average the network over this many turned and mirrored copies of each image "
        "(a better estimate at that many times the network's time)",
    )
    add_uncertainty_option(p)
    p.add_argument(
        "--check",
        action="store_true",
        help="print the faithfulness readout (kept and invented lattice reflections; "
        "no reference needed) for every output",
    )
    p.add_argument(
        "--output-format",
        choices=["tif", "zarr"],
        help="with --output-dir: write <input>_denoised.tif or .zarr (default: zarr for "
        "zarr inputs, else TIFF)",
    )


def _add_tiling_options(p: argparse.ArgumentParser) -> None:
    """Options on how frames are cut into tiles, and resuming a zarr output."""
    p.add_argument(
        "--tile",
        type=positive_int,
        help=f"output pixels per tile edge (default {DEFAULT_TILE}: frames up to that "
        "size go whole); any tile gives the same result, bigger ones less halo work and "
        "more memory",
    )
    p.add_argument(
        "--overlap",
        type=non_negative_int,
        help="halo (px) around every tile; default and minimum: the model's (half its "
        "receptive field, 160 px for the default model)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the zarr output of an interrupted run (frames it finished are kept)",
    )


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    """Options on where and with what the network runs (dask, ONNX, packages)."""
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on a dask.distributed cluster, e.g. tcp://head-node:8786 (inputs and "
        "outputs on a file system every worker sees); needs the [dask] extra",
    )
    p.add_argument(
        "--workers",
        type=workers,
        help="run on a local dask cluster of this many worker processes (one core each; at "
        "most one per CPU, and as many as the memory holds)",
    )
    p.add_argument(
        "--backend",
        choices=["auto", "torch", "onnx"],
        default="auto",
        help="what runs the network: torch, or ONNX Runtime (the [onnx] extra); auto: "
        "ONNX Runtime for .onnx models, torch otherwise",
    )
    p.add_argument(
        "--trust-package",
        action="store_true",
        help="run a BioImage Model Zoo package from another tool whose weights are code "
        "(torchscript, pytorch_state_dict); napari-pinned's own packages and ONNX weights "
        "never need it",
    )


def _read_reference(args: argparse.Namespace) -> Any:
    """``--reference`` read and checked, or None."""
    if args.reference is None:
        return None
    from napari_pinned._util.intensity import check_image
    from napari_pinned.io.images import read_image

    reference = read_image(args.reference)
    with about(args.reference):
        check_image(reference, name="the reference")
    return reference


def run(args: argparse.Namespace) -> int:
    """Check everything, then denoise in this process, on a cluster, or with another
    runtime; the exit status is 2 if any file of a batch failed."""
    targets = check_args(args)
    references = [args.reference] if args.reference is not None else []
    check_uncertainty_args(args, targets, [*args.inputs, *references])
    single = len(args.inputs) == 1
    tile = args.tile if args.tile is not None else DEFAULT_TILE
    reference_shape = None
    if args.reference is not None:
        check_inputs_exist([args.reference])
        reference_shape = input_shape(args.reference)
    problems = precheck_inputs(args, tile, reference_shape, single)
    reference = _read_reference(args)
    cluster = args.scheduler is not None or args.workers is not None
    if single and not cluster:
        # One input: its contents are checked before the model is loaded, too.
        precheck_frames(args.inputs[0])
    pairs = [(p, t) for p, t in zip(args.inputs, targets, strict=True) if p not in problems]

    options = FrameOptions(
        tile=tile,
        overlap=args.overlap,
        device=args.device,
        strength=args.strength,
        keep_lattice=not args.no_keep_lattice,
        orientations=args.orientations,
    )
    other = other_runtime_model(args, cluster)
    if other is not None:
        return denoise_other_runtime(args, pairs, other, options, reference, problems)
    spec = load_denoise_model(args)
    check_uncertainty_model(args, spec)
    if cluster:
        return denoise_on_cluster(args, pairs, spec, options, problems)
    return denoise_locally(args, pairs, spec, options, reference, problems)
