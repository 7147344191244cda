"""A lattice-averaged copy of an image: what the rest of the frame says each pixel is.

A crystal repeats over hundreds of unit cells, but a network sees a window of about a
hundred pixels.  The spectrum of the whole frame gathers the repeats: a lattice puts
its power into a few Bragg components that stand far above the noise, which spreads
evenly over all of them.  Keeping only the components whose power is
:data:`SIGNIFICANCE` times the noise's there, weighted by the Wiener gain
``1 − noise/power``, averages every column over the cells of the frame (a Bragg filter;
the Wiener-weighted form is Kilaas's, J. Microsc. 190, 45–51, 1998).

The copy is a prior, not an answer: at a vacancy, a dopant, a boundary or in vacuum it
shows the average lattice, not what is there.  Models that take it
(``conditioning="noise-map+lattice"``) get it as an input next to the image and learn
where it holds; the faithfulness readout and the lattice guard judge their output as
any other's.

* The noise is measured from the frame (:func:`napari_pinned.quality.risk.measure_scan_noise`:
  the pixel variance and the spectrum along each scan axis, from the band where a
  probe-limited image has no signal), so a detector's afterglow, which raises the
  noise at low frequencies along the fast scan, is allowed for.
* The frame is split into its periodic and smooth parts first (Moisan, J. Math. Imaging
  Vis. 39, 161–179, 2011): the edges of a frame that does not tile do not leak a cross
  of power through the spectrum.
* Frames larger than :data:`WINDOW` (plus half) are filtered in overlapping windows of
  that size, blended: the prior stays local enough to follow grains, bending and drift,
  and it is the prior the models were trained with (their training images are
  :data:`WINDOW`² px).
"""

from __future__ import annotations

import os

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from napari_pinned.quality.risk import ScanNoise, measure_scan_noise

__all__ = ["SIGNIFICANCE", "WINDOW", "bragg_filtered", "lattice_average", "periodic_part"]

#: A Fourier component is kept when its power is this many times the noise's there:
#: noise alone reaches it with probability e⁻¹⁰ per component, a handful in a 256² frame.
SIGNIFICANCE = 10.0
#: Edge (px) of the windows the prior is computed in; frames up to 1.5 × this are one
#: window.  The models that take the prior were trained on images of this size.
WINDOW = 256
#: Windows start this far apart (3/4 of a window) and are blended over their overlap.
STRIDE = 3 * WINDOW // 4
#: Frames smaller than this (px per side) have too few cells for a prior: it is their mean.
SMALLEST = 16
# Windows filtered in one stack (16 windows of 256² hold 17 MB of spectra each step),
# and the FFT's threads (the prior is computed before the network runs).
_BATCH = 16
_WORKERS = os.cpu_count() or 1


