"""BioImage Model Zoo packages: the self-contained denoiser equals the numpy pipeline,
exported packages pass bioimageio.core's own test and load back exactly, packages from
other tools run through bioimageio.core, and nothing from a package runs unasked."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("bioimageio.core")

from napari_pinned.denoising import tiling
from napari_pinned.denoising.denoiser import denoise
from napari_pinned.nn import conditioning, foreign, packages
from napari_pinned.nn.model_files import ModelFileError
from napari_pinned.nn.network import ModelBundle, build_model
from napari_pinned.nn.packages import PackageError
from napari_pinned.nn.resolve import load_model, load_package
from napari_pinned.noise import estimate as noise_level
from napari_pinned.settings import ModelConfig
from napari_pinned.share import bmz_denoiser
from napari_pinned.share.bmz_denoiser import PinnedDenoiser
from napari_pinned.share.bmz_export import architecture_sha256, export_bioimageio
from napari_pinned.share.bmz_test_run import package_model


def _counts(lattice, shape=(96, 112), seed=0) -> np.ndarray:
    """Shot noise on a ``lattice`` (the fixture ``lattice_image``) in detector counts
    (offset 100, gain 3), two hot pixels."""
    rng = np.random.default_rng(seed)
    clean = lattice(max(shape))[: shape[0], : shape[1]] / 255.0
    counts = rng.poisson(clean * 20).astype(np.float32) * 3 + 100
    counts[20, 30] = 5000
    counts[0, 7] = 0
    return counts


def _cdn_like(lattice, shape=(96, 112), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = lattice(max(shape))[: shape[0], : shape[1]] + rng.normal(0, 20, shape)
    return np.clip(img, 0, 255).astype(np.float32)


def _smeared(lattice, shape=(96, 272), seed=0) -> np.ndarray:
    """Counts smeared symmetrically along x, [1/4, 1/2, 1/4] (a detector of finite
    bandwidth): no noise left at the Nyquist frequency, so the spectrum says how much
    there is, not the fit."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    clean = lattice(max(shape))[: shape[0], : shape[1]] / 255.0
    counts = rng.poisson(clean * 2 + 0.5).astype(np.float64)
    return ndimage.correlate1d(counts, [0.25, 0.5, 0.25], axis=-1) * 3 + 100


def _resampled(lattice, shape=(96, 272), seed=0) -> np.ndarray:
    """Counts resampled after recording (a rotation of 3° and a sub-pixel shift, linear
    interpolation, as drift correction does): noise correlated along both axes."""
    from napari_pinned.noise.scanning import resample_frame

    rng = np.random.default_rng(seed)
    clean = lattice(max(shape))[: shape[0], : shape[1]] / 255.0
    counts = rng.poisson(clean * 2 + 0.5).astype(np.float64)
    return resample_frame(counts, 3.0, (0.3, 0.6)) * 3 + 100


def _sharp_columns(size=160, seed=0) -> np.ndarray:
    """Single-pixel columns (their edges leak into the pixel residual, so the noise
    estimate's spectral check scales the fit down) beside an exactly flat vacuum."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size))
    img[::5, ::5], img[2::5, 2::5] = 200.0, 80.0
    counts = rng.poisson(img + 2.0).astype(np.float32) * 3 + 100
    counts[:, :30] = 100
    return counts


def _jittered_afterglow(lattice, shape=(256, 256), seed=0) -> np.ndarray:
    """A recording whose rows jitter by up to 0.3 px, with an afterglow of 2 px: the
    jitter spreads the lattice's reflections across the slow-scan frequencies, which
    puts peaks in the fast scan's profile that the fit leaves out."""
    from napari_pinned.noise.synthesis import StemRecording, record_stem_image

    clean = lattice(max(shape), period=10.0)[: shape[0], : shape[1]]
    recording = StemRecording(30.0, read_noise=0.5, row_jitter=0.3, afterglow=2.0)
    noisy, _ = record_stem_image(clean, recording, np.random.default_rng(seed))
    return noisy


def _jittered_smear(lattice, shape=(256, 256), seed=0) -> np.ndarray:
    """A detector's bandwidth (``[¼, ½, ¼]``) at 100 e⁻/px under row jitter: a smear's
    fit without the profile's peaks."""
    from napari_pinned.noise.synthesis import StemRecording, record_stem_image

    clean = lattice(max(shape), period=7.0)[: shape[0], : shape[1]]
    recording = StemRecording(100.0, read_noise=0.5, row_jitter=0.3, smear=0.25)
    noisy, _ = record_stem_image(clean, recording, np.random.default_rng(seed))
    return noisy


def _striped(lattice, shape=(256, 256), seed=0) -> np.ndarray:
    """A recording with a pattern the same in every scan line (0.3 of the noise RMS), as
    real scans have: the guard must not give it back."""
    from napari_pinned.noise.synthesis import StemRecording, record_stem_image

    clean = lattice(max(shape), period=7.0)[: shape[0], : shape[1]]
    recording = StemRecording(10.0, read_noise=0.5, line_pattern=0.3 * np.sqrt(10.25))
    noisy, _ = record_stem_image(clean, recording, np.random.default_rng(seed))
    return noisy


def _srtio3(dose: float) -> np.ndarray:
    from napari_pinned.physics.simulate import simulate

    image = simulate("SrTiO3", shape=(256, 256), pixel_size=0.1, seed=0).image
    return image.astype(np.float64) / image.mean() * dose


