"""The settings of a network, its loss, its training and its use: frozen dataclasses.

:class:`ModelConfig` (architecture and intensity normalisation), :class:`LossWeights`
(the λ of the paper's loss), :class:`TrainConfig` (everything a training run is given)
and :class:`FrameOptions` (how the frames of a file or stack are denoised) live here,
apart from the network, the training loop and inference, so that reading them (the
command line's defaults, a model file's settings) does not import torch.  The first
three are also importable from :mod:`napari_pinned.model`, :mod:`napari_pinned.losses`
and :mod:`napari_pinned.training`.  Each has one ``to_dict``/``from_dict``
(:mod:`napari_pinned.config`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from napari_pinned.conditioning import NORMALIZATIONS
from napari_pinned.config import config_from_dict, config_to_dict
from napari_pinned.noise import NOISE_MODELS, StemNoiseRanges

#: How many orientations ``denoise(..., orientations=)`` may average the network over
#: (:data:`napari_pinned.inference.ORIENTATIONS`).
ORIENTATION_COUNTS = (1, 2, 4, 8)
#: Default tile: kept output pixels per window edge.  A frame up to this size (plus the
#: margins) is processed whole; larger ones in windows of ``DEFAULT_TILE + 2·overlap``
#: px (2368 px for the depth-4 default model, 15–25 % of the work in halos).  Measured
#: in docs/scale.md.
DEFAULT_TILE = 2048

__all__ = [
    "DEFAULT_TILE",
    "ORIENTATION_COUNTS",
    "Architecture",
    "Conditioning",
    "FrameOptions",
    "LossWeights",
    "ModelConfig",
    "NoiseModel",
    "Normalization",
    "SelfSupervised",
    "TrainConfig",
    "auto_validate_every",
]

#: Channel count stops doubling at this multiple of the base width (memory grows as width²).
MAX_WIDTH_FACTOR = 8

Architecture = Literal["paper", "unet"]
Normalization = Literal["range", "percentile", "robust"]
Conditioning = Literal["none", "noise-map"]
_ARCHITECTURES = get_args(Architecture)
_CONDITIONINGS = get_args(Conditioning)
assert get_args(Normalization) == NORMALIZATIONS


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and intensity normalisation of a PINNED network.

    Parameters
    ----------
    architecture : {"paper", "unet"}
        Descriptive name only; ``skip_connections`` and ``residual`` are authoritative.
    depth : int
        Number of 2× downsamplings (the latent block works at 1/2**depth resolution).
    width : int
        Channels of the first block; doubled per level up to ``MAX_WIDTH_FACTOR × width``.
    negative_slope : float
        Slope of the Leaky ReLU for negative inputs.
    skip_connections : bool
        Concatenate encoder features into the decoder block of the same level (U-Net).
    residual : bool
        Predict a correction added to the input instead of the image itself.
    normalization : {"range", "percentile", "robust"}
        How images are mapped to model units, see
        :func:`napari_pinned.conditioning.normalization_range`.
    conditioning : {"none", "noise-map"}
        ``"noise-map"``: the input has a second channel, the per-pixel noise standard
        deviation, and the output is ``x + σ · f`` (``residual`` is then implied).
    """

    architecture: Architecture = "unet"
    depth: int = 3
    width: int = 8
    negative_slope: float = 0.01
    skip_connections: bool = True
    residual: bool = True
    normalization: Normalization = "range"
    conditioning: Conditioning = "none"

    def __post_init__(self) -> None:
        if self.architecture not in _ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {self.architecture!r}; use one of {list(_ARCHITECTURES)}"
            )
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"unknown normalization {self.normalization!r}; use one of {list(NORMALIZATIONS)}"
            )
        if self.conditioning not in _CONDITIONINGS:
            raise ValueError(
                f"unknown conditioning {self.conditioning!r}; use one of {list(_CONDITIONINGS)}"
            )
        for name, low, high in (("depth", 1, 8), ("width", 1, 1024)):
            value = getattr(self, name)
            if not _is_int(value) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        slope = self.negative_slope
        if not _is_number(slope) or not 0.0 <= slope < 1.0:
            raise ValueError(f"negative_slope must be a number in [0, 1), got {slope!r}")
        for name in ("skip_connections", "residual"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """A named configuration, optionally with some settings changed.

        ``"paper"`` is the network as published (no skips, no residual); ``"unet"``
        adds skip connections and a residual output; ``"tiny"`` is a 4-channel,
        depth-2 U-Net for tests and demos.
        """
        if name not in _PRESETS:
            raise ValueError(f"unknown model preset {name!r}; use one of {sorted(_PRESETS)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown model setting(s) {unknown}; known: {sorted(known)}")
        return cls(**{**_PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able dict of all settings."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``, missing keys
        take their defaults."""
        return config_from_dict(cls, d, what="model setting")

    @property
    def conditioned(self) -> bool:
        """Whether the network takes a noise map as a second input channel."""
        return self.conditioning == "noise-map"

    @property
    def input_channels(self) -> int:
        """Channels of the tensor given to the network: the image, and the noise map."""
        return 2 if self.conditioned else 1

    @property
    def alignment(self) -> int:
        """``2**depth``: the network is shift-equivariant only for shifts by multiples
        of this, so tiles should start at multiples of it."""
        return 2**self.depth

    def channels(self) -> list[int]:
        """Channels per level: encoder levels ``0 … depth-1``, then the latent block."""
        cap = MAX_WIDTH_FACTOR * self.width
        return [min(self.width * 2**level, cap) for level in range(self.depth + 1)]


_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "architecture": "paper",
        "depth": 3,
        "width": 32,
        "skip_connections": False,
        "residual": False,
    },
    "unet": {
        "architecture": "unet",
        "depth": 3,
        "width": 8,
        "skip_connections": True,
        "residual": True,
    },
    "tiny": {
        "architecture": "unet",
        "depth": 2,
        "width": 4,
        "skip_connections": True,
        "residual": True,
    },
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- loss ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossWeights:
    """The λ of the paper's total loss.

    The paper gives no values.  These defaults are the "paper" configuration of our
    benchmarks; ``benchmarks/quality.py`` measured them against all λ = 0 (plain MSE)
    for the paper's network trained the paper's way, and plain MSE scored better in
    PSNR, SSIM and FSC at every CDN level (docs/benchmarks.md), so the shipped default
    model is trained with λ = 0.  Their magnitudes come from the size of each term
    next to the MSE, measured in model units (paper intensities / 255) on 64- and
    128-pixel patches of simulated SrTiO3, GaN and graphene with CDN level 3 (fresh
    networks: width 32, depth 3, applied to the noisy patches):

    =============================  ===========  ===========  =====  ==========  ==========
    prediction                     MSE          TV           SF     B           C
    =============================  ===========  ===========  =====  ==========  ==========
    noisy input (≈ residual init)  0.19–0.22    0.38         0.30   0.19–0.31   0.11–0.22
    fresh "unet" network           0.16–0.21    0.43–0.45    0.31   0.007–0.13  0.16–0.27
    fresh "paper" network          0.16–0.40    0.34–0.44    0.11   0.21–0.43   0.08–0.26
    clean + 0.03 error (≈ 30 dB)   9e-4         0.04–0.065   0.02   3e-4        2e-3–4e-3
    =============================  ===========  ===========  =====  ==========  ==========

    Every physics term is an L1 distance, so its gradient norm relative to the MSE's
    grows as 1/RMSE while training converges: λ/(2·RMSE) for SF, B and C, ≈ 0.65·λ/RMSE
    for TV.  At 30 dB (RMSE 0.03): λ_TV = 0.01 → ≈ 0.2× the MSE's gradient, a mild
    smoothing prior (TV of a clean lattice stays ≈ 0.05 because it penalises the sharp
    columns themselves, so λ_TV must stay small); λ_SF = 0.05 → ≈ 0.8×, on a par with
    the MSE; λ_B = λ_C = 0.1 → ≈ 1.7×, but these act only on each image's mean and
    spread.  At initialisation the weighted terms add up to 0.15–0.4× the MSE for both
    presets, so the MSE leads early training.
    """

    tv: float = 0.01
    sf: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"loss weight {f.name} must be a finite number >= 0, got {value!r}"
                )

    @classmethod
    def none(cls) -> LossWeights:
        """All λ = 0: plain MSE, the ablation without physics terms."""
        return cls(tv=0.0, sf=0.0, brightness=0.0, contrast=0.0)

    def to_dict(self) -> dict[str, float]:
        """Plain dict ``{"tv": ..., "sf": ..., "brightness": ..., "contrast": ...}``."""
        return {name: float(value) for name, value in config_to_dict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LossWeights:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``, missing keys
        take their defaults."""
        return config_from_dict(cls, d, what="loss weight")


# -- training --------------------------------------------------------------------------


#: Synthetic noise of a run (napari_pinned.noise.NOISE_MODELS).
NoiseModel = Literal["cdn", "dose", "mix", "stem"]
#: Training without clean targets.
SelfSupervised = Literal["blind-spot"]
assert get_args(NoiseModel) == NOISE_MODELS


def auto_validate_every(steps: int) -> int:
    """Steps between validations when ``validate_every`` is None ("auto"): about 20
    validations per run (each costs a few steps' time), at least 5 and at most 100
    steps apart."""
    return min(100, max(5, steps // 20))


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run besides the data, seed and device.

    Parameters
    ----------
    model : ModelConfig
        Architecture of a new model.  Ignored when ``init_model`` is given, whose own
        architecture is kept (fine-tuning).
    loss_weights : LossWeights
        λ_TV, λ_SF, λ_B and λ_C of the paper's total loss.
    steps : int
        Optimiser steps.
    batch_size, patch_size : int
        Patches per step and their edge length in pixels.
    learning_rate : float
        Peak Adam learning rate; the schedule warms up linearly, then decays by a cosine
        to ``min_lr_fraction`` of it (our earlier runs diverged at 2e-3 without warm-up).
    grad_clip : float
        Maximum gradient norm (0 disables clipping).
    noise_levels : tuple of float
        CDN level range drawn uniformly per patch in synthetic-noise mode.
    noise_model : {"cdn", "dose", "mix", "stem"}
        Synthetic noise: "cdn" (the paper's), "dose" (shot and read noise with a little
        scan jitter), "mix" (each patch picks one of the two at random) or "stem"
        (realistic recordings at any dose, see ``stem_noise``; the clean images are then
        expected signals in their own, non-negative units).
    stem_noise : StemNoiseRanges
        Where "stem" recordings draw dose, detector and scan defects from.
    dose_counts : tuple of float
        Dose-model range of detected electrons per pixel at full intensity, drawn
        log-uniformly per patch (≈ dose · pixel area · collection efficiency).
    self_supervised : {"blind-spot"}, optional
        "blind-spot" to learn from noisy images alone (the images given to
        :func:`train` are then the noisy data); None for supervised training.
    mask_fraction : float
        Blind-spot: fraction of each patch's pixels hidden per step.
    reference_sigma : float
        Blind-spot: Gaussian low-pass (pixels) of the input that the spectral,
        brightness and contrast terms compare with.
    validation_fraction : float
        Fraction of each image's height held out (bottom strip) for validation.
    validation_patches : int
        Fixed validation crops (spread over the noise-level range in synthetic mode).
    validate_every : int, optional
        Steps between validations (the last step always validates); None ("auto"):
        :func:`auto_validate_every` of ``steps`` (see :attr:`validation_interval`).
    init_model : str or path, optional
        Start from this model (a shipped model's name such as "default", or a model
        file) instead of random weights.  A model in memory is an argument of
        :func:`train` instead, so that a config stays plain, serialisable data.
    validate_start : bool
        Validate the starting model before the first step, so that it competes for
        "best model" (fine-tuning then never returns a worse model than it began with).
    num_threads : int, optional
        Torch CPU threads for this run; None keeps torch's setting.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    steps: int = 2000
    batch_size: int = 8
    patch_size: int = 64
    learning_rate: float = 5e-4
    warmup_steps: int = 100
    min_lr_fraction: float = 0.05
    grad_clip: float = 1.0
    noise_levels: tuple[float, float] = (1.0, 5.0)
    noise_model: NoiseModel = "cdn"
    dose_counts: tuple[float, float] = (5.0, 500.0)
    stem_noise: StemNoiseRanges = field(default_factory=StemNoiseRanges)
    self_supervised: SelfSupervised | None = None
    mask_fraction: float = 0.015
    reference_sigma: float = 1.5
    validation_fraction: float = 0.15
    validation_patches: int = 16
    validate_every: int | None = None
    init_model: str | None = None
    validate_start: bool = False
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.init_model, os.PathLike):
            object.__setattr__(self, "init_model", os.fspath(self.init_model))
        if self.init_model is not None and not isinstance(self.init_model, str):
            raise ValueError(
                "init_model must be a shipped model's name or a model file; give a model "
                "in memory to train(..., init_model=bundle)"
            )
        checks = [
            (self.steps >= 1, "steps must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.patch_size >= 8, "patch_size must be at least 8 pixels"),
            (self.learning_rate > 0, "learning_rate must be positive"),
            (self.grad_clip >= 0, "grad_clip must be non-negative"),
            (0.0 < self.validation_fraction < 0.5, "validation_fraction must be in (0, 0.5)"),
            (self.validation_patches >= 1, "validation_patches must be at least 1"),
            (
                self.validate_every is None or self.validate_every >= 1,
                "validate_every must be at least 1 (or None: auto)",
            ),
        ]
        lo, hi = self.noise_levels
        checks.append((0.0 <= lo <= hi <= 5.0, "noise_levels must satisfy 0 <= low <= high <= 5"))
        checks.append(
            (
                self.noise_model in NOISE_MODELS,
                f"noise_model must be one of {', '.join(NOISE_MODELS)}, got {self.noise_model!r}",
            )
        )
        d_lo, d_hi = self.dose_counts
        checks.append((0.0 < d_lo <= d_hi, "dose_counts must satisfy 0 < low <= high"))
        checks.append(
            (
                self.self_supervised in (None, "blind-spot"),
                f"self_supervised must be None or 'blind-spot', got {self.self_supervised!r}",
            )
        )
        checks.append((0.0 < self.mask_fraction <= 0.25, "mask_fraction must be in (0, 0.25]"))
        checks.append((self.reference_sigma > 0, "reference_sigma must be positive"))
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def validation_interval(self) -> int:
        """Steps between validations: ``validate_every``, or the automatic interval."""
        if self.validate_every is None:
            return auto_validate_every(self.steps)
        return self.validate_every

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able dict of all settings (nested settings as dicts)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``, missing keys
        take their defaults."""
        return config_from_dict(cls, d, what="training setting")


@dataclass(frozen=True)
class FrameOptions:
    """How every frame of a file, stack or store is denoised (:mod:`napari_pinned.scale`).

    The per-frame options of :func:`napari_pinned.inference.denoise`, with its defaults,
    carried together through the file, zarr and cluster jobs; they are checked where
    the frames are denoised.

    Attributes
    ----------
    tile, overlap, device, strength, keep_lattice, orientations
        As for :func:`napari_pinned.inference.denoise`.
    """

    tile: int = DEFAULT_TILE
    overlap: int | None = None
    device: str = "auto"
    strength: float = 1.0
    keep_lattice: bool = True
    orientations: int = 1

    def to_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~napari_pinned.inference.denoise`."""
        return dataclasses.asdict(self)
