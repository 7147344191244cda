"""Averaging the network over orientations of the image (``denoise(..., orientations=)``)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned.denoising.denoiser import denoise
from napari_pinned.denoising.engine import ORIENTATIONS
from napari_pinned.nn.network import ModelBundle
from napari_pinned.settings import ModelConfig

da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def bundle(random_bundle) -> ModelBundle:
    # Random weights: a function with no symmetry of its own.
    config = ModelConfig.preset("tiny", depth=2, normalization="robust")
    return random_bundle(config, 4, name="orientations test")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:96, 0:128]
    lattice = 2.0 + np.cos(2 * np.pi * x / 9.0) + np.cos(2 * np.pi * (x + y) / 7.0)
    return rng.poisson(lattice * 15.0).astype(np.float32)


def _oriented(a: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    a = np.rot90(a, turns)
    return np.ascontiguousarray(a[:, ::-1] if mirror else a)


def _back(a: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    return np.rot90(a[:, ::-1] if mirror else a, -turns)


def test_the_first_orientations_form_groups():
    # Prefixes of 2 and 4 are closed under composition, so the average treats y and x alike.
    probe = np.arange(12.0).reshape(3, 4)
    for count in (2, 4, 8):
        made = {_oriented(probe, t, m).tobytes() for t, m in ORIENTATIONS[:count]}
        for t1, m1 in ORIENTATIONS[:count]:
            for t2, m2 in ORIENTATIONS[:count]:
                twice = _oriented(_oriented(probe, t1, m1), t2, m2)
                assert twice.tobytes() in made
    assert len(set(ORIENTATIONS)) == 8


@pytest.mark.parametrize("count", [2, 8])
def test_the_average_is_that_of_the_turned_images(bundle, image, count):
    settings = {"device": "cpu", "keep_lattice": False}
    averaged = denoise(image, bundle, orientations=count, **settings)
    expected = np.mean(
        [
            _back(denoise(_oriented(image, t, m), bundle, **settings), t, m)
            for t, m in ORIENTATIONS[:count]
        ],
        axis=0,
    )
    span = float(np.ptp(image))
    np.testing.assert_allclose(averaged, expected, atol=1e-4 * span)
    single = denoise(image, bundle, **settings)
    assert np.abs(averaged - single).max() > 1e-3 * span  # it did something


def test_tiles_and_dask_chunks_give_the_whole_image_result(bundle, image):
    whole = denoise(image, bundle, device="cpu", orientations=4)
    tiled = denoise(image, bundle, device="cpu", orientations=4, tile=32)
    lazy = denoise(da.from_array(image, chunks=(48, 64)), bundle, device="cpu", orientations=4)
    span = float(np.ptp(image))
    assert np.abs(tiled - whole).max() <= 1e-5 * span
    assert np.abs(np.asarray(lazy.compute()) - whole).max() <= 1e-4 * span


@pytest.mark.parametrize("bad", [0, 3, 16, True, 2.0, "8"])
def test_other_counts_are_refused(bundle, image, bad):
    with pytest.raises(ValueError, match="orientations must be one of"):
        denoise(image, bundle, device="cpu", orientations=bad)


def test_the_command_line_averages_orientations_too(bundle, image, tmp_path):
    from napari_pinned.cli.entry import main
    from napari_pinned.io.images import read_image
    from napari_pinned.io.tiff import write_tiff
    from napari_pinned.nn.model_files import save_model

    source = write_tiff(tmp_path / "in.tif", image)
    model = save_model(bundle, tmp_path / "m.pt")
    out = tmp_path / "out.tif"
    argv = ["denoise", str(source), "--model", str(model), "-o", str(out), "--device", "cpu"]
    assert main([*argv, "--orientations", "4"]) == 0
    expected = denoise(image, bundle, device="cpu", orientations=4)
    np.testing.assert_allclose(read_image(out), expected, atol=1e-4 * float(np.ptp(image)))
    assert main([*argv, "--orientations", "3"]) == 2
