"""The training run of "Adapt to this image": it returns the fine-tuned model only where
the held-out rows say it beats the starting one
(:func:`held_out_choice`).

Apart from :mod:`napari_pinned.training.adapt`, which the CLI reads without loading
torch.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch

from napari_pinned.nn.conditioning import finish, prepare
from napari_pinned.nn.network import ModelBundle
from napari_pinned.noise.estimate import NoiseEstimate
from napari_pinned.quality.lattice_guard import guard_applies, keep_lattice
from napari_pinned.quality.risk import estimated_risks, measure_scan_noise
from napari_pinned.training.data import FRAME_MARGIN
from napari_pinned.training.run import TrainingRun

#: Frames of a stack whose held-out rows decide between the models, and random probes
#: of the risk estimate per frame (each costs one pass of each model over the rows).
HELD_OUT_FRAMES = 4
HELD_OUT_PROBES = 3


def held_out_choice(
    start: ModelBundle,
    adapted: ModelBundle,
    frames: Sequence[tuple[np.ndarray, int, NoiseEstimate | None]],
    *,
    device: str = "cpu",
    probes: int = HELD_OUT_PROBES,
) -> dict:
    """Which of ``start`` and ``adapted`` is closer to the truth on the held-out rows.

    Parameters
    ----------
    start, adapted : ModelBundle
        The starting and the fine-tuned model.
    frames : sequence of (frame, train_rows, noise)
        The images adapted to, the first row no step trained on, and the noise
        estimate they are denoised with; at most :data:`HELD_OUT_FRAMES` are scored.
    device : str
        Where the models run.
    probes : int
        Random probes of the risk estimate (:func:`napari_pinned.quality.risk.estimated_risks`).

    Returns
    -------
    dict
        ``risk_start`` and ``risk_adapted`` (mean squared error per pixel in the image's
        units, summed over the frames scored), ``risk_error`` (standard error of their
        difference) and ``kept``: ``"adapted"`` only if its risk is lower by more than
        twice that error, else ``"start"``.
    """
    totals = np.zeros(2)
    error2 = 0.0
    for index, (frame, train_rows, noise) in enumerate(frames[:HELD_OUT_FRAMES]):
        top = max(train_rows - FRAME_MARGIN, 0)
        strip = np.asarray(frame[top:], dtype=np.float64)
        scored = np.zeros(strip.shape, bool)
        scored[train_rows - top :] = True

        denoise_start, denoise_adapted = (_network(b, noise, device) for b in (start, adapted))
        # The whole frame's spectrum: the strip alone reads the variance 10–25 % off.
        spectra = measure_scan_noise(np.asarray(frame, dtype=np.float64))
        # The variance follows the signal (Poisson): its profile from the starting
        # model's output, scaled so that the frame's mean profile (the mean intensity
        # stands in for the mean signal) carries the frame's variance.
        variance = np.full(strip.shape, spectra.variance)
        if noise is not None and noise.gain > 0:
            signal = np.maximum(denoise_start(strip), 0.0)
            floor = 1e-3 * max(noise.gain * float(np.mean(frame)) + noise.offset, 1e-12)
            profile = np.maximum(noise.gain * signal + noise.offset, floor)
            frame_mean = max(noise.gain * float(np.mean(frame)) + noise.offset, floor)
            variance = spectra.variance * profile / frame_mean
        estimate = estimated_risks(
            [denoise_start, denoise_adapted],
            strip,
            variance,
            spectra,
            scored=scored,
            probes=probes,
            seed=index,
        )
        totals += estimate.risks
        error2 += estimate.difference_errors[1] ** 2
    error = float(np.sqrt(error2))
    better = totals[1] + 2.0 * error < totals[0]
    return {
        "risk_start": float(totals[0]),
        "risk_adapted": float(totals[1]),
        "risk_error": error,
        "kept": "adapted" if better else "start",
    }


def _network(
    bundle: ModelBundle, noise: NoiseEstimate | None, device: str
) -> Callable[[np.ndarray], np.ndarray]:
    """``bundle``'s network on a whole frame, told ``noise``, in the frame's units, with
    the lattice guard where ``denoise`` applies it: what the user would get, on a strip
    small enough for one pass (``denoise`` itself lives a layer above training)."""
    model = copy.deepcopy(bundle.model).to(device).eval()
    config = bundle.config

    def run(frame: np.ndarray) -> np.ndarray:
        prepared = prepare(
            frame,
            config.normalization,
            conditioned=config.conditioned,
            noise=noise,
            lattice=config.lattice,
        )
        x = torch.from_numpy(np.ascontiguousarray(prepared.channels[None], np.float32))
        with torch.inference_mode():
            out = model(x.to(device))[0, 0].float().cpu().numpy()
        result = finish(out, prepared)
        if guard_applies(bundle.metadata.get("noise"), frame):
            result = keep_lattice(prepared.repaired, result)
        return np.asarray(result, dtype=np.float64)

    return run


class AdaptationRun(TrainingRun):
    """A blind-spot fine-tuning run whose result is the fine-tuned model only where the
    held-out rows say it beats the starting one (:func:`held_out_choice`)."""

    def __init__(self, *args, init_model: ModelBundle, **kwargs):
        super().__init__(*args, init_model=init_model, **kwargs)
        self._start = init_model
        self._choices: dict[int, dict] = {}

    def result(self) -> ModelBundle:
        best = super().result()
        step = best.metadata["best_step"]
        if step == 0:
            return best
        if step not in self._choices:
            frames = [(p.clean, p.train_rows, p.noise) for p in self._pairs]
            self._choices[step] = held_out_choice(
                self._start, best, frames, device=str(self.device)
            )
        choice = self._choices[step]
        metadata = {**best.metadata, "held_out_risk": choice}
        if choice["kept"] == "adapted":
            return dataclasses.replace(best, metadata=metadata)
        # The starting model, as the run would have returned it had it scored best.
        metadata.update(best_step=0, adapted_best_step=step)
        model = copy.deepcopy(self._start.model).cpu().eval()
        return dataclasses.replace(best, model=model, metadata=metadata)
