"""Tests for the crystal modules of napari_pinned.physics: CIF reading (cif), the bundled
materials, zone axes, projection and tiling."""

from __future__ import annotations

import math
import re
from importlib import resources

import numpy as np
import pytest

from napari_pinned.physics.cif import CIFError, read_cif, read_cif_text
from napari_pinned.physics.materials import get_material, list_materials, load_material
from napari_pinned.physics.projection import Z_EXPONENT_HAADF, project
from napari_pinned.physics.structure import Crystal
from napari_pinned.physics.tiling import tile_columns
from napari_pinned.physics.zones import zone_label, zone_to_three_index

EXPECTED_MATERIALS = {
    "Si", "GaN", "InN", "AlN", "AlGaN", "SrTiO3", "BaTiO3", "BaTiO3-P4mm", "graphene",
    "ZrO2", "ZrO2-P21c", "NaCN", "Al", "ZnTe", "ZnMgTe", "MoS2", "WSe2", "hBN",
}  # fmt: skip

ALL_ZONES = [(m.name, zone) for m in list_materials() for zone in m.zone_axes]


def _cif(
    *,
    cell: str = "_cell_length_a 4.0\n_cell_length_b 4.0\n_cell_length_c 4.0\n"
    "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n",
    atoms: str = "Cu1 Cu 0 0 0 1.0\n",
    extra: str = "",
) -> str:
    """A minimal P1 CIF; each part can be replaced to break it in one way."""
    loop = (
        "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n"
        "_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\n" + atoms
        if atoms
        else ""
    )
    return f"data_test\n{extra}{cell}{loop}"


def _si_text_without_operators() -> str:
    """Bundled Si.cif with its operator loop and Hall symbol removed (H-M symbol only)."""
    text = get_material("Si").cif.read_text()
    text = re.sub(
        r"loop_\n_space_group_symop_id\n_space_group_symop_operation_xyz\n(\d+ '.*'\n)+", "", text
    )
    text = re.sub(r"_space_group_name_Hall .*\n", "", text)
    assert "_space_group_symop" not in text and "_space_group_name_Hall" not in text
    return text


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize(
    ("name", "counts"),
    [
        ("Si", {"Si": 8}),
        ("GaN", {"Ga": 2, "N": 2}),
        ("SrTiO3", {"Sr": 1, "Ti": 1, "O": 3}),
        ("ZrO2", {"Zr": 4, "O": 8}),
        ("NaCN", {"Na": 4, "C": 2, "N": 2}),
        ("AlGaN", {"Al": 1, "Ga": 1, "N": 2}),
    ],
)
def test_atoms_per_cell(name: str, counts: dict[str, float]) -> None:
    crystal = load_material(name)
    assert crystal.element_counts() == pytest.approx(counts)


def test_si_has_eight_distinct_atoms_in_the_cubic_cell() -> None:
    crystal = load_material("Si")
    frac = crystal.fractional_coordinates()
    assert len(crystal.atoms) == 8
    delta = frac[:, None] - frac[None]
    delta -= np.round(delta)
    dist = np.linalg.norm(delta @ crystal.lattice_matrix(), axis=-1)
    dist[np.diag_indices(8)] = np.inf
    # Nearest Si-Si distance in diamond is a*sqrt(3)/4.
    assert dist.min() == pytest.approx(5.431 * math.sqrt(3) / 4, abs=1e-3)


def test_nacn_has_eight_sites_shared_by_c_and_n() -> None:
    crystal = load_material("NaCN")
    positions = {tuple(np.round(atom.frac, 6)) for atom in crystal.atoms}
    assert len(positions) == 8
    for atom in crystal.atoms:
        expected = 1.0 if atom.element == "Na" else 0.5
        assert atom.occupancy == pytest.approx(expected)


def test_origin_choice_is_resolved_without_operators() -> None:
    # gemmi's default for "F d -3 m" is origin choice 1; the CIF uses choice 2.
    text = _si_text_without_operators()
    assert len(read_cif_text(text).atoms) == 8
    no_formula = re.sub(r"_(chemical_formula_sum|cell_formula_units_Z) .*\n", "", text)
    assert len(read_cif_text(no_formula).atoms) == 8


def test_formula_mismatch_is_an_error() -> None:
    text = (
        get_material("Si")
        .cif.read_text()
        .replace("_cell_formula_units_Z 8", "_cell_formula_units_Z 4")
    )
    with pytest.raises(CIFError, match=r"Si 8.*Si 4"):
        read_cif_text(text)


