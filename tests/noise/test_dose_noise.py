"""The dose noise model: shot-noise statistics from dose and pixel size, read noise,
scan jitter and drift, seeding, stacks and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_pinned.noise.synthesis import (
    DoseParams,
    add_dose_noise,
    apply_dose_paper_units,
    scan_distort,
)

SHAPE = (256, 256)
N = SHAPE[0] * SHAPE[1]
K = 5.0  # tolerance in standard errors


def _constant(value: float) -> np.ndarray:
    return np.full(SHAPE, value, dtype=np.float32)


@pytest.mark.parametrize(("dose", "pixel_size"), [(400.0, 0.1), (100.0, 0.2), (5e4, 0.05)])
def test_shot_noise_is_poisson_at_the_dose_times_the_pixel_area(dose, pixel_size):
    """A pixel at value v (range [0, 1]) receives Poisson(v · dose · a²) electrons: the
    mean is unbiased and the variance is the mean, both checked to 5 standard errors."""
    value, data_range = 0.6, (0.0, 1.0)
    out = add_dose_noise(
        _constant(value), dose, pixel_size=pixel_size, data_range=data_range, seed=1
    )
    full = dose * pixel_size**2
    counts = out.astype(np.float64) * full
    lam = value * full
    assert abs(counts.mean() - lam) < K * math.sqrt(lam / N)
    # Var of the sample variance of a Poisson(λ) sample: (λ + 2λ²) / n.
    assert abs(counts.var() - lam) < K * math.sqrt((lam + 2 * lam**2) / N)
    # Counts are whole electrons.
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3 * max(1.0, lam))


def test_pixel_size_sets_the_counts():
    """Halving the pixel size quarters the electrons per pixel: relative noise doubles."""
    clean = _constant(0.5)
    coarse = add_dose_noise(clean, 1e4, pixel_size=0.2, data_range=(0, 1), seed=0)
    fine = add_dose_noise(clean, 1e4, pixel_size=0.1, data_range=(0, 1), seed=0)
    ratio = fine.std() / coarse.std()
    # Each std is estimated to ~1/sqrt(2N) relative; the ratio to twice that.
    assert abs(ratio - 2.0) < 2.0 * K * math.sqrt(2 * 2 / (2 * N))


def test_read_noise_adds_its_variance():
    """Poisson(λ) electrons plus N(0, r²) read noise: the variance is λ + r²."""
    full, value, read = 100.0, 0.5, 3.0
    out = add_dose_noise(
        _constant(value), full, pixel_size=1.0, read_noise=read, data_range=(0, 1), seed=2
    )
    counts = out.astype(np.float64) * full
    expected = value * full + read**2
    # Var of the sample variance, near-Gaussian sample: (2σ⁴ + λ (Poisson kurtosis)) / n.
    assert abs(counts.var() - expected) < K * math.sqrt((2 * expected**2 + value * full) / N)
    # In the dark, read noise dips below zero and nothing clips it.
    dark = add_dose_noise(_constant(0.0), full, pixel_size=1.0, read_noise=read, data_range=(0, 1))
    assert (dark < 0).mean() == pytest.approx(0.5, abs=K * 0.5 / math.sqrt(N))


def test_the_image_is_the_expected_signal():
    """Averaging many independent frames converges to the clean image (no bias)."""
    rng = np.random.default_rng(0)
    clean = rng.random((64, 64)).astype(np.float32)
    stack = np.repeat(clean[None], 200, axis=0)
    out = add_dose_noise(stack, 2000.0, pixel_size=0.1, data_range=(0, 1), seed=3)
    mean = out.mean(axis=0)
    # Per pixel: std of the mean = sqrt(v / 20) / sqrt(200) ≤ 0.016.
    assert np.abs(mean - clean).max() < K * math.sqrt(1 / 20 / 200)


def test_seed_reproduces_and_frames_are_independent():
    clean = np.full((3, 64, 64), 0.5, np.float32)
    a = add_dose_noise(clean, 100.0, pixel_size=0.5, seed=7)
    b = add_dose_noise(clean, 100.0, pixel_size=0.5, seed=7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], a[1])
    corr = np.corrcoef(a[0].ravel(), a[1].ravel())[0, 1]
    assert abs(corr) < K / math.sqrt(a[0].size)


def test_output_keeps_the_input_units():
    clean = np.full((64, 64), 3000.0, np.float32)
    clean[0, 0], clean[0, 1] = 1000.0, 5000.0
    out = add_dose_noise(clean, 1e6, pixel_size=0.1, seed=0)
    assert out.dtype == np.float32
    assert abs(out[2:, 2:].mean() - 3000.0) < 20.0


def _ramp(shape=(128, 96)) -> np.ndarray:
    return np.broadcast_to(np.arange(shape[1], dtype=np.float32), shape).copy()


def test_no_jitter_and_no_drift_leave_the_geometry():
    ramp = _ramp()
    out = scan_distort(ramp, 0.0, (0.0, 0.0), np.random.default_rng())
    np.testing.assert_array_equal(out, ramp)


def test_line_jitter_displaces_each_row_by_its_own_amount():
    """On a horizontal ramp, a row shifted by s reads x + s in its interior."""
    jitter, ramp = 0.7, _ramp()
    out = scan_distort(ramp, jitter, (0.0, 0.0), np.random.default_rng(4))
    shifts = (out - ramp)[:, 10:-10]
    # Linear interpolation of a linear ramp is exact: one shift per row.
    np.testing.assert_allclose(shifts, shifts[:, :1] * np.ones_like(shifts), atol=1e-4)
    rows = shifts[:, 0]
    h = rows.size
    # Sample std of h normal draws: relative standard error 1/sqrt(2(h-1)).
    assert abs(rows.std(ddof=1) / jitter - 1) < K / math.sqrt(2 * (h - 1))


def test_drift_shears_within_a_frame_and_moves_the_next_frame():
    dx, h = 4.0, 128
    ramp = np.repeat(_ramp((h, 96))[None], 2, axis=0)
    out = scan_distort(ramp, 0.0, (0.0, dx), np.random.default_rng())
    shift = (out - ramp)[:, :, 40]
    rows = np.arange(h)
    np.testing.assert_allclose(shift[0], dx * rows / h, atol=1e-4)
    np.testing.assert_allclose(shift[1], dx * (1 + rows / h), atol=1e-4)


def test_dose_params_and_bad_input_are_refused():
    clean = _constant(0.5)
    for kwargs, word in [
        ({"dose": 0.0}, "dose"),
        ({"dose": -5.0}, "dose"),
        ({"dose": 10.0, "pixel_size": 0.0}, "pixel_size"),
        ({"dose": 10.0, "collection": 1.5}, "collection"),
        ({"dose": 10.0, "read_noise": -1.0}, "read_noise"),
        ({"dose": 10.0, "drift": (1.0, float("nan"))}, "drift"),
    ]:
        kwargs.setdefault("pixel_size", 0.1)
        with pytest.raises(ValueError, match=word):
            add_dose_noise(clean, **kwargs)
    bad = clean.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN|finite"):
        add_dose_noise(bad, 10.0, pixel_size=0.1)
    with pytest.raises(ValueError, match="positive"):
        DoseParams(counts_at_max=0.0)


def test_kernel_works_in_paper_units():
    out = apply_dose_paper_units(
        np.full((32, 32), 255.0, np.float32), DoseParams(1e6), np.random.default_rng(0)
    )
    assert abs(out.mean() - 255.0) < K * 255.0 / math.sqrt(1e6 * out.size)
