"""What CPUs this process may use: one answer for the CLI's bounds and the API's checks."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["check_threads", "usable_cpus"]


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: taskset, SLURM, a container's
    cpuset), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def check_threads(threads: Any, name: str = "num_threads") -> int:
    """``threads`` as a number of CPU threads from 1 to :func:`usable_cpus`: more never
    speeds torch up, and a huge count makes OpenMP (libgomp) abort the process without
    a word."""
    cpus = usable_cpus()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= cpus:
        raise ValueError(f"{name} must be a number of threads from 1 to {cpus}, got {threads!r}")
    return threads
