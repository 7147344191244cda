"""Power spectra: peak positions, shapes, the Hann window's effect, input checks; the
noise floor and the thresholds the faithfulness readout and the lattice guard share."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned.quality import faithfulness, lattice_guard
from napari_pinned.quality.spectra import (
    STRONG_REFLECTION_SNR,
    hann_window,
    power_spectrum,
    tile_floor,
)
from napari_pinned.quality.subpixel import parabola_vertex


def _cosine(shape: tuple[int, int], ky: int, kx: int, offset: float = 2.0) -> np.ndarray:
    """A cosine lattice with ``ky`` and ``kx`` whole periods over the image."""
    rows, cols = shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    return offset + np.cos(2 * np.pi * (ky * y / rows + kx * x / cols))


def _peak_offsets(spectrum: np.ndarray, exclude_radius: int = 2) -> set[tuple[int, int]]:
    """Offsets from the centre of the brightest pixels outside the zero-frequency spot."""
    rows, cols = spectrum.shape
    cy, cx = rows // 2, cols // 2
    y, x = np.mgrid[0:rows, 0:cols]
    masked = np.where(np.hypot(y - cy, x - cx) > exclude_radius, spectrum, -np.inf)
    top = masked.max()
    # The two conjugate peaks are equal up to rounding; anything else is far below.
    hits = np.argwhere(masked >= top - 1e-3 * abs(top))
    return {(int(r - cy), int(c - cx)) for r, c in hits}


@pytest.mark.parametrize("window", [False, True])
@pytest.mark.parametrize(("shape", "ky", "kx"), [((64, 64), 5, 9), ((48, 80), -3, 11)])
def test_cosine_lattice_peaks_at_its_frequency(shape, ky, kx, window):
    spectrum = power_spectrum(_cosine(shape, ky, kx), window=window)
    assert _peak_offsets(spectrum) == {(ky, kx), (-ky, -kx)}


def test_zero_frequency_is_at_the_centre():
    image = np.full((33, 40), 7.0)  # odd and even sizes: centre is (Y // 2, X // 2)
    spectrum = power_spectrum(image, window=False)
    assert np.unravel_index(np.argmax(spectrum), spectrum.shape) == (16, 20)
    # A constant image has power only at zero frequency: |sum|² = (7·33·40)².
    assert spectrum[16, 20] == pytest.approx(np.log1p((7.0 * 33 * 40) ** 2), rel=1e-6)
    others = np.delete(spectrum.ravel(), 16 * 40 + 20)
    assert np.all(others < 1e-6)


def test_shape_dtype_and_stack_per_frame():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (48, 80)).astype(np.uint8)
    out = power_spectrum(image)
    assert out.shape == (48, 80) and out.dtype == np.float32
    assert np.all(np.isfinite(out)) and out.min() >= 0.0

    stack = rng.normal(100, 10, (3, 32, 40)).astype(np.float32)
    out3 = power_spectrum(stack, window=True)
    assert out3.shape == (3, 32, 40) and out3.dtype == np.float32
    for frame, spectrum in zip(stack, out3, strict=True):
        np.testing.assert_array_equal(power_spectrum(frame, window=True), spectrum)


def test_matches_numpy_definition():
    rng = np.random.default_rng(1)
    image = rng.normal(0, 1, (16, 24))
    expected = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(image * hann_window(image.shape)))) ** 2)
    np.testing.assert_allclose(power_spectrum(image, window=True), expected, rtol=1e-5)


def _cross_fraction(spectrum: np.ndarray, min_offset: int = 4) -> float:
    """Share of the (linear) power on the two frequency axes, away from the centre."""
    power = np.expm1(spectrum.astype(np.float64))
    rows, cols = power.shape
    cy, cx = rows // 2, cols // 2
    y, x = np.mgrid[0:rows, 0:cols]
    far = np.hypot(y - cy, x - cx) >= min_offset
    on_axes = far & ((y == cy) | (x == cx))
    return power[on_axes].sum() / power[far].sum()


def test_window_suppresses_the_edge_cross():
    # A lattice on a tilted background: the background's jump across opposite edges
    # of the periodic extension is a sawtooth, whose spectrum falls only as 1/k² in
    # power along both axes — the cross.  A Hann taper makes the extension smooth.
    rows, cols = 96, 96
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    image = 50 + 0.8 * x + 0.5 * y + 10 * _cosine((rows, cols), 7, 12, offset=0.0)
    plain = _cross_fraction(power_spectrum(image, window=False))
    tapered = _cross_fraction(power_spectrum(image, window=True))
    assert plain > 0.5  # without the window most power off-centre is in the cross
    assert tapered < plain / 20
    # The lattice peaks survive the window.
    assert _peak_offsets(power_spectrum(image, window=True), exclude_radius=4) == {
        (7, 12),
        (-7, -12),
    }


def test_hann_window_shape_and_edges():
    w = hann_window((8, 5))
    assert w.shape == (8, 5)
    assert np.all(w[0] == 0) and np.all(w[:, -1] == 0)
    assert w.max() <= 1.0
    np.testing.assert_array_equal(hann_window((1, 4))[0], np.hanning(4))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((2, 3, 4, 5)), "must be 2D or 3D"),
        (np.zeros((32, 32, 3)), "RGB"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
    ],
)
def test_rejects_bad_images(bad, message):
    with pytest.raises(ValueError, match=message):
        power_spectrum(bad)


# -- what stands above the noise: shared by the readout and the guard --------------------


def _white_power(shape: tuple[int, int], mean: float, seed: int = 0) -> np.ndarray:
    """Power spectrum of white noise: exponentially distributed bins of this mean."""
    return np.random.default_rng(seed).exponential(mean, shape)


@pytest.mark.parametrize(("step", "smooth"), [(1, True), (2, False)])
def test_tile_floor_is_the_mean_noise_power(step, smooth):
    power = _white_power((256, 129), 3.0)
    floor = tile_floor(power, step=step, smooth=smooth)
    assert floor.shape == power.shape and floor.dtype == np.float64
    # The floors are unbiased; one tile's median of 16 exponential bins over ln 2 scatters
    # by 36 % of the mean, the smoothed median of nine tiles of 64 by about 8 %.
    assert float(np.mean(floor)) == pytest.approx(3.0, rel=0.05)
    assert float(np.std(floor)) < (0.12 if smooth else 0.45) * 3.0


def test_tile_floor_ignores_a_lattices_reflections():
    power = _white_power((128, 128), 1.0, seed=1)
    power[::8, ::8] = 1e6  # one reflection per tile
    np.testing.assert_allclose(
        tile_floor(power), tile_floor(_white_power((128, 128), 1.0, 1)), rtol=0.2
    )


def test_tile_floor_smoothing_outvotes_one_crowded_tile():
    power = _white_power((64, 64), 1.0, seed=2)
    power[24:32, 24:32] = 50.0  # a tile full of reflections
    assert tile_floor(power, smooth=False)[28, 28] == pytest.approx(50.0 / np.log(2.0))
    assert tile_floor(power)[28, 28] < 2.0


def test_the_readout_and_the_guard_share_what_a_strong_reflection_is():
    assert faithfulness.STRONG_PEAK_SNR == lattice_guard.GUARD_SNR == STRONG_REFLECTION_SNR


def test_parabola_vertex_is_exact_for_a_gaussian():
    x0, sigma = 0.3, 1.7
    log = [-((x - x0) ** 2) / (2 * sigma**2) for x in (-1.0, 0.0, 1.0)]
    assert float(parabola_vertex(*(np.array(v) for v in log))) == pytest.approx(x0)
    # No maximum to refine: a flat, rising or undefined run gives 0.
    assert float(parabola_vertex(np.array(1.0), np.array(1.0), np.array(1.0))) == 0.0
    assert float(parabola_vertex(np.array(-np.inf), np.array(0.0), np.array(0.0))) == 0.0
