"""The noise readout for the user: dose at the mean, afterglow, noise-free, not counts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from napari_pinned.noise.estimate import estimate_noise
from napari_pinned.noise.readout import noise_correlation, read_noise
from napari_pinned.physics.simulate import simulate

GAIN, OFFSET, READ = 3.7, 123.0, 0.2
# The dose read on one 256² lattice image scatters by about 8 % (1σ, measured over six
# seeds at every dose below, with and without afterglow: the spectrum's median level
# and the extrapolation to zero frequency); 30 % is more than three of those.  (An
# afterglow of 0.7 at 1000 e⁻/px reads about +18 % on average: the lattice's signal at
# the lowest frequencies the extrapolation uses.)
DOSE_TOLERANCE = 0.3


@pytest.fixture(scope="module")
def lattice() -> np.ndarray:
    return simulate("SrTiO3", shape=(256, 256), pixel_size=0.1, seed=0).image.astype(np.float64)


def _record(clean, dose, *, seed=0, afterglow=0.0, gain=GAIN, offset=OFFSET, read=READ):
    """Counts of mean ``dose`` with read noise, an exponential afterglow along x (each
    pixel keeps ``afterglow`` of the previous recorded pixel), a gain and an offset."""
    rng = np.random.default_rng(seed)
    expected = clean / clean.mean() * dose
    counts = rng.poisson(expected) + rng.normal(0.0, read, expected.shape)
    if afterglow:
        counts = signal.lfilter([1.0], [1.0, -afterglow], counts, axis=-1)
    return gain * counts + offset


@pytest.mark.parametrize("dose", [0.05, 0.3, 1.0, 20.0, 1000.0, 1e5])
def test_dose_at_the_mean_from_sparse_to_high_counts(lattice, dose):
    reading = read_noise(_record(lattice, dose, seed=3))
    assert reading.kind == "counts"
    # Read noise counts as READ² Poisson-equivalent electrons.
    assert reading.dose == pytest.approx(dose + READ**2, rel=DOSE_TOLERANCE)
    assert "e⁻/px at the mean intensity" in reading.line()


@pytest.mark.parametrize(
    ("afterglow", "dose"), [(0.3, 20.0), (0.5, 20.0), (0.7, 20.0), (0.5, 1000.0)]
)
def test_afterglow_correlated_counts_read_the_true_dose(lattice, afterglow, dose):
    image = _record(lattice, dose, seed=4, afterglow=afterglow)
    # Without the correction the dose reads several times too high.
    assert estimate_noise(image).mean_counts > 2.5 * dose
    reading = read_noise(image)
    assert reading.correlation[1] > 2.0 and reading.correlation[0] == 1.0
    assert reading.dose == pytest.approx(dose + READ**2, rel=DOSE_TOLERANCE)
    assert "correlated along x" in reading.line()


@pytest.mark.parametrize(("afterglow", "dose"), [(1.0, 3.0), (2.0, 3.0), (2.0, 20.0)])
def test_an_afterglow_with_read_noise_after_it_reads_the_true_dose(afterglow, dose):
    """A detector adds its read noise after the afterglow (``record_counts``): the fit's
    kernel sees all of it but a few % of the shot noise, so the fit's zero level lies
    far too low and the dose read 1.5–5.6× too high.  Split from the spectrum, 32 draws
    (τ = 1, 2 px at 3 and 20 e⁻/px, 0.5 e⁻ read noise, one 512² image) read 0.77–1.43 of
    the dose."""
    from napari_pinned.noise.synthesis import record_counts

    image = simulate("SrTiO3", shape=(512, 512), pixel_size=0.1, seed=0).image
    expected = image.astype(np.float64) / image.mean() * dose
    rng = np.random.default_rng(2)
    counts = record_counts(expected, rng, read_noise=0.5, afterglow=afterglow)
    reading = read_noise(GAIN * counts + OFFSET)
    assert reading.kind == "counts" and reading.correlated
    assert reading.dose == pytest.approx(dose + 0.25, rel=0.45)


@pytest.mark.parametrize("dose", [3.0, 100.0])
def test_stripes_the_same_in_every_line_are_named_and_the_dose_kept(lattice, dose):
    from napari_pinned.noise.scanning import line_pattern

    plain = _record(lattice, dose, seed=6)
    pattern = line_pattern(256, 0.3 * np.sqrt(dose + READ**2), np.random.default_rng(1))
    striped = plain + GAIN * pattern[None, :]
    reading, before = read_noise(striped), read_noise(plain)
    assert reading.stripes and not before.stripes
    assert "stripes the same in every scan line" in reading.line()
    assert "stripes" not in before.line()
    assert reading.to_dict()["stripes"] is True
    # Stripes of 0.3 of the noise RMS leave the dose read within the readout's scatter.
    assert reading.dose == pytest.approx(before.dose, rel=DOSE_TOLERANCE)


def test_white_noise_is_not_corrected(lattice):
    assert noise_correlation(_record(lattice, 20.0, seed=5)) == (1.0, 1.0)


def test_blank_poisson_frame_reads_its_counts():
    blank = np.random.default_rng(2).poisson(20.0, (256, 256)).astype(np.uint16)
    reading = read_noise(blank)
    assert reading.kind == "counts"
    assert reading.dose == pytest.approx(20.0, rel=0.15)  # _FLAT_TOLERANCE's statistics


def test_sparse_counts_are_counted(lattice):
    sparse = _record(lattice, 0.05, seed=6, gain=1.0, offset=0.0, read=0.0)
    reading = read_noise(sparse)
    assert reading.kind == "counts" and reading.quantum == 1.0
    assert reading.dose == pytest.approx(0.05, rel=DOSE_TOLERANCE)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_noise_free_images_say_so(lattice, dtype):
    image = lattice / lattice.max() * 60000.0
    reading = read_noise(image.round().astype(dtype) if dtype is np.uint16 else image.astype(dtype))
    assert reading.kind == "noise-free" and reading.dose is None
    assert reading.line() == "no noise measurable (the image looks noise-free)"


def test_an_8_bit_export_finer_than_an_electron_is_still_counts(lattice):
    # At 2 e⁻/px the brightest pixel holds ~50 electrons: ~5 levels per electron.
    counts = _record(lattice, 2.0, seed=7, gain=1.0, offset=0.0, read=0.0)
    export = np.round(counts / counts.max() * 255.0).astype(np.uint8)
    reading = read_noise(export)
    assert reading.kind == "counts"
    assert reading.dose == pytest.approx(2.0, rel=DOSE_TOLERANCE)


def test_an_8_bit_export_is_not_counts(lattice):
    counts = _record(lattice, 1000.0, seed=7, gain=1.0, offset=0.0, read=0.0)
    export = np.round(counts / counts.max() * 255.0).astype(np.uint8)
    reading = read_noise(export)
    assert reading.kind == "not-counts" and reading.dose is None
    line = reading.line()
    assert "coarser than one electron" in line and "denoised with the measured noise" in line
    assert "\n" not in line


def test_gaussian_noise_below_zero_is_not_counts(lattice):
    image = lattice + np.random.default_rng(8).normal(0.0, 5.0, lattice.shape)
    reading = read_noise(image)
    assert reading.kind == "not-counts" and "negative values" in reading.reason
    positive = read_noise(image + 100.0)
    assert positive.kind == "gaussian" and "does not rise with intensity" in positive.line()


def test_reading_keeps_the_models_estimate(lattice):
    image = _record(lattice, 20.0, seed=9)
    estimate = estimate_noise(image)
    reading = read_noise(image, estimate=estimate)
    assert reading.estimate is estimate
    assert reading.to_dict()["line"] == reading.line()


def test_the_models_estimate_reads_as_the_fit_does(lattice):
    from napari_pinned.nn.conditioning import measure_noise

    image = _record(lattice, 20.0, seed=10, afterglow=0.5)
    told = measure_noise(image)  # scaled to the noise a pixel carries
    assert told.correlation > 1.5
    # The readout reads the spectrum itself: the dock's estimate gives the same line.
    assert read_noise(image, estimate=told).line() == read_noise(image).line()


def test_subtracted_backgrounds_and_beam_fractions_read_the_detected_dose(lattice):
    """Values that are counts minus a smooth background, or counts over the incident beam,
    are not the detector's raw counts, but their noise still says how many electrons
    were detected: the dose read is that one (±30 %, the scatter of one 256² image), so
    the model is told the right noise."""
    y, x = np.mgrid[0:256, 0:256]
    background = 10.0 * (0.5 + 0.5 * np.sin(x / 60.0) * np.cos(y / 80.0))
    expected = lattice / lattice.mean() * 20.0
    expected[:, :50] = 0.0  # a strip of vacuum: the subtracted values go negative there
    counts = np.random.default_rng(11).poisson(expected + background).astype(float)
    detected = float(np.mean(expected + background))
    for values in (counts - background, counts / 3.1e4):
        reading = read_noise(values)
        assert reading.kind == "counts"
        assert reading.dose == pytest.approx(detected, rel=DOSE_TOLERANCE)
