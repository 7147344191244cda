"""Periodic clustering of atoms (`structure.cluster_periodic`): same result as the greedy
reference, and a large P1 cell in seconds rather than minutes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_pinned.physics.cif import read_cif_text
from napari_pinned.physics.projection import project
from napari_pinned.physics.structure import cluster_periodic, lattice_matrix


def _reference_greedy(frac: np.ndarray, lattice: np.ndarray, tol: float) -> np.ndarray:
    """The original O(N²) algorithm: each point against every representative so far."""
    images = np.array(
        [(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float
    )
    labels = np.full(len(frac), -1, dtype=int)
    reps: list[np.ndarray] = []
    for idx, point in enumerate(frac):
        if reps:
            d = np.asarray(reps) - point
            d -= np.round(d)
            dist = np.linalg.norm((d[:, None, :] + images[None]) @ lattice, axis=-1).min(axis=1)
            best = int(np.argmin(dist))
            if dist[best] < tol:
                labels[idx] = best
                continue
        labels[idx] = len(reps)
        reps.append(point)
    return labels


@pytest.mark.parametrize("cell", [(5.0, 5.0, 5.0, 90, 90, 90), (3.2, 3.2, 5.2, 90, 90, 120)])
def test_matches_the_greedy_reference_with_duplicates_across_cell_edges(cell):
    rng = np.random.default_rng(1)
    lattice = lattice_matrix(cell)
    base = rng.random((150, 3))
    # Near-duplicates, some shifted by a whole cell or straddling a face (0.999 vs 0.001).
    dup = base[rng.integers(0, 150, 200)] + rng.normal(0, 4e-4, (200, 3))
    dup[:50] += rng.integers(-1, 2, (50, 3))
    edge = np.array([[0.9995, 0.5, 0.5], [0.0003, 0.5, 0.5], [0.5, -0.0004, 0.9999]])
    frac = np.vstack([base, dup, edge])[rng.permutation(353)]
    for tol in (0.01, 0.3):
        np.testing.assert_array_equal(
            cluster_periodic(frac, lattice, tol), _reference_greedy(frac, lattice, tol)
        )
    assert cluster_periodic(frac, lattice, 0.0).tolist() == list(range(len(frac)))


def test_ten_thousand_atom_p1_cif_projects_in_seconds():
    # The greedy O(N²) version took ~225 s for this on two cores; now well under a
    # second of CPU.  CPU time, not wall time, so a loaded machine does not fail it.
    rng = np.random.default_rng(0)
    n_side = 22  # 22³ = 10,648 sites on a jittered grid: no two atoms coincide
    grid = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    frac = (grid + 0.5 + rng.uniform(-0.2, 0.2, grid.shape)) / n_side
    rows = "\n".join(f"Si{i} Si {x:.6f} {y:.6f} {z:.6f}" for i, (x, y, z) in enumerate(frac))
    a = 2.35 * n_side
    text = (
        f"data_big\n_cell_length_a {a}\n_cell_length_b {a}\n_cell_length_c {a}\n"
        "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        "_symmetry_space_group_name_H-M 'P 1'\n"
        "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n"
        f"_atom_site_fract_y\n_atom_site_fract_z\n{rows}\n"
    )
    start = time.process_time()
    crystal = read_cif_text(text, name="big")
    cell = project(crystal, (0, 0, 1))
    cpu = time.process_time() - start
    assert len(crystal.atoms) == len(frac)
    assert len(cell.positions) > 0.9 * n_side**2  # most atoms have their own column
    assert cpu < 30.0, f"projecting {len(frac)} atoms took {cpu:.1f} s of CPU"
