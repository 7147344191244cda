"""Sub-bin peak positions: the vertex of a parabola through three log values.

A Gaussian peak is a parabola in its logarithm, so the vertex of the parabola through
the log values at a maximum and its two neighbours along an axis is the peak's exact
position there.  Atom columns (:mod:`napari_pinned.quality.columns`) are close to
Gaussian; a reflection's Hann main lobe (:mod:`napari_pinned.quality.half_plane`) close
enough to place it to about 1 % of a bin.
"""

from __future__ import annotations

import numpy as np

__all__ = ["parabola_vertex"]


def parabola_vertex(lo: np.ndarray, mid: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Offset of the vertex from ``mid``, in samples, clipped to ±0.5.

    Parameters
    ----------
    lo, mid, hi : numpy.ndarray
        Log values at positions −1, 0 and +1 (any matching shapes; ``-inf`` allowed).

    Returns
    -------
    numpy.ndarray
        The vertex offsets; 0 where the three values do not curve downwards or are not
        finite (no maximum to refine).
    """
    with np.errstate(all="ignore"):
        curvature = lo - 2.0 * mid + hi
        delta = 0.5 * (lo - hi) / curvature
    ok = np.isfinite(delta) & (curvature < 0)
    return np.where(ok, np.clip(delta, -0.5, 0.5), 0.0)