def periodic_part(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a 2D float image into ``(periodic, smooth)`` parts that add up to it.

    The smooth part solves Poisson's equation for the jumps across the frame's opposite
    edges (Moisan 2011); the periodic part's spectrum has no leakage from those edges.
    """
    h, w = image.shape[-2:]
    smooth = sfft.irfft2(_smooth_spectrum(image), s=(h, w), workers=_WORKERS)
    return image - smooth, smooth


def _smooth_spectrum(image: np.ndarray) -> np.ndarray:
    """The half spectrum (``rfft2``) of :func:`periodic_part`'s smooth part, of a frame
    or a stack of frames along the last two axes.

    The jumps across opposite edges lie on the frame's border only, so their 2D
    transform is the product of a 1D transform of each edge's jumps with the transform
    of a pair of ±1 at opposite edges: ``V(kx)·(1 − e^{2πi·ky/h}) + U(ky)·(1 −
    e^{2πi·kx/w})``, without a 2D transform.
    """
    h, w = image.shape[-2:]
    rows = image[..., -1, :] - image[..., 0, :]  # the jump across the top/bottom edges
    cols = image[..., :, -1] - image[..., :, 0]  # across the left/right edges
    ky = np.arange(h)
    kx = np.arange(w // 2 + 1)
    along_y = 1.0 - np.exp(2j * np.pi * ky / h)
    along_x = 1.0 - np.exp(2j * np.pi * kx / w)
    jumps = (
        sfft.rfft(rows, axis=-1)[..., None, :] * along_y[:, None]
        + sfft.fft(cols, axis=-1)[..., :, None] * along_x[None, :]
    )
    laplacian = (
        2.0 * np.cos(2.0 * np.pi * ky / h)[:, None]
        + 2.0 * np.cos(2.0 * np.pi * kx / w)[None, :]
        - 4.0
    )
    laplacian[0, 0] = 1.0
    spectrum = jumps / laplacian
    spectrum[..., 0, 0] = 0.0
    return spectrum


def bragg_filtered(image: np.ndarray, noise: ScanNoise) -> np.ndarray:
    """One window's significant components (float64), with its mean and smooth part.

    ``image`` may be a stack of windows of one size (along its first axis), filtered
    each on its own.  ``noise`` is the frame's
    (:func:`napari_pinned.quality.risk.measure_scan_noise`), its spectra interpolated
    to the window's size.
    """
    x = np.asarray(image, np.float64)
    h, w = x.shape[-2:]
    half = w // 2 + 1
    mean = x.mean(axis=(-2, -1), keepdims=True)
    # Real input: the half spectrum (kx ≥ 0) holds everything, at half the cost.  The
    # periodic part's spectrum is the frame's less the smooth part's, which comes back
    # in the inverse transform: one transform each way.
    smooth = _smooth_spectrum(x)
    spectrum = sfft.rfft2(x - mean, workers=_WORKERS) - smooth
    power = spectrum.real**2 + spectrum.imag**2
    along_y, along_x = noise.spectra((h, w))
    floor = (h * w * noise.variance) * along_y[:, None] * along_x[None, :half]
    keep = power > SIGNIFICANCE * floor
    keep[..., 0, 0] = True
    # A lattice rotated against the pixel grid spreads each reflection over neighbouring
    # bins: keep those too (and the lowest frequencies, a background's, where they are
    # above the noise).  The dilation runs on the whole centred plane, rebuilt from the
    # half by the spectrum's symmetry (bin (−ky, −kx) is (ky, kx)'s conjugate).
    mirrored = np.roll(keep[..., ::-1, :], 1, axis=-2)  # bin (−ky) at ky
    tail = mirrored[..., :, 1 : w - half + 1][..., :, ::-1]  # kx = −w/2 + 1 … −1
    whole = np.concatenate([keep, tail], axis=-1)
    shift = (-2, -1)
    cross = ndimage.generate_binary_structure(2, 1)
    if whole.ndim == 3:
        cross = cross[None]
    grown = np.fft.ifftshift(
        ndimage.binary_dilation(np.fft.fftshift(whole, axes=shift), cross), axes=shift
    )
    # On an even grid the centred plane's Nyquist row and column have no partner, so the
    # dilation is not quite symmetric: a component and its conjugate share the mean of
    # their two weights (what the real part of a full inverse transform takes).
    partner = np.roll(grown[..., ::-1, ::-1], (1, 1), axis=shift)
    keep = 0.5 * (grown[..., :half].astype(np.float64) + partner[..., :half])
    ratio = np.divide(floor, power, out=np.ones_like(power), where=power > 0)
    gain = np.clip(1.0 - ratio, 0.0, 1.0) * keep
    gain[..., 0, 0] = 1.0
    return sfft.irfft2(spectrum * gain + smooth, s=(h, w), workers=_WORKERS) + mean


def lattice_average(image: np.ndarray, noise: ScanNoise | None = None) -> np.ndarray:
    """The lattice-averaged copy of a 2D image, float32, in the image's scale.

    Parameters
    ----------
    image : numpy.ndarray
        2D frame, any real dtype, finite (repair hot and dead pixels first: one such
        pixel spreads over every component).
    noise : ScanNoise, optional
        The frame's noise; measured from it when not given.

    Returns
    -------
    numpy.ndarray
        Same shape, float32.  Equivariant to gain and offset: ``f(a·x + b) = a·f(x) + b``
        for ``a > 0``.
    """
    x = np.asarray(image, np.float64)
    if x.ndim != 2:
        raise ValueError(f"need a 2D image, got shape {x.shape}")
    if min(x.shape) < SMALLEST:
        return np.full(x.shape, x.mean(), np.float32)
    if float(x.max()) == float(x.min()):  # no noise to tell a lattice from
        return x.astype(np.float32)
    if noise is None:
        noise = measure_scan_noise(x)
    h, w = x.shape
    if max(h, w) <= WINDOW * 3 // 2:
        return bragg_filtered(x, noise).astype(np.float32)
    out = np.zeros(x.shape, np.float64)
    total = np.zeros(x.shape, np.float64)
    windows = [(rows, cols) for rows in _windows(h) for cols in _windows(w)]
    # Windows of one shape are filtered together, a batch at a time (bounded memory).
    by_shape: dict[tuple[int, int], list[tuple[slice, slice]]] = {}
    for rows, cols in windows:
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        by_shape.setdefault(shape, []).append((rows, cols))
    for (wh, ww), group in by_shape.items():
        weight = _taper(wh)[:, None] * _taper(ww)[None, :]
        for first in range(0, len(group), _BATCH):
            batch = group[first : first + _BATCH]
            filtered = bragg_filtered(np.stack([x[r, c] for r, c in batch]), noise)
            for (rows, cols), part in zip(batch, filtered, strict=True):
                out[rows, cols] += weight * part
                total[rows, cols] += weight
    return (out / total).astype(np.float32)


def _windows(length: int) -> list[slice]:
    """Windows of :data:`WINDOW` px (the whole length if shorter) :data:`STRIDE` apart,
    the last one ending at the edge."""
    if length <= WINDOW * 3 // 2:
        return [slice(0, length)]
    starts = [*range(0, length - WINDOW, STRIDE), length - WINDOW]
    return [slice(s, s + WINDOW) for s in starts]


def _taper(length: int) -> np.ndarray:
    """Blending weight along one axis of a window: 1 inside, falling linearly to near
    zero over the outer ``WINDOW − STRIDE`` px (never zero, so a frame's edge pixels,
    covered by one window only, keep a weight)."""
    ramp = min(WINDOW - STRIDE, length // 2)
    position = np.minimum(np.arange(length), np.arange(length)[::-1]) + 0.5
    return np.clip(position / ramp, 1e-3, 1.0)
