"""From image to network input and back: outliers, robust normalisation, noise map."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned.nn.conditioning import (
    NormState,
    find_outliers,
    finish,
    noise_map,
    normalization_range,
    prepare,
    repair_outliers,
)
from napari_pinned.noise.estimate import estimate_noise
from napari_pinned.physics.simulate import simulate


def _lattice_counts(dose: float, seed: int = 0, pixel_size: float = 0.1) -> np.ndarray:
    clean = simulate("SrTiO3", shape=128, pixel_size=pixel_size, seed=0).image.astype(np.float64)
    expected = clean / clean.mean() * dose
    return np.random.default_rng(seed).poisson(expected).astype(np.float64)


@pytest.mark.parametrize(
    ("mode", "dtype", "low", "high"),
    [
        ("range", np.uint8, 0, 255),
        ("range", np.float32, 0.0, 255.0),
        ("range", np.float32, 0.0, 1.0),
        *(
            (mode, dtype, low, high)
            for mode in ("percentile", "robust")
            for dtype, low, high in [
                (np.uint8, 0, 255),
                (np.uint16, 500, 4000),
                (np.float32, -3.0, 7.0),
                (np.float64, 1e3, 1.01e3),
            ]
        ),
    ],
)
def test_prepare_and_finish_round_trip(mode, dtype, low, high):
    rng = np.random.default_rng(0)
    # "range": clipped at both ends (~5 % each), as the paper's conventions are.
    reach = 0.1 * (high - low) if mode == "range" else 0.0
    image = np.clip(rng.uniform(low - reach, high + reach, (40, 30)), low, high).astype(dtype)
    prepared = prepare(image, mode, conditioned=False)
    assert prepared.channels.shape == (1, 40, 30) and prepared.channels.dtype == np.float32
    restored = finish(prepared.channels[0], prepared, image.dtype)
    assert restored.dtype == np.float32
    # float32 model units: a few ulps of the largest value.
    tol = 8 * np.finfo(np.float32).eps * max(abs(low), abs(high))
    np.testing.assert_allclose(restored, image.astype(np.float64), atol=tol)


def test_range_keeps_the_paper_conventions_for_clipped_frames_only():
    def bounds(image):
        state = normalization_range(image, "range")
        return state.low, state.high

    assert bounds(np.array([[0, 51, 255]], np.uint8)) == (0.0, 255.0)
    assert bounds(np.array([[0.0, 0.7, 1.0]], np.float32)) == (0.0, 1.0)
    # Inside a convention but not clipped to it: a dim frame's own (robust) range.
    for dtype in (np.uint8, np.uint16, np.float32):
        dim = np.arange(10, 110, dtype=dtype).reshape(10, 10)
        low, high = bounds(dim)
        assert (low, high) != (0.0, 255.0)
        assert bounds(dim.astype(np.float64) * 3.0) == pytest.approx((3 * low, 3 * high))


@pytest.mark.parametrize("mode", ["range", "robust"])
def test_a_hot_pixel_does_not_move_the_mapping(mode):
    rng = np.random.default_rng(1)
    image = rng.uniform(500, 4000, (64, 64)).astype(np.uint16)
    hot = image.copy()
    hot[10, 10] = 65535
    a, b = normalization_range(image, mode), normalization_range(hot, mode)
    # Percentiles of the 3×3 median: an isolated pixel does not enter them at all.
    assert b.low == pytest.approx(a.low, rel=1e-2) and b.high == pytest.approx(a.high, rel=1e-2)


def test_range_model_input_is_clipped_to_a_margin():
    image = np.full((32, 32), 1000.0)
    image[::2] = 3000.0
    image[5, 5] = 1e7
    units = prepare(image, "range", conditioned=False).channels[0]
    assert units.max() <= 1.1 + 1e-6 and units.min() >= -0.1 - 1e-6


def test_robust_mapping_is_equivariant_to_gain_and_offset():
    image = _lattice_counts(10.0)
    a = prepare(image, "robust", conditioned=True)
    b = prepare(23.0 * image - 7.5, "robust", conditioned=True)
    np.testing.assert_allclose(a.channels[0], b.channels[0], atol=1e-5)
    # The noise fit bins pixels at quantiles of discrete counts: rounding can move a
    # tie across a bin edge, which changes σ by well under 1 %.
    np.testing.assert_allclose(a.channels[1], b.channels[1], rtol=1e-2)


def test_constant_frames_pass_through():
    for value in (7.0, 255.0, 1e16):
        image = np.full((32, 32), value)
        prepared = prepare(image, "robust", conditioned=True)
        assert prepared.state.constant
        assert np.all(prepared.channels[1] == 0)
        np.testing.assert_array_equal(
            finish(np.zeros((32, 32)), prepared), image.astype(np.float32)
        )


def test_hot_and_dead_pixels_are_found_and_repaired():
    image = _lattice_counts(30.0, seed=2)
    spoiled = image.copy()
    spoiled[20, 30] = 10 * image.max()
    spoiled[70, 90] = 0.0 if image[70, 90] > 25 else spoiled[70, 90]
    noise = estimate_noise(spoiled)
    mask = find_outliers(spoiled, noise)
    assert mask[20, 30]
    assert mask.sum() <= 2
    repaired = repair_outliers(spoiled, mask)
    assert repaired[20, 30] < image.max()
    np.testing.assert_array_equal(repaired[~mask], spoiled[~mask])


@pytest.mark.parametrize("dose", [0.3, 1.0, 1000.0])
def test_no_false_outliers_in_poisson_images(dose):
    # Low doses have long Poisson tails; coarse pixels at high dose have sharp columns.
    for pixel_size in (0.05, 0.3):
        image = _lattice_counts(dose, seed=3, pixel_size=pixel_size)
        assert not find_outliers(image, estimate_noise(image)).any()


def test_noise_map_scales_with_strength_and_vanishes_without_noise():
    image = _lattice_counts(5.0, seed=4)
    prepared = prepare(image, "robust", conditioned=True)
    sigma = prepared.channels[1]
    assert sigma.min() > 0
    double = prepare(image, "robust", conditioned=True, strength=2.0).channels[1]
    np.testing.assert_allclose(double, 2 * sigma, rtol=1e-6)
    assert np.all(prepare(image, "robust", conditioned=True, strength=0.0).channels[1] == 0)
    clean = _lattice_counts(5.0)[None].repeat(2, 0)[0] * 0 + 50.0  # flat, no noise
    assert np.all(noise_map(clean, estimate_noise(clean)) == 0)


def test_noise_map_follows_the_local_intensity():
    # Poisson noise: the bright columns are noisier than the dark background.
    image = _lattice_counts(20.0, seed=5)
    prepared = prepare(image, "robust", conditioned=True)
    units, sigma = prepared.channels
    bright = units > np.percentile(units, 95)
    dark = units < np.percentile(units, 20)
    assert sigma[bright].mean() > 1.5 * sigma[dark].mean()


def test_unsigned_outputs_are_never_negative():
    prepared = prepare(np.arange(64, dtype=np.uint16).reshape(8, 8), "robust", conditioned=False)
    out = finish(np.full((8, 8), -5.0), prepared, np.dtype(np.uint16))
    assert out.min() == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="normalization"):
        normalization_range(np.zeros((4, 4)), "minmax")
    with pytest.raises(ValueError, match="strength"):
        prepare(np.zeros((16, 16)), "robust", conditioned=True, strength=-1.0)
    assert isinstance(normalization_range(np.zeros((4, 4)), "robust"), NormState)


def test_a_range_model_gives_every_representation_of_the_data_its_own_scale(random_bundle):
    """Issue 21: dim uint16 counts (all inside [0, 255]) took the paper's fixed 0–255
    map while the same data in other units took percentiles: outputs 2.5× apart.  Only
    frames clipped at both ends of a convention (8-bit recordings, CDN) keep it."""
    from napari_pinned.denoising.denoiser import denoise
    from napari_pinned.settings import ModelConfig

    bundle = random_bundle(ModelConfig.preset("tiny", normalization="range"))
    counts = _lattice_counts(10.0, seed=6)[:96, :96]
    assert 0 < counts.max() <= 255
    counts16 = counts.astype(np.uint16)
    out16 = denoise(counts16, bundle, device="cpu")
    span = float(np.ptp(out16))
    assert span > 0
    # (data, units per count, offset): the same counts as float32, in electrons,
    # normalised to [0, 1] and dark-subtracted.
    for data, gain, offset in (
        (counts, 1.0, 0.0),
        (counts * 1.7, 1.7, 0.0),
        (counts / counts.max(), 1.0 / counts.max(), 0.0),
        (counts - 20.0, 1.0, -20.0),
    ):
        out = denoise(data.astype(np.float32), bundle, device="cpu")
        in_counts = np.maximum((out.astype(np.float64) - offset) / gain, 0.0)  # uint16: ≥ 0
        np.testing.assert_allclose(in_counts, out16, atol=1e-4 * span, err_msg=f"{gain}")


def test_range_keeps_the_paper_convention_for_clipped_frames():
    from napari_pinned.noise.synthesis import add_cdn_noise

    clean = _lattice_counts(1000.0)
    noisy = add_cdn_noise(clean / clean.max() * 255.0, 1, seed=0)
    assert normalization_range(noisy, "range") == NormState("range", 0.0, 255.0)
    assert normalization_range(noisy / 255.0, "range") == NormState("range", 0.0, 1.0)
    assert normalization_range(noisy.astype(np.uint8), "range") == NormState("range", 0.0, 255.0)


def _spoil(image: np.ndarray, where: tuple, value: float) -> tuple[np.ndarray, np.ndarray]:
    spoiled, mask = image.copy(), np.zeros(image.shape, bool)
    mask[where] = True
    spoiled[mask] = value
    return spoiled, mask


@pytest.mark.parametrize(
    "where",
    [
        np.s_[40, 50:52],  # a pair
        np.s_[0, 70],  # on the edge
        np.s_[-1, -1],  # in a corner
        np.s_[90:93, 20:23],  # a 3×3 block
        np.s_[:, 77],  # a hot column
        np.s_[33, 10:30],  # part of a row
    ],
    ids=["pair", "edge", "corner", "3×3", "column", "row"],
)
def test_hot_pixels_in_groups_and_on_the_edge_are_found_and_repaired(where):
    image = _lattice_counts(30.0, seed=2)
    spoiled, defect = _spoil(image, where, 1000.0 * image.max())
    mask = find_outliers(spoiled, estimate_noise(spoiled))
    np.testing.assert_array_equal(mask, defect)
    repaired = repair_outliers(spoiled, mask)
    assert repaired.max() <= image.max()


def test_saturated_pixels_are_found_and_left_out_of_the_noise_fit():
    image = _lattice_counts(30.0, seed=2)
    spoiled = image.copy()
    saturated = np.random.default_rng(0).random(image.shape) < 0.05
    spoiled[saturated] = 65535.0  # a 16-bit ceiling, scattered as on a damaged detector
    prepared = prepare(spoiled, "robust", conditioned=True)
    np.testing.assert_array_equal(prepared.outliers, saturated)
    clean_fit = estimate_noise(image)
    assert prepared.noise.sigma == pytest.approx(clean_fit.sigma, rel=0.05)


@pytest.mark.parametrize("level", [0.5, 1, 3, 5])
def test_cdn_static_noise_is_never_repaired(level):
    # 50–90 % of the pixels are replaced by uniform values and many clipped at 0 and 255:
    # outliers by design, which the cdn model was trained on.
    from napari_pinned.noise.synthesis import add_cdn_noise

    clean = _lattice_counts(1000.0)
    noisy = add_cdn_noise(clean / clean.max() * 255.0, level, seed=int(level * 10))
    for mode, conditioned in (("range", False), ("robust", True)):
        assert not prepare(noisy, mode, conditioned=conditioned).outliers.any()


@pytest.mark.parametrize("kind", ["hot groups", "scattered saturation"])
def test_a_region_is_repaired_as_in_the_whole_frame(kind):
    from napari_pinned.nn.conditioning import REGION_CONTEXT, frame_statistics, prepare_region

    image = _lattice_counts(30.0, seed=2)
    spoiled = image.copy()
    if kind == "hot groups":
        for where in (np.s_[40, 50:52], np.s_[90:93, 20:23], np.s_[:, 77], np.s_[0, 70]):
            spoiled[where] = 1000.0 * image.max()
    else:  # 3 % of the pixels at the frame's own maximum
        spoiled[np.random.default_rng(1).random(image.shape) < 0.03] = image.max()
    whole = prepare(spoiled, "robust", conditioned=True)
    stats = frame_statistics(spoiled, "robust", conditioned=True)
    top, left, right = 30, 60, 110  # the region crosses the column, block and edge pixel
    region = prepare_region(spoiled[top:, left:right], stats)
    c = REGION_CONTEXT  # the bottom edge is the frame's; the others are inner edges
    inner = np.s_[c:, c : right - left - c]
    np.testing.assert_array_equal(region.outliers[inner], whole.outliers[top:, left:right][inner])
    assert region.outliers[inner].any()
    np.testing.assert_allclose(
        region.channels[(slice(None), *inner)],
        whole.channels[:, top:, left:right][(slice(None), *inner)],
        rtol=1e-6,
        atol=1e-6,
    )
