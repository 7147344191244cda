"""How an exception becomes part of our one-line messages."""

from __future__ import annotations

__all__ = ["LIMIT", "first_line", "summary"]

#: Longest summary of a library's exception: torch and pydantic write whole paragraphs
#: into one, and our message around it must still read as one line.
LIMIT = 160


def first_line(exc: BaseException) -> str:
    """The first non-empty line of ``exc``'s message (its type's name when it has none)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def summary(exc: BaseException) -> str:
    """``"Type: first line"`` of a library's exception, at most :data:`LIMIT` characters
    (a longer one ends with "…"), for messages where the type says what went wrong
    ("UnpicklingError: …")."""
    line = first_line(exc)
    if line != type(exc).__name__:
        line = f"{type(exc).__name__}: {line}"
    return line if len(line) <= LIMIT else line[: LIMIT - 1] + "…"
