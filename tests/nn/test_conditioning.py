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
    clean = simulate("SrTiO3", shape=128, pixel_size=pixel_size).image.astype(np.float64)
    expected = clean / clean.mean() * dose
    return np.random.default_rng(seed).poisson(expected).astype(np.float64)


@pytest.mark.parametrize(
    ("mode", "dtype", "low", "high"),
    [
        ("range", np.uint8, 0, 255),
        ("range", np.float32, 10.0, 200.0),
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
    image = rng.uniform(low, high, (40, 30)).astype(dtype)
    prepared = prepare(image, mode, conditioned=False)
    assert prepared.channels.shape == (1, 40, 30) and prepared.channels.dtype == np.float32
    restored = finish(prepared.channels[0], prepared, image.dtype)
    assert restored.dtype == np.float32
    # float32 model units: a few ulps of the largest value.
    tol = 8 * np.finfo(np.float32).eps * max(abs(low), abs(high))
    np.testing.assert_allclose(restored, image.astype(np.float64), atol=tol)


def test_range_keeps_the_paper_conventions():
    def bounds(image):
        state = normalization_range(image, "range")
        return state.low, state.high

    assert bounds(np.array([[0, 51, 255]], np.uint8)) == (0.0, 255.0)
    assert bounds(np.array([[10.0, 102.0]], np.float32)) == (0.0, 255.0)
    assert bounds(np.array([[0.1, 0.7]], np.float32)) == (0.0, 1.0)


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
