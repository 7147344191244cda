"""Atom columns: where they are in an image, and how well that matches the truth.

:func:`find_columns` locates the bright columns of a HAADF image to sub-pixel precision;
:func:`column_accuracy` scores them against known positions (a simulation's) as recall,
precision and RMS position error in picometres (docs/metrics.md, "Column accuracy").
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree
from skimage.feature import peak_local_max

from napari_pinned._util.intensity import check_image
from napari_pinned.quality.subpixel import parabola_vertex

__all__ = ["ColumnAccuracy", "column_accuracy", "find_columns"]


@dataclass(frozen=True)
class ColumnAccuracy:
    """How well the atomic columns found in an image match the true columns.

    Attributes
    ----------
    recall : float
        Fraction of the true (visible) columns with a detection within the match radius.
    precision : float
        Fraction of detections that belong to a true column.  Detections on columns
        too weak to count (see ``min_weight_fraction``) are neither right nor wrong.
    rms_error_pm : float
        Root-mean-square distance in picometres between matched detections and their
        true positions (NaN when nothing matched).
    n_true, n_found, n_matched : int
        Visible true columns, counted detections, matched pairs (inside the border).
    """

    recall: float
    precision: float
    rms_error_pm: float
    n_true: int
    n_found: int
    n_matched: int

    def as_dict(self) -> dict[str, float]:
        """Plain dict of all fields."""
        return dataclasses.asdict(self)


def find_columns(
    image: np.ndarray,
    pixel_size: float,
    *,
    min_separation: float = 1.0,
    smoothing: float = 0.1,
    threshold: float = 0.1,
    refine: str = "gaussian",
) -> np.ndarray:
    """Locate atomic columns: local maxima refined to sub-pixel positions.

    Parameters
    ----------
    image : numpy.ndarray
        2D image, columns bright (HAADF).
    pixel_size : float
        Å per pixel.
    min_separation : float
        Smallest distance in Å between two columns; maxima closer than half of it are
        merged into the brighter one.
    smoothing : float
        σ in Å of a Gaussian applied before the search (suppresses single-pixel noise).
    threshold : float
        Minimum peak height, as a fraction between the 1st and 99.9th percentile of
        the smoothed image.
    refine : {"gaussian", "centroid", "none"}
        ``"gaussian"`` fits a 2D Gaussian (with separate widths along the axes) to the
        3×3 neighbourhood of each maximum in closed form, by a parabola through the
        log-intensities along each axis: exact for a Gaussian peak.  ``"centroid"``
        takes the intensity-weighted centre of mass within a quarter of
        ``min_separation``, above the local minimum.

    Returns
    -------
    numpy.ndarray
        ``(N, 2)`` float positions ``(row, col)`` in pixels.
    """
    img = check_image(image, name="image", ndim=(2,)).astype(np.float64)
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be positive, got {pixel_size!r}")
    if refine not in ("gaussian", "centroid", "none"):
        raise ValueError(f"refine must be 'gaussian', 'centroid' or 'none', got {refine!r}")
    smooth = gaussian_filter(img, smoothing / pixel_size) if smoothing > 0 else img
    low, high = np.percentile(smooth, [1.0, 99.9])
    min_distance = max(1, int(0.5 * min_separation / pixel_size))
    peaks = peak_local_max(
        smooth,
        min_distance=min_distance,
        threshold_abs=low + threshold * (high - low),
        exclude_border=1,
    )
    if len(peaks) == 0:
        return np.zeros((0, 2))
    if refine == "gaussian":
        return peaks + _gaussian_offsets(smooth, peaks)
    if refine == "centroid":
        radius = max(1, round(0.25 * min_separation / pixel_size))
        return _centroids(smooth, peaks, radius)
    return peaks.astype(np.float64)


def _gaussian_offsets(image: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Sub-pixel offsets of a Gaussian through each maximum and its 4 neighbours."""
    floor = image.min()
    # Shifting by the minimum keeps the logarithm defined; a constant pedestal biases
    # the estimate towards the integer maximum by well under a pixel.
    log = np.log(np.maximum(image - floor, 1e-12) + 1e-6 * (image.max() - floor))
    r, c = peaks[:, 0], peaks[:, 1]
    offsets = np.zeros((len(peaks), 2))
    for axis, (minus, plus) in enumerate((((r - 1, c), (r + 1, c)), ((r, c - 1), (r, c + 1)))):
        offsets[:, axis] = parabola_vertex(log[minus], log[r, c], log[plus])
    return offsets


def _centroids(image: np.ndarray, peaks: np.ndarray, radius: int) -> np.ndarray:
    """Intensity-weighted centres of mass within ``radius`` of each maximum, above the
    disc's minimum."""
    padded = np.pad(image, radius, mode="edge")
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc = (dy**2 + dx**2) <= radius**2
    out = np.empty((len(peaks), 2))
    for i, (r, c) in enumerate(peaks):
        patch = padded[r : r + 2 * radius + 1, c : c + 2 * radius + 1]
        weights = np.where(disc, patch - patch[disc].min(), 0.0)
        total = weights.sum()
        if total <= 0:
            out[i] = (r, c)
        else:
            out[i] = (r + (weights * dy).sum() / total, c + (weights * dx).sum() / total)
    return out


