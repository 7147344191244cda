"""``napari-pinned materials``: the bundled crystal structures."""

from __future__ import annotations

import argparse
from typing import Any

from napari_pinned.cli.exits import EXIT_OK
from napari_pinned.cli.options import subparser


def add_parser(sub: Any) -> None:
    """Add ``materials`` to the subcommands ``sub``."""
    p = subparser(
        sub,
        "materials",
        "list bundled materials and their zone axes",
        "List the bundled crystal structures with their usual zone axes and a description.",
        "  napari-pinned materials",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one line per bundled material: name, zone axes, description."""
    from napari_pinned.physics.materials import list_materials
    from napari_pinned.physics.zones import zone_label

    for material in list_materials():
        zones = ", ".join(zone_label(z) for z in material.zone_axes)
        print(f"{material.name:<12} {zones:<22} {material.description}")
    return EXIT_OK
