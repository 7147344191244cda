"""Tiled inference: seams, dtypes, stacks, progress and cancellation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from napari_pinned._util import memory
from napari_pinned.denoising.denoiser import DenoiseProgress, denoise, iter_denoise
from napari_pinned.denoising.tiling import tile_layout, tile_starts
from napari_pinned.nn.network import ModelBundle, build_model
from napari_pinned.settings import DEFAULT_TILE, FrameOptions, ModelConfig


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
    whole = denoise(img, bundle, tile=512, device="cpu")
    tiled = denoise(img, bundle, tile=112, overlap=48, batch_size=3, device="cpu")
    scale = np.abs(whole).max()
    # No seams: the largest difference anywhere is a small fraction of the output range.
    assert np.abs(tiled - whole).max() < 0.005 * scale
    assert np.abs(tiled - whole).mean() < 0.0005 * scale


@pytest.fixture(scope="module")
def robust_bundle() -> ModelBundle:
    torch.manual_seed(1)
    config = ModelConfig.preset("tiny", normalization="robust")
    return ModelBundle(model=build_model(config).eval(), config=config)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_output_is_float32_in_the_input_scale(robust_bundle, dtype):
    base = _image((64, 80)) / 255.0
    if dtype == np.uint16:
        img = (base * 3000 + 500).astype(np.uint16)
    elif dtype == np.uint8:
        img = (base * 255).astype(np.uint8)
    else:
        img = (base * 10 - 2).astype(dtype)
    out = denoise(img, robust_bundle, tile=64, device="cpu")
    assert out.dtype == np.float32 and out.shape == img.shape
    # Robust normalisation is affine-equivariant: the same image at another gain and
    # offset gives the same output at that gain and offset.
    gain, offset = 37.0, -1234.5
    scaled = denoise(img.astype(np.float64) * gain + offset, robust_bundle, tile=64)
    expected = (scaled - offset) / gain
    if np.issubdtype(dtype, np.unsignedinteger):
        # Raw counts come back as counts: never negative.
        assert out.min() >= 0
        expected = np.maximum(expected, 0)
    span = float(np.percentile(out, 99) - np.percentile(out, 1))
    np.testing.assert_allclose(expected, out, atol=1e-4 * span)


def test_stack_frames_are_denoised_independently(bundle):
    stack = np.stack([_image((64, 64), s) for s in range(3)])
    out = denoise(stack, bundle, tile=64, device="cpu")
    assert out.shape == stack.shape and out.dtype == np.float32
    np.testing.assert_allclose(
        out[1], denoise(stack[1], bundle, tile=64, device="cpu"), rtol=1e-5, atol=1e-4
    )


def test_progress_reports_every_batch_and_ends_with_output(bundle):
    reports: list[DenoiseProgress] = []
    out = denoise(
        _image((100, 100)),
        bundle,
        tile=48,
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
    stack = np.stack([_image((64, 64))] * 4)
    gen = iter_denoise(stack, bundle, FrameOptions(tile=32, device="cpu"))
    first = next(gen)
    assert first.output is None and first.tiles_done < first.tiles_total
    gen.close()  # the caller stops; nothing else runs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tile": 8}, "tile size"),
        ({"overlap": 20, "tile": 64}, "overlap"),  # below the model's 36 px
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_settings_are_rejected(bundle, kwargs, message):
    with pytest.raises(ValueError, match=message):
        denoise(_image((40, 40)), bundle, device="cpu", **kwargs)


def test_rgb_input_is_rejected(bundle):
    with pytest.raises(ValueError, match="RGB"):
        denoise(np.zeros((32, 32, 3), np.float32), bundle, device="cpu")


class _UnreadStack:
    """A lazily read stack (zarr-like) whose frames must not be read."""

    shape = (20, 1024, 1024)
    dtype = np.dtype(np.uint16)

    def __getitem__(self, index):
        raise AssertionError("a frame was read")


def test_a_request_beyond_the_available_memory_is_refused_before_any_work(monkeypatch):
    shape = _UnreadStack.shape
    streamed = memory.denoise_bytes(shape, DEFAULT_TILE, in_memory=False)
    # Enough to stream the stack frame by frame, not to hold it and its output.
    monkeypatch.setattr(memory, "available_bytes", lambda: streamed + 1)
    reports = []
    with pytest.raises(ValueError, match=r"^denoising the 20×1024×1024 px image needs about") as e:
        # The model is not even looked for: the refusal comes first.
        denoise(np.zeros(shape, np.uint8), "no-such-model.pt", progress=reports.append)
    assert "\n" not in str(e.value) and reports == []
    # Streamed from a lazy array into ``out``, it fits: the model is looked for next.
    with pytest.raises(ValueError) as e:
        denoise(_UnreadStack(), "no-such-model.pt", out=np.empty((0,)))
    assert "memory" not in str(e.value)


# -- noise-conditioned models ------------------------------------------------------------


@pytest.fixture(scope="module")
def conditioned_bundle(tiny_conditioned) -> ModelBundle:
    """A conditioned network with random (non-zero) weights everywhere."""
    return tiny_conditioned(2, name="conditioned")


def _counts(dose: float, shape=(96, 112), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    lattice = 2.2 + np.cos(2 * np.pi * x / 9.0) + np.cos(2 * np.pi * y / 9.0)
    return rng.poisson(lattice / lattice.mean() * dose).astype(np.uint16)


def test_conditioned_model_is_equivariant_to_gain_and_offset(conditioned_bundle):
    counts = _counts(10.0)
    out = denoise(counts.astype(np.float64), conditioned_bundle, device="cpu")
    gain, offset = 7.5, 200.0
    scaled = denoise(counts * gain + offset, conditioned_bundle, device="cpu")
    span = float(np.percentile(out, 99) - np.percentile(out, 1))
    assert np.abs((scaled - offset) / gain - out).max() < 1e-3 * span


def test_conditioned_model_leaves_clean_and_constant_images_alone(conditioned_bundle):
    y, x = np.mgrid[0:64, 0:64]
    clean = (100 + 50 * np.cos(2 * np.pi * x / 9.0) * np.cos(2 * np.pi * y / 7.0)).astype(
        np.float32
    )
    out = denoise(clean, conditioned_bundle, device="cpu")
    # A noise-free image: the measured noise is tiny, and the network corrects by σ·f.
    assert np.abs(out - clean).max() < 0.01 * np.ptp(clean)
    for value, dtype in ((7, np.uint8), (255, np.uint8), (1234.5, np.float64)):
        flat = np.full((40, 40), value, dtype)
        np.testing.assert_array_equal(denoise(flat, conditioned_bundle, device="cpu"), flat)
    assert np.all(denoise(np.zeros((32, 32), np.uint16), conditioned_bundle) == 0)


def test_strength_zero_returns_the_input_and_strength_changes_the_output(conditioned_bundle):
    counts = _counts(5.0, seed=1).astype(np.float32)
    np.testing.assert_allclose(denoise(counts, conditioned_bundle, strength=0.0), counts, atol=1e-3)
    weak = denoise(counts, conditioned_bundle, strength=0.5)
    strong = denoise(counts, conditioned_bundle, strength=2.0)
    assert not np.allclose(weak, strong)
    with pytest.raises(ValueError, match="strength"):
        denoise(counts, conditioned_bundle, strength=-1)


def test_one_hot_pixel_changes_nothing_elsewhere(conditioned_bundle):
    counts = _counts(20.0, shape=(128, 128), seed=2)
    out = denoise(counts, conditioned_bundle, device="cpu")
    spoiled = counts.copy()
    spoiled[40, 50] = 65535
    report = list(iter_denoise(spoiled, conditioned_bundle, FrameOptions(device="cpu")))[-1]
    assert report.repaired == 1
    assert report.noise[0] is not None and report.noise[0].mean_counts > 5
    away = np.ones(counts.shape, bool)
    away[38:43, 48:53] = False
    span = float(np.ptp(out))
    # The hot pixel is repaired before normalising: the rest of the image is unchanged.
    assert np.abs(report.output[away] - out[away]).max() < 1e-3 * span
    assert report.output[40, 50] < 2 * counts.max()
    # Raw counts in, non-negative counts out.
    assert report.output.min() >= 0


def test_a_hot_pixel_is_repaired_for_models_without_a_noise_map(bundle):
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:96, 0:96]
    clean = 120 + 80 * np.cos(2 * np.pi * x / 9.0) * np.cos(2 * np.pi * y / 9.0)
    image = (clean + rng.normal(0, 5, clean.shape)).astype(np.float32)
    spoiled = image.copy()
    spoiled[30, 40] = 2550.0  # ten times the range
    report = list(iter_denoise(spoiled, bundle, FrameOptions(device="cpu")))[-1]
    assert report.repaired == 1 and report.noise == (None,)
    # The repaired pixel takes its neighbours' median, and the output is that of the
    # image with that value there (the network's reach, 33 px, spreads its change).
    fixed = image.copy()
    fixed[30, 40] = np.median(np.delete(image[29:32, 39:42].ravel(), 4))
    out = denoise(fixed, bundle, device="cpu")
    np.testing.assert_allclose(report.output, out, atol=1e-5 * np.ptp(out))
    plain = denoise(image, bundle, device="cpu")
    assert abs(report.output[30, 40] - plain[30, 40]) < 0.2 * np.ptp(out)
