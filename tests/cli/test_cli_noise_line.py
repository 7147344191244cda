"""``napari-pinned denoise`` prints the honest noise line (through main())."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned.cli.entry import main
from napari_pinned.io.tiff import write_tiff
from napari_pinned.nn.model_files import save_model


@pytest.fixture(scope="module")
def aware_model(tmp_path_factory, tiny_conditioned):
    path = tmp_path_factory.mktemp("model") / "aware.pt"
    save_model(tiny_conditioned(0, name="aware"), path)
    return path


def _lattice(size: int = 96) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return 2.2 + np.cos(2 * np.pi * x / 8.0) + np.cos(2 * np.pi * y / 8.0)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (_lattice() * 1000.0, "no noise measurable (the image looks noise-free)"),
        (
            np.round(
                np.random.default_rng(0).poisson(_lattice() / _lattice().mean() * 1000) / 14
            ).astype(np.uint8),
            "not detector counts: values step by 1.00, coarser than one electron",
        ),
    ],
    ids=["noise-free", "8-bit"],
)
def test_denoise_prints_the_noise_line(tmp_path, capsys, aware_model, image, expected):
    source, target = tmp_path / "in.tif", tmp_path / "out.tif"
    write_tiff(source, image)
    assert main(["denoise", str(source), "-o", str(target), "--model", str(aware_model)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if ": noise" in line]
    assert len(lines) == 1 and expected in lines[0]
    assert "e⁻/px" not in lines[0]
