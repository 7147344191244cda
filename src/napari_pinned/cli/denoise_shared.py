"""What the three ways of ``denoise`` share: a file job with its progress bar, the
metrics against ``--reference``, and the report of a batch's failed files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_pinned._util.jobs import run_job
from napari_pinned.cli.checks import about
from napari_pinned.cli.exits import EXIT_OK, EXIT_USAGE
from napari_pinned.cli.progress import ProgressBar
from napari_pinned.cli.signals import Interrupted

if TYPE_CHECKING:
    from napari_pinned.denoising.files import FileProgress


def run_file_job(
    path: Path, target: Path, start: Callable[[], Any], *, tiles: bool
) -> FileProgress | None:
    """Run the file job ``start()`` with a progress bar; returns its last record.

    The bar counts frames, or (``tiles``) a single frame's tiles.  When a signal stops
    a zarr output, one line says how many frames are kept for ``--resume``.
    """
    bar = ProgressBar(1, f"denoise {Path(path).name}")
    last = None

    def show(record: FileProgress) -> None:
        nonlocal last
        last = record
        if record.total > 1 or not tiles:
            bar.total = record.total
            bar.update(record.done, "frames")
        elif record.report is not None:
            bar.total = record.report.tiles_total
            bar.update(record.report.tiles_done, "tiles")

    try:
        with about(path):
            run_job(start(), show)
    except (KeyboardInterrupt, Interrupted):
        bar.close()
        if target.suffix.lower() == ".zarr" and last is not None:
            print(
                f"\nnapari-pinned: {last.done} of {last.total} frames of {target} are kept; "
                "run the same command with --resume to continue",
                file=sys.stderr,
            )
        raise
    finally:
        bar.close()
    return last


def reference_rows(
    path: Path, image: np.ndarray, output: np.ndarray, reference: np.ndarray
) -> dict[str, Any]:
    """``"<name> (input)"`` and ``"<name> (denoised)"`` → mean metrics against ``reference``."""
    from napari_pinned.quality.metrics import compute_metrics_stack, mean_metrics

    name = Path(path).name
    return {
        f"{name} (input)": mean_metrics(compute_metrics_stack(image, reference)),
        f"{name} (denoised)": mean_metrics(compute_metrics_stack(output, reference)),
    }


def print_rows(rows: dict[str, Any]) -> None:
    """The metrics table, if there are rows."""
    if rows:
        from napari_pinned.quality.metrics import format_metrics_table

        print(format_metrics_table(rows))


def report_problems(args: argparse.Namespace, problems: dict[Path, str]) -> int:
    """One line per failed file of a batch, in the inputs' order, and a count; the
    exit status (2 if any failed)."""
    if not problems:
        return EXIT_OK
    order = {path: i for i, path in enumerate(args.inputs)}
    for path, message in sorted(problems.items(), key=lambda item: order[item[0]]):
        text = message if str(path) in message else f"{path}: {message}"
        print(f"napari-pinned: error: {text}", file=sys.stderr)
    done = len(args.inputs) - len(problems)
    print(
        f"napari-pinned: error: {len(problems)} of {len(args.inputs)} files failed "
        f"(listed above); {done} denoised",
        file=sys.stderr,
    )
    return EXIT_USAGE
