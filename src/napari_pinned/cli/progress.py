"""The text progress bar of the long commands, and how they print durations."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

#: Progress lines in a log (not a terminal): every 10 %, and at least this often.
LOG_INTERVAL_S = 30.0


class ProgressBar:
    """A one-line text progress bar on stderr (no dependency, works in any terminal).

    In a terminal the line is redrawn in place.  Logs and pipes cannot redraw a line;
    there a new line is printed every 10 % and at least every ``log_interval`` seconds,
    so a long run in a batch job's log never looks hung.
    """

    def __init__(
        self,
        total: int,
        label: str,
        width: int = 28,
        stream=None,
        *,
        log_interval: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.total = max(total, 1)
        self.label = label
        self.width = width
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self._interactive = bool(isatty and isatty())
        self._clock = clock
        self._log_interval = log_interval
        self._last = 0.0
        self._last_line = clock()
        self._last_decile = -1
        self._open = False

    def update(self, done: int, extra: str = "", force: bool = False) -> None:
        """Show ``done`` of ``total``, followed by ``extra`` (a unit, a loss, an ETA)."""
        filled = int(self.width * done / self.total)
        line = f"{self.label} [{'#' * filled}{'-' * (self.width - filled)}] {done}/{self.total}"
        line = f"{line} {extra}".rstrip()
        now = self._clock()
        if not self._interactive:
            decile = 10 * done // self.total
            if decile > self._last_decile or force or now - self._last_line >= self._log_interval:
                self._last_decile = max(decile, self._last_decile)
                self._last_line = now
                self.stream.write(line + "\n")
                self.stream.flush()
            return
        if not force and now - self._last < 0.2 and done < self.total:
            return
        self._last = now
        self._open = True
        self.stream.write(f"\r{line}".ljust(100))
        self.stream.flush()

    def close(self) -> None:
        """End the redrawn line, so that what is printed next starts on a line of its own."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def duration(seconds: float) -> str:
    """``"3m07s"``, or ``"1h02m"`` from an hour on."""
    seconds = max(0, round(seconds))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