def test_read_cif_metadata_and_lattice() -> None:
    material = get_material("ZrO2-P21c")
    crystal = read_cif(material.cif)
    assert crystal.name == "ZrO2_P21c"
    assert crystal.source == str(material.cif)
    assert crystal.cell == pytest.approx((5.1505, 5.2116, 5.3173, 90, 99.23, 90))
    lattice = crystal.lattice_matrix()
    assert np.linalg.norm(lattice, axis=1) == pytest.approx([5.1505, 5.2116, 5.3173])
    cos_beta = lattice[0] @ lattice[2] / (5.1505 * 5.3173)
    assert math.degrees(math.acos(cos_beta)) == pytest.approx(99.23)
    expected_volume = 5.1505 * 5.2116 * 5.3173 * math.sin(math.radians(99.23))
    assert crystal.volume() == pytest.approx(expected_volume)
    assert isinstance(crystal, Crystal) and len(crystal.atoms) == 12


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.cif"):
        read_cif(tmp_path / "nothing.cif")


def test_not_a_cif_names_the_file(tmp_path) -> None:
    path = tmp_path / "notes.cif"
    path.write_text("this is a shopping list, not a crystal\n")
    with pytest.raises(CIFError, match=re.escape(str(path))):
        read_cif(path)
    with pytest.raises(CIFError, match="not a CIF"):
        read_cif_text("")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_cif(cell=""), "no unit cell"),
        (_cif(cell="_cell_length_a 4.0\n_cell_length_b 4.0\n"), "_cell_length_c"),
        (_cif(atoms=""), "no atoms"),
        (_cif(atoms="Q1 Qq 0 0 0 1.0\n"), "unknown element 'Qq'"),
        (_cif(atoms="Cu1 Cu 0 0 0 1.5\n"), "occupancy"),
        (_cif(atoms="Cu1 Cu 0 0 0 0.8\nAu1 Au 0 0 0 0.8\n"), "total occupancy"),
        (_cif(extra="_chemical_formula_sum 'Au'\n"), "formula"),
    ],
)
def test_bad_cif_content(tmp_path, text: str, message: str) -> None:
    with pytest.raises(CIFError, match=re.escape(message)):
        read_cif_text(text)
    path = tmp_path / "bad.cif"
    path.write_text(text)
    with pytest.raises(CIFError, match=re.escape(str(path))):
        read_cif(path)


def test_minimal_p1_cif_reads() -> None:
    crystal = read_cif_text(_cif(), name="copper-ish")
    assert crystal.name == "copper-ish" and crystal.source == "<string>"
    assert [(a.element, a.z, a.occupancy) for a in crystal.atoms] == [("Cu", 29, 1.0)]


def test_zone_000_and_too_long_repeat_are_errors() -> None:
    si = load_material("Si")
    with pytest.raises(ValueError, match=r"\[000\]"):
        project(si, (0, 0, 0))
    # [975] repeats every a*sqrt(155) = 67.6 Å.
    with pytest.raises(ValueError, match="max_repeat"):
        project(si, (9, 7, 5))
    assert project(si, (9, 7, 5), max_repeat=70).repeat == pytest.approx(5.431 * math.sqrt(155))
    with pytest.raises(ValueError, match="hexagonal"):
        project(si, (1, 1, -2, 0))
    with pytest.raises(ValueError, match="merge_tolerance"):
        project(si, (1, 1, 0), merge_tolerance=-0.1)


# --------------------------------------------------------------------------- zone axes


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ((1, 1, -2, 0), (1, 1, 0)),
        ((0, 0, 0, 1), (0, 0, 1)),
        ((1, 0, -1, 0), (2, 1, 0)),
        ((2, -1, -1, 0), (1, 0, 0)),
        ((1, 1, 0), (1, 1, 0)),
        ((2, 2, 0), (1, 1, 0)),
        ((0, -3, 0), (0, -1, 0)),
        ((1.0, 1.0, 0.0), (1, 1, 0)),
    ],
)
def test_zone_to_three_index(zone, expected) -> None:
    assert zone_to_three_index(zone) == expected


