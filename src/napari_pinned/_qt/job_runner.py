"""One runner for every long job a dock starts: worker, progress bar, cancel, errors.

A dock hands :meth:`JobRunner.start` a core generator (it yields small progress records
and returns its result) and three hooks; the runner owns everything else:

* the napari worker (through :func:`._jobs.start_job`) and its thread's lifetime,
  including waiting for it when the dock or the viewer closes;
* napari's progress bar, moved at most a few times per second (repainting it through
  software OpenGL can starve the job itself) — the last record always gets through;
* cancel: the worker stops at the generator's next yield — or, for jobs that can end
  gracefully (training keeps its best model), the dock's own ``stop`` is called and the
  job returns its result as usual (outcome ``"stopped"``);
* errors: one notification line naming the dock (``"Adapt: …"``), never a traceback
  for the user's mistakes;
* the end: ``on_finish(outcome, result)`` with outcome ``"done"``, ``"stopped"``,
  ``"cancelled"`` or ``"failed"``, in the GUI thread, after the progress bar is closed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from napari.utils import progress as napari_progress
from qtpy.QtWidgets import QWidget

from ._common import describe_error, notify_error
from ._jobs import BackgroundJob, CloseWatcher, release_job, start_job

__all__ = ["JobRunner", "Outcome"]

Outcome = Literal["done", "stopped", "cancelled", "failed"]
#: Seconds between two progress updates reaching the GUI.
PROGRESS_INTERVAL = 0.25
_SHUTDOWN_TIMEOUT = 60.0


class JobRunner:
    """Runs one job at a time for ``widget``; see the module docstring.

    Parameters
    ----------
    widget : QWidget
        The dock or panel; its window closing stops the job.
    context : str
        Prefix of error notifications, e.g. ``"Adapt"``.
    progress_bar : bool
        Show napari's progress bar (short checks of a second or two do without).
    """

    def __init__(self, widget: QWidget, context: str, *, progress_bar: bool = True) -> None:
        self._widget = widget
        self._context = context
        self._show_bar = progress_bar
        self._stop: Callable[[], None] | None = None
        self._job: BackgroundJob | None = None
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._pbar: Any = None
        self._outcome: Outcome = "done"
        self._result: Any = None
        self._last_update = 0.0
        self._pending: Any = None
        self._on_progress: Callable[[Any], tuple[int, int] | None] | None = None
        self._on_record: Callable[[Any], None] | None = None
        self._on_shutdown: Callable[[bool], None] | None = None
        self._on_finish: Callable[[Outcome, Any], None] | None = None
        self._close_watcher = CloseWatcher(widget, self.shutdown)

    @property
    def running(self) -> bool:
        """True while a job runs."""
        return self._job is not None

    @property
    def job(self) -> BackgroundJob | None:
        """The running job's worker and thread flags (None when idle)."""
        return self._job

    def start(
        self,
        func: Callable[..., Any],
        *args: Any,
        description: str,
        on_progress: Callable[[Any], tuple[int, int] | None] | None = None,
        on_finish: Callable[[Outcome, Any], None] | None = None,
        stop: Callable[[], None] | None = None,
        on_record: Callable[[Any], None] | None = None,
        on_shutdown: Callable[[bool], None] | None = None,
    ) -> bool:
        """Start ``func(*args)`` (a generator function) in a worker.

        ``on_progress(record)`` runs in the GUI thread for (throttled) yielded records
        and may return ``(done, total)`` for the progress bar.  ``on_record(record)``,
        if given, runs for every record, throttled or not: for cheap bookkeeping that
        must see them all (a loss curve), never for repainting.  ``stop``, if given, is
        what :meth:`cancel` calls instead of ending the worker: the job then finishes
        by itself and its result is kept.  ``on_shutdown(ended)`` runs instead of
        ``on_finish`` when the dock or the viewer closes mid-job, once the worker thread
        ended (``ended``) or the wait timed out.  Returns False, with a notification, when a
        job is already running.
        """
        if self._job is not None:
            notify_error(f"{self._context}: a job is already running")
            return False
        self._outcome = "done"
        self._result = None
        self._pending = None
        self._last_update = 0.0
        self._on_progress = on_progress
        self._on_record = on_record
        self._on_shutdown = on_shutdown
        self._on_finish = on_finish
        self._stop = stop
        self._handlers = {
            "yielded": self._yielded,
            "returned": self._returned,
            "errored": self._errored,
            "finished": self._finished,
        }
        self._pbar = napari_progress(total=0, desc=description) if self._show_bar else None
        self._job = start_job(func, *args, connect=self._handlers)
        self._close_watcher.watch()
        return True

    def cancel(self) -> None:
        """Stop the job: gracefully through ``stop`` when given, else at its next yield."""
        if self._job is None:
            return
        if self._stop is not None:
            self._outcome = "stopped"
            self._stop()
            return
        self._outcome = "cancelled"
        self._job.worker.quit()

    def shutdown(self) -> bool:
        """Cancel and wait for the worker thread (the dock or the viewer is closing).

        ``on_finish`` is not called.  Returns True if the thread ended within the
        timeout (or no job ran), so a dock knows whether the job's state is final.
        """
        if self._job is None:
            return True
        self._outcome = "cancelled"
        if self._stop is not None:
            self._stop()
        hook, self._on_shutdown = self._on_shutdown, None
        job = self._release()
        ended = job is None or job.quit_and_wait(_SHUTDOWN_TIMEOUT)
        if hook is not None:
            hook(ended)
        return ended

    # -- worker signals (GUI thread) ----------------------------------------------------
    def _yielded(self, record: Any) -> None:
        if self._on_record is not None:
            self._on_record(record)
        now = time.perf_counter()
        if now - self._last_update < PROGRESS_INTERVAL:
            self._pending = record
            return
        self._pending = None
        self._last_update = now
        self._show(record)

    def _show(self, record: Any) -> None:
        counts = None if self._on_progress is None else self._on_progress(record)
        # Last: a napari progress bar processes pending events when it moves.
        pbar = self._pbar
        if counts is not None and pbar is not None:
            done, total = counts
            if pbar.total != total:
                pbar.total = total
            pbar.update(done - pbar.n)

    def _returned(self, result: Any) -> None:
        self._result = result

    def _errored(self, exc: BaseException) -> None:
        self._outcome = "failed"
        self._result = None
        notify_error(f"{self._context}: {describe_error(exc)}")

    def _finished(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and self._outcome in ("done", "stopped"):
            self._show(pending)
        self._release()
        callback, self._on_finish = self._on_finish, None
        self._on_record = self._on_progress = self._on_shutdown = None
        result, self._result = self._result, None
        if callback is not None:
            callback(self._outcome, result)

    def _release(self) -> BackgroundJob | None:
        job, self._job = self._job, None
        pbar, self._pbar = self._pbar, None
        release_job(job, self._handlers, self._close_watcher, pbar)
        return job
