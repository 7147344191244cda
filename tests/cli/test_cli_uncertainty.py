"""``napari-pinned denoise --uncertainty``: the map written beside the output (issue 22, §4)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned.cli.entry import main
from napari_pinned.denoising.denoiser import denoise_with_uncertainty
from napari_pinned.io.images import read_image, read_pixel_size
from napari_pinned.io.tiff import write_tiff
from napari_pinned.nn.model_files import save_model
from napari_pinned.settings import ModelConfig


@pytest.fixture(scope="module")
def aware_model(tmp_path_factory, tiny_conditioned) -> str:
    path = tmp_path_factory.mktemp("models") / "aware.pt"
    save_model(tiny_conditioned(0, name="aware"), path)
    return str(path)


def _counts(tmp_path, frames: int = 0):
    y, x = np.mgrid[0:64, 0:64]
    lattice = 2.2 + np.cos(2 * np.pi * x / 8.0) + np.cos(2 * np.pi * y / 8.0)
    rng = np.random.default_rng(0)
    shape = (frames, 64, 64) if frames else (64, 64)
    counts = rng.poisson(np.broadcast_to(lattice * 5.0, shape)).astype(np.uint16)
    path = tmp_path / "scan.tif"
    write_tiff(path, counts, pixel_size=0.1)
    return path, counts


@pytest.mark.parametrize("frames", [0, 2])
def test_the_uncertainty_is_written_beside_the_output(tmp_path, capsys, aware_model, frames):
    path, _ = _counts(tmp_path, frames)
    out = tmp_path / "out.tif"
    args = ["denoise", str(path), "-o", str(out), "--model", aware_model, "--device", "cpu"]
    assert main([*args, "--orientations", "2", "--uncertainty"]) == 0
    sigma_path = tmp_path / "out_uncertainty.tif"
    image = read_image(path)  # as the command reads it
    expected = denoise_with_uncertainty(image, aware_model, orientations=2, device="cpu")
    np.testing.assert_allclose(read_image(out), expected.output, atol=1e-4)
    np.testing.assert_allclose(read_image(sigma_path), expected.uncertainty, rtol=1e-5, atol=1e-6)
    assert read_pixel_size(sigma_path) == pytest.approx(0.1)
    assert "out_uncertainty.tif (uncertainty, σ)" in capsys.readouterr().out
    # No temporary files are left behind.
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["out.tif", "out_uncertainty.tif", "scan.tif"]


@pytest.mark.parametrize(
    ("extra", "output", "message"),
    [
        (["--workers", "1"], "out.zarr", "leave out --scheduler/--workers"),
        (["--strength", "0"], "out.tif", "--strength above 0"),
        ([], "out.zarr", "--uncertainty writes TIFF outputs"),
        (["--model", "x.onnx"], "out.tif", "or a shipped model, not"),
    ],
)
def test_bad_requests_are_one_line_before_work(tmp_path, capsys, extra, output, message):
    path, _ = _counts(tmp_path)
    (tmp_path / "x.onnx").write_bytes(b"not a model")
    args = ["denoise", str(path), "-o", str(tmp_path / output), "--uncertainty", *extra]
    if "--model" in extra:
        args[args.index("x.onnx")] = str(tmp_path / "x.onnx")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.tif", "x.onnx"]


def test_the_uncertainty_never_overwrites_an_input(tmp_path, capsys):
    taken = tmp_path / "out_uncertainty.tif"
    write_tiff(taken, np.zeros((4, 4), np.float32))
    code = main(["denoise", str(taken), "-o", str(tmp_path / "out.tif"), "--uncertainty"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out_uncertainty.tif" in err[0]
    assert read_image(taken).shape == (4, 4) and not (tmp_path / "out.tif").exists()


def test_a_model_without_a_noise_map_is_refused(tmp_path, capsys, random_bundle):
    path, _ = _counts(tmp_path)
    model = tmp_path / "plain.pt"
    save_model(random_bundle(ModelConfig.preset("tiny", normalization="robust"), 1), model)
    code = main(["denoise", str(path), "-o", str(tmp_path / "out.tif"), "--model", str(model),
                 "--uncertainty", "--device", "cpu"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "noise-aware model" in err[0]
    assert not (tmp_path / "out.tif").exists()
