"""The Poisson–Gaussian noise estimator against images of known noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_pinned.noise.estimate import NoiseEstimate, estimate_noise, noise_variance_map
from napari_pinned.physics.simulate import simulate


def _ramp(shape=(256, 256), low=5.0, high=200.0) -> np.ndarray:
    """A smooth intensity ramp: many intensity levels, no structure the kernel sees."""
    return np.linspace(low, high, shape[1])[None, :].repeat(shape[0], axis=0)


def _record(expected, gain, offset, read, rng):
    counts = rng.poisson(expected) + rng.normal(0.0, read, expected.shape)
    return gain * counts + offset


def _sigma_tolerance(pixels: int) -> float:
    """Relative tolerance on σ: the residuals of a 3×3 kernel overlap, leaving about a
    quarter of the pixels independent; the variance of a variance estimate from n
    Gaussian samples is 2σ⁴/n, so σ has relative standard error 1/sqrt(2n).  Five
    standard errors, and a 1 % allowance for the trimming of outliers."""
    return 5.0 / math.sqrt(2.0 * pixels / 4.0) + 0.01


@pytest.mark.parametrize("sigma", [0.5, 3.0, 40.0])
def test_gaussian_noise_has_no_gain_and_its_sigma(sigma):
    rng = np.random.default_rng(0)
    image = _ramp() + rng.normal(0.0, sigma, (256, 256))
    est = estimate_noise(image)
    assert est.sigma == pytest.approx(sigma, rel=_sigma_tolerance(est.pixels))
    # A Gaussian image may fit a tiny positive slope by chance, never a Poisson-sized one.
    assert est.gain * est.median_intensity < 0.1 * sigma**2
    assert est.mean_counts is None
    assert "Gaussian" in est.describe()


@pytest.mark.parametrize(("gain", "offset", "read"), [(1.0, 0.0, 0.0), (7.0, 100.0, 0.5)])
def test_poisson_gaussian_gain_and_counts(gain, offset, read):
    rng = np.random.default_rng(1)
    expected = _ramp(low=2.0, high=60.0)
    image = _record(expected, gain, offset, read, rng)
    est = estimate_noise(image)
    # 16 intensity bins of ~3700 pixels: the slope of a line through them is known to a
    # few per cent; the tolerance allows five standard errors of that fit.
    assert est.gain == pytest.approx(gain, rel=0.06)
    true_sigma = gain * math.sqrt(np.median(expected) + read**2)
    assert est.sigma == pytest.approx(true_sigma, rel=_sigma_tolerance(est.pixels) + 0.01)
    assert est.mean_counts == pytest.approx(expected.mean() + read**2, rel=0.08)
    assert "e⁻/px" in est.describe()


def test_estimate_is_equivariant_to_gain_and_offset():
    rng = np.random.default_rng(2)
    image = _record(_ramp(low=1.0, high=30.0), 1.0, 0.0, 0.3, rng)
    a, b = 13.0, -400.0
    base, scaled = estimate_noise(image), estimate_noise(a * image + b)
    assert scaled.gain == pytest.approx(a * base.gain, rel=1e-6)
    assert scaled.sigma == pytest.approx(a * base.sigma, rel=1e-6)
    assert scaled.mean_counts == pytest.approx(base.mean_counts, rel=1e-6)


@pytest.mark.parametrize("pixel_size", [0.05, 0.1])
def test_lattice_structure_does_not_count_as_noise(pixel_size):
    """On an atomic-resolution image, the kernel must see the noise, not the columns."""
    clean = simulate("SrTiO3", shape=256, pixel_size=pixel_size, seed=0).image.astype(np.float64)
    expected = clean / clean.mean() * 20.0  # 20 e⁻/px on average
    rng = np.random.default_rng(3)
    est = estimate_noise(rng.poisson(expected).astype(np.float64))
    assert est.gain == pytest.approx(1.0, rel=0.1)
    assert est.mean_counts == pytest.approx(20.0, rel=0.1)
    clean_est = estimate_noise(expected)
    # A noise-free image: whatever the kernel sees of the columns is far below the noise.
    assert clean_est.sigma < 0.1 * est.sigma


def test_hot_pixels_do_not_change_the_estimate():
    rng = np.random.default_rng(4)
    image = _ramp() + rng.normal(0.0, 2.0, (256, 256))
    hot = image.copy()
    hot[rng.integers(0, 256, 20), rng.integers(0, 256, 20)] = 1e6
    assert estimate_noise(hot).sigma == pytest.approx(estimate_noise(image).sigma, rel=0.02)


def test_masked_pixels_are_ignored():
    rng = np.random.default_rng(5)
    image = _ramp() + rng.normal(0.0, 2.0, (256, 256))
    mask = np.zeros(image.shape, bool)
    mask[:, :128] = True
    image[:, :128] += rng.normal(0.0, 50.0, (256, 128))  # much noisier half, masked
    assert estimate_noise(image, mask=mask).sigma == pytest.approx(2.0, rel=0.05)


def test_constant_and_stack_inputs():
    flat = estimate_noise(np.full((64, 64), 7.0))
    assert flat.sigma == 0 and flat.describe() == "no measurable noise"
    rng = np.random.default_rng(6)
    stack = _ramp((64, 64))[None] + rng.normal(0.0, 1.5, (4, 64, 64))
    assert estimate_noise(stack).sigma == pytest.approx(1.5, rel=0.06)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="too small"):
        estimate_noise(np.zeros((4, 40)))
    with pytest.raises(ValueError, match="NaN"):
        estimate_noise(np.full((16, 16), np.nan))
    with pytest.raises(ValueError, match="mask shape"):
        estimate_noise(np.zeros((16, 16)), mask=np.zeros((8, 8), bool))


def test_scaled_and_times_transform_the_model():
    est = NoiseEstimate(gain=2.0, offset=3.0, median_intensity=10.0, mean_intensity=12.0, pixels=1)
    # x' = (x - 4) / 5: Var[x'] = (2 (4 + 5 x') + 3) / 25.
    scaled = est.scaled(5.0, 4.0)
    for x_prime in (0.0, 1.0, 3.0):
        assert scaled.variance(x_prime) == pytest.approx((2.0 * (4 + 5 * x_prime) + 3.0) / 25)
    assert est.times(2.0).sigma == pytest.approx(2.0 * est.sigma)
    local = noise_variance_map(np.full((8, 8), 10.0), est)
    np.testing.assert_allclose(local, 23.0)
