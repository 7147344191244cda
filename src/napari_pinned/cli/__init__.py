"""The ``napari-pinned`` command line: :mod:`.main` parses and dispatches, one module
per command does the work through the API."""

from __future__ import annotations

from napari_pinned.cli.entry import build_parser, main

__all__ = ["build_parser", "main"]
