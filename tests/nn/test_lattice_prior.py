"""The lattice prior: a crystal's columns averaged over the frame, noise alone left out."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned.nn.lattice_prior import SMALLEST, WINDOW, lattice_average, periodic_part
from napari_pinned.noise.scanning import apply_afterglow
from napari_pinned.physics.simulate import simulate
from napari_pinned.quality.risk import ScanNoise, measure_scan_noise


def _lattice(shape, dose: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(Poisson counts, expected counts) of SrTiO3 [001] at 0.1 Å/px."""
    clean = simulate("SrTiO3", shape=shape, pixel_size=0.1, seed=0).image.astype(np.float64)
    truth = clean / clean.mean() * dose
    return np.random.default_rng(seed).poisson(truth).astype(np.float64), truth


@pytest.mark.parametrize("shape", [256, (400, 700)], ids=["one window", "windows"])
@pytest.mark.parametrize("dose", [3.0, 30.0])
def test_the_prior_of_a_lattice_carries_a_fraction_of_the_noise(shape, dose):
    """A 256² frame of SrTiO3 holds about 40 cells: its significant components carry
    the columns with about a tenth of the noise variance (0.08–0.13 measured over
    seeds), also at the frame's edges (0.09–0.22) and where windows are blended."""
    noisy, truth = _lattice(shape, dose, seed=int(dose))
    prior = lattice_average(noisy)
    assert prior.shape == noisy.shape and prior.dtype == np.float32
    error = (prior - truth) ** 2 / dose  # Poisson: the noise variance is the dose
    assert float(error.mean()) < 0.2
    for edge in (error[:32], error[-32:], error[:, :32], error[:, -32:]):
        assert float(edge.mean()) < 0.35


@pytest.mark.parametrize("tau", [0.0, 2.0])
def test_noise_alone_leaves_the_prior_flat(tau):
    """Without a lattice nothing stands above the noise: under 1 % of the noise variance
    passes for white noise, about 2 % for an afterglow of 2 px, whose low-frequency
    excess the measured spectrum allows for; taken as white, 15 % would pass."""
    counts = np.random.default_rng(7).poisson(20.0, (256, 256)).astype(np.float32)
    recorded = apply_afterglow(counts, tau) if tau else counts
    variance = float(recorded.var())
    assert float(lattice_average(recorded).var()) < 0.05 * variance
    if tau:
        measured = measure_scan_noise(recorded)
        white = ScanNoise(measured.variance, np.ones(256), np.ones(256))
        assert float(lattice_average(recorded, white).var()) > 0.1 * variance


def test_the_prior_is_equivariant_to_gain_and_offset():
    noisy, _ = _lattice(256, 10.0, seed=1)
    base = lattice_average(noisy).astype(np.float64)
    scaled = lattice_average(7.5 * noisy + 1000.0).astype(np.float64)
    np.testing.assert_allclose(scaled, 7.5 * base + 1000.0, rtol=0, atol=1e-3 * 7.5 * noisy.std())


def test_the_periodic_and_smooth_parts_add_up_and_the_periodic_part_tiles():
    """Moisan's decomposition: the parts sum to the image, and the periodic part's
    opposite edges meet as smoothly as its inside (no jump for the spectrum to spread)."""
    image = np.add.outer(np.linspace(0, 50, 96), np.linspace(0, 30, 80))  # a ramp
    image += np.random.default_rng(0).normal(0, 1, image.shape)
    periodic, smooth = periodic_part(image)
    np.testing.assert_allclose(periodic + smooth, image, atol=1e-9)
    inside = np.abs(np.diff(periodic, axis=0)).mean()
    across = np.abs(periodic[0] - periodic[-1]).mean()
    assert across < 2 * inside
    assert np.abs(image[0] - image[-1]).mean() > 20 * inside


def test_small_and_flat_frames():
    tiny = np.arange(SMALLEST * (SMALLEST - 1), dtype=float).reshape(SMALLEST - 1, SMALLEST)
    np.testing.assert_array_equal(lattice_average(tiny), np.float32(tiny.mean()))
    flat = np.full((64, 64), 3.0)
    np.testing.assert_allclose(lattice_average(flat), 3.0)
    with pytest.raises(ValueError, match="2D"):
        lattice_average(np.zeros((2, 32, 32)))


def test_frames_up_to_one_and_a_half_windows_are_one_window():
    """The prior a model was trained with (one window of its 256² images) is the one it
    gets on frames of that size; larger frames are blended from windows."""
    noisy, _ = _lattice((WINDOW * 3 // 2, 200), 10.0, seed=3)
    noise = measure_scan_noise(noisy)
    from napari_pinned.nn.lattice_prior import bragg_filtered

    np.testing.assert_allclose(
        lattice_average(noisy, noise), bragg_filtered(noisy, noise).astype(np.float32)
    )
