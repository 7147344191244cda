"""Noise: the forward models that make a noisy image from a clean one (:mod:`.synthesis`:
the paper's CDN, shot and read noise, realistic STEM recordings) and the fit of an
image's own noise (:mod:`.estimate`: the Poisson–Gaussian model and its dose)."""

from __future__ import annotations

from napari_pinned.noise.estimate import NoiseEstimate, estimate_noise, noise_variance_map
from napari_pinned.noise.synthesis import (
    CDNParams,
    DoseParams,
    StemRecording,
    add_cdn_noise,
    add_dose_noise,
    cdn_params,
    draw_recording,
    record_stem_image,
)

__all__ = [
    "CDNParams",
    "DoseParams",
    "NoiseEstimate",
    "StemRecording",
    "add_cdn_noise",
    "add_dose_noise",
    "cdn_params",
    "draw_recording",
    "estimate_noise",
    "noise_variance_map",
    "record_stem_image",
]
