"""Training PINNED on clean images, optionally paired with noisy ones.

:func:`train` returns a :class:`TrainingRun`: an iterator that performs one optimiser
step per ``next()`` and yields a small :class:`TrainProgress` record.  A caller (CLI
progress bar, napari worker, benchmark) can stop iterating at any time; the best model
seen so far by validation PSNR stays available from :meth:`TrainingRun.result`.

Three data modes, as in the paper and beyond it:

* **paired** — clean images with noisy images of the same shapes (the paper's setting;
  also Noise2Noise, where the "clean" image is a second independent noisy recording,
  e.g. the even frames of a series against the odd ones, see :mod:`napari_pinned.frames`);
* **synthetic noise** — clean images only; noise is drawn afresh for every patch (the
  paper's CDN with a level uniform in ``noise_levels``, the dose model of
  :func:`napari_pinned.noise.add_dose_noise`, or a mix), which turns a handful of images
  into an unlimited supply of pairs (the paper trained on five images);
* **blind-spot** (``self_supervised="blind-spot"``) — noisy images only, no clean
  target: a few pixels of each patch are hidden from the network and it learns to
  predict them from their neighbours (Noise2Void, Krull, Buchholz and Jug, CVPR 2019).
  Noise that is independent from pixel to pixel cannot be predicted, so the network
  learns the signal.  The physics terms then compare with a low-pass of the input.

Each image contributes a held-out strip along its bottom edge to a validation set with
fixed noise, so validation PSNR measures pixels the optimiser never saw.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import math
import os
import pathlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from napari_pinned import __version__
from napari_pinned.devices import resolve_device
from napari_pinned.intensity import PAPER_RANGE, check_image, infer_data_range, to_paper_scale
from napari_pinned.losses import LossTerms, LossWeights, pinned_loss
from napari_pinned.metrics import psnr, ssim
from napari_pinned.model import ModelBundle, ModelConfig, build_model
from napari_pinned.model_files import atomic_torch_save, load_model
from napari_pinned.noise import (
    NOISE_MODELS,
    DoseParams,
    apply_cdn_paper_units,
    apply_dose_paper_units,
    cdn_params,
    scan_distort,
)

_PAPER_MAX = PAPER_RANGE[1]
_CHECKPOINT_FORMAT = "napari-pinned-training-checkpoint-1"


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
    noise_model : str
        Synthetic noise: "cdn" (the paper's), "dose" (shot and read noise with a little
        scan jitter) or "mix" (each patch picks one of the two at random).
    dose_counts : tuple of float
        Dose-model range of detected electrons per pixel at full intensity, drawn
        log-uniformly per patch (≈ dose · pixel area · collection efficiency).
    self_supervised : str, optional
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
    validate_every : int
        Steps between validations (the last step always validates).
    init_model : str, path or ModelBundle, optional
        Start from this model ("default", a file or a bundle) instead of random weights.
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
    noise_model: str = "cdn"
    dose_counts: tuple[float, float] = (5.0, 500.0)
    self_supervised: str | None = None
    mask_fraction: float = 0.015
    reference_sigma: float = 1.5
    validation_fraction: float = 0.15
    validation_patches: int = 16
    validate_every: int = 100
    init_model: str | ModelBundle | None = None
    num_threads: int | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 1, "steps must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.patch_size >= 8, "patch_size must be at least 8 pixels"),
            (self.learning_rate > 0, "learning_rate must be positive"),
            (self.grad_clip >= 0, "grad_clip must be non-negative"),
            (0.0 < self.validation_fraction < 0.5, "validation_fraction must be in (0, 0.5)"),
            (self.validation_patches >= 1, "validation_patches must be at least 1"),
            (self.validate_every >= 1, "validate_every must be at least 1"),
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


@dataclass(frozen=True)
class TrainProgress:
    """One training step's report.  Small and immutable, safe to pass across threads."""

    step: int
    total_steps: int
    loss: LossTerms
    learning_rate: float
    elapsed: float
    eta: float
    val_psnr: float | None = None
    val_ssim: float | None = None
    best_val_psnr: float | None = None
    stopped: bool = False

    @property
    def fraction(self) -> float:
        """Fraction of the run completed, in [0, 1]."""
        return self.step / self.total_steps


@dataclass
class _Pair:
    """One training image in paper units, split into train rows and validation rows."""

    clean: np.ndarray
    noisy: np.ndarray | None
    train_rows: int  # rows [0, train_rows) train; [train_rows, H) validate


