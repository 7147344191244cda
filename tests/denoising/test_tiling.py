"""Exact tiling, frame statistics applied to regions, streaming into ``out``, and dask."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned.denoising.denoiser import DenoiseProgress, denoise, iter_denoise
from napari_pinned.denoising.model_spec import ModelSpec
from napari_pinned.denoising.tiling import minimum_overlap, windows_per_frame
from napari_pinned.nn.conditioning import (
    REGION_CONTEXT,
    frame_statistics,
    prepare,
    prepare_region,
)
from napari_pinned.nn.network import ModelBundle
from napari_pinned.settings import FrameOptions, ModelConfig

da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def plain(random_bundle) -> ModelBundle:
    # Random weights everywhere: a strongly varying function.
    return random_bundle(ModelConfig.preset("tiny"), 0, name="test 0")


@pytest.fixture(scope="module", params=["noise-map", "noise-map+lattice"])
def conditioned(random_bundle, request) -> ModelBundle:
    """Depth 3 (halo 80 px), noise-conditioned, with and without the lattice prior: the
    shipped models' kinds of network (the prior comes from the whole frame, so tiles,
    regions and dask chunks must get their part of it)."""
    config = ModelConfig.preset("tiny", depth=3, normalization="robust", conditioning=request.param)
    return random_bundle(config, 1, name="test 1")


def _counts(shape=(512, 512), seed=0, dose=20.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    lattice = 2.2 + np.cos(2 * np.pi * x / 9.0) + np.cos(2 * np.pi * y / 7.0)
    counts = rng.poisson(lattice / lattice.mean() * dose)
    counts[rng.integers(0, shape[0], 5), rng.integers(0, shape[1], 5)] = 4000  # hot pixels
    return counts.astype(np.uint16)


def _float_image(shape=(512, 512), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


def _span(a: np.ndarray) -> float:
    return float(np.ptp(a))


def test_minimum_overlap_is_the_reach_rounded_to_the_alignment():
    assert minimum_overlap(ModelConfig(depth=2)) == 36
    assert minimum_overlap(ModelConfig(depth=3)) == 80
    # Depth 4: the receptive field spans 298 px but reaches 153 px to one side.
    assert minimum_overlap(ModelConfig(depth=4)) == 160


@pytest.mark.parametrize("tile", [64, 96, 200])
def test_any_tile_gives_the_whole_image_result(plain, tile):
    image = _float_image()
    whole = denoise(image, plain, tile=2048, device="cpu")
    assert windows_per_frame(image.shape, plain.config, 2048) == 1
    assert windows_per_frame(image.shape, plain.config, tile) > 4
    tiled = denoise(image, plain, tile=tile, device="cpu")
    assert np.abs(tiled - whole).max() <= 1e-3 * _span(whole)


def test_tiling_is_exact_for_a_noise_conditioned_model_with_outliers(conditioned):
    counts = _counts()
    whole = denoise(counts, conditioned, tile=2048, device="cpu")
    tiled = denoise(counts, conditioned, tile=96, batch_size=3, device="cpu")
    assert _span(whole) > 0
    assert np.abs(tiled - whole).max() <= 1e-3 * _span(whole)


def test_a_halo_below_the_reach_is_refused_and_the_default_follows_the_model(plain):
    with pytest.raises(ValueError, match=r"overlap 32 px is too small.*at least 36 px"):
        denoise(_float_image((64, 64)), plain, tile=64, overlap=32, device="cpu")
    # Tiles smaller than the halo work with the default overlap (the old tiling refused
    # tile=64 with its fixed 64 px overlap).
    out = denoise(_float_image((100, 90)), plain, tile=16, device="cpu")
    assert out.shape == (100, 90)


def test_a_region_with_context_is_prepared_as_the_whole_frame(conditioned):
    counts = _counts((160, 150), seed=3)
    counts[40, 20] = 0  # a dead pixel right next to the region's edge
    config = conditioned.config
    lattice = config.lattice
    whole = prepare(counts, config.normalization, conditioned=True, strength=0.8, lattice=lattice)
    stats = frame_statistics(counts, config.normalization, conditioned=True, lattice=lattice)
    assert stats.outliers == int(whole.outliers.sum()) >= 1
    assert len(whole.channels) == config.input_channels
    y0, y1, x0, x1 = 30, 120, 10, 150  # touches the right edge of the frame
    region = prepare_region(counts[y0:y1, x0:x1], stats, strength=0.8, origin=(y0, x0))
    c = REGION_CONTEXT
    inner = (slice(None), slice(c, y1 - y0 - c), slice(c, None))
    np.testing.assert_array_equal(
        region.channels[inner], whole.channels[:, y0 + c : y1 - c, x0 + c : x1]
    )
    # The whole frame as its own region is the whole-frame result.
    np.testing.assert_array_equal(
        prepare_region(counts, stats, strength=0.8).channels, whole.channels
    )


def test_stack_streams_into_out_and_resumes_with_skip(conditioned):
    stack = np.stack([_counts((96, 112), seed=s) for s in range(4)])
    expected = denoise(stack, conditioned, device="cpu")
    out = np.full(stack.shape, -1.0, np.float32)
    reports: list[DenoiseProgress] = list(
        iter_denoise(stack, conditioned, FrameOptions(device="cpu"), out=out, skip=[1, 2])
    )
    assert reports[-1].output is out
    assert [r.frames_done for r in reports] == sorted(r.frames_done for r in reports)
    assert reports[-1].frames_done == 2
    assert reports[-1].noise[1] is None and reports[-1].noise[0] is not None
    np.testing.assert_allclose(out[[0, 3]], expected[[0, 3]], rtol=1e-6, atol=1e-4)
    assert np.all(out[[1, 2]] == -1.0)  # skipped frames are left alone


def test_zarr_arrays_in_and_out(tmp_path, conditioned):
    zarr = pytest.importorskip("zarr")
    stack = np.stack([_counts((80, 96), seed=s) for s in range(3)])
    source = zarr.create_array(
        tmp_path / "in.zarr", shape=stack.shape, chunks=(1, 40, 96), dtype="u2"
    )
    source[...] = stack
    target = zarr.create_array(
        tmp_path / "out.zarr", shape=stack.shape, chunks=(1, 80, 96), dtype="f4"
    )
    result = denoise(source, conditioned, device="cpu", out=target)
    assert result is target
    np.testing.assert_allclose(target[...], denoise(stack, conditioned, device="cpu"), atol=1e-4)


def test_dask_in_gives_lazy_dask_out_with_the_same_chunks(conditioned):
    stack = np.stack([_counts((300, 260), seed=s) for s in range(3)])
    lazy_in = da.from_array(stack, chunks=(2, 128, 100))
    loads = ModelSpec.of(conditioned)  # a spec: the model travels as data
    result = denoise(lazy_in, loads, device="cpu")
    assert isinstance(result, da.Array)
    assert result.chunks == lazy_in.chunks and result.dtype == np.float32
    expected = denoise(stack, conditioned, device="cpu")
    computed = result.compute(scheduler="threads")
    assert np.abs(computed - expected).max() <= 1e-3 * _span(expected)
    # One frame alone needs only that frame's statistics: a quick look at frame 2.
    np.testing.assert_allclose(result[2].compute(), computed[2], atol=1e-5)
    image2d = da.from_array(stack[0], chunks=(150, 130))
    flat = denoise(image2d, conditioned, device="cpu")
    assert flat.shape == stack[0].shape
    assert np.abs(flat.compute() - expected[0]).max() <= 1e-3 * _span(expected)


@pytest.mark.parametrize(
    ("shape", "chunks"),
    [((2, 64, 80), (1, 64, 80)), ((2, 64, 80), (1, 32, 40)), ((1, 64, 300), (1, 64, 100))],
    ids=["whole frames", "small chunks", "one short axis"],
)
def test_dask_frames_smaller_than_the_halo_are_denoised_as_numpy_does(conditioned, shape, chunks):
    # The halo is 96 px: dask's overlap refused these ("overlapping depth 96 is larger
    # than your array 64").
    stack = np.stack([_counts(shape[1:], seed=s) for s in range(shape[0])])
    result = denoise(da.from_array(stack, chunks=chunks), conditioned, device="cpu")
    assert result.chunks == da.from_array(stack, chunks=chunks).chunks
    expected = denoise(stack, conditioned, device="cpu")
    computed = result.compute(scheduler="threads")
    assert np.abs(computed - expected).max() <= 1e-3 * _span(expected)


def test_dask_input_errors_are_one_line_before_any_work(conditioned):
    with pytest.raises(ValueError, match="RGB"):
        denoise(da.zeros((3, 64, 64, 3), chunks=16), conditioned)
    with pytest.raises(ValueError, match="out is for numpy"):
        denoise(da.zeros((64, 64), chunks=32), conditioned, out=np.zeros((64, 64)))
    with pytest.raises(ValueError, match="overlap"):
        denoise(da.zeros((64, 64), chunks=32), conditioned, overlap=8)
