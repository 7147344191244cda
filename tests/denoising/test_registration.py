"""Frame-series registration: known sub-pixel drifts are recovered, the drift-corrected
mean beats every frame and the unaligned mean, the even/odd halves are independent, and
bad input is refused with a clear message."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from napari_pinned._util import memory
from napari_pinned._util.jobs import run_job
from napari_pinned.denoising.registration import (
    REFERENCES,
    RegistrationProgress,
    RegistrationResult,
    align_frames,
    common_region,
    estimate_drift,
    noise2noise_pairs,
    register_frames,
)
from napari_pinned.physics.simulate import simulate
from napari_pinned.quality.metrics import psnr

#: Poisson dose at the brightest column, counts per pixel per frame: a fast-frame series
#: in which single frames are barely readable (PSNR about 25 dB against the clean image).
PEAK_COUNTS = 20.0
FRAMES = 10
SIZE = 160
#: Bounds on the RMS shift error (px, frame 0 anchored, as the shifts are defined).  Over
#: 20 noise seeds of this series it was on average 0.051 / 0.086 / 0.080 px and at most
#: 0.084 / 0.168 / 0.140 px for mean / previous / first; the bounds are about 1.5× the
#: worst.  0.15 px is 1/26 of the 3.9 Å SrTiO3 lattice period at 0.1 Å/px.
RMS_TOLERANCE = {"mean": 0.15, "previous": 0.25, "first": 0.25}


def _series(
    seed: int, drift: tuple[float, float], *, n: int = FRAMES, size: int = SIZE, pad: int = 16
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy frames of a drifting crystal, the true registering shifts, and the clean
    frame 0 in counts.

    The specimen is simulated larger than the field of view, shifted by a cubic spline
    (the truth; registration interpolates linearly) and cropped, so no frame has edge
    artefacts of its own.
    """
    rng = np.random.default_rng(seed)
    base = simulate("SrTiO3", shape=size + 2 * pad, pixel_size=0.1, seed=0).image
    base = base.astype(np.float64) / 255.0 * PEAK_COUNTS
    motion = np.arange(n)[:, None] * np.asarray(drift) + rng.normal(0.0, 0.2, (n, 2))
    motion -= motion[0]
    inner = (slice(pad, pad + size), slice(pad, pad + size))
    clean = np.stack([ndimage.shift(base, m, order=3, mode="nearest")[inner] for m in motion])
    noisy = rng.poisson(np.clip(clean, 0, None)).astype(np.float32)
    return noisy, -motion, clean[0]


@pytest.fixture(scope="module")
def series() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _series(0, drift=(0.3, -0.25))


@pytest.fixture(scope="module")
def result(series) -> RegistrationResult:
    result = run_job(register_frames(series[0]))
    assert isinstance(result, RegistrationResult)
    return result


def _rms(estimate: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((estimate - truth) ** 2, axis=1))))


@pytest.mark.parametrize("reference", REFERENCES)
def test_known_subpixel_drift_is_recovered(series, result, reference):
    frames, truth, _ = series
    shifts = result.shifts if reference == "mean" else estimate_drift(frames, reference=reference)
    assert shifts.shape == (FRAMES, 2) and shifts.dtype == np.float64
    assert np.array_equal(shifts[0], [0.0, 0.0])
    assert np.abs(truth).max() > 2.5  # the drift is several pixels, not a sub-pixel wobble
    assert _rms(shifts, truth) < RMS_TOLERANCE[reference]


def test_correlation_equals_scikit_image_on_the_same_prepared_frames(series):
    """Our restricted-search correlation is the method of scikit-image's
    phase_cross_correlation without phase normalisation; unrestricted they agree."""
    frames = series[0][[0, 6]]
    window = np.outer(np.hanning(SIZE), np.hanning(SIZE))

    def prepared(frame):
        smooth = ndimage.gaussian_filter(frame.astype(np.float64), 1.5)
        return (smooth - smooth.mean()) * window

    expected, _, _ = phase_cross_correlation(
        prepared(frames[0]), prepared(frames[1]), upsample_factor=20, normalization=None
    )
    shifts = estimate_drift(frames, reference="first", upsample=20, smooth=1.5)
    np.testing.assert_allclose(shifts[1], expected, atol=1 / 20 + 1e-9)