def _as_frames(images: np.ndarray | Sequence[np.ndarray], name: str) -> list[np.ndarray]:
    if isinstance(images, np.ndarray):
        arr = check_image(images, name=name, ndim=(2, 3))
        return [arr] if arr.ndim == 2 else list(arr)
    frames: list[np.ndarray] = []
    for i, image in enumerate(images):
        arr = check_image(image, name=f"{name} {i}", ndim=(2, 3))
        frames.extend([arr] if arr.ndim == 2 else list(arr))
    if not frames:
        raise ValueError(f"no {name} images given")
    return frames


def _prepare_pairs(
    clean: np.ndarray | Sequence[np.ndarray],
    noisy: np.ndarray | Sequence[np.ndarray] | None,
    config: TrainConfig,
) -> list[_Pair]:
    if config.self_supervised and noisy is not None:
        raise ValueError(
            "blind-spot training learns from noisy images alone; give them as the only "
            "images, without a second (noisy) set"
        )
    clean_frames = _as_frames(clean, "clean image")
    noisy_frames = None if noisy is None else _as_frames(noisy, "noisy image")
    if noisy_frames is not None and len(noisy_frames) != len(clean_frames):
        raise ValueError(
            f"{len(noisy_frames)} noisy images for {len(clean_frames)} clean images; "
            "give one noisy image per clean image"
        )
    min_height = config.patch_size + max(8, math.ceil(config.patch_size * 0.25))
    pairs = []
    for i, c in enumerate(clean_frames):
        if noisy_frames is not None and noisy_frames[i].shape != c.shape:
            raise ValueError(
                f"clean image {i} has shape {c.shape} but noisy image {i} has shape "
                f"{noisy_frames[i].shape}; paired images must match"
            )
        h, w = c.shape
        if w < config.patch_size or h < min_height:
            raise ValueError(
                f"clean image {i} is {h}×{w} pixels, too small for {config.patch_size}-pixel "
                f"patches plus a validation strip (needs at least {min_height}×"
                f"{config.patch_size}); lower patch_size"
            )
        val_rows = max(math.ceil(h * config.validation_fraction), 8)
        train_rows = max(h - val_rows, config.patch_size)
        data_range = infer_data_range(c)
        noisy_p = None
        if noisy_frames is not None:
            # One range for both images of a pair, so that they stay in the same units
            # (unclipped noise, or the two noisy halves of Noise2Noise, have different
            # extremes).
            n_lo, n_hi = infer_data_range(noisy_frames[i])
            data_range = (min(data_range[0], n_lo), max(data_range[1], n_hi))
            noisy_p = to_paper_scale(noisy_frames[i], data_range)
        clean_p = to_paper_scale(c, data_range)
        pairs.append(_Pair(clean_p, noisy_p, train_rows))
    return pairs


def _dihedral(patch: np.ndarray, k: int) -> np.ndarray:
    """Apply one of the 8 rotations/flips of the square (k in 0..7)."""
    out = np.rot90(patch, k % 4, axes=(-2, -1))
    if k >= 4:
        out = out[..., ::-1]
    return out


