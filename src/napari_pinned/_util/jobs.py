"""The one shape of every long job in the core: a generator of progress, returning a result.

Training, denoising, frame registration, adaptation and the file/zarr writers are all
generators of the type :data:`Job` — ``Generator[Progress, None, Result]``:

* each ``next()`` does a bounded piece of work (an optimiser step, a batch of tiles, a
  frame) and yields a small, frozen progress record (:class:`Progress`: ``done`` of
  ``total`` and ``fraction``), safe to hand to another thread;
* the generator's ``return`` value is the result (a model, the denoised array, a
  :class:`~napari_pinned.denoising.registration.RegistrationResult`, the written file);
* a caller cancels by no longer iterating (``close()``); jobs that can end gracefully
  (training keeps its best model) also have a ``stop()`` on the object that made them.

:func:`run_job` runs one to its end and returns the result; the command line, the
napari docks (``napari_pinned._qt.shared.job_runner.JobRunner``), the benchmarks and the tests
consume jobs through it or through the same loop.

Examples
--------
>>> from napari_pinned.denoising.registration import register_frames  # doctest: +SKIP
>>> result = run_job(register_frames(stack), on_progress=print)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["Job", "Progress", "run_job"]

P = TypeVar("P")
R = TypeVar("R")

#: A long job: yields progress records, returns its result.
Job = Generator[P, None, R]


@runtime_checkable
class Progress(Protocol):
    """What every progress record of a job has (fields or properties)."""

    @property
    def done(self) -> int:
        """Units of work finished (steps, tiles, frames)."""
        ...

    @property
    def total(self) -> int:
        """Units of work in the whole job."""
        ...

    @property
    def fraction(self) -> float:
        """``done / total``, in [0, 1]."""
        ...


def run_job(
    job: Generator[P, None, R] | Iterable[P],
    on_progress: Callable[[P], Any] | None = None,
) -> R:
    """Run a job to its end and return its result.

    Parameters
    ----------
    job : generator (or an iterable whose iterator is one, e.g. a ``TrainingRun``)
        The job; each yielded record goes to ``on_progress``.
    on_progress : callable, optional
        Called with every progress record, in order.

    Returns
    -------
    object
        The generator's return value.
    """
    gen = job if isinstance(job, Generator) else iter(job)
    while True:
        try:
            record = next(gen)
        except StopIteration as finished:
            return finished.value
        if on_progress is not None:
            on_progress(record)
