"""Composite Degradation Noise: parameters, statistics of each stage, order, scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from napari_pinned.noise.synthesis import (
    CDN_TABLE,
    MAX_LEVEL,
    CDNParams,
    add_cdn_noise,
    apply_cdn_paper_units,
    cdn_params,
)

SHAPE = (256, 256)
N = SHAPE[0] * SHAPE[1]
K = 5.0  # tolerance in standard errors


def _constant(value: float, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.full(shape, value, dtype=np.float32)


def _spanning_uint8(seed: int = 0, shape: tuple[int, ...] = (128, 128)) -> np.ndarray:
    """uint8 image that hits 0 and 255, so its inferred range is exactly [0, 255]."""
    img = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    img.flat[0], img.flat[1] = 0, 255
    return img


# --- parameters -------------------------------------------------------------------------


def test_table_is_paper_table_1():
    expected = {
        1: (50, 0.50, 0.20),
        2: (60, 0.60, 0.30),
        3: (70, 0.70, 0.40),
        4: (80, 0.80, 0.50),
        5: (100, 0.90, 0.60),
    }
    assert MAX_LEVEL == 5
    assert set(CDN_TABLE) == set(expected)
    for level, (std, frac, var) in expected.items():
        assert CDN_TABLE[level] == CDNParams(std, frac, var)
        assert cdn_params(level) == CDN_TABLE[level]


def test_level_zero_is_no_noise():
    assert cdn_params(0) == CDNParams(0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("level", "expected"),
    [(2.5, (65.0, 0.65, 0.35)), (0.5, (25.0, 0.25, 0.10)), (4.25, (85.0, 0.825, 0.525))],
)
def test_fractional_levels_interpolate_linearly(level, expected):
    p = cdn_params(level)
    assert (p.gaussian_std, p.static_fraction, p.speckle_variance) == pytest.approx(expected)


def test_parameters_increase_monotonically_with_level():
    levels = np.linspace(0, 5, 41)
    params = [cdn_params(float(lv)) for lv in levels]
    for attr in ("gaussian_std", "static_fraction", "speckle_variance"):
        values = np.array([getattr(p, attr) for p in params])
        assert np.all(np.diff(values) > 0), attr


@pytest.mark.parametrize("level", [-0.1, 5.01, 6, math.nan, math.inf])
def test_levels_outside_range_are_rejected(level):
    with pytest.raises(ValueError, match="level"):
        cdn_params(level)
    with pytest.raises(ValueError, match="level"):
        add_cdn_noise(_constant(100.0, (8, 8)), level)


# --- each stage on its own -----------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_static_fraction_and_uniform_values(fraction):
    # A constant outside [0, 255] can never be produced by a replacement, so every
    # changed pixel was replaced; no clipping keeps the constant visible.
    out = add_cdn_noise(
        _constant(-10.0),
        gaussian_std=0,
        static_fraction=fraction,
        speckle_variance=0,
        data_range=(0, 255),
        clip=False,
        seed=1,
    )
    replaced = out != np.float32(-10.0)
    se = math.sqrt(fraction * (1 - fraction) / N)
    assert abs(replaced.mean() - fraction) < K * se
    values = out[replaced].astype(np.float64)
    assert values.min() >= 0 and values.max() < 255
    assert abs(values.mean() - 127.5) < K * (255 / math.sqrt(12)) / math.sqrt(values.size)


def test_gaussian_std_alone():
    sigma = 20.0
    out = add_cdn_noise(
        _constant(128.0),
        gaussian_std=sigma,
        static_fraction=0,
        speckle_variance=0,
        clip=False,
        seed=2,
    ).astype(np.float64)
    assert abs(out.mean() - 128.0) < K * sigma / math.sqrt(N)
    # Large-sample standard error of a sample std: σ / sqrt(2n).
    assert abs(out.std(ddof=1) - sigma) < K * sigma / math.sqrt(2 * N)


def test_speckle_variance_alone():
    var = 0.3
    base = 100.0
    out = add_cdn_noise(
        _constant(base),
        gaussian_std=0,
        static_fraction=0,
        speckle_variance=var,
        clip=False,
        seed=3,
    ).astype(np.float64)
    rel = out / base - 1.0
    assert abs(rel.mean()) < K * math.sqrt(var / N)
    # Standard error of a normal sample variance: v * sqrt(2 / (n - 1)).
    assert abs(rel.var(ddof=1) - var) < K * var * math.sqrt(2 / (N - 1))


def test_overrides_replace_single_components():
    # Level 3 with Gaussian and static switched off leaves only its speckle (var 0.4).
    out = add_cdn_noise(
        _constant(100.0), 3, gaussian_std=0, static_fraction=0, clip=False, seed=4
    ).astype(np.float64)
    var = CDN_TABLE[3].speckle_variance
    assert abs((out / 100.0 - 1).var(ddof=1) - var) < K * var * math.sqrt(2 / (N - 1))


# --- order of operations -------------------------------------------------------------------


def test_static_values_are_multiplied_by_speckle():
    v = 0.4
    out = add_cdn_noise(
        _constant(50.0),
        gaussian_std=0,
        static_fraction=1.0,
        speckle_variance=v,
        clip=False,
        seed=5,
    ).astype(np.float64)
    # Y = U(1 + S), U ~ U(0, 255), S ~ N(0, v): Var Y = E[U²](1 + v) − E[U]².
    expected = (255.0**2 / 3) * (1 + v) - 127.5**2
    centred_sq = (out - out.mean()) ** 2
    se = centred_sq.std(ddof=1) / math.sqrt(N)  # large-sample SE of the sample variance
    assert abs(out.var(ddof=1) - expected) < K * se
    # Speckle applied *before* the replacement would leave Var = 255²/12 (~90 SE away).
    assert abs(out.var(ddof=1) - 255.0**2 / 12) > 20 * se


def test_gaussian_comes_before_static():
    # Every pixel replaced after a huge Gaussian: the result is exactly U(0, 255).
    out = add_cdn_noise(
        _constant(128.0),
        gaussian_std=1000.0,
        static_fraction=1.0,
        speckle_variance=0,
        clip=False,
        seed=6,
    ).astype(np.float64)
    assert out.min() >= 0.0 and out.max() < 255.0
    assert stats.kstest(out.ravel(), stats.uniform(loc=0, scale=255).cdf).pvalue > 1e-4


# --- seeds, scaling, clipping ------------------------------------------------------------


def test_seed_reproducible_and_distinct():
    img = _spanning_uint8()
    a = add_cdn_noise(img, 3, seed=11)
    b = add_cdn_noise(img, 3, seed=11)
    c = add_cdn_noise(img, 3, seed=12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    g1 = add_cdn_noise(img, 3, seed=np.random.default_rng(11))
    np.testing.assert_array_equal(a, g1)


def test_kernel_matches_public_function_in_paper_units():
    img = _spanning_uint8().astype(np.float32)
    params = cdn_params(2.0)
    expected = add_cdn_noise(img, 2.0, seed=3)
    got = apply_cdn_paper_units(img, params, np.random.default_rng(3))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    assert got.dtype == np.float32


def test_uint16_level_equals_scaled_8bit_level():
    a8 = _spanning_uint8()
    a16 = a8.astype(np.uint16) * np.uint16(257)  # exactly spans 0..65535
    n8 = add_cdn_noise(a8, 3, seed=21)
    n16 = add_cdn_noise(a16, 3, seed=21)
    assert n16.dtype == np.float32
    np.testing.assert_allclose(n16, n8.astype(np.float64) * 257, rtol=1e-5, atol=0.05)


def test_float_range_level_equals_scaled_8bit_level():
    a8 = _spanning_uint8()
    f = (a8.astype(np.float32) / 255) * 2000 - 1000  # [-1000, 1000]
    n8 = add_cdn_noise(a8, 4, seed=22).astype(np.float64)
    nf = add_cdn_noise(f, 4, seed=22)
    np.testing.assert_allclose(nf, n8 / 255 * 2000 - 1000, rtol=1e-5, atol=1e-2)


def test_data_range_override():
    a8 = _spanning_uint8()
    unit = a8.astype(np.float32) / 255  # inside [0, 255], so the default range would be 8-bit
    n8 = add_cdn_noise(a8, 2, seed=23).astype(np.float64)
    nu = add_cdn_noise(unit, 2, data_range=(0.0, 1.0), seed=23)
    np.testing.assert_allclose(nu, n8 / 255, rtol=1e-5, atol=1e-5)


def test_level_zero_returns_image_unchanged_as_float32():
    img = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7) + 300
    out = add_cdn_noise(img, 0, seed=1)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, img.astype(np.float32))
    assert not np.shares_memory(out, img)


def test_clip_on_and_off():
    img = _spanning_uint8().astype(np.uint16) * np.uint16(257)
    clipped = add_cdn_noise(img, 5, seed=31)
    assert clipped.min() == 0.0 and clipped.max() == 65535.0
    raw = add_cdn_noise(img, 5, seed=31, clip=False)
    assert raw.min() < 0 and raw.max() > 65535
    inside = (raw >= 0) & (raw <= 65535)
    np.testing.assert_array_equal(clipped[inside], raw[inside])


def test_output_shape_and_dtype():
    out = add_cdn_noise(_spanning_uint8(shape=(40, 70)), 1.5, seed=0)
    assert out.shape == (40, 70)
    assert out.dtype == np.float32


# --- stacks ----------------------------------------------------------------------------------


def test_stack_frames_get_independent_noise():
    stack = np.repeat(_constant(120.0, (1, 64, 64)), 3, axis=0)
    out = add_cdn_noise(stack, 2, seed=41)
    assert out.shape == stack.shape
    assert not np.array_equal(out[0], out[1])
    assert not np.array_equal(out[1], out[2])
    # Independent frames: the correlation of two frames' noise is ~N(0, 1/n).
    r = np.corrcoef(out[0].ravel(), out[1].ravel())[0, 1]
    assert abs(r) < K / math.sqrt(out[0].size)


def test_stack_uses_one_data_range():
    # Frame 0 sets the range to [0, 1000]; frame 1 is flat, so on its own its range
    # would be inferred differently.  Its noise must be σ scaled by 1000/255.
    ramp = np.linspace(0, 1000, SHAPE[0] * SHAPE[1], dtype=np.float32).reshape(SHAPE)
    stack = np.stack([ramp, _constant(500.0)])
    sigma = 30.0
    out = add_cdn_noise(
        stack, gaussian_std=sigma, static_fraction=0, speckle_variance=0, clip=False, seed=42
    )
    expected = sigma * 1000 / 255
    assert abs(out[1].astype(np.float64).std(ddof=1) - expected) < K * expected / math.sqrt(2 * N)


# --- bad input -----------------------------------------------------------------------------


def test_nan_image_rejected():
    img = _constant(1.0, (16, 16))
    img[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        add_cdn_noise(img, 1)


def test_rgb_image_rejected():
    with pytest.raises(ValueError, match="RGB"):
        add_cdn_noise(np.zeros((32, 32, 3), np.uint8), 1)


def test_wrong_dimensionality_rejected():
    with pytest.raises(ValueError, match="2D or 3D"):
        add_cdn_noise(np.zeros(10, np.float32), 1)


def test_level_none_needs_all_components():
    img = _constant(100.0, (16, 16))
    with pytest.raises(ValueError, match="level"):
        add_cdn_noise(img)
    with pytest.raises(ValueError, match="level"):
        add_cdn_noise(img, gaussian_std=10, static_fraction=0.1)
    out = add_cdn_noise(img, gaussian_std=10, static_fraction=0.1, speckle_variance=0.1, seed=0)
    assert out.shape == img.shape


@pytest.mark.parametrize(
    "kwargs",
    [
        {"static_fraction": 1.5},
        {"static_fraction": -0.1},
        {"gaussian_std": -1.0},
        {"speckle_variance": math.nan},
        {"data_range": (5.0, 5.0)},
        {"data_range": (0.0, math.inf)},
    ],
)
def test_invalid_components_rejected(kwargs):
    with pytest.raises(ValueError):
        add_cdn_noise(_constant(100.0, (16, 16)), 1, **kwargs)