def _dose_patch(
    clean: np.ndarray, config: TrainConfig, rng: np.random.Generator, counts: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A dose-model pair: the scan jitter moves both, so the target keeps the geometry
    the input was recorded with and the network never learns to move columns."""
    if counts is None:
        lo, hi = np.log(config.dose_counts)
        counts = float(np.exp(rng.uniform(lo, hi)))
    jitter = float(rng.uniform(0.0, 0.3))
    target = scan_distort(clean, jitter, (0.0, 0.0), rng) if jitter > 0 else clean
    params = DoseParams(counts_at_max=counts, read_noise=float(rng.uniform(0.0, 1.0)))
    noisy = apply_dose_paper_units(target, params, rng)
    # Dose noise is not clipped, so a recorded image's range is its noisy minimum and
    # maximum, which is how inference scales it.  Scale both the same way here, or the
    # network learns units it never meets in use.
    lo, hi = float(noisy.min()), float(noisy.max())
    scale = np.float32(_PAPER_MAX / max(hi - lo, 1e-6))
    offset = np.float32(lo)
    return (noisy - offset) * scale, (np.asarray(target, np.float32) - offset) * scale


def _synthetic_pair(
    clean: np.ndarray, config: TrainConfig, rng: np.random.Generator, fraction: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, target) for one clean patch under the configured noise model.

    ``fraction`` in [0, 1] picks a fixed strength (validation): a CDN level or a dose
    across the configured ranges, from the weakest to the strongest noise.
    """
    model = config.noise_model
    if model == "mix":
        model = "cdn" if rng.random() < 0.5 else "dose"
    clean = np.ascontiguousarray(clean)
    if model == "dose":
        counts = None
        if fraction is not None:
            lo, hi = np.log(config.dose_counts)
            counts = float(np.exp(hi - fraction * (hi - lo)))
        return _dose_patch(clean, config, rng, counts)
    lo, hi = config.noise_levels
    level = rng.uniform(lo, hi) if fraction is None else lo + fraction * (hi - lo)
    return apply_cdn_paper_units(clean, cdn_params(level), rng), clean


def _blind_spot(
    noisy: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Hide a random ``fraction`` of the pixels: each is replaced by a random other pixel
    of its 5×5 neighbourhood (Noise2Void's scheme), so the network cannot copy it.

    Returns the masked input and the boolean mask of hidden pixels.
    """
    h, w = noisy.shape
    count = max(1, round(fraction * h * w))
    flat = rng.choice(h * w, size=count, replace=False)
    ys, xs = np.divmod(flat, w)
    sy, sx = ys.copy(), xs.copy()
    same = np.ones(count, bool)
    # Redraw until every replacement is another pixel: a zero offset, or one that the
    # reflection at a border folds back onto the pixel, would let the network copy it.
    while same.any():
        offsets = rng.integers(-2, 3, size=(int(same.sum()), 2))
        ny = np.abs(ys[same] + offsets[:, 0])
        sy[same] = np.where(ny >= h, 2 * (h - 1) - ny, ny)
        nx = np.abs(xs[same] + offsets[:, 1])
        sx[same] = np.where(nx >= w, 2 * (w - 1) - nx, nx)
        same = (sy == ys) & (sx == xs)
    masked = noisy.copy()
    masked[ys, xs] = noisy[sy, sx]
    mask = np.zeros((h, w), bool)
    mask[ys, xs] = True
    return masked, mask


def _low_pass(images: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(images, sigma=(0, 0, sigma, sigma), mode="reflect").astype(np.float32)


@dataclass
class _Batch:
    """Network input and target (0–1 units); blind-spot adds the mask and the low-pass."""

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray | None = None
    reference: np.ndarray | None = None


class _BatchSampler:
    """Draws random training patches (and synthesises noise when unpaired)."""

    def __init__(self, pairs: list[_Pair], config: TrainConfig, rng: np.random.Generator):
        self.pairs = pairs
        self.config = config
        self.rng = rng
        areas = np.array([p.train_rows * p.clean.shape[1] for p in pairs], dtype=float)
        self.probabilities = areas / areas.sum()

    def sample(self) -> _Batch:
        cfg, rng, size = self.config, self.rng, self.config.patch_size
        blind = cfg.self_supervised == "blind-spot"
        inputs = np.empty((cfg.batch_size, 1, size, size), np.float32)
        targets = np.empty_like(inputs)
        mask = np.zeros(inputs.shape, bool) if blind else None
        for b in range(cfg.batch_size):
            pair = self.pairs[rng.choice(len(self.pairs), p=self.probabilities)]
            top = int(rng.integers(0, pair.train_rows - size + 1))
            left = int(rng.integers(0, pair.clean.shape[1] - size + 1))
            window = np.s_[top : top + size, left : left + size]
            k = int(rng.integers(0, 8))
            clean = _dihedral(pair.clean[window], k)
            if blind:
                target = np.ascontiguousarray(clean)
                noisy, mask[b, 0] = _blind_spot(target, cfg.mask_fraction, rng)
            elif pair.noisy is None:
                noisy, target = _synthetic_pair(clean, cfg, rng)
            else:
                noisy, target = _dihedral(pair.noisy[window], k), clean
            inputs[b, 0] = noisy
            targets[b, 0] = target
        batch = _Batch(inputs / _PAPER_MAX, targets / _PAPER_MAX, mask)
        if blind and any(cfg.loss_weights.to_dict().values()):
            batch.reference = _low_pass(batch.targets, cfg.reference_sigma)
        return batch


def _validation_set(pairs: list[_Pair], config: TrainConfig, rng: np.random.Generator) -> _Batch:
    """Fixed crops from the held-out strips, with fixed noise spread over the noise range
    (or, blind-spot, fixed hidden pixels)."""
    n = config.validation_patches
    fractions = np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5])
    heights = [p.clean.shape[0] - p.train_rows for p in pairs]
    size = min(config.patch_size * 2, min(p.clean.shape[1] for p in pairs))
    size_rows = min(size, *heights)
    blind = config.self_supervised == "blind-spot"
    inputs = np.empty((n, 1, size_rows, size), np.float32)
    targets = np.empty_like(inputs)
    mask = np.zeros(inputs.shape, bool) if blind else None
    for i in range(n):
        pair = pairs[i % len(pairs)]
        top = pair.train_rows + int(
            rng.integers(0, pair.clean.shape[0] - pair.train_rows - size_rows + 1)
        )
        left = int(rng.integers(0, pair.clean.shape[1] - size + 1))
        window = np.s_[top : top + size_rows, left : left + size]
        clean = pair.clean[window]
        if blind:
            target = np.ascontiguousarray(clean)
            noisy, mask[i, 0] = _blind_spot(target, config.mask_fraction, rng)
        elif pair.noisy is None:
            noisy, target = _synthetic_pair(clean, config, rng, fraction=float(fractions[i]))
        else:
            noisy, target = pair.noisy[window], clean
        inputs[i, 0] = noisy
        targets[i, 0] = target
    return _Batch(inputs / _PAPER_MAX, targets / _PAPER_MAX, mask)


def _learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_fraction`` of the peak."""
    warmup = min(config.warmup_steps, max(config.steps // 10, 1))
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(config.steps - warmup, 1)
    floor = config.min_lr_fraction
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


class TrainingRun:
    """An iterator over training steps that also holds the best model so far.

    Use :func:`train` to create one.  Iterate it (``for progress in run``) to train;
    stop iterating, or call :meth:`stop`, to end early.  :meth:`result` returns the
    best model by validation PSNR at any point, including after an early stop.
    """

    def __init__(
        self,
        config: TrainConfig,
        clean: np.ndarray | Sequence[np.ndarray],
        noisy: np.ndarray | Sequence[np.ndarray] | None = None,
        *,
        seed: int = 0,
        device: str | torch.device = "auto",
    ):
        self.config = config
        self.seed = seed
        self.device = resolve_device(device)
        self._pairs = _prepare_pairs(clean, noisy, config)
        self._rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        if config.num_threads is not None:
            torch.set_num_threads(max(1, int(config.num_threads)))

        if config.init_model is not None:
            start = load_model(config.init_model, device=self.device)
            self.model_config = start.config
            self.model = copy.deepcopy(start.model).to(self.device)
            self._init_source = start.source
        else:
            self.model_config = config.model
            self.model = build_model(config.model).to(self.device)
            self._init_source = None
        self._optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
        self._sampler = _BatchSampler(self._pairs, config, self._rng)
        validation = _validation_set(self._pairs, config, np.random.default_rng(seed + 1))
        self._val_inputs = torch.from_numpy(validation.inputs)
        self._val_targets = validation.targets
        self._val_mask = validation.mask

        self.step = 0
        self.history: list[TrainProgress] = []
        self._best_state: dict[str, torch.Tensor] | None = None
        self._best_psnr: float | None = None
        self._best_ssim: float | None = None
        self._best_step = 0
        self._validated_step = -1
        self._last_terms: LossTerms | None = None
        self._stop_requested = False
        self._started: float | None = None
        self._elapsed = 0.0
        self._elapsed_before = 0.0  # time spent before a resumed checkpoint
        self._resumed_history: list = []

    # -- control ---------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the run to end after the step in progress (thread-safe)."""
        self._stop_requested = True

    @property
    def finished(self) -> bool:
        """True once all steps ran or a stop took effect."""
        return self.step >= self.config.steps or (self._stop_requested and self.step > 0)

    # -- iteration -------------------------------------------------------------------
    def __iter__(self) -> Iterator[TrainProgress]:
        return self

    def __next__(self) -> TrainProgress:
        if self.finished or (self._stop_requested and self.step == 0):
            raise StopIteration
        if self._started is None:
            self._started = time.perf_counter()
        lr = _learning_rate(self.config, self.step)
        terms = self._train_step(lr)
        self.step += 1
        self._elapsed = self._elapsed_before + time.perf_counter() - self._started
        last = self.step >= self.config.steps or self._stop_requested
        val_psnr = val_ssim = None
        if last or self.step % self.config.validate_every == 0:
            val_psnr, val_ssim = self._validate()
        eta = self._elapsed / self.step * (self.config.steps - self.step)
        progress = TrainProgress(
            step=self.step,
            total_steps=self.config.steps,
            loss=terms,
            learning_rate=lr,
            elapsed=self._elapsed,
            eta=0.0 if last else eta,
            val_psnr=val_psnr,
            val_ssim=val_ssim,
            best_val_psnr=self._best_psnr,
            stopped=self._stop_requested,
        )
        self.history.append(progress)
        return progress

    # -- checkpoints ------------------------------------------------------------------
    def save_checkpoint(self, path: str | os.PathLike) -> pathlib.Path:
        """Write everything needed to continue this run exactly: weights, optimiser
        moments, random-number states, best model and step count (atomically).

        A run restored from the checkpoint with :meth:`load_checkpoint` and the same
        config, data and seed takes the same steps as the uninterrupted run would have.
        Only ``steps`` may differ, to lengthen or shorten a run.
        """
        target = pathlib.Path(path).expanduser()
        if not target.parent.is_dir():
            raise ValueError(f"{target}: folder {target.parent} does not exist")
        payload = {
            "format": _CHECKPOINT_FORMAT,
            "fingerprint": self._fingerprint(),
            "step": self.step,
            "elapsed": self._elapsed,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self._optimizer.state_dict(),
            "best_state": self._best_state,
            "best": [self._best_psnr, self._best_ssim, self._best_step],
            "numpy_rng": json.dumps(self._rng.bit_generator.state),
            "torch_rng": torch.get_rng_state(),
            "history": [
                [p.step, p.loss.total, p.val_psnr, p.val_ssim] for p in self.history[-20000:]
            ],
        }
        return atomic_torch_save(payload, target)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Continue from a checkpoint written by :meth:`save_checkpoint` (before any step).

        Raises
        ------
        ValueError
            If the file is not a checkpoint, or belongs to a run with other settings.
        """
        if self.step != 0:
            raise RuntimeError("load a checkpoint before the first step")
        target = pathlib.Path(path).expanduser()
        try:
            payload = torch.load(target, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unreadable file gets the same one-line message
            raise ValueError(f"{target}: not a readable training checkpoint ({exc})") from None
        if not isinstance(payload, dict) or payload.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"{target}: not a napari-pinned training checkpoint")
        if payload["fingerprint"] != self._fingerprint():
            raise ValueError(
                f"{target}: the checkpoint was written by a run with other settings or "
                "data; start a new run or use the original settings"
            )
        self.model.load_state_dict(payload["model"])
        self._optimizer.load_state_dict(payload["optimizer"])
        self._best_state = payload["best_state"]
        self._best_psnr, self._best_ssim, self._best_step = payload["best"]
        self._rng.bit_generator.state = json.loads(payload["numpy_rng"])
        torch.set_rng_state(payload["torch_rng"])
        self.step = int(payload["step"])
        self._validated_step = self.step if self._best_step == self.step else -1
        self._elapsed = self._elapsed_before = float(payload["elapsed"])
        self.history = []
        self._resumed_history = payload["history"]

    def _fingerprint(self) -> str:
        """Identifies config, seed and data, so a checkpoint is not resumed by another run."""
        # The step count is left out so a run can be extended or shortened on resume
        # (the learning-rate schedule then follows the new total from that step on).
        digest = hashlib.sha256(repr((replace(self.config, steps=1), self.seed)).encode())
        for pair in self._pairs:
            digest.update(np.ascontiguousarray(pair.clean).tobytes())
        return digest.hexdigest()

    def run_to_end(self) -> ModelBundle:
        """Iterate every remaining step and return :meth:`result`."""
        for _ in self:
            pass
        return self.result()

    # -- internals -------------------------------------------------------------------
    def _train_step(self, lr: float) -> LossTerms:
        for group in self._optimizer.param_groups:
            group["lr"] = lr
        batch = self._sampler.sample()
        x = torch.from_numpy(batch.inputs).to(self.device)
        y = torch.from_numpy(batch.targets).to(self.device)
        extra = {}
        if batch.mask is not None:
            extra["mask"] = torch.from_numpy(batch.mask).to(self.device)
        if batch.reference is not None:
            extra["reference"] = torch.from_numpy(batch.reference).to(self.device)
        self.model.train()
        self._optimizer.zero_grad(set_to_none=True)
        prediction = self.model(x)
        loss, terms = pinned_loss(prediction, y, self.config.loss_weights, **extra)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training diverged at step {self.step + 1} (loss {loss.item()}); "
                "lower the learning rate"
            )
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self._optimizer.step()
        self._last_terms = terms
        return terms

    @torch.inference_mode()
    def _validate(self) -> tuple[float, float]:
        self._validated_step = self.step
        self.model.eval()
        out = self.model(self._val_inputs.to(self.device)).float().cpu().numpy()
        out = np.clip(out, 0.0, 1.0) * _PAPER_MAX
        ref = self._val_targets * _PAPER_MAX
        if self._val_mask is not None:
            # No clean target: score the predictions of hidden pixels against their
            # noisy values.  Lower than a true PSNR, but it ranks models the same way,
            # since the noise is independent of the prediction.
            err = (out - ref)[self._val_mask]
            val_psnr = float(10 * np.log10(_PAPER_MAX**2 / max(float(np.mean(err**2)), 1e-12)))
            val_ssim = float("nan")
        else:
            psnrs = [psnr(o[0], r[0], data_range=_PAPER_MAX) for o, r in zip(out, ref, strict=True)]
            ssims = [ssim(o[0], r[0], data_range=_PAPER_MAX) for o, r in zip(out, ref, strict=True)]
            val_psnr, val_ssim = float(np.mean(psnrs)), float(np.mean(ssims))
        if self._best_psnr is None or val_psnr > self._best_psnr:
            self._best_psnr, self._best_ssim, self._best_step = val_psnr, val_ssim, self.step
            self._best_state = {
                k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()
            }
        return val_psnr, val_ssim

    def result(self) -> ModelBundle:
        """The best model so far (by validation PSNR), as a CPU :class:`ModelBundle`.

        The latest weights are validated first if they have not been yet (a stop
        between steps, or a caller that broke out of the loop), so they compete too.
        """
        if self.step == 0:
            raise RuntimeError("no training step has run yet; there is no model to return")
        if self._validated_step != self.step:
            self._validate()
        model = build_model(self.model_config)
        model.load_state_dict(self._best_state)
        model.eval()
        paired = self._pairs[0].noisy is not None
        noise = self.config.self_supervised or ("paired" if paired else self.config.noise_model)
        metadata = {
            "name": "trained model",
            "steps": self.step,
            "planned_steps": self.config.steps,
            "best_step": self._best_step,
            "val_psnr": self._best_psnr,
            "val_ssim": self._best_ssim,
            "final_loss": None if self._last_terms is None else self._last_terms.as_dict(),
            "loss_weights": self.config.loss_weights.to_dict(),
            "noise": noise,
            "noise_levels": list(self.config.noise_levels) if noise in ("cdn", "mix") else None,
            "dose_counts": list(self.config.dose_counts) if noise in ("dose", "mix") else None,
            "batch_size": self.config.batch_size,
            "patch_size": self.config.patch_size,
            "learning_rate": self.config.learning_rate,
            "train_images": [list(p.clean.shape) for p in self._pairs],
            "init_model": self._init_source,
            "seed": self.seed,
            "device": str(self.device),
            "elapsed_s": round(self._elapsed, 2),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "package_version": __version__,
        }
        return ModelBundle(model=model, config=self.model_config, metadata=metadata)


def train(
    config: TrainConfig,
    clean: np.ndarray | Sequence[np.ndarray],
    noisy: np.ndarray | Sequence[np.ndarray] | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
) -> TrainingRun:
    """Start training PINNED; iterate the returned run to take steps.

    Parameters
    ----------
    config : TrainConfig
        Run settings.
    clean : array or sequence of arrays
        Clean 2D images (any sizes; a 3D array counts as a stack of 2D images).  With
        ``config.self_supervised="blind-spot"``: the noisy images to learn from.
    noisy : array or sequence of arrays, optional
        Noisy images paired one-to-one with ``clean`` (same shapes).  Without them,
        noise of ``config.noise_model`` is synthesised for every patch.
    seed : int
        Seeds patch sampling, noise, weight initialisation and the validation set.
    device : str or torch.device
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:1", "mps".

    Returns
    -------
    TrainingRun
        Iterator of :class:`TrainProgress`; ``run.result()`` gives the best model.

    Examples
    --------
    >>> run = train(TrainConfig(steps=200), [clean_image])       # doctest: +SKIP
    >>> for progress in run:                                       # doctest: +SKIP
    ...     print(progress.step, progress.loss.total)
    >>> bundle = run.result()                                      # doctest: +SKIP
    """
    return TrainingRun(config, clean, noisy, seed=seed, device=device)
