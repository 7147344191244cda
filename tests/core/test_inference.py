"""Tiled inference: seams, dtypes, stacks, progress and cancellation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from napari_pinned.inference import (
    DenoiseProgress,
    denoise,
    iter_denoise,
    tile_layout,
    tile_starts,
)
from napari_pinned.model import ModelBundle, ModelConfig, build_model


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    torch.manual_seed(0)
    config = ModelConfig.preset("tiny")
    model = build_model(config).eval()
    # Random weights give a non-trivial, strongly spatially varying function: a fair seam test.
    return ModelBundle(model=model, config=config, metadata={"name": "test"})


def _image(shape=(150, 170), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, shape).astype(np.float32)


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "align"),
    [
        (100, 32, 8, 1),
        (64, 64, 16, 1),
        (65, 64, 16, 1),
        (10, 32, 8, 1),
        (2112, 512, 64, 8),
        (2112, 1024, 64, 8),
        (584, 512, 64, 8),
        (4160, 512, 64, 16),
        (1000, 100, 30, 1),
    ],
)
def test_tile_layout_covers_the_axis_with_overlap_and_no_waste(length, tile, overlap, align):
    size, starts = tile_layout(length, tile, overlap, align)
    assert size <= tile and starts[0] == 0 and starts[-1] + size == length
    covered = np.zeros(length, int)
    for s in starts:
        covered[s : s + size] += 1
    assert covered.min() >= 1
    assert all(b - a <= size - overlap for a, b in itertools.pairwise(starts))
    if length % align == 0 and tile % align == 0:
        assert size % align == 0 and all(s % align == 0 for s in starts)
    # Fewest tiles: one tile fewer could not cover the axis with the required overlap.
    fewer = len(starts) - 1
    assert fewer == 0 or fewer * tile - (fewer - 1) * overlap < length
    assert tile_starts(length, tile, overlap) == tile_layout(length, tile, overlap)[1]


def test_tiled_equals_whole_image_everywhere(bundle):
    img = _image()
    whole = denoise(img, bundle, tile=512, overlap=0, device="cpu")
    tiled = denoise(img, bundle, tile=112, overlap=48, batch_size=3, device="cpu")
    scale = np.abs(whole).max()
    # No seams: the largest difference anywhere is a small fraction of the output range.
    assert np.abs(tiled - whole).max() < 0.005 * scale
    assert np.abs(tiled - whole).mean() < 0.0005 * scale


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_output_is_float32_in_the_input_scale(bundle, dtype):
    base = _image((64, 80)) / 255.0
    if dtype == np.uint16:
        img = (base * 3000 + 500).astype(np.uint16)
    elif dtype == np.uint8:
        img = (base * 255).astype(np.uint8)
    else:
        img = (base * 10 - 2).astype(dtype)
    out = denoise(img, bundle, tile=64, overlap=16, device="cpu")
    assert out.dtype == np.float32 and out.shape == img.shape
    # Same image at two intensity scales: outputs map onto each other by the same affine map.
    lo, hi = float(img.min()), float(img.max())
    if dtype != np.uint8:
        ref = denoise(
            ((img.astype(np.float64) - lo) / (hi - lo) * 255).astype(np.float32),
            bundle,
            tile=64,
            overlap=16,
            device="cpu",
        )
        np.testing.assert_allclose((out - lo) / (hi - lo) * 255, ref, atol=0.05 * 255)


def test_stack_frames_are_denoised_independently(bundle):
    stack = np.stack([_image((64, 64), s) for s in range(3)])
    out = denoise(stack, bundle, tile=64, overlap=16, device="cpu")
    assert out.shape == stack.shape and out.dtype == np.float32
    np.testing.assert_allclose(
        out[1], denoise(stack[1], bundle, tile=64, overlap=16, device="cpu"), rtol=1e-5, atol=1e-4
    )


def test_progress_reports_every_batch_and_ends_with_output(bundle):
    reports: list[DenoiseProgress] = []
    out = denoise(
        _image((100, 100)),
        bundle,
        tile=48,
        overlap=16,
        batch_size=2,
        device="cpu",
        progress=reports.append,
    )
    totals = {r.tiles_total for r in reports}
    assert len(totals) == 1
    assert [r.tiles_done for r in reports] == sorted(r.tiles_done for r in reports)
    assert reports[-1].tiles_done == reports[-1].tiles_total
    assert reports[-1].output is out
    assert all(r.output is None for r in reports[:-1])


def test_stopping_the_generator_cancels(bundle):
    gen = iter_denoise(np.stack([_image((64, 64))] * 4), bundle, tile=32, overlap=8, device="cpu")
    first = next(gen)
    assert first.output is None and first.tiles_done < first.tiles_total
    gen.close()  # the caller stops; nothing else runs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tile": 8}, "tile size"),
        ({"overlap": 40, "tile": 64}, "overlap"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_settings_are_rejected(bundle, kwargs, message):
    with pytest.raises(ValueError, match=message):
        denoise(_image((40, 40)), bundle, device="cpu", **kwargs)


def test_rgb_input_is_rejected(bundle):
    with pytest.raises(ValueError, match="RGB"):
        denoise(np.zeros((32, 32, 3), np.float32), bundle, device="cpu")
