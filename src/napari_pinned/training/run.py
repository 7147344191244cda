"""Training PINNED on clean images, optionally paired with noisy ones.

:func:`train` returns a :class:`TrainingRun`, which holds the state of a run (weights,
optimiser, best model, checkpoints) and is iterated as a job (:mod:`napari_pinned._util.jobs`):
every step yields a small :class:`TrainProgress` record and the iteration returns the
best model, so ``run_job(run)`` (or :meth:`TrainingRun.run_to_end`) trains to the end.  A
caller (CLI progress bar, napari worker, benchmark) can stop iterating at any time, or
call :meth:`TrainingRun.stop`; the best model seen so far by validation PSNR stays
available from :meth:`TrainingRun.result`.

Three data modes, as in the paper and beyond it:

* **paired** — clean images with noisy images of the same shapes (the paper's setting;
  also Noise2Noise, where the "clean" image is a second independent noisy recording,
  e.g. the even frames of a series against the odd ones, see
  :mod:`napari_pinned.denoising.registration`);
* **synthetic noise** — clean images only; noise is drawn afresh for every patch (the
  paper's CDN with a level uniform in ``noise_levels``, the dose model of
  :func:`napari_pinned.noise.synthesis.add_dose_noise`, or a mix), which turns a handful of images
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
from dataclasses import dataclass, replace

import numpy as np
import torch

from napari_pinned._util.checks import check_count
from napari_pinned._util.devices import resolve_device
from napari_pinned._util.intensity import PAPER_RANGE
from napari_pinned._util.jobs import Job, run_job
from napari_pinned._util.machine import check_threads
from napari_pinned._util.memory import check_memory, training_bytes
from napari_pinned._version import __version__
from napari_pinned.nn.losses import LossTerms, pinned_loss
from napari_pinned.nn.model_files import atomic_torch_save, check_model_size
from napari_pinned.nn.network import ModelBundle, build_model
from napari_pinned.nn.resolve import load_model
from napari_pinned.quality.metrics import psnr, ssim

# The settings live in the torch-free settings module; they are also importable here.
from napari_pinned.settings import MAX_WIDTH_FACTOR, TrainConfig
from napari_pinned.training.data import BatchSampler, prepare_pairs, uses_frames, validation_set
from napari_pinned.training.prefetch import ParallelBatches

_PAPER_MAX = PAPER_RANGE[1]
_CHECKPOINT_FORMAT = "napari-pinned-training-checkpoint-1"


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
    def done(self) -> int:
        """Steps taken (the job protocol's ``done``)."""
        return self.step

    @property
    def total(self) -> int:
        """Steps planned (the job protocol's ``total``)."""
        return self.total_steps

    @property
    def fraction(self) -> float:
        """Fraction of the run completed, in [0, 1]."""
        return self.step / self.total_steps


def _learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_fraction`` of the peak."""
    warmup = min(config.warmup_steps, max(config.steps // 10, 1))
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(config.steps - warmup, 1)
    floor = config.min_lr_fraction
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


class TrainingRun:
    """A training run: its state, and the job that takes its steps.

    Use :func:`train` to create one.  Iterating it (``for progress in run``,
    :func:`~napari_pinned._util.jobs.run_job`) is the job of :meth:`job`: one step per
    record, and the best model as the return value; ``next(run)`` takes one step.  Stop
    iterating, or call :meth:`stop`, to end early.  :meth:`result` returns the best
    model by validation PSNR at any point, including after an early stop.
    """

    # No defaults here: train() is the one signature users read, and its defaults rule.
    def __init__(
        self,
        config: TrainConfig,
        clean: np.ndarray | Sequence[np.ndarray],
        noisy: np.ndarray | Sequence[np.ndarray] | None,
        *,
        seed: int,
        device: str | torch.device,
        init_model: ModelBundle | None,
        precision: str,
        workers: int,
    ):
        self.config = config
        self.seed = seed
        self.device = resolve_device(device)
        self.precision = _check_precision(precision, self.device)
        self.workers = check_count("workers", workers)
        self._rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        if config.num_threads is not None:
            torch.set_num_threads(check_threads(config.num_threads, "TrainConfig.num_threads"))
        if init_model is not None and config.init_model is not None:
            raise ValueError("give the starting model once: in the config or to train()")
        start_from = init_model if init_model is not None else config.init_model
        self._init_digest = None if init_model is None else _weights_digest(init_model)

        if start_from is not None:
            start = load_model(start_from, device=self.device)
            self.model_config = start.config
            self.model = copy.deepcopy(start.model).to(self.device)
            self._init_source = start.source
        else:
            # A network the model loader would refuse is refused before training it.
            check_model_size(config.model, source="the training config")
            self.model_config = config.model
            self.model = build_model(config.model).to(self.device)
            self._init_source = None
        width = self.model_config.width
        check_memory(
            training_bytes(config.batch_size, config.patch_size, width),
            f"training a width-{width} network on batches of {config.batch_size} patches of "
            f"{config.patch_size}² px",
            advice="use a smaller batch_size or patch_size",
        )
        if self.model_config.conditioned and not (
            noisy is not None or config.self_supervised or config.noise_model == "stem"
        ):
            raise ValueError(
                "a noise-conditioned model learns from realistic noise: use "
                "noise_model='stem', paired noisy images, or blind-spot training"
            )
        self._frames = uses_frames(config, self.model_config)
        self._pairs = prepare_pairs(clean, noisy, config, self.model_config)
        # Channels-last convolutions: 1.4× faster training steps on x86 CPUs (oneDNN)
        # and the layout tensor cores want; the weights' values are unchanged.
        self.model = self.model.to(memory_format=torch.channels_last)
        self._optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
        self._sampler = BatchSampler(self._pairs, config, self.model_config, self._rng)
        self._batches = ParallelBatches(self._sampler, seed, self.workers) if self.workers else None
        validation = validation_set(
            self._pairs, config, self.model_config, np.random.default_rng(seed + 1)
        )
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
    def stop_requested(self) -> bool:
        """True once :meth:`stop` was called, even if no step ran after it (a stop that
        arrives between two steps ends the run without another progress record)."""
        return self._stop_requested

    @property
    def finished(self) -> bool:
        """True once all steps ran or a stop took effect."""
        return self.step >= self.config.steps or (self._stop_requested and self.step > 0)

    # -- iteration -------------------------------------------------------------------
    def __iter__(self) -> Iterator[TrainProgress]:
        return self.job()

    def job(self) -> Job[TrainProgress, ModelBundle | None]:
        """The remaining steps as a job: one :class:`TrainProgress` per step, then the
        best model (:meth:`result`; None when a stop came before the first step)."""
        while True:
            try:
                progress = next(self)
            except StopIteration:
                break
            yield progress
        self.close()
        return self.result() if self.step > 0 else None

    def __next__(self) -> TrainProgress:
        if self.finished or (self._stop_requested and self.step == 0):
            raise StopIteration
        if self._started is None:
            self._started = time.perf_counter()
            if self.config.validate_start and self.step == 0:
                self._validate()
        lr = _learning_rate(self.config, self.step)
        terms = self._train_step(lr)
        self.step += 1
        self._elapsed = self._elapsed_before + time.perf_counter() - self._started
        last = self.step >= self.config.steps or self._stop_requested
        val_psnr = val_ssim = None
        if last or self.step % self.config.validation_interval == 0:
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
        # The config is plain data, so its repr names it; a starting model given to
        # train() is named by its weights.
        settings = repr((replace(self.config, steps=1), self.seed))
        for later in _LATER_DEFAULTS:
            # Settings added after checkpoints were written: at their defaults they
            # leave the fingerprint of those runs as it was, so they still resume.
            settings = settings.replace(later, "")
        digest = hashlib.sha256(settings.encode())
        if self.workers:
            # Batches drawn per step are another stream than the one-process one; how
            # many workers draw them does not matter.
            digest.update(b"per-step batches")
        if self._init_digest is not None:
            digest.update(self._init_digest.encode())
        for pair in self._pairs:
            digest.update(np.ascontiguousarray(pair.clean).tobytes())
        return digest.hexdigest()

    def close(self) -> None:
        """Stop the batch workers, if any (the run can still return its result)."""
        if self._batches is not None:
            self._batches.close()

    def run_to_end(self) -> ModelBundle:
        """Take every remaining step and return :meth:`result` (``run_job(run)``)."""
        run_job(self)
        return self.result()

    # -- internals -------------------------------------------------------------------
    def _train_step(self, lr: float) -> LossTerms:
        for group in self._optimizer.param_groups:
            group["lr"] = lr
        parallel = self._batches is not None
        batch = self._batches.batch(self.step) if parallel else self._sampler.sample()
        x = _to_device(batch.inputs, self.device).contiguous(memory_format=torch.channels_last)
        y = _to_device(batch.targets, self.device)
        extra = {}
        if batch.mask is not None:
            extra["mask"] = torch.from_numpy(batch.mask).to(self.device)
        if batch.reference is not None:
            extra["reference"] = torch.from_numpy(batch.reference).to(self.device)
        self.model.train()
        self._optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            prediction = self.model(x)
        # The loss in float32 whatever the precision of the network's arithmetic.
        prediction = prediction.float()
        if batch.noise_scale is not None:
            # In units of each patch's noise, so that a patch at 1000 e⁻/px teaches as
            # much as one at 1 e⁻/px (plain MSE would hear only the noisiest).
            scale = torch.from_numpy(batch.noise_scale).to(self.device).clamp_min(1e-6)
            scale = scale.view(-1, 1, 1, 1)
            prediction, y = prediction / scale, y / scale
            if "reference" in extra:
                extra["reference"] = extra["reference"] / scale
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

    def _autocast(self) -> torch.autocast:
        """bfloat16 arithmetic where :attr:`precision` asks for it (weights, optimiser
        and loss stay float32)."""
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )

    @torch.inference_mode()
    def _validate(self) -> tuple[float, float]:
        self._validated_step = self.step
        self.model.eval()
        inputs = self._val_inputs.to(self.device).contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out = self.model(inputs).float().cpu().numpy()
        if not np.isfinite(out).all():
            # The loss can still be finite when the weights have already blown up.
            raise FloatingPointError(
                f"training diverged at step {self.step} (the network's output is not "
                "finite); lower the learning rate"
            )
        if self._frames:
            # Robust units: the 1st–99th percentiles span 0–1, values beyond are real.
            out, ref = out * _PAPER_MAX, self._val_targets * _PAPER_MAX
        else:
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
            "stem_doses": list(self.config.stem_noise.dose) if noise == "stem" else None,
            "batch_size": self.config.batch_size,
            "patch_size": self.config.patch_size,
            "learning_rate": self.config.learning_rate,
            "train_config": self.config.to_dict(),
            "train_images": [list(p.clean.shape) for p in self._pairs],
            "init_model": self._init_source,
            "seed": self.seed,
            "device": str(self.device),
            "precision": self.precision,
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
    init_model: ModelBundle | None = None,
    precision: str = "auto",
    workers: int = 0,
) -> TrainingRun:
    """Start training PINNED; iterate the returned run (a job) to take steps.

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
    init_model : ModelBundle, optional
        A model in memory to fine-tune (its architecture is kept); a shipped model or
        a model file is ``config.init_model`` instead.
    precision : {"auto", "fp32", "bf16"}
        The network's arithmetic: ``"bf16"`` runs it in bfloat16 under autocast
        (weights, optimiser and loss stay float32); ``"auto"`` picks bf16 on CUDA
        devices that support it and float32 elsewhere.  On CPUs with AVX-512 BF16,
        ``"bf16"`` makes steps about 2.5× faster (docs/benchmarks.md).
    workers : int
        Processes that draw the next batches while the network trains (0: draw them
        in this process).  With workers every step's batch has its own seed, so the
        run does not depend on their number.

    Returns
    -------
    TrainingRun
        A job of :class:`TrainProgress` records returning the best model;
        ``run.result()`` gives the best model so far at any time.

    Examples
    --------
    >>> run = train(TrainConfig(steps=200), [clean_image])       # doctest: +SKIP
    >>> for progress in run:                                       # doctest: +SKIP
    ...     print(progress.step, progress.loss.total)
    >>> bundle = run.result()                                      # doctest: +SKIP
    >>> bundle = run_job(train(TrainConfig(steps=200), [clean_image]))  # doctest: +SKIP
    """
    return TrainingRun(
        config,
        clean,
        noisy,
        seed=seed,
        device=device,
        init_model=init_model,
        precision=precision,
        workers=workers,
    )


#: How settings added later read in a config's repr at their defaults (left out of the
#: checkpoint fingerprint).
_LATER_DEFAULTS = (f", max_width_factor={MAX_WIDTH_FACTOR}",)

#: The network's arithmetic during training (``train(precision=...)``).
PRECISIONS = ("auto", "fp32", "bf16")


def _check_precision(precision: str, device: torch.device) -> str:
    """``precision`` with ``"auto"`` resolved for ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    cuda = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return "bf16" if cuda else "fp32"


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` on ``device``; copied from pinned memory without waiting on CUDA."""
    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def _weights_digest(bundle: ModelBundle) -> str:
    """SHA-256 of a model's configuration and weights (names a model in memory)."""
    digest = hashlib.sha256(json.dumps(bundle.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(bundle.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