@pytest.mark.parametrize(
    "zone", [(0, 0, 0), (0, 0, 0, 0), (1, 1, 1, 0), (1, 2), (1, 2, 3, 4, 5), (0.5, 1, 0)]
)
def test_bad_zone_axes(zone) -> None:
    with pytest.raises(ValueError, match="zone axis"):
        zone_to_three_index(zone)


def test_zone_label() -> None:
    assert zone_label((1, 1, -2, 0)) == "[11-20]"
    assert zone_label((1, 1, 0)) == "[110]"
    assert zone_label((0, 0, 0, 1)) == "[0001]"
    assert zone_label((1, 10, 0)) == "[1,10,0]"


def test_four_index_zone_matches_three_index_projection() -> None:
    gan = load_material("GaN")
    four = project(gan, (1, 1, -2, 0))
    three = project(gan, (1, 1, 0))
    assert four.zone == (1, 1, 0)
    assert np.allclose(four.positions, three.positions)
    # [11-20] = a + b, whose length is a in a hexagonal cell.
    assert four.repeat == pytest.approx(3.189)


# --------------------------------------------------------------------------- projection


@pytest.mark.parametrize(
    ("name", "zone", "distance", "tolerance"),
    [
        ("Si", (1, 1, 0), 1.358, 0.01),  # dumbbell a/4
        ("GaN", (1, 1, -2, 0), 1.12, 0.03),  # Ga-N dumbbell
        ("SrTiO3", (0, 0, 1), 1.95, 0.01),  # Ti-O to O column a/2
        ("graphene", (0, 0, 1), 1.42, 0.01),  # C-C bond a/sqrt(3)
    ],
)
def test_nearest_column_distance(name: str, zone, distance: float, tolerance: float) -> None:
    cell = project(load_material(name), zone)
    assert cell.nearest_column_distance() == pytest.approx(distance, abs=tolerance)


def test_si_110_columns() -> None:
    cell = project(load_material("Si"), (1, 1, 0))
    a = 5.431
    assert cell.repeat == pytest.approx(a * math.sqrt(2))
    assert cell.area == pytest.approx(a * a / math.sqrt(2))
    assert len(cell.positions) == 4
    for zs, occ in zip(cell.site_z, cell.site_occupancy, strict=True):
        assert zs.tolist() == [14, 14] and occ.tolist() == [1.0, 1.0]
    assert cell.weights == pytest.approx(np.full(4, 2 * 14**Z_EXPONENT_HAADF))


def test_z_exponent_changes_weights() -> None:
    cell = project(load_material("SrTiO3"), (0, 0, 1), z_exponent=2.0)
    expected = sorted([38**2, 22**2 + 8**2, 8**2, 8**2])
    assert sorted(cell.weights) == pytest.approx(expected)
    assert cell.z_exponent == 2.0


def test_mixed_site_columns_keep_both_elements() -> None:
    cell = project(load_material("AlGaN"), (1, 1, -2, 0))
    compositions = cell.compositions()
    cation = [c for c in compositions if "Ga" in c]
    assert len(cation) == 2
    for comp in cation:
        assert comp == pytest.approx({"Al": 0.5, "Ga": 0.5})


@pytest.mark.parametrize(("name", "zone"), ALL_ZONES)
def test_every_material_projects_and_tiles(name: str, zone) -> None:
    crystal = load_material(name)
    cell = project(crystal, zone)
    # The 2D cell is a basis of the projected lattice: area x repeat = whole cells.
    cells_per_repeat = cell.area * cell.repeat / crystal.volume()
    assert cells_per_repeat == pytest.approx(round(cells_per_repeat), abs=1e-9)
    assert round(cells_per_repeat) >= 1
    # Every atom of the cell lands in exactly one column of one repeat.
    total: dict[str, float] = {}
    for comp in cell.compositions():
        for element, count in comp.items():
            total[element] = total.get(element, 0.0) + count
    expected = {el: n * round(cells_per_repeat) for el, n in crystal.element_counts().items()}
    assert total == pytest.approx(expected)
    # Reduced basis: first vector along +x, second with y > 0, neither longer than needed.
    v1, v2 = cell.vectors
    assert v1[1] == 0.0 and v1[0] > 0 and v2[1] > 0
    assert np.linalg.norm(v1) <= np.linalg.norm(v2) + 1e-9
    assert abs(v1 @ v2) <= 0.5 * (v1 @ v1) + 1e-9
    frac = cell.positions @ np.linalg.inv(cell.vectors)
    assert np.all((frac > -1e-12) & (frac < 1))
    assert cell.nearest_column_distance() > 0.05

    columns = tile_columns(cell, (64, 64), 0.2, rng=1)
    assert columns.positions.shape == (len(columns.weights), 2)
    assert len(columns.weights) > 0 and np.all(columns.weights > 0)
    inside = np.all((columns.positions >= 0) & (columns.positions < 64), axis=1)
    assert inside.any()


