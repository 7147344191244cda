"""``denoise --uncertainty``: each output's per-pixel uncertainty, written beside it.

``<output>_uncertainty.tif`` holds every output pixel's standard deviation in the
output's units (:mod:`napari_pinned.denoising.uncertainty`), frame by frame like the
output, and the two files are written together atomically (``io.safe_write``): both or
neither.  The options are checked before torch is imported (TIFF outputs, this
process, strength above 0, destinations) and the model as soon as it is loaded
(a noise-aware one).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_pinned.io.safe_write import check_outputs, destination, unique_names

if TYPE_CHECKING:
    from napari_pinned._util.jobs import Job
    from napari_pinned.denoising.files import FileProgress
    from napari_pinned.settings import FrameOptions

__all__ = [
    "add_uncertainty_option",
    "check_uncertainty_args",
    "check_uncertainty_model",
    "uncertain_file_job",
    "uncertainty_target",
]


def add_uncertainty_option(p: argparse.ArgumentParser) -> None:
    """``--uncertainty``."""
    p.add_argument(
        "--uncertainty",
        action="store_true",
        help="also write <output>_uncertainty.tif: each output pixel's standard deviation "
        "(true values within ±2σ for about 95 %% of pixels with the default model; built on "
        "the spread of --orientations, so use 8)",
    )


def uncertainty_target(target: Path) -> Path:
    """Where the uncertainty of output ``target`` goes: ``<stem>_uncertainty<suffix>``."""
    target = Path(target)
    return target.with_name(f"{target.stem}_uncertainty{target.suffix}")


def check_uncertainty_args(
    args: argparse.Namespace, targets: list[Path], inputs: list[Path]
) -> list[Path]:
    """``--uncertainty`` against the other options and its destinations, before torch;
    returns the uncertainty files (none without the option)."""
    if not getattr(args, "uncertainty", False):
        return []
    if args.scheduler is not None or args.workers is not None:
        raise ValueError("--uncertainty runs in this process: leave out --scheduler/--workers")
    other = args.backend == "onnx" or Path(args.model).suffix.lower() in (".onnx", ".zip")
    if other:
        raise ValueError(
            f"--uncertainty needs a napari-pinned model file or a shipped model, not {args.model}"
        )
    if args.strength == 0:
        raise ValueError("--uncertainty needs --strength above 0 (at 0 the input is returned)")
    for target in targets:
        if target.suffix.lower() not in (".tif", ".tiff"):
            raise ValueError(f"{target}: --uncertainty writes TIFF outputs (-o out.tif)")
    files = [uncertainty_target(t) for t in targets]
    unique_names(files, args.inputs)
    outputs = {destination(t).absolute(): t for t in targets}
    for file in files:
        if destination(file).absolute() in outputs:
            raise ValueError(f"{file}: is both an output and an uncertainty map; rename an input")
    check_outputs(files, inputs, overwrite=args.overwrite)
    return files


def check_uncertainty_model(args: argparse.Namespace, spec: Any) -> None:
    """The loaded model must take a noise map (the map's noise term is built on it)."""
    if getattr(args, "uncertainty", False) and not spec.config.conditioned:
        raise ValueError(
            f"--uncertainty needs a noise-aware model (such as the shipped 'default'); "
            f"{args.model} has no noise input"
        )


def uncertain_file_job(
    source: Path, target: Path, spec: Any, options: FrameOptions
) -> Job[FileProgress, Path]:
    """Denoise ``source`` into ``target`` and its uncertainty into
    :func:`uncertainty_target`, frame by frame, both files written together."""
    from napari_pinned.denoising.denoiser import iter_denoise
    from napari_pinned.denoising.files import FileProgress
    from napari_pinned.io.images import open_frames, read_pixel_size
    from napari_pinned.io.safe_write import write_together
    from napari_pinned.io.tiff import TiffStackWriter

    frames = open_frames(source)
    shape = tuple(int(n) for n in frames.shape)
    count = shape[0] if len(shape) == 3 else 1
    pixel_size = read_pixel_size(source)
    last = None
    with (
        write_together(),
        TiffStackWriter(target, shape, pixel_size=pixel_size) as out,
        TiffStackWriter(uncertainty_target(target), shape, pixel_size=pixel_size) as sigma,
    ):
        for report in iter_denoise(frames, spec, options, out=out, uncertainty=sigma):
            last = report
            yield FileProgress(source, report.frames_done, count, report)
    yield FileProgress(source, count, count, last, target)
    return target
