"""The faithfulness readout: did a denoiser remove or invent lattice structure?

Every case is a simulated image with Poisson noise from a fixed seed.  Where a test bounds
a measured amplitude ratio it uses the ratio's own statistics: a reflection whose power
above the floor is ``snr`` times the floor's power in its 3×3 box (nine bins of mean noise
power μ each) carries signal power ``S = 9 · snr · μ``, and the cross term of signal and
noise, of variance ``2 S μ``, moves its amplitude by ``1 / sqrt(18 · snr)`` rms.  (Over
1900 reflections of faithful outputs the measured spread was 0.65–0.9 of that.)  A bound
of 4 such standard deviations fails by chance with odds below 1 in 10⁴ per reflection.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy import ndimage

from napari_pinned.physics.probe import AberratedProbe
from napari_pinned.physics.rendering import render_columns
from napari_pinned.physics.simulate import simulate
from napari_pinned.physics.tiling import ColumnSet
from napari_pinned.quality.faithfulness import (
    MIN_KEPT_FRACTION,
    Faithfulness,
    faithfulness,
    faithfulness_stack,
)
from napari_pinned.quality.reflections import INVENTED_RATIO, KEPT_TOLERANCE

PIXEL = 0.1  # Å
SIZE = 256
DOSE = 20.0  # mean detected electrons per pixel


def _sigma(snr: float) -> float:
    """Standard deviation of a reflection's amplitude ratio from the input's noise."""
    return 1.0 / np.sqrt(18.0 * snr)


@pytest.fixture(scope="module")
def srtio3():
    """SrTiO3 [001] columns and the clean image, scaled to DOSE counts per pixel."""
    result = simulate("SrTiO3", shape=SIZE, pixel_size=PIXEL, seed=0)
    full = render_columns(result.columns, (SIZE, SIZE), PIXEL, AberratedProbe())
    scale = DOSE / full.mean()
    return result.columns, full * scale, scale


@pytest.fixture(scope="module")
def lattice(srtio3):
    """(noisy input, clean image) of SrTiO3 [001]."""
    _, clean, _ = srtio3
    noisy = np.random.default_rng(1).poisson(clean).astype(np.float64)
    return noisy, clean


@pytest.fixture(scope="module")
def amorphous():
    """(noisy input, clean image) of randomly placed atoms: no lattice at all."""
    rng = np.random.default_rng(2)
    n_atoms = int(SIZE * SIZE * PIXEL**2 / 1.5)  # one atom per 1.5 Å²
    positions = rng.uniform(-5, SIZE + 5, (n_atoms, 2))
    weights = rng.uniform(0.5, 1.5, n_atoms)
    clean = render_columns(ColumnSet(positions, weights), (SIZE, SIZE), PIXEL, AberratedProbe())
    clean *= 10.0 / clean.mean()
    noisy = np.random.default_rng(3).poisson(clean).astype(np.float64)
    return noisy, clean


def _check_ratios(result: Faithfulness, expected: float, peaks=None) -> None:
    for p in result.peaks if peaks is None else peaks:
        assert abs(p.ratio - expected) <= 4.0 * _sigma(p.snr) * expected, p


# ------------------------------------------------------------------------ faithful outputs


def test_identity_is_faithful(lattice):
    noisy, _ = lattice
    result = faithfulness(noisy, noisy, pixel_size=PIXEL)
    assert result.faithful
    assert result.n_peaks >= 20  # a 256² SrTiO3 image at 20 e⁻/px has many reflections
    assert result.kept_fraction == 1.0
    # Both floors are removed, so an unchanged image has ratio 1 exactly.
    np.testing.assert_allclose([p.ratio for p in result.peaks], 1.0, atol=1e-9)
    assert all(p.residual_share == 0.0 for p in result.peaks)
    assert result.n_invented == 0
    assert result.residual_noise_ratio == 0.0
    assert any("most of the noise is still in the output" in w for w in result.warnings)


def test_clean_output_is_faithful(lattice):
    noisy, clean = lattice
    result = faithfulness(noisy, clean, pixel_size=PIXEL)
    assert result.faithful, result.warnings
    assert result.kept_fraction >= MIN_KEPT_FRACTION
    _check_ratios(result, 1.0)
    assert result.n_invented == 0
    assert result.n_in_residual == 0
    # The residual is the noise itself; the band allows for the noise model's fit on a
    # lattice image (the sample variance of 65k pixels is good to 0.6 %).
    assert 0.75 < result.residual_noise_ratio < 1.25
    assert result.warnings == ()
    assert result.summary().startswith("faithful: ")


def test_d_spacings_are_refined_between_bins(lattice):
    """SrTiO3's (100) lies 6.56 bins from zero; the nearest bin alone would give
    d = 3.66 Å, the refined frequency gets a = 3.905 Å to about 1 %."""
    noisy, clean = lattice
    result = faithfulness(noisy, clean, pixel_size=PIXEL)
    first_order = [p for p in result.peaks if 3.4 < p.d_spacing < 4.4]
    assert len(first_order) == 2  # (100) and (010)
    for p in first_order:
        assert p.d_spacing == pytest.approx(3.905, rel=0.015)


def test_reflections_count_each_friedel_pair_once(lattice):
    noisy, clean = lattice
    result = faithfulness(noisy, clean)
    indices = {p.index for p in result.peaks}
    assert len(indices) == result.n_peaks
    for ky, kx in indices:
        assert kx >= 0
        assert (-ky, -kx) not in indices or (ky, kx) == (0, 0)
    assert all(p.d_spacing is None for p in result.peaks)  # no pixel size given


@pytest.mark.parametrize("fast_axis", ["x", "y"])
def test_line_noise_is_not_taken_for_a_lattice(lattice, fast_axis):
    """Scan-line offsets put a streak along ky at kx = 0 (along kx at ky = 0 when the fast
    scan runs along y, as in some real files); reflections on it are measured against the
    streak, and the streak itself is not a reflection, over the whole field and in every
    window."""
    noisy, clean = lattice
    shape = (SIZE, 1) if fast_axis == "x" else (1, SIZE)
    lines = np.random.default_rng(4).normal(0.0, 0.5 * np.sqrt(DOSE), shape)
    result = faithfulness(noisy + lines, clean, pixel_size=PIXEL)
    assert result.faithful, result.warnings
    assert result.kept_fraction >= MIN_KEPT_FRACTION
    assert result.n_invented == 0


@pytest.mark.parametrize(("kind", "blur"), [("flat", 2.0), ("amorphous", 1.0)])
def test_no_lattice_smooth_output_has_nothing_to_check(kind, blur, amorphous):
    """(A 2 px blur of the amorphous image removes its atoms, over twice the noise's
    variance: tests/quality/test_local_faithfulness.py fails it.)"""
    if kind == "flat":
        noisy = np.random.default_rng(5).poisson(np.full((SIZE, SIZE), 10.0)).astype(float)
    else:
        noisy, _ = amorphous
    result = faithfulness(noisy, ndimage.gaussian_filter(noisy, blur), pixel_size=PIXEL)
    assert result.faithful
    assert result.n_peaks == 0
    assert result.kept_fraction is None
    assert result.n_invented == 0
    assert "no lattice reflections stand above the noise: nothing to check" in result.warnings


# -------------------------------------------------------------------- unfaithful outputs


def test_heavy_blur_is_not_faithful(lattice):
    noisy, _ = lattice
    result = faithfulness(noisy, ndimage.gaussian_filter(noisy, 3.0), pixel_size=PIXEL)
    assert not result.faithful
    # A Gaussian of 3 px keeps exp(−2π²σ²f²) of a reflection: under 75 % beyond
    # f = 0.043 cycles/px (d = 2.3 Å), where most of the lattice's reflections lie.
    assert result.kept_fraction < 0.5
    lost = [w for w in result.warnings if "lost more than 25 % of their amplitude" in w]
    assert lost[0].startswith(f"{result.n_peaks - result.n_kept} of ")
    assert result.n_in_residual >= result.n_peaks // 2
    assert result.residual_noise_ratio > 1.5
    assert result.summary().startswith("NOT faithful: ")


def test_erased_ti_o_sublattice_is_not_faithful(srtio3, lattice):
    """Erasing the Ti–O columns of SrTiO3 [001] changes each reflection by a ratio of
    structure factors: F(100) = w_Sr − w_TiO becomes w_Sr, and F(110) = w_Sr + w_TiO − 2 w_O
    becomes w_Sr − 2 w_O (Sr at the corner, Ti–O at the centre, O at the edge centres)."""
    columns, _, scale = srtio3
    noisy, _ = lattice
    types = np.unique(columns.column_type)
    mean_weight = {t: columns.weights[columns.column_type == t].mean() for t in types}
    by_weight = sorted(types, key=lambda t: -mean_weight[t])
    sr, tio, oxygen = by_weight[0], by_weight[1], by_weight[2]
    keep = columns.column_type != tio
    erased = render_columns(
        ColumnSet(columns.positions[keep], columns.weights[keep]),
        (SIZE, SIZE),
        PIXEL,
        AberratedProbe(),
    )
    result = faithfulness(noisy, erased * scale, pixel_size=PIXEL)
    assert not result.faithful
    assert result.kept_fraction < 0.5
    w_sr, w_tio, w_o = mean_weight[sr], mean_weight[tio], mean_weight[oxygen]
    first = [p for p in result.peaks if 3.4 < p.d_spacing < 4.4]  # (100), (010)
    second = [p for p in result.peaks if 2.6 < p.d_spacing < 2.9]  # (110), (1-10)
    assert len(first) == 2 and len(second) == 2
    _check_ratios(result, w_sr / (w_sr - w_tio), first)  # 1.87: gained
    _check_ratios(result, (w_sr - 2 * w_o) / (w_sr + w_tio - 2 * w_o), second)  # 0.65: lost
    assert any("lost more than 25 %" in w for w in result.warnings)
    assert any("gained more than 25 %" in w for w in result.warnings)


def test_erased_superlattice_reflections_drop():
    """Heavy columns on a square lattice of period p and light ones at the centres of
    every other cell (a checkerboard): the light sublattice alone makes the superlattice
    reflections at half-integer multiples of 1/p, and erasing it removes them."""
    period = 20.0  # px
    grid = np.arange(-2, SIZE / period + 3)
    ii, jj = np.meshgrid(grid, grid, indexing="ij")
    heavy = np.stack([ii.ravel(), jj.ravel()], axis=1) * period
    light = heavy[((ii + jj) % 2 == 0).ravel()] + period / 2
    probe = AberratedProbe()
    both = render_columns(
        ColumnSet(np.vstack([heavy, light]), np.r_[np.full(len(heavy), 3.0), np.ones(len(light))]),
        (SIZE, SIZE),
        PIXEL,
        probe,
    )
    only_heavy = render_columns(
        ColumnSet(heavy, np.full(len(heavy), 3.0)), (SIZE, SIZE), PIXEL, probe
    )
    scale = DOSE / both.mean()
    noisy = np.random.default_rng(6).poisson(both * scale).astype(np.float64)

    faithful = faithfulness(noisy, both * scale, pixel_size=PIXEL)
    assert faithful.faithful

    result = faithfulness(noisy, only_heavy * scale, pixel_size=PIXEL)
    assert not result.faithful
    half_integer = [
        p
        for p in result.peaks
        if np.all(np.abs(np.abs(np.array(p.frequency) * period) % 1.0 - 0.5) < 0.1)
    ]
    assert len(half_integer) >= 4
    for p in half_integer:
        # The output has no power there: only its floor, a ratio of 0 ± noise.
        assert p.ratio < 1.0 - KEPT_TOLERANCE
        assert p.ratio < 4.0 * _sigma(p.snr)
        assert p.in_residual
    assert any("erased a sublattice" in w for w in result.warnings)
    assert any("the residual (input − output) still shows" in w for w in result.warnings)


def test_invented_lattice_on_amorphous_input(amorphous):
    noisy, _ = amorphous
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    # Fringes of 8 px with the amplitude of the noise: plainly visible in a smooth output.
    amplitude = np.sqrt(noisy.mean())
    pattern = amplitude * (np.cos(2 * np.pi * x / 8) + np.cos(2 * np.pi * y / 8))
    result = faithfulness(noisy, ndimage.gaussian_filter(noisy, 2.0) + pattern, pixel_size=PIXEL)
    assert not result.faithful
    assert result.n_peaks == 0
    assert result.n_invented == 2
    found = sorted(tuple(np.round(np.abs(p.frequency) * 8, 2)) for p in result.invented)
    assert found == [(0.0, 1.0), (1.0, 0.0)]
    for p in result.invented:
        assert p.ratio > INVENTED_RATIO
        assert p.d_spacing == pytest.approx(0.8, rel=0.01)
        # The fringe amplitude in image units: exact for a reflection on a bin.
        assert p.output_amplitude == pytest.approx(amplitude, rel=0.1)
    assert any(
        w.startswith("2 reflections in the output that the input does not have")
        for w in result.warnings
    )
    assert any(w.endswith("invented structure") for w in result.warnings)


# ------------------------------------------------------------------------------- contract


@pytest.mark.parametrize("blur", [0.0, 3.0])
def test_gain_and_offset_leave_the_verdict_unchanged(lattice, blur):
    noisy, clean = lattice
    output = ndimage.gaussian_filter(noisy, blur) if blur else clean
    base = faithfulness(noisy, output, pixel_size=PIXEL)
    gain, offset = 3.7, 250.0
    scaled = faithfulness(gain * noisy + offset, gain * output + offset, pixel_size=PIXEL)
    assert scaled.faithful == base.faithful
    assert scaled.kept_fraction == base.kept_fraction
    assert scaled.n_invented == base.n_invented
    assert [p.index for p in scaled.peaks] == [p.index for p in base.peaks]
    np.testing.assert_allclose(
        [p.ratio for p in scaled.peaks], [p.ratio for p in base.peaks], rtol=1e-6
    )
    np.testing.assert_allclose(
        [p.input_amplitude for p in scaled.peaks],
        [gain * p.input_amplitude for p in base.peaks],
        rtol=1e-6,
    )
    assert scaled.residual_noise_ratio == pytest.approx(base.residual_noise_ratio, rel=1e-2)

    # The same findings; the residual ratio may differ in its last printed digit (the
    # noise fit is equivariant to about 1e-3).
    def findings(result):
        return [re.sub(r"[0-9.]+×", "#×", w) for w in result.warnings]

    assert findings(scaled) == findings(base)


def test_integer_input_and_given_noise(lattice):
    noisy, clean = lattice
    counts = noisy.astype(np.uint16)
    default = faithfulness(counts, clean.astype(np.float32), pixel_size=PIXEL)
    given = faithfulness(counts, clean, noise=np.sqrt(DOSE), pixel_size=PIXEL)
    assert default.faithful and given.faithful
    assert [p.index for p in given.peaks] == [p.index for p in default.peaks]
    # Poisson noise of DOSE counts at the mean: σ² = DOSE on average.
    assert given.noise_variance == pytest.approx(DOSE)


def test_result_is_json_and_deterministic(lattice):
    noisy, _ = lattice
    output = ndimage.gaussian_filter(noisy, 3.0)
    first = faithfulness(noisy, output, pixel_size=PIXEL).to_dict()
    text = json.dumps(first, allow_nan=False)
    assert json.loads(text) == first
    assert faithfulness(noisy, output, pixel_size=PIXEL).to_dict() == first
    assert first["faithful"] is False
    assert "\n" not in first["summary"]
    assert first["n_peaks"] == len(first["peaks"])


def test_stack_is_checked_frame_by_frame(lattice):
    noisy, clean = lattice
    stack_in = np.stack([noisy, noisy])
    stack_out = np.stack([clean, ndimage.gaussian_filter(noisy, 3.0)])
    results = faithfulness_stack(stack_in, stack_out, pixel_size=PIXEL)
    assert [r.faithful for r in results] == [True, False]
    assert len(faithfulness_stack(noisy, clean)) == 1


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "message"),
    [
        (np.zeros((64, 64)), np.zeros((64, 63)), {}, "shape"),
        (np.zeros((2, 64, 64)), np.zeros((2, 64, 64)), {}, "2D"),
        (np.zeros((16, 64)), np.zeros((16, 64)), {}, "too small"),
        (np.zeros((64, 64)), np.zeros((64, 64)), {"pixel_size": -1.0}, "pixel_size"),
        (np.zeros((64, 64)), np.full((64, 64), np.nan), {}, "NaN"),
    ],
)
def test_bad_arguments_raise(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        faithfulness(a, b, **kwargs)


def test_constant_images_have_nothing_to_check():
    result = faithfulness(np.full((64, 64), 7.0), np.full((64, 64), 7.0))
    assert result.faithful
    assert result.n_peaks == 0 and result.n_invented == 0
    assert result.residual_noise_ratio is None


def test_interference_the_same_in_every_line_is_not_a_reflection():
    # Stripes the same in every line beyond a probe's band are not checked as lattice
    # reflections: removing them is not losing structure.
    from napari_pinned.noise.synthesis import StemRecording, record_stem_image
    from napari_pinned.physics.simulate import simulate

    clean = simulate("SrTiO3", shape=384, pixel_size=0.1, rotation=23.0, seed=3).image
    recording = StemRecording(10.0, read_noise=0.5, line_pattern=0.3 * np.sqrt(10.25))
    noisy, truth = record_stem_image(clean, recording, np.random.default_rng(2))
    report = faithfulness(noisy, truth)
    assert report.faithful, report.summary()
    assert all(abs(p.frequency[0]) > 0.01 or abs(p.frequency[1]) < 0.25 for p in report.peaks)
