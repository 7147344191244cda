"""Noise: the forward models that make a noisy image from a clean one (:mod:`.synthesis`:
the paper's CDN, shot and read noise, realistic STEM recordings) and the fit of an
image's own noise (:mod:`.estimate`: the Poisson–Gaussian model a network is told) and its
reading for a person (:mod:`.readout`: the dose at the mean, noise-free, not counts)."""

from __future__ import annotations

from napari_pinned.noise.estimate import NoiseEstimate, estimate_noise, noise_variance_map
from napari_pinned.noise.readout import NoiseReading, read_noise
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
    "NoiseReading",
    "StemRecording",
    "add_cdn_noise",
    "add_dose_noise",
    "cdn_params",
    "draw_recording",
    "estimate_noise",
    "noise_variance_map",
    "read_noise",
    "record_stem_image",
]