def test_material_library() -> None:
    materials = list_materials()
    assert {m.name for m in materials} == EXPECTED_MATERIALS
    cif_dir = resources.files("napari_pinned") / "data" / "cif"
    bundled = {p.name for p in cif_dir.iterdir() if p.name.endswith(".cif")}
    assert bundled == {m.cif.name for m in materials}
    for material in materials:
        assert material.cif.is_file()
        assert material.cif.read_text().startswith("#")  # source note
        assert material.zone_axes and material.description
    assert get_material("GaN").zone_axes == ((1, 1, -2, 0), (0, 0, 0, 1))
    assert zone_label(get_material("GaN").zone_axes[0]) == "[11-20]"
    assert get_material("Si").zone_axes[0] == (1, 1, 0)
    assert get_material("gan").name == "GaN"
    assert get_material("batio3_p4mm").name == "BaTiO3-P4mm"
    with pytest.raises(ValueError, match="SrTiO3"):
        get_material("unobtainium")


# --------------------------------------------------------------------------- tiling


def _sorted_rows(points: np.ndarray) -> np.ndarray:
    return points[np.lexsort((points[:, 1], points[:, 0]))]


def test_tiling_geometry_and_pixel_convention() -> None:
    cell = project(load_material("SrTiO3"), (0, 0, 1))
    shape, pixel = (40, 60), 0.25
    columns = tile_columns(cell, shape, pixel, margin=0.0, alloy_disorder=False)
    # Origin at the centre of the field: (x, y) = (7.5, 5.0) Å -> (row, col) = (20, 30).
    centre = np.array([shape[0] / 2, shape[1] / 2])
    strontium = int(np.argmax(cell.weights))
    sr = columns.positions[columns.column_type == strontium]
    expected = centre + cell.positions[strontium, ::-1] / pixel
    assert np.linalg.norm(sr - expected, axis=1).min() < 1e-9
    # The first cell vector lies along +x, i.e. along columns.
    step = np.array([0.0, 3.905 / pixel])
    neighbour = np.linalg.norm(sr[:, None] - (sr[0] + step)[None], axis=-1).min()
    assert neighbour < 1e-9
    # With no margin everything lies inside the field, which is covered.
    assert np.all(columns.positions >= 0) and np.all(columns.positions < np.array(shape))
    area = shape[0] * shape[1] * pixel**2
    assert len(columns.weights) == pytest.approx(area / cell.area * 4, rel=0.15)


def test_margin_extends_beyond_the_field() -> None:
    cell = project(load_material("Si"), (1, 1, 0))
    shape, pixel, margin = (64, 64), 0.1, 5.0
    columns = tile_columns(cell, shape, pixel, margin=margin, rng=0)
    pos = columns.positions
    lim = margin / pixel
    assert np.all(pos >= -lim) and np.all(pos < np.array(shape) + lim)
    # Columns reach to within one cell of the margin's outer edge on every side.
    reach = max(np.linalg.norm(cell.vectors, axis=1)) / pixel
    assert np.all(pos.min(axis=0) < -lim + reach)
    assert np.all(pos.max(axis=0) > np.array(shape) + lim - reach)


def test_rotation_by_90_degrees() -> None:
    cell = project(load_material("GaN"), (1, 1, -2, 0))
    shape, pixel = (80, 80), 0.15
    kwargs = {"shift": (0.3, 0.1), "alloy_disorder": False, "margin": 3.0}
    plain = tile_columns(cell, shape, pixel, rotation=0.0, **kwargs)
    turned = tile_columns(cell, shape, pixel, rotation=90.0, **kwargs)
    # Counter-clockwise on screen about the centre: (row, col) offsets (dr, dc) -> (-dc, dr).
    centre = np.array(shape) / 2
    offset = plain.positions - centre
    expected = centre + np.column_stack([-offset[:, 1], offset[:, 0]])
    inner = np.all(np.abs(offset) < 30, axis=1)
    dist = np.linalg.norm(expected[inner][:, None] - turned.positions[None], axis=-1)
    nearest = dist.argmin(axis=1)
    assert dist.min(axis=1).max() < 1e-6
    assert np.array_equal(turned.column_type[nearest], plain.column_type[inner])
    assert turned.weights[nearest] == pytest.approx(plain.weights[inner])


