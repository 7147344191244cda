"""Every setting of napari-pinned as a frozen dataclass of plain values, torch-free.

:class:`ModelConfig` (architecture and intensity normalisation), :class:`LossWeights`
(the λ of the paper's loss), :class:`StemNoiseRanges` (the recording conditions training
draws from), :class:`TrainConfig` (everything a training run is given),
:class:`AdaptSettings` (a blind-spot adaptation run) and :class:`FrameOptions` (how the
frames of a file or stack are denoised) live here, at the bottom of the package, so that
reading them (the command line's defaults, a model file's settings, a dock's controls)
imports neither torch nor any other part of napari-pinned.  Each has one
``to_dict``/``from_dict`` (:func:`config_to_dict`, :func:`config_from_dict`): nested
settings become their dataclass again, lists become the tuples the fields hold, unknown
keys are refused with one line naming them, missing keys take their defaults, and the
dataclass's own checks run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeVar, get_args, get_origin

#: How many orientations ``denoise(..., orientations=)`` may average the network over
#: (:data:`napari_pinned.denoising.engine.ORIENTATIONS`).
ORIENTATION_COUNTS = (1, 2, 4, 8)
#: Largest denoising strength: the noise level the network is told is this many times
#: the measured one (noise-conditioned models); beyond it the output is a smooth blur.
MAX_STRENGTH = 10.0
#: Default tile: kept output pixels per window edge.  A frame up to this size (plus the
#: margins) is processed whole; larger ones in windows of ``DEFAULT_TILE + 2·overlap``
#: px (2368 px for the depth-4 default model, 15–25 % of the work in halos).  Measured
#: in docs/scale.md.
DEFAULT_TILE = 2048
#: Smallest tile edge (pixels) accepted.
MIN_TILE = 16

__all__ = [
    "DEFAULT_TILE",
    "MAX_STRENGTH",
    "MIN_TILE",
    "NOISE_AWARE_MODEL",
    "NOISE_MODELS",
    "NORMALIZATIONS",
    "ORIENTATION_COUNTS",
    "AdaptSettings",
    "Architecture",
    "Conditioning",
    "FrameOptions",
    "LossWeights",
    "ModelConfig",
    "NoiseModel",
    "Normalization",
    "SelfSupervised",
    "StemNoiseRanges",
    "TrainConfig",
    "auto_validate_every",
    "config_from_dict",
    "config_to_dict",
]


# -- to_dict / from_dict -----------------------------------------------------------------

T = TypeVar("T")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain, JSON-able dict of a settings dataclass (nested ones become dicts, tuples
    lists)."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def config_from_dict(cls: type[T], d: Mapping[str, Any], *, what: str = "setting") -> T:
    """Inverse of :func:`config_to_dict` for the dataclass ``cls``.

    Parameters
    ----------
    cls : dataclass type
        What to build.
    d : mapping
        Its settings by field name.
    what : str
        How a setting is called in messages ("model setting", "loss weight").

    Raises
    ------
    ValueError
        For a value that is not a dict, unknown keys, or settings ``cls`` refuses.
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"{what}s must be a dict, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in d if k not in fields)
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    values = {name: _typed(hints.get(name), value) for name, value in d.items()}
    return cls(**values)


def _typed(hint: Any, value: Any) -> Any:
    """``value`` as the field of type ``hint`` holds it."""
    for kind in (hint, *get_args(hint)):
        if dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
            return config_from_dict(kind, value)
    if isinstance(value, list) and tuple in (get_origin(hint), *map(get_origin, get_args(hint))):
        return tuple(value)
    return value


#: By default the channel count stops doubling at this multiple of the base width
#: (``ModelConfig.max_width_factor``; parameters grow as width²).
MAX_WIDTH_FACTOR = 8

Architecture = Literal["paper", "unet"]
#: How images are mapped to model units
#: (:func:`napari_pinned.nn.conditioning.normalization_range`).
Normalization = Literal["range", "percentile", "robust"]
Conditioning = Literal["none", "noise-map", "noise-map+lattice"]
_ARCHITECTURES = get_args(Architecture)
_CONDITIONINGS = get_args(Conditioning)
NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)


