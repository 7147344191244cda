"""The command line's dose noise model and self-supervised training."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned.cli.entry import main
from napari_pinned.io.images import read_image, read_pixel_size
from napari_pinned.io.tiff import write_tiff
from napari_pinned.noise.synthesis import add_dose_noise


def _lattice() -> np.ndarray:
    y, x = np.mgrid[0:96, 0:96]
    return (np.cos(x / 2.0) * np.cos(y / 2.0) * 0.4 + 0.5).astype(np.float32)


def test_noise_with_the_dose_model_uses_the_file_pixel_size(tmp_path, capsys):
    clean, noisy = tmp_path / "clean.tif", tmp_path / "dose.tif"
    write_tiff(clean, _lattice(), pixel_size=0.2)
    argv = ["noise", str(clean), "--model", "dose", "--dose", "500", "--seed", "3"]
    assert main([*argv, "-o", str(noisy)]) == 0
    expected = add_dose_noise(_lattice(), 500.0, pixel_size=0.2, seed=3)
    np.testing.assert_array_equal(read_image(noisy), expected)
    assert read_pixel_size(noisy) == pytest.approx(0.2)
    assert "0.2 Å/px" in capsys.readouterr().out


def test_dose_model_without_a_pixel_size_is_a_one_line_error(tmp_path, capsys):
    clean = tmp_path / "clean.tif"
    write_tiff(clean, _lattice())
    assert main(["noise", str(clean), "--model", "dose", "--dose", "5", "-o", "x.tif"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--pixel-size" in err and "\n" not in err


def test_blind_spot_training_from_noisy_files(tmp_path, capsys):
    noisy = tmp_path / "noisy.tif"
    write_tiff(noisy, add_dose_noise(_lattice(), 2000.0, pixel_size=0.1, seed=0))
    model = tmp_path / "m.pt"
    argv = ["train", "--blind-spot", "--noisy", str(noisy), "--architecture", "tiny"]
    argv += ["--steps", "4", "--batch-size", "2", "--patch-size", "32", "-o", str(model)]
    assert main(argv) == 0
    assert "blind-spot PSNR" in capsys.readouterr().out
    assert model.is_file()


def test_blind_spot_refuses_clean_images(tmp_path, capsys):
    noisy = tmp_path / "noisy.tif"
    write_tiff(noisy, _lattice())
    argv = ["train", "--blind-spot", "--noisy", str(noisy), "--clean", str(noisy), "-o", "m.pt"]
    assert main(argv) == 2
    assert "--blind-spot" in capsys.readouterr().err
