"""What ``train`` and ``adapt`` share: a training job run to its end, then saved."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_pinned._util.jobs import run_job
from napari_pinned.cli.exits import EXIT_OK, signal_status
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


def saved_status(out: Path, received: list[int], *, after: str, so_far: str, done: str) -> int:
    """Say where the model went; the exit status (128 + signal when one stopped the run).

    Parameters
    ----------
    out
        The model file written.
    received
        The signals that stopped the run (from :func:`training_to_end`).
    after
        How far an interrupted run got ("120 of 2000 steps").
    so_far
        What the best model so far scored, for an interrupted run.
    done
        The summary of a finished run.
    """
    if received:
        name = signal.Signals(received[0]).name
        print(
            f"napari-pinned: interrupted by {name} after {after}; saved the best model so "
            f"far to {out} ({so_far})",
            file=sys.stderr,
        )
        return signal_status(received[0])
    print(f"saved {out}: {done}")
    return EXIT_OK
