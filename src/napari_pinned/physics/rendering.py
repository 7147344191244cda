"""Incoherent (HAADF-like) image formation: weighted atomic columns blurred by the probe.

In the incoherent-imaging approximation a HAADF image is the probe intensity
convolved with the object function, here a sum of weighted points at the projected
column positions: ``image = P ⊛ Σ_c w_c δ(r − r_c)`` with ``w_c = Σ Z^1.7`` over the
atoms in the column (see :mod:`napari_pinned.physics.projection`).

Column weights are deposited at their sub-pixel positions onto a padded canvas with one
:func:`numpy.bincount`, using separable 6-point Lagrange interpolation weights (exact
total, centroid and second moments; far more accurate than bilinear weights, whose
position-dependent blur changes peak heights by a few % at 0.1 Å/px), then convolved
with the probe kernel (:func:`napari_pinned.physics.probe.probe_kernel`) by real FFTs.
The pad covers the kernel's half-width and the stencil, so columns in the margin around
the field contribute and nothing wraps around from the far side; the canvas is cropped
back to the field.

The Debye–Waller factor, the rms atomic displacement u per axis (B = 8π²u²), has its
mean square split equally between a static random offset of each column (rms u/√2 per
axis, a frozen snapshot of the disorder, reported in the ground truth) and a Gaussian
blur of rms u/√2 in the probe kernel (the thermal average over the dwell time, i.e.
thermal diffuse smearing).  Averaged over seeds the image is the ideal one blurred by a
Gaussian of rms u, the Debye–Waller smearing.

Pixel coordinates are ``(row, col)`` with pixel centres at integers; the field of
view is ``[-0.5, shape - 0.5)`` along each axis.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy import fft as sfft

from napari_pinned._util.checks import check_non_negative, check_positive, check_shape
from napari_pinned._util.memory import check_memory, simulation_bytes
from napari_pinned.physics.probe import Probe, check_probe, kernel_half_width, probe_kernel
from napari_pinned.physics.tiling import ColumnSet

__all__ = [
    "check_simulation_memory",
    "render_columns",
    "render_margin",
    "simulation_canvas_pixels",
]

# Points per axis of the Lagrange deposition stencil (even: centred on the cell).
_STENCIL = 6


def split_debye_waller(u: float) -> tuple[float, float]:
    """(static rms, thermal rms) in Å, splitting u² equally so their sum is u²."""
    part = float(u) / math.sqrt(2.0)
    return part, part


def render_margin(probe: Probe, pixel_size: float, debye_waller: float = 0.0) -> float:
    """Distance (Å) outside the field from which columns still shine into it.

    Columns farther out than this contribute nothing to :func:`render_columns`; the
    kernel radius plus the deposition stencil, plus 5 rms of the static Debye–Waller
    offsets that can carry a column inwards (the margin
    :func:`napari_pinned.physics.simulate.simulate` tiles).
    """
    check_positive("pixel_size", pixel_size)
    check_non_negative("debye_waller", debye_waller)
    static, thermal = split_debye_waller(debye_waller)
    half_width = kernel_half_width(check_probe(probe), float(pixel_size), thermal)
    return (half_width + _STENCIL // 2 + 1) * float(pixel_size) + 5.0 * static


def simulation_canvas_pixels(
    shape: int | tuple[int, int], pixel_size: float, probe: Probe, debye_waller: float = 0.0
) -> float:
    """Pixels of the padded canvas that rendering a field of ``shape`` works on.

    The field plus :func:`render_margin` on every side; what
    :func:`napari_pinned._util.memory.simulation_bytes` prices.
    """
    rows, cols = check_shape(shape)
    pad = render_margin(probe, pixel_size, debye_waller) / pixel_size
    return (rows + 2 * pad) * (cols + 2 * pad)


def check_simulation_memory(
    shape: int | tuple[int, int],
    pixel_size: float,
    probe: Probe,
    what: str | None = None,
    *,
    debye_waller: float = 0.0,
) -> None:
    """Refuse, before anything is allocated, a simulation the memory cannot hold.

    Raises
    ------
    ValueError
        One line: ``what`` (default ``"simulating a R×C px image"``), how much it needs
        and how much is available.
    """
    rows, cols = check_shape(shape)
    canvas = simulation_canvas_pixels((rows, cols), pixel_size, probe, debye_waller)
    check_memory(simulation_bytes(canvas), what or f"simulating a {rows}×{cols} px image")


def render_columns(
    columns: ColumnSet,
    shape: tuple[int, int],
    pixel_size: float,
    probe: Probe,
    *,
    debye_waller: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Render weighted columns into a raw (unscaled) incoherent image.

    Parameters
    ----------
    columns : ColumnSet
        Column positions in pixel coordinates ``(row, col)``, which may lie in a margin
        outside the field, and their weights.
    shape : tuple of int
        ``(rows, cols)`` of the image.
    pixel_size : float
        Å per pixel.
    probe : GaussianProbe or AberratedProbe
        The probe.
    debye_waller : float
        rms atomic displacement u per axis in Å (B = 8π²u²), half of u² a static
        random offset of each column drawn from ``rng``, half a blur (module docstring).
    rng : numpy.random.Generator, optional
        Source of the static offsets; a fresh unseeded generator when omitted.

    Returns
    -------
    numpy.ndarray
        float64 image, non-negative; each column inside the field far from its edges
        contributes exactly its weight to the sum.
    """
    shape = check_shape(shape)
    check_positive("pixel_size", pixel_size)
    check_non_negative("debye_waller", debye_waller)
    probe = check_probe(probe)
    static, thermal = split_debye_waller(debye_waller)
    if static > 0.0:
        columns = displace(columns, static / pixel_size, rng or np.random.default_rng())
    kernel = probe_kernel(probe, float(pixel_size), thermal)
    return render(columns, shape, kernel)


