"""Training batches made ahead of time by worker processes.

A GPU takes a step in a few milliseconds; recording a batch of patches (the clean
crops, then every noise term of :mod:`napari_pinned.noise`) takes tens of milliseconds
on one core.  :class:`ParallelBatches` keeps ``workers`` processes busy drawing the
next batches while the network trains on this one.

Each step's batch is drawn from its own generator, seeded with the run's seed and the
step number, so the batches do not depend on how many workers there are or on which
finishes first, and a run resumed from a checkpoint at step n draws exactly what the
uninterrupted run would have.  (The one-process path, ``workers=0``, draws every batch
from one generator instead, as runs always have; the two streams differ.)
"""

from __future__ import annotations

import multiprocessing
import weakref
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from napari_pinned.training.data import Batch, BatchSampler

#: Set in the parent before the workers fork: they inherit the sampler, and with it
#: the clean images, without copying or pickling them.
_SAMPLER: BatchSampler | None = None
#: Tells the step generators apart from any other use of the run's seed.
_STREAM = 0xBA7C


def step_generator(seed: int, step: int) -> np.random.Generator:
    """The generator that draws step ``step``'s batch of a run seeded with ``seed``."""
    return np.random.default_rng([seed, _STREAM, step])


def _draw(seed: int, step: int) -> Batch:
    assert _SAMPLER is not None, "worker started without a sampler"
    return _SAMPLER.sample(step_generator(seed, step))


class ParallelBatches:
    """Batches for steps ``n, n + 1, …``, each drawn by one of ``workers`` processes.

    Parameters
    ----------
    sampler : BatchSampler
        Draws a batch from a given generator.
    seed : int
        The run's seed.
    workers : int
        Worker processes (forked, so this needs a platform with ``fork``).
    ahead : int, optional
        Batches in flight (default ``2 × workers``).
    """

    def __init__(self, sampler: BatchSampler, seed: int, workers: int, ahead: int | None = None):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if "fork" not in multiprocessing.get_all_start_methods():
            raise ValueError("parallel batches need processes started by fork (Linux, macOS)")
        global _SAMPLER
        _SAMPLER = sampler
        self.seed = seed
        self.ahead = ahead or 2 * workers
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        self._pending: dict[int, Future] = {}
        self._finalizer = weakref.finalize(self, self._pool.shutdown, cancel_futures=True)

    def batch(self, step: int) -> Batch:
        """The batch of step ``step`` (0-based); asks for the next ones meanwhile."""
        for ahead in range(step, step + self.ahead):
            if ahead not in self._pending:
                self._pending[ahead] = self._pool.submit(_draw, self.seed, ahead)
        for stale in [s for s in self._pending if s < step]:
            self._pending.pop(stale).cancel()
        return self._pending.pop(step).result()

    def close(self) -> None:
        """Stop the workers (batches in flight are dropped)."""
        self._finalizer()