def _dense_afterglow(lattice, seed=1) -> np.ndarray:
    """A jittered afterglow recording at 100 e⁻/px: the lattice's hump in the fast
    profile leaves only the high frequencies to read the afterglow from."""
    from napari_pinned.noise.synthesis import StemRecording, record_stem_image

    recording = StemRecording(100.0, read_noise=0.5, row_jitter=0.25, afterglow=2.1)
    noisy, _ = record_stem_image(_srtio3(1.0), recording, np.random.default_rng(seed))
    return noisy


def _dense_smear(lattice, seed=3) -> np.ndarray:
    """A jittered recording with a smear of 0.28 at 100 e⁻/px: only the high frequencies
    of the fast profile are left to read the smear from."""
    from napari_pinned.noise.synthesis import StemRecording, record_stem_image

    recording = StemRecording(100.0, read_noise=0.5, row_jitter=0.25, smear=0.28)
    noisy, _ = record_stem_image(_srtio3(1.0), recording, np.random.default_rng(seed))
    return noisy


def _upsampled_afterglow(lattice, seed=0) -> np.ndarray:
    """An afterglow recording rotated and magnified 1.35×: the fast axis is read over
    the slow axis's (the interpolation's) spectrum."""
    from napari_pinned.noise.scanning import apply_afterglow, resample_frame

    counts = np.random.default_rng(seed).poisson(_srtio3(100.0)).astype(np.float32)
    return resample_frame(apply_afterglow(counts, 2.0).astype(np.float64), 2.0, (0.3, 0.6), 1, 1.35)


def _afterglow(lattice, shape=(96, 272), seed=0) -> np.ndarray:
    """Counts smeared along x by an afterglow of 2 px: the model is told the white noise
    of the same dose, several times the fit's (a frame wide enough for the spectrum)."""
    from napari_pinned.noise.scanning import apply_afterglow

    rng = np.random.default_rng(seed)
    clean = lattice(max(shape))[: shape[0], : shape[1]] / 255.0
    return apply_afterglow(rng.poisson(clean * 2 + 0.5).astype(np.float32), 2.0) * 3 + 100


# Each ``make`` takes the ``lattice_image`` factory.
CASES = [
    ("noise-map", "robust", lambda lattice: _sharp_columns()),
    ("noise-map", "robust", _counts),
    ("noise-map", "robust", _afterglow),
    ("noise-map", "robust", _striped),
    ("noise-map", "range", _counts),
    ("none", "range", _cdn_like),  # the paper's fixed 0–255 convention
    ("none", "range", lambda lattice: _counts(lattice) * 7.0),  # percentile fallback, clipped input
    ("none", "percentile", _counts),
    # The lattice prior: of the repaired frame (two hot pixels), with the noise's
    # spectrum measured along x (an afterglow), and in blended windows.
    ("noise-map+lattice", "robust", _counts),
    ("noise-map+lattice", "robust", _afterglow),
    ("noise-map+lattice", "robust", lambda lattice: _counts(lattice, (300, 520))),
]


@pytest.mark.parametrize(("conditioning_", "normalization", "make"), CASES)
def test_the_package_model_equals_napari_pinneds_denoise(
    conditioning_, normalization, make, random_bundle, lattice_image, monkeypatch
):
    config = ModelConfig.preset("tiny", conditioning=conditioning_, normalization=normalization)
    bundle = random_bundle(config)
    image = make(lattice_image)
    expected = denoise(image, bundle, device="cpu")
    wrapper = package_model(bundle, 1.0)
    x = torch.from_numpy(image[None].astype(np.float32))
    with torch.inference_mode():
        got = wrapper(x)[0].numpy()
    tolerance = 1e-3 * float(np.ptp(expected))
    assert np.max(np.abs(got - expected)) <= tolerance
    # The network does something: the output is not the input, by far more than that.
    assert np.max(np.abs(expected - image)) > 5 * tolerance
    if config.lattice:
        # And the prior matters: given the image in its place, the output moves by
        # 1.2–3.5 % of the range (measured on these frames), far outside the tolerance.
        monkeypatch.setattr(bmz_denoiser, "lattice_average", lambda frame: frame.clone())
        with torch.inference_mode():
            blind = wrapper(x)[0].numpy()
        assert np.max(np.abs(blind - expected)) > 5 * tolerance


def _noisy_lattice(lattice, shape, dose, seed, afterglow=0.0) -> np.ndarray:
    """Poisson counts of ``lattice`` (``dose`` at its brightest), smeared along x by an
    afterglow of ``afterglow`` px if given."""
    from napari_pinned.noise.scanning import apply_afterglow

    clean = lattice(max(shape))[: shape[0], : shape[1]] / 255.0
    counts = np.random.default_rng(seed).poisson(clean * dose).astype(np.float32)
    return apply_afterglow(counts, afterglow) if afterglow else counts


LATTICE_FRAMES = {
    "one window": lambda lattice: _noisy_lattice(lattice, (200, 230), 10.0, 0),
    "windows": lambda lattice: _noisy_lattice(lattice, (300, 520), 10.0, 1),
    # Correlated along the fast scan, over windows along it: the resampled spectrum.
    "afterglow": lambda lattice: _noisy_lattice(lattice, (200, 420), 5.0, 2, afterglow=2.0),
}


