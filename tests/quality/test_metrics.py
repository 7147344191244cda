"""PSNR, SSIM, FSC and EPI: known answers, scaling and stack handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from napari_pinned.physics.simulate import simulate
from napari_pinned.quality.columns import column_accuracy, find_columns
from napari_pinned.quality.metrics import (
    Metrics,
    compute_metrics,
    compute_metrics_stack,
    epi,
    format_metrics_table,
    fsc,
    mean_metrics,
    psnr,
    ssim,
)


def _lattice(shape: tuple[int, int] = (96, 96), period: float = 8.0) -> np.ndarray:
    """A smooth, STEM-like array of bright spots on [10, 240] (within the 8-bit scale)."""
    y, x = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    spots = (np.cos(2 * np.pi * x / period) * np.cos(2 * np.pi * y / period) + 1) / 2
    return (10 + 230 * spots**4).astype(np.float32)


def _noisy(ref: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (ref + sigma * rng.standard_normal(ref.shape)).astype(np.float32)


def test_identical_images():
    ref = _lattice()
    m = compute_metrics(ref, ref.copy())
    assert m.psnr == math.inf
    assert m.ssim == pytest.approx(1.0, abs=1e-9)
    assert m.fsc == pytest.approx(1.0, abs=1e-12)
    assert m.epi == 1.0


def test_psnr_known_mse():
    ref = _lattice()
    assert psnr(ref + 5.0, ref) == pytest.approx(10 * math.log10(255.0**2 / 25.0), abs=1e-9)


def test_psnr_explicit_data_range():
    ref = _lattice()
    image = ref + 5.0
    assert psnr(image, ref, data_range=1.0) == pytest.approx(10 * math.log10(1 / 25), abs=1e-9)
    with pytest.raises(ValueError, match="data_range"):
        psnr(image, ref, data_range=0.0)


def test_data_range_inferred_for_uint16_range_float():
    # A float image in detector counts: the range is the reference's own max − min.
    ref = (1000 + 4000 * (_lattice() - 10) / 230).astype(np.float32)  # spans [1000, 5000]
    image = ref + 40.0
    assert psnr(image, ref) == pytest.approx(10 * math.log10(4000.0**2 / 1600.0), abs=1e-6)


def test_metrics_invariant_under_8bit_to_uint16_rescaling():
    ref8 = np.round(_lattice()).astype(np.float32)
    ref8[0, 0], ref8[0, 1] = 0, 255  # span the full 8-bit range
    noisy8 = np.clip(_noisy(ref8, 20.0, seed=1), 0, 255)
    m8 = compute_metrics(noisy8, ref8)
    m16 = compute_metrics(noisy8 * 257, ref8 * 257)
    for attr in ("psnr", "ssim", "fsc", "epi"):
        assert getattr(m16, attr) == pytest.approx(getattr(m8, attr), rel=1e-5), attr


def test_ssim_decreases_with_noise():
    ref = _lattice()
    values = [ssim(_noisy(ref, s, seed=2), ref) for s in (2.0, 10.0, 40.0)]
    assert 1.0 > values[0] > values[1] > values[2]


def test_ssim_small_image_uses_smaller_window():
    ref = _lattice((5, 9))
    assert ssim(ref, ref) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="3×3"):
        ssim(ref[:2], ref[:2])


def test_fsc_scale_invariant():
    ref = _lattice()
    assert fsc(3.7 * ref, ref) == pytest.approx(1.0, abs=1e-12)
    assert fsc(ref, 0.01 * ref) == pytest.approx(1.0, abs=1e-12)


def test_fsc_of_unrelated_noise():
    # Spectra of independent white Gaussian images have independent Rayleigh
    # magnitudes; their cosine similarity tends to E[R]² / E[R²] = π/4.
    rng = np.random.default_rng(3)
    a = rng.standard_normal((256, 256))
    b = rng.standard_normal((256, 256))
    value = fsc(a, b)
    assert value < 1.0
    # The spread of this estimate over seeds is ≈ 0.0012 for 256² pixels; allow 5 SE.
    assert value == pytest.approx(math.pi / 4, abs=0.006)


def test_fsc_zero_images():
    zero = np.zeros((16, 16))
    assert fsc(zero, zero) == 1.0
    assert fsc(zero, _lattice((16, 16))) == 0.0


def test_epi_blur_and_noise():
    ref = _lattice()
    blurred = ndimage.gaussian_filter(ref, 2.0)
    assert epi(blurred, ref) < 1.0
    assert epi(_noisy(ref, 20.0, seed=4), ref) > 1.0


def test_epi_known_value():
    ref = np.zeros((4, 5))
    ref[:, 2:] = 10.0  # one vertical edge: 4 rows × |10| along axis 1 = 40
    image = 0.5 * ref
    assert epi(image, ref) == pytest.approx(0.5)
    assert epi(ref, ref) == 1.0
    flat = np.full((4, 5), 3.0)
    assert epi(flat, flat) == 1.0
    assert epi(ref, flat) == math.inf


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(32, 32\).*\(32, 33\)"):
        compute_metrics(np.zeros((32, 32)), np.zeros((32, 33)))
    with pytest.raises(ValueError, match=r"\(2, 32, 32\).*\(3, 32, 32\)"):
        compute_metrics_stack(np.zeros((2, 32, 32)), np.zeros((3, 32, 32)))


def test_nan_and_wrong_dimensions_rejected():
    ref = _lattice((16, 16))
    bad = ref.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics(bad, ref)
    with pytest.raises(ValueError, match="reference"):
        compute_metrics(ref, bad)
    with pytest.raises(ValueError, match="2D"):
        compute_metrics(np.stack([ref, ref]), np.stack([ref, ref]))


def test_stack_metrics_per_frame_and_mean():
    ref = np.stack([_lattice(), _lattice(period=12.0), _lattice(period=6.0)])
    sigmas = (5.0, 15.0, 30.0)
    noisy = np.stack(
        [_noisy(f, s, seed=i) for i, (f, s) in enumerate(zip(ref, sigmas, strict=True))]
    )
    per_frame = compute_metrics_stack(noisy, ref)
    assert len(per_frame) == 3
    for frame, ref_frame, m in zip(noisy, ref, per_frame, strict=True):
        assert m == compute_metrics(frame, ref_frame, data_range=255.0)
    assert per_frame[0].psnr > per_frame[1].psnr > per_frame[2].psnr
    mean = mean_metrics(per_frame)
    for attr in ("psnr", "ssim", "fsc", "epi"):
        expected = np.mean([getattr(m, attr) for m in per_frame])
        assert getattr(mean, attr) == pytest.approx(expected)


def test_stack_uses_one_data_range_for_all_frames():
    ref = np.stack([_lattice() * 10, _lattice()])  # frame 0 spans to 2400 → range of stack
    noisy = ref + 3.0
    lo, hi = float(ref.min()), float(ref.max())
    per_frame = compute_metrics_stack(noisy, ref)
    expected = 10 * math.log10((hi - lo) ** 2 / 9.0)
    assert [m.psnr for m in per_frame] == pytest.approx([expected, expected], abs=1e-4)


def test_stack_2d_and_broadcast_reference():
    ref = _lattice()
    noisy = _noisy(ref, 10.0, seed=5)
    single = compute_metrics_stack(noisy, ref)
    assert single == [compute_metrics(noisy, ref)]
    frames = compute_metrics_stack(np.stack([noisy, ref]), ref)
    assert frames[0] == single[0]
    assert frames[1].psnr == math.inf


def test_mean_metrics_with_infinite_psnr():
    rows = [Metrics(math.inf, 1.0, 1.0, 1.0), Metrics(20.0, 0.5, 0.9, 1.2)]
    mean = mean_metrics(rows)
    assert mean.psnr == math.inf
    assert (mean.ssim, mean.fsc, mean.epi) == pytest.approx((0.75, 0.95, 1.1))
    with pytest.raises(ValueError, match="empty"):
        mean_metrics([])


def test_as_dict():
    m = Metrics(21.5, 0.8, 0.95, 1.1)
    assert m.as_dict() == {"psnr": 21.5, "ssim": 0.8, "fsc": 0.95, "epi": 1.1}


def test_format_metrics_table():
    rows = {
        "identity": Metrics(math.inf, 1.0, 1.0, 1.0),
        "L3 noisy (long name)": Metrics(12.3456, 0.123456, 0.98765, 3.21098),
    }
    text = format_metrics_table(rows)
    lines = text.splitlines()
    assert len(lines) == 4
    header = lines[0]
    for title in ("name", "PSNR (dB)", "SSIM", "FSC", "EPI"):
        assert title in header
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split()[:2] == ["identity", "inf"]
    assert lines[3].startswith("L3 noisy (long name)")
    assert lines[3].split()[-4:] == ["12.35", "0.1235", "0.9877", "3.211"]
    assert len({len(line) for line in lines}) == 1  # columns aligned


# -- column-position accuracy ------------------------------------------------------------


def _gaussian_lattice(shape, positions, sigma_px):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape)
    for r, c in positions:
        image += np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * sigma_px**2))
    return 255 * image / image.max()


def _square_lattice(shape, period, offset=(3.3, 4.7)):
    rr, cc = np.meshgrid(
        np.arange(offset[0], shape[0], period), np.arange(offset[1], shape[1], period)
    )
    return np.column_stack([rr.ravel(), cc.ravel()])


def test_find_columns_is_sub_pixel_exact_on_gaussian_peaks():
    truth = _square_lattice((64, 64), 10.0, offset=(5.3, 6.7))
    image = _gaussian_lattice((64, 64), truth, sigma_px=2.0)
    found = find_columns(image, pixel_size=0.1, min_separation=1.0, smoothing=0.0)
    assert len(found) == len(truth)
    d, _ = cKDTree(truth).query(found)
    # A lone Gaussian is fitted exactly; the neighbours' tails (5 σ away) add < 0.01 px.
    assert d.max() < 0.01


def test_column_accuracy_perfect_on_simulated_clean_image():
    result = simulate("SrTiO3", shape=128, pixel_size=0.1, seed=2)
    acc = column_accuracy(
        result.image, result.columns.positions, 0.1, weights=result.columns.weights
    )
    assert acc.recall == 1.0 and acc.precision == 1.0
    assert acc.rms_error_pm < 1.0
    assert acc.n_true == acc.n_found == acc.n_matched >= 10


def test_column_accuracy_measures_a_known_shift():
    """Moving every column by 0.3 px shows up as 0.3 px × 10 pm/px = 3 pm rms."""
    truth = _square_lattice((96, 96), 12.0)
    image = _gaussian_lattice((96, 96), truth + np.array([0.3, 0.0]), sigma_px=2.5)
    acc = column_accuracy(image, truth, 0.1, smoothing=0.0)
    assert acc.recall == 1.0
    assert acc.rms_error_pm == pytest.approx(3.0, abs=0.05)


def test_column_accuracy_counts_missing_and_spurious_columns():
    truth = _square_lattice((96, 96), 12.0)
    centre = int(np.argmin(np.linalg.norm(truth - 48.0, axis=1)))
    shown = np.delete(truth, centre, axis=0)  # a column in the middle is missing
    spurious = truth[centre - 1] + 6.0  # a peak between four columns

    image = _gaussian_lattice((96, 96), np.vstack([shown, spurious[None]]), sigma_px=2.0)
    acc = column_accuracy(image, truth, 0.1, smoothing=0.0)
    n = acc.n_true
    assert acc.n_matched == n - 1
    assert acc.recall == pytest.approx((n - 1) / n)
    assert acc.precision == pytest.approx((n - 1) / n)


def test_faint_columns_are_dont_care():
    """A detection on a column below min_weight_fraction is neither a hit nor a miss."""
    heavy = _square_lattice((96, 96), 12.0)
    light = heavy + 6.0
    image = _gaussian_lattice((96, 96), np.vstack([heavy, light]), sigma_px=2.0)
    positions = np.vstack([heavy, light])
    weights = np.r_[np.full(len(heavy), 10.0), np.full(len(light), 1.0)]
    acc = column_accuracy(image, positions, 0.1, weights=weights, smoothing=0.0)
    assert acc.recall == 1.0 and acc.precision == 1.0
    assert acc.n_true < len(heavy) + 1  # only heavy columns (inside the border) count


def test_column_accuracy_rejects_bad_input():
    image = np.zeros((32, 32))
    with pytest.raises(ValueError, match="weights"):
        column_accuracy(image, np.ones((3, 2)), 0.1, weights=np.ones(2))
    with pytest.raises(ValueError, match="inside the image"):
        column_accuracy(image, np.full((3, 2), 100.0), 0.1)
    with pytest.raises(ValueError, match="pixel_size"):
        find_columns(image, 0.0)
