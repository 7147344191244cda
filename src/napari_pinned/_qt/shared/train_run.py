"""What the Train dock and the Adapt panel run in their worker: a training run as a job.

A :class:`~napari_pinned.training.run.TrainingRun` is built in the worker thread (the first
one imports parts of torch, which takes seconds), so a Stop can arrive before the run
exists; :class:`RunHandle` keeps that request for it.  Both job functions build the run,
then yield one :class:`~napari_pinned.training.run.TrainProgress` per optimiser step and
return the best model (None when stopped before the first step).
"""

from __future__ import annotations

import math
import os
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from napari_pinned.nn.network import ModelBundle
    from napari_pinned.settings import TrainConfig
    from napari_pinned.training.run import TrainingRun, TrainProgress

__all__ = [
    "RunHandle",
    "adapt_steps",
    "dock_training_threads",
    "format_duration",
    "progress_text",
    "train_steps",
]


def dock_training_threads(cpu_count: int | None = None) -> int:
    """Torch threads for training on the CPU from a dock.

    From three cores up one is left to the GUI (drawing the canvas with software OpenGL
    needs it); on two, both train: the GUI's own share is small since the job runner
    batches progress, and 2 threads train 1.5× faster at the same responsiveness
    (``benchmarks/dock_training_speed.py``, docs/benchmarks.md).
    """
    cores = cpu_count or os.cpu_count() or 1
    return cores - 1 if cores >= 3 else cores


class RunHandle:
    """The training run, built in the worker thread, and a stop request that may come
    before it exists.

    Both threads set their half first and check the other's after, so a stop is never
    lost whichever comes first.
    """

    def __init__(self) -> None:
        self.run: TrainingRun | None = None
        self._stop_requested = False

    def stop(self) -> None:
        """End the run after the step in progress (or before its first, if not built)."""
        self._stop_requested = True
        run = self.run
        if run is not None:
            run.stop()

    def attach(self, run: TrainingRun) -> None:
        """Hand over the run built in the worker; a stop that came first applies."""
        self.run = run
        if self._stop_requested:
            run.stop()


def train_steps(
    handle: RunHandle,
    config: TrainConfig,
    clean: list[np.ndarray],
    noisy: list[np.ndarray] | None,
    seed: int,
    device: str,
    init_model: ModelBundle | None = None,
) -> Generator[TrainProgress, None, ModelBundle | None]:
    """The Train dock's job: builds the run, then one optimiser step per yield."""
    from napari_pinned.training.run import train

    handle.attach(train(config, clean, noisy, seed=seed, device=device, init_model=init_model))
    assert handle.run is not None
    return (yield from handle.run.job())


def adapt_steps(
    handle: RunHandle, data: np.ndarray, start: Any, steps: int, device: str
) -> Generator[TrainProgress, None, ModelBundle | None]:
    """The Adapt panel's job: blind-spot fine-tuning of ``start`` on ``data``."""
    from napari_pinned.settings import AdaptSettings
    from napari_pinned.training.adapt import adapt

    settings = AdaptSettings(steps=steps)
    handle.attach(adapt(data, start, settings=settings, device=device))
    assert handle.run is not None
    return (yield from handle.run.job())


def format_duration(seconds: float) -> str:
    """``"m:ss"`` or ``"h:mm:ss"`` for a duration in seconds."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_text(progress: TrainProgress) -> str:
    """One status line: step, loss, elapsed time, ETA and the best validation PSNR."""
    parts = [
        f"Step {progress.step}/{progress.total_steps}",
        f"loss {progress.loss.total:.3g}",
        f"elapsed {format_duration(progress.elapsed)}",
        f"ETA {format_duration(progress.eta)}",
    ]
    if progress.best_val_psnr is not None:
        parts.append(f"best val PSNR {progress.best_val_psnr:.2f} dB")
    return " · ".join(parts)
