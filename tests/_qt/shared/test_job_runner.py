"""The dock's job runner: records reach the GUI thread in a few batches, every record
reaches ``on_record``, the last one always gets through, and napari's spinner stays still.

No test depends on how fast the machine is: the pacing interval is set to an hour (no
batch is ever due by the clock), and jobs that must interleave with the GUI wait on
events that the GUI side sets.
"""

from __future__ import annotations

import threading
from collections.abc import Generator

import pytest
from qtpy.QtCore import Qt
from qtpy.QtGui import QMovie
from qtpy.QtWidgets import QLabel, QStatusBar, QWidget

from napari_pinned._qt.shared import job_runner
from napari_pinned._qt.shared.job_runner import JobRunner, RecordRelay

WAIT_MS = 60_000
_N = 1000


def _records(n: int) -> Generator[int, None, str]:
    """A job that yields ``n`` records as fast as it can."""
    yield from range(n)
    return "result"


class Hooks:
    """What the runner hands to a dock: every record, each progress call, the end."""

    def __init__(self) -> None:
        self.records: list[int] = []
        self.progress: list[int] = []
        self.finished: list[tuple[str, object]] = []

    def on_record(self, record: int) -> None:
        self.records.append(record)

    def on_progress(self, record: int) -> tuple[int, int]:
        self.progress.append(record)
        return record + 1, _N

    def on_finish(self, outcome: str, result: object) -> None:
        self.finished.append((outcome, result))


@pytest.fixture
def widget(qtbot) -> QWidget:
    widget = QWidget()
    qtbot.addWidget(widget)
    return widget


