"""``napari-pinned simulate``: a clean HAADF-STEM image of a crystal."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from napari_pinned.cli.checks import check_finite_output, check_inputs_exist
from napari_pinned.cli.exits import EXIT_OK
from napari_pinned.cli.options import (
    add_overwrite,
    add_seed,
    finite,
    fraction,
    non_negative,
    output_file,
    positive,
    positive_int,
    subparser,
)
from napari_pinned.io.safe_write import check_outputs, write_together
from napari_pinned.physics import defaults


def add_parser(sub: Any) -> None:
    """Add ``simulate`` to the subcommands ``sub``."""
    p = subparser(
        sub,
        "simulate",
        "simulate a HAADF-STEM image from a crystal structure",
        "Simulate a clean HAADF-STEM image of a crystal along a zone axis (docs/physics.md).",
        "  napari-pinned simulate --material Si --zone 1 1 0 --size 512 -o si.tif\n"
        "  napari-pinned simulate --cif mine.cif --zone 0 0 1 --columns cols.csv -o mine.tif",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--material", default=defaults.DEFAULT_MATERIAL, help="bundled material (see 'materials')"
    )
    src.add_argument("--cif", type=Path, help="a CIF file instead of a bundled material")
    p.add_argument(
        "--zone",
        nargs="+",
        type=int,
        metavar="I",
        help="zone axis, 3 or 4 indices (e.g. 1 1 0 or 1 1 -2 0); default: the "
        "material's usual one",
    )
    p.add_argument(
        "--size", type=positive_int, default=defaults.DEFAULT_SIZE, help="image edge in pixels"
    )
    p.add_argument(
        "--pixel-size", type=positive, default=defaults.DEFAULT_PIXEL_SIZE, help="Å per pixel"
    )
    p.add_argument("--probe-fwhm", type=positive, help="use a Gaussian probe of this FWHM (Å)")
    p.add_argument("--voltage", type=positive, default=defaults.DEFAULT_VOLTAGE_KV, help="kV")
    p.add_argument(
        "--convergence",
        type=positive,
        default=defaults.DEFAULT_CONVERGENCE_MRAD,
        help="semi-angle, mrad",
    )
    p.add_argument("--defocus", type=finite, default=defaults.DEFAULT_DEFOCUS, help="Å")
    p.add_argument(
        "--cs", type=finite, default=defaults.DEFAULT_CS_MM, help="spherical aberration, mm"
    )
    p.add_argument(
        "--source-size", type=non_negative, default=defaults.DEFAULT_SOURCE_SIZE, help="Å FWHM"
    )
    p.add_argument("--thickness", type=positive, default=defaults.DEFAULT_THICKNESS, help="Å")
    p.add_argument("--rotation", type=finite, default=0.0, help="degrees")
    p.add_argument("--vacancies", type=fraction, default=0.0, help="column vacancy fraction")
    add_seed(p)
    p.add_argument("--columns", type=output_file, help="also write ground-truth columns as CSV")
    p.add_argument("-o", "--output", type=output_file, required=True, help="output TIFF")
    add_overwrite(p)
    p.set_defaults(func=run)


def _probe(args: argparse.Namespace) -> Any:
    from napari_pinned.physics.probe import AberratedProbe, GaussianProbe

    if args.probe_fwhm is not None:
        return GaussianProbe(fwhm=args.probe_fwhm)
    return AberratedProbe(
        voltage_kv=args.voltage,
        convergence_mrad=args.convergence,
        defocus=args.defocus,
        cs_mm=args.cs,
        source_size=args.source_size,
    )


def run(args: argparse.Namespace) -> int:
    """Simulate, write the image (and the columns as CSV); print what was made."""
    from napari_pinned.io.images import write_csv
    from napari_pinned.io.tiff import write_tiff
    from napari_pinned.physics.materials import get_material
    from napari_pinned.physics.rendering import check_simulation_memory

    if args.cif is not None:
        check_inputs_exist([args.cif])
    else:
        get_material(args.material)
    outputs = [args.output] + ([args.columns] if args.columns is not None else [])
    check_outputs(outputs, [args.cif] if args.cif is not None else [], overwrite=args.overwrite)
    probe = _probe(args)
    check_simulation_memory(args.size, args.pixel_size, probe)

    from napari_pinned.physics.simulate import simulate

    source = args.cif if args.cif is not None else args.material
    result = simulate(
        source,
        args.zone,
        shape=(args.size, args.size),
        pixel_size=args.pixel_size,
        probe=probe,
        thickness=args.thickness,
        rotation=args.rotation,
        vacancy_fraction=args.vacancies,
        seed=args.seed,
    )
    check_finite_output(result.image, "simulate")
    with write_together():
        write_tiff(args.output, result.image, pixel_size=result.pixel_size)
        if args.columns is not None:
            cols = result.columns
            table = np.column_stack([cols.positions, cols.weights])
            write_csv(args.columns, table, ["row", "col", "weight"], fmt="%.6g")
    print(
        f"{result.label()}: {args.size}×{args.size} px at {result.pixel_size} Å/px, "
        f"{len(result.columns.weights)} columns → {args.output}"
    )
    return EXIT_OK
