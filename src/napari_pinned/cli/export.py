"""``napari-pinned export``: a model as a BioImage Model Zoo package or an ONNX file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_pinned.cli.checks import model_inputs, shipped_name_or_file
from napari_pinned.cli.exits import EXIT_OK
from napari_pinned.cli.options import add_overwrite, output_file, positive, strength, subparser
from napari_pinned.cli.signals import import_torch
from napari_pinned.io.safe_write import check_outputs
from napari_pinned.settings import FrameOptions


def add_parser(sub: Any) -> None:
    """Add ``export`` to the subcommands ``sub``."""
    p = subparser(
        sub,
        "export",
        "write a model as a BioImage Model Zoo package or an ONNX file",
        "Export a model to share it.  --format bioimageio (the default, for .zip) writes a\n"
        "BioImage Model Zoo package (model RDF 0.5: pytorch_state_dict and torchscript\n"
        "weights, napari-pinned's normalisation and noise map inside the model, test\n"
        "tensors from a simulated BaTiO3 image, cover, documentation, citation) that\n"
        "bioimageio.core, deepImageJ and napari-pinned run; needs the [bioimageio] extra.\n"
        "--format onnx (the default for .onnx) writes the network for napari-pinned's ONNX\n"
        "Runtime backend (denoise --model model.onnx), no torch needed to run it; needs\n"
        "the [onnx] extra.",
        "  napari-pinned export default -o pinned-default.zip\n"
        "  napari-pinned export mine.pt -o mine.zip --author 'A. Microscopist' --pixel-size 0.08\n"
        "  napari-pinned export default --format onnx -o default.onnx",
    )
    p.add_argument("model", help="a shipped model ('default', 'cdn') or a model file")
    p.add_argument(
        "-o", "--output", type=output_file, required=True, help="package .zip or .onnx file"
    )
    p.add_argument(
        "--format",
        choices=["bioimageio", "onnx"],
        help="bioimageio (a BMZ package) or onnx (default: from the output's suffix)",
    )
    p.add_argument("--name", help="package name (default: from the model)")
    p.add_argument("--description", help="one-paragraph description")
    p.add_argument("--author", action="append", help="an author's name (repeat for several)")
    p.add_argument("--license", default="BSD-3-Clause", help="SPDX licence of the weights")
    p.add_argument(
        "--pixel-size",
        type=positive,
        help="pixel size (Å) the model is for (default: the model's, or 0.1 Å for the "
        "shipped models, trained on a range around it)",
    )
    p.add_argument(
        "--strength",
        type=strength,
        default=FrameOptions().strength,
        help="noise-aware models: the denoising strength built into the package",
    )
    p.add_argument(
        "--no-torchscript", action="store_true", help="leave out the torchscript weights"
    )
    add_overwrite(p)
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> tuple[str, Path]:
    """The model, the output's suffix and the extras the format needs; returns the
    format and the output."""
    import importlib.util

    shipped_name_or_file(args.model, "MODEL")
    out = Path(args.output)
    fmt = args.format or ("onnx" if out.suffix.lower() == ".onnx" else "bioimageio")
    if fmt == "bioimageio" and out.suffix.lower() != ".zip":
        raise ValueError(f"{out}: a BioImage Model Zoo package is a .zip file")
    if fmt == "onnx" and out.suffix.lower() != ".onnx":
        raise ValueError(f"{out}: an ONNX model is a .onnx file")
    needed = ("bioimageio.spec",) if fmt == "bioimageio" else ("onnx", "onnxruntime")
    extra = "bioimageio" if fmt == "bioimageio" else "onnx"
    for module in needed:
        if importlib.util.find_spec(module) is None:
            raise ValueError(
                f"exporting to {fmt} needs {module}, which is not installed "
                f"(pip install 'napari-pinned[{extra}]')"
            )
    check_outputs([out], model_inputs(args.model), overwrite=args.overwrite)
    if fmt == "bioimageio":
        # The package's fields before the seconds of loading, testing and packing.
        from napari_pinned.share.bmz_export import check_package_fields

        check_package_fields(
            name=args.name, description=args.description, authors=args.author, license=args.license
        )
    return fmt, out


def run(args: argparse.Namespace) -> int:
    """Export; print where the file went and how to use or check it."""
    fmt, out = _check(args)
    import_torch()
    if fmt == "onnx":
        from napari_pinned.share.onnx_export import export_onnx

        path = export_onnx(args.model, out)
        print(f"{args.model} → {path} (ONNX; run it with napari-pinned denoise --model {path})")
        return EXIT_OK
    from napari_pinned.share.bmz_export import export_bioimageio

    path = export_bioimageio(
        args.model,
        out,
        name=args.name,
        description=args.description,
        authors=args.author,
        license=args.license,
        pixel_size=args.pixel_size,
        strength=args.strength,
        torchscript=not args.no_torchscript,
    )
    print(
        f"{args.model} → {path} (BioImage Model Zoo package; check it with "
        f"`bioimageio test {path}`)"
    )
    return EXIT_OK
