"""The checks of ``denoise`` that need no torch: arguments, destinations, and every
input from its header, before the model loads."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_pinned._util.memory import check_memory, denoise_bytes, local_cluster_bytes
from napari_pinned.cli.checks import (
    about,
    check_reference_shape,
    check_torch_device,
    model_inputs,
    not_a_file,
    shipped_name_or_file,
)
from napari_pinned.io.safe_write import check_outputs, unique_names


def is_zarr(path: Path) -> bool:
    """Whether ``path`` is a zarr store (a folder), read as one input."""
    from napari_pinned.io.zarr_store import is_zarr_path

    return is_zarr_path(path)


def denoise_targets(args: argparse.Namespace) -> list[Path]:
    """The output of each input: ``-o``, or ``<stem>_denoised.tif``/``.zarr`` in
    ``--output-dir``."""
    if args.output is not None:
        return [Path(args.output)]
    targets = []
    for p in args.inputs:
        zarr_out = args.output_format == "zarr" or (args.output_format is None and is_zarr(p))
        targets.append(
            Path(args.output_dir) / f"{Path(p).stem}_denoised{'.zarr' if zarr_out else '.tif'}"
        )
    return targets


def _check_options(args: argparse.Namespace) -> None:
    """The options on their own and together: one destination, tiles, cluster."""
    from napari_pinned.settings import MIN_TILE

    if (args.output is None) == (args.output_dir is None):
        raise ValueError("give exactly one of -o/--output or --output-dir")
    if args.output is not None and len(args.inputs) > 1:
        raise ValueError("several inputs need --output-dir, not -o")
    if args.output_dir is not None and not Path(args.output_dir).is_dir():
        raise ValueError(f"{args.output_dir}: output folder does not exist")
    if args.tile is not None and args.tile < MIN_TILE:
        raise ValueError(f"--tile {args.tile}: tiles must be at least {MIN_TILE} px")
    if args.scheduler is not None and args.workers is not None:
        raise ValueError(
            "give --scheduler (a running cluster) or --workers (a local one), not both"
        )
    if args.scheduler is not None:
        from napari_pinned.denoising.files import check_scheduler_address

        check_scheduler_address(args.scheduler)
    shipped_name_or_file(args.model, "--model")
    other_runtime = args.backend == "onnx" or Path(args.model).suffix.lower() in (".onnx", ".zip")
    if args.scheduler is None and not other_runtime:
        # torch runs here (or in local workers): its build must have what --device names.
        check_torch_device(args.device)


def _check_targets(args: argparse.Namespace, targets: list[Path]) -> None:
    """What each output may be: zarr to resume or for one stack on a cluster."""
    cluster = args.scheduler is not None or args.workers is not None
    for target in targets:
        suffix = target.suffix.lower()
        if args.resume and suffix != ".zarr":
            raise ValueError(f"{target}: --resume continues zarr outputs only (-o out.zarr)")
        if cluster and len(targets) == 1 and suffix != ".zarr":
            raise ValueError(
                f"{target}: --scheduler/--workers write one stack as zarr (-o out.zarr); "
                "TIFF outputs are for batches of files"
            )
    if cluster and (args.check or args.reference is not None):
        raise ValueError(
            "--check and --reference read outputs back whole: run them without a cluster"
        )


def check_args(args: argparse.Namespace) -> list[Path]:
    """Every check of ``denoise`` that needs no torch; returns the output paths."""
    _check_options(args)
    targets = denoise_targets(args)
    unique_names(targets, args.inputs)
    _check_targets(args, targets)
    references = [args.reference] if args.reference is not None else []
    inputs = [*args.inputs, *references, *model_inputs(args.model)]
    files = [t for t in targets if t.suffix.lower() != ".zarr"]
    check_outputs(files, inputs, overwrite=args.overwrite)
    from napari_pinned.io.zarr_store import check_zarr_output, partial_path

    for target in targets:
        if target.suffix.lower() == ".zarr":
            check_zarr_output(target, inputs, overwrite=args.overwrite)
            partial = partial_path(target)
            if partial.exists() and not args.resume:
                raise ValueError(
                    f"{target}: an interrupted run left {partial.name}; add --resume to "
                    "continue it, or delete it to start again"
                )
    return targets


def precheck_inputs(
    args: argparse.Namespace,
    tile: int,
    reference_shape: tuple[int, ...] | None,
    single: bool,
) -> dict[Path, str]:
    """Check every input from its header before any work; return the batch's bad files.

    A bad file of a batch is reported at the end and the others are denoised, so its
    problem is collected (path → message); a single input's problem is raised instead.
    """
    from napari_pinned._util.intensity import check_header
    from napari_pinned.denoising.inputs import check_noise_fit
    from napari_pinned.io.images import image_shape
    from napari_pinned.io.microscope import is_microscope_file

    problems: dict[Path, str] = {}
    frames: list[tuple[int, ...]] = []
    for path in args.inputs:
        try:
            if not (path.is_file() or (path.is_dir() and is_zarr(path))):
                raise ValueError(
                    f"{path}: is a folder, not a zarr store" if path.is_dir() else not_a_file(path)
                )
            shape, dtype = image_shape(path)
            if len(shape) not in (2, 3):
                raise ValueError(
                    f"{path}: holds a {len(shape)}-D array; expected an image or a stack"
                )
            with about(path):
                check_header(shape, dtype)  # RGB, not a number, empty: before torch
                check_noise_fit(shape)  # a 100000×1 strip: before torch too
            if reference_shape is not None:
                check_reference_shape(path, shape, args.reference, reference_shape)
            whole = is_microscope_file(path) or args.reference is not None or args.check
            check_memory(
                denoise_bytes(shape, tile, in_memory=whole),
                f"{path}: denoising its {'×'.join(map(str, shape))} px",
            )
            frames.append(shape[-2:])
        except ValueError as exc:
            if single:
                raise
            problems[path] = str(exc)
    if args.workers is not None and frames:
        _check_workers_memory(args.workers, max(frames, key=lambda f: f[0] * f[1]), tile)
    return problems


def _check_workers_memory(workers: int, frame: tuple[int, ...], tile: int) -> None:
    """``--workers``: every worker process holds torch, the model and one frame's work."""
    check_memory(
        local_cluster_bytes(workers, frame, tile),
        f"--workers {workers}: {workers} worker processes denoising {frame[0]}×{frame[1]} px "
        "frames (each with its own torch and model)",
        advice="use fewer --workers",
    )


def precheck_frames(path: Path) -> None:
    """Read a single input frame by frame and check its values, before the model loads."""
    from napari_pinned._util.intensity import check_image
    from napari_pinned.io.images import open_frames

    frames = open_frames(path)
    count = frames.shape[0] if len(frames.shape) == 3 else 1
    for f in range(count):
        frame = np.asarray(frames[f] if len(frames.shape) == 3 else frames[...])
        with about(path):
            check_image(
                frame, name="the image" if count == 1 else f"the image (frame {f})", ndim=(2,)
            )
