"""SIGINT and SIGTERM: every command stops cleanly on them (no half-written file)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; a BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM raises :class:`Interrupted`, as SIGINT raises KeyboardInterrupt, so
    that every command stops cleanly (temporary files removed) with one line."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupted(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back while torch is imported (and a model loaded), then
    acted on the moment the block ends.

    Raised from a handler in the middle of ``import torch``, the exception cannot
    unwind through torch's C++ set-up: pybind11 terminates the process (SIGABRT,
    "terminate called after throwing an instance of 'pybind11::error_already_set'",
    no line of ours; seen with SIGTERM about 1 s into ``denoise``).  Held, a signal
    waits the second or two the import takes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, _frame: Any) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            signal.raise_signal(received[0])  # to the handlers of before, at once


def import_torch() -> None:
    """Import torch with SIGINT and SIGTERM held (:func:`signals_held`): the first thing
    every command that trains or runs a torch model does once its checks have passed."""
    with signals_held():
        import torch  # noqa: F401


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[list[int]]:
    """During a training loop: the first SIGINT/SIGTERM asks the run to stop after the
    step in progress (the best model is then saved); a second one leaves at once."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def request_stop(signum: int, _frame: Any) -> None:
        if received:
            raise Interrupted(signum)
        received.append(signum)
        stop()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