def test_shift_by_whole_cell_is_identity_and_half_cell_moves() -> None:
    cell = project(load_material("Al"), (0, 0, 1))
    kwargs = {"alloy_disorder": False, "margin": 2.0}
    base = tile_columns(cell, (50, 50), 0.2, **kwargs)
    whole = tile_columns(cell, (50, 50), 0.2, shift=(1.0, -2.0), **kwargs)
    np.testing.assert_allclose(_sorted_rows(whole.positions), _sorted_rows(base.positions))
    half = tile_columns(cell, (50, 50), 0.2, shift=(0.25, 0.0), **kwargs)
    # A quarter of a 4.05 Å cell along x moves every column by ~5.06 px along columns.
    moved = base.positions + np.array([0.0, 0.25 * 4.0495 / 0.2])
    inner = np.all((moved > 5) & (moved < 45), axis=1)
    dist = np.linalg.norm(moved[inner][:, None] - half.positions[None], axis=-1)
    assert dist.min(axis=1).max() < 1e-9


def test_thickness_sets_number_of_repeats() -> None:
    cell = project(load_material("SrTiO3"), (0, 0, 1))
    for repeats in (1, 7, 51):
        columns = tile_columns(
            cell, (32, 32), 0.2, thickness=repeats * cell.repeat, alloy_disorder=False
        )
        assert columns.weights == pytest.approx(cell.weights[columns.column_type] * repeats)
    thin = tile_columns(cell, (32, 32), 0.2, thickness=0.1, alloy_disorder=False)
    assert thin.weights == pytest.approx(cell.weights[thin.column_type])


def test_vacancy_fraction_statistics() -> None:
    cell = project(load_material("Si"), (0, 0, 1))
    args = ((256, 256), 0.25)
    total = len(tile_columns(cell, *args, alloy_disorder=False).weights)
    p = 0.3
    kept = len(tile_columns(cell, *args, vacancy_fraction=p, alloy_disorder=False, rng=5).weights)
    removed = total - kept
    sigma = math.sqrt(total * p * (1 - p))
    assert total > 1000
    assert abs(removed - total * p) < 4 * sigma
    assert len(tile_columns(cell, *args, vacancy_fraction=1.0, rng=0).weights) == 0


@pytest.mark.parametrize("name", ["AlGaN", "ZnMgTe"])
def test_alloy_disorder_statistics(name: str) -> None:
    zone = get_material(name).zone_axes[0]
    cell = project(load_material(name), zone)
    thickness = 40 * cell.repeat
    # Coarse pixels: a wide field (~190 Å with the margin) gives >1000 columns per type.
    args = ((180, 180), 1.0)
    mean_columns = tile_columns(cell, *args, thickness=thickness, alloy_disorder=False)
    columns = tile_columns(cell, *args, thickness=thickness, rng=11)
    np.testing.assert_array_equal(columns.column_type, mean_columns.column_type)
    for column in range(len(cell.positions)):
        sel = columns.column_type == column
        weights = columns.weights[sel]
        expected = cell.weights[column] * 40
        assert mean_columns.weights[sel] == pytest.approx(np.full(sel.sum(), expected))
        zs, occ = cell.site_z[column], cell.site_occupancy[column]
        if np.all(occ == 1.0):
            assert weights == pytest.approx(np.full(sel.sum(), expected))
            continue
        # Each mixed site holds element A in Binomial(R, p_A) repeats and B in the rest.
        groups = cell.site_groups[column]
        variance, lowest, highest = 0.0, 0.0, 0.0
        for group in np.unique(groups):
            zpow = zs[groups == group].astype(float) ** cell.z_exponent
            p = occ[groups == group]
            assert p.sum() == pytest.approx(1.0)
            if len(p) == 2:
                variance += 40 * p[0] * p[1] * (zpow[0] - zpow[1]) ** 2
            lowest, highest = lowest + 40 * zpow.min(), highest + 40 * zpow.max()
        assert variance > 0
        standard_error = math.sqrt(variance / sel.sum())
        assert abs(weights.mean() - expected) < 4 * standard_error
        # The sample variance of n near-normal values has a relative SE of sqrt(2 / n).
        assert sel.sum() > 1000
        assert weights.var() == pytest.approx(variance, rel=5 * math.sqrt(2 / sel.sum()))
        assert np.all((weights >= lowest - 1e-9) & (weights <= highest + 1e-9))