# -- network ---------------------------------------------------------------------------


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
        Channels of the first block; doubled per level up to ``max_width_factor × width``.
    negative_slope : float
        Slope of the Leaky ReLU for negative inputs.
    skip_connections : bool
        Concatenate encoder features into the decoder block of the same level (U-Net).
    residual : bool
        Predict a correction added to the input instead of the image itself.
    normalization : {"range", "percentile", "robust"}
        How images are mapped to model units, see
        :func:`napari_pinned.nn.conditioning.normalization_range`.
    conditioning : {"none", "noise-map", "noise-map+lattice"}
        ``"noise-map"``: the input has a second channel, the per-pixel noise standard
        deviation, and the output is ``x + σ · f`` (``residual`` is then implied).
        ``"noise-map+lattice"``: a third channel too, the lattice-averaged copy of the
        image (:mod:`napari_pinned.nn.lattice_prior`), which carries what the rest of
        the frame says each pixel is.
    max_width_factor : int
        The channel count stops doubling at this multiple of ``width``.  The inner
        levels work on 4ᵏ times fewer pixels, so widening them adds capacity at almost
        no cost in time (docs/benchmarks.md, "Capacity").
    """

    architecture: Architecture = "unet"
    depth: int = 3
    width: int = 8
    negative_slope: float = 0.01
    skip_connections: bool = True
    residual: bool = True
    normalization: Normalization = "range"
    conditioning: Conditioning = "none"
    max_width_factor: int = MAX_WIDTH_FACTOR

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
        for name, low, high in (("depth", 1, 8), ("width", 1, 1024), ("max_width_factor", 1, 64)):
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
        return self.conditioning != "none"

    @property
    def lattice(self) -> bool:
        """Whether the network takes the lattice-averaged image as a third channel."""
        return self.conditioning == "noise-map+lattice"

    @property
    def input_channels(self) -> int:
        """Channels of the tensor given to the network: the image, the noise map and
        the lattice-averaged image, as the model takes them."""
        return 1 + self.conditioned + self.lattice

    @property
    def alignment(self) -> int:
        """``2**depth``: the network is shift-equivariant only for shifts by multiples
        of this, so tiles should start at multiples of it."""
        return 2**self.depth

    def channels(self) -> list[int]:
        """Channels per level: encoder levels ``0 … depth-1``, then the latent block."""
        cap = self.max_width_factor * self.width
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


#: Synthetic noise of a training run (and of the Noise dock): the paper's CDN, shot and
#: read noise ("dose"), either at random per patch ("mix"), or realistic STEM recordings
#: at any dose ("stem", :func:`napari_pinned.noise.synthesis.record_stem_image`, what the
#: default model learns from).
NoiseModel = Literal["cdn", "dose", "mix", "stem"]
NOISE_MODELS: tuple[str, ...] = get_args(NoiseModel)
#: Training without clean targets.
SelfSupervised = Literal["blind-spot"]


def auto_validate_every(steps: int) -> int:
    """Steps between validations when ``validate_every`` is None ("auto"): about 20
    validations per run (each costs a few steps' time), at least 5 and at most 100
    steps apart."""
    return min(100, max(5, steps // 20))


#: The largest magnification of a frame resampled after recording (upsampled 4×).
MAX_RESAMPLE_ZOOM = 4.0


@dataclass(frozen=True)
class StemNoiseRanges:
    """Where :func:`~napari_pinned.noise.synthesis.draw_recording` draws recording conditions.

    Doses are log-uniform over ``dose`` (mean detected e⁻/px, 0.3–1000 covers a few
    e⁻/Å² on a fine pixel to a long dwell on a coarse one); ``clean_fraction`` of the
    images are recorded at ``clean_dose`` instead, so that a model learns to leave
    noise-free data alone.  Each scan defect appears in its stated fraction of images,
    with a size uniform in its range.  Line offsets are quoted relative to the shot
    noise at the mean dose, the converter's offset relative to the read noise (at least
    0.5 e⁻).  The scanning detector's terms (afterglow τ in px, line gains, dark counts
    in e⁻/px, the converter's offset and clipping, dropped lines) are off here; the
    :data:`SCANNING_DETECTOR` ranges turn them on.  ``resample_fraction`` of the frames
    are resampled after recording (drift correction, registration: a rotation of
    ``resample_rotation`` degrees either way and a shift uniform in 0–1 px along each
    axis, linear interpolation, magnified by a factor uniform in ``resample_zoom``, 1 by
    default), off by default, and ``line_pattern_fraction`` get
    interference the same in every scan line, of an RMS ``line_pattern`` times the shot
    noise at the mean dose (:func:`~napari_pinned.noise.scanning.line_pattern`), off by
    default.
    """

    dose: tuple[float, float] = (0.3, 1000.0)
    clean_fraction: float = 0.05
    clean_dose: float = 1e5
    read_noise: tuple[float, float] = (0.0, 1.0)
    jitter_fraction: float = 0.5
    row_jitter: tuple[float, float] = (0.0, 0.4)
    line_fraction: float = 0.3
    line_noise: tuple[float, float] = (0.0, 0.3)
    drift_fraction: float = 0.5
    drift: float = 1.5
    quantum_fraction: float = 0.3
    quantum: tuple[float, float] = (0.1, 1.0)
    smear_fraction: float = 0.0
    smear: tuple[float, float] = (0.0, 0.3)
    afterglow_fraction: float = 0.0
    afterglow: tuple[float, float] = (0.0, 3.0)
    line_gain_fraction: float = 0.0
    line_gain: tuple[float, float] = (0.0, 0.05)
    dark_fraction: float = 0.0
    dark: tuple[float, float] = (0.0, 0.3)
    adc_fraction: float = 0.0
    adc_offset: tuple[float, float] = (-1.0, 3.0)
    dropped_fraction: float = 0.0
    dropped_lines: tuple[float, float] = (0.0, 0.01)
    resample_fraction: float = 0.0
    resample_rotation: tuple[float, float] = (0.0, 4.0)
    line_pattern_fraction: float = 0.0
    line_pattern: tuple[float, float] = (0.0, 0.3)
    resample_zoom: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        lo, hi = self.dose
        if not 0 < lo <= hi:
            raise ValueError("dose range must satisfy 0 < low <= high")
        for name in (
            "clean_fraction",
            "jitter_fraction",
            "line_fraction",
            "drift_fraction",
            "quantum_fraction",
            "smear_fraction",
            "afterglow_fraction",
            "line_gain_fraction",
            "dark_fraction",
            "adc_fraction",
            "dropped_fraction",
            "resample_fraction",
            "line_pattern_fraction",
        ):
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be finite and [0, 1], got {value!r}")
        low, high = self.resample_zoom
        if not (_is_number(low) and _is_number(high) and 1.0 <= low <= high <= MAX_RESAMPLE_ZOOM):
            raise ValueError(
                f"resample_zoom must satisfy 1 <= low <= high <= {MAX_RESAMPLE_ZOOM:g}, "
                f"got {self.resample_zoom!r}"
            )


#: Recording conditions with a scanning detector's own noise on top of shot and read
#: noise (what the default model is trained on, and ``benchmarks/scan_noise.py``'s
#: held-out set): an afterglow of up to 3 px in most recordings (scintillator detectors
#: read at µs dwell times), line gains of up to 5 %, some dark counts, an unsigned
#: converter that clips at zero, and an occasional dropped line.
SCANNING_DETECTOR = StemNoiseRanges(
    afterglow_fraction=0.6,
    line_gain_fraction=0.3,
    dark_fraction=0.2,
    adc_fraction=0.2,
    dropped_fraction=0.05,
)

#: What a new network trained on realistic recordings (``noise_model="stem"``) is given:
#: robust normalisation and the noise map, so that it learns every dose as the shipped
#: default does (the Train dock and ``napari-pinned train --noise stem`` alike).
NOISE_AWARE_MODEL: Mapping[str, str] = MappingProxyType(
    {"normalization": "robust", "conditioning": "noise-map"}
)


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


# -- adaptation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AdaptSettings:
    """How an adaptation run trains.

    The defaults fit about two minutes on two CPU cores for a 1024² image (measured in
    ``benchmarks/adapt.py``).  ``learning_rate`` is a fifth of the default model's, so
    a few hundred steps refine it rather than retrain it.
    """

    steps: int = 500
    batch_size: int = 8
    patch_size: int = 96
    learning_rate: float = 2e-4
    mask_fraction: float = 0.015
    validate_every: int = 50
    validation_patches: int = 16

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "validate_every", "validation_patches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able dict of all settings."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AdaptSettings:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        return config_from_dict(cls, d, what="adaptation setting")


# -- denoising ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameOptions:
    """How every frame of an image, stack, file or store is denoised.

    The per-frame options of :func:`napari_pinned.denoising.denoiser.denoise`, with its
    defaults: the ``options`` of ``iter_denoise``, ``denoise_dask`` and ``Denoiser``,
    carried together through the file, zarr and cluster jobs
    (:mod:`napari_pinned.denoising.files`); they are checked where the frames are denoised.

    Attributes
    ----------
    tile, overlap, device, strength, keep_lattice, orientations
        As for :func:`napari_pinned.denoising.denoiser.denoise`.
    """

    tile: int = DEFAULT_TILE
    overlap: int | None = None
    device: str = "auto"
    strength: float = 1.0
    keep_lattice: bool = True
    orientations: int = 1
