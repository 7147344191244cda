"""Frame-series registration: known sub-pixel drifts are recovered, the drift-corrected
mean beats every frame and the unaligned mean, the even/odd halves are independent, and
bad input is refused with a clear message."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from napari_pinned._sample_data import gan_stack
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
from napari_pinned.noise.synthesis import add_cdn_noise, add_dose_noise
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


def test_every_reference_follows_a_drift_beyond_half_a_lattice_period():
    """20+ px of total drift (over half the 39 px SrTiO3 period): matched against frame 0
    without a prediction, "first" took the neighbouring lattice site; with the drift
    predicted from the frames before, every reference follows it."""
    frames, truth, _ = _series(1, drift=(3.0, 0.8), n=9, size=96, pad=32)
    assert np.abs(truth).max() > 39 / 2
    for reference in REFERENCES:
        shifts = estimate_drift(frames, reference=reference)
        # A wrong lattice site is 39 px (or 28 px, the Sr–TiO diagonal) away.
        assert np.abs(shifts - truth).max() < 39 / 4, reference
    assert _rms(estimate_drift(frames), truth) < RMS_TOLERANCE["mean"]


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
    # previous: 4 frames' spectra for the lattice periods, 3 frame-to-frame
    # correlations, then 4 frames shifted.
    stages = ["measuring"] * 4 + ["matching"] * 3 + ["aligning"] * 4
    assert [p.stage for p in progress] == stages
    assert [p.done for p in progress] == list(range(1, 12))
    assert {p.total for p in progress} == {11} and progress[-1].fraction == 1.0
    assert [p.frame for p in progress[:4]] == [p.frame for p in progress[7:]] == [1, 2, 3, 4]
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


# ------------------------------------------------------- periodic lattices, heavy noise
# A crystal correlates with itself at every lattice vector, and in frames as noisy as the
# paper's CDN level 2 (60 % of the pixels replaced by uniform noise) or a few electrons per
# pixel the peak at a lattice vector can come out higher than the true one: before the
# drift was predicted from the frames before and the peaks restricted to less than half a
# period around it, the shipped GaN stack, which does not drift, was "registered" with
# jumps of one lattice period (27.6 px) in every reference mode.

#: GaN [11-20] at 0.1 Å/px, the crystal of the shipped sample stack: its shortest lattice
#: vector is a√3/2 = 2.76 Å, 27.6 px along x.
GAN = ("GaN", (1, 1, -2, 0))
GAN_PERIOD = 27.6
#: A lattice-site jump moves a frame by at least one period; an error under a quarter of
#: the shortest period is no jump (the geometry, not the noise, sets this bound).
JUMP_BOUND = GAN_PERIOD / 4
#: Low dose: e⁻/Å² per frame, 2 counts per pixel at the brightest column at 0.1 Å/px.
LOW_DOSE = 200.0
LATTICE_FRAMES = 12
LATTICE_SIZE = 192
#: Drifts per frame (px): none, sub-pixel over the whole series (0.7 px in 11 steps),
#: and 36 px in 11 steps, more than one period, which must accumulate frame to frame.
DRIFTS = {"zero": (0.0, 0.0), "sub-pixel": (0.05, -0.04), "beyond a period": (3.0, 1.4)}
#: Bounds on the RMS shift error (px) of these series.  Over 20 noise seeds and the three
#: drifts it was at most 1.25 / 3.73 / 1.24 px at CDN 2 and 0.18 / 0.36 / 0.36 px at low
#: dose for mean / previous / first (the error of one noise, not of the lattice: no
#: error reached a quarter period); the bounds are 1.5× those.  At CDN 2 60 % of the
#: pixels are noise, and "previous" adds up frame-to-frame errors of a pixel or more.
LATTICE_RMS_TOLERANCE = {
    "CDN 2": {"mean": 1.9, "previous": 5.6, "first": 1.9},
    "low dose": {"mean": 0.27, "previous": 0.53, "first": 0.53},
}
#: The shipped stack is 10 GaN frames of 256² px at CDN 2 (no drift).  Over 20 noise
#: seeds of such a stack the largest drift found was at most 1.11 / 2.69 / 1.72 px for
#: mean / previous / first; the bounds are 1.5× those (a lattice jump is 27.6 px).
SAMPLE_DRIFT_BOUND = {"mean": 1.7, "previous": 4.0, "first": 2.6}
#: SrTiO3 [001]'s alike Sr and TiO columns make a ghost at half the cell's diagonal,
#: 27.6 px: under a quarter of it is no jump (the frames jumped by 28 and 62 px).  Over
#: 20 noise seeds of the drift-free stack below the largest drift of "mean" was 3.4 px.
SRTIO3_JUMP_BOUND = 27.6 / 4


@functools.cache
def _clean_crystal(material: str, zone: tuple[int, ...], size: int) -> np.ndarray:
    return simulate(material, zone, shape=size, pixel_size=0.1, seed=0).image.astype(np.float64)


def _crystal_series(
    drift: tuple[float, float], noise: str, seed: int, *, n: int = LATTICE_FRAMES
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy GaN frames drifting linearly by ``drift`` px per frame, and the true shifts."""
    motion = np.arange(n)[:, None] * np.asarray(drift, dtype=np.float64)
    pad = int(np.ceil(np.abs(motion).max())) + 8
    base = _clean_crystal(*GAN, LATTICE_SIZE + 2 * pad)
    inner = (slice(pad, pad + LATTICE_SIZE), slice(pad, pad + LATTICE_SIZE))
    clean = np.stack([ndimage.shift(base, m, order=3, mode="nearest")[inner] for m in motion])
    if noise == "CDN 2":
        noisy = add_cdn_noise(clean, 2, seed=seed)
    else:
        noisy = add_dose_noise(clean, LOW_DOSE, pixel_size=0.1, data_range=(0, 255), seed=seed)
    return np.asarray(noisy, dtype=np.float32), -motion


