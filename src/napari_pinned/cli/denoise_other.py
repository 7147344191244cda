"""``denoise`` with a model that is not napari-pinned's torch network: an ONNX file or
``--backend onnx`` (ONNX Runtime), or a BioImage Model Zoo package of another tool
(bioimageio.core).  Whole files, in this process, written as TIFF."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_pinned._util.jobs import run_job
from napari_pinned._util.memory import out_of_memory_message
from napari_pinned.cli.checks import about, check_finite_output
from napari_pinned.cli.denoise_checks import denoise_targets
from napari_pinned.cli.denoise_shared import print_rows, reference_rows, report_problems
from napari_pinned.cli.progress import ProgressBar
from napari_pinned.settings import FrameOptions

if TYPE_CHECKING:
    from napari_pinned.denoising.denoiser import DenoiseProgress


def other_runtime_model(args: argparse.Namespace, cluster: bool) -> Any:
    """The model when it does not run as napari-pinned's torch network: an ONNX file or
    ``--backend onnx`` (ONNX Runtime), or a BMZ package of another tool
    (bioimageio.core); None otherwise (napari-pinned's own packages load as models)."""
    from napari_pinned.nn.onnx_files import is_onnx_file
    from napari_pinned.nn.resolve import runtime_model

    if is_onnx_file(args.model) and args.backend == "torch":
        raise ValueError(f"--model {args.model}: an ONNX model runs with --backend onnx")
    model = runtime_model(
        args.model, backend=args.backend, device=args.device, trust=args.trust_package
    )
    if model is not None and cluster:
        raise ValueError(
            "--scheduler/--workers run napari-pinned's torch models; ONNX models and "
            "packages from other tools run in this process (leave them out)"
        )
    if model is not None:
        for target in denoise_targets(args):
            if target.suffix.lower() == ".zarr":
                raise ValueError(
                    f"{target}: ONNX models and packages from other tools write TIFF "
                    "outputs (-o out.tif)"
                )
    return model


def _denoise_file(
    args: argparse.Namespace, path: Path, model: Any, options: FrameOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``path`` whole and denoise it with a progress bar over its tiles; returns
    the image and the result."""
    from napari_pinned.denoising.denoiser import iter_denoise
    from napari_pinned.io.images import read_image

    image = read_image(path)
    bar = ProgressBar(1, f"denoise {Path(path).name}")

    def show(record: DenoiseProgress) -> None:
        bar.total = record.tiles_total
        bar.update(record.tiles_done, "tiles")

    try:
        backend = "onnx" if args.backend == "auto" else args.backend
        job = iter_denoise(image, model, options, backend=backend)
        result = run_job(job, show)
    finally:
        bar.close()
    assert result is not None
    return image, result


def denoise_other_runtime(
    args: argparse.Namespace,
    pairs: list[tuple[Path, Path]],
    model: Any,
    options: FrameOptions,
    reference: np.ndarray | None,
    problems: dict[Path, str],
) -> int:
    """Denoise whole files with an ONNX model or another tool's BMZ package; print
    metrics against ``reference``; return the exit status."""
    from napari_pinned.io.images import read_pixel_size
    from napari_pinned.io.tiff import write_tiff

    rows = {}
    for path, target in pairs:
        try:
            with about(path):
                image, result = _denoise_file(args, path, model, options)
                check_finite_output(result, path)
                write_tiff(target, result, pixel_size=read_pixel_size(path))
            print(f"{path} → {target}")
            if reference is not None:
                rows.update(reference_rows(path, image, result, reference))
        except (ValueError, MemoryError) as exc:
            if len(args.inputs) == 1:
                raise
            problems[path] = out_of_memory_message(exc) or str(exc)
    print_rows(rows)
    return report_problems(args, problems)
