"""Lattice periods of a frame series: measured from the mean power spectrum, they contain
the simulated crystal's lattice; noise alone has none; the search window and the test for
lattice-vector jumps follow the geometry."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_pinned._sample_data import gan_stack
from napari_pinned.denoising.lattice_period import (
    CONTENDER,
    JUMP_TOLERANCE,
    WINDOW_FRACTION,
    LatticePeriods,
    ghost_ratio,
    measure_periods,
    window_overlap,
)
from napari_pinned.noise.synthesis import add_cdn_noise
from napari_pinned.physics.materials import load_material
from napari_pinned.physics.projection import project
from napari_pinned.physics.simulate import simulate

PIXEL = 0.1


def _cell_in_pixels(material: str, zone: tuple[int, ...]) -> np.ndarray:
    """The projected cell vectors as image shifts ``(dy, dx)`` in pixels (the simulation
    lays the cell's x along the image columns, unrotated)."""
    vectors = project(load_material(material), zone).vectors / PIXEL  # rows (x, y)
    return vectors[:, ::-1]


def _lattice_coordinates(periods: LatticePeriods, vectors: np.ndarray) -> np.ndarray:
    return np.linalg.solve(periods.basis.T, vectors.T).T


def _srtio3_at_cdn_2() -> np.ndarray:
    clean = simulate("SrTiO3", shape=256, pixel_size=PIXEL, seed=0).image
    return add_cdn_noise(np.repeat(clean[None], 10, axis=0), 2, seed=0)


@pytest.mark.parametrize(
    ("material", "zone", "stack"),
    [("GaN", (1, 1, -2, 0), lambda: gan_stack()[0][0]), ("SrTiO3", (0, 0, 1), _srtio3_at_cdn_2)],
)
def test_the_measured_lattice_contains_the_crystal_lattice_at_cdn_2(material, zone, stack):
    """Every cell vector of the crystal is a whole-number combination of the measured
    basis (the measured lattice may be finer: a pseudo-lattice of alike columns)."""
    periods = measure_periods(stack())
    assert periods is not None and periods.basis.shape == (2, 2)
    cell = _cell_in_pixels(material, zone)
    coords = _lattice_coordinates(periods, cell)
    # Reflections are placed to a few hundredths of a bin, so a cell vector of 50 px is
    # placed to a few tenths of a pixel: a twentieth of a lattice coordinate is generous.
    np.testing.assert_allclose(coords, np.round(coords), atol=0.05)
    # The shortest period is no longer than the crystal's shortest cell vector.
    assert periods.periods.min() <= np.hypot(*cell.T).min() + 0.5


def test_the_gan_stack_jump_was_a_lattice_vector():
    """The frames of the shipped stack jumped by 27.6 px along x: a lattice vector."""
    periods = measure_periods(gan_stack()[0][0])
    assert periods.is_lattice_jump(np.array([-0.3, -28.25]))
    assert periods.is_lattice_jump(np.array([-0.6, -55.85]))
    assert not periods.is_lattice_jump(np.array([0.3, 0.5]))
    assert not periods.is_lattice_jump(np.array([0.0, 14.0]))  # half a period


def test_noise_alone_has_no_lattice():
    frames = np.random.default_rng(0).normal(100.0, 10.0, (10, 128, 128))
    assert measure_periods(frames) is None


def test_fringes_give_a_one_dimensional_lattice():
    rng = np.random.default_rng(1)
    x = np.arange(128)
    fringes = 100 + 80 * np.sin(2 * np.pi * x / 17.3)[None, :] * np.ones((128, 1))
    periods = measure_periods(rng.poisson(np.repeat(fringes[None], 4, 0) / 10).astype(float))
    assert periods is not None and periods.basis.shape == (1, 2)
    # Across the fringes (along x), one period of 17.3 px.
    np.testing.assert_allclose(np.abs(periods.basis[0]), [0.0, 17.3], atol=0.1)


def test_window_and_jumps_follow_the_geometry():
    square = LatticePeriods(basis=np.array([[0.0, 40.0], [40.0, 0.0]]))
    edge = WINDOW_FRACTION * 40.0
    centre = np.array([3.0, -2.0])
    dy = np.array([3.0, 3.0, 3.0 + edge - 0.1, 3.0 + edge + 0.1, 3.0 + edge - 0.1])
    dx = np.array([-2.0, -2.0 + edge - 0.1, -2.0, -2.0, -2.0 + edge - 0.1])
    # Inside along each axis; the corner of the square window is cut by the diagonals
    # b1 ± b2 (the Voronoi cell of the lattice, shrunk), at |e_y| + |e_x| < 2 · edge.
    assert square.window(dy, dx, centre).tolist() == [True, True, True, False, True]
    assert square.is_lattice_jump(np.array([40.0, 0.0]))
    assert square.is_lattice_jump(np.array([-40.0, 80.0 + JUMP_TOLERANCE * 40 - 0.5]))
    assert not square.is_lattice_jump(np.array([20.0, 20.0]))
    assert not square.is_lattice_jump(np.array([0.5, -0.5]))  # no jump: the same site


def _pair_correlation(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The circular correlation of the first two frames (Hann-windowed, mean-free) and
    the windows' overlap at each shift."""
    h, w = frames.shape[1:]
    window = np.outer(np.hanning(h), np.hanning(w))
    a, b = (np.fft.fft2((f - f.mean()) * window) for f in frames[:2].astype(np.float64))
    return np.fft.ifft2(a * np.conj(b)).real, window_overlap(h, w, 1.0)


def test_a_crystal_repeats_its_correlation_peak_and_a_random_specimen_does_not():
    """The confirmation of a lattice found in the spectrum: the GaN frames' correlation
    has its ghosts (about as high as the peak); a random specimen's has no peak a
    vector of the same lattice away (the lattice is imposed here, as if its speckle had
    been taken for reflections)."""
    crystal = gan_stack()[0][0]
    periods = measure_periods(crystal)
    assert ghost_ratio(periods, *_pair_correlation(crystal)) > CONTENDER
    rng = np.random.default_rng(3)
    field = ndimage.gaussian_filter(rng.normal(size=(256, 256)), 2.0)
    frames = rng.poisson(np.repeat((field - field.min())[None] * 20, 2, axis=0))
    assert ghost_ratio(periods, *_pair_correlation(frames.astype(float))) < CONTENDER