@pytest.mark.slow
@pytest.mark.parametrize("noise", ["CDN 2", "low dose"])
@pytest.mark.parametrize("drift", list(DRIFTS))
def test_known_drifts_of_a_noisy_lattice_are_recovered_without_lattice_jumps(drift, noise):
    frames, truth = _crystal_series(DRIFTS[drift], noise, seed=1)
    if drift == "beyond a period":
        assert np.hypot(*truth[-1]) > GAN_PERIOD
    for reference in REFERENCES:
        shifts = estimate_drift(frames, reference=reference)
        error = np.abs(shifts - truth).max()
        assert error < JUMP_BOUND, (reference, np.round(shifts - truth, 2).tolist())
        assert _rms(shifts, truth) < LATTICE_RMS_TOLERANCE[noise][reference], reference


@pytest.mark.slow
def test_the_shipped_gan_stack_does_not_drift():
    stack = gan_stack()[0][0]
    for reference in REFERENCES:
        result = run_job(register_frames(stack, reference=reference))
        bound = SAMPLE_DRIFT_BOUND[reference]
        assert result.max_drift < bound, (reference, result.max_drift)
        # Shifts under the bound crop at most ceil(bound) pixels per side (not 56).
        least = 256 - 2 * math.ceil(bound)
        assert min(result.mean.shape) >= least, (reference, result.mean.shape)


@pytest.mark.slow
def test_a_drift_free_srtio3_stack_at_cdn_2_does_not_drift():
    clean = _clean_crystal("SrTiO3", (0, 0, 1), 256)
    stack = add_cdn_noise(np.repeat(clean[None], 10, axis=0), 2, seed=0)
    for reference in REFERENCES:
        shifts = estimate_drift(stack, reference=reference)
        assert np.abs(shifts).max() < SRTIO3_JUMP_BOUND, (reference, shifts.tolist())
    assert np.hypot(*estimate_drift(stack).T).max() < 1.5 * 3.4


#: Amorphous frames below, registered before lattices were looked for, over 20 seeds:
#: RMS error of "mean" at most 0.16 px, largest error of any reference 0.55 px (fast
#: drift, "previous").  The bounds are about 1.5× and 2× those; a frame held back by a
#: window of less than half a "period" would be off by pixels.
AMORPHOUS_RMS_MEAN = 0.25
AMORPHOUS_MAX_ERROR = 1.0


@pytest.mark.parametrize("drift", [(0.8, -0.5), (6.0, -4.0)])
def test_amorphous_frames_register_as_before(drift):
    """No lattice: nothing restricts the peaks, fast drift included (6 px/frame would
    be outside a window of less than half a period of most crystals)."""
    rng = np.random.default_rng(2)
    n, size = 6, 128
    motion = np.arange(n)[:, None] * np.asarray(drift)
    pad = int(np.abs(motion).max()) + 8
    field = ndimage.gaussian_filter(rng.normal(size=(size + 2 * pad,) * 2), 2.0)
    field = (field - field.min()) / np.ptp(field) * PEAK_COUNTS
    inner = (slice(pad, pad + size), slice(pad, pad + size))
    clean = np.stack([ndimage.shift(field, m, order=3, mode="nearest")[inner] for m in motion])
    frames = rng.poisson(np.clip(clean, 0, None)).astype(np.float32)
    for reference in REFERENCES:
        shifts = estimate_drift(frames, reference=reference)
        assert np.abs(shifts + motion).max() < AMORPHOUS_MAX_ERROR, reference
    assert _rms(estimate_drift(frames), -motion) < AMORPHOUS_RMS_MEAN
