"""Write a benchmark's printed table into its block of docs/benchmarks.md.

A block is the text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``; the
scripts write what they printed, so the docs hold the benchmark's own output.  This
module imports nothing heavy (``benchmarks/memory.py`` measures memory from a process
that must not have numpy or torch loaded).
"""

from __future__ import annotations

import pathlib

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def write_docs_block(lines: list[str], name: str, docs: pathlib.Path = DOCS) -> None:
    """Replace the block between the markers ``name`` in ``docs`` by ``lines``."""
    from napari_pinned.io.safe_write import write_text

    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = docs.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        raise SystemExit(f"{docs}: no {begin} … {end} block")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    write_text(docs, head + begin + "\n" + "\n".join(lines) + "\n\n" + end + tail)
    print(f"wrote {docs}")
