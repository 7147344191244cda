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

import numpy as np
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


def periodic_part(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a 2D float image into ``(periodic, smooth)`` parts that add up to it.

    The smooth part solves Poisson's equation for the jumps across the frame's opposite
    edges (Moisan 2011); the periodic part's spectrum has no leakage from those edges.
    """
    h, w = image.shape
    jumps = np.zeros_like(image)
    jumps[0, :] += image[-1, :] - image[0, :]
    jumps[-1, :] += image[0, :] - image[-1, :]
    jumps[:, 0] += image[:, -1] - image[:, 0]
    jumps[:, -1] += image[:, 0] - image[:, -1]
    q = np.arange(h)[:, None]
    r = np.arange(w)[None, :]
    laplacian = 2.0 * np.cos(2.0 * np.pi * q / h) + 2.0 * np.cos(2.0 * np.pi * r / w) - 4.0
    laplacian[0, 0] = 1.0
    spectrum = np.fft.fft2(jumps) / laplacian
    spectrum[0, 0] = 0.0
    smooth = np.fft.ifft2(spectrum).real
    return image - smooth, smooth


def bragg_filtered(image: np.ndarray, noise: ScanNoise) -> np.ndarray:
    """One window's significant components (float64), with its mean and smooth part.

    ``noise`` is the frame's (:func:`napari_pinned.quality.risk.measure_scan_noise`),
    its spectra interpolated to the window's size.
    """
    x = np.asarray(image, np.float64)
    mean = float(x.mean())
    periodic, smooth = periodic_part(x - mean)
    spectrum = np.fft.fft2(periodic)
    power = np.abs(spectrum) ** 2
    along_y, along_x = noise.spectra(x.shape)
    floor = x.size * noise.variance * along_y[:, None] * along_x[None, :]
    keep = power > SIGNIFICANCE * floor
    keep[0, 0] = True
    # A lattice rotated against the pixel grid spreads each reflection over neighbouring
    # bins: keep those too (and the lowest frequencies, a background's, where they are
    # above the noise).
    keep = np.fft.ifftshift(ndimage.binary_dilation(np.fft.fftshift(keep)))
    ratio = np.divide(floor, power, out=np.ones_like(power), where=power > 0)
    gain = np.clip(1.0 - ratio, 0.0, 1.0) * keep
    gain[0, 0] = 1.0
    return np.fft.ifft2(spectrum * gain).real + smooth + mean


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
    for rows in _windows(h):
        for cols in _windows(w):
            part = x[rows, cols]
            weight = _taper(part.shape[0])[:, None] * _taper(part.shape[1])[None, :]
            out[rows, cols] += weight * bragg_filtered(part, noise)
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
