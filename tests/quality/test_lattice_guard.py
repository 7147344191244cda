"""The lattice guard: strong reflections the denoiser weakened come back, nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_pinned.physics.simulate import simulate
from napari_pinned.quality.faithfulness import faithfulness
from napari_pinned.quality.lattice_guard import keep_lattice
from napari_pinned.quality.metrics import psnr


@pytest.fixture(scope="module")
def recording():
    clean = simulate("SrTiO3", shape=256, pixel_size=0.1, seed=3).image.astype(np.float64)
    truth = clean / clean.mean() * 20.0
    noisy = np.random.default_rng(0).poisson(truth).astype(np.float32)
    return noisy, truth


def test_a_blurred_lattice_gets_its_reflections_back(recording):
    noisy, truth = recording
    blurred = ndimage.gaussian_filter(noisy, 2.5)
    assert not faithfulness(noisy, blurred).faithful
    guarded = keep_lattice(noisy, blurred)
    assert faithfulness(noisy, guarded).faithful
    span = float(np.ptp(truth))
    assert psnr(guarded, truth, data_range=span) > psnr(blurred, truth, data_range=span)


def test_a_good_output_stays_good(recording):
    noisy, truth = recording
    guarded = keep_lattice(noisy, truth)
    span = float(np.ptp(truth))
    # A residual of pure noise is given back only at the strong reflections' bins (a
    # few per cent of all) and only where it happens to stand above its own floor,
    # Wiener-weighted: a few per cent of the noise power at most.
    assert psnr(guarded, truth, data_range=span) > psnr(noisy, truth, data_range=span) + 10
    added = np.mean((guarded - truth) ** 2) / np.mean((noisy - truth) ** 2)
    assert added < 0.04


def test_no_lattice_nothing_to_keep():
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:128, 0:128]
    smooth = 50 + 20 * np.sin(x / 40.0) + 10 * np.cos(y / 30.0)
    noisy = rng.poisson(smooth).astype(np.float32)
    out = ndimage.gaussian_filter(noisy, 3).astype(np.float32)
    guarded = keep_lattice(noisy, out)
    assert np.abs(guarded - out).max() < 0.02 * np.ptp(smooth)


def test_gain_and_offset_change_nothing(recording):
    noisy, _ = recording
    out = ndimage.gaussian_filter(noisy, 2.0)
    a, b = 13.0, -250.0
    base = keep_lattice(noisy, out)
    scaled = keep_lattice(a * noisy + b, a * out + b)
    np.testing.assert_allclose((scaled - b) / a, base, atol=1e-3 * np.ptp(base))


def test_shapes_must_match():
    with pytest.raises(ValueError, match="one shape"):
        keep_lattice(np.zeros((64, 64)), np.zeros((64, 32)))
    small = np.ones((8, 8), np.float32)
    np.testing.assert_array_equal(keep_lattice(small, small * 2), small * 2)


def test_an_invented_texture_is_taken_back(recording):
    noisy, truth = recording
    # A checkerboard-like texture at a period the image does not have, as a denoiser
    # that paints detail finer than the probe would add.
    yy, xx = np.mgrid[: truth.shape[0], : truth.shape[1]]
    texture = sum(
        0.2 * float(np.std(truth)) * np.cos(2 * np.pi * (yy / py + xx / px))
        for py, px in ((2.9, 3.7), (-3.3, 2.7), (5.1, -2.6))
    )
    invented = (truth + texture).astype(np.float32)
    assert faithfulness(noisy, invented).n_invented >= 3
    guarded = keep_lattice(noisy, invented)
    assert faithfulness(noisy, guarded).n_invented == 0
    # Whatever stays of the texture is below the noise the input has there.
    left = np.std(guarded - truth)
    assert left < 0.5 * np.std(texture)


@pytest.mark.parametrize("gain", [1e-20, 1e20, 3e30])
def test_extreme_scales_change_nothing(recording, gain):
    # Squared float32 amplitudes overflow beyond ~1e19 (and underflow below ~1e-19): the
    # guard works on the frame normalised by a power of two, so any gain gives the same
    # result up to float precision (issue 21: 2.1 % off equivariance at 1e20).
    noisy, _ = recording
    out = ndimage.gaussian_filter(noisy, 2.0)
    base = keep_lattice(noisy, out)
    scaled = keep_lattice(gain * noisy.astype(np.float64), gain * out.astype(np.float64))
    assert np.all(np.isfinite(scaled))
    np.testing.assert_allclose(scaled / gain, base, rtol=0, atol=1e-5 * np.ptp(base))


def test_the_guard_is_not_for_models_trained_on_cdn_on_cdn_like_frames():
    from napari_pinned.noise.synthesis import add_cdn_noise, add_dose_noise
    from napari_pinned.physics.simulate import simulate
    from napari_pinned.quality.lattice_guard import guard_applies

    clean = simulate("SrTiO3", shape=96, pixel_size=0.1, seed=3).image
    counts = add_dose_noise(clean, 3000.0, pixel_size=0.1, seed=4)
    for level in (0.5, 1, 5):  # CDN clips: many pixels at both ends of the range
        cdn = add_cdn_noise(clean * 1e3, level, seed=5)
        assert not guard_applies("cdn", cdn) and not guard_applies("mix", cdn)
    # A recording (not clipped at both ends) is guarded whatever the model.
    assert guard_applies("cdn", counts) and guard_applies("mix", counts)
    assert not guard_applies("cdn")  # no frame: not
    for noise in ("stem", "dose", "paired", None, ["odd"]):
        assert guard_applies(noise) and guard_applies(noise, add_cdn_noise(clean, 1, seed=5))


def test_the_guard_restores_the_lattice_only_where_the_input_shows_it():
    """Issue 22: the guard gave back a crystal's reflections as plane waves over the whole
    frame, painting stripes into the vacuum beside it (3–3.7 counts rms against a noise
    of 1.4).  Now the crystal is restored and the vacuum left alone."""
    from scipy import ndimage

    from napari_pinned.physics.simulate import simulate

    n = 256
    clean = simulate("SrTiO3", shape=n, pixel_size=0.1, seed=3).image.astype(np.float64)
    truth = clean / clean.mean() * 20.0
    truth[:, : n // 2] = 2.0  # vacuum: σ = √2 counts
    noisy = np.random.default_rng(0).poisson(truth).astype(np.float32)
    erased = ndimage.gaussian_filter(truth, 4).astype(np.float32)  # lattice blurred away
    guarded = keep_lattice(noisy, erased).astype(np.float64)
    vacuum = (slice(None), slice(0, n // 2 - 24))
    assert np.std(guarded[vacuum] - erased[vacuum]) < 0.1 * np.sqrt(2.0)
    crystal = (slice(None), slice(n // 2 + 16, n))
    before = np.sqrt(np.mean((erased[crystal] - truth[crystal]) ** 2))
    after = np.sqrt(np.mean((guarded[crystal] - truth[crystal]) ** 2))
    assert after < 0.3 * before


def _striped(seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A recording with a pattern the same in every scan line (0.3 of the noise RMS),
    and its truth (which has no pattern)."""
    from napari_pinned.noise.synthesis import StemRecording, record_stem_image

    clean = simulate("SrTiO3", shape=384, pixel_size=0.1, rotation=23.0, seed=3).image
    recording = StemRecording(10.0, read_noise=0.5, line_pattern=0.3 * np.sqrt(10.25))
    noisy, truth = record_stem_image(clean, recording, np.random.default_rng(seed))
    return noisy.astype(np.float64), truth.astype(np.float64)


def _line_power(image: np.ndarray) -> float:
    """Power of the line mean at and beyond 0.25 cycles/px."""
    line = image.mean(axis=0) - image.mean()
    power = np.abs(np.fft.rfft(line)) ** 2
    return float(power[np.fft.rfftfreq(line.size) >= 0.25].sum())


def test_interference_the_same_in_every_line_is_not_given_back():
    # Such stripes stand far above the noise in the spectrum, as a lattice's reflections
    # do; a denoiser that removed them (here: the truth itself) keeps them removed.
    noisy, truth = _striped()
    assert _line_power(noisy) > 30 * _line_power(truth)
    guarded = keep_lattice(noisy, truth)
    assert _line_power(guarded) < 2 * _line_power(truth) + 0.02 * _line_power(noisy)
