"""Lifetime of the background jobs of the docks (used by :mod:`.job_runner` only).

napari's workers run on Qt's global thread pool, which has no per-worker ``wait``.  A
:class:`BackgroundJob` records, from the worker thread itself, when a worker starts and
when it is done, so a dock that closes can ask its job to stop and wait for exactly that
thread.  :class:`CloseWatcher` tells a dock when the napari window around it closes, or
when the dock is removed, neither of which closes the dock's own widget.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from qtpy.QtCore import QEvent, QObject, Qt, QThread
from qtpy.QtWidgets import QWidget

__all__ = [
    "BackgroundJob",
    "CloseWatcher",
    "QuietGeneratorWorker",
    "disconnect_handlers",
    "release_job",
    "start_job",
    "top_level_ancestor",
]


class QuietGeneratorWorker(GeneratorWorker):
    """A napari generator worker that leaves error reporting to the dock.

    napari's worker turns every exception into a notification with a traceback; the
    docks already report the core's errors as one clear sentence, so the relay is off.
    """

    def _relay_error(self, exc: Exception) -> None:
        pass


class BackgroundJob:
    """A started napari worker plus thread-safe "started" and "done" flags.

    Parameters
    ----------
    worker : superqt/napari WorkerBase
        A worker that has not started yet; connect its signals before calling
        :meth:`start`.
    """

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self._deferred = False
        self._started = threading.Event()
        self._done = threading.Event()
        # Direct connections run in the worker thread, so the flags are set even while
        # the GUI thread is blocked waiting for them.
        worker.started.connect(self._started.set, Qt.ConnectionType.DirectConnection)
        worker.finished.connect(self._done.set, Qt.ConnectionType.DirectConnection)

    def start(self) -> None:
        """Start the worker on napari's thread pool."""
        # superqt hands the worker to the pool through a 1 ms timer when an event
        # loop runs, at once otherwise; only in the first case can the start be pending
        # behind a GUI thread that blocks in quit_and_wait.
        self._deferred = bool(QThread.currentThread().loopLevel())
        self.worker.start()

    @property
    def done(self) -> bool:
        """True once the worker thread has finished (whatever the reason)."""
        return self._done.is_set()

    def quit_and_wait(self, timeout: float = 30.0) -> bool:
        """Ask the worker to quit at its next yield and wait for its thread to end.

        A worker whose start is still queued behind the event loop this call blocks is not
        waited for: it returns as soon as it starts, without running anything.

        Returns
        -------
        bool
            True if the thread ended (or never ran) within ``timeout`` seconds.
        """
        self.worker.quit()
        if self._deferred and not self._started.is_set():
            return True
        return self._done.wait(timeout)


def start_job(
    func: Callable[..., Any],
    *args: Any,
    connect: dict[str, Callable[..., Any]] | None = None,
) -> BackgroundJob:
    """Run the generator function ``func(*args)`` in a napari worker and start it.

    Handlers must record what a signal brings before touching a napari progress bar:
    updating one processes pending events, so the handlers of later signals (up to
    ``finished``) can run inside it.

    Parameters
    ----------
    func : generator function
        Runs in the worker thread; each value it yields reaches ``connect["yielded"]``
        in the GUI thread, the value it returns ``connect["returned"]``.
    connect : dict, optional
        Worker signal name → GUI-thread handler (``yielded``, ``returned``, ``errored``,
        ``finished``...).
    """
    worker = create_worker(func, *args, _worker_class=QuietGeneratorWorker, _ignore_errors=True)
    for name, handler in (connect or {}).items():
        getattr(worker, name).connect(handler)
    job = BackgroundJob(worker)
    job.start()
    return job


def disconnect_handlers(worker: Any, connect: dict[str, Callable[..., Any]]) -> None:
    """Undo :func:`start_job`'s ``connect`` so that late queued signals reach no one."""
    for name, handler in connect.items():
        # TypeError: already disconnected; RuntimeError: the worker's QObject is gone.
        with contextlib.suppress(TypeError, RuntimeError):
            getattr(worker, name).disconnect(handler)


def release_job(
    job: BackgroundJob | None,
    connect: dict[str, Callable[..., Any]],
    close_watcher: CloseWatcher,
    pbar: Any | None,
) -> None:
    """Undo what a dock set up around a job: stop watching for close, disconnect its
    handlers, close its napari progress bar."""
    close_watcher.unwatch()
    if job is not None:
        disconnect_handlers(job.worker, connect)
    if pbar is not None:
        pbar.close()


def top_level_ancestor(widget: QWidget) -> QWidget:
    """The outermost parent widget (a floating dock still belongs to the main window)."""
    current = widget
    while current.parentWidget() is not None:
        current = current.parentWidget()
    return current


class CloseWatcher(QObject):
    """Call ``on_close`` when the window around ``widget`` closes or ``widget`` is undocked.

    napari closes its main window without closing the widgets in its docks, and the
    "close" button of a dock only takes the widget out of it; both would leave a worker
    thread running on.  The watcher filters the outermost window's events: a programmatic
    close (``viewer.close()``) or a hide that is not the window manager's (what follows an
    accepted close by the user) counts as closing; the user's close request itself does not,
    since napari may still ask for confirmation and be cancelled.

    Call :meth:`watch` when a job starts (the widget is docked by then) and
    :meth:`unwatch` when it ends.
    """

    def __init__(self, widget: QWidget, on_close: Callable[[], None]) -> None:
        super().__init__(widget)
        self._widget = widget
        self._on_close = on_close
        self._window: QWidget | None = None
        widget.installEventFilter(self)

    def watch(self) -> None:
        """Follow the widget's current outermost window."""
        self.unwatch()
        window = top_level_ancestor(self._widget)
        if window is not self._widget:
            window.installEventFilter(self)
            self._window = window

    def unwatch(self) -> None:
        """Stop following the window."""
        if self._window is not None:
            # RuntimeError: the window's C++ object is already gone.
            with contextlib.suppress(RuntimeError):
                self._window.removeEventFilter(self)
            self._window = None

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if "_widget" not in self.__dict__:
            # The garbage collector cleared this wrapper (a dock dropped without being
            # closed) while Qt still delivers the widget's last events.
            return False
        kind = event.type()
        if obj is self._widget:
            undocked = kind == QEvent.Type.ParentChange and self._widget.parentWidget() is None
            if undocked and self._window is not None:
                self._fire()
        elif obj is self._window:
            closing = kind == QEvent.Type.Close and not event.spontaneous()
            hidden = kind == QEvent.Type.Hide and not event.spontaneous()
            if closing or hidden:
                self._fire()
        return False

    def _fire(self) -> None:
        self.unwatch()
        self._on_close()
