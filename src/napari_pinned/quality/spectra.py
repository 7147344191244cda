"""Power spectra for looking at images in Fourier space.

An atomic lattice shows up as sharp spots in the power spectrum of its image, noise as a
diffuse background, so the spectrum is the quickest way to see what a denoiser kept and
what it removed (the paper's FSC metric compares exactly these magnitude spectra).

The discrete Fourier transform treats an image as one period of a periodic pattern, so
the jump between opposite edges of a real image adds a bright cross along the frequency
axes that is not in the specimen.  A separable Hann window tapers the edges to zero and
suppresses that cross (Harris, "On the use of windows for harmonic analysis with the
discrete Fourier transform", Proc. IEEE 66, 1978).
"""

from __future__ import annotations

import numpy as np

from napari_pinned._util.intensity import check_image

__all__ = ["hann_window", "power_spectrum"]


def hann_window(shape: tuple[int, int]) -> np.ndarray:
    """Separable 2D Hann window of ``shape`` (float64, peak 1, zero at the edges).

    A one-pixel axis gets weight 1 (numpy's Hann of length 1 is ``[1.0]``).
    """
    rows, cols = shape
    return np.outer(np.hanning(rows), np.hanning(cols))


def _frame_spectrum(frame: np.ndarray, window: np.ndarray | None) -> np.ndarray:
    data = frame.astype(np.float64, copy=False)
    if window is not None:
        data = data * window
    spectrum = np.fft.fftshift(np.fft.fft2(data))
    power = spectrum.real**2 + spectrum.imag**2
    return np.log1p(power).astype(np.float32)


def power_spectrum(image: np.ndarray, *, window: bool = True) -> np.ndarray:
    """Log power spectrum ``log(1 + |FFT|²)``, zero frequency at the centre.

    Parameters
    ----------
    image : numpy.ndarray
        2D image or ``(N, Y, X)`` stack; a stack is transformed frame by frame.
    window : bool
        Multiply each frame by a 2D Hann window first, which removes the bright cross
        that the discontinuity between opposite image edges adds along the frequency
        axes.  The window also lowers the overall power (by about 2.6 in 2D,
        ``1 / mean(w²)``), so compare spectra computed with the same setting.

    Returns
    -------
    numpy.ndarray
        float32 array of the input's shape.  The zero frequency sits at index
        ``(Y // 2, X // 2)`` of each frame (``numpy.fft.fftshift``), and the pixel at
        offset ``(ky, kx)`` from it is the spatial frequency ``(ky / Y, kx / X)``
        cycles per pixel.

    Raises
    ------
    ValueError
        If the image is not 2D or 3D, is RGB, empty, or contains NaN or infinite values.
    """
    arr = check_image(image, name="image", ndim=(2, 3))
    frames = arr[None] if arr.ndim == 2 else arr
    taper = hann_window(frames.shape[1:]) if window else None
    out = np.empty(frames.shape, np.float32)
    # Frame by frame bounds the complex intermediate to one frame, whatever the stack size.
    for i, frame in enumerate(frames):
        out[i] = _frame_spectrum(frame, taper)
    return out[0] if arr.ndim == 2 else out
