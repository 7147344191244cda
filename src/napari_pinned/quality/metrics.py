"""Image-quality metrics of the PINNED paper: PSNR, SSIM, FSC and EPI.

Definitions follow the paper's "Evaluation metrics" section.  PSNR and SSIM need the
intensity range of the data; by default it is inferred from the reference with
:func:`napari_pinned._util.intensity.infer_data_range` (255 for images on the paper's 8-bit
scale, otherwise the reference's own max − min), so that "PSNR 20 dB" means the same
thing for uint8, uint16 and float images.

Column accuracy (:mod:`napari_pinned.quality.columns`) and the reference-free
faithfulness readout (:mod:`napari_pinned.quality.faithfulness`) live in their own
modules and are offered here too, where callers have always found them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from skimage.metrics import structural_similarity

from napari_pinned._util.intensity import check_image, infer_data_range

__all__ = [
    "Metrics",
    "compute_metrics",
    "compute_metrics_stack",
    "epi",
    "format_metrics_table",
    "fsc",
    "mean_metrics",
    "psnr",
    "ssim",
]

# skimage's default SSIM window (7×7); smaller images use the largest odd window that fits.
_SSIM_WINDOW = 7


@dataclass(frozen=True)
class Metrics:
    """The paper's four quality metrics for one image against its reference.

    Attributes
    ----------
    psnr : float
        Peak signal-to-noise ratio in dB (``inf`` for identical images).
    ssim : float
        Structural similarity index (1 for identical images).
    fsc : float
        Fourier spectrum consistency, cosine similarity of magnitude spectra (0 to 1).
    epi : float
        Edge preservation index, ratio of total gradient magnitudes (1 = same edge content).
    """

    psnr: float
    ssim: float
    fsc: float
    epi: float

    def as_dict(self) -> dict[str, float]:
        """Return ``{"psnr": ..., "ssim": ..., "fsc": ..., "epi": ...}``."""
        return {"psnr": self.psnr, "ssim": self.ssim, "fsc": self.fsc, "epi": self.epi}

    def __str__(self) -> str:
        """One readable line, e.g. ``PSNR 24.31 dB, SSIM 0.7123, FSC 0.9876, EPI 0.912``;
        ``repr`` keeps the dataclass form."""
        parts = []
        for title, attr, fmt in METRIC_COLUMNS:
            label, _, unit = title.partition(" (")
            value = fmt.format(getattr(self, attr))
            parts.append(f"{label} {value}" + (f" {unit.rstrip(')')}" if unit else ""))
        return ", ".join(parts)


def _pair(image: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a 2D image/reference pair and return both as float64."""
    img = check_image(image, name="image", ndim=(2,))
    ref = check_image(reference, name="reference", ndim=(2,))
    if img.shape != ref.shape:
        raise ValueError(
            f"image has shape {img.shape} but reference has shape {ref.shape}; they must match"
        )
    return img.astype(np.float64, copy=False), ref.astype(np.float64, copy=False)


def _data_range(reference: np.ndarray, data_range: float | None) -> float:
    if data_range is None:
        lo, hi = infer_data_range(reference)
        return hi - lo
    value = float(data_range)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}")
    return value


