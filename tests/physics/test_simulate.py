from __future__ import annotations

import itertools
import math
import shutil

import numpy as np
import pytest
from scipy import ndimage, optimize, special

from napari_pinned.physics.materials import get_material, load_material
from napari_pinned.physics.probe import (
    AberratedProbe,
    GaussianProbe,
    electron_wavelength,
    probe_fwhm,
    probe_image,
)
from napari_pinned.physics.ranges import SimulationRanges, SpecimenRanges
from napari_pinned.physics.rendering import (
    render_columns,
    render_margin,
    simulation_canvas_pixels,
)
from napari_pinned.physics.simulate import (
    SimulationResult,
    matched_specimens,
    random_simulation,
    random_specimen,
    simulate,
)
from napari_pinned.physics.tiling import ColumnSet

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _moments(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Centroid (row, col) and the per-axis variance (px²), averaged over both axes."""
    rows, cols = np.indices(image.shape)
    total = image.sum()
    centre = np.array([(image * rows).sum(), (image * cols).sum()]) / total
    var = (image * (rows - centre[0]) ** 2).sum() + (image * (cols - centre[1]) ** 2).sum()
    return centre, var / (2 * total)


def _airy_fwhm(wavelength: float, alpha: float) -> float:
    """FWHM of the Airy intensity (2 J1(v)/v)², v = 2π α r / λ, solved numerically."""
    v_half = optimize.brentq(lambda v: (2 * special.j1(v) / v) ** 2 - 0.5, 0.5, 3.0)
    return 2 * v_half / (2 * np.pi) * wavelength / alpha


def _peaks(image: np.ndarray) -> np.ndarray:
    """Local maxima refined to sub-pixel by a parabola through 3 samples per axis."""
    is_max = (ndimage.maximum_filter(image, size=5) == image) & (image > 0.2 * image.max())
    r, c = np.nonzero(is_max[1:-1, 1:-1])
    r, c = r + 1, c + 1
    out = []
    for i, j in zip(r, c, strict=True):
        offsets = []
        for lo, mid, hi in (
            (image[i - 1, j], image[i, j], image[i + 1, j]),
            (image[i, j - 1], image[i, j], image[i, j + 1]),
        ):
            denom = lo - 2 * mid + hi
            offsets.append(0.5 * (lo - hi) / denom if denom != 0 else 0.0)
        out.append((i + offsets[0], j + offsets[1]))
    return np.array(out)


# ----------------------------------------------------------------------------- probes


def test_electron_wavelength_matches_relativistic_values():
    assert electron_wavelength(200) == pytest.approx(0.02508, abs=1e-5)
    assert electron_wavelength(300) == pytest.approx(0.01969, abs=1e-5)
    assert electron_wavelength(300) < electron_wavelength(200) < electron_wavelength(80)
    with pytest.raises(ValueError, match="voltage_kv"):
        electron_wavelength(0)


def test_gaussian_probe_image_has_requested_width_and_unit_sum():
    pixel = 0.1
    fwhm = 0.8
    img = probe_image(GaussianProbe(fwhm), (64, 64), pixel)
    assert img.dtype == np.float64
    assert img.sum() == pytest.approx(1.0, abs=1e-12)
    centre, var = _moments(img)
    np.testing.assert_allclose(centre, [32, 32], atol=1e-9)
    # Pixel integration adds a box's variance of 1/12 px².
    expected = (fwhm / FWHM_PER_SIGMA / pixel) ** 2 + 1 / 12
    assert var == pytest.approx(expected, rel=1e-4)
    assert probe_fwhm(GaussianProbe(fwhm)) == pytest.approx(fwhm, abs=0.1 * 0.02)


def test_aberration_free_point_source_probe_is_the_airy_pattern():
    probe = AberratedProbe(voltage_kv=200, convergence_mrad=22, source_size=0.0)
    expected = _airy_fwhm(electron_wavelength(200), 0.022)
    assert expected == pytest.approx(0.5866, abs=1e-3)  # 0.5145 λ/α
    assert probe_fwhm(probe) == pytest.approx(expected, rel=0.01)
    # Higher voltage or a larger aperture gives a finer probe, λ/α scaling.
    assert probe_fwhm(AberratedProbe(voltage_kv=300, source_size=0.0)) == pytest.approx(
        expected * electron_wavelength(300) / electron_wavelength(200), rel=0.01
    )
    assert probe_fwhm(AberratedProbe(convergence_mrad=30, source_size=0.0)) == pytest.approx(
        expected * 22 / 30, rel=0.01
    )


def test_source_size_broadens_the_probe_monotonically():
    widths = [probe_fwhm(AberratedProbe(source_size=s)) for s in (0.0, 0.15, 0.3, 0.6)]
    assert all(a < b for a, b in itertools.pairwise(widths))
    # Default probe: between the Airy core and the Gaussian-quadrature upper estimate.
    assert 0.59 < widths[2] < math.hypot(widths[0], 0.3) + 0.02


def test_defocus_broadens_and_its_sign_is_relative_to_cs():
    base = probe_fwhm(AberratedProbe(source_size=0.0))
    plus = probe_fwhm(AberratedProbe(defocus=100.0, source_size=0.0))
    minus = probe_fwhm(AberratedProbe(defocus=-100.0, source_size=0.0))
    assert plus > base * 1.05
    assert plus == pytest.approx(minus, rel=1e-6)  # Cs = 0: the sign cannot matter
    # χ = π λ Δf k² + π/2 Cs λ³ k⁴: negative defocus balances positive Cs.
    balanced = probe_fwhm(AberratedProbe(cs_mm=0.01, defocus=-30.0, source_size=0.0))
    worse = probe_fwhm(AberratedProbe(cs_mm=0.01, defocus=30.0, source_size=0.0))
    assert balanced < worse


def test_aberrated_probe_image_is_centred_non_negative_and_normalised():
    img = probe_image(AberratedProbe(defocus=40.0, cs_mm=0.005), (240, 250), 0.1)
    assert img.min() >= 0
    assert img.sum() == pytest.approx(1.0, abs=1e-12)
    centre, _ = _moments(img)
    np.testing.assert_allclose(centre, [120, 125], atol=1e-6)
    assert np.unravel_index(np.argmax(img), img.shape) == (120, 125)


def test_probe_parameters_are_validated():
    with pytest.raises(ValueError, match="fwhm"):
        GaussianProbe(0.0)
    with pytest.raises(ValueError, match="convergence_mrad"):
        AberratedProbe(convergence_mrad=-1)
    with pytest.raises(ValueError, match="source_size"):
        AberratedProbe(source_size=-0.1)
    with pytest.raises(ValueError, match="defocus"):
        AberratedProbe(defocus=float("nan"))
    with pytest.raises(ValueError, match="probe"):
        probe_image("gaussian", (8, 8), 0.1)  # type: ignore[arg-type]


# -------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("probe", [GaussianProbe(0.8), AberratedProbe()])
def test_single_column_keeps_its_position_and_weight(probe):
    position = (127.3, 130.62)
    cols = ColumnSet(np.array([position]), np.array([7.5]))
    img = render_columns(cols, (256, 256), 0.1, probe)
    assert img.dtype == np.float64
    assert img.min() >= 0
    assert img.sum() == pytest.approx(7.5, rel=1e-6)
    centre, _ = _moments(img)
    np.testing.assert_allclose(centre, position, atol=0.02)


@pytest.mark.parametrize("pixel", [0.1, 0.2])
def test_sub_pixel_columns_match_the_exact_pixel_integrated_gaussian(pixel):
    fwhm = 0.8
    sigma = fwhm / FWHM_PER_SIGMA / pixel
    worst = 0.0
    for offset in ((0.0, 0.0), (0.5, 0.5), (0.25, 0.7), (0.9, 0.1)):
        position = np.array([20.0, 21.0]) + offset
        img = render_columns(
            ColumnSet(position[None], np.array([1.0])), (41, 43), pixel, GaussianProbe(fwhm)
        )
        edges = [
            (np.arange(n + 1) - 0.5 - c) / (sigma * math.sqrt(2))
            for n, c in zip(img.shape, position, strict=True)
        ]
        exact = np.outer(*(0.5 * np.diff(special.erf(e)) for e in edges))
        worst = max(worst, np.abs(img - exact).max() / exact.max())
    # Bilinear splatting would be off by 2 % (0.1 Å/px) and 7 % (0.2 Å/px) of the peak.
    assert worst < {0.1: 1e-3, 0.2: 1e-2}[pixel]


def test_rendering_is_linear_in_the_columns():
    a = ColumnSet(np.array([[20.25, 30.5]]), np.array([1.0]))
    b = ColumnSet(np.array([[40.0, 10.75]]), np.array([3.0]))
    both = ColumnSet(
        np.array([[20.25, 30.5], [40.0, 10.75], [20.25, 30.5]]), np.array([1.0, 3.0, 1.0])
    )
    probe = GaussianProbe(1.0)
    expected = 2 * render_columns(a, (64, 64), 0.1, probe) + render_columns(b, (64, 64), 0.1, probe)
    np.testing.assert_allclose(
        render_columns(both, (64, 64), 0.1, probe), expected, atol=1e-12 * expected.max()
    )


def test_margin_column_lights_only_the_near_edge_without_wrap_around():
    probe = GaussianProbe(0.8)  # σ = 3.4 px, kernel cut at 7σ = 24 px
    cols = ColumnSet(np.array([[32.0, -3.0]]), np.array([1.0]))
    img = render_columns(cols, (64, 64), 0.1, probe)
    assert img[:, :3].sum() > 0.1
    assert img[:, 30:].max() < 1e-12 * img.max()
    # The part inside the field is exactly that of the same column in a wider field.
    wide = render_columns(
        ColumnSet(np.array([[32.0, 47.0]]), np.array([1.0])), (64, 114), 0.1, probe
    )
    np.testing.assert_allclose(img, wide[:, 50:], atol=1e-12)


def test_aberrated_probe_tails_do_not_wrap_to_the_opposite_edge():
    cols = ColumnSet(np.array([[-2.0, 100.0], [100.0, 201.5]]), np.array([1.0, 1.0]))
    img = render_columns(cols, (200, 200), 0.2, AberratedProbe())
    assert img[0, 100] > 100 * img[150:, :].max()
    assert img[150:, :150].max() < 1e-12 * img.max()
    assert img[:50, :50].max() < 1e-12 * img.max()


def test_columns_far_outside_or_absent_give_a_blank_image():
    far = ColumnSet(np.array([[-1000.0, -1000.0], [5000.0, 20.0]]), np.array([1.0, 1.0]))
    assert not render_columns(far, (32, 32), 0.1, AberratedProbe()).any()
    empty = ColumnSet(np.zeros((0, 2)), np.zeros(0))
    assert not render_columns(empty, (32, 48), 0.1, GaussianProbe()).any()


def test_debye_waller_blur_adds_half_the_mean_square_displacement():
    pixel, u = 0.1, 0.3
    cols = ColumnSet(np.array([[64.0, 64.0]]), np.array([1.0]))
    sharp = render_columns(cols, (128, 128), pixel, GaussianProbe(0.8))
    rng = np.random.default_rng(1)
    smeared = render_columns(cols, (128, 128), pixel, GaussianProbe(0.8), debye_waller=u, rng=rng)
    _, var0 = _moments(sharp)
    _, var1 = _moments(smeared)
    assert var1 - var0 == pytest.approx(u**2 / 2 / pixel**2, rel=1e-3)
    again = render_columns(
        cols, (128, 128), pixel, GaussianProbe(0.8), debye_waller=u, rng=np.random.default_rng(1)
    )
    np.testing.assert_array_equal(smeared, again)


# ------------------------------------------------------------------------- simulation


def test_simulate_returns_a_labelled_float32_image_with_columns_in_view():
    result = simulate("SrTiO3", shape=(96, 128), pixel_size=0.1, seed=0)
    assert isinstance(result, SimulationResult)
    assert result.image.shape == (96, 128)
    assert result.image.dtype == np.float32
    assert result.label() == "SrTiO3 [001]"
    assert result.zone == (0, 0, 1)
    assert result.pixel_size == 0.1
    pos = result.columns.positions
    assert pos.shape[1] == 2 and len(pos) == len(result.columns.weights) > 20
    assert np.all(pos >= -0.5) and np.all(pos < np.array([96, 128]) - 0.5)


def test_image_maps_to_floor_and_ceiling_with_background():
    plain = simulate("Si", shape=96, floor=10.0, ceiling=200.0, seed=3)
    assert plain.image.max() == pytest.approx(200.0, abs=1e-3)
    assert plain.image.min() >= 10.0
    b = 0.25
    lifted = simulate("Si", shape=96, floor=10.0, ceiling=200.0, background=b, seed=3)
    expected = 10.0 + b * 190.0 + (1 - b) * (plain.image - 10.0)
    np.testing.assert_allclose(lifted.image, expected, atol=1e-3)
    varied = simulate(
        "Si", shape=96, floor=10.0, ceiling=200.0, background=b, background_variation=0.5, seed=3
    )
    dip = lifted.image - varied.image
    assert dip.min() >= -1e-3
    assert dip.max() == pytest.approx(190.0 * b * 0.5, rel=1e-3)
    assert dip.std() > 1.0


def test_simulation_is_reproducible_from_the_seed():
    kwargs = {"shape": 80, "vacancy_fraction": 0.1, "debye_waller": 0.1}
    a = simulate("AlGaN", seed=11, **kwargs)
    b = simulate("AlGaN", seed=np.random.default_rng(11), **kwargs)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.columns.positions, b.columns.positions)
    np.testing.assert_array_equal(a.columns.weights, b.columns.weights)
    c = simulate("AlGaN", seed=12, **kwargs)
    assert not np.array_equal(a.image, c.image)


def test_static_debye_waller_offsets_have_the_documented_rms():
    pixel, u = 0.1, 0.2
    ideal = simulate("SrTiO3", shape=192, pixel_size=pixel, debye_waller=0.0, seed=4)
    moved = simulate("SrTiO3", shape=192, pixel_size=pixel, debye_waller=u, seed=4)
    tree = ideal.columns.positions
    # Offsets (~1.4 px) are far below the 19.5 px column spacing: nearest = same column.
    # Away from the edges every moved column's unmoved twin is in the field too.
    pos = moved.columns.positions
    pos = pos[np.all((pos > 10) & (pos < 182), axis=1)]
    dist = np.linalg.norm(pos[:, None] - tree[None], axis=-1)
    delta = pos - tree[np.argmin(dist, axis=1)]
    n = delta.size
    rms = np.sqrt(np.mean(delta**2))
    expected = u / math.sqrt(2) / pixel
    # The standard error of an rms estimated from n normal samples is rms / sqrt(2n).
    assert rms == pytest.approx(expected, abs=4 * expected / math.sqrt(2 * n))


def test_heavier_columns_are_brighter():
    for name, zone in (("SrTiO3", (0, 0, 1)), ("GaN", (1, 1, -2, 0))):
        result = simulate(name, zone, shape=128, seed=0, debye_waller=0.0)
        pos = np.rint(result.columns.positions).astype(int)
        inner = np.all((pos >= 0) & (pos < 128), axis=1)
        values = result.image[pos[inner, 0], pos[inner, 1]]
        weights = result.columns.weights[inner]
        classes = np.unique(np.round(weights, 6))
        means = [values[np.isclose(weights, w)].mean() for w in classes]
        assert len(classes) >= 2
        assert all(a < b for a, b in itertools.pairwise(means)), (name, means)


def test_image_peaks_sit_on_the_ground_truth_columns():
    result = simulate("SrTiO3", (0, 0, 1), shape=256, pixel_size=0.1, seed=0)
    peaks = _peaks(result.image.astype(np.float64))
    pos = result.columns.positions
    bright = result.columns.weights >= np.median(result.columns.weights)
    inner = np.all((pos > 5) & (pos < 250), axis=1)
    targets = pos[bright & inner]
    assert len(targets) > 50
    dist = np.linalg.norm(targets[:, None] - peaks[None], axis=-1).min(axis=1)
    assert dist.max() < 0.5


def test_material_can_be_a_name_a_cif_path_or_a_crystal(tmp_path):
    by_name = simulate("Si", shape=64, seed=2)
    material = get_material("Si")
    assert by_name.zone == tuple(material.zone_axes[0])
    by_path = simulate(material.cif, shape=64, seed=2)
    by_str = simulate(str(material.cif), shape=64, seed=2)
    by_crystal = simulate(load_material("Si"), shape=64, seed=2)
    for other in (by_path, by_str, by_crystal):
        assert other.zone == by_name.zone
        np.testing.assert_array_equal(other.image, by_name.image)
    # A CIF that is not bundled defaults to [001].
    copy = tmp_path / "my_silicon.cif"
    shutil.copy(material.cif, copy)
    assert simulate(copy, shape=64, seed=2).zone == (0, 0, 1)
    assert simulate("GaN", (1, 1, -2, 0), shape=64, seed=2).label() == "GaN [11-20]"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"shape": 0}, "shape"),
        ({"shape": (10, 10, 10)}, "shape"),
        ({"pixel_size": 0.0}, "pixel_size"),
        ({"floor": 10.0, "ceiling": 10.0}, "floor"),
        ({"background": 1.0}, "background"),
        ({"background": -0.1}, "background"),
        ({"background_variation": 1.5}, "background_variation"),
        ({"debye_waller": -0.01}, "debye_waller"),
        ({"thickness": 0.0}, "thickness"),
        ({"vacancy_fraction": 2.0}, "vacancy_fraction"),
        ({"zone": (1, 2)}, "zone"),
    ],
)
def test_bad_parameters_raise_value_errors_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        simulate("Si", **{"shape": 32, **kwargs})


def test_unknown_material_is_a_value_error():
    with pytest.raises(ValueError, match="unobtainium"):
        simulate("unobtainium", shape=32)


def test_random_simulation_is_reproducible_and_varied():
    materials = ["SrTiO3", "GaN", "graphene"]
    first = random_simulation(np.random.default_rng(5), 48, materials)
    again = random_simulation(np.random.default_rng(5), 48, materials)
    np.testing.assert_array_equal(first.image, again.image)

    rng = np.random.default_rng(6)
    results = [random_simulation(rng, 48, materials) for _ in range(12)]
    low, high = SimulationRanges().pixel_size
    assert all(low <= r.pixel_size <= high for r in results)
    assert len({r.material for r in results}) > 1
    assert len({round(r.pixel_size, 6) for r in results}) == len(results)
    assert all(r.image.shape == (48, 48) and np.isfinite(r.image).all() for r in results)

    fixed = random_simulation(rng, 32, materials, pixel_size=0.123)
    assert fixed.pixel_size == 0.123
    with pytest.raises(ValueError, match="at least one material"):
        random_simulation(rng, 32, [])
    with pytest.raises(ValueError, match="pixel_size"):
        SimulationRanges(pixel_size=(0.2, 0.1))


def test_random_simulation_defaults_to_the_training_materials():
    from napari_pinned.physics.materials import HELD_OUT_MATERIALS

    rng = np.random.default_rng(3)
    shown = {random_simulation(rng, 16).material for _ in range(12)}
    assert shown and not shown & set(HELD_OUT_MATERIALS)


def test_random_specimen_is_the_old_order_of_random_simulation_and_warns():
    assert SpecimenRanges is SimulationRanges
    with pytest.warns(DeprecationWarning, match="random_simulation"):
        old = random_specimen(np.random.default_rng(5), ["GaN"], 32, None, pixel_size=0.1)
    new = random_simulation(np.random.default_rng(5), 32, ["GaN"], pixel_size=0.1)
    np.testing.assert_array_equal(old.image, new.image)


def test_simulate_refuses_an_image_the_memory_cannot_hold_before_any_work(monkeypatch):
    import napari_pinned.physics.simulate as module
    from napari_pinned._util import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 64 * 1024**2)

    def no_work(*args, **kwargs):
        raise AssertionError("tiled columns before the memory check")

    monkeypatch.setattr(module, "tile_columns", no_work)
    with pytest.raises(ValueError) as caught:
        simulate("Si", shape=(3000, 2000))
    message = str(caught.value)
    assert message.startswith("simulating a 3000×2000 px image needs about ")
    assert "64.0 MiB available" in message and "\n" not in message
    # What the CLI prices too: the field plus the render margin on every side.
    pad = render_margin(AberratedProbe(), 0.1, 0.05) / 0.1
    assert 50 < pad < 200
    canvas = simulation_canvas_pixels((3000, 2000), 0.1, AberratedProbe(), 0.05)
    assert canvas == pytest.approx((3000 + 2 * pad) * (2000 + 2 * pad))


def test_matched_specimens_are_reproducible_and_vary():
    a = matched_specimens("SrTiO3", 0.08, count=3, shape=64, seed=4)
    b = matched_specimens("SrTiO3", 0.08, count=3, shape=64, seed=4)
    assert a.shape == (3, 64, 64) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], a[1])  # each its own thickness, rotation, probe
    with pytest.raises(ValueError, match="count"):
        matched_specimens("SrTiO3", 0.08, count=0)