def test_reproducible_with_seed() -> None:
    cell = project(load_material("AlGaN"), (0, 0, 0, 1))
    kwargs = {"vacancy_fraction": 0.2, "rng": 123}
    first = tile_columns(cell, (64, 64), 0.15, **kwargs)
    second = tile_columns(cell, (64, 64), 0.15, **kwargs)
    np.testing.assert_array_equal(first.positions, second.positions)
    np.testing.assert_array_equal(first.weights, second.weights)
    generator = tile_columns(cell, (64, 64), 0.15, vacancy_fraction=0.2,
                             rng=np.random.default_rng(123))  # fmt: skip
    np.testing.assert_array_equal(first.weights, generator.weights)
    other = tile_columns(cell, (64, 64), 0.15, vacancy_fraction=0.2, rng=124)
    assert len(other.weights) != len(first.weights) or not np.array_equal(
        other.weights, first.weights
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (0, 10)},
        {"shape": (10,)},
        {"pixel_size": 0.0},
        {"pixel_size": float("nan")},
        {"thickness": -1.0},
        {"vacancy_fraction": 1.5},
        {"margin": -1.0},
        {"rotation": float("inf")},
    ],
)
def test_bad_tiling_arguments(kwargs) -> None:
    cell = project(load_material("Al"), (0, 0, 1))
    args = {"shape": (16, 16), "pixel_size": 0.2} | kwargs
    shape, pixel = args.pop("shape"), args.pop("pixel_size")
    with pytest.raises(ValueError):
        tile_columns(cell, shape, pixel, **args)


# --------------------------------------------------------------------------- impossible cells


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        (
            "_cell_length_a 0.001\n_cell_length_b 5\n_cell_length_c 5\n",
            "a = 0.001 Å",
        ),
        (  # silicon written in nm
            "_cell_length_a 0.5431\n_cell_length_b 0.5431\n_cell_length_c 0.5431\n",
            "in Å, not nm",
        ),
        (  # a flat cell: long edges, but b almost along a
            "_cell_length_a 5\n_cell_length_b 5\n_cell_length_c 5\n_cell_angle_gamma 0.01\n",
            "volume is 0.0218 Å³",
        ),
    ],
)
def test_a_physically_impossible_cell_is_refused_on_reading(tmp_path, cell, message) -> None:
    path = tmp_path / "impossible.cif"
    path.write_text(_cif(cell=cell))
    with pytest.raises(CIFError, match=re.escape(message)) as info:
        read_cif(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CIFError, match="no crystal has"):
        read_cif_text(_cif(cell=cell))


def test_every_bundled_cell_is_well_inside_the_limits() -> None:
    from napari_pinned.physics.structure import MIN_CELL_VOLUME, MIN_LATTICE_CONSTANT

    crystals = [load_material(m.name) for m in list_materials()]
    assert min(min(c.cell[:3]) for c in crystals) > 2 * MIN_LATTICE_CONSTANT
    assert min(c.volume() for c in crystals) > 10 * MIN_CELL_VOLUME


def _not_tiled(*args, **kwargs):
    raise AssertionError("the columns were generated before the memory check")


def test_a_field_with_more_columns_than_the_memory_holds_is_refused_first(monkeypatch) -> None:
    # 2000 px at 20 Å/px: 4 µm of Si [001], 1.7e9 columns (the OOM kill).
    from napari_pinned._util.memory import columns_bytes

    monkeypatch.setattr("napari_pinned._util.memory.available_bytes", lambda: 8 * 1024**3)
    monkeypatch.setattr("napari_pinned.physics.tiling._lattice_points", _not_tiled)
    cell = project(load_material("Si"), (0, 0, 1))
    with pytest.raises(ValueError, match=r"columns needs about") as info:
        tile_columns(cell, (2000, 2000), 20.0)
    assert "\n" not in str(info.value)
    assert columns_bytes(1_000_000) == pytest.approx(1e6 * 1024, rel=0.1)