@pytest.fixture
def no_batch_due(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches are an hour apart by a clock that stands still: only the first batch and
    the one at the end are delivered, whatever the machine's speed."""
    monkeypatch.setattr(job_runner, "PROGRESS_INTERVAL", 3600.0)
    monkeypatch.setattr(job_runner, "_clock", lambda: 0.0)


def _start(runner: JobRunner, hooks: Hooks, func, *args, **kwargs) -> list[int]:
    """Start a job; returns a list that counts the worker's signals (one entry each).

    The job waits until the counter is connected: a worker thread that ran ahead of the
    connection would send its first signal uncounted (seen once on a loaded machine).
    """
    counting = threading.Event()

    def gated(*a, **k):
        assert counting.wait(WAIT_MS / 1000)
        return (yield from func(*a, **k))

    assert runner.start(
        gated,
        *args,
        description="test",
        on_record=hooks.on_record,
        on_progress=hooks.on_progress,
        on_finish=hooks.on_finish,
        **kwargs,
    )
    signals: list[int] = []
    # Counted in the worker thread as they are sent, not as the GUI handles them.
    runner.job.worker.yielded.connect(
        lambda _r: signals.append(1), Qt.ConnectionType.DirectConnection
    )
    counting.set()
    return signals


# -- the relay alone (no threads) ---------------------------------------------------------
def test_relay_announces_once_until_the_records_are_taken():
    relay = RecordRelay()
    gen = relay.run(_records, _N)
    assert next(gen) is None  # the first record is announced at once...
    with pytest.raises(StopIteration) as end:
        next(gen)  # ...the other 999 wait for the GUI without another yield
    assert end.value.value == "result"
    assert relay.take() == list(range(_N))
    assert relay.take() == []


def test_relay_announces_again_after_each_take():
    relay = RecordRelay()
    gen = relay.run(_records, 3)
    taken = []
    for _ in range(3):
        next(gen)
        taken += relay.take()
    with pytest.raises(StopIteration):
        next(gen)
    assert taken == [0, 1, 2]


def test_cancelled_relay_yields_at_every_record():
    relay = RecordRelay()
    gen = relay.run(_records, 10)
    next(gen)
    relay.cancel()
    for _ in range(9):
        assert next(gen) is None  # no take: yields anyway, so a quit request is seen
    assert relay.take() == list(range(10))


# -- the runner with a real worker thread ---------------------------------------------------
def test_instant_records_reach_the_gui_in_two_batches(widget, qtbot, no_batch_due):
    first_taken = threading.Event()
    hooks = Hooks()

    def job() -> Generator[int, None, str]:
        yield 0
        # The GUI has the first batch before the rest come, so the count is exact.
        assert first_taken.wait(WAIT_MS / 1000)
        yield from range(1, _N)
        return "result"

    def on_record(record: int) -> None:
        hooks.records.append(record)
        first_taken.set()

    hooks.on_record = on_record
    runner = JobRunner(widget, "Test", progress_bar=False)
    signals = _start(runner, hooks, job)
    qtbot.waitUntil(lambda: bool(hooks.finished), timeout=WAIT_MS)

    assert hooks.records == list(range(_N))  # every record, in order
    assert hooks.progress == [0, _N - 1]  # the first batch, then the last record
    assert runner.batches == 2
    assert len(signals) == 2  # 2 of 1000 records crossed threads
    assert hooks.finished == [("done", "result")]
    assert not runner.running


def test_gui_work_is_bounded_however_fast_the_job_yields(widget, qtbot, no_batch_due):
    hooks = Hooks()
    runner = JobRunner(widget, "Test")  # with napari's progress bar
    signals = _start(runner, hooks, _records, _N)
    qtbot.waitUntil(lambda: bool(hooks.finished), timeout=WAIT_MS)

    assert hooks.records == list(range(_N))
    assert 1 <= len(hooks.progress) <= 2
    assert hooks.progress[-1] == _N - 1  # the last record always gets through
    assert 1 <= len(signals) <= 2
    assert hooks.finished == [("done", "result")]


def test_a_batch_that_comes_early_waits_for_the_timer(widget, qtbot, monkeypatch):
    # A short interval by a clock that stands still: the second batch is not due by the
    # clock when it is announced and goes through the runner's timer, while the job waits.
    monkeypatch.setattr(job_runner, "PROGRESS_INTERVAL", 0.01)
    monkeypatch.setattr(job_runner, "_clock", lambda: 0.0)
    seen = [threading.Event(), threading.Event()]
    hooks = Hooks()

    def job() -> Generator[int, None, None]:
        for i in range(2):
            yield i
            assert seen[i].wait(WAIT_MS / 1000)

    def on_record(record: int) -> None:
        hooks.records.append(record)
        seen[record].set()

    hooks.on_record = on_record
    runner = JobRunner(widget, "Test", progress_bar=False)
    _start(runner, hooks, job)
    qtbot.waitUntil(lambda: bool(hooks.finished), timeout=WAIT_MS)
    assert hooks.records == [0, 1]
    assert hooks.progress == [0, 1]  # both arrived while the job ran
    assert runner.batches == 2


def test_a_failed_job_still_hands_over_every_record(widget, qtbot, no_batch_due, notifications):
    hooks = Hooks()

    def job() -> Generator[int, None, None]:
        yield from range(500)
        raise ValueError("the data is wrong")

    runner = JobRunner(widget, "Test", progress_bar=False)
    _start(runner, hooks, job)
    qtbot.waitUntil(lambda: bool(hooks.finished), timeout=WAIT_MS)
    assert hooks.records == list(range(500))
    assert hooks.finished == [("failed", None)]
    assert notifications.errors == ["Test: the data is wrong"]


def test_cancel_stops_a_job_whose_records_wait(widget, qtbot, no_batch_due):
    hooks = Hooks()
    started = threading.Event()

    def endless() -> Generator[int, None, None]:
        i = 0
        while True:
            started.set()
            yield i
            i += 1

    runner = JobRunner(widget, "Test", progress_bar=False)
    _start(runner, hooks, endless)
    assert started.wait(WAIT_MS / 1000)
    # No batch is due by the clock: only the relay's cancel makes the worker yield again.
    runner.cancel()
    qtbot.waitUntil(lambda: bool(hooks.finished), timeout=WAIT_MS)
    assert hooks.finished == [("cancelled", None)]
    assert hooks.records == list(range(len(hooks.records)))


def test_cancel_says_so_in_the_docks_own_controls(widget, qtbot, no_batch_due, notifications):
    from qtpy.QtWidgets import QPushButton

    hooks = Hooks()
    started = threading.Event()
    release = threading.Event()

    def waiting() -> Generator[int, None, None]:
        started.set()
        yield 0
        release.wait(WAIT_MS / 1000)
        yield 1

    button, status = QPushButton("Cancel"), QLabel("Working…")
    runner = JobRunner(
        widget,
        "Test",
        progress_bar=False,
        cancel_button=button,
        status_label=status,
        cancelled="no layer was added",
    )
    _start(runner, hooks, waiting)
    assert started.wait(WAIT_MS / 1000)
    runner.cancel()
    # Said at once, while the job still runs: the click did something.
    assert not button.isEnabled()
    assert status.text() == "Cancelling…"
    assert not hooks.finished
    release.set()
    qtbot.waitUntil(lambda: bool(hooks.finished), timeout=WAIT_MS)
    assert hooks.finished == [("cancelled", None)]
    assert status.text() == "Cancelled; no layer was added."
    assert notifications.infos == ["Test: cancelled; no layer was added"]


def test_spinner_is_held_still_while_a_job_runs(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = QWidget()
    viewer.window.add_dock_widget(widget, name="job")
    window = viewer.window._qt_window
    movies = [
        label.movie()
        for bar in window.findChildren(QStatusBar)
        for label in bar.findChildren(QLabel)
        if label.movie() is not None
    ]
    assert movies, "napari's status bar has no activity spinner any more"
    release = threading.Event()
    hooks = Hooks()

    def job() -> Generator[int, None, None]:
        yield 0
        assert release.wait(WAIT_MS / 1000)

    runner = JobRunner(widget, "Test")
    _start(runner, hooks, job)
    try:
        # napari started the spinner for the new progress bar; the runner stopped it.
        assert all(movie.state() == QMovie.MovieState.Paused for movie in movies)
    finally:
        release.set()
    qtbot.waitUntil(lambda: bool(hooks.finished), timeout=WAIT_MS)
    assert hooks.finished == [("done", None)]
