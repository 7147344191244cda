"""The ``napari-pinned`` command line: :mod:`.entry` parses and dispatches; one module
per command (``add_parser(sub)`` and ``run(args)``) does the work through the API.

Shared by the commands: :mod:`.options` (parser, number types, common options),
:mod:`.checks` (argument and file checks before torch), :mod:`.progress`,
:mod:`.signals`, :mod:`.exits` and :mod:`.training_job` (``train`` and ``adapt``).
"""

from __future__ import annotations

from napari_pinned.cli.entry import build_parser, main

__all__ = ["build_parser", "main"]
