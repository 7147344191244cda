"""Train (or continue training) the default model shipped in ``napari_pinned/data/models``.

The default model is noise-conditioned (it takes a per-pixel noise map, see
:mod:`napari_pinned.nn.conditioning`) and learns from realistic STEM recordings of
diverse simulated specimens:

* clean images: ``--images`` specimens of ``--shape``² px from
  :func:`napari_pinned.physics.specimens.structure_pool` (bundled crystals at many zone axes,
  random lattices and motifs, weak-and-strong sublattices, amorphous films, vacuum,
  particles on support, grain boundaries, surfaces, thickness gradients, vacancies,
  dopants, some ABF-like contrast; 0.03–0.6 Å/px; aberrated and Gaussian probes), with
  the benchmark materials (``specimens.HELD_OUT_MATERIALS``) held out;
* noise: every patch is recorded afresh (:func:`napari_pinned.noise.synthesis.draw_recording`):
  0.3–1000 e⁻/px mean dose (log-uniform, plus some practically clean images), read
  noise, row jitter, line offsets, drift shear and converter steps.

The run is deterministic for a given set of arguments and resumable: every few minutes,
and when the time budget of one invocation runs out, it writes a checkpoint with the
weights, optimiser moments and random-number states.  Invoking the same command again
continues exactly where it stopped:

    python scripts/train_default.py --threads 1 --minutes 60    # first hour
    python scripts/train_default.py --threads 1 --minutes 60    # continues from the checkpoint

(``--threads`` is part of the run's settings, so give the same value when resuming; one
thread is faster than two on a 2-core machine that does anything else.)  Fine-tuning the
shipped model on a scanning detector's noise as well (``settings.SCANNING_DETECTOR``:
afterglow, line gains, dark counts, converter clipping, dropped lines)::

    python scripts/train_default.py --scanning-detector --init default --steps 6500 \
        --lr 3e-4 --warmup 200 --threads 1 --out runs/default-scan.pt \
        --checkpoint runs/default-scan.ckpt

Growing the shipped model into a wider, deeper one (:mod:`napari_pinned.nn.growth`:
it starts out returning what the shipped one returns) and fine-tuning that::

    python scripts/train_default.py --scanning-detector --init default --grow \
        --depth 5 --max-width-factor 16 --steps 10000 --lr 3e-4 --warmup 200 ...

Giving it the lattice prior (:mod:`napari_pinned.nn.lattice_prior`: ``--lattice --grow``
adds the inputs with zero weights, so it too starts as the shipped model)::

    python scripts/train_default.py --scanning-detector --init default --grow --lattice \
        --steps 10000 --lr 3e-4 --warmup 200 --precision bf16 ...

On a GPU (``scripts/device_train.sh``): ``--device cuda`` trains in bfloat16 with
channels-last tensors; ``--workers 15`` draws the clean images and every batch in 15
processes (each item from its own seed, so the run is the same for any count);
``--fit-steps`` sizes the run to ``--minutes``.  On a CPU with AVX-512 BF16,
``--precision bf16`` makes each step about 2.5× faster.

The defaults are the first run's settings; docs/model-card.md says how the shipped
model's runs went.
When all steps are done (or ``--export-now``), the best model by validation PSNR is
written atomically to ``--out`` with the training settings in its metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import sys
import time
from dataclasses import replace

import torch

from napari_pinned.nn.growth import grow
from napari_pinned.nn.model_files import default_model_path, save_model
from napari_pinned.nn.network import ModelBundle, count_parameters
from napari_pinned.nn.resolve import load_model
from napari_pinned.physics.materials import HELD_OUT_MATERIALS
from napari_pinned.physics.ranges import StructureRanges
from napari_pinned.physics.specimens import structure_pool
from napari_pinned.settings import (
    MAX_WIDTH_FACTOR,
    SCANNING_DETECTOR,
    LossWeights,
    ModelConfig,
    StemNoiseRanges,
    TrainConfig,
)
from napari_pinned.training.run import PRECISIONS, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=default_model_path())
    parser.add_argument(
        "--checkpoint", type=pathlib.Path, default=pathlib.Path("runs/default.ckpt")
    )
    parser.add_argument("--width", type=int, default=8, help="base channel count")
    parser.add_argument("--depth", type=int, default=4, help="number of down-samplings")
    parser.add_argument(
        "--max-width-factor",
        type=int,
        default=MAX_WIDTH_FACTOR,
        help="channels stop doubling at this multiple of --width",
    )
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--images", type=int, default=3000, help="clean images in the pool")
    parser.add_argument("--shape", type=int, default=256, help="edge of each clean image (px)")
    parser.add_argument(
        "--pixel-sizes",
        type=float,
        nargs=2,
        default=[0.03, 0.6],
        metavar=("LOW", "HIGH"),
        help="pixel size range of the specimens, Å (log-uniform)",
    )
    parser.add_argument(
        "--scanning-detector",
        action="store_true",
        help="record patches with a scanning detector's noise too (settings.SCANNING_DETECTOR: "
        "afterglow, line gains, dark counts, converter clipping, dropped lines)",
    )
    parser.add_argument(
        "--smear-fraction",
        type=float,
        default=0.0,
        help="share of recordings whose noise and signal are also smeared symmetrically "
        "along the fast scan (a detector's finite bandwidth, StemRecording.smear 0–0.3)",
    )
    parser.add_argument(
        "--resample-fraction",
        type=float,
        default=0.0,
        help="share of recordings resampled after recording, as drift correction does "
        "(StemRecording.resample: a rotation of up to 4° and a sub-pixel shift, linear)",
    )
    parser.add_argument(
        "--resample-zoom",
        type=float,
        default=1.0,
        help="largest magnification of a resampled frame (StemRecording.resample_zoom, "
        "uniform from 1: an upsampled frame, its noise correlated over as many pixels)",
    )
    parser.add_argument(
        "--line-pattern-fraction",
        type=float,
        default=0.0,
        help="share of recordings with interference the same in every scan line "
        "(StemRecording.line_pattern: 1-3 tones at 0.25-0.5 cycles/px, RMS up to 0.3 of "
        "the shot noise at the mean dose)",
    )
    parser.add_argument(
        "--init",
        help="fine-tune this model (a shipped model's name or a file) instead of a new one",
    )
    parser.add_argument(
        "--grow",
        action="store_true",
        help="grow the --init model to --width/--depth/--max-width-factor first "
        "(napari_pinned.nn.growth: it starts out returning what --init returns)",
    )
    parser.add_argument(
        "--lattice",
        action="store_true",
        help="give the model the lattice prior as a third input (nn.lattice_prior; with "
        "--init of a model without it, --grow adds its inputs, weighted zero at first; "
        "a model that has it keeps it)",
    )
    parser.add_argument("--warmup", type=int, default=500, help="learning-rate warm-up steps")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the network's arithmetic (auto: bf16 on CUDA, fp32 elsewhere)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes that draw the clean images and the batches (0: this one; "
        "≥ 1 draws another, per-item seeded pool and batch stream, the same for any count)",
    )
    parser.add_argument(
        "--fit-steps",
        action="store_true",
        help="with --minutes: after 200 steps, set --steps to what fits in the time left, "
        "so the learning-rate schedule ends with the budget",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--minutes", type=float, help="stop this invocation after this long")
    parser.add_argument("--save-every", type=float, default=5.0, help="minutes between checkpoints")
    parser.add_argument("--export-now", action="store_true", help="export before the last step")
    parser.add_argument(
        "--export-every", type=int, help="also export the best model so far every N steps"
    )
    return parser.parse_args(argv)


def export(
    run, args: argparse.Namespace, argv: list[str] | None, provenance: dict | None = None
) -> None:
    """Write the best model so far to ``args.out`` with its provenance (``provenance``: the
    file the run started from and, for a grown model, the configuration it grew from)."""
    bundle = run.result()
    if provenance is not None:
        bundle.metadata.update(provenance)
    bundle.metadata.update(
        name="napari-pinned default",
        training_data=(
            f"{args.images} random specimens of {args.shape}² px "
            "(napari_pinned.physics.specimens.structure_pool, train split: crystals, random "
            "lattices, weak/strong sublattices, amorphous films, particles, boundaries, "
            f"surfaces, defects; {', '.join(HELD_OUT_MATERIALS)} held out), recorded "
            "at 0.3–1000 e⁻/px with read noise and scan defects per patch"
            + (
                " and a scanning detector's afterglow (τ 0–3 px), line gains, dark counts, "
                "converter clipping and dropped lines"
                if args.scanning_detector
                else ""
            )
            + (
                f"; {args.smear_fraction:.0%} of the recordings smeared symmetrically along "
                "the fast scan (a detector's finite bandwidth)"
                if args.smear_fraction > 0
                else ""
            )
            + (
                f"; {args.resample_fraction:.0%} of the frames resampled after recording "
                "(a rotation of up to 4° and a sub-pixel shift, linear interpolation"
                + (f", magnified up to {args.resample_zoom:g}×" if args.resample_zoom > 1 else "")
                + ")"
                if args.resample_fraction > 0
                else ""
            )
            + (
                f"; {args.line_pattern_fraction:.0%} of the recordings with interference the "
                "same in every scan line"
                if args.line_pattern_fraction > 0
                else ""
            )
        ),
        script=f"scripts/train_default.py {' '.join(sys.argv[1:] if argv is None else argv)}",
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_model(bundle, args.out)
    print(
        f"best model (step {bundle.metadata['best_step']}, "
        f"val {bundle.metadata['val_psnr']:.2f} dB) written to {args.out}",
        flush=True,
    )


def init_description(init: str, start: ModelBundle) -> str:
    """The model a run started from: its reference and its file's SHA-256."""
    source = pathlib.Path(start.source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest() if source.is_file() else "unknown"
    return f"{init} ({source.name}, file SHA-256 {digest})"


#: Steps timed before ``--fit-steps`` sets the run's length.
_FIT_AFTER = 200


def fitted_steps(config: TrainConfig, progress, seconds_left: float) -> TrainConfig:
    """``config`` with as many steps as fit in ``seconds_left`` at the pace so far."""
    pace = progress.elapsed / progress.step
    # A validation every 500 steps and the export at the end: keep 5 % in hand.
    more = int(0.95 * max(seconds_left, 0.0) / pace)
    return replace(config, steps=max(progress.step + 1, progress.step + more))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = None if args.init is None else load_model(args.init)
    lattice = args.lattice or (start is not None and start.config.lattice)
    config = TrainConfig(
        model=ModelConfig.preset(
            "unet",
            width=args.width,
            depth=args.depth,
            max_width_factor=args.max_width_factor,
            normalization="robust",
            # A grown network keeps the inputs it had: --lattice, or an --init that has it.
            conditioning="noise-map+lattice" if lattice else "noise-map",
        ),
        loss_weights=LossWeights(0.0, 0.0, 0.0, 0.0),
        noise_model="stem",
        stem_noise=replace(
            SCANNING_DETECTOR if args.scanning_detector else StemNoiseRanges(),
            smear_fraction=args.smear_fraction,
            resample_fraction=args.resample_fraction,
            resample_zoom=(1.0, args.resample_zoom),
            line_pattern_fraction=args.line_pattern_fraction,
        ),
        init_model=None if args.grow else args.init,
        steps=args.steps,
        batch_size=args.batch,
        patch_size=args.patch,
        learning_rate=args.lr,
        warmup_steps=args.warmup,
        validation_fraction=0.05,
        validation_patches=64,
        validate_every=500,
        num_threads=args.threads,
    )
    started = time.perf_counter()
    # Up to 0.6 Å/px: a quarter of the images then sample the probe at under 3.5 px per
    # FWHM, as survey images do; with 0.3 Å/px it was 7 % and the model learned that
    # pixel-scale detail is noise.
    ranges = StructureRanges(pixel_size=tuple(args.pixel_sizes))
    pool = structure_pool(
        args.images, args.shape, split="train", seed=args.seed, ranges=ranges, workers=args.workers
    )
    images = [s.image for s in pool]
    print(f"{len(images)} training images simulated in {time.perf_counter() - started:.0f} s")
    grown = provenance = None
    if start is not None:
        # The file a run started from, by content: a run fine-tuned from an unshipped
        # model (e.g. runs/x.pt) can then be told from one started from another file.
        provenance = {"init_model": init_description(args.init, start)}
    if args.grow:
        if start is None:
            raise SystemExit("--grow needs --init: the model to grow")
        grown = grow(start, config.model, seed=args.seed)
        provenance["grown_from"] = grown.metadata["grown_from"]
    run = train(
        config,
        images,
        seed=args.seed,
        device=args.device,
        init_model=grown,
        precision=args.precision,
        workers=args.workers,
    )
    if args.checkpoint.exists():
        run.load_checkpoint(args.checkpoint)
        print(f"resumed from {args.checkpoint} at step {run.step}")
    args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"{count_parameters(run.model):,} parameters, {config.steps} steps of "
        f"{config.batch_size}×{config.patch_size}² on {run.device} ({run.precision}), "
        f"{torch.get_num_threads()} threads, {args.workers} batch workers",
        flush=True,
    )

    budget = None if args.minutes is None else args.minutes * 60
    last_save = time.perf_counter()
    fitted = not (args.fit_steps and budget is not None)
    for progress in run:
        now = time.perf_counter()
        if not fitted and progress.step == _FIT_AFTER:
            run.config = fitted_steps(run.config, progress, budget - (now - started))
            print(f"{run.config.steps} steps fit in the time left", flush=True)
            fitted = True
        if progress.val_psnr is not None:
            print(
                f"step {progress.step:6d}  loss {progress.loss.total:.5f}  "
                f"val {progress.val_psnr:.2f} dB (best {progress.best_val_psnr:.2f})  "
                f"{progress.elapsed / 60:.1f} min, eta {progress.eta / 60:.0f} min",
                flush=True,
            )
        if now - last_save > args.save_every * 60:
            run.save_checkpoint(args.checkpoint)
            last_save = now
        if args.export_every and progress.step % args.export_every == 0:
            export(run, args, argv, provenance)
        if budget is not None and now - started > budget:
            break
    run.save_checkpoint(args.checkpoint)
    print(f"checkpoint at step {run.step} written to {args.checkpoint}")
    # run.config: --fit-steps may have changed the number of steps.
    if run.step >= run.config.steps or args.export_now:
        export(run, args, argv, provenance)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
