"""Adapt a model to the user's own noisy image(s), with no clean target.

The default model learned from simulations; a user's detector, scan and specimen differ
a little.  Blind-spot training (Noise2Void: Krull, Buchholz and Jug, CVPR 2019) learns
from the noisy image itself: a few pixels of every patch are hidden and the network
predicts them from their neighbours, which it can only do for the signal, never for
the independent pixel noise.  Starting from the default model and keeping its noise
map (the Poisson–Gaussian model fitted to the whole image, see
:mod:`napari_pinned.noise.estimate`), a few hundred steps fit it to the image at hand.

Nothing is lost by trying: the run validates the starting model on a held-out strip of
the image before the first step, with the same hidden-pixel score as every later step,
and keeps the best.  That score favours the fine-tuned model, which learned to predict
hidden pixels while the starting one never did, so the last word is the held-out
strip's estimated error
(:func:`~napari_pinned.training.adaptation_run.held_out_choice`, Stein's unbiased risk estimate with
the image's own noise spectrum, :mod:`napari_pinned.quality.risk`): the fine-tuned model
is kept only where it is estimated closer to the truth than the starting one.  On the
adapt benchmark's white-noise recordings, where fine-tuning lost up to 2 dB, the
hidden-pixel score kept the fine-tuned model every time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from napari_pinned._util.intensity import check_image
from napari_pinned.settings import AdaptSettings

if TYPE_CHECKING:
    import torch

    from napari_pinned.nn.network import ModelBundle
    from napari_pinned.settings import TrainConfig
    from napari_pinned.training.run import TrainingRun

# torch is imported inside the functions, so that the CLI can read AdaptSettings'
# defaults (and check its arguments) without loading it.

__all__ = [
    "adapt",
    "adapt_config",
    "outcome",
]

#: Share of each image's rows held out to score the models (as in training).
VALIDATION_FRACTION = 0.15


def adapt_config(start: ModelBundle, settings: AdaptSettings | None = None) -> TrainConfig:
    """The blind-spot fine-tuning configuration for ``start`` (which is given to
    :func:`~napari_pinned.training.run.train` with it, as ``init_model``)."""
    from napari_pinned.settings import LossWeights, TrainConfig

    s = settings or AdaptSettings()
    return TrainConfig(
        model=start.config,
        loss_weights=LossWeights(0.0, 0.0, 0.0, 0.0),
        steps=s.steps,
        batch_size=s.batch_size,
        patch_size=s.patch_size,
        learning_rate=s.learning_rate,
        warmup_steps=min(50, max(s.steps // 10, 1)),
        validation_fraction=VALIDATION_FRACTION,
        self_supervised="blind-spot",
        mask_fraction=s.mask_fraction,
        validate_every=s.validate_every,
        validation_patches=s.validation_patches,
        validate_start=True,
    )


def adapt(
    images: np.ndarray | Sequence[np.ndarray],
    model: str | ModelBundle = "default",
    *,
    settings: AdaptSettings | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
) -> TrainingRun:
    """Start fine-tuning ``model`` on noisy ``images``; iterate the run to train.

    Parameters
    ----------
    images : array or sequence of arrays
        The user's noisy 2D images or stacks (raw counts or any calibrated scale).
    model : str or ModelBundle
        The model to start from: a noise-conditioned model (the shipped default).
    settings : AdaptSettings, optional
        Steps, patch size and learning rate.
    seed, device
        As in :func:`napari_pinned.training.run.train`.

    Returns
    -------
    TrainingRun
        A job (:mod:`napari_pinned._util.jobs`): iterate it for progress (stoppable between
        steps); it returns the best model, the starting one included, which
        ``run.result()`` also gives.
    """
    from napari_pinned.nn.resolve import load_model
    from napari_pinned.training.adaptation_run import AdaptationRun

    frames = images if not isinstance(images, np.ndarray) else [images]
    for i, image in enumerate(frames):
        check_image(image, name=f"image {i}" if len(frames) > 1 else "image", ndim=(2, 3))
    start = load_model(model, device="cpu")
    if not start.config.conditioned:
        raise ValueError(
            f"{start.metadata.get('name', start.source)!r} is not noise-conditioned; adapt "
            "the default model (or another noise-map model) instead"
        )
    settings = _fitting(settings or AdaptSettings(), frames)
    config = adapt_config(start, settings)
    return AdaptationRun(
        config,
        list(frames),
        None,
        seed=seed,
        device=device,
        init_model=start,
        precision="auto",
        workers=0,
    )


def outcome(metadata: dict) -> str:
    """What adapting chose, in a phrase for the dock and the CLI."""
    risk = metadata.get("held_out_risk")
    if metadata.get("best_step", 0) == 0:
        if risk is not None:
            return (
                "fine-tuning was not estimated closer to the truth on the held-out rows "
                f"(error {risk['risk_adapted']:.3g} vs {risk['risk_start']:.3g} per pixel), "
                "so the starting model is kept unchanged"
            )
        return "the starting model scored best on the held-out rows, so it is kept unchanged"
    where = f"best at step {metadata['best_step']}"
    if risk is not None:
        where += (
            f"; estimated error on the held-out rows {risk['risk_adapted']:.3g} per pixel, "
            f"{risk['risk_start']:.3g} before"
        )
    return where


def _fitting(settings: AdaptSettings, frames: Sequence[np.ndarray]) -> AdaptSettings:
    """Shrink the patch so that it, its context and a validation strip fit every image."""
    from napari_pinned.training.data import FRAME_MARGIN, MIN_VALIDATION_ROWS

    def room(shape: tuple[int, ...]) -> int:
        h, w = shape[-2:]
        rows = h - max(math.ceil(h * VALIDATION_FRACTION), MIN_VALIDATION_ROWS)
        return min(rows, w) - 2 * FRAME_MARGIN

    fits = min(room(np.shape(f)) for f in frames) // 16 * 16
    if fits < 32:
        raise ValueError(
            "the image is too small to adapt to: it needs at least "
            f"{32 + 2 * FRAME_MARGIN + MIN_VALIDATION_ROWS} pixels per side"
        )
    return dataclasses.replace(settings, patch_size=min(settings.patch_size, fits))
