"""One runner for every long job a dock starts: worker, progress bar, cancel, errors.

A dock hands :meth:`JobRunner.start` a core generator (it yields small progress records
and returns its result) and three hooks; the runner owns everything else:

* the napari worker (through :func:`._jobs.start_job`) and its thread's lifetime,
  including waiting for it when the dock or the viewer closes;
* the records' way to the GUI thread, in batches at most :data:`PROGRESS_INTERVAL` apart
  (:class:`RecordRelay`): ``on_record`` still sees every record, in order, and the dock's
  progress display and napari's progress bar move once per batch — the last record
  always gets through;
* napari's progress bar, with the status bar's "in progress" spinner held still;
* cancel: the worker stops at the generator's next yield — or, for jobs that can end
  gracefully (training keeps its best model), the dock's own ``stop`` is called and the
  job returns its result as usual (outcome ``"stopped"``);
* errors: one notification line naming the dock (``"Adapt: …"``), never a traceback
  for the user's mistakes;
* the end: ``on_finish(outcome, result)`` with outcome ``"done"``, ``"stopped"``,
  ``"cancelled"`` or ``"failed"``, in the GUI thread, after the progress bar is closed.

Why batches and a still spinner: a window holding napari's OpenGL canvas is composed
through OpenGL whenever any widget in it repaints.  With software OpenGL (Mesa llvmpipe:
Xvfb, remote desktops, machines without a GPU driver) that costs 15–25 ms of CPU per
repaint of a 1900×1150 window.  napari's spinner (33 frames/s) alone took 28 % of a core
at napari's default window size and 81 % at 1900×1150, and the loss curve repainted once
per step: on 2 cores the Train dock trained at half its headless speed, at a fifth when
other work loaded the machine.  Batches of at most two a second and a still spinner bring
it to 90–100 % (``benchmarks/dock_training_speed.py``, docs/benchmarks.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, Literal

from napari.utils import progress as napari_progress
from qtpy.QtCore import QTimer
from qtpy.QtGui import QMovie
from qtpy.QtWidgets import QAbstractButton, QLabel, QStatusBar, QWidget

from napari_pinned._qt.shared.common import describe_error, notify_error, notify_info
from napari_pinned._qt.shared.job_lifetime import (
    BackgroundJob,
    CloseWatcher,
    release_job,
    start_job,
    top_level_ancestor,
)

__all__ = ["PROGRESS_INTERVAL", "JobRunner", "Outcome", "RecordRelay"]

Outcome = Literal["done", "stopped", "cancelled", "failed"]
#: Seconds between two batches of records reaching the GUI (read at each batch, so a test
#: may change it).
PROGRESS_INTERVAL = 0.5
_SHUTDOWN_TIMEOUT = 60.0
#: The clock the GUI side paces batches with (a test may replace it).
_clock: Callable[[], float] = time.perf_counter


class RecordRelay:
    """Carries a job's records from the worker thread to the GUI thread in batches.

    :meth:`run` iterates the job in the worker thread and keeps its records; it yields
    (one queued Qt signal) only to announce that records wait, and not again until the
    GUI thread has collected them with :meth:`take`.  However fast a job yields, the
    worker sends at most one signal per collection, and the GUI thread decides how often
    it collects.  :meth:`cancel` makes :meth:`run` yield at every record, so that the
    napari worker, which checks for a quit request only when its generator yields, stops
    at the job's next record.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[Any] = []
        self._announced = False
        self._cancelled = threading.Event()

    def run(
        self, func: Callable[..., Generator[Any, Any, Any]], *args: Any
    ) -> Generator[None, Any, Any]:
        """Worker thread: run the job ``func(*args)``; returns what it returns."""
        job = func(*args)
        while True:
            try:
                record = next(job)
            except StopIteration as end:
                return end.value
            with self._lock:
                self._records.append(record)
                announce = not self._announced
                self._announced = True
            if announce or self._cancelled.is_set():
                yield None

    def take(self) -> list[Any]:
        """GUI thread: the records kept since the last call, oldest first; the next
        record is announced again."""
        with self._lock:
            records, self._records = self._records, []
            self._announced = False
        return records

    def cancel(self) -> None:
        """Yield at every record from now on (thread-safe)."""
        self._cancelled.set()


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
    cancel_button, status_label : optional
        The dock's Cancel button and status line: :meth:`cancel` disables the one and
        says "Cancelling…" in the other until the job has stopped.
    cancelled : str, optional
        What a cancelled job leaves behind, e.g. ``"no layer was added"``: said in the
        status line and as a notification when a cancel has taken effect, before
        ``on_finish`` runs.
    """

    def __init__(
        self,
        widget: QWidget,
        context: str,
        *,
        progress_bar: bool = True,
        cancel_button: QAbstractButton | None = None,
        status_label: QLabel | None = None,
        cancelled: str | None = None,
    ) -> None:
        self._cancel_button = cancel_button
        self._status_label = status_label
        self._cancelled = cancelled
        self._widget = widget
        self._context = context
        self._show_bar = progress_bar
        self._stop: Callable[[], None] | None = None
        self._job: BackgroundJob | None = None
        self._relay: RecordRelay | None = None
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._pbar: Any = None
        self._outcome: Outcome = "done"
        self._result: Any = None
        self._last_batch = -math.inf
        self._on_progress: Callable[[Any], tuple[int, int] | None] | None = None
        self._on_record: Callable[[Any], None] | None = None
        self._on_shutdown: Callable[[bool], None] | None = None
        self._on_finish: Callable[[Outcome, Any], None] | None = None
        self._close_watcher = CloseWatcher(widget, self.shutdown)
        # Collects a batch that came sooner than PROGRESS_INTERVAL after the last one.
        # No parent: the runner may outlive the widget's C++ side (a deleted dock).
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._deliver)
        #: Batches delivered to the hooks in this job (for tests and benchmarks).
        self.batches = 0

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

        Records reach the GUI thread in batches, at most one per
        :data:`PROGRESS_INTERVAL` seconds, and one more with whatever the job yielded
        last when it ends.  ``on_record(record)``, if given, runs in the GUI thread for
        every record, in order, batch by batch: for bookkeeping that must see them all
        (a loss curve; widgets it updates repaint once per batch).
        ``on_progress(record)`` runs once per batch with its last record (so the job's
        last record always gets through; not for the batch at the end of a job that
        failed or was cancelled) and may return ``(done, total)`` for the progress bar.
        ``stop``, if given, is what :meth:`cancel` calls instead of ending the worker:
        the job then finishes by itself and its result is kept.  ``on_shutdown(ended)``
        runs instead of ``on_finish`` when the dock or the viewer closes mid-job, once
        the worker thread ended (``ended``) or the wait timed out.  Returns False, with a
        notification, when a job is already running.
        """
        if self._job is not None:
            notify_error(f"{self._context}: a job is already running")
            return False
        self._outcome = "done"
        self._result = None
        self._last_batch = -math.inf
        self.batches = 0
        self._on_progress = on_progress
        self._on_record = on_record
        self._on_shutdown = on_shutdown
        self._on_finish = on_finish
        self._stop = stop
        self._relay = RecordRelay()
        self._handlers = {
            "yielded": self._announced,
            "returned": self._returned,
            "errored": self._errored,
            "finished": self._finished,
        }
        if self._show_bar:
            self._pbar = napari_progress(total=0, desc=description)
            _hold_activity_spinner(self._widget)
        self._job = start_job(self._relay.run, func, *args, connect=self._handlers)
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
        if self._relay is not None:
            self._relay.cancel()
        self._job.worker.quit()
        if self._cancel_button is not None:
            self._cancel_button.setEnabled(False)
        if self._status_label is not None:
            self._status_label.setText("Cancelling…")

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
        if self._relay is not None:
            self._relay.cancel()
        hook, self._on_shutdown = self._on_shutdown, None
        job = self._release()
        ended = job is None or job.quit_and_wait(_SHUTDOWN_TIMEOUT)
        if hook is not None:
            hook(ended)
        return ended

    # -- worker signals (GUI thread) ----------------------------------------------------
    def _announced(self, _nothing: None) -> None:
        # Records wait in the relay; the worker sends nothing more until they are taken.
        if self._timer.isActive():
            return
        wait = self._last_batch + PROGRESS_INTERVAL - _clock()
        if wait > 0:
            self._timer.start(max(1, math.ceil(wait * 1000)))
        else:
            self._deliver()

    def _deliver(self) -> None:
        relay = self._relay
        records = [] if relay is None else relay.take()
        if not records:
            return
        self._last_batch = _clock()
        self._hand_over(records, show=True)

    def _hand_over(self, records: list[Any], *, show: bool) -> None:
        self.batches += 1
        if self._on_record is not None:
            for record in records:
                self._on_record(record)
        if show:
            self._show(records[-1])

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
        self._timer.stop()
        relay = self._relay
        records = [] if relay is None else relay.take()
        if records:
            # Every record reaches on_record, even from a job that failed (the Train dock
            # keeps a model that was validated before the failure).
            self._hand_over(records, show=self._outcome in ("done", "stopped"))
        self._release()
        callback, self._on_finish = self._on_finish, None
        self._on_record = self._on_progress = self._on_shutdown = None
        result, self._result = self._result, None
        if self._outcome == "cancelled" and self._cancelled is not None:
            if self._status_label is not None:
                self._status_label.setText(f"Cancelled; {self._cancelled}.")
            notify_info(f"{self._context}: cancelled; {self._cancelled}")
        if callback is not None:
            callback(self._outcome, result)

    def _release(self) -> BackgroundJob | None:
        self._timer.stop()
        self._relay = None
        job, self._job = self._job, None
        pbar, self._pbar = self._pbar, None
        release_job(job, self._handlers, self._close_watcher, pbar)
        return job


def _hold_activity_spinner(widget: QWidget) -> None:
    """Hold napari's "in progress" spinner in the status bar around ``widget`` still.

    napari starts the spinner (a 90-frame GIF at 33 frames/s) when a progress bar opens;
    each frame repaints the whole window, which under software OpenGL costs up to 81 % of
    a core, taken from the job (see the module docstring).  The spinner stays shown, on
    one frame, while the job runs; napari stops it when its last progress bar closes and
    starts it again for the next one.
    """
    window = top_level_ancestor(widget)
    for bar in window.findChildren(QStatusBar):
        for label in bar.findChildren(QLabel):
            movie = label.movie()
            if movie is not None and movie.state() == QMovie.MovieState.Running:
                movie.setPaused(True)