@pytest.mark.parametrize("case", list(LATTICE_FRAMES))
def test_the_package_lattice_prior_is_napari_pinneds(case, lattice_image):
    from napari_pinned.nn.lattice_prior import lattice_average
    from napari_pinned.quality.risk import measure_scan_noise

    image = LATTICE_FRAMES[case](lattice_image)
    x = torch.from_numpy(image.astype(np.float64))
    variance, spectrum_x, spectrum_y = bmz_denoiser.measure_scan_noise(x)
    noise = measure_scan_noise(image)
    assert variance == pytest.approx(noise.variance, rel=1e-12)
    np.testing.assert_allclose(spectrum_x.numpy(), noise.spectrum_x, rtol=1e-12)
    np.testing.assert_allclose(spectrum_y.numpy(), noise.spectrum_y, rtol=1e-12)
    expected = lattice_average(image)
    got = bmz_denoiser.lattice_average(x).numpy()
    # Measured: 2e-8–3e-8 of the range, numpy's rounding of its prior to float32 (rounded
    # so, the two are equal bit for bit); one component flipped at the significance
    # threshold would move the prior by about 1e-3 of the range.
    assert np.max(np.abs(got - expected)) <= 1e-5 * float(np.ptp(image))
    # A prior worth comparing: it carries the lattice (0.67–0.73 of the image's spread).
    assert float(expected.std()) > 0.5 * float(image.std())
    if case == "afterglow":
        # The afterglow's excess at low frequencies along x is measured (about 3× the
        # mean; white noise reads about 1 there).
        assert float(spectrum_x[0]) > 2.0


def test_the_package_lattice_prior_of_small_and_flat_frames():
    """Too small for a prior: the mean; flat: the frame itself, as napari-pinned's."""
    from napari_pinned.nn.lattice_prior import SMALLEST, lattice_average

    small = np.random.default_rng(0).poisson(10.0, (SMALLEST - 1, 40)).astype(np.float64)
    flat = np.full((40, 48), 7.0)
    for image in (small, flat):
        got = bmz_denoiser.lattice_average(torch.from_numpy(image)).numpy()
        np.testing.assert_allclose(got, lattice_average(image), rtol=1e-7, atol=0)


# -- the conditioning of issue 21: defects in groups, the range convention, the guard -----


def _with(lattice, rows, cols, value=5000.0) -> np.ndarray:
    """:func:`_counts` (before its two hot pixels) with ``[rows, cols]`` set to ``value``."""
    rng = np.random.default_rng(0)
    clean = lattice(112)[:96, :112] / 255.0
    counts = rng.poisson(clean * 20).astype(np.float32) * 3 + 100
    counts[rows, cols] = value
    return counts


def _scattered_saturation(lattice) -> np.ndarray:
    """A 12-bit frame with 5 % of its pixels, scattered, at the ceiling 4095."""
    counts = _with(lattice, 0, 0, 100.0)
    counts[np.random.default_rng(5).random(counts.shape) < 0.05] = 4095
    return counts


def _dim_uint16(lattice) -> np.ndarray:
    """Raw uint16 counts inside [0, 255] but not clipped there (not the paper's 8 bits)."""
    clean = lattice(112)[:96, :112] / 255.0
    return np.random.default_rng(1).poisson(clean * 30).astype(np.uint16)


def _eight_bit(lattice, floor=0.0) -> np.ndarray:
    """An 8-bit recording's values clipped at 255 (≈ 2 % of the pixels) and at ``floor``
    (0: ≈ 3 %, the paper's convention)."""
    rng = np.random.default_rng(2)
    img = lattice(112)[:96, :112] * 1.3 - 30 + rng.normal(0, 20, (96, 112))
    return np.clip(np.round(img), floor, 255).astype(np.float32)


GROUP_CASES = {
    "hot pair": lambda lattice: _with(lattice, 40, slice(50, 52)),
    "edge and corner": lambda lattice: _with(lattice, [0, 0, 95, 47], [0, 60, 111, 0]),
    "3x3 hot cluster": lambda lattice: _with(lattice, slice(50, 53), slice(70, 73)),
    "hot column": lambda lattice: _with(lattice, slice(None), 80),
    "5 % scattered saturated": _scattered_saturation,
}
CONVENTION_CASES = {
    "dim unclipped uint16": _dim_uint16,
    "8-bit clipped at both ends": _eight_bit,
    "8-bit clipped only at 255": lambda lattice: _eight_bit(lattice, floor=3.0),
}


