"""The exit statuses of ``napari-pinned`` (docs/cli.md lists them)."""

from __future__ import annotations

#: The command did what it was asked.
EXIT_OK = 0
#: A mistake (one line says what), or some files of a batch failed (each is named).
EXIT_USAGE = 2


def signal_status(signum: int) -> int:
    """128 + the signal number: what a shell reports for a process a signal stopped
    (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)
