"""CLI for noise-aware models: models, denoise --strength/--check and adapt."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned.cli.entry import main
from napari_pinned.denoising.denoiser import denoise
from napari_pinned.io.images import read_image
from napari_pinned.io.tiff import write_tiff
from napari_pinned.nn.model_files import SHIPPED_MODELS, save_model
from napari_pinned.nn.resolve import load_model


@pytest.fixture(scope="module")
def aware_model(tmp_path_factory, tiny_conditioned) -> str:
    path = tmp_path_factory.mktemp("models") / "aware.pt"
    save_model(tiny_conditioned(0, name="aware"), path)
    return str(path)


def _counts(tmp_path, size=128, seed=0):
    y, x = np.mgrid[0:size, 0:size]
    lattice = 2.2 + np.cos(2 * np.pi * x / 8.0) + np.cos(2 * np.pi * y / 8.0)
    counts = np.random.default_rng(seed).poisson(lattice / lattice.mean() * 10).astype(np.uint16)
    path = tmp_path / "scan.tif"
    write_tiff(path, counts, pixel_size=0.1)
    return path, counts


def test_models_lists_every_shipped_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == [m.name for m in SHIPPED_MODELS]
    assert all(m.purpose in line for m, line in zip(SHIPPED_MODELS, out, strict=True))


def test_denoise_strength_check_and_noise_line(tmp_path, capsys, aware_model):
    path, _ = _counts(tmp_path)
    out = tmp_path / "out.tif"
    assert main(["denoise", str(path), "-o", str(out), "--model", aware_model,
                 "--strength", "0.5", "--check", "--device", "cpu"]) == 0  # fmt: skip
    expected = denoise(read_image(path), aware_model, strength=0.5, device="cpu")
    np.testing.assert_allclose(read_image(out), expected, atol=1e-4)
    text = capsys.readouterr().out
    assert "noise: ≈" in text and "e⁻/px" in text
    assert "reflections" in text  # the faithfulness summary line


@pytest.mark.parametrize("value", ["-1", "11", "nan"])
def test_bad_strength_is_one_line(tmp_path, capsys, value, aware_model):
    path, _ = _counts(tmp_path)
    code = main(["denoise", str(path), "-o", str(tmp_path / "o.tif"), "--strength", value])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--strength" in err[0]
    assert not (tmp_path / "o.tif").exists()


def test_adapt_writes_a_model_and_never_overwrites_the_input(tmp_path, capsys, aware_model):
    path, _ = _counts(tmp_path, size=160)
    out = tmp_path / "mine.pt"
    assert main(["adapt", str(path), "-o", str(out), "--model", aware_model,
                 "--steps", "8", "--device", "cpu"]) == 0  # fmt: skip
    adapted = load_model(out)
    assert adapted.config.conditioned and adapted.metadata["steps"] == 8
    assert "saved" in capsys.readouterr().out
    # The input is never a valid output; a missing start model is named.
    assert main(["adapt", str(path), "-o", str(path), "--model", aware_model]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["adapt", str(path), "-o", str(out), "--model", "nope.pt", "--overwrite"]) == 2
    assert "nope.pt" in capsys.readouterr().err


def test_adapt_refuses_a_model_without_a_noise_map(tmp_path, capsys):
    path, _ = _counts(tmp_path, size=160)
    assert main(["adapt", str(path), "-o", str(tmp_path / "m.pt"), "--model", "cdn"]) == 2
    err = capsys.readouterr().err
    assert "not noise-conditioned" in err and not (tmp_path / "m.pt").exists()


def test_no_keep_lattice_gives_the_network_output(tmp_path, aware_model):
    path, _ = _counts(tmp_path, seed=3)
    out = tmp_path / "raw.tif"
    assert main(["denoise", str(path), "-o", str(out), "--model", aware_model,
                 "--no-keep-lattice", "--device", "cpu"]) == 0  # fmt: skip
    expected = denoise(read_image(path), aware_model, keep_lattice=False, device="cpu")
    np.testing.assert_allclose(read_image(out), expected, atol=1e-4)