def psnr(image: np.ndarray, reference: np.ndarray, *, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio ``10 log10(MAX² / MSE)`` in dB.

    Parameters
    ----------
    image, reference : numpy.ndarray
        2D images of the same shape.
    data_range : float, optional
        ``MAX``, the span of possible intensities; inferred from ``reference`` by default.

    Returns
    -------
    float
        PSNR in dB; ``math.inf`` when the images are identical.
    """
    img, ref = _pair(image, reference)
    peak = _data_range(ref, data_range)
    mse = float(np.mean((img - ref) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def ssim(image: np.ndarray, reference: np.ndarray, *, data_range: float | None = None) -> float:
    """Structural similarity index (Wang et al. 2004) as computed by scikit-image.

    Uses :func:`skimage.metrics.structural_similarity` with its defaults (7×7 uniform
    window, sample covariance) and an explicit ``data_range`` so the stabilising
    constants do not depend on the dtype.  Images smaller than 7 pixels on a side use
    the largest odd window that fits (at least 3).

    Parameters
    ----------
    image, reference : numpy.ndarray
        2D images of the same shape, at least 3×3.
    data_range : float, optional
        Span of possible intensities; inferred from ``reference`` by default.

    Returns
    -------
    float
        Mean SSIM (1 for identical images).
    """
    img, ref = _pair(image, reference)
    peak = _data_range(ref, data_range)
    window = min(_SSIM_WINDOW, *ref.shape)
    if window % 2 == 0:
        window -= 1
    if window < 3:
        raise ValueError(f"SSIM needs images of at least 3×3 pixels, got shape {ref.shape}")
    return float(structural_similarity(img, ref, data_range=peak, win_size=window))


def fsc(image: np.ndarray, reference: np.ndarray) -> float:
    """Fourier spectrum consistency: cosine similarity of the magnitude spectra.

    ``FSC = Σ_k |F(x̂)(k)| |F(x)(k)| / sqrt(Σ_k |F(x̂)(k)|² · Σ_k |F(x)(k)|²)``

    The paper prints the square root over ``Σ_k |F(x̂)|² · |F(x)|²`` (one sum of the
    products), which is not bounded by 1 and does not equal 1 for identical images;
    the form above — the product of two sums — is the cosine similarity the text
    describes.  It is 1 for identical images and invariant to scaling either image.
    The spectrum includes the zero-frequency term, so mean intensity counts too.

    Parameters
    ----------
    image, reference : numpy.ndarray
        2D images of the same shape; FSC is symmetric, so their order does not matter.

    Returns
    -------
    float
        Value in [0, 1].  Two all-zero images give 1; one all-zero image gives 0.
    """
    img, ref = _pair(image, reference)
    a = np.abs(np.fft.fft2(img))
    b = np.abs(np.fft.fft2(ref))
    norm = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    if norm == 0.0:
        return 1.0 if not (a.any() or b.any()) else 0.0
    return min(float(np.sum(a * b)) / norm, 1.0)


def _total_gradient(image: np.ndarray) -> float:
    """‖∇x‖₁ with forward differences along both axes."""
    return float(np.abs(np.diff(image, axis=0)).sum() + np.abs(np.diff(image, axis=1)).sum())


def epi(image: np.ndarray, reference: np.ndarray) -> float:
    """Edge preservation index ``‖∇x̂‖₁ / ‖∇x‖₁``.

    Gradients are forward differences along both axes; the norm is the sum of their
    absolute values.  Below 1 the image has less edge content than the reference
    (blurred), above 1 more (noise or ringing).

    Parameters
    ----------
    image : numpy.ndarray
        The image judged (e.g. the denoised one), 2D.
    reference : numpy.ndarray
        The image whose edges count as right, same shape.

    Returns
    -------
    float
        The ratio; 1 when both images are flat, ``math.inf`` when only the reference is.
    """
    img, ref = _pair(image, reference)
    num = _total_gradient(img)
    den = _total_gradient(ref)
    if den == 0.0:
        return 1.0 if num == 0.0 else math.inf
    return num / den


def compute_metrics(
    image: np.ndarray, reference: np.ndarray, *, data_range: float | None = None
) -> Metrics:
    """All four metrics for a 2D image against its reference.

    Parameters
    ----------
    image, reference : numpy.ndarray
        2D images of the same shape.
    data_range : float, optional
        Span of possible intensities for PSNR and SSIM; inferred from ``reference``.

    Returns
    -------
    Metrics

    Raises
    ------
    ValueError
        If either image is not 2D, contains NaN/inf, or the shapes differ.
    """
    img, ref = _pair(image, reference)
    peak = _data_range(ref, data_range)
    return Metrics(
        psnr=psnr(img, ref, data_range=peak),
        ssim=ssim(img, ref, data_range=peak),
        fsc=fsc(img, ref),
        epi=epi(img, ref),
    )


def compute_metrics_stack(
    image: np.ndarray, reference: np.ndarray, *, data_range: float | None = None
) -> list[Metrics]:
    """Metrics frame by frame for a stack ``(N, Y, X)`` (a 2D pair gives one entry).

    A 2D reference with a 3D image compares every frame with that one reference.
    The data range, when not given, is inferred once from the whole reference so that
    all frames are scored on the same scale.

    Returns
    -------
    list of Metrics
        One entry per frame.

    Raises
    ------
    ValueError
        On invalid images or mismatched shapes (the message names both shapes).
    """
    img = check_image(image, name="image", ndim=(2, 3))
    ref = check_image(reference, name="reference", ndim=(2, 3))
    frame_shape_ok = img.shape[-2:] == ref.shape[-2:]
    if not frame_shape_ok or (ref.ndim == 3 and img.shape != ref.shape):
        raise ValueError(
            f"image has shape {img.shape} but reference has shape {ref.shape}; they must match"
        )
    peak = _data_range(ref, data_range)
    if img.ndim == 2:
        return [compute_metrics(img, ref, data_range=peak)]
    refs = ref if ref.ndim == 3 else [ref] * img.shape[0]
    return [compute_metrics(f, r, data_range=peak) for f, r in zip(img, refs, strict=True)]


def mean_metrics(metrics: Sequence[Metrics]) -> Metrics:
    """Average each metric over frames (an infinite PSNR makes the mean infinite).

    Raises
    ------
    ValueError
        If ``metrics`` is empty.
    """
    if len(metrics) == 0:
        raise ValueError("cannot average an empty list of metrics")
    values = np.array([[m.psnr, m.ssim, m.fsc, m.epi] for m in metrics], dtype=np.float64)
    means = values.mean(axis=0)
    return Metrics(*(float(v) for v in means))


#: (label, Metrics attribute, format) of every metric, in display order; the CLI table and
#: the denoise widget's readouts both use it.
METRIC_COLUMNS = (
    ("PSNR (dB)", "psnr", "{:.2f}"),
    ("SSIM", "ssim", "{:.4f}"),
    ("FSC", "fsc", "{:.4f}"),
    ("EPI", "epi", "{:.3f}"),
)


def format_metrics_table(rows: Mapping[str, Metrics]) -> str:
    """Format named metrics as an aligned plain-text table.

    Columns: name, PSNR (dB), SSIM, FSC, EPI.  Infinite values print as ``inf``.

    Parameters
    ----------
    rows : Mapping[str, Metrics]
        Row label → metrics, in display order.

    Returns
    -------
    str
        The table, header and rule first, without a trailing newline.
    """
    header = ["name", *(title for title, _, _ in METRIC_COLUMNS)]
    body = [
        [name, *(fmt.format(getattr(m, attr)) for _, attr, fmt in METRIC_COLUMNS)]
        for name, m in rows.items()
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = ["-" * w for w in widths]
    return "\n".join(line(r) for r in [header, rule, *body])
