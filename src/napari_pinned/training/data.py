"""Training data: images in, batches of (input, target) patches out.

Two ways of making a patch:

* **Patch mode** (models without a noise map, the paper's protocol): images are mapped
  to the paper's [0, 255] once, a patch is cut, and noise is drawn for the patch alone
  (CDN, the dose model, or a mix), or taken from the paired noisy image, or hidden
  pixels are made for blind-spot training.
* **Frame mode** (noise-conditioned models, and ``noise_model="stem"``): a *frame* a
  little larger than the patch is cut from the image in its own units; for "stem" it is
  recorded as a STEM would (:func:`napari_pinned.noise.synthesis.record_stem_image`: dose, read
  noise, scan defects); then it goes through exactly what inference does to a frame
  (:func:`napari_pinned.nn.conditioning.prepare`: outlier repair, robust normalisation,
  noise estimate and noise map), and the patch is the centre of the result.  The
  network so trains on the statistics it meets in use, estimation errors included.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_pinned._util.intensity import PAPER_RANGE, check_image, infer_data_range, to_paper_scale
from napari_pinned.nn.conditioning import frame_statistics, prepare
from napari_pinned.nn.lattice_prior import WINDOW, lattice_average
from napari_pinned.noise.correlation import pixel_equivalent
from napari_pinned.noise.estimate import NoiseEstimate, estimate_noise
from napari_pinned.noise.synthesis import (
    DoseParams,
    StemRecording,
    apply_cdn_paper_units,
    apply_dose_paper_units,
    cdn_params,
    draw_recording,
    record_stem_image,
    scan_distort,
)

if TYPE_CHECKING:
    from napari_pinned.settings import ModelConfig, TrainConfig

_PAPER_MAX = PAPER_RANGE[1]
#: Frame mode: pixels of context around the patch that the frame adds on each side.
FRAME_MARGIN = 16
#: Frame mode with a pool of many images: whole images are held out for validation.
MIN_IMAGES_FOR_IMAGE_SPLIT = 10
#: Frame mode with few images: the height of each image's validation strip, at least.
MIN_VALIDATION_ROWS = 48
#: Read noise (e⁻) of the fixed validation recordings of "stem" mode.
_VALIDATION_READ_NOISE = 0.5


def fine_tune_patch_size(metadata: Mapping[str, Any], default: int) -> int:
    """The patch edge to fine-tune a model with: the one it was trained on (its
    metadata's ``patch_size``), else ``default``.

    A network loses its footing on patches smaller than it learned from: the default
    model's run 5 (128² patches, a 298 px receptive field) fine-tuned 1,000 steps on 64²
    patches of matched simulations lost 2.9 dB on a 0.1 e⁻/px BaTiO3 image, and gained
    1.7 dB on 128² ones (``benchmarks/self_supervised.py``'s case, measured one after
    the other).  Blind-spot fine-tunes are the exception: they lost more on 128²
    patches than on 64² ones there (9.3 against 7.0 dB), so the command line leaves
    their size alone.
    """
    size = metadata.get("patch_size")
    if isinstance(size, int) and not isinstance(size, bool) and size >= 8:
        return size
    return default


def uses_frames(config: TrainConfig, model: ModelConfig) -> bool:
    """Whether batches are made in frame mode (see the module docstring)."""
    return model.conditioned or config.noise_model == "stem"


@dataclass
class _Pair:
    """One training image, split into train rows and validation rows.

    Patch mode keeps images in paper units; frame mode in their own units (clean
    "stem" pool images must be non-negative expected signals).  ``noise`` is the noise
    of the whole image (blind-spot frames), estimated once; ``prior`` the lattice prior
    of the recorded image (paired and blind-spot frames of lattice models), in its units.
    """

    clean: np.ndarray
    noisy: np.ndarray | None
    train_rows: int  # rows [0, train_rows) train; [train_rows, H) validate
    noise: NoiseEstimate | None = None
    validation_only: bool = False
    prior: np.ndarray | None = None


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


def check_pairs(
    clean_shapes: Sequence[tuple[int, ...]],
    noisy_shapes: Sequence[tuple[int, ...]],
    clean_names: Sequence[str] | None = None,
    noisy_names: Sequence[str] | None = None,
    *,
    kinds: tuple[str, str] = ("clean image", "noisy image"),
) -> None:
    """The pairing rule of supervised training on given noisy data, in one place: one
    noisy image per clean image, in order, of the same shape.

    The command line (files), the Train dock (layers) and :func:`prepare_pairs` (arrays)
    all check with it, before any work, naming the images their own way.

    Parameters
    ----------
    clean_shapes, noisy_shapes : sequences of tuple
        Shapes of the clean images and of their noisy partners, in pairing order.
    clean_names, noisy_names : sequences of str, optional
        How to name each image in a message (default: ``"<kind> <index>"``).
    kinds : (str, str)
        What a clean and a noisy image are called ("clean image", "--clean file"...).

    Raises
    ------
    ValueError
        For a count or shape mismatch, naming the pair.
    """
    clean_kind, noisy_kind = kinds
    if len(noisy_shapes) != len(clean_shapes):
        raise ValueError(
            f"{len(noisy_shapes)} {noisy_kind}s for {len(clean_shapes)} {clean_kind}s; "
            f"give one {noisy_kind} per {clean_kind}"
        )
    for i, (c, n) in enumerate(zip(clean_shapes, noisy_shapes, strict=True)):
        if tuple(c) != tuple(n):
            clean_name = clean_names[i] if clean_names else f"{clean_kind} {i}"
            noisy_name = noisy_names[i] if noisy_names else f"{noisy_kind} {i}"
            raise ValueError(
                f"{clean_name} has shape {tuple(c)} but its noisy partner {noisy_name} has "
                f"shape {tuple(n)}; paired images must match"
            )


def prepare_pairs(
    clean: np.ndarray | Sequence[np.ndarray],
    noisy: np.ndarray | Sequence[np.ndarray] | None,
    config: TrainConfig,
    model: ModelConfig,
) -> list[_Pair]:
    """Check the training images and split each into training and validation parts."""
    if config.self_supervised and noisy is not None:
        raise ValueError(
            "blind-spot training learns from noisy images alone; give them as the only "
            "images, without a second (noisy) set"
        )
    clean_frames = _as_frames(clean, "clean image")
    noisy_frames = None if noisy is None else _as_frames(noisy, "noisy image")
    if noisy_frames is not None:
        check_pairs([c.shape for c in clean_frames], [n.shape for n in noisy_frames])
    if uses_frames(config, model):
        return _frame_pairs(clean_frames, noisy_frames, config, model)
    return _patch_pairs(clean_frames, noisy_frames, config)


def check_training_shapes(
    shapes: Sequence[tuple[int, ...]],
    config: TrainConfig,
    model: ModelConfig | None,
    *,
    paired: bool,
    names: Sequence[str] | None = None,
) -> None:
    """The size rule of :func:`prepare_pairs` from the images' shapes alone, so that the
    command line and the docks check it before any data is read or torch is loaded.

    Parameters
    ----------
    shapes : sequence of tuple
        ``(Y, X)`` of every training frame (a stack's frames one by one).
    config : TrainConfig
    model : ModelConfig or None
        The network trained; None while it is not known (a model file to fine-tune):
        the shapes pass if either way of making patches takes them.
    paired : bool
        Whether noisy partners are given (paired training).
    names : sequence of str, optional
        How to name each frame in a message (default: ``"image <index>"``).

    Raises
    ------
    ValueError
        Naming the first image too small for the patches and their validation strip.
    """
    stem_pool = not paired and not config.self_supervised
    image_split = stem_pool and len(shapes) >= MIN_IMAGES_FOR_IMAGE_SPLIT
    modes = [uses_frames(config, model)] if model is not None else [False, True]
    if config.noise_model == "stem":
        modes = [True]
    errors = []
    for frames in modes:
        try:
            if frames:
                _check_frame_sizes(shapes, config, image_split, names)
            else:
                _check_patch_sizes(shapes, config, names)
            return
        except ValueError as exc:
            errors.append(exc)
    raise errors[0]


def _check_patch_sizes(
    shapes: Sequence[tuple[int, ...]], config: TrainConfig, names: Sequence[str] | None = None
) -> None:
    min_height = config.patch_size + max(8, math.ceil(config.patch_size * 0.25))
    for i, (h, w) in enumerate(shapes):
        if w < config.patch_size or h < min_height:
            name = names[i] if names else f"clean image {i}"
            raise ValueError(
                f"{name} is {h}×{w} pixels, too small for {config.patch_size}-pixel "
                f"patches plus a validation strip (needs at least {min_height}×"
                f"{config.patch_size}); lower patch_size"
            )


def _check_frame_sizes(
    shapes: Sequence[tuple[int, ...]],
    config: TrainConfig,
    image_split: bool,
    names: Sequence[str] | None = None,
) -> None:
    frame = config.patch_size + 2 * FRAME_MARGIN
    for i, (h, w) in enumerate(shapes):
        val_rows = (
            0
            if image_split
            else max(math.ceil(h * config.validation_fraction), MIN_VALIDATION_ROWS)
        )
        if w < frame or h - val_rows < frame:
            name = names[i] if names else f"image {i}"
            raise ValueError(
                f"{name} is {h}×{w} pixels, too small for {config.patch_size}-pixel "
                f"patches with {FRAME_MARGIN} px of context"
                + ("" if image_split else " plus a validation strip")
                + f" (needs at least {frame + val_rows}×{frame}); lower patch_size"
            )


def _patch_pairs(
    clean_frames: list[np.ndarray], noisy_frames: list[np.ndarray] | None, config: TrainConfig
) -> list[_Pair]:
    _check_patch_sizes([c.shape for c in clean_frames], config)
    pairs = []
    for i, c in enumerate(clean_frames):
        h = c.shape[0]
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


def _frame_pairs(
    clean_frames: list[np.ndarray],
    noisy_frames: list[np.ndarray] | None,
    config: TrainConfig,
    model: ModelConfig,
) -> list[_Pair]:
    stem_pool = noisy_frames is None and not config.self_supervised
    # A large pool of simulated images: whole images validate, the others train whole.
    image_split = stem_pool and len(clean_frames) >= MIN_IMAGES_FOR_IMAGE_SPLIT
    n_val = max(1, round(len(clean_frames) * config.validation_fraction)) if image_split else 0
    _check_frame_sizes([c.shape for c in clean_frames], config, image_split)
    pairs = []
    for i, c in enumerate(clean_frames):
        h = c.shape[0]
        image = np.asarray(c, np.float32)
        if stem_pool and float(image.min()) < 0:
            raise ValueError(
                f"clean image {i} has negative values; images recorded with the 'stem' "
                "noise model must be expected signals (non-negative)"
            )
        val_rows = (
            0
            if image_split
            else max(math.ceil(h * config.validation_fraction), MIN_VALIDATION_ROWS)
        )
        train_rows = h - val_rows
        noisy = None if noisy_frames is None else np.asarray(noisy_frames[i], np.float32)
        # Told what `denoise` tells a model on this image (the noise a pixel carries),
        # so that the steps, the held-out choice and the user's result agree: told the
        # raw fit, a model adapted to noise smeared along the scan was then run on noise
        # up to 30× stronger than it had learned with, and lost 4–11 dB.
        noise = pixel_equivalent(estimate_noise(image), image) if config.self_supervised else None
        recorded = noisy if noisy is not None else image if config.self_supervised else None
        pairs.append(
            _Pair(
                image,
                noisy,
                train_rows,
                noise,
                validation_only=i >= len(clean_frames) - n_val,
                prior=None
                if recorded is None or not model.lattice
                else _recorded_prior(recorded, model.normalization),
            )
        )
    return pairs


def _recorded_prior(recorded: np.ndarray, normalization: str) -> np.ndarray:
    """The lattice prior of a recorded image, in its units, as inference computes it."""
    stats = frame_statistics(recorded, normalization, conditioned=True, lattice=True)
    if stats.prior is None:  # a constant image
        return np.asarray(recorded, np.float32)
    return stats.prior * np.float32(stats.state.scale) + np.float32(stats.state.low)


def _context(shape: tuple[int, ...], window: tuple[slice, slice]) -> tuple[slice, slice]:
    """The part of an image, up to :data:`~napari_pinned.nn.lattice_prior.WINDOW` px per
    side, centred on ``window`` where the image allows, whose lattice prior a
    synthetic recording of ``window`` gets (inference computes it in such windows)."""
    out = []
    for part, length in zip(window, shape, strict=True):
        size = max(min(WINDOW, length), part.stop - part.start)
        start = (part.start + part.stop - size) // 2
        start = min(max(start, 0), length - size)
        out.append(slice(start, start + size))
    return out[0], out[1]


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


def blind_spot(
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
class Batch:
    """Network inputs ``(B, C, H, W)`` and targets ``(B, 1, H, W)`` in model units.

    Blind-spot batches add the mask of hidden pixels and the low-pass reference of the
    physics terms; noise-conditioned batches the noise scale of each patch (the root
    mean square of its noise map), by which the loss is divided so that every dose
    counts alike.
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray | None = None
    reference: np.ndarray | None = None
    noise_scale: np.ndarray | None = None


def _frame_sample(
    pair: _Pair,
    window: tuple[slice, slice],
    margin: tuple[int, int],
    config: TrainConfig,
    model: ModelConfig,
    rng: np.random.Generator,
    recording: StemRecording | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Channels ``(C, h, w)`` and target ``(h, w)`` of one frame, margins cut off."""
    frame = pair.clean[window]
    prior = None if pair.prior is None else pair.prior[window]
    if config.self_supervised:
        noisy, target = frame, None
    elif pair.noisy is not None:
        noisy, target = pair.noisy[window], frame
    elif model.lattice:
        # The prior gathers a window of the frame: record that much, and cut the frame.
        recording = recording or draw_recording(rng, config.stem_noise)
        context = _context(pair.clean.shape, window)
        noisy, target = record_stem_image(pair.clean[context], recording, rng)
        inner = tuple(
            slice(w.start - c.start, w.stop - c.start) for w, c in zip(window, context, strict=True)
        )
        prior = lattice_average(noisy)[inner]
        noisy, target = noisy[inner], target[inner]
    else:
        recording = recording or draw_recording(rng, config.stem_noise)
        noisy, target = record_stem_image(frame, recording, rng)
    prepared = prepare(noisy, model.normalization, conditioned=model.conditioned, noise=pair.noise)
    state = prepared.state
    channels = prepared.channels
    if model.lattice:
        units = (np.asarray(prior, np.float64) - state.low) / state.scale
        channels = np.concatenate([channels, units[None].astype(np.float32)])
    if target is None:
        units = prepared.channels[0]
    else:
        units = ((np.asarray(target, np.float64) - state.low) / state.scale).astype(np.float32)
    my, mx = margin
    inner = np.s_[my : units.shape[0] - my, mx : units.shape[1] - mx]
    return channels[(slice(None), *inner)], units[inner]


class BatchSampler:
    """Draws random training patches (and synthesises noise when unpaired)."""

    def __init__(
        self,
        pairs: list[_Pair],
        config: TrainConfig,
        model: ModelConfig,
        rng: np.random.Generator,
    ):
        self.pairs = [p for p in pairs if not p.validation_only]
        self.config = config
        self.model = model
        self.rng = rng
        self.frames = uses_frames(config, model)
        areas = np.array([p.train_rows * p.clean.shape[1] for p in self.pairs], dtype=float)
        self.probabilities = areas / areas.sum()

    def sample(self, rng: np.random.Generator | None = None) -> Batch:
        """One batch of ``config.batch_size`` patches, drawn with ``rng`` (default: the
        sampler's own generator, which then moves on)."""
        rng = self.rng if rng is None else rng
        return self._frame_batch(rng) if self.frames else self._patch_batch(rng)

    def _patch_batch(self, rng: np.random.Generator) -> Batch:
        cfg, size = self.config, self.config.patch_size
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
                noisy, mask[b, 0] = blind_spot(target, cfg.mask_fraction, rng)
            elif pair.noisy is None:
                noisy, target = _synthetic_pair(clean, cfg, rng)
            else:
                noisy, target = _dihedral(pair.noisy[window], k), clean
            inputs[b, 0] = noisy
            targets[b, 0] = target
        batch = Batch(inputs / _PAPER_MAX, targets / _PAPER_MAX, mask)
        if blind and any(cfg.loss_weights.to_dict().values()):
            batch.reference = _low_pass(batch.targets, cfg.reference_sigma)
        return batch

    def _frame_batch(self, rng: np.random.Generator) -> Batch:
        cfg, size = self.config, self.config.patch_size
        frame = size + 2 * FRAME_MARGIN
        blind = cfg.self_supervised == "blind-spot"
        inputs = np.empty((cfg.batch_size, self.model.input_channels, size, size), np.float32)
        targets = np.empty((cfg.batch_size, 1, size, size), np.float32)
        mask = np.zeros(targets.shape, bool) if blind else None
        for b in range(cfg.batch_size):
            pair = self.pairs[rng.choice(len(self.pairs), p=self.probabilities)]
            top = int(rng.integers(0, pair.train_rows - frame + 1))
            left = int(rng.integers(0, pair.clean.shape[1] - frame + 1))
            window = np.s_[top : top + frame, left : left + frame]
            channels, target = _frame_sample(
                pair, window, (FRAME_MARGIN, FRAME_MARGIN), cfg, self.model, rng
            )
            k = int(rng.integers(0, 8))
            channels, target = _dihedral(channels, k), _dihedral(target, k)
            inputs[b] = channels
            targets[b, 0] = target
            if blind:
                inputs[b, 0], mask[b, 0] = blind_spot(
                    np.ascontiguousarray(target), cfg.mask_fraction, rng
                )
        return _finish_frame_batch(Batch(inputs, targets, mask), cfg, self.model)


def _finish_frame_batch(batch: Batch, config: TrainConfig, model: ModelConfig) -> Batch:
    if model.conditioned:
        sigma = batch.inputs[:, 1].astype(np.float64)
        batch.noise_scale = np.sqrt(np.mean(sigma**2, axis=(1, 2))).astype(np.float32)
    if batch.mask is not None and any(config.loss_weights.to_dict().values()):
        batch.reference = _low_pass(batch.targets, config.reference_sigma)
    return batch


def validation_set(
    pairs: list[_Pair], config: TrainConfig, model: ModelConfig, rng: np.random.Generator
) -> Batch:
    """Fixed crops from the held-out parts, with fixed noise spread over the noise range
    (or, blind-spot, fixed hidden pixels)."""
    if uses_frames(config, model):
        return _frame_validation_set(pairs, config, model, rng)
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
            noisy, mask[i, 0] = blind_spot(target, config.mask_fraction, rng)
        elif pair.noisy is None:
            noisy, target = _synthetic_pair(clean, config, rng, fraction=float(fractions[i]))
        else:
            noisy, target = pair.noisy[window], clean
        inputs[i, 0] = noisy
        targets[i, 0] = target
    return Batch(inputs / _PAPER_MAX, targets / _PAPER_MAX, mask)


def _frame_validation_set(
    pairs: list[_Pair], config: TrainConfig, model: ModelConfig, rng: np.random.Generator
) -> Batch:
    held_out = [p for p in pairs if p.validation_only]
    strips = not held_out
    sources = pairs if strips else held_out
    n = config.validation_patches
    fractions = np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5])
    want = 2 * config.patch_size + 2 * FRAME_MARGIN
    cols = min(want, min(p.clean.shape[1] for p in sources))
    rows = min(want, min(p.clean.shape[0] - (p.train_rows if strips else 0) for p in sources))
    margin = (min(FRAME_MARGIN, rows // 4), min(FRAME_MARGIN, cols // 4))
    out_shape = (rows - 2 * margin[0], cols - 2 * margin[1])
    blind = config.self_supervised == "blind-spot"
    inputs = np.empty((n, model.input_channels, *out_shape), np.float32)
    targets = np.empty((n, 1, *out_shape), np.float32)
    mask = np.zeros(targets.shape, bool) if blind else None
    lo, hi = np.log(config.stem_noise.dose)
    for i in range(n):
        pair = sources[i % len(sources)]
        start = pair.train_rows if strips else 0
        top = start + int(rng.integers(0, pair.clean.shape[0] - start - rows + 1))
        left = int(rng.integers(0, pair.clean.shape[1] - cols + 1))
        window = np.s_[top : top + rows, left : left + cols]
        # From the highest dose to the lowest, evenly in log dose.
        dose = float(np.exp(hi - fractions[i] * (hi - lo)))
        # Every other patch with the middle of the afterglow range when training draws
        # afterglow (ranges without it validate as they always did).
        scan = config.stem_noise
        afterglow = float(np.mean(scan.afterglow)) if scan.afterglow_fraction > 0 and i % 2 else 0.0
        recording = StemRecording(dose, read_noise=_VALIDATION_READ_NOISE, afterglow=afterglow)
        channels, target = _frame_sample(pair, window, margin, config, model, rng, recording)
        inputs[i] = channels
        targets[i, 0] = target
        if blind:
            inputs[i, 0], mask[i, 0] = blind_spot(
                np.ascontiguousarray(target), config.mask_fraction, rng
            )
    return _finish_frame_batch(Batch(inputs, targets, mask), config, model)
