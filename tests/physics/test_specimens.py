"""Tests for napari_pinned.physics.specimens: realistic clean HAADF specimens with ground truth."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from napari_pinned.physics.materials import (
    HELD_OUT_MATERIALS,
    held_out_materials,
    list_materials,
    training_materials,
)
from napari_pinned.physics.probe import AberratedProbe, GaussianProbe
from napari_pinned.physics.projection import Z_EXPONENT_HAADF
from napari_pinned.physics.ranges import KINDS, StructureRanges
from napari_pinned.physics.rendering import render_columns, render_margin
from napari_pinned.physics.specimens import (
    BENCHMARK_SEED_START,
    Specimen,
    random_structure,
    structure_pool,
)
from napari_pinned.physics.tiling import ColumnSet

#: Ranges with nothing drawn on top of the requested structure.
PLAIN = StructureRanges(
    modifier_probability=0.0,
    support_fraction=0.0,
    inverted_fraction=0.0,
    background=(0.0, 0.0),
    diffuse_fraction=(0.0, 0.0),
)


def _plain(**changes) -> StructureRanges:
    return dataclasses.replace(PLAIN, **changes)


def _draw(seed: int, **kwargs) -> Specimen:
    return random_structure(np.random.default_rng(seed), **kwargs)


def _bragg_peak_ratio(image: np.ndarray) -> float:
    """Largest power-spectrum value over the median of its |k| annulus.

    For a speckle (random positions) each spectral value is exponentially distributed
    about the local mean, so value / median exceeds t with probability 2^-t, and the
    largest of the M ≈ 25,000 values of a 256² image stays near log2(M) ≈ 15; it passes
    50 with probability ≈ M 2^-50 ≈ 2e-11.  A Bragg peak of a lattice stands orders of
    magnitude above the floor.  A radial Hann window keeps the edges' leakage isotropic
    (a separable one piles it up along the axes); annuli below 8 (periods over 32 px,
    where smooth thickness variations live) and annuli the probe has cut to less than
    1e-3 of the strongest are left out.
    """
    rows, cols = image.shape
    y, x = np.indices(image.shape)
    r = np.hypot(y - (rows - 1) / 2, x - (cols - 1) / 2) / (min(rows, cols) / 2)
    window = np.where(r < 1.0, 0.5 * (1.0 + np.cos(np.pi * r)), 0.0)
    power = np.abs(np.fft.rfft2((image - image.mean()) * window)) ** 2
    ky = np.fft.fftfreq(rows) * rows
    kx = np.fft.rfftfreq(cols) * cols
    radius = np.rint(np.hypot(ky[:, None], kx[None, :])).astype(int)
    medians = {k: float(np.median(power[radius == k])) for k in range(8, min(rows, cols) // 2)}
    floor = max(medians.values())
    return max(power[radius == k].max() / m for k, m in medians.items() if m > 1e-3 * floor)


# --------------------------------------------------------------------------- every kind


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders(kind: str) -> None:
    shape = (96, 128)  # not square, so rows and columns cannot be swapped unnoticed
    for seed in range(3):
        spec = _draw(seed, shape=shape, kind=kind)
        assert spec.kind == kind and spec.label
        assert spec.image.shape == shape and spec.image.dtype == np.float32
        assert np.all(np.isfinite(spec.image)) and spec.image.min() >= 0.0
        if kind != "vacuum":
            assert spec.image.max() > 0.0
        pos = spec.columns.positions
        assert pos.shape == (len(spec.columns.weights), 2)
        assert np.all((pos >= -0.5) & (pos < np.asarray(shape) - 0.5))
        assert np.all(spec.columns.weights > 0)
        assert isinstance(spec.probe, (AberratedProbe, GaussianProbe))
        if kind in ("amorphous", "vacuum"):
            assert len(spec.columns.weights) == 0
        elif kind not in ("adatoms", "nanoparticle", "surface"):
            # Lattices fill the field (particles, edges and adatoms may miss it).
            assert len(spec.columns.weights) > 0


def test_same_seed_same_specimen() -> None:
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    a = [random_structure(rng_a, 64) for _ in range(6)]
    b = [random_structure(rng_b, 64) for _ in range(6)]
    for x, y in zip(a, b, strict=True):
        assert x.label == y.label and x.kind == y.kind and x.pixel_size == y.pixel_size
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.columns.positions, y.columns.positions)
        np.testing.assert_array_equal(x.columns.weights, y.columns.weights)
    assert len({s.label for s in a}) > 1  # the generator moves on between specimens


def test_columns_are_where_the_image_is_bright() -> None:
    # SrTiO3 [001] or [110]: even the O columns stand above the image's median.
    spec = _draw(2, shape=128, kind="crystal", materials=["SrTiO3"], ranges=PLAIN)
    rows, cols = np.rint(spec.columns.positions).astype(int).clip(0, 127).T
    at_columns = spec.image[rows, cols]
    for kind in np.unique(spec.columns.column_type):
        assert np.median(at_columns[spec.columns.column_type == kind]) > np.median(spec.image)


# --------------------------------------------------------------------------- no lattice


@pytest.mark.parametrize("kind", ["amorphous", "adatoms"])
def test_amorphous_images_have_no_bragg_peaks(kind: str) -> None:
    for seed in range(5):
        spec = _draw(seed, shape=256, kind=kind, pixel_size=0.2)
        assert _bragg_peak_ratio(spec.image) < 50.0, spec.label


def test_bragg_peak_ratio_sees_a_lattice() -> None:
    # The check above can fail: a 10 nm crystal on a 4 nm a-C support trips it 10x over.
    ranges = _plain(support_fraction=1.0, support_thickness=(40.0, 40.0), thickness=(100.0, 100.0))
    for seed in range(3):
        spec = _draw(
            seed, shape=256, kind="crystal", materials=["SrTiO3", "GaN", "Si"], ranges=ranges,
            pixel_size=0.2,
        )  # fmt: skip
        assert _bragg_peak_ratio(spec.image) > 500.0, spec.label


def test_vacuum_is_dark() -> None:
    ranges = StructureRanges(inverted_fraction=0.0)
    for seed in range(5):
        spec = _draw(seed, shape=64, kind="vacuum", ranges=ranges)
        assert len(spec.columns.weights) == 0
        assert spec.image.max() <= ranges.vacuum_background[1] * (1 + 1e-6)


def test_amorphous_film_is_much_weaker_than_a_crystal() -> None:
    # Σ Z^1.7 per Å²: SrTiO3 200 Å thick ≈ 2600; 50 Å of a-C ≈ 105, a-SiN ≈ 240.
    ranges = _plain(thickness=(200.0, 200.0), amorphous_thickness=(50.0, 50.0))
    crystal = np.mean(
        [_draw(s, shape=96, kind="crystal", materials=["SrTiO3"], ranges=ranges).image.mean()
         for s in range(3)]
    )  # fmt: skip
    film = [_draw(s, shape=96, kind="amorphous", ranges=ranges) for s in range(6)]
    for spec in film:
        assert 0.01 < spec.image.mean() / crystal < 0.15, spec.label
    assert 2000 < crystal < 3300


# --------------------------------------------------------------------------- structures


def test_weak_strong_mixture_has_the_requested_ratio() -> None:
    ranges = _plain(weak_ratio=(0.1, 0.1))
    templates = set()
    for seed in range(12):
        spec = _draw(seed, shape=96, kind="weak_strong", ranges=ranges)
        templates.add(spec.label.split(",")[0])
        assert spec.params["weight_ratio"] == pytest.approx(0.1)
        relative = np.unique(np.round(spec.columns.weights / spec.columns.weights.max(), 9))
        np.testing.assert_allclose(relative, [0.1, 1.0])
        # The weak sublattice is really there, with its own column types.
        weak = spec.columns.weights < 0.5 * spec.columns.weights.max()
        assert weak.sum() >= 0.3 * (~weak).sum()
        assert not set(spec.columns.column_type[weak]) & set(spec.columns.column_type[~weak])
    assert len(templates) == 3  # honeycomb, centred and random cells all occur


def test_weak_ratio_is_drawn_from_its_range() -> None:
    ratios = [_draw(s, shape=48, kind="weak_strong").params["weight_ratio"] for s in range(20)]
    assert min(ratios) >= 0.05 and max(ratios) <= 0.5
    assert min(ratios) < 0.15 and max(ratios) > 0.2  # log-uniform over a decade


def test_random_lattices_differ_and_span_weights() -> None:
    ranges = _plain(motif_columns=(3, 5))
    labels, spans = set(), []
    for seed in range(10):
        spec = _draw(seed, shape=96, kind="random_lattice", ranges=ranges, pixel_size=0.1)
        labels.add(spec.label.split(",")[0])
        per_type = [spec.columns.weights[spec.columns.column_type == t].mean()
                    for t in np.unique(spec.columns.column_type)]  # fmt: skip
        spans.append(max(per_type) / min(per_type))
    assert len(labels) >= 4  # several Bravais lattices and motif sizes
    assert max(spans) > 5.0 and max(spans) <= 20.0 + 1e-9


@pytest.mark.parametrize("name", ["MoS2", "WSe2", "hBN", "graphene"])
def test_monolayers_render_one_layer(name: str) -> None:
    spec = _draw(0, shape=64, kind="crystal", materials=[name], ranges=PLAIN)
    assert "monolayer" in spec.label and spec.materials == (name,)
    z = {"MoS2": (42, 16), "WSe2": (74, 34), "hBN": (5, 7), "graphene": (6, 6)}[name]
    one_layer = {
        "MoS2": [z[0] ** 1.7, 2 * z[1] ** 1.7],
        "WSe2": [z[0] ** 1.7, 2 * z[1] ** 1.7],
        "hBN": [5**1.7, 7**1.7],
        "graphene": [6**1.7],
    }[name]
    np.testing.assert_allclose(np.unique(np.round(spec.columns.weights, 6)), sorted(one_layer))


def test_monolayer_vacancies_remove_single_atoms() -> None:
    ranges = _plain(vacancy_fraction=(0.2, 0.2))
    spec = _draw(1, shape=96, kind="vacancies", materials=["MoS2"], ranges=ranges)
    weights = np.round(spec.columns.weights, 6)
    mo, s2, s1 = 42**Z_EXPONENT_HAADF, 2 * 16**Z_EXPONENT_HAADF, 16**Z_EXPONENT_HAADF
    assert set(np.unique(weights)) <= {round(mo, 6), round(s2, 6), round(s1, 6)}
    n_mo, n_s2, n_s1 = (np.isclose(weights, w).sum() for w in (mo, s2, s1))
    # Vacancies hit a fifth of the columns: S₂ → S, and Mo columns vanish.
    assert n_s1 == pytest.approx(0.2 * (n_s1 + n_s2), abs=4 * math.sqrt(0.16 * (n_s1 + n_s2)))
    assert n_mo < n_s1 + n_s2


def test_dopants_are_single_heavy_atoms_in_columns() -> None:
    ranges = _plain(dopant_fraction=(0.05, 0.05), thickness=(40.0, 40.0))
    spec = _draw(3, shape=128, kind="dopants", materials=["Si"], ranges=ranges, pixel_size=0.1)
    weights = spec.columns.weights
    base = np.median(weights)
    extra = weights[weights > base * 1.001] - base
    n = len(weights)
    assert len(extra) == pytest.approx(0.05 * n, abs=4 * math.sqrt(0.05 * 0.95 * n))
    # One dopant of Z 50-83 replacing one Si atom.
    z = (extra + 14**Z_EXPONENT_HAADF) ** (1 / Z_EXPONENT_HAADF)
    assert np.all((z > 49.99) & (z < 83.01))
    np.testing.assert_allclose(z, np.round(z), atol=1e-6)


def test_thickness_gradient_ramps_the_weights() -> None:
    spec = _draw(4, shape=96, kind="thickness_gradient", materials=["Si"], ranges=PLAIN)
    low = spec.params["ramp_low"]
    ratio = spec.columns.weights.min() / spec.columns.weights.max()
    assert ratio == pytest.approx(low, abs=0.15) and ratio < 0.6


@pytest.mark.parametrize("kind", ["nanoparticle", "surface", "grain_boundary"])
def test_partial_coverage_kinds_leave_room(kind: str) -> None:
    # Particles and edges leave part of the field without columns; grain boundaries
    # have two column sets (types) on two sides.
    found = False
    for seed in range(6):
        spec = _draw(seed, shape=128, kind=kind, ranges=PLAIN, pixel_size=0.12)
        if kind == "grain_boundary":
            found |= len(np.unique(spec.columns.column_type)) >= 2
            continue
        covered = np.zeros((16, 16), bool)
        cells = np.floor((spec.columns.positions + 0.5) / 8).astype(int).clip(0, 15)
        covered[cells[:, 0], cells[:, 1]] = True
        found |= 0.05 < covered.mean() < 0.95
    assert found


# --------------------------------------------------------------------------- imaging


def test_inverted_contrast_is_flagged_and_inverted() -> None:
    normal = _draw(7, shape=96, kind="crystal", ranges=StructureRanges(inverted_fraction=0.0))
    inverted = _draw(7, shape=96, kind="crystal", ranges=StructureRanges(inverted_fraction=1.0))
    assert not normal.inverted and inverted.inverted and "ABF" in inverted.label
    np.testing.assert_array_equal(normal.columns.positions, inverted.columns.positions)
    # A decreasing function of the HAADF signal: bright background, dark columns.
    rho = stats.spearmanr(normal.image.ravel(), inverted.image.ravel()).statistic
    assert rho < -0.999
    rows, cols = np.rint(inverted.columns.positions).astype(int).clip(0, 95).T
    assert np.median(inverted.image[rows, cols]) < np.median(inverted.image)
    assert inverted.image.min() > 0.0


def test_pixel_size_range_is_respected() -> None:
    rng = np.random.default_rng(0)
    sizes = [random_structure(rng, 16, kind="vacuum").pixel_size for _ in range(200)]
    assert min(sizes) >= 0.03 and max(sizes) <= 0.3
    # Log-uniform: half below the geometric mean, within 4 binomial σ.
    below = np.mean(np.asarray(sizes) < math.sqrt(0.03 * 0.3))
    assert abs(below - 0.5) < 4 * math.sqrt(0.25 / 200)
    narrow = StructureRanges(pixel_size=(0.1, 0.12))
    sizes = [random_structure(rng, 16, kind="vacuum", ranges=narrow).pixel_size for _ in range(10)]
    assert all(0.1 <= s <= 0.12 for s in sizes)
    assert random_structure(rng, 16, kind="amorphous", pixel_size=0.07).pixel_size == 0.07


def test_probes_stay_reasonable_for_the_pixel_size() -> None:
    ranges = StructureRanges()
    rng = np.random.default_rng(3)
    kinds = set()
    for _ in range(20):
        spec = random_structure(rng, 16, kind="vacuum", pixel_size=0.03)
        probe = spec.probe
        kinds.add(type(probe))
        if isinstance(probe, AberratedProbe):
            assert probe.wavelength / probe.semi_angle / 0.03 <= ranges.max_probe_pixels
            assert 15.0 <= probe.convergence_mrad <= 35.0 and probe.voltage_kv >= 60.0
            depth_of_field = probe.wavelength / probe.semi_angle**2
            assert abs(probe.defocus) <= 3.0 / math.pi * depth_of_field + 1e-9
    assert kinds == {AberratedProbe, GaussianProbe}


def test_render_margin_bounds_the_light() -> None:
    probe = AberratedProbe(voltage_kv=80.0, convergence_mrad=20.0, defocus=10.0)
    margin = render_margin(probe, 0.1)
    for distance, lit in ((margin + 0.1, False), (0.5 * margin, True)):
        column = ColumnSet(np.array([[16.0, -0.5 - distance / 0.1]]), np.array([1.0]))
        image = render_columns(column, (32, 32), 0.1, probe)
        assert (image.max() > 1e-9) == lit


# --------------------------------------------------------------------------- the split


def test_held_out_split() -> None:
    names = {m.name for m in list_materials()}
    train, held = set(training_materials()), set(held_out_materials())
    assert held == set(HELD_OUT_MATERIALS) == {"BaTiO3", "BaTiO3-P4mm", "Al", "ZnMgTe", "WSe2"}
    assert train | held == names and not train & held
    shown = set()
    rng = np.random.default_rng(0)
    for _ in range(25):
        shown |= set(random_structure(rng, 32, kind="crystal").materials)
    assert shown and not shown & held
    pool = structure_pool(6, 32, split="held_out", seed=1)
    assert {m for s in pool for m in s.materials} <= held
    with pytest.raises(ValueError, match="seed"):
        structure_pool(1, 32, seed=BENCHMARK_SEED_START)
    with pytest.raises(ValueError, match="split"):
        structure_pool(1, 32, split="test")


def test_bad_arguments_are_value_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="kind"):
        random_structure(rng, 32, kind="quasicrystal")
    with pytest.raises(ValueError, match="unobtainium"):
        random_structure(rng, 32, ["unobtainium"])
    with pytest.raises(ValueError, match="pixel_size"):
        random_structure(rng, 32, pixel_size=-1.0)
    with pytest.raises(ValueError, match="kinds"):
        StructureRanges(kind_probabilities=(("quasicrystal", 1.0),))
    with pytest.raises(ValueError, match="thickness"):
        StructureRanges(thickness=(100.0, 10.0))


def test_module_stays_free_of_gui_imports() -> None:
    code = (
        "import json, sys, napari_pinned.physics.specimens; print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert not [m for m in loaded if m.split(".")[0] in ("napari", "qtpy", "magicgui", "vispy")]


def test_a_pool_drawn_by_workers_does_not_depend_on_their_number():
    """Item by item, each specimen from its own generator: one worker or two draw the
    same pool (another one than the sequential draw)."""
    one = structure_pool(5, 32, seed=2, workers=1)
    two = structure_pool(5, 32, seed=2, workers=2)
    sequential = structure_pool(5, 32, seed=2)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
    assert not all(np.array_equal(a.image, b.image) for a, b in zip(one, sequential, strict=True))
    assert len({float(s.image.sum()) for s in one}) == 5
    with pytest.raises(ValueError, match="workers must be"):
        structure_pool(1, 32, workers=-1)
