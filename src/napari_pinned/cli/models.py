"""``napari-pinned models``: the shipped models and what each is for."""

from __future__ import annotations

import argparse
from typing import Any

from napari_pinned.cli.exits import EXIT_OK
from napari_pinned.cli.options import subparser


def add_parser(sub: Any) -> None:
    """Add ``models`` to the subcommands ``sub``."""
    p = subparser(
        sub,
        "models",
        "list the shipped models and what each is for",
        "List the models that come with napari-pinned, one line each: name, purpose, file.\n"
        "Pass a name to --model of denoise, train --init or adapt --model.",
        "  napari-pinned models",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one line per shipped model: name, purpose, file (or that it is missing)."""
    from napari_pinned.nn.model_files import SHIPPED_MODELS

    for model in SHIPPED_MODELS:
        path = model.path
        if path.is_file():
            where = f"{path.name}, {path.stat().st_size / 1e6:.1f} MB"
        else:
            where = "missing: reinstall napari-pinned"
        print(f"{model.name:<8} {model.purpose} ({where})")
    return EXIT_OK
