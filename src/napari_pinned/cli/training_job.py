"""What ``train`` and ``adapt`` share: a training job run to its end, then saved (somewhere
else when its file cannot be written: hours of training are not lost to a full disk)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_pinned._util.errors import first_line
from napari_pinned._util.jobs import run_job
from napari_pinned.cli.exits import EXIT_OK, EXIT_USAGE, signal_status
from napari_pinned.cli.progress import ProgressBar, duration
from napari_pinned.cli.signals import Interrupted, stop_on_signals

if TYPE_CHECKING:
    from napari_pinned.training.run import TrainProgress


@contextlib.contextmanager
def training_to_end(
    run: Any, steps: int, label: str, score: str, what: str
) -> Iterator[tuple[Any, list[int]]]:
    """Run a training job to its end with a progress bar, SIGINT/SIGTERM meaning Stop.

    Yields the best model and the signals received, still inside the signal guard: a
    first Ctrl-C while the caller saves the model is recorded, not fatal.

    Raises
    ------
    Interrupted
        When a signal stopped the run before its first step.
    ValueError
        When the run stopped before its first step otherwise (nothing to save).
    """
    bar = ProgressBar(steps, label)

    def show(p: TrainProgress) -> None:
        val = f" {score} {p.best_val_psnr:.2f} dB" if p.best_val_psnr is not None else ""
        bar.update(p.step, f"loss {p.loss.total:.4f}{val} ETA {duration(p.eta)}")

    with stop_on_signals(run.stop) as received:
        try:
            bundle = run_job(run, show)
        finally:
            bar.close()
        if bundle is None:  # stopped before the first step
            if received:
                raise Interrupted(received[0])
            raise ValueError(f"{what} stopped before the first step; nothing saved")
        yield bundle, received


def took(seconds: float) -> str:
    """How long training took: ``"0.4 s"`` under a minute (``"0m00s"`` read as nothing
    done), then :func:`~napari_pinned.cli.progress.duration`'s ``"3m07s"``."""
    return f"{seconds:.1f} s" if seconds < 59.95 else duration(seconds)


def save_best_model(bundle: Any, out: Path) -> tuple[Path, str | None]:
    """Save the trained model to ``out`` or, when that fails (a full disk, its folder
    gone), to the temporary folder or the current one, under a name not taken.

    Returns
    -------
    tuple
        The file written, and the one-line problem with ``out`` (None when written there).

    Raises
    ------
    OSError
        One line: ``out``'s problem, and the folders that could not take the model either.
    """
    from napari_pinned.nn.model_files import save_model

    try:
        return save_model(bundle, out), None
    except (OSError, ValueError) as exc:
        problem = first_line(exc) if str(out) in str(exc) else f"{out}: {first_line(exc)}"
    tried = []
    for folder in _fallback_folders(out):
        candidate = folder / out.name
        if candidate.exists():
            candidate = folder / f"{out.stem}-{os.getpid()}{out.suffix}"
        try:
            return save_model(bundle, candidate), problem
        except (OSError, ValueError):
            tried.append(str(folder))
    raise OSError(
        f"{problem}; the trained model could not be written to {' or '.join(tried)} either"
    )


def _fallback_folders(out: Path) -> list[Path]:
    """Where a model goes when ``out`` cannot be written: the temporary folder, then the
    current one (those that are not ``out``'s)."""
    folders: list[Path] = []
    for folder in (Path(tempfile.gettempdir()), Path.cwd()):
        with contextlib.suppress(OSError):
            if folder.resolve() in {out.parent.resolve(), *(f.resolve() for f in folders)}:
                continue
        folders.append(folder)
    return folders


def saved_status(
    out: Path,
    received: list[int],
    *,
    after: str,
    so_far: str,
    done: str,
    finished: bool = False,
    problem: str | None = None,
) -> int:
    """Say where the model went; the exit status (128 + signal when one came, 2 when the
    model could not be written where asked).

    Parameters
    ----------
    out
        The model file written (:func:`save_best_model`).
    received
        The signals that stopped the run (from :func:`training_to_end`).
    after
        How far an interrupted run got ("120 of 2000 steps (4.2 s of training)").
    so_far
        What the best model so far scored, for an interrupted run.
    done
        The summary of a finished run.
    finished
        Whether every step ran: a signal after the last one cut nothing short.
    problem
        Why the model is not where it was asked to be (:func:`save_best_model`).
    """
    instead = "" if problem is None else " instead"
    if received:
        name = signal.Signals(received[0]).name
        trouble = "" if problem is None else f"{problem}; "
        if finished:
            line = (
                f"{name} arrived after the last step; {trouble}saved the finished "
                f"model to {out}{instead} ({done})"
            )
        else:
            line = (
                f"interrupted by {name}: stopped after {after}; {trouble}saved the best "
                f"model so far to {out}{instead} ({so_far})"
            )
        print(f"napari-pinned: {line}", file=sys.stderr)
        return signal_status(received[0])
    if problem is not None:
        print(
            f"napari-pinned: error: {problem}; the trained model was written to {out} instead",
            file=sys.stderr,
        )
        return EXIT_USAGE
    print(f"saved {out}: {done}")
    return EXIT_OK