def test_first_reference_confuses_lattice_sites_where_mean_does_not():
    """With 20+ px of total drift (over half the 39 px SrTiO3 period) a frame matched
    against frame 0 finds the neighbouring lattice site; chaining does not."""
    frames, truth, _ = _series(1, drift=(3.0, 0.8), n=9, size=96, pad=32)
    assert np.abs(truth).max() > 39 / 2
    first = estimate_drift(frames, reference="first")
    mean = estimate_drift(frames, reference="mean")
    assert np.abs(first - truth).max() > 10
    assert _rms(mean, truth) < RMS_TOLERANCE["mean"]


def test_max_shift_bounds_every_correlation(series):
    frames = series[0][[0, 9]]
    shift = estimate_drift(frames, reference="first")[1]
    assert np.abs(shift).max() > 2.5
    bounded = estimate_drift(frames, reference="first", max_shift=1.0)[1]
    assert np.abs(bounded).max() <= 1.0


def test_drift_corrected_mean_beats_frames_and_unaligned_mean(series, result):
    frames, _, clean = series
    rows, cols = result.crop
    reference = clean[rows, cols]

    def score(image):
        return psnr(image, reference, data_range=PEAK_COUNTS)

    aligned_psnr = score(result.mean)
    best_frame = max(score(frame[rows, cols]) for frame in frames)
    unaligned = score(frames.mean(axis=0)[rows, cols])
    # Ten frames cut the noise power tenfold (10 dB); the registered mean keeps most of it.
    assert aligned_psnr > best_frame + 6.0
    assert aligned_psnr > unaligned + 6.0
    assert result.mean.dtype == np.float32 and result.mean.shape == reference.shape


def test_result_is_consistent_with_the_building_blocks(series, result):
    frames = series[0]
    assert result.reference == "mean"
    assert result.crop == common_region(frames.shape, result.shifts)
    np.testing.assert_array_equal(result.aligned, align_frames(frames, result.shifts))
    rows, cols = result.crop
    np.testing.assert_allclose(result.mean, result.aligned[:, rows, cols].mean(axis=0), rtol=1e-6)
    assert result.max_drift == pytest.approx(np.hypot(*result.shifts.T).max())
    even, odd = result.halves()
    assert even.shape == odd.shape == result.mean.shape
    np.testing.assert_allclose((even + odd) / 2, result.mean, rtol=1e-5, atol=1e-5)


def test_progress_records_count_every_step_then_the_result(series):
    frames = series[0][:4]
    progress = []
    last = run_job(register_frames(frames, reference="previous"), progress.append)
    assert all(isinstance(p, RegistrationProgress) for p in progress)
    assert isinstance(last, RegistrationResult)
    # previous: 3 frame-to-frame correlations, then 4 frames shifted.
    assert [p.stage for p in progress] == ["matching"] * 3 + ["aligning"] * 4
    assert [p.done for p in progress] == list(range(1, 8))
    assert {p.total for p in progress} == {7} and progress[-1].fraction == 1.0
    assert [p.frame for p in progress[3:]] == [1, 2, 3, 4]
    stages = [p.stage for p in register_frames(frames)]
    assert stages.count("matching") == 3 + 4  # chained, then each frame against the mean


def test_align_frames_with_whole_pixel_shifts_moves_pixels_exactly():
    rng = np.random.default_rng(3)
    frames = rng.uniform(0, 100, (3, 20, 24)).astype(np.float32)
    shifts = np.array([[0, 0], [2, -3], [-1, 1]], dtype=float)
    aligned = align_frames(frames, shifts)
    assert aligned.dtype == np.float32 and aligned.shape == frames.shape
    np.testing.assert_allclose(aligned[1, 2:, :-3], frames[1, :-2, 3:], rtol=1e-6)
    np.testing.assert_allclose(aligned[2, :-1, 1:], frames[2, 1:, :-1], rtol=1e-6)
    rows, cols = common_region(frames.shape, shifts)
    assert (rows, cols) == (slice(2, 19), slice(1, 21))
    # Inside the common region every aligned frame holds the same specimen pixels.
    np.testing.assert_allclose(aligned[1, rows, cols], frames[1, 0:17, 4:24], rtol=1e-6)


