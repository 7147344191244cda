"""A smooth 2D lattice in [0, 255]: a stand-in for a simulated STEM image in training tests."""

from __future__ import annotations

import numpy as np


def lattice(size: int = 96, period: float = 8.0, seed: int = 0) -> np.ndarray:
    """Sum of two cosines of ``period`` px with random phases, scaled to [20, 220]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi, 2)
    img = np.cos(2 * np.pi * x / period + phase[0]) + np.cos(2 * np.pi * y / period + phase[1])
    return ((img + 2) / 4 * 200 + 20).astype(np.float32)