def displace(columns: ColumnSet, rms_px: float, rng: np.random.Generator) -> ColumnSet:
    """The columns moved by random Gaussian offsets of ``rms_px`` pixels per axis."""
    positions = np.asarray(columns.positions, dtype=np.float64)
    offsets = rng.normal(0.0, rms_px, size=positions.shape)
    return replace(columns, positions=positions + offsets)


def render(columns: ColumnSet, shape: tuple[int, int], kernel: np.ndarray) -> np.ndarray:
    """The columns deposited on a padded canvas, convolved with ``kernel`` and cropped."""
    # The deposition stencil reaches _STENCIL // 2 pixels past a column; with this pad
    # every column whose stencil fits on the canvas has all its light accounted for,
    # and every column that can light the field fits.
    pad = kernel.shape[0] // 2 + _STENCIL // 2 + 2
    canvas_shape = (
        sfft.next_fast_len(shape[0] + 2 * pad, real=True),
        sfft.next_fast_len(shape[1] + 2 * pad, real=True),
    )
    positions = np.asarray(columns.positions, dtype=np.float64).reshape(-1, 2)
    canvas = _deposit(positions + pad, columns.weights, canvas_shape)
    blurred = sfft.irfft2(
        sfft.rfft2(canvas) * _kernel_spectrum(kernel, canvas_shape), s=canvas_shape
    )
    image = blurred[pad : pad + shape[0], pad : pad + shape[1]]
    # Clip the tiny negative ripples of the interpolating stencil (and FFT round-off)
    # where the image should be zero.
    return np.maximum(image, 0.0)


def _deposit(positions: np.ndarray, weights: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Spread point weights onto a grid with separable Lagrange interpolation weights.

    A point at fractional position ``t`` between pixels gets, on each axis, the weights
    of the degree-5 Lagrange polynomials through the six nearest pixels.  These are
    the weights that make ``Σ_i l_i f(i) = f(t)`` exact for polynomials up to degree 5,
    so the deposited grid has exactly the point's total, centroid and second moments,
    and convolving it with a smooth kernel reproduces the kernel shifted by ``t`` far
    better than bilinear (cloud-in-cell) weights: for a probe of σ = 3.4 px the largest
    error is 1e-4 of the peak instead of 2 % (1.7 px: 0.3 % instead of 7 %).  Points
    whose stencil leaves the grid are dropped.
    """
    weights = np.asarray(weights, dtype=np.float64)
    base = np.floor(positions)
    first = base - (_STENCIL // 2 - 1)
    inside = np.all((first >= 0) & (first + _STENCIL <= np.asarray(shape)), axis=1)
    if not inside.any():
        return np.zeros(shape)
    frac = positions[inside] - base[inside]
    wy = _lagrange_weights(frac[:, 0])
    wx = _lagrange_weights(frac[:, 1])
    share = weights[inside, None, None] * wy[:, :, None] * wx[:, None, :]
    offsets = np.arange(_STENCIL)
    rows = first[inside, 0].astype(np.int64)[:, None] + offsets
    cols = first[inside, 1].astype(np.int64)[:, None] + offsets
    index = rows[:, :, None] * shape[1] + cols[:, None, :]
    flat = np.bincount(index.ravel(), weights=share.ravel(), minlength=shape[0] * shape[1])
    return flat.reshape(shape)


def _lagrange_weights(t: np.ndarray) -> np.ndarray:
    """(N, _STENCIL) Lagrange weights for fractional offsets ``t`` in [0, 1)."""
    nodes = np.arange(_STENCIL) - (_STENCIL // 2 - 1)
    out = np.ones((t.size, _STENCIL))
    for m, node in enumerate(nodes):
        for other in nodes:
            if other != node:
                out[:, m] *= (t - other) / (node - other)
    return out


def _kernel_spectrum(kernel: np.ndarray, canvas_shape: tuple[int, int]) -> np.ndarray:
    h = kernel.shape[0] // 2
    embedded = np.zeros(canvas_shape)
    embedded[: kernel.shape[0], : kernel.shape[1]] = kernel
    # Centre the kernel on pixel (0, 0) so the convolution does not shift the image.
    embedded = np.roll(embedded, (-h, -h), axis=(0, 1))
    return sfft.rfft2(embedded)