def column_accuracy(
    image: np.ndarray,
    true_positions: np.ndarray,
    pixel_size: float,
    *,
    weights: np.ndarray | None = None,
    min_weight_fraction: float = 0.3,
    smoothing: float = 0.1,
    threshold: float = 0.1,
    refine: str = "gaussian",
) -> ColumnAccuracy:
    """Find the columns in ``image`` and score them against the true positions.

    True columns lighter than ``min_weight_fraction`` of the heaviest (e.g. O beside Sr
    in HAADF, whose contrast goes as Z^1.7) are "don't care": they need not be found,
    and a detection on one is not counted as false.  Columns within half the smallest
    column spacing of the border are left out on both sides, since a peak cut by the
    edge cannot be located.  A detection matches a true column when it lies within
    half the smallest spacing of the visible columns; of several detections on one
    column the closest is the match and the others count as false.

    Parameters
    ----------
    image : numpy.ndarray
        2D image to assess, e.g. a denoised one.
    true_positions : numpy.ndarray
        ``(N, 2)`` true column positions ``(row, col)`` in pixels, e.g.
        ``SimulationResult.columns.positions``.
    pixel_size : float
        Å per pixel; sets the search scale and converts the error to pm.
    weights : numpy.ndarray, optional
        ``(N,)`` column weights (``SimulationResult.columns.weights``); without them
        every column counts.
    min_weight_fraction, smoothing, threshold, refine
        See above and :func:`find_columns`.

    Returns
    -------
    ColumnAccuracy
    """
    img = check_image(image, name="image", ndim=(2,))
    truth, weight = _columns_inside(img.shape, true_positions, weights)
    visible = weight >= min_weight_fraction * weight.max()
    shown = truth[visible]
    if len(shown) > 1:
        spacing_px = float(cKDTree(shown).query(shown, k=2)[0][:, 1].min())
    else:
        spacing_px = float(min(img.shape)) / 2
    radius = 0.5 * spacing_px
    found = find_columns(
        img,
        pixel_size,
        min_separation=spacing_px * pixel_size,
        smoothing=smoothing,
        threshold=threshold,
        refine=refine,
    )
    limit = np.array(img.shape) - 1 - radius

    def in_field(p: np.ndarray) -> np.ndarray:
        return np.all((p >= radius) & (p <= limit), axis=1)

    shown = shown[in_field(shown)]
    found = found[in_field(found)] if len(found) else found
    found = _without_faint(found, truth[~visible], shown, radius)
    return _match(shown, found, radius, pixel_size)


def _columns_inside(
    shape: tuple[int, ...], true_positions: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The true positions inside the image and their weights (1 without ``weights``)."""
    truth = np.asarray(true_positions, dtype=np.float64).reshape(-1, 2)
    weight = np.ones(len(truth)) if weights is None else np.asarray(weights, dtype=float)
    if weight.shape != (len(truth),):
        raise ValueError(f"{len(weight)} weights for {len(truth)} column positions")
    if len(truth) == 0 or not np.all(np.isfinite(truth)):
        raise ValueError("true_positions must hold at least one finite (row, col) position")
    inside = np.all((truth >= -0.5) & (truth < np.array(shape) - 0.5), axis=1)
    if not inside.any():
        raise ValueError("none of the true column positions lies inside the image")
    return truth[inside], weight[inside]


def _without_faint(
    found: np.ndarray, faint: np.ndarray, shown: np.ndarray, radius: float
) -> np.ndarray:
    """Detections less the ones on "don't care" columns (closer to a faint column,
    within ``radius``, than to any visible one): they are neither right nor wrong."""
    if not (len(found) and len(faint)):
        return found
    d_faint = cKDTree(faint).query(found)[0]
    d_shown = cKDTree(shown).query(found)[0] if len(shown) else np.inf
    return found[~((d_faint < radius) & (d_faint < d_shown))]


def _match(
    shown: np.ndarray, found: np.ndarray, radius: float, pixel_size: float
) -> ColumnAccuracy:
    """Score the detections ``found`` against the visible true columns ``shown``."""
    n_true, n_found = len(shown), len(found)
    if n_true == 0 or n_found == 0:
        return ColumnAccuracy(0.0 if n_true else math.nan, 0.0, math.nan, n_true, n_found, 0)
    # Visible columns are at least 2·radius apart, so a detection lies within the
    # radius of at most one of them: the nearest.  Of several detections on one column
    # the closest is the match and the others count as false.
    distance, nearest = cKDTree(shown).query(found, distance_upper_bound=radius)
    best = np.full(n_true, np.inf)
    hit = np.isfinite(distance)
    np.minimum.at(best, nearest[hit], distance[hit])
    matched = best[np.isfinite(best)]
    rms_pm = float(np.sqrt(np.mean(matched**2)) * pixel_size * 100) if len(matched) else math.nan
    return ColumnAccuracy(
        recall=len(matched) / n_true,
        precision=len(matched) / n_found,
        rms_error_pm=rms_pm,
        n_true=n_true,
        n_found=n_found,
        n_matched=len(matched),
    )
