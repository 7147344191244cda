"""A scanning detector's own noise: each term's statistics, the expected image (the
denoiser's target) keeping what was recorded, and the dose read through the afterglow."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_pinned.nn.conditioning import measure_noise
from napari_pinned.noise.readout import read_noise
from napari_pinned.noise.scanning import (
    afterglow_decay,
    afterglow_response,
    apply_afterglow,
    dropped_rows,
    line_gains,
    line_pattern,
    resample_frame,
)
from napari_pinned.noise.synthesis import StemRecording, draw_recording, record_stem_image
from napari_pinned.physics.simulate import simulate
from napari_pinned.settings import SCANNING_DETECTOR, StemNoiseRanges

SHAPE = (512, 512)
N = SHAPE[0] * SHAPE[1]


@pytest.fixture(scope="module")
def lattice() -> np.ndarray:
    return simulate("SrTiO3", shape=(256, 256), pixel_size=0.1, seed=0).image.astype(np.float64)


def _flat(dose: float, recording: StemRecording, seed: int = 0):
    rng = np.random.default_rng(seed)
    return record_stem_image(np.ones(SHAPE, np.float32), recording, rng)


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0, 3.0])
def test_the_afterglow_response_is_a_causal_exponential_that_keeps_the_mean(tau):
    h = afterglow_response(tau)
    a = afterglow_decay(tau)
    assert a == pytest.approx(math.exp(-1.0 / tau))
    assert h.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(h[1:] / h[:-1], a)
    # Its centroid, the shift it gives the signal along x: a / (1 − a) px.
    assert np.sum(np.arange(h.size) * h) == pytest.approx(a / (1 - a), rel=1e-4)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_afterglow_correlates_poisson_noise_as_its_response_says(tau):
    rng = np.random.default_rng(1)
    counts = rng.poisson(20.0, SHAPE).astype(np.float32)
    smeared = apply_afterglow(counts, tau)[:, 32:]  # past the rows' start
    a = afterglow_decay(tau)
    n = smeared.size
    # Mean kept; the per-pixel variance falls to Σh² = (1 − a)/(1 + a) of 20; the lag-1
    # correlation along x is a, along y 0.  Tolerances: 5 standard errors of each
    # estimate, with the correlation's effective sample size n·(1 − a)/(1 + a).
    n_eff = n * (1 - a) / (1 + a)
    assert smeared.mean() == pytest.approx(20.0, abs=5 * math.sqrt(20.0 / n_eff))
    assert smeared.var() == pytest.approx(20.0 * (1 - a) / (1 + a), rel=5 * math.sqrt(2 / n_eff))
    centred = smeared - smeared.mean()
    along_x = np.mean(centred[:, 1:] * centred[:, :-1]) / centred.var()
    along_y = np.mean(centred[1:] * centred[:-1]) / centred.var()
    assert along_x == pytest.approx(a, abs=5 / math.sqrt(n_eff))
    assert along_y == pytest.approx(0.0, abs=5 / math.sqrt(n))


def test_afterglow_leaves_a_uniform_row_uniform():
    row = np.full((3, 64), 7.0, np.float32)
    np.testing.assert_allclose(apply_afterglow(row, 2.5), row, rtol=1e-6)
    with pytest.raises(ValueError, match="afterglow"):
        afterglow_decay(-1.0)


def test_line_gains_spread_as_asked():
    spread = 0.04
    gains = line_gains((20000, 8), spread, np.random.default_rng(2))
    assert gains.shape == (20000, 1)
    # The sample standard deviation's standard error is σ/√(2n).
    assert gains.std() == pytest.approx(spread, abs=5 * spread / math.sqrt(2 * 20000))
    assert gains.mean() == pytest.approx(1.0, abs=5 * spread / math.sqrt(20000))


def test_dropped_rows_are_the_share_asked_and_at_least_one():
    rng = np.random.default_rng(3)
    assert dropped_rows(512, 0.01, rng).size == 5
    assert dropped_rows(512, 1e-6, rng).size == 1
    assert dropped_rows(512, 0.0, rng).size == 0
    rows = dropped_rows(100, 0.05, rng)
    assert np.unique(rows).size == rows.size


def test_recorded_afterglow_is_in_the_target_too():
    rng = np.random.default_rng(4)
    clean = np.zeros((64, 128), np.float32)
    clean[:, 60] = 1.0  # a line of columns: the afterglow drags it along x
    recording = StemRecording(50.0, afterglow=2.0)
    noisy, expected = record_stem_image(clean, recording, rng)
    profile = expected.mean(axis=0)
    a = afterglow_decay(2.0)
    # The target is the smeared signal: a causal tail of ratio a after the line.
    assert profile[59] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(profile[62:66] / profile[61:65], a, rtol=1e-3)
    assert noisy.mean() == pytest.approx(expected.mean(), rel=0.05)


def test_dark_counts_add_their_mean_and_poisson_noise():
    dose, dark = 5.0, 0.3
    noisy, expected = _flat(dose, StemRecording(dose, dark=dark))
    assert expected.mean() == pytest.approx(dose + dark, rel=1e-6)
    # Poisson: mean and variance both dose + dark (standard errors √(λ/N), λ√(2/N)).
    lam = dose + dark
    assert noisy.mean() == pytest.approx(lam, abs=5 * math.sqrt(lam / N))
    assert noisy.var() == pytest.approx(lam, rel=5 * math.sqrt(2 / N))


def test_line_gains_add_row_to_row_variance_that_the_target_lacks():
    dose, spread = 200.0, 0.05
    noisy, expected = _flat(dose, StemRecording(dose, line_gain=spread))
    rows = noisy.mean(axis=1)
    # Row means vary by the gain (dose·spread) and the shot noise averaged over a row.
    want = (dose * spread) ** 2 + dose / SHAPE[1]
    assert rows.var() == pytest.approx(want, rel=5 * math.sqrt(2 / SHAPE[0]))
    assert np.ptp(expected.mean(axis=1)) == 0.0


def test_an_unsigned_converter_clips_at_zero_after_its_offset():
    dose, read, offset = 0.5, 1.0, 0.5
    noisy, expected = _flat(dose, StemRecording(dose, read_noise=read, adc_offset=offset))
    assert noisy.min() == 0.0 and np.mean(noisy == 0) > 0.05
    assert expected.mean() == pytest.approx(dose + offset, rel=1e-6)
    unclipped, _ = _flat(dose, StemRecording(dose, read_noise=read))
    assert unclipped.min() < 0  # without the converter, read noise goes below zero


def test_dropped_lines_carry_offset_and_read_noise_only():
    dose, read = 30.0, 0.8
    recording = StemRecording(dose, read_noise=read, dropped_lines=0.02)
    noisy, expected = _flat(dose, recording)
    dark_rows = np.flatnonzero(expected.mean(axis=1) == 0)
    assert dark_rows.size == round(0.02 * SHAPE[0])
    lines = noisy[dark_rows]
    assert lines.mean() == pytest.approx(0.0, abs=5 * read / math.sqrt(lines.size))
    assert lines.std() == pytest.approx(read, rel=5 * math.sqrt(2 / lines.size))


def test_ranges_without_the_scanning_terms_draw_what_they_always_drew():
    plain = [draw_recording(np.random.default_rng(s), StemNoiseRanges()) for s in range(50)]
    assert all(
        r.afterglow == r.line_gain == r.dark == r.dropped_lines == 0
        and r.adc_offset is None
        and r.resample == (0.0, 0.0, 0.0)
        and r.line_pattern == 0
        for r in plain
    )


def test_resampled_frames_are_drawn_in_their_share_and_resampled_as_asked(lattice):
    from dataclasses import replace

    n = 2000
    rng = np.random.default_rng(7)
    ranges = replace(SCANNING_DETECTOR, resample_fraction=0.3)
    drawn = [draw_recording(rng, ranges) for _ in range(n)]
    resampled = [r.resample for r in drawn if r.resample != (0.0, 0.0, 0.0)]
    # Binomial: 5 standard errors.
    assert len(resampled) / n == pytest.approx(0.3, abs=5 * math.sqrt(0.3 * 0.7 / n))
    rotations = np.array([r[0] for r in resampled])
    assert np.all(np.abs(rotations) <= ranges.resample_rotation[1])
    assert np.any(rotations < 0) and np.any(rotations > 0)
    assert all(0.0 <= dy < 1.0 and 0.0 <= dx < 1.0 for _, dy, dx in resampled)
    # The recording is the plain one resampled, recorded and expected image alike.
    plain = StemRecording(20.0, read_noise=0.5)
    turned = replace(plain, resample=(3.0, 0.3, 0.6))
    noisy, expected = record_stem_image(lattice, plain, np.random.default_rng(8))
    got, got_expected = record_stem_image(lattice, turned, np.random.default_rng(8))
    assert np.allclose(got, resample_frame(noisy, 3.0, (0.3, 0.6)), atol=1e-4)
    assert np.allclose(got_expected, resample_frame(expected, 3.0, (0.3, 0.6)), atol=1e-4)
    for bad in ((50.0, 0.0, 0.0), (1.0, float("nan"), 0.0), (1.0, 0.0)):
        with pytest.raises(ValueError, match="resample"):
            StemRecording(20.0, resample=bad)


def test_a_line_pattern_is_the_same_in_every_line_and_not_in_the_target():
    """Interference synchronous with the scan: every line gets the same pattern of the
    RMS asked, at 1–3 tones within the frequencies drawn, and the target lacks it."""
    from dataclasses import replace

    dose, rms = 50.0, 2.0
    plain = StemRecording(dose, read_noise=0.5)
    noisy, expected = _flat(dose, plain, seed=3)
    striped, striped_expected = _flat(dose, replace(plain, line_pattern=rms), seed=3)
    assert np.array_equal(striped_expected, expected)
    added = (striped - noisy).astype(np.float64)  # the same draws but the pattern's
    assert np.allclose(added, added[0], atol=1e-4)  # the same in every line
    assert float(np.sqrt(np.mean(added[0] ** 2))) == pytest.approx(rms, rel=1e-4)
    for seed in range(20):
        pattern = line_pattern(512, 1.0, np.random.default_rng(seed))
        power = np.abs(np.fft.rfft(pattern)) ** 2
        peaks = np.flatnonzero(power > 0.05 * power.max()) / 512
        assert peaks.min() >= 0.25 - 2 / 512 and peaks.max() <= 0.5
    with pytest.raises(ValueError, match="line_pattern"):
        StemRecording(dose, line_pattern=-1.0)
    # Drawn in its share only (binomial, 5 standard errors).
    n, share = 2000, 0.25
    rng = np.random.default_rng(9)
    ranges = replace(SCANNING_DETECTOR, line_pattern_fraction=share)
    drawn = [draw_recording(rng, ranges) for _ in range(n)]
    got = np.mean([r.line_pattern > 0 for r in drawn])
    assert got == pytest.approx(share, abs=5 * math.sqrt(share * (1 - share) / n))


def test_the_scanning_detector_ranges_draw_each_term_in_its_share():
    n = 2000
    rng = np.random.default_rng(5)
    drawn = [draw_recording(rng, SCANNING_DETECTOR) for _ in range(n)]
    shares = {
        "afterglow": (np.mean([r.afterglow > 0 for r in drawn]), 0.6),
        "line_gain": (np.mean([r.line_gain > 0 for r in drawn]), 0.3),
        "dark": (np.mean([r.dark > 0 for r in drawn]), 0.2),
        "adc": (np.mean([r.adc_offset is not None for r in drawn]), 0.2),
        "dropped": (np.mean([r.dropped_lines > 0 for r in drawn]), 0.05),
    }
    for name, (got, want) in shares.items():
        # Binomial: 5 standard errors.
        assert got == pytest.approx(want, abs=5 * math.sqrt(want * (1 - want) / n)), name
    assert max(r.afterglow for r in drawn) <= SCANNING_DETECTOR.afterglow[1]


@pytest.mark.parametrize("tau", [0.0, 1.0, 2.0])
def test_the_dose_is_read_through_the_afterglow(lattice, tau):
    dose = 20.0
    rng = np.random.default_rng(6)
    recording = StemRecording(dose, read_noise=0.3, afterglow=tau)
    noisy, _ = record_stem_image(lattice, recording, rng)
    # The readout's 1σ scatter on one 256² lattice image is about 8 % (test_readout);
    # 30 % is more than three of those.  Read noise counts as read² electrons.
    want = dose + 0.3**2
    assert read_noise(noisy).dose == pytest.approx(want, rel=0.3)
    # What the model is told: the noise a pixel carries, more than the fit sees.
    told = measure_noise(noisy)
    assert (told.correlation > 1.5) == (tau > 0)


def test_resampling_keeps_a_uniform_frame_and_the_identity():
    flat = np.full((64, 80), 5.0)
    assert np.allclose(resample_frame(flat, 3.0, (0.3, 0.2)), 5.0, atol=1e-12)
    values = np.random.default_rng(0).random((64, 80))
    assert np.allclose(resample_frame(values, 0.0, (0.0, 0.0)), values, atol=1e-12)
    for order in (-1, 6):
        with pytest.raises(ValueError, match="order"):
            resample_frame(values, 1.0, (0.0, 0.0), order=order)


@pytest.mark.parametrize(("shift", "share"), [((0.5, 0.0), 0.5), ((0.5, 0.5), 0.25)])
def test_resampling_halfway_leaves_its_share_of_white_noise_per_pixel(shift, share):
    """Linear interpolation halfway between two pixels averages two independent values
    (half the variance), between four a quarter."""
    white = np.random.default_rng(1).standard_normal(SHAPE)
    out = resample_frame(white, 0.0, shift)[2:-2, 2:-2]
    # The variance of N Gaussian values scatters by √(2/N) relative; averaging
    # neighbours leaves fewer independent values (at most 4× fewer): 5σ of that.
    assert float(np.var(out)) == pytest.approx(share, rel=5 * math.sqrt(2 * 4 / out.size))
    # The zero-frequency noise (its sum) stays: the dose is unchanged.
    assert float(np.mean(out)) == pytest.approx(0.0, abs=5 / math.sqrt(out.size))


def test_a_zoom_magnifies_about_the_centre_and_correlates_the_noise():
    # A ramp along x magnified z times about the centre: its slope is 1/z, its centre kept.
    x = np.mgrid[0:65, 0:81][1].astype(np.float64)
    for z in (1.0, 1.4, 2.0):
        out = resample_frame(x, 0.0, (0.0, 0.0), zoom=z)
        assert np.allclose(np.diff(out[:, 10:70], axis=1), 1.0 / z, atol=1e-9)
        assert out[32, 40] == pytest.approx(40.0, abs=1e-9)
    # White noise upsampled 1.4×: neighbours share values, so the next pixel's
    # correlation rises from 0 to well above the 5 standard errors (1/√N) of none.
    white = np.random.default_rng(2).standard_normal(SHAPE)
    out = resample_frame(white, 0.0, (0.0, 0.0), zoom=1.4)[4:-4, 4:-4]
    out = out - out.mean()
    lag = float(np.mean(out[:, 1:] * out[:, :-1]) / np.var(out))
    assert lag > 5 / math.sqrt(out.size) + 0.2
    for bad in (0.5, 5.0, float("nan")):
        with pytest.raises(ValueError, match="zoom"):
            resample_frame(white, 0.0, (0.0, 0.0), zoom=bad)


def test_zoomed_frames_are_drawn_last_and_recorded_alike(lattice):
    from dataclasses import replace

    base = replace(SCANNING_DETECTOR, resample_fraction=0.5)
    zoomed = replace(base, resample_zoom=(1.0, 1.4))
    plain = [draw_recording(np.random.default_rng(s), base) for s in range(200)]
    drawn = [draw_recording(np.random.default_rng(s), zoomed) for s in range(200)]
    # Drawn after everything else: the other terms are the ones the plain ranges draw.
    assert all(replace(d, resample_zoom=1.0) == p for d, p in zip(drawn, plain, strict=True))
    zooms = [d.resample_zoom for d in drawn]
    assert all(1.0 <= z <= 1.4 for z in zooms) and max(zooms) > 1.2
    # Only resampled frames are magnified; plain ranges never magnify.
    assert all(d.resample_zoom == 1.0 for d in drawn if d.resample == (0.0, 0.0, 0.0))
    assert all(p.resample_zoom == 1.0 for p in plain)
    # Recorded and expected image are the plain recording magnified alike.
    rec = StemRecording(20.0, read_noise=0.5, resample=(3.0, 0.3, 0.6))
    noisy = record_stem_image(lattice, rec, np.random.default_rng(8))[0]
    unturned = replace(rec, resample=(0.0, 0.0, 0.0))
    raw, raw_expected = record_stem_image(lattice, unturned, np.random.default_rng(8))
    got, got_expected = record_stem_image(
        lattice, replace(rec, resample_zoom=1.3), np.random.default_rng(8)
    )
    assert np.allclose(got, resample_frame(raw, 3.0, (0.3, 0.6), zoom=1.3), atol=1e-4)
    assert np.allclose(
        got_expected, resample_frame(raw_expected, 3.0, (0.3, 0.6), zoom=1.3), atol=1e-4
    )
    assert not np.allclose(got, noisy, atol=1e-2)
    with pytest.raises(ValueError, match="resample_zoom"):
        StemRecording(20.0, resample_zoom=0.9)
    with pytest.raises(ValueError, match="resample_zoom"):
        replace(SCANNING_DETECTOR, resample_zoom=(1.0, 5.0))