def test_common_region_rounds_fractional_shifts_inwards():
    shifts = np.array([[0.0, 0.0], [1.2, -0.4], [-2.5, 0.7]])
    assert common_region((30, 40), shifts) == (slice(2, 27), slice(1, 39))
    assert common_region((5, 30, 40), np.zeros((5, 2))) == (slice(0, 30), slice(0, 40))
    with pytest.raises(ValueError, match="no region is common"):
        common_region((30, 40), np.array([[0.0, 0.0], [31.0, 0.0]]))


def test_even_and_odd_halves_are_independent_noisy_copies():
    rng = np.random.default_rng(4)
    clean = rng.uniform(10, 50, (64, 80))
    noise_std = 3.0
    frames = clean + rng.normal(0.0, noise_std, (5, *clean.shape))
    even, odd = noise2noise_pairs(frames)
    # Five frames: the last is left out so both halves average two.
    np.testing.assert_allclose(even, frames[[0, 2]].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(odd, frames[[1, 3]].mean(axis=0), rtol=1e-5)
    n = clean.size
    r = np.corrcoef((even - clean).ravel(), (odd - clean).ravel())[0, 1]
    # Independent pixels: the sample correlation has standard deviation 1/√n.
    assert abs(r) < 5 / math.sqrt(n)
    # A mean that shares frames with a half is strongly correlated with it (r ≈ 0.7):
    # the bound above can fail.
    shared = np.corrcoef((even - clean).ravel(), (frames[:4].mean(axis=0) - clean).ravel())
    assert shared[0, 1] > 0.5
    for half in (even, odd):
        # Var of a 2-frame mean is σ²/2, within 5 standard errors of a variance.
        assert np.var(half - clean) == pytest.approx(noise_std**2 / 2, rel=5 * math.sqrt(2 / n))

    crop = (slice(4, 60), slice(10, 70))
    even_c, odd_c = noise2noise_pairs(frames, crop)
    assert even_c.shape == odd_c.shape == (56, 60)
    np.testing.assert_array_equal(even_c, even[crop])


def test_integer_stacks_are_accepted():
    frames = (np.random.default_rng(5).uniform(0, 4000, (3, 32, 32))).astype(np.uint16)
    assert estimate_drift(frames).shape == (3, 2)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((32, 32)), "single 2D image"),
        (np.zeros((1, 32, 32)), "at least 2"),
        (np.full((3, 32, 32), np.nan), "NaN"),
        (np.zeros((3, 32, 32, 3)), "RGB"),
        (np.zeros((32, 32, 3)), "RGB"),
        (np.zeros((3, 4, 32)), "at least 8×8"),
    ],
)
def test_bad_stacks_are_refused(frames, message):
    with pytest.raises(ValueError, match=message):
        estimate_drift(frames)
    with pytest.raises(ValueError, match=message):
        next(register_frames(frames))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"reference": "last"}, "reference must be one of"),
        ({"upsample": 0}, "upsample"),
        ({"max_shift": -1.0}, "max_shift"),
        ({"smooth": float("nan")}, "smooth"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        estimate_drift(np.zeros((2, 16, 16)), **options)


def test_bad_shifts_and_order_are_refused():
    frames = np.zeros((3, 16, 16))
    with pytest.raises(ValueError, match=r"shape \(3, 2\)"):
        align_frames(frames, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        align_frames(frames, np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="spline order"):
        align_frames(frames, np.zeros((3, 2)), order=7)


def test_a_series_beyond_the_available_memory_is_refused_before_any_work(monkeypatch):
    frames = np.zeros((4, 32, 48), np.float32)
    monkeypatch.setattr(memory, "available_bytes", lambda: memory.registration_bytes(frames.shape))
    run_job(register_frames(frames))  # just fits
    monkeypatch.setattr(memory, "available_bytes", lambda: 1024)
    reports = []
    with pytest.raises(ValueError, match=r"^registering 4 frames of 32×48 px needs about") as e:
        run_job(register_frames(frames), reports.append)
    assert "\n" not in str(e.value) and reports == []
