"""The error of a denoiser estimated without the truth (SURE with the noise's spectrum)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_pinned.noise.scanning import apply_afterglow
from napari_pinned.quality.risk import estimated_risks, measure_scan_noise, noise_sample


def _counts(lattice_image, dose: float, seed: int, afterglow: float = 0.0, axis: int = 1):
    """Poisson counts of a 512² lattice at ``dose`` e⁻/px, optionally smeared by an
    afterglow along ``axis``; returns (noisy, truth) with the truth smeared alike."""
    rng = np.random.default_rng(seed)
    clean = lattice_image(512, period=9.0, seed=seed).astype(np.float64)
    truth = clean / clean.mean() * dose
    noisy = rng.poisson(truth).astype(np.float64)
    if afterglow:
        smear = lambda x: np.swapaxes(apply_afterglow(np.swapaxes(x, 1, axis), afterglow), 1, axis)  # noqa: E731
        noisy, truth = smear(noisy), smear(truth)
    return noisy, truth


@pytest.mark.parametrize(
    ("afterglow", "axis"), [(0.0, 1), (1.5, 1), (1.5, 0)], ids=["white", "along-x", "along-y"]
)
def test_the_pixel_variance_is_read_from_the_no_signal_band(lattice_image, afterglow, axis):
    """Within 5 %: each band's mean averages some 50,000 bins (about 20,000 independent
    ones through the Hann window), a standard error under 1 %; the rest is the lattice's
    own leakage."""
    noisy, truth = _counts(lattice_image, 20.0, seed=1, afterglow=afterglow, axis=axis)
    measured = measure_scan_noise(noisy)
    true = float(np.var(noisy - truth))
    assert measured.variance == pytest.approx(true, rel=0.05)
    spectrum = measured.spectrum_x if axis == 1 else measured.spectrum_y
    other = measured.spectrum_y if axis == 1 else measured.spectrum_x
    if afterglow:
        # An afterglow of τ = 1.5 px (a = 0.51) leaves (1 − a)/(1 + a) = 0.32 of the mean
        # power at the Nyquist frequency along its axis; the other axis stays white.
        assert spectrum[len(spectrum) // 2] == pytest.approx(0.32, abs=0.1)
        assert other[len(other) // 2] == pytest.approx(1.0, abs=0.2)


def test_a_noise_sample_has_unit_variance_and_the_measured_correlation(lattice_image):
    noisy, truth = _counts(lattice_image, 20.0, seed=2, afterglow=1.5)
    noise = measure_scan_noise(noisy)
    sample = noise_sample(noise, np.random.default_rng(0), (256, 384))
    residual = (noisy - truth) / np.sqrt(np.var(noisy - truth))

    def lag1(x: np.ndarray, axis: int) -> float:
        a, b = np.moveaxis(x, axis, 0)[1:], np.moveaxis(x, axis, 0)[:-1]
        return float(np.mean(a * b) / np.mean(x * x))

    # 98,304 values: the variance's standard error is about 0.5 %, the correlations'
    # about 0.003 (the sample's own correlation widens both a little).
    assert np.var(sample) == pytest.approx(1.0, abs=0.03)
    assert lag1(sample, 1) == pytest.approx(lag1(residual, 1), abs=0.05)
    assert abs(lag1(sample, 0)) < 0.03


def test_the_risk_estimate_is_the_true_error_of_a_linear_filter_on_correlated_noise():
    """Gaussian noise smeared along x, two Gaussian filters: each estimate lies within
    a few standard errors of the true mean squared error, and the ranking holds."""
    rng = np.random.default_rng(3)
    y_axis, x_axis = np.mgrid[0:384, 0:384]
    truth = 50 + 20 * np.cos(2 * np.pi * x_axis / 11.0) * np.cos(2 * np.pi * y_axis / 13.0)
    noise = ndimage.correlate1d(rng.normal(0, 4.0, truth.shape), [0.25, 0.5, 0.25], axis=1)
    noisy = truth + noise
    spectra = measure_scan_noise(noisy)
    variance = np.full(noisy.shape, spectra.variance)
    filters = [lambda z, s=s: ndimage.gaussian_filter(z, s, mode="wrap") for s in (0.7, 2.0)]
    estimate = estimated_risks(filters, noisy, variance, spectra, probes=4)
    true = [float(np.mean((f(noisy) - truth) ** 2)) for f in filters]
    for got, want, error in zip(estimate.risks, true, estimate.standard_errors, strict=True):
        # The variance term carries the spectral estimate's error (≈ 1 % of 6).
        assert got == pytest.approx(want, abs=4 * error + 0.05 * spectra.variance)
    assert (estimate.risks[1] < estimate.risks[0]) == (true[1] < true[0])


def test_scoring_only_some_pixels_and_bad_frames():
    rng = np.random.default_rng(4)
    noisy = rng.normal(10.0, 1.0, (64, 64))
    spectra = measure_scan_noise(noisy)
    scored = np.zeros(noisy.shape, bool)
    scored[40:] = True
    identity = estimated_risks([lambda z: z], noisy, np.ones(noisy.shape), spectra, scored=scored)
    # The identity's error is the noise: SURE says 0 − σ² + 2σ²·mean(probe²) ≈ σ², the
    # probes' mean square over 3 × 1,536 scored pixels within ±0.1 (5 standard errors).
    assert identity.risks[0] == pytest.approx(1.0, abs=0.1)
    with pytest.raises(ValueError, match="2D frame"):
        measure_scan_noise(np.zeros((8, 64)))


@pytest.mark.parametrize("shape", [(64, 64), (65, 63), (100, 37), (33, 34)])
def test_the_band_profiles_from_the_half_spectrum_are_the_full_spectrums(shape):
    """The half spectrum of a real frame gives the same profiles as the full complex
    transform did, to rounding, on even and odd sides."""
    from napari_pinned.quality.risk import NO_SIGNAL_FREQUENCY, _band_profiles
    from napari_pinned.quality.spectra import hann_window

    rng = np.random.default_rng(3)
    frame = rng.random(shape) * rng.random(shape[1])
    window = hann_window(shape)
    power = np.abs(np.fft.fft2((frame - frame.mean()) * window)) ** 2 / np.sum(window**2)
    high_y = np.abs(np.fft.fftfreq(shape[0])) > NO_SIGNAL_FREQUENCY
    high_x = np.abs(np.fft.fftfreq(shape[1])) > NO_SIGNAL_FREQUENCY
    along_x, along_y = _band_profiles(frame)
    assert along_x == pytest.approx(power[high_y].mean(axis=0), rel=1e-12)
    assert along_y == pytest.approx(power[:, high_x].mean(axis=1), rel=1e-12)
