"""Checks that must come before any work (issue 21): each mistake is one line and exit
status 2 before torch is imported or the expensive step runs.

The one-line, exit-2, nothing-written rows are in tests/test_bad_inputs.py; here each
case is run in a fresh interpreter to show that torch was never imported, and the
checks that depend on the machine (CPUs, memory, the torch build) are pinned by
monkeypatching what they read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from napari_pinned.cli.entry import main
from napari_pinned.io.tiff import write_tiff

MiB = 1024**2


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """One folder: a lattice image, an RGB image, a 40 px image, a symbolic link loop,
    an .mrc whose header claims 10¹⁵ voxels, and a CIF with a = 0.001 Å."""
    import tifffile

    d = tmp_path_factory.mktemp("early")
    y, x = np.mgrid[0:96, 0:96]
    lattice = (np.cos(x / 2.0) * np.cos(y / 2.0) * 100 + 120).astype(np.float32)
    write_tiff(d / "clean.tif", lattice, pixel_size=0.1)
    rgb = np.stack([lattice, lattice, lattice], axis=-1).astype(np.uint8)
    tifffile.imwrite(d / "rgb.tif", rgb, photometric="rgb")
    write_tiff(d / "small.tif", lattice[:40, :40])
    (d / "loop.tif").symlink_to("loop.tif")
    header = np.zeros(256, "<i4")
    header[0:4] = (100_000, 100_000, 100_000, 2)  # 10¹⁵ float32 voxels
    (d / "huge.mrc").write_bytes(header.tobytes() + bytes(4000))
    (d / "tiny-cell.cif").write_text(
        "data_x\n_cell_length_a 0.001\n_cell_length_b 5\n_cell_length_c 5\n"
        "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n"
        "_atom_site_fract_y\n_atom_site_fract_z\nSi1 Si 0 0 0\n"
    )
    return d


# (argv with {d} for the folder, what the one line says)
BEFORE_TORCH = [
    (["denoise", "{d}/rgb.tif", "-o", "{d}/out.tif"], "rgb.tif: image looks like an RGB"),
    (["train", "--clean", "{d}/rgb.tif", "-o", "{d}/m.pt"], "rgb.tif: image looks like an RGB"),
    (["train", "--clean", "{d}/small.tif", "-o", "{d}/m.pt"], "small.tif is 40×40 pixels"),
    (["denoise", "{d}/clean.tif", "--device", "gpu", "-o", "{d}/out.tif"], "--device"),
    (["train", "--clean", "{d}/clean.tif", "--device", "cuda:x", "-o", "{d}/m.pt"], "--device"),
    (["train", "--clean", "{d}/clean.tif", "--threads", "100000", "-o", "{d}/m.pt"], "--threads"),
    (["denoise", "{d}/clean.tif", "--workers", "100000", "-o", "{d}/o.zarr"], "--workers"),
    (
        ["train", "--clean", "{d}/clean.tif", "--batch-size", "1000000", "-o", "{d}/m.pt"],
        "needs about",
    ),
    (["export", "default", "-o", "{d}/p.zip", "--license", "NOT-A-LICENSE"], "NOT-A-LICENSE"),
    (["export", "default", "-o", "{d}/p.zip", "--author", ""], "author"),
    (["denoise", "{d}/loop.tif", "-o", "{d}/out.tif"], "loop.tif: a symbolic link loop"),
    (["noise", "{d}/clean.tif", "-o", "{d}/loop.tif"], "loop.tif: a symbolic link loop"),
    (["noise", "{d}/huge.mrc", "-o", "{d}/out.tif"], "huge.mrc: cannot read this .mrc file"),
    (["simulate", "--cif", "{d}/tiny-cell.cif", "-o", "{d}/out.tif"], "tiny-cell.cif"),
]


def test_each_mistake_is_one_line_before_torch_is_imported(inputs):
    code = textwrap.dedent(
        """
        import contextlib, io, json, sys
        from napari_pinned.cli.entry import main
        results = []
        for argv in json.loads(sys.argv[1]):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                status = main(argv)
            results.append([status, err.getvalue()])
        print(json.dumps({"results": results, "torch": "torch" in sys.modules}))
        """
    )
    cases = [[a.format(d=inputs) for a in argv] for argv, _ in BEFORE_TORCH]
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for (argv, message), (status, err) in zip(BEFORE_TORCH, report["results"], strict=True):
        lines = err.strip().splitlines()
        assert status == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith("napari-pinned: error: "), (argv, err)
        assert message in lines[0], (argv, lines[0])
    assert report["torch"] is False


def _must_not_run(*args, **kwargs):
    raise AssertionError("the work started before the check")


def _one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("napari-pinned: error: ")
    return lines[0]


def test_cuda_on_a_cpu_only_torch_build_is_refused_before_training(inputs, monkeypatch, capsys):
    monkeypatch.setattr("napari_pinned.cli.checks.torch_cuda_build", lambda: False)
    monkeypatch.setattr("napari_pinned.training.run.train", _must_not_run)
    argv = ["train", "--clean", str(inputs / "clean.tif"), "--device", "cuda", "-o"]
    assert main([*argv, str(inputs / "m.pt")]) == 2
    assert "--device cuda: this PyTorch build has no CUDA" in _one_line(capsys)
    monkeypatch.setattr("napari_pinned.cli.denoise.load_denoise_model", _must_not_run)
    argv = ["denoise", str(inputs / "clean.tif"), "--device", "cuda:1", "-o"]
    assert main([*argv, str(inputs / "out.tif")]) == 2
    assert "--device cuda:1: this PyTorch build has no CUDA" in _one_line(capsys)


def test_cuda_on_a_cpu_only_torch_build_is_refused_before_adapt_and_demo(
    inputs, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("napari_pinned.cli.checks.torch_cuda_build", lambda: False)
    monkeypatch.setattr("napari_pinned.cli.adapt.import_torch", _must_not_run)
    monkeypatch.setattr("napari_pinned.cli.demo.import_torch", _must_not_run)
    argv = ["adapt", str(inputs / "clean.tif"), "--device", "cuda", "-o"]
    assert main([*argv, str(tmp_path / "a.pt")]) == 2
    assert "--device cuda: this PyTorch build has no CUDA" in _one_line(capsys)
    assert main(["demo", "--device", "cuda:0", "--output-dir", str(tmp_path / "demo")]) == 2
    assert "--device cuda:0: this PyTorch build has no CUDA" in _one_line(capsys)


def test_cuda_with_the_onnx_backend_is_left_to_onnx_runtime(inputs, monkeypatch):
    # ONNX Runtime may run on CUDA with a CPU-only torch: the torch build is no reason.
    from napari_pinned.cli.checks import check_torch_device

    monkeypatch.setattr("napari_pinned.cli.checks.torch_cuda_build", lambda: False)
    with pytest.raises(ValueError, match="no CUDA"):
        check_torch_device("cuda:1")
    check_torch_device("cpu")
    check_torch_device("auto")


def test_mps_off_macos_is_a_usage_error(inputs, monkeypatch, capsys):
    monkeypatch.setattr(sys, "platform", "linux")
    assert main(["denoise", str(inputs / "clean.tif"), "--device", "mps", "-o", "x.tif"]) == 2
    assert "macOS" in _one_line(capsys)


def test_threads_and_workers_are_bounded_by_the_cpus(inputs, monkeypatch, capsys):
    monkeypatch.setattr("napari_pinned.cli.options.usable_cpus", lambda: 4)
    clean = str(inputs / "clean.tif")
    assert main(["train", "--clean", clean, "--threads", "5", "-o", "m.pt"]) == 2
    assert "--threads: expected a number of threads from 1 to 4" in _one_line(capsys)
    assert main(["denoise", clean, "--workers", "5", "-o", str(inputs / "o.zarr")]) == 2
    assert "--workers: expected a number of worker processes from 1 to 4" in _one_line(capsys)


def test_workers_are_bounded_by_the_memory_each_needs(inputs, monkeypatch, capsys):
    monkeypatch.setattr("napari_pinned.cli.options.usable_cpus", lambda: 64)
    monkeypatch.setattr("napari_pinned._util.memory.available_bytes", lambda: 2048 * MiB)
    monkeypatch.setattr("napari_pinned.denoising.files.dask_client", _must_not_run)
    monkeypatch.setattr("napari_pinned.cli.denoise.load_denoise_model", _must_not_run)
    argv = ["denoise", str(inputs / "clean.tif"), "--workers", "8", "-o"]
    assert main([*argv, str(inputs / "o.zarr")]) == 2
    line = _one_line(capsys)
    assert "8 worker processes" in line and "needs about" in line


def test_a_training_batch_beyond_the_memory_is_refused_before_training(inputs, monkeypatch, capsys):
    monkeypatch.setattr("napari_pinned._util.memory.available_bytes", lambda: 4096 * MiB)
    monkeypatch.setattr("napari_pinned.training.run.train", _must_not_run)
    clean = str(inputs / "clean.tif")
    argv = ["train", "--clean", clean, "--batch-size", "4096", "--patch-size", "64", "-o"]
    assert main([*argv, str(inputs / "m.pt")]) == 2
    line = _one_line(capsys)
    assert "4096 patches of 64² px" in line and "needs about" in line


def test_export_checks_licence_and_authors_before_loading_the_model(inputs, monkeypatch, capsys):
    monkeypatch.setattr("napari_pinned.nn.resolve.load_model", _must_not_run)
    out = str(inputs / "p.zip")
    assert main(["export", "default", "-o", out, "--license", "NOT-A-LICENSE"]) == 2
    line = _one_line(capsys)
    assert "--license NOT-A-LICENSE: not an SPDX licence identifier" in line
    assert len(line) < 200
    assert main(["export", "default", "-o", out, "--license", "mit"]) == 2
    assert "did you mean 'MIT'" in _one_line(capsys)
    assert main(["export", "default", "-o", out, "--author", " "]) == 2
    assert "--author ' ': an author needs a name" in _one_line(capsys)
    assert main(["export", "default", "-o", out, "--name", "ab"]) == 2
    assert "--name 'ab'" in _one_line(capsys)
    assert not (inputs / "p.zip").exists()


def test_a_broken_link_is_named_as_one(tmp_path, capsys):
    (tmp_path / "gone.tif").symlink_to(tmp_path / "nowhere.tif")
    assert main(["noise", str(tmp_path / "gone.tif"), "-o", str(tmp_path / "o.tif")]) == 2
    assert "gone.tif: a broken symbolic link" in _one_line(capsys)
    assert not os.path.lexists(tmp_path / "o.tif")