def _package_and_denoise(bundle, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The package model's output (float32 in, as BMZ consumers give it) and ``denoise``'s.

    The package sees float32, so it cannot clip raw unsigned counts at zero as ``denoise``
    does (a documented difference): that clip is applied here."""
    expected = denoise(image, bundle, device="cpu")
    wrapper = package_model(bundle, 1.0)
    with torch.inference_mode():
        got = wrapper(torch.from_numpy(image[None].astype(np.float32)))[0].numpy()
    if np.issubdtype(image.dtype, np.unsignedinteger):
        got = np.maximum(got, 0.0)
    return got, expected


@pytest.mark.parametrize(
    ("conditioning_", "normalization"),
    [("noise-map", "robust"), ("none", "range"), ("none", "percentile")],
)
@pytest.mark.parametrize("case", list(GROUP_CASES))
def test_the_package_repairs_defects_in_groups_as_napari_pinned_does(
    case, conditioning_, normalization, random_bundle, lattice_image
):
    config = ModelConfig.preset("tiny", conditioning=conditioning_, normalization=normalization)
    image = GROUP_CASES[case](lattice_image)
    got, expected = _package_and_denoise(random_bundle(config), image)
    span = float(np.ptp(expected))
    assert np.max(np.abs(got - expected)) <= 1e-3 * span
    # The defects were repaired: nothing is left near their values.
    assert expected.max() < 0.5 * image.max()


@pytest.mark.parametrize("conditioning_", ["none", "noise-map"])
@pytest.mark.parametrize("case", list(CONVENTION_CASES))
def test_the_package_takes_the_range_convention_only_for_clipped_frames(
    case, conditioning_, random_bundle, lattice_image
):
    config = ModelConfig.preset("tiny", conditioning=conditioning_, normalization="range")
    image = CONVENTION_CASES[case](lattice_image)
    got, expected = _package_and_denoise(random_bundle(config), image)
    assert np.max(np.abs(got - expected)) <= 1e-3 * float(np.ptp(expected))


@pytest.mark.parametrize("gain", [1e-20, 1e20])
def test_the_package_guard_is_scale_safe(gain, random_bundle, lattice_image):
    """At every gain the package's guard gives ``denoise``'s result (issue 21: the numpy
    guard's float32 transforms overflowed at 1e20)."""
    config = ModelConfig.preset("tiny", conditioning="noise-map", normalization="robust")
    bundle = random_bundle(config)
    image = _counts(lattice_image) * np.float32(gain)
    got, expected = _package_and_denoise(bundle, image)
    assert np.isfinite(got).all()
    assert np.max(np.abs(got - expected)) <= 1e-3 * float(np.ptp(expected))


@pytest.fixture(scope="module")
def cdn_trained(tmp_path_factory, random_bundle):
    """A tiny model trained (by its metadata) on CDN, and its package."""
    config = ModelConfig.preset("tiny", normalization="range")
    bundle = random_bundle(config, seed=3, noise="cdn")
    path = tmp_path_factory.mktemp("bmz") / "cdn-tiny.zip"
    return bundle, export_bioimageio(bundle, path, torchscript=True)


def test_a_package_of_a_cdn_trained_model_guards_only_recordings(cdn_trained, lattice_image):
    """As ``denoise``: no guard on CDN-like (clipped) frames, the guard on recordings."""
    bundle, path = cdn_trained
    rdf = _rdf(path)
    kwargs = rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]
    assert kwargs["keep_lattice"] is True and kwargs["guard_clipped"] is False
    with zipfile.ZipFile(path) as archive:
        scripted = torch.jit.load(io.BytesIO(archive.read(rdf["weights"]["torchscript"]["source"])))
    for image, guarded in (
        (_cdn_like(lattice_image, (128, 128), seed=4), False),
        (_counts(lattice_image), True),
    ):
        expected = denoise(image, bundle, device="cpu")
        with torch.inference_mode():
            got = scripted(torch.from_numpy(image[None].astype(np.float32)))[0].numpy()
        span = float(np.ptp(expected))
        assert np.max(np.abs(got - expected)) <= 1e-3 * span
        bare = denoise(image, bundle, device="cpu", keep_lattice=False)
        # Guarded or not as said; the guard changes these outputs, so the test can tell.
        assert (np.max(np.abs(expected - bare)) > 1e-2 * span) == guarded


@pytest.mark.parametrize("make", [_counts, lambda lattice: _sharp_columns(), _cdn_like])
def test_the_package_noise_estimate_is_napari_pinneds(make, lattice_image):
    image = make(lattice_image).astype(np.float64)
    mask = np.zeros(image.shape, bool)
    mask[10:12, 40:43] = True
    for given in (None, mask):
        expected = noise_level.estimate_noise(image, mask=given)
        flags = torch.from_numpy(mask if given is not None else np.zeros_like(mask))
        gain, offset, median = bmz_denoiser.estimate_noise(torch.from_numpy(image), flags)
        assert gain == pytest.approx(expected.gain, rel=1e-9, abs=1e-12)
        assert offset == pytest.approx(expected.offset, rel=1e-9, abs=1e-9)
        assert median == expected.median_intensity


@pytest.mark.parametrize(
    "make",
    [
        _counts,
        _afterglow,
        _jittered_afterglow,
        _jittered_smear,
        _smeared,
        _resampled,
        _dense_afterglow,
        _dense_smear,
        _upsampled_afterglow,
        _cdn_like,
    ],
)
def test_the_package_reads_the_noise_correlation_as_napari_pinned_does(make, lattice_image):
    from napari_pinned.noise.correlation import pixel_equivalent
    from napari_pinned.noise.estimate import estimate_noise

    image = make(lattice_image).astype(np.float64)
    fit = estimate_noise(image)
    expected = pixel_equivalent(fit, image).correlation
    got = bmz_denoiser.noise_correlation_factor(torch.from_numpy(image), fit.gain, fit.offset)
    assert got == pytest.approx(expected, rel=1e-9)
    correlated = (_afterglow, _jittered_afterglow, _jittered_smear, _smeared, _resampled)
    if make in (*correlated, _dense_afterglow, _dense_smear, _upsampled_afterglow):
        assert got > 1.5


@pytest.mark.parametrize("conditioning_", ["noise-map", "noise-map+lattice"])
def test_torchscript_of_the_package_model_equals_the_module(
    conditioning_, random_bundle, lattice_image
):
    # A channel cap other than the usual one: the package builds the network it names.
    config = ModelConfig.preset(
        "tiny", conditioning=conditioning_, normalization="robust", max_width_factor=2
    )
    wrapper = package_model(random_bundle(config), 0.7)
    scripted = torch.jit.script(wrapper)
    # Every path of the conditioning: single hot and dead pixels, a hot block, a hot
    # column on the edge, scattered saturated pixels.
    frames = [_counts(lattice_image), _counts(lattice_image, seed=1)]
    frames.append(_afterglow(lattice_image)[:, :112])
    frames.append(_with(lattice_image, slice(50, 53), slice(70, 73)))
    frames.append(_with(lattice_image, slice(None), 0))
    frames.append(_scattered_saturation(lattice_image))
    x = torch.from_numpy(np.stack(frames))
    with torch.inference_mode():
        np.testing.assert_allclose(scripted(x).numpy(), wrapper(x).numpy(), rtol=0, atol=1e-5)


def test_the_package_model_uses_napari_pinneds_constants():
    from napari_pinned import settings
    from napari_pinned._util import intensity
    from napari_pinned.nn import network as model

    assert bmz_denoiser.CONTEXT == tiling.CONTEXT
    assert bmz_denoiser.MAX_WIDTH_FACTOR == settings.MAX_WIDTH_FACTOR
    assert bmz_denoiser.LOG_FLOOR == model._LOG_FLOOR
    assert bmz_denoiser.PAPER_RANGE == intensity.PAPER_RANGE
    assert bmz_denoiser.UNIT_RANGE == intensity.UNIT_RANGE
    for name in (
        "ROBUST_PERCENTILES",
        "RANGE_PERCENTILES",
        "PERCENTILES",
        "RANGE_CLIP",
        "OUTLIER_SIGMAS",
        "OUTLIER_LIFT",
        "GROSS_SPAN",
        "GROSS_SPARSE",
        "SATURATED",
        "SATURATED_MOST",
        "SATURATED_NEIGHBOURS",
        "GROUP_REACH",
        "REPAIR_ROUNDS",
        "CONVENTION_CLIPPED",
        "NOISE_MAP_SMOOTHING",
        "NOISE_MAP_FLOOR",
    ):
        assert getattr(bmz_denoiser, name) == getattr(conditioning, name), name
    assert bmz_denoiser.NOISE_BINS == noise_level._BINS
    assert bmz_denoiser.NOISE_OUTLIER_SIGMAS == noise_level._OUTLIER_SIGMAS
    assert bmz_denoiser.NOISE_TRIM == noise_level._TRIM
    assert bmz_denoiser.SPECTRAL_EDGE == noise_level._SPECTRAL_EDGE
    assert bmz_denoiser.SPECTRAL_MARGIN == noise_level._SPECTRAL_MARGIN
    from napari_pinned.noise import correlation

    assert bmz_denoiser.CORRELATION_TILE == correlation._TILE
    assert bmz_denoiser.CORRELATION_BAND == correlation._BAND
    assert bmz_denoiser.CORRELATION_SKIP_BINS == correlation._SKIP_BINS
    assert bmz_denoiser.CORRELATION_WHITE_TOLERANCE == correlation._WHITE_TOLERANCE
    assert bmz_denoiser.CORRELATION_FIT_SPREAD == correlation._FIT_SPREAD
    assert bmz_denoiser.CORRELATION_PEAK_WINDOW == correlation._PEAK_WINDOW
    assert bmz_denoiser.CORRELATION_PEAK_SIGMAS == correlation._PEAK_SIGMAS
    assert bmz_denoiser.CORRELATION_PEAK_SCATTER_FLOOR == correlation._PEAK_SCATTER_FLOOR
    assert bmz_denoiser.CORRELATION_PEAK_SHARE == correlation._PEAK_SHARE
    assert bmz_denoiser.CORRELATION_PEAK_FIT_SPREAD == correlation._PEAK_FIT_SPREAD
    assert bmz_denoiser.CORRELATION_UPPER_FIT == correlation._UPPER_FIT
    assert bmz_denoiser.CORRELATION_UPPER_HUMP == correlation._UPPER_HUMP
    assert bmz_denoiser.CORRELATION_UPPER_TAU == correlation._UPPER_TAU
    assert bmz_denoiser.CORRELATION_UPPER_SPREAD == correlation._UPPER_SPREAD
    smears = np.linspace(
        bmz_denoiser.CORRELATION_UPPER_SMEAR_LOW,
        bmz_denoiser.CORRELATION_UPPER_SMEAR_HIGH,
        bmz_denoiser.CORRELATION_UPPER_SMEAR_COUNT,
    )
    np.testing.assert_array_equal(smears, correlation._UPPER_SMEAR_A)
    assert bmz_denoiser.CORRELATION_PEAK_SMEAR_SPREAD == correlation._PEAK_SMEAR_SPREAD
    assert bmz_denoiser.CORRELATION_SMEAR_SPREAD == correlation._MA_SPREAD
    assert bmz_denoiser.CORRELATION_SMEAR_NYQUIST == correlation._MA_NYQUIST
    assert bmz_denoiser.CORRELATION_RESAMPLED_LIMIT == correlation._RESAMPLED_LIMIT
    assert correlation._MA_DEGREE == 2  # the package fits a quadratic amplitude
    assert correlation._AR_DEGREE == 1  # the package solves a degree-1 fit in closed form
    from napari_pinned.quality import lattice_guard

    assert bmz_denoiser.GUARD_SNR == lattice_guard.GUARD_SNR
    assert bmz_denoiser.GUARD_FLOOR_BLOCK == lattice_guard._FLOOR_BLOCK
    assert bmz_denoiser.GUARD_DC_RADIUS == lattice_guard._DC_RADIUS
    assert bmz_denoiser.GUARD_INVENTION_MARGIN == lattice_guard.INVENTION_MARGIN
    assert bmz_denoiser.GUARD_GATE_NOISE_FACTOR == lattice_guard.GATE_NOISE_FACTOR
    assert bmz_denoiser.GUARD_GATE_SMOOTHING == lattice_guard.GATE_SMOOTHING
    from napari_pinned.noise import line_pattern

    assert bmz_denoiser.LINE_PATTERN_BAND == line_pattern.LINE_PATTERN_BAND
    assert bmz_denoiser.LINE_PATTERN_STRIP == line_pattern.LINE_PATTERN_STRIP
    assert bmz_denoiser.LINE_PATTERN_SIGNIFICANCE == line_pattern.LINE_PATTERN_SIGNIFICANCE
    assert bmz_denoiser.LINE_PATTERN_EXCESS == line_pattern.LINE_PATTERN_EXCESS
    assert bmz_denoiser.LINE_PATTERN_NOISE_LAST == line_pattern._NOISE_LAST
    assert bmz_denoiser.LINE_PATTERN_NOISE_BINS == line_pattern._NOISE_BINS
    assert bmz_denoiser.LINE_PATTERN_NOISE_FLATNESS == line_pattern._NOISE_FLATNESS
    assert bmz_denoiser.LINE_PATTERN_NOISE_FLOOR == line_pattern._NOISE_FLOOR
    assert bmz_denoiser.LINE_PATTERN_MIN_SIZE == line_pattern._MIN_SIZE
    assert bmz_denoiser.LINE_PATTERN_HARMONIC_BINS == line_pattern._HARMONIC_BINS
    assert bmz_denoiser.LINE_PATTERN_COMB_DENSITY == line_pattern._COMB_DENSITY
    from napari_pinned.nn import lattice_prior
    from napari_pinned.quality import risk

    assert bmz_denoiser.DIFFERENCE_CLIP == model.DIFFERENCE_CLIP
    assert bmz_denoiser.LATTICE_SIGNIFICANCE == lattice_prior.SIGNIFICANCE
    assert bmz_denoiser.LATTICE_WINDOW == lattice_prior.WINDOW
    assert bmz_denoiser.LATTICE_STRIDE == lattice_prior.STRIDE
    assert bmz_denoiser.LATTICE_SMALLEST == lattice_prior.SMALLEST
    assert bmz_denoiser.NO_SIGNAL_FREQUENCY == risk.NO_SIGNAL_FREQUENCY
    assert bmz_denoiser.WHITE_RATIO == risk._WHITE_RATIO


def test_the_architecture_file_is_one_napari_pinned_recognises():
    # Editing bmz_denoiser.py changes its hash: add the new one to
    # packages.KNOWN_ARCHITECTURE_SHA256 (old packages keep loading with theirs).
    assert architecture_sha256() in packages.KNOWN_ARCHITECTURE_SHA256


@pytest.mark.parametrize("conditioning_", ["noise-map", "noise-map+lattice"])
def test_the_package_model_has_the_networks_parameter_names(conditioning_):
    config = ModelConfig.preset("unet", depth=4, conditioning=conditioning_)
    wrapper = PinnedDenoiser(**config.to_dict())
    names = {f"network.{k}": tuple(v.shape) for k, v in build_model(config).state_dict().items()}
    assert {k: tuple(v.shape) for k, v in wrapper.state_dict().items()} == names


# -- exported packages ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cdn_package(tmp_path_factory):
    path = tmp_path_factory.mktemp("bmz") / "cdn.zip"
    return export_bioimageio("cdn", path, authors=["A. Microscopist"])


@pytest.fixture(scope="module")
def conditioned(tmp_path_factory, random_bundle):
    """A tiny noise-conditioned model (the default model's kind) and its package."""
    config = ModelConfig.preset("tiny", conditioning="noise-map", normalization="robust")
    bundle = random_bundle(config, noise="stem")
    path = tmp_path_factory.mktemp("bmz") / "conditioned.zip"
    return bundle, export_bioimageio(bundle, path, pixel_size=0.08)


def _rdf(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return yaml.safe_load(archive.read("rdf.yaml"))


@pytest.mark.slow
def test_exported_package_passes_bioimageio_test(cdn_package, conditioned):
    from bioimageio.core import test_model

    for path in (cdn_package, conditioned[1]):
        summary = test_model(path)
        failed = [d.name for d in summary.details if d.status == "failed"]
        assert summary.status == "passed", failed
        tested = {d.loc[1] for d in summary.details if len(d.loc) > 1 and d.loc[0] == "weights"}
        assert {"pytorch_state_dict", "torchscript"} <= tested


def test_exported_package_describes_the_model(cdn_package, conditioned):
    rdf = _rdf(cdn_package)
    assert rdf["format_version"].startswith("0.5.")
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript"}
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert arch["callable"] == "PinnedDenoiser" and arch["kwargs"]["depth"] == 3
    y_axis = rdf["inputs"][0]["axes"][1]
    assert [a["type"] for a in rdf["inputs"][0]["axes"]] == ["batch", "space", "space"]
    assert y_axis["size"] == {"min": 64, "step": 8}  # 2**depth
    assert y_axis["unit"] == "angstrom"
    assert "Awan" in rdf["cite"][0]["text"]
    assert rdf["license"] == "BSD-3-Clause"
    assert rdf["authors"] == [{"name": "A. Microscopist"}]
    assert "CDN" in rdf["training_data"]["description"]
    with zipfile.ZipFile(cdn_package) as archive:
        names = set(archive.namelist())
        readme = archive.read("README.md").decode()
    assert {"cover.png", "test_input.npy", "test_output.npy", "README.md"} <= names
    assert "## Validation" in readme and "dB" in readme and "inside the model" in readme
    quality = rdf["config"]["napari_pinned"]["quality"]
    assert quality["denoised_psnr"] > quality["noisy_psnr"] + 5
    assert quality["agreement"] <= 1e-3
    # A conditioned tiny model: depth 2, the given pixel size.
    crdf = _rdf(conditioned[1])
    assert crdf["inputs"][0]["axes"][2]["size"] == {"min": 64, "step": 4}
    assert crdf["inputs"][0]["axes"][2]["scale"] == 0.08


def test_package_loads_back_as_the_same_model(cdn_package, conditioned, lattice_image):
    original = load_model("cdn")
    back = load_package(cdn_package)
    assert isinstance(back, ModelBundle)
    assert back.config == original.config and back.metadata == original.metadata
    for name, tensor in original.model.state_dict().items():
        assert torch.equal(back.model.state_dict()[name], tensor)
    image = _cdn_like(lattice_image, (80, 96))
    np.testing.assert_array_equal(
        denoise(image, str(cdn_package), device="cpu"), denoise(image, "cdn", device="cpu")
    )
    bundle, path = conditioned
    counts = _counts(lattice_image)
    expected = denoise(counts, bundle, device="cpu")
    got = denoise(counts, load_model(path), device="cpu")
    assert np.max(np.abs(got - expected)) <= 1e-3 * float(np.ptp(expected))


def _rewrite(src, dst, change):
    """Copy a package, letting ``change(name, data)`` replace entries (None drops one)."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for info in old.infolist():
            data = change(info.filename, old.read(info.filename))
            if data is not None:
                new.writestr(info.filename, data)
    return dst


def test_tampered_weights_are_refused(conditioned, tmp_path):
    def flip(name, data):
        if name != "weights.pt":
            return data
        raw = bytearray(data)
        raw[len(raw) // 2] ^= 1
        return bytes(raw)

    bad = _rewrite(conditioned[1], tmp_path / "bad.zip", flip)
    with pytest.raises(PackageError, match="corrupted"):
        load_package(bad)


def test_pickled_code_in_our_package_is_refused_unrun(conditioned, tmp_path):
    ran = []

    class Payload:
        def __reduce__(self):
            return (list.append, (ran, "ran"))

    buffer = io.BytesIO()
    torch.save({"network.head.weight": Payload()}, buffer)
    evil = buffer.getvalue()

    def swap(name, data):
        if name == "weights.pt":
            return evil
        if name == "rdf.yaml":
            rdf = yaml.safe_load(data)
            rdf["weights"]["pytorch_state_dict"]["sha256"] = hashlib.sha256(evil).hexdigest()
            return yaml.safe_dump(rdf)
        return data

    bad = _rewrite(conditioned[1], tmp_path / "evil.zip", swap)
    with pytest.raises(PackageError, match="refused"):
        load_package(bad)
    assert ran == []


def test_a_changed_architecture_file_is_not_ours_and_needs_trust(conditioned, tmp_path):
    def edit(name, data):
        if name == packages.ARCHITECTURE_FILE:
            return data + b"\nprint('hello from the package')\n"
        return data

    other = _rewrite(conditioned[1], tmp_path / "other.zip", edit)
    with pytest.raises(PackageError, match="trust"):
        load_package(other)
    with pytest.raises(ModelFileError, match="not one this"):
        load_model(other)


def test_yaml_aliases_are_refused_before_anything_is_walked(conditioned, tmp_path):
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefghi":
        laughs += f"{level}: &{level} [" + ", ".join([f"*{chr(ord(level) - 1)}"] * 10) + "]\n"

    def bomb(name, data):
        return (data.decode() + laughs).encode() if name == "rdf.yaml" else data

    with pytest.raises(PackageError, match="YAML aliases"):
        load_package(_rewrite(conditioned[1], tmp_path / "laughs.zip", bomb))


def test_oversized_and_remote_packages_are_refused(conditioned, tmp_path, monkeypatch):
    monkeypatch.setattr(packages, "MAX_PACKAGE_BYTES", 1000)
    with pytest.raises(PackageError, match="unpacks to"):
        load_package(conditioned[1])
    monkeypatch.undo()

    def remote(name, data):
        if name == "rdf.yaml":
            rdf = yaml.safe_load(data)
            rdf["weights"]["torchscript"]["source"] = "https://example.com/w.pt"
            return yaml.safe_dump(rdf)
        return data

    with pytest.raises(PackageError, match="outside it"):
        load_package(_rewrite(conditioned[1], tmp_path / "remote.zip", remote))


# -- packages from other tools -----------------------------------------------------------


def test_foreign_onnx_package_runs_through_bioimageio_core(tmp_path, foreign_package, box_filter):
    pytest.importorskip("onnxruntime")
    path = foreign_package(tmp_path)
    model = load_package(path)
    assert isinstance(model, foreign.ForeignModel) and model.weight_format == "onnx"
    image = np.random.default_rng(1).random((2, 40, 52)).astype(np.float32)
    out = denoise(image, str(path), device="cpu")
    expected = np.stack([box_filter(f) for f in image])
    # bioimageio.core pads the input by the package's 1 px halo: the border differs
    # from the graph's zero padding, the rest is the model's.
    np.testing.assert_allclose(out[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], rtol=0, atol=1e-5)
    with pytest.raises(ModelFileError, match="not made by napari-pinned"):
        load_model(path)


def test_large_frames_use_bioimageio_cores_blocking(
    tmp_path, monkeypatch, foreign_package, box_filter
):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(foreign, "FOREIGN_BLOCK", 48)
    calls = []
    from bioimageio.core import PredictionPipeline

    real = PredictionPipeline.predict_sample_with_blocking

    def spy(self, sample, **kwargs):
        calls.append(kwargs.get("ns"))
        return real(self, sample, **kwargs)

    monkeypatch.setattr(PredictionPipeline, "predict_sample_with_blocking", spy)
    image = np.random.default_rng(2).random((100, 90)).astype(np.float32)
    out = denoise(image, str(foreign_package(tmp_path)), device="cpu")
    assert calls == [32]  # blocks of 16 + 32 px, with the package's 1 px halo
    np.testing.assert_allclose(out[1:-1, 1:-1], box_filter(image)[1:-1, 1:-1], rtol=0, atol=1e-5)


def test_foreign_code_runs_only_when_trusted(tmp_path, foreign_package, box_filter):
    path = foreign_package(tmp_path, weights="torchscript")
    with pytest.raises(PackageError, match="trust"):
        load_package(path)
    model = load_package(path, trust=True)
    image = np.random.default_rng(3).random((30, 34)).astype(np.float32)
    out = denoise(image, model, device="cpu")
    np.testing.assert_allclose(out[1:-1, 1:-1], box_filter(image)[1:-1, 1:-1], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": 3}, "3 channels"),
        ({"space": ("z", "y", "x")}, "axis 'z'"),
        ({"weights": "keras"}, "keras_hdf5"),
    ],
)
def test_unsupported_foreign_packages_say_why(tmp_path, kwargs, message, foreign_package):
    path = foreign_package(tmp_path, **kwargs)
    with pytest.raises(PackageError, match=message) as info:
        load_package(path, trust=True)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_package_json_metadata_is_plain(conditioned):
    marker = _rdf(conditioned[1])["config"]["napari_pinned"]
    assert json.loads(marker["metadata_json"])["noise"] == "stem"


# -- what export checks before any work (issue 21) -------------------------------------


def _not_loaded(*args, **kwargs):
    raise AssertionError("the model was loaded before the package's fields were checked")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"license": "NOT-A-LICENSE"}, "license NOT-A-LICENSE: not an SPDX licence identifier"),
        ({"license": "bsd-3-clause"}, "did you mean 'BSD-3-Clause'"),
        ({"authors": [""]}, "an author needs a name"),
        ({"authors": [{"affiliation": "EMBL"}]}, "an author needs a name"),
        ({"authors": ["A/B"]}, "no '/' or '\\'"),
        ({"authors": [{"name": "A", "phone": "1"}]}, "unknown author field 'phone'"),
        ({"name": "ab"}, "name 'ab': a package name has 5 to 128"),
        ({"description": "x" * 1025}, "description: at most 1024 characters"),
    ],
)
def test_export_checks_its_fields_before_loading_the_model(tmp_path, monkeypatch, kwargs, message):
    monkeypatch.setattr("napari_pinned.nn.resolve.load_model", _not_loaded)
    with pytest.raises(ValueError) as info:
        export_bioimageio("cdn", tmp_path / "p.zip", **kwargs)
    text = str(info.value)
    assert message in text and "\n" not in text and len(text) < 200, text
    assert not (tmp_path / "p.zip").exists()


def test_deprecated_spdx_identifiers_are_accepted_as_the_spec_does():
    from napari_pinned.share.bmz_export import check_package_fields

    check_package_fields(license="GPL-3.0")  # deprecated in SPDX, accepted with a warning
    check_package_fields(license="CC-BY-4.0", authors=["A. Microscopist"], name="PINNED model")


def test_a_lattice_model_is_packaged_and_loads_back(random_bundle, tmp_path):
    """The package's denoiser computes the lattice prior: export's own check against
    ``denoise`` passes, and the package loads back as the same model."""
    config = ModelConfig.preset("tiny", normalization="robust", conditioning="noise-map+lattice")
    bundle = random_bundle(config)
    path = export_bioimageio(bundle, tmp_path / "lattice.zip", torchscript=False)
    rdf = _rdf(path)
    kwargs = rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]
    assert kwargs["conditioning"] == "noise-map+lattice"
    assert rdf["config"]["napari_pinned"]["quality"]["agreement"] <= 1e-3
    back = load_package(path)
    assert back.config == config
    for name, tensor in bundle.model.state_dict().items():
        assert torch.equal(back.model.state_dict()[name], tensor)


def _aligned(lattice, shape=(256, 256), seed=0) -> np.ndarray:
    """A square lattice along the scan axes at 1000 counts: its harmonics on f_y = 0."""
    clean = lattice(max(shape), period=5.0)[: shape[0], : shape[1]]
    return np.random.default_rng(seed).poisson(clean * 1000.0 / 255.0).astype(np.float64)


def _edge(lattice, shape=(256, 256), seed=0) -> np.ndarray:
    """Lattice on the left, vacuum on the right, at 10 counts: a straight edge along y,
    the same in every line but in one place (the halves' check)."""
    clean = lattice(max(shape), period=7.0)[: shape[0], : shape[1]] / 255.0
    clean = clean * np.where(np.arange(shape[1]) < shape[1] // 2, 1.0, 0.05)[None, :]
    return np.random.default_rng(seed).poisson(clean / clean.mean() * 10.0).astype(np.float64)


@pytest.mark.parametrize(
    "make", [_striped, _counts, _afterglow, _aligned, _jittered_afterglow, _edge]
)
def test_the_package_finds_line_interference_as_napari_pinned_does(make, lattice_image):
    from napari_pinned.noise.line_pattern import line_interference

    image = make(lattice_image).astype(np.float64)
    found = line_interference(image)
    got = bmz_denoiser.line_interference_mask(torch.from_numpy(image))
    if make is _striped:
        assert found is not None
    if found is None:
        assert got is None
    else:
        assert got is not None
        np.testing.assert_array_equal(got.numpy(), found.rfft2_mask())
