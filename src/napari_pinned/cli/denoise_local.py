"""``denoise`` in this process with napari-pinned's torch models: frame by frame,
a batch going on past a file that fails."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from napari_pinned._util.memory import out_of_memory_message
from napari_pinned.cli.denoise_shared import (
    print_rows,
    reference_rows,
    report_problems,
    run_file_job,
)
from napari_pinned.cli.signals import signals_held
from napari_pinned.settings import FrameOptions


def load_denoise_model(args: argparse.Namespace) -> Any:
    """Load ``--model`` and check the options that depend on it; return its ``ModelSpec``.

    Raises
    ------
    ValueError
        If ``--overlap`` is below the halo the model's receptive field needs.
    """
    with signals_held():  # torch's import must not be interrupted half-way
        from napari_pinned.denoising.model_spec import ModelSpec
        from napari_pinned.denoising.tiling import minimum_overlap
        from napari_pinned.nn.resolve import load_model

        bundle = load_model(args.model, device="cpu")
    needed = minimum_overlap(bundle.config)
    if args.overlap is not None and args.overlap < needed:
        raise ValueError(
            f"--overlap {args.overlap} is too small for model {args.model!r}: tiles need at "
            f"least {needed} px of halo to give the whole-image result (leave it out)"
        )
    if args.strength != FrameOptions().strength and not bundle.config.conditioned:
        print(
            f"napari-pinned: note: --strength is ignored: model {args.model!r} has no noise "
            "input (the shipped 'default' does)",
            file=sys.stderr,
        )
    return ModelSpec.of(bundle)


def denoise_locally(
    args: argparse.Namespace,
    pairs: list[tuple[Path, Path]],
    spec: Any,
    options: FrameOptions,
    reference: np.ndarray | None,
    problems: dict[Path, str],
) -> int:
    """Denoise each (input, output) pair in this process; print metrics; return the exit code.

    A batch goes on past a file that fails (bad contents, out of memory), which joins
    ``problems``; a single input, or an unexpected runtime error, is raised.
    """
    single = len(args.inputs) == 1
    rows: dict[str, dict] = {}
    for path, target in pairs:
        try:
            last = _denoise_one(path, target, spec, options, args)
            _report_noise(path, last.report if last is not None else None)
            if args.check or reference is not None:
                rows.update(_check_denoised(path, target, reference, args.check))
        except (ValueError, MemoryError, RuntimeError) as exc:
            memory = out_of_memory_message(exc)
            if single or (isinstance(exc, RuntimeError) and memory is None):
                raise
            problems[path] = memory or str(exc)
            continue
    print_rows(rows)
    return report_problems(args, problems)


def _denoise_one(
    path: Path, target: Path, spec: Any, options: FrameOptions, args: argparse.Namespace
) -> Any:
    """One input → one output, frame by frame, with a progress bar; prints the result."""
    from napari_pinned.cli.denoise_uncertainty import uncertain_file_job, uncertainty_target
    from napari_pinned.denoising.files import iter_denoise_file

    uncertain = bool(getattr(args, "uncertainty", False))

    def start() -> Any:
        if uncertain:  # the output and its uncertainty (cli.denoise_uncertainty)
            return uncertain_file_job(path, target, spec, options)
        return iter_denoise_file(path, target, spec, options, resume=args.resume)

    last = run_file_job(path, target, start, tiles=True)
    resumed = f" ({last.resumed} frames from the interrupted run)" if last and last.resumed else ""
    print(f"{path} → {target}{resumed}")
    if uncertain:
        print(f"{path} → {uncertainty_target(target)} (uncertainty, σ)")
    return last


def _check_denoised(
    path: Path, target: Path, reference: np.ndarray | None, check: bool
) -> dict[str, dict]:
    """``--check``'s faithfulness report, and the metrics rows against ``--reference``.

    Returns
    -------
    dict
        ``"<name> (input)"`` and ``"<name> (denoised)"`` → mean metrics; empty without a
        reference.
    """
    from napari_pinned.io.images import read_image

    image, output = read_image(path), read_image(target)
    if check:
        from napari_pinned.io.images import read_pixel_size

        _report_faithfulness(path, image, output, read_pixel_size(path))
    if reference is None:
        return {}
    return reference_rows(path, image, output, reference)


def _report_noise(path: Path, report: Any) -> None:
    """One line with the noise the model was told about (noise-aware models), read for
    the user (:func:`napari_pinned.noise.readout.read_noise`)."""
    estimates = [] if report is None else [e for e in report.noise if e is not None]
    if estimates:
        from napari_pinned.io.images import open_frames
        from napari_pinned.noise.readout import read_noise

        frames = open_frames(path)  # frame 0 only is read, not the whole stack again
        frame = np.asarray(frames if len(np.shape(frames)) == 2 else frames[0])
        which = "" if len(estimates) == 1 else f" (frame 0 of {len(estimates)})"
        print(f"{path}: noise{which}: {read_noise(frame, estimate=estimates[0]).line()}")
    if report is not None and report.repaired:
        print(f"{path}: {report.repaired} hot/dead pixel(s) repaired")


def _report_faithfulness(
    path: Path, image: np.ndarray, output: np.ndarray, pixel_size: float | None
) -> None:
    """The reference-free faithfulness readout, per frame, with its warnings."""
    from napari_pinned.quality.faithfulness import faithfulness

    frames = [(image, output)] if np.ndim(image) == 2 else list(zip(image, output, strict=True))
    for index, (source, result) in enumerate(frames):
        check = faithfulness(source, result, pixel_size=pixel_size)
        where = "" if len(frames) == 1 else f" frame {index}"
        print(f"{path}{where}: {check.summary()}")
        for warning in check.warnings:
            print(f"  warning: {warning}")
