"""Bad inputs through the command line: each is one line, exit status 2, nothing written.

One row per mistake found so far (the 425-input sweep of issue 13 and its relatives): a
new defect of this kind is one more row.  Every row runs the real ``main`` on real files
and checks that stderr is exactly one ``napari-pinned: error:`` line naming the problem,
that stdout is empty, and that no file in the folder was created, changed or removed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import napari_pinned.nn.model_files as model_files
from napari_pinned.cli.entry import main
from napari_pinned.io.tiff import write_tiff
from napari_pinned.nn.model_files import save_model
from napari_pinned.nn.network import ModelBundle, build_model
from napari_pinned.settings import ModelConfig

MiB = 1024**2


class _Code:
    def __reduce__(self):
        return (os.system, ("echo ran",))


@pytest.fixture(scope="module")
def files(tmp_path_factory, onnx_box_filter) -> SimpleNamespace:
    """Inputs of every kind in one folder; the rows must leave it exactly as it is."""
    d = tmp_path_factory.mktemp("bad-inputs")
    y, x = np.mgrid[0:96, 0:96]
    lattice = (np.cos(x / 2.0) * np.cos(y / 2.0) * 100 + 120).astype(np.float32)
    p = SimpleNamespace(dir=d)
    p.clean = write_tiff(d / "clean.tif", lattice, pixel_size=0.1)
    p.noisy = write_tiff(d / "noisy.tif", lattice + 5, pixel_size=0.1)
    p.small = write_tiff(d / "small.tif", lattice[:64, :64])
    p.stack = write_tiff(d / "stack.tif", np.stack([lattice] * 3))
    extreme = lattice.astype(np.float64)
    extreme[3, 3] = 1e300
    p.extreme = d / "extreme.tif"
    import tifffile

    tifffile.imwrite(p.extreme, extreme)
    with_nan = lattice.copy()
    with_nan[5, 5] = np.nan
    p.nan = write_tiff(d / "nan.tif", with_nan)
    p.text = d / "text.tif"
    p.text.write_text("not an image\n")
    p.folder = d / "folder"
    p.folder.mkdir()
    (p.folder / "noisy.tif").write_bytes(p.noisy.read_bytes())
    p.link = d / "link.tif"
    p.link.symlink_to(p.noisy)
    p.hard = d / "hard.tif"
    os.link(p.noisy, p.hard)

    config = ModelConfig.preset("tiny")
    p.model = save_model(
        ModelBundle(model=build_model(config), config=config, metadata={"name": "tiny"}),
        d / "tiny.pt",
    )
    payload = model_files.file_payload(
        ModelBundle(model=build_model(config), config=config, metadata={})
    )
    payload["config"] = ModelConfig.preset("unet", width=1024, depth=8).to_dict()
    payload["state_dict"] = {}
    payload["sha256"] = model_files.checksum(payload["config"], payload["metadata_json"], {})
    p.huge_model = d / "huge.pt"
    torch.save(payload, p.huge_model)
    p.evil = d / "evil.pt"
    torch.save({"format": model_files.FILE_FORMAT, "x": _Code()}, p.evil)
    p.foreign_onnx = d / "foreign.onnx"  # a valid ONNX graph, not napari-pinned's
    p.foreign_onnx.write_bytes(onnx_box_filter())
    # -- checks that came too late (issue 21: early checks, types, export)
    import tifffile as _tifffile

    p.rgb = d / "rgb.tif"
    _tifffile.imwrite(p.rgb, np.stack([lattice] * 3, axis=-1).astype(np.uint8), photometric="rgb")
    p.loop = d / "loop.tif"
    p.loop.symlink_to("loop.tif")
    mrc = np.zeros(256, "<i4")
    mrc[0:4] = (100_000, 100_000, 100_000, 2)  # 10¹⁵ float32 voxels in a 5 KB file
    p.huge_mrc = d / "huge.mrc"
    p.huge_mrc.write_bytes(mrc.tobytes() + bytes(4000))
    p.tiny_cell = d / "tiny-cell.cif"
    p.tiny_cell.write_text(
        "data_x\n_cell_length_a 0.001\n_cell_length_b 5\n_cell_length_c 5\n"
        "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n"
        "_atom_site_fract_y\n_atom_site_fract_z\nSi1 Si 0 0 0\n"
    )
    # -- TIFF files (issue 21: reading files): damaged headers, a 100000×1 strip
    import struct as _struct

    for name, entry, value in (
        ("first_page", None, 10**8),  # the first page's offset: beyond the file
        ("offsets", 273, 0),  # StripOffsets: of no known data type
    ):
        path = d / f"{name}.tif"
        _tifffile.imwrite(path, lattice)
        data = bytearray(path.read_bytes())
        ifd = _struct.unpack("<I", data[4:8])[0]
        if entry is None:
            data[4:8] = _struct.pack("<I", value)
        for k in range(_struct.unpack("<H", data[ifd : ifd + 2])[0]):
            at = ifd + 2 + 12 * k
            if _struct.unpack("<H", data[at : at + 2])[0] == entry:
                data[at + 2 : at + 4] = _struct.pack("<H", value)
        path.write_bytes(bytes(data))
        setattr(p, name, path)
    p.strip = write_tiff(d / "strip.tif", np.linspace(1, 100, 100_000, dtype=np.float32)[:, None])
    p.out = d / "out.tif"  # never created
    return p


# (id, argv, what the one line must say, memory available or None)
ROWS = [
    # -- sharing models (issue 14)
    (
        "export to a file that is not a package",
        lambda p: ["export", p.model, "-o", p.dir / "model.txt"],
        "is a .zip file",
        None,
    ),
    (
        "export a model file that carries code",
        lambda p: ["export", p.evil, "-o", p.dir / "evil.zip"],
        "refused",
        None,
    ),
    (
        "denoise with an ONNX file napari-pinned did not write",
        lambda p: ["denoise", p.noisy, "--model", p.foreign_onnx, "-o", p.out],
        "not a napari-pinned ONNX model",
        None,
    ),
    # -- outputs over inputs, folders, names given twice
    ("noise over its input", lambda p: ["noise", p.clean, "-o", p.clean], "is also an input", None),
    (
        "denoise over its input",
        lambda p: ["denoise", p.noisy, "--model", p.model, "-o", p.noisy],
        "is also an input",
        None,
    ),
    (
        "denoise over its input through a symbolic link",
        lambda p: ["denoise", p.noisy, "--model", p.model, "-o", p.link],
        "is also an input",
        None,
    ),
    (
        "denoise over its input through a hard link",
        lambda p: ["denoise", p.hard, "--model", p.model, "-o", p.noisy],
        "is also an input",
        None,
    ),
    (
        "denoise over its reference",
        lambda p: ["denoise", p.noisy, "--model", p.model, "--reference", p.clean, "-o", p.clean],
        "is also an input",
        None,
    ),
    (
        "denoise over the model file",
        lambda p: ["denoise", p.noisy, "--model", p.model, "-o", p.model],
        "is also an input",
        None,
    ),
    (
        "denoise batch writing one output twice",
        lambda p: [
            "denoise",
            p.noisy,
            p.folder / "noisy.tif",
            "--model",
            p.model,
            "--output-dir",
            p.folder,
        ],
        "is also the output of",
        None,
    ),
    (
        "train into a folder",
        lambda p: ["train", "--clean", p.clean, "-o", p.folder],
        "is a folder",
        None,
    ),
    (
        "train into a missing folder",
        lambda p: ["train", "--clean", p.clean, "-o", p.dir / "nope" / "m.pt"],
        "does not exist",
        None,
    ),
    (
        "train over its data",
        lambda p: ["train", "--clean", p.clean, "-o", p.clean],
        "is also an input",
        None,
    ),
    (
        "simulate CSV and TIFF to one file",
        lambda p: ["simulate", "--size", "64", "-o", p.out, "--columns", p.out],
        "named twice",
        None,
    ),
    (
        "align halves to one file",
        lambda p: ["align", p.stack, "-o", p.out, "--halves", p.dir / "h.tif", p.dir / "h.tif"],
        "named twice",
        None,
    ),
    ("align over its input", lambda p: ["align", p.stack, "-o", p.stack], "is also an input", None),
    ("demo into a file", lambda p: ["demo", "--output-dir", p.clean], "is not a folder", None),
    # -- arguments
    (
        "negative seed",
        lambda p: ["simulate", "--seed", "-1", "-o", p.out],
        "--seed: expected a non-negative",
        None,
    ),
    (
        "zero size",
        lambda p: ["simulate", "--size", "0", "-o", p.out],
        "--size: expected a positive",
        None,
    ),
    (
        "NaN pixel size",
        lambda p: ["simulate", "--pixel-size", "nan", "-o", p.out],
        "--pixel-size",
        None,
    ),
    (
        "CDN level 7",
        lambda p: ["noise", p.clean, "--level", "7", "-o", p.out],
        "CDN level in [0, 5]",
        None,
    ),
    (
        "unknown option",
        lambda p: ["noise", p.clean, "--bogus", "-o", p.out],
        "unrecognized arguments",
        None,
    ),
    (
        "unknown material",
        lambda p: ["simulate", "--material", "Unobtainium", "-o", p.out],
        "Unobtainium",
        None,
    ),
    (
        "demo of an unknown material",
        lambda p: ["demo", "--material", "Nope", "--output-dir", p.dir / "demo"],
        "unknown material 'Nope'",
        None,
    ),
    ("bad zone axis", lambda p: ["simulate", "--zone", "0", "0", "0", "-o", p.out], "zone", None),
    (
        "dose model without a dose",
        lambda p: ["noise", p.clean, "--model", "dose", "-o", p.out],
        "needs --dose",
        None,
    ),
    (
        "dose with the CDN model",
        lambda p: ["noise", p.clean, "--dose", "10", "-o", p.out],
        "--dose applies",
        None,
    ),
    ("denoise without an output", lambda p: ["denoise", p.noisy], "exactly one of", None),
    (
        "a halo below the model's reach (exact tiling needs 36 px for the tiny model)",
        lambda p: ["denoise", p.noisy, "--model", p.model, "--overlap", "8", "-o", p.out],
        "--overlap 8 is too small",
        None,
    ),
    (
        "resume into a TIFF",
        lambda p: ["denoise", p.noisy, "--resume", "-o", p.out],
        "--resume continues zarr outputs only",
        None,
    ),
    (
        "a scheduler address that is not one",
        lambda p: ["denoise", p.noisy, "--scheduler", "http://", "-o", p.dir / "o.zarr"],
        "expected a dask scheduler address",
        None,
    ),
    (
        "a cluster writing one TIFF",
        lambda p: ["denoise", p.noisy, "--workers", "2", "-o", p.out],
        "write one stack as zarr",
        None,
    ),
    ("train without data", lambda p: ["train", "-o", p.dir / "m.pt"], "no training data", None),
    (
        "fine-tuning with an architecture",
        lambda p: [
            "train",
            "--init",
            "default",
            "--architecture",
            "paper",
            "--clean",
            p.clean,
            "-o",
            p.dir / "m.pt",
        ],
        "--architecture cannot be combined with --init",
        None,
    ),
    (
        "more noisy than clean files",
        lambda p: ["train", "--clean", p.clean, "--noisy", p.noisy, p.noisy, "-o", p.dir / "m.pt"],
        "2 --noisy files for 1 --clean files",
        None,
    ),
    (
        "pairs of different shapes",
        lambda p: ["train", "--clean", p.clean, "--noisy", p.small, "-o", p.dir / "m.pt"],
        "paired images must match",
        None,
    ),
    (
        "a network wider than napari-pinned builds",
        lambda p: ["train", "--clean", p.clean, "--width", "200", "-o", p.dir / "m.pt"],
        "width 200, depth 3 is beyond",
        None,
    ),
    # -- input files
    (
        "missing input",
        lambda p: ["noise", p.dir / "missing.tif", "-o", p.out],
        "missing.tif: no such file",
        None,
    ),
    ("input is a folder", lambda p: ["noise", p.folder, "-o", p.out], "is a folder", None),
    ("not a TIFF", lambda p: ["noise", p.text, "-o", p.out], "text.tif: not a readable TIFF", None),
    (
        "missing CIF",
        lambda p: ["simulate", "--cif", p.dir / "none.cif", "-o", p.out],
        "none.cif: no such file",
        None,
    ),
    (
        "missing model",
        lambda p: ["denoise", p.noisy, "--model", p.dir / "nope.pt", "-o", p.out],
        "model file not found",
        None,
    ),
    (
        "model with code",
        lambda p: ["denoise", p.noisy, "--model", p.evil, "-o", p.out],
        "refused: the file contains code",
        None,
    ),
    (
        "model asking for 95 GiB",
        lambda p: ["denoise", p.noisy, "--model", p.huge_model, "-o", p.out],
        "width 1024, depth 8 is beyond",
        None,
    ),
    ("a 2D image to align", lambda p: ["align", p.clean, "-o", p.out], "single 2D image", None),
    (
        "reference of another shape",
        lambda p: ["denoise", p.noisy, "--model", p.model, "--reference", p.small, "-o", p.out],
        "but the reference",
        None,
    ),
    (
        "reference with NaN",
        lambda p: ["denoise", p.noisy, "--model", p.model, "--reference", p.nan, "-o", p.out],
        "nan.tif: the reference contains NaN",
        None,
    ),
    (
        "image with NaN",
        lambda p: ["denoise", p.nan, "--model", p.model, "-o", p.out],
        "nan.tif: the image contains NaN",
        None,
    ),
    (
        "metrics of another shape",
        lambda p: ["metrics", "--reference", p.clean, p.small],
        "small.tif has shape",
        None,
    ),
    # -- extreme values: refused, never NaN outputs or overflow tracebacks
    (
        "a 1e300 pixel to denoise",
        lambda p: ["denoise", p.extreme, "--model", p.model, "-o", p.out],
        "extreme.tif: the image has values up to 1e+300",
        None,
    ),
    (
        "a 1e300 pixel to noise",
        lambda p: ["noise", p.extreme, "-o", p.out],
        "extreme.tif: image has values up to 1e+300",
        None,
    ),
    (
        "a 1e300 pixel to score",
        lambda p: ["metrics", "--reference", p.clean, p.extreme],
        "extreme.tif: image has values up to 1e+300",
        None,
    ),
    # -- requests larger than the memory: refused before allocating, saying how much
    (
        "simulate 100000 px",
        lambda p: ["simulate", "--size", "100000", "-o", p.out],
        "needs about",
        8 * 1024 * MiB,
    ),
    (
        "a 1e6 Å probe",
        lambda p: ["simulate", "--probe-fwhm", "1e6", "-o", p.out],
        "needs about",
        8 * 1024 * MiB,
    ),
    (
        "a TIFF larger than the memory",
        lambda p: ["noise", p.clean, "-o", p.out],
        "needs about",
        20_000,
    ),
    (
        "denoising beyond the memory",
        lambda p: ["denoise", p.noisy, "--model", p.model, "-o", p.out],
        "needs about",
        64 * MiB,
    ),
    (
        "training images beyond the memory",
        lambda p: ["train", "--materials", "Si", "--sim-size", "60000", "-o", p.dir / "m.pt"],
        "needs about",
        8 * 1024 * MiB,
    ),
]


# -- checks that came too late (issue 21): before torch or any work
ROWS += [
    (
        "an RGB image to denoise",
        lambda p: ["denoise", p.rgb, "--model", p.model, "-o", p.out],
        "rgb.tif: image looks like an RGB(A) image",
        None,
    ),
    (
        "an RGB image to train on",
        lambda p: ["train", "--clean", p.rgb, "-o", p.dir / "m.pt"],
        "rgb.tif: image looks like an RGB(A) image",
        None,
    ),
    (
        "a training image smaller than a patch and its validation strip",
        lambda p: ["train", "--clean", p.small, "-o", p.dir / "m.pt"],
        "small.tif is 64×64 pixels, too small for 64-pixel patches",
        None,
    ),
    (
        "a device that is not one",
        lambda p: ["denoise", p.noisy, "--device", "gpu", "-o", p.out],
        "argument --device: expected auto, cpu, cuda, cuda:N or mps, got 'gpu'",
        None,
    ),
    (
        "more threads than a machine has",
        lambda p: ["train", "--clean", p.clean, "--threads", "100000", "-o", p.dir / "m.pt"],
        "argument --threads: expected a number of threads from 1 to",
        None,
    ),
    (
        "more workers than a machine has",
        lambda p: ["denoise", p.noisy, "--workers", "100000", "-o", p.dir / "o.zarr"],
        "argument --workers: expected a number of worker processes from 1 to",
        None,
    ),
    (
        "a training batch beyond the memory",
        lambda p: ["train", "--clean", p.clean, "--batch-size", "1000000", "-o", p.dir / "m.pt"],
        "1000000 patches of 64² px needs about",
        8 * 1024 * MiB,
    ),
    (
        "simulating more columns than the memory holds",
        lambda p: ["simulate", "--size", "2000", "--pixel-size", "20", "-o", p.out],
        "columns needs about",
        8 * 1024 * MiB,
    ),
    (
        "a CIF with a = 0.001 Å",
        lambda p: ["simulate", "--cif", p.tiny_cell, "-o", p.out],
        "tiny-cell.cif: a = 0.001 Å",
        None,
    ),
    (
        "an .mrc header claiming 10¹⁵ voxels",
        lambda p: ["noise", p.huge_mrc, "-o", p.out],
        "huge.mrc: cannot read this .mrc file (its header claims 100000×100000×100000",
        None,
    ),
    (
        "a symbolic link loop as input",
        lambda p: ["denoise", p.loop, "--model", p.model, "-o", p.out],
        "loop.tif: a symbolic link loop",
        None,
    ),
    (
        "a symbolic link loop as output",
        lambda p: ["noise", p.clean, "-o", p.loop],
        "loop.tif: a symbolic link loop",
        None,
    ),
    (
        "export with a licence that is not an SPDX identifier",
        lambda p: ["export", p.model, "-o", p.dir / "p.zip", "--license", "NOT-A-LICENSE"],
        "--license NOT-A-LICENSE: not an SPDX licence identifier",
        None,
    ),
    (
        "export with an empty author",
        lambda p: ["export", p.model, "-o", p.dir / "p.zip", "--author", ""],
        "--author '': an author needs a name",
        None,
    ),
]


# -- outputs that are not files to write (issue 21: outputs, zarr runs, disks)
ROWS += [
    (
        "noise onto a device",  # as root, /dev/null itself was replaced by a file
        lambda p: ["noise", p.clean, "-o", "/dev/null"],
        "/dev/null: exists and is not a regular file",
        None,
    ),
    (
        "noise to a file name ending in a slash",
        lambda p: ["noise", p.clean, "-o", f"{p.out}/"],
        "out.tif/: ends with '/'",
        None,
    ),
    (
        "denoise to a file name ending in a slash",
        lambda p: ["denoise", p.noisy, "--model", p.model, "-o", f"{p.out}/"],
        "out.tif/: ends with '/'",
        None,
    ),
    (
        "train to a file name ending in a slash",
        lambda p: [
            *("train", "--clean", p.clean, "--steps", "1", "--architecture", "tiny"),
            *("-o", f"{p.dir / 'm.pt'}/"),
        ],
        "m.pt/: ends with '/'",
        None,
    ),
]


# -- TIFF files read frame by frame (issue 21: reading files)
ROWS += [
    (
        "a TIFF whose first page lies beyond its end",
        lambda p: ["denoise", p.first_page, "--model", p.model, "-o", p.out],
        "first_page.tif: not a readable TIFF image (invalid offset to first page 100000000)",
        None,
    ),
    (
        "a TIFF whose strip offsets are damaged",
        lambda p: ["denoise", p.offsets, "--model", p.model, "-o", p.out],
        "offsets.tif: not a readable TIFF image (tag 273: invalid data type 0)",
        None,
    ),
    (
        "a 100000×1 strip (read once: it took 19 GB, a frame per row)",
        lambda p: ["denoise", p.strip, "--model", p.model, "-o", p.out],
        "strip.tif: image is 100000×1 px, too small to estimate its noise",
        None,
    ),
]


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    state = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            state[str(path.relative_to(folder))] = (digest, path.stat().st_mode)
        else:
            state[str(path.relative_to(folder))] = ("link" if path.is_symlink() else "dir", 0)
    return state


@pytest.mark.parametrize(
    ("argv", "message", "memory"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    files, capsys, monkeypatch, argv, message, memory
):
    if memory is not None:
        monkeypatch.setattr("napari_pinned._util.memory.available_bytes", lambda: memory)
    before = _snapshot(files.dir)
    capsys.readouterr()
    status = main([str(a) for a in argv(files)])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("napari-pinned: error: ") and message in lines[0], lines[0]
    assert captured.out == ""
    assert _snapshot(files.dir) == before


def test_checks_come_before_torch_is_imported(files):
    # A typo must be reported at once, not after the seconds torch takes to import.
    code = textwrap.dedent(
        f"""
        import sys
        from napari_pinned.cli.entry import main
        d = {str(files.dir)!r}
        cases = [
            ["denoise", d + "/missing.tif", "-o", d + "/out.tif"],
            ["denoise", d + "/noisy.tif", "--model", d + "/nope.pt", "-o", d + "/out.tif"],
            ["denoise", d + "/noisy.tif", "-o", d + "/noisy.tif"],
            ["train", "--clean", d + "/clean.tif", "-o", d + "/folder"],
            ["train", "--materials", "Nope", "-o", d + "/m.pt"],
            ["demo", "--material", "Nope", "--output-dir", d + "/demo"],
            ["noise", d + "/clean.tif", "-o", d + "/clean.tif"],
            ["metrics", "--reference", d + "/clean.tif", d + "/small.tif"],
        ]
        for argv in cases:
            assert main(argv) == 2, argv
        print("torch" in sys.modules)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", result.stderr
    assert result.stderr.count("napari-pinned: error:") == 8
