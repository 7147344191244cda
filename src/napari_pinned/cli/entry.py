"""The ``napari-pinned`` command line: simulate, add noise, train, denoise, score.

Every command checks its arguments, its input files (from their headers) and its
destinations before it imports torch or starts any work, so a mistake is reported in
a fraction of a second and a long run never fails at its end.  User mistakes (bad
files, wrong shapes, invalid parameters, a request too large for the machine) print
one line starting with ``napari-pinned: error:`` and exit with status 2; nothing
prints a traceback unless ``--debug`` is given.

Exit status: 0 done; 2 a mistake, or some files of a batch failed (each is named);
130 / 143 interrupted by SIGINT (Ctrl-C) / SIGTERM (``kill``, ``timeout``, SLURM) —
``train`` then saves the best model so far before it exits.

Outputs never replace an input (the same file, also through a link) unless
``--overwrite`` is given, and every file is written atomically
(:mod:`napari_pinned.io.safe_write`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_pinned._util.errors import first_line
from napari_pinned._util.jobs import run_job
from napari_pinned._util.memory import (
    check_memory,
    denoise_bytes,
    noise_bytes,
    out_of_memory_message,
    registration_bytes,
    simulation_bytes,
)
from napari_pinned._version import __version__
from napari_pinned.io.safe_write import (
    check_outputs,
    check_writable_folder,
    unique_names,
    write_together,
)
from napari_pinned.settings import DEFAULT_TILE, FrameOptions

if TYPE_CHECKING:
    from napari_pinned.denoising.denoiser import DenoiseProgress
    from napari_pinned.denoising.files import FileProgress
    from napari_pinned.denoising.registration import RegistrationProgress
    from napari_pinned.training.run import TrainProgress

EXIT_OK = 0
EXIT_USAGE = 2
#: 128 + the signal number, what a shell reports for a process killed by the signal.
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM

#: Defaults of ``train`` for a new network: those of the shipped models (U-Net, base
#: width 8, depth 3; ``tests/core/test_cli.py`` checks them against the files), which
#: train 2000 steps in about 3 minutes on 2 CPU cores.
TRAIN_ARCHITECTURE = "unet"
TRAIN_WIDTH = 8
TRAIN_DEPTH = 3

#: Progress lines in a log (not a terminal): every 10 %, and at least this often.
LOG_INTERVAL_S = 30.0


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; a BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _ProgressBar:
    """A one-line text progress bar on stderr (no dependency, works in any terminal).

    In a terminal the line is redrawn in place.  Logs and pipes cannot redraw a line;
    there a new line is printed every 10 % and at least every ``log_interval`` seconds,
    so a long run in a batch job's log never looks hung.
    """

    def __init__(
        self,
        total: int,
        label: str,
        width: int = 28,
        stream=None,
        *,
        log_interval: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.total = max(total, 1)
        self.label = label
        self.width = width
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self._interactive = bool(isatty and isatty())
        self._clock = clock
        self._log_interval = log_interval
        self._last = 0.0
        self._last_line = clock()
        self._last_decile = -1
        self._open = False

    def update(self, done: int, extra: str = "", force: bool = False) -> None:
        filled = int(self.width * done / self.total)
        line = f"{self.label} [{'#' * filled}{'-' * (self.width - filled)}] {done}/{self.total}"
        line = f"{line} {extra}".rstrip()
        now = self._clock()
        if not self._interactive:
            decile = 10 * done // self.total
            if decile > self._last_decile or force or now - self._last_line >= self._log_interval:
                self._last_decile = max(decile, self._last_decile)
                self._last_line = now
                self.stream.write(line + "\n")
                self.stream.flush()
            return
        if not force and now - self._last < 0.2 and done < self.total:
            return
        self._last = now
        self._open = True
        self.stream.write(f"\r{line}".ljust(100))
        self.stream.flush()

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


# ----------------------------------------------------------------------------- checks
@contextlib.contextmanager
def _about(path: str | Path) -> Iterator[None]:
    """Prefix a core ``ValueError`` about "image" with the file it came from."""
    try:
        yield
    except ValueError as exc:
        text = str(exc)
        if str(path) in text:
            raise
        raise ValueError(f"{path}: {text}") from None


def _input_shape(path: Path) -> tuple[int, ...]:
    """The shape of an input image, from its header; one line naming the file if not."""
    from napari_pinned.io.images import image_shape

    shape, _dtype = image_shape(path)
    if len(shape) not in (2, 3):
        raise ValueError(
            f"{path}: holds a {len(shape)}-D array of shape {shape}; expected an image or a stack"
        )
    return shape


def _check_inputs_exist(paths: Sequence[Path]) -> None:
    for path in paths:
        if not path.is_file():
            raise ValueError(
                f"{path}: no such file" if not path.is_dir() else f"{path}: is a folder"
            )


def _check_reference_shape(
    path: Path, shape: tuple[int, ...], ref: Path, ref_shape: tuple[int, ...]
) -> None:
    """A stack may be scored frame by frame against one 2D reference."""
    if shape == ref_shape or (len(shape) == 3 and len(ref_shape) == 2 and shape[1:] == ref_shape):
        return
    raise ValueError(f"{path} has shape {shape} but the reference {ref} has shape {ref_shape}")


def _check_finite_output(data: np.ndarray, source: str | Path) -> None:
    """Never write a NaN image: say so instead (extreme inputs, a diverged model)."""
    if not np.isfinite(data).all():
        raise ValueError(f"{source}: the result contains NaN or infinite values; nothing written")


def _shipped_name_or_file(value: str, option: str) -> None:
    """Check a model argument without torch: a file that exists, or a shipped name
    (checked when the model is loaded)."""
    path = Path(value).expanduser()
    looks_like_a_file = path.suffix != "" or "/" in value or "\\" in value
    if path.exists() and not path.is_file():
        raise ValueError(f"{option} {value}: is a folder, not a model file")
    if looks_like_a_file and not path.exists():
        raise ValueError(f"{option} {value}: model file not found")


# --------------------------------------------------------------------------- signals
@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM raises :class:`Interrupted`, as SIGINT raises KeyboardInterrupt, so
    that every command stops cleanly (temporary files removed) with one line."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupted(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[list[int]]:
    """During a training loop: the first SIGINT/SIGTERM asks the run to stop after the
    step in progress (the best model is then saved); a second one leaves at once."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def request_stop(signum: int, _frame: Any) -> None:
        if received:
            raise Interrupted(signum)
        received.append(signum)
        stop()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _exit_status(signum: int) -> int:
    return 128 + int(signum)


# ---------------------------------------------------------------------------- commands
def _cmd_materials(args: argparse.Namespace) -> int:
    from napari_pinned.physics.crystal import list_materials, zone_label

    for material in list_materials():
        zones = ", ".join(zone_label(z) for z in material.zone_axes)
        print(f"{material.name:<12} {zones:<22} {material.description}")
    return EXIT_OK


def _probe(args: argparse.Namespace):
    from napari_pinned.physics.simulate import AberratedProbe, GaussianProbe

    if args.probe_fwhm is not None:
        return GaussianProbe(fwhm=args.probe_fwhm)
    return AberratedProbe(
        voltage_kv=args.voltage,
        convergence_mrad=args.convergence,
        defocus=args.defocus,
        cs_mm=args.cs,
        source_size=args.source_size,
    )


def _check_simulation_memory(size: int, pixel_size: float, probe, what: str) -> None:
    from napari_pinned.physics.simulate import render_margin

    pad = render_margin(probe, pixel_size) / pixel_size
    canvas = (size + 2 * pad) ** 2
    check_memory(simulation_bytes(canvas), what)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from napari_pinned.io.images import write_csv, write_tiff
    from napari_pinned.physics.crystal import get_material

    if args.cif is not None:
        _check_inputs_exist([args.cif])
    else:
        get_material(args.material)
    outputs = [args.output] + ([args.columns] if args.columns is not None else [])
    check_outputs(outputs, [args.cif] if args.cif is not None else [], overwrite=args.overwrite)
    probe = _probe(args)
    _check_simulation_memory(
        args.size, args.pixel_size, probe, f"simulating a {args.size}×{args.size} px image"
    )

    from napari_pinned.physics.simulate import simulate

    source = args.cif if args.cif is not None else args.material
    result = simulate(
        source,
        args.zone,
        shape=(args.size, args.size),
        pixel_size=args.pixel_size,
        probe=probe,
        thickness=args.thickness,
        rotation=args.rotation,
        vacancy_fraction=args.vacancies,
        seed=args.seed,
    )
    _check_finite_output(result.image, "simulate")
    with write_together():
        write_tiff(args.output, result.image, pixel_size=result.pixel_size)
        if args.columns is not None:
            cols = result.columns
            table = np.column_stack([cols.positions, cols.weights])
            write_csv(args.columns, table, ["row", "col", "weight"], fmt="%.6g")
    print(
        f"{result.label()}: {args.size}×{args.size} px at {result.pixel_size} Å/px, "
        f"{len(result.columns.weights)} columns → {args.output}"
    )
    return EXIT_OK


def _cmd_noise(args: argparse.Namespace) -> int:
    from napari_pinned.io.images import read_image, read_pixel_size, write_tiff

    _check_inputs_exist([args.input])
    if args.model == "dose" and args.dose is None:
        raise ValueError("--model dose needs --dose (e⁻/Å² per frame)")
    if args.model == "cdn" and args.dose is not None:
        raise ValueError("--dose applies to --model dose only")
    shape = _input_shape(args.input)
    check_outputs([args.output], [args.input], overwrite=args.overwrite)
    pixel_size = read_pixel_size(args.input)
    size = args.pixel_size or pixel_size
    if args.model == "dose" and size is None:
        raise ValueError(f"{args.input}: the file has no pixel size; give --pixel-size in Å")
    check_memory(noise_bytes(shape), f"{args.input}: adding noise")

    from napari_pinned.noise.synthesis import add_cdn_noise, add_dose_noise

    image = read_image(args.input)
    with _about(args.input):
        if args.model == "dose":
            noisy = add_dose_noise(
                image,
                args.dose,
                pixel_size=size,
                collection=args.collection,
                read_noise=args.read_noise,
                row_jitter=args.jitter,
                drift=tuple(args.drift),
                seed=args.seed,
            )
        else:
            noisy = add_cdn_noise(
                image,
                args.level,
                gaussian_std=args.gaussian_std,
                static_fraction=args.static_fraction,
                speckle_variance=args.speckle_variance,
                clip=not args.no_clip,
                seed=args.seed,
            )
    _check_finite_output(noisy, args.input)
    write_tiff(args.output, noisy, pixel_size=pixel_size or size)
    if args.model == "dose":
        print(f"dose {args.dose:g} e⁻/Å² at {size:g} Å/px → {args.output}")
    else:
        print(f"CDN level {args.level:g} → {args.output}")
    return EXIT_OK


def _cmd_metrics(args: argparse.Namespace) -> int:
    from napari_pinned.io.images import read_image
    from napari_pinned.quality.metrics import (
        compute_metrics_stack,
        format_metrics_table,
        mean_metrics,
    )

    _check_inputs_exist([args.reference, *args.images])
    ref_shape = _input_shape(args.reference)
    for path in args.images:
        _check_reference_shape(path, _input_shape(path), args.reference, ref_shape)
    reference = read_image(args.reference)
    with _about(args.reference):
        from napari_pinned._util.intensity import check_image

        check_image(reference, name="the reference")
    rows = {}
    for path in args.images:
        image = read_image(path)
        with _about(path):
            rows[str(path)] = mean_metrics(compute_metrics_stack(image, reference))
    print(format_metrics_table(rows))
    return EXIT_OK


def _check_train_args(args: argparse.Namespace) -> None:
    """Everything about ``train`` that can be checked without torch or reading data."""
    from napari_pinned.physics.crystal import get_material
    from napari_pinned.training.data import check_pairs

    if args.blind_spot:
        if args.clean or args.materials or not args.noisy:
            raise ValueError(
                "--blind-spot learns from --noisy images alone (no --clean or --materials)"
            )
    else:
        if args.noisy and args.materials:
            raise ValueError("--materials cannot be combined with --noisy (no paired noisy data)")
        if args.noisy:
            # The counts now, before any file is opened; shapes below.
            check_pairs([()] * len(args.clean or []), [()] * len(args.noisy), kinds=_FILE_KINDS)
        if not args.clean and not args.materials:
            raise ValueError("no training data: give --clean files and/or --materials names")
    if args.init is not None:
        given = [
            f"--{name}"
            for name in ("architecture", "width", "depth")
            if getattr(args, name) is not None
        ]
        if given:
            raise ValueError(
                f"{' and '.join(given)} cannot be combined with --init: fine-tuning keeps the "
                "start model's architecture"
            )
        _shipped_name_or_file(args.init, "--init")
    for name in args.materials or []:
        get_material(name)
    files = [*(args.clean or []), *(args.noisy or [])]
    _check_inputs_exist(files)
    shapes = {path: _input_shape(path) for path in files}
    if args.noisy and not args.blind_spot:
        check_pairs(
            [shapes[p] for p in args.clean],
            [shapes[p] for p in args.noisy],
            [str(p) for p in args.clean],
            [str(p) for p in args.noisy],
            kinds=_FILE_KINDS,
        )
    inputs = [*files] + ([Path(args.init)] if args.init is not None else [])
    check_outputs([args.output], inputs, overwrite=args.overwrite)
    if args.materials:
        from napari_pinned.physics.simulate import AberratedProbe

        _check_simulation_memory(
            args.sim_size,
            args.pixel_size,
            AberratedProbe(),
            f"simulating {args.sim_size}² px training images",
        )


#: What the pairing rule calls the training files.
_FILE_KINDS = ("--clean file", "--noisy file")


@contextlib.contextmanager
def _training_to_end(
    run: Any, steps: int, label: str, score: str, what: str
) -> Iterator[tuple[Any, list[int]]]:
    """Run a training job to its end with a progress bar, SIGINT/SIGTERM meaning Stop.

    Yields the best model and the signals received, still inside the signal guard: a
    first Ctrl-C while the caller saves the model is recorded, not fatal.

    Raises
    ------
    Interrupted
        When a signal stopped the run before its first step.
    ValueError
        When the run stopped before its first step otherwise (nothing to save).
    """
    bar = _ProgressBar(steps, label)

    def show(p: TrainProgress) -> None:
        val = f" {score} {p.best_val_psnr:.2f} dB" if p.best_val_psnr is not None else ""
        bar.update(p.step, f"loss {p.loss.total:.4f}{val} ETA {_duration(p.eta)}")

    with _stop_on_signals(run.stop) as received:
        try:
            bundle = run_job(run, show)
        finally:
            bar.close()
        if bundle is None:  # stopped before the first step
            if received:
                raise Interrupted(received[0])
            raise ValueError(f"{what} stopped before the first step; nothing saved")
        yield bundle, received


def _load_training_images(args: argparse.Namespace) -> tuple[list[np.ndarray], list | None]:
    from napari_pinned.io.images import read_image
    from napari_pinned.physics.simulate import simulate

    if args.blind_spot:
        return [read_image(p) for p in args.noisy], None
    clean = [read_image(p) for p in (args.clean or [])]
    noisy = [read_image(p) for p in args.noisy] if args.noisy else None
    for i, name in enumerate(args.materials or []):
        clean.append(
            simulate(
                name,
                shape=(args.sim_size, args.sim_size),
                pixel_size=args.pixel_size,
                seed=args.seed + i,
            ).image
        )
    return clean, noisy


def _cmd_train(args: argparse.Namespace) -> int:
    _check_train_args(args)

    from napari_pinned.nn.model_files import check_model_size, save_model
    from napari_pinned.nn.network import count_parameters
    from napari_pinned.settings import LossWeights, ModelConfig, TrainConfig
    from napari_pinned.training.run import train

    defaults = LossWeights()
    weights = LossWeights(
        tv=defaults.tv if args.lambda_tv is None else args.lambda_tv,
        sf=defaults.sf if args.lambda_sf is None else args.lambda_sf,
        brightness=defaults.brightness if args.lambda_b is None else args.lambda_b,
        contrast=defaults.contrast if args.lambda_c is None else args.lambda_c,
    )
    architecture = args.architecture or TRAIN_ARCHITECTURE
    # The shipped models' size for a U-Net; the paper's network and "tiny" keep theirs.
    sizes = {"width": TRAIN_WIDTH, "depth": TRAIN_DEPTH} if architecture == "unet" else {}
    sizes.update({k: v for k, v in (("width", args.width), ("depth", args.depth)) if v is not None})
    model_config = ModelConfig.preset(architecture, **sizes)
    if args.init is None:
        check_model_size(model_config, source="--width/--depth")
    config = TrainConfig(
        model=model_config,
        loss_weights=weights,
        steps=args.steps,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        learning_rate=args.lr,
        noise_levels=(args.levels[0], args.levels[1]),
        noise_model=args.noise,
        dose_counts=(args.dose_counts[0], args.dose_counts[1]),
        self_supervised="blind-spot" if args.blind_spot else None,
        validate_every=None,  # auto, as the dock
        init_model=args.init,
        num_threads=args.threads,
    )
    clean, noisy = _load_training_images(args)
    run = train(config, clean, noisy, seed=args.seed, device=args.device)
    if args.blind_spot:
        data = "noisy images only (blind-spot)"
    else:
        data = "paired noisy data" if noisy else f"synthetic {args.noise} noise"
    start = f", fine-tuning {args.init}" if args.init is not None else ""
    print(
        f"training {run.model_config.architecture} model "
        f"({count_parameters(run.model):,} parameters{start}) on {len(clean)} image(s), "
        f"{data}, device {run.device}",
        file=sys.stderr,
    )
    out = Path(args.output)
    with _training_to_end(run, config.steps, "train", "val", "training") as (bundle, received):
        save_model(bundle, out)
    meta = bundle.metadata
    if args.blind_spot:
        # No clean target: the score is the prediction of hidden pixels vs their noisy values.
        score = f"blind-spot PSNR {meta['val_psnr']:.2f} dB"
    else:
        score = f"PSNR {meta['val_psnr']:.2f} dB / SSIM {meta['val_ssim']:.3f}"
    summary = (
        f"{meta['steps']} steps in {_duration(meta['elapsed_s'])}, best validation {score} at "
        f"step {meta['best_step']}"
    )
    if received:
        name = signal.Signals(received[0]).name
        print(
            f"napari-pinned: interrupted by {name} after {meta['steps']} of {config.steps} steps; "
            f"saved the best model so far to {out} ({summary})",
            file=sys.stderr,
        )
        return _exit_status(received[0])
    print(f"saved {out}: {summary}")
    return EXIT_OK


def _is_zarr(path: Path) -> bool:
    from napari_pinned.io.zarr_store import is_zarr_path

    return is_zarr_path(path)


def _denoise_targets(args: argparse.Namespace) -> list[Path]:
    if args.output is not None:
        return [Path(args.output)]
    targets = []
    for p in args.inputs:
        zarr_out = args.output_format == "zarr" or (args.output_format is None and _is_zarr(p))
        targets.append(
            Path(args.output_dir) / f"{Path(p).stem}_denoised{'.zarr' if zarr_out else '.tif'}"
        )
    return targets


def _check_denoise_args(args: argparse.Namespace) -> list[Path]:
    """Every check of ``denoise`` that needs no torch; returns the output paths."""
    if (args.output is None) == (args.output_dir is None):
        raise ValueError("give exactly one of -o/--output or --output-dir")
    if args.output is not None and len(args.inputs) > 1:
        raise ValueError("several inputs need --output-dir, not -o")
    if args.output_dir is not None and not Path(args.output_dir).is_dir():
        raise ValueError(f"{args.output_dir}: output folder does not exist")
    if args.tile is not None and args.tile < 16:
        raise ValueError(f"--tile {args.tile}: tiles must be at least 16 px")
    if args.scheduler is not None and args.workers is not None:
        raise ValueError(
            "give --scheduler (a running cluster) or --workers (a local one), not both"
        )
    if args.scheduler is not None:
        from napari_pinned.denoising.files import check_scheduler_address

        check_scheduler_address(args.scheduler)
    _shipped_name_or_file(args.model, "--model")
    targets = _denoise_targets(args)
    unique_names(targets, args.inputs)
    cluster = args.scheduler is not None or args.workers is not None
    for target in targets:
        suffix = target.suffix.lower()
        if args.resume and suffix != ".zarr":
            raise ValueError(f"{target}: --resume continues zarr outputs only (-o out.zarr)")
        if cluster and len(targets) == 1 and suffix != ".zarr":
            raise ValueError(
                f"{target}: --scheduler/--workers write one stack as zarr (-o out.zarr); "
                "TIFF outputs are for batches of files"
            )
    if cluster and (args.check or args.reference is not None):
        raise ValueError(
            "--check and --reference read outputs back whole: run them without a cluster"
        )
    references = [args.reference] if args.reference is not None else []
    model_file = [Path(args.model)] if Path(args.model).is_file() else []
    inputs = [*args.inputs, *references, *model_file]
    files = [t for t in targets if t.suffix.lower() != ".zarr"]
    check_outputs(files, inputs, overwrite=args.overwrite)
    from napari_pinned.io.zarr_store import check_zarr_output, partial_path

    for target in targets:
        if target.suffix.lower() == ".zarr":
            check_zarr_output(target, inputs, overwrite=args.overwrite)
            partial = partial_path(target)
            if partial.exists() and not args.resume:
                raise ValueError(
                    f"{target}: an interrupted run left {partial.name}; add --resume to "
                    "continue it, or delete it to start again"
                )
    return targets


def _precheck_frames(path: Path) -> None:
    """Read a single input frame by frame and check its values, before the model loads."""
    from napari_pinned._util.intensity import check_image
    from napari_pinned.io.images import open_frames

    frames = open_frames(path)
    count = frames.shape[0] if len(frames.shape) == 3 else 1
    for f in range(count):
        frame = np.asarray(frames[f] if len(frames.shape) == 3 else frames[...])
        with _about(path):
            check_image(
                frame, name="the image" if count == 1 else f"the image (frame {f})", ndim=(2,)
            )


def _cmd_denoise(args: argparse.Namespace) -> int:
    targets = _check_denoise_args(args)
    single = len(args.inputs) == 1
    tile = args.tile if args.tile is not None else DEFAULT_TILE
    reference_shape = None
    if args.reference is not None:
        _check_inputs_exist([args.reference])
        reference_shape = _input_shape(args.reference)
    problems = _precheck_denoise_inputs(args, tile, reference_shape, single)

    from napari_pinned._util.intensity import check_image
    from napari_pinned.io.images import read_image

    reference = None
    if args.reference is not None:
        reference = read_image(args.reference)
        with _about(args.reference):
            check_image(reference, name="the reference")
    cluster = args.scheduler is not None or args.workers is not None
    if single and not cluster:
        # One input: its contents are checked before the model is loaded, too.
        _precheck_frames(args.inputs[0])

    other = _other_runtime_model(args, cluster)
    if other is not None:
        pairs = [(p, t) for p, t in zip(args.inputs, targets, strict=True) if p not in problems]
        return _denoise_other_runtime(args, pairs, other, reference, problems)

    spec = _load_denoise_model(args)
    options = FrameOptions(
        tile=tile,
        overlap=args.overlap,
        device=args.device,
        strength=args.strength,
        keep_lattice=not args.no_keep_lattice,
        orientations=args.orientations,
    )
    pairs = [(p, t) for p, t in zip(args.inputs, targets, strict=True) if p not in problems]
    if cluster:
        return _denoise_on_cluster(args, pairs, spec, options, problems)
    return _denoise_locally(args, pairs, spec, options, reference, problems)


def _precheck_denoise_inputs(
    args: argparse.Namespace,
    tile: int,
    reference_shape: tuple[int, ...] | None,
    single: bool,
) -> dict[Path, str]:
    """Check every input from its header before any work; return the batch's bad files.

    A bad file of a batch is reported at the end and the others are denoised, so its
    problem is collected (path → message); a single input's problem is raised instead.
    """
    from napari_pinned.io.images import image_shape, is_microscope_file

    problems: dict[Path, str] = {}
    for path in args.inputs:
        try:
            if not (path.is_file() or (path.is_dir() and _is_zarr(path))):
                raise ValueError(
                    f"{path}: is a folder, not a zarr store"
                    if path.is_dir()
                    else f"{path}: no such file"
                )
            shape, _ = image_shape(path)
            if len(shape) not in (2, 3):
                raise ValueError(
                    f"{path}: holds a {len(shape)}-D array; expected an image or a stack"
                )
            if reference_shape is not None:
                _check_reference_shape(path, shape, args.reference, reference_shape)
            whole = is_microscope_file(path) or args.reference is not None or args.check
            check_memory(
                denoise_bytes(shape, tile, in_memory=whole),
                f"{path}: denoising its {'×'.join(map(str, shape))} px",
            )
        except ValueError as exc:
            if single:
                raise
            problems[path] = str(exc)
    return problems


def _load_denoise_model(args: argparse.Namespace) -> Any:
    """Load ``--model`` and check the options that depend on it; return its ``ModelSpec``.

    Raises
    ------
    ValueError
        If ``--overlap`` is below the halo the model's receptive field needs.
    """
    from napari_pinned.denoising.denoiser import ModelSpec, minimum_overlap
    from napari_pinned.nn.model_files import load_model

    bundle = load_model(args.model, device="cpu")
    needed = minimum_overlap(bundle.config)
    if args.overlap is not None and args.overlap < needed:
        raise ValueError(
            f"--overlap {args.overlap} is too small for model {args.model!r}: tiles need at "
            f"least {needed} px of halo to give the whole-image result (leave it out)"
        )
    if args.strength != 1.0 and not bundle.config.conditioned:
        print(
            f"napari-pinned: note: --strength is ignored: model {args.model!r} has no noise "
            "input (the shipped 'default' does)",
            file=sys.stderr,
        )
    return ModelSpec.of(bundle)


def _denoise_locally(
    args: argparse.Namespace,
    pairs: list[tuple[Path, Path]],
    spec: Any,
    options: FrameOptions,
    reference: np.ndarray | None,
    problems: dict[Path, str],
) -> int:
    """Denoise each (input, output) pair in this process; print metrics; return the exit code.

    A batch goes on past a file that fails (bad contents, out of memory), which joins
    ``problems``; a single input, or an unexpected runtime error, is raised.
    """
    single = len(args.inputs) == 1
    rows: dict[str, dict] = {}
    for path, target in pairs:
        try:
            last = _denoise_one(path, target, spec, options, args)
            _report_noise(path, last.report if last is not None else None)
            if args.check or reference is not None:
                rows.update(_check_denoised(path, target, reference, args.check))
        except (ValueError, MemoryError, RuntimeError) as exc:
            memory = out_of_memory_message(exc)
            if single or (isinstance(exc, RuntimeError) and memory is None):
                raise
            problems[path] = memory or str(exc)
            continue
    if rows:
        from napari_pinned.quality.metrics import format_metrics_table

        print(format_metrics_table(rows))
    return _report_problems(args, problems)


def _check_denoised(
    path: Path, target: Path, reference: np.ndarray | None, check: bool
) -> dict[str, dict]:
    """``--check``'s faithfulness report, and the metrics rows against ``--reference``.

    Returns
    -------
    dict
        ``"<name> (input)"`` and ``"<name> (denoised)"`` → mean metrics; empty without a
        reference.
    """
    from napari_pinned.io.images import read_image

    image, output = read_image(path), read_image(target)
    if check:
        from napari_pinned.io.images import read_pixel_size

        _report_faithfulness(path, image, output, read_pixel_size(path))
    if reference is None:
        return {}
    from napari_pinned.quality.metrics import compute_metrics_stack, mean_metrics

    name = Path(path).name
    return {
        f"{name} (input)": mean_metrics(compute_metrics_stack(image, reference)),
        f"{name} (denoised)": mean_metrics(compute_metrics_stack(output, reference)),
    }


def _denoise_one(
    path: Path, target: Path, spec: Any, options: FrameOptions, args: argparse.Namespace
) -> Any:
    """One input → one output, frame by frame, with a progress bar; prints the result."""
    from napari_pinned.denoising.files import iter_denoise_file

    bar = _ProgressBar(1, f"denoise {Path(path).name}")
    last = None

    def show(record: FileProgress) -> None:
        nonlocal last
        last = record
        if record.total > 1:
            bar.total = record.total
            bar.update(record.done, "frames")
        elif record.report is not None:
            bar.total = record.report.tiles_total
            bar.update(record.report.tiles_done, "tiles")

    try:
        with _about(path):
            job = iter_denoise_file(path, target, spec, options, resume=args.resume)
            run_job(job, show)
    except (KeyboardInterrupt, Interrupted):
        bar.close()
        if target.suffix.lower() == ".zarr" and last is not None:
            print(
                f"\nnapari-pinned: {last.done} of {last.total} frames of {target} are kept; "
                "run the same command with --resume to continue",
                file=sys.stderr,
            )
        raise
    finally:
        bar.close()
    resumed = f" ({last.resumed} frames from the interrupted run)" if last and last.resumed else ""
    print(f"{path} → {target}{resumed}")
    return last


def _other_runtime_model(args: argparse.Namespace, cluster: bool) -> Any:
    """The model when it does not run as napari-pinned's torch network: an ONNX file or
    ``--backend onnx`` (ONNX Runtime), or a BMZ package of another tool
    (bioimageio.core); None otherwise (napari-pinned's own packages load as models)."""
    from napari_pinned.nn import bmz
    from napari_pinned.nn import runners as backends

    model = None
    if backends.is_onnx_file(args.model):
        if args.backend == "torch":
            raise ValueError(f"--model {args.model}: an ONNX model runs with --backend onnx")
        model = backends.load_onnx_model(args.model)
    elif bmz.is_package(args.model):
        loaded = bmz.load_package(args.model, trust=args.trust_package, device=args.device)
        model = loaded if isinstance(loaded, bmz.ForeignModel) else None
        if model is None and args.backend == "onnx":
            model = backends.onnx_model(loaded)
    elif args.backend == "onnx":
        from napari_pinned.nn.model_files import load_model

        backends.require_onnxruntime("--backend onnx")
        model = backends.onnx_model(load_model(args.model, device="cpu"))
    if model is not None and cluster:
        raise ValueError(
            "--scheduler/--workers run napari-pinned's torch models; ONNX models and "
            "packages from other tools run in this process (leave them out)"
        )
    if model is not None:
        for target in _denoise_targets(args):
            if target.suffix.lower() == ".zarr":
                raise ValueError(
                    f"{target}: ONNX models and packages from other tools write TIFF "
                    "outputs (-o out.tif)"
                )
    return model


def _denoise_other_runtime(
    args: argparse.Namespace,
    pairs: list[tuple[Path, Path]],
    model: Any,
    reference: np.ndarray | None,
    problems: dict[Path, str],
) -> int:
    """Denoise whole files with an ONNX model or another tool's BMZ package."""
    from napari_pinned.denoising.denoiser import iter_denoise
    from napari_pinned.io.images import read_image, read_pixel_size, write_tiff

    tile = args.tile if args.tile is not None else DEFAULT_TILE
    rows = {}
    for path, target in pairs:
        try:
            with _about(path):
                image = read_image(path)
                bar = _ProgressBar(1, f"denoise {Path(path).name}")

                def show(record: DenoiseProgress, bar: _ProgressBar = bar) -> None:
                    bar.total = record.tiles_total
                    bar.update(record.tiles_done, "tiles")

                try:
                    job = iter_denoise(
                        image,
                        model,
                        tile=tile,
                        overlap=args.overlap,
                        device=args.device,
                        strength=args.strength,
                        backend="onnx" if args.backend == "auto" else args.backend,
                        keep_lattice=not args.no_keep_lattice,
                        orientations=args.orientations,
                    )
                    result = run_job(job, show)
                finally:
                    bar.close()
                assert result is not None
                _check_finite_output(result, path)
                write_tiff(target, result, pixel_size=read_pixel_size(path))
            print(f"{path} → {target}")
            if reference is not None:
                from napari_pinned.quality.metrics import compute_metrics_stack, mean_metrics

                name = Path(path).name
                rows[f"{name} (input)"] = mean_metrics(compute_metrics_stack(image, reference))
                rows[f"{name} (denoised)"] = mean_metrics(compute_metrics_stack(result, reference))
        except (ValueError, MemoryError) as exc:
            if len(args.inputs) == 1:
                raise
            problems[path] = out_of_memory_message(exc) or str(exc)
    if rows:
        from napari_pinned.quality.metrics import format_metrics_table

        print(format_metrics_table(rows))
    return _report_problems(args, problems)


def _denoise_on_cluster(
    args: argparse.Namespace,
    pairs: list[tuple[Path, Path]],
    spec: Any,
    options: FrameOptions,
    problems: dict[Path, str],
) -> int:
    """``--scheduler``/``--workers``: one stack's frames, or a batch's files, as tasks."""
    from napari_pinned.denoising.files import (
        dask_client,
        iter_denoise_file_on_cluster,
        iter_denoise_files_on_cluster,
    )

    where = args.scheduler or f"a local cluster of {args.workers} worker processes"
    with dask_client(args.scheduler, args.workers) as client:
        workers = len(client.scheduler_info().get("workers", {}))
        print(f"napari-pinned: denoising on {where} ({workers} workers)", file=sys.stderr)
        if len(pairs) == 1 and len(args.inputs) == 1:
            path, target = pairs[0]
            bar = _ProgressBar(1, f"denoise {Path(path).name}")
            last = None

            def show(record: FileProgress) -> None:
                nonlocal last
                last = record
                bar.total = record.total
                bar.update(record.done, "frames")

            try:
                with _about(path):
                    job = iter_denoise_file_on_cluster(
                        path, target, spec, client, options, resume=args.resume
                    )
                    run_job(job, show)
            except (KeyboardInterrupt, Interrupted):
                bar.close()
                if last is not None:
                    print(
                        f"\nnapari-pinned: {last.done} of {last.total} frames of {target} are "
                        "kept; run the same command with --resume to continue",
                        file=sys.stderr,
                    )
                raise
            finally:
                bar.close()
            print(f"{path} → {target}")
            return EXIT_OK
        bar = _ProgressBar(len(pairs), "denoise batch")
        done = 0
        try:
            for path, target, error in iter_denoise_files_on_cluster(
                pairs, spec, client, options, resume=args.resume
            ):
                done += 1
                bar.update(done, "files")
                if error is not None:
                    memory = out_of_memory_message(error)
                    problems[path] = memory or str(error).splitlines()[0]
                else:
                    bar.close()
                    print(f"{path} → {target}")
        finally:
            bar.close()
    return _report_problems(args, problems)


def _report_problems(args: argparse.Namespace, problems: dict[Path, str]) -> int:
    if not problems:
        return EXIT_OK
    order = {path: i for i, path in enumerate(args.inputs)}
    for path, message in sorted(problems.items(), key=lambda item: order[item[0]]):
        text = message if str(path) in message else f"{path}: {message}"
        print(f"napari-pinned: error: {text}", file=sys.stderr)
    done = len(args.inputs) - len(problems)
    print(
        f"napari-pinned: error: {len(problems)} of {len(args.inputs)} files failed "
        f"(listed above); {done} denoised",
        file=sys.stderr,
    )
    return EXIT_USAGE


def _cmd_align(args: argparse.Namespace) -> int:
    from napari_pinned.io.images import read_image, read_pixel_size, write_csv, write_tiff

    _check_inputs_exist([args.input])
    shape = _input_shape(args.input)
    if len(shape) != 3:
        raise ValueError(
            f"{args.input} is a single 2D image (shape {shape}); registration needs a stack "
            "of frames (N, H, W)"
        )
    outputs = [args.output, args.aligned, args.shifts, *(args.halves or [])]
    check_outputs([o for o in outputs if o is not None], [args.input], overwrite=args.overwrite)
    check_memory(registration_bytes(shape), f"{args.input}: registering its frames")

    from napari_pinned.denoising.registration import check_frames, register_frames

    stack = check_frames(read_image(args.input), name=str(args.input))
    bar = _ProgressBar(1, f"align {Path(args.input).name}")

    def show(record: RegistrationProgress) -> None:
        bar.total = record.total
        bar.update(record.done)

    try:
        with _about(args.input):
            job = register_frames(
                stack, reference=args.reference, upsample=args.upsample, max_shift=args.max_shift
            )
            result = run_job(job, show)
    finally:
        bar.close()
    pixel_size = read_pixel_size(args.input)
    written = [args.output]
    with write_together():
        write_tiff(args.output, result.mean, pixel_size=pixel_size)
        if args.aligned is not None:
            write_tiff(args.aligned, result.aligned, pixel_size=pixel_size)
            written.append(args.aligned)
        if args.halves:
            for path, half in zip(args.halves, result.halves(), strict=True):
                write_tiff(path, half, pixel_size=pixel_size)
                written.append(path)
        if args.shifts is not None:
            table = np.column_stack([np.arange(len(result.shifts)), result.shifts])
            write_csv(args.shifts, table, ["frame", "dy", "dx"], fmt=["%d", "%.4f", "%.4f"])
            written.append(args.shifts)
    drift = f"max drift {result.max_drift:.2f} px"
    if pixel_size is not None:
        drift += f" ({result.max_drift * pixel_size:.2f} Å)"
    h, w = result.mean.shape
    print(f"{len(stack)} frames, {drift}; mean of the common {h}×{w} px region")
    print(f"{args.input} → {', '.join(str(p) for p in written)}")
    return EXIT_OK


#: Materials the demo trains on (the paper's training split).
DEMO_TRAINING = ("InN", "graphene", "ZrO2", "AlGaN", "NaCN")
#: The shipped model the demo compares with: the one trained on CDN noise, as the demo's.
DEMO_SHIPPED = "cdn"


def _summary_figure(rows: list[list[np.ndarray]], reference: np.ndarray) -> np.ndarray:
    """One 8-bit greyscale mosaic: a row per CDN level, panels side by side, all on
    the reference's intensity range (so brightness compares across panels)."""
    lo, hi = float(reference.min()), float(reference.max())
    span = hi - lo if hi > lo else 1.0
    gap = 4
    h, w = reference.shape
    cols = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (h + gap) - gap, cols * (w + gap) - gap), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            scaled = np.clip((np.asarray(panel, np.float64) - lo) / span, 0.0, 1.0)
            y, x = i * (h + gap), j * (w + gap)
            canvas[y : y + h, x : x + w] = np.round(scaled * 255).astype(np.uint8)
    return canvas


def _cmd_demo(args: argparse.Namespace) -> int:
    """The main job headlessly: simulate → noise → short training → denoise → metrics."""
    out = _prepare_demo(args)
    size, px = args.size, 0.1

    from napari_pinned.nn.model_files import load_model, shipped_model
    from napari_pinned.physics.simulate import simulate
    from napari_pinned.quality.metrics import format_metrics_table
    from napari_pinned.training.run import train

    names = list(DEMO_TRAINING)
    print(f"1. simulating training materials {', '.join(names)} ({size}² px, {px} Å/px)")
    clean = [simulate(n, shape=size, pixel_size=px, seed=i).image for i, n in enumerate(names)]
    print(f"2. training a small model for {args.steps} steps on synthetic CDN levels 1–5")
    config = _demo_train_config(args, size)
    started = time.perf_counter()
    run = train(config, clean, seed=0, device=args.device)
    bar = _ProgressBar(config.steps, "   train")
    try:
        bundle = run_job(
            run, lambda p: bar.update(p.step, f"loss {p.loss.total:.4f} ETA {_duration(p.eta)}")
        )
    finally:
        bar.close()
    print(f"3. denoising {args.material} (never seen in training) at CDN levels 1–5")
    truth = simulate(args.material, shape=size, pixel_size=px, seed=99).image
    shipped = shipped_model(DEMO_SHIPPED)
    comparison = load_model(DEMO_SHIPPED) if shipped and shipped.path.is_file() else None
    methods = ["noisy", "flat image (true mean)", "median 3×3", "PINNED (demo model)"]
    if comparison is not None:
        methods.append(f"PINNED ({DEMO_SHIPPED} model)")
    rows, results, images, panels = _demo_compare(args, bundle, comparison, truth, methods)
    for name, data in images.items():
        _check_finite_output(data, name)
    elapsed = time.perf_counter() - started
    summary = {
        "material": args.material,
        "training_materials": names,
        "size": size,
        "pixel_size": px,
        "steps": args.steps,
        "width": args.width,
        "shipped_model": DEMO_SHIPPED if comparison is not None else None,
        "seconds": round(elapsed, 1),
        "methods": methods,
        "levels": {str(level): values for level, values in results.items()},
    }
    _write_demo_files(out, bundle, images, _summary_figure(panels, truth), results, summary)
    print(format_metrics_table(rows))
    columns = "clean | noisy | demo model"
    if comparison is not None:
        columns += f" | {DEMO_SHIPPED} model"
    print(f"files in {out}/: summary.png (rows: levels 1–5; columns: {columns}),")
    print("  metrics.csv, metrics.json, the images and demo-model.pt")
    return EXIT_OK


def _prepare_demo(args: argparse.Namespace) -> Path:
    """Check the demo's options and make its output folder, before any slow work.

    Returns
    -------
    Path
        The output folder (created if missing, checked writable).

    Raises
    ------
    ValueError
        For an unknown material, an unusable output folder, a size under 64 px, or
        images that would not fit in memory.
    """
    from napari_pinned.physics.crystal import get_material

    get_material(args.material)
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if not out.parent.is_dir():
        raise ValueError(f"{out}: folder {out.parent} does not exist")
    out.mkdir(exist_ok=True)
    check_writable_folder(out / "demo-model.pt")
    size, px = args.size, 0.1
    if size < 64:
        raise ValueError(f"--size {size}: the demo needs at least 64 px")
    from napari_pinned.physics.simulate import AberratedProbe

    _check_simulation_memory(size, px, AberratedProbe(), f"simulating {size}² px images")
    return out


def _demo_train_config(args: argparse.Namespace, size: int) -> Any:
    """The demo's short training run: a small U-Net on synthetic CDN levels 1–5."""
    from napari_pinned.settings import LossWeights, ModelConfig, TrainConfig

    return TrainConfig(
        # Direct output and plain MSE: what benchmarks/quality.py measured best.
        model=ModelConfig.preset("unet", width=args.width, depth=3, residual=False),
        loss_weights=LossWeights.none(),
        steps=args.steps,
        batch_size=8,
        patch_size=min(64, size // 2),
        learning_rate=1e-3,
        validate_every=max(1, args.steps // 5),
    )


def _demo_compare(
    args: argparse.Namespace,
    bundle: Any,
    comparison: Any,
    truth: np.ndarray,
    methods: list[str],
) -> tuple[dict[str, Any], dict[int, dict[str, Any]], dict[str, np.ndarray], list]:
    """Noise ``truth`` at CDN levels 1–5 and score every method against it.

    Returns
    -------
    rows : dict
        ``"L<level> <method>"`` → metrics, for the printed table.
    results : dict
        level → method → metrics as a dict, for the CSV and JSON files.
    images : dict
        File name → image to write (the reference, each level's noisy and denoised).
    panels : list
        Per level, the images of the summary figure's row.
    """
    from scipy.ndimage import median_filter

    from napari_pinned.denoising.denoiser import denoise
    from napari_pinned.noise.synthesis import add_cdn_noise
    from napari_pinned.quality.metrics import compute_metrics

    # A flat image at the true mean: the score any method must beat to have found the
    # lattice at all (at levels 4–5 some do not).
    flat = np.full_like(truth, float(truth.mean()))
    rows: dict[str, Any] = {}
    results: dict[int, dict[str, Any]] = {}
    images: dict[str, np.ndarray] = {"reference.tif": truth}
    panels = []
    for level in range(1, 6):
        noisy = add_cdn_noise(truth, level, seed=level)
        output = denoise(noisy, bundle, device=args.device)
        outputs = {
            "noisy": noisy,
            "flat image (true mean)": flat,
            "median 3×3": median_filter(noisy, 3),
            "PINNED (demo model)": output,
        }
        if comparison is not None:
            outputs[methods[-1]] = denoise(noisy, comparison, device=args.device)
        results[level] = {}
        for method in methods:
            metrics = compute_metrics(outputs[method], truth)
            rows[f"L{level} {method}"] = metrics
            results[level][method] = metrics.as_dict()
        images[f"noisy_L{level}.tif"] = noisy
        images[f"denoised_L{level}.tif"] = output
        shown = [truth, noisy, output]
        if comparison is not None:
            shown.append(outputs[methods[-1]])
        panels.append(shown)
    return rows, results, images, panels


def _write_demo_files(
    out: Path,
    bundle: Any,
    images: dict[str, np.ndarray],
    figure: np.ndarray,
    results: dict[int, dict[str, Any]],
    summary: dict[str, Any],
) -> None:
    """Write the model, images, summary figure and metrics together (all or none)."""
    import json

    from napari_pinned.io.images import write_csv, write_png, write_tiff
    from napari_pinned.io.safe_write import write_text
    from napari_pinned.nn.model_files import save_model

    table = np.array(
        [
            [level, method, *values.values()]
            for level, by_method in results.items()
            for method, values in by_method.items()
        ],
        dtype=object,
    )
    with write_together():
        save_model(bundle, out / "demo-model.pt")
        for name, data in images.items():
            write_tiff(out / name, data, pixel_size=summary["pixel_size"])
        write_png(out / "summary.png", figure)
        write_csv(
            out / "metrics.csv",
            table,
            ["level", "method", "psnr", "ssim", "fsc", "epi"],
            fmt=["%d", "%s", "%.4f", "%.5f", "%.5f", "%.4f"],
        )
        write_text(out / "metrics.json", json.dumps(summary, indent=2) + "\n")


# ------------------------------------------------------------------------------ parser
class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; every option that has a default says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        shown = (
            " ".join(str(v) for v in default)
            if isinstance(default, (list, tuple))
            else "%(default)s"
        )
        return f"{text} (default: {shown})"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = f"see '{self.prog} --help'"
        self.exit(EXIT_USAGE, f"napari-pinned: error: {message} ({hint})\n")


def _number(kind: type, check: Callable[[Any], bool], wanted: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if (isinstance(value, float) and not math.isfinite(value)) or not check(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    parse.__name__ = wanted  # what argparse names in its messages
    return parse


_positive_int = _number(int, lambda v: v > 0, "a positive integer")
_non_negative_int = _number(int, lambda v: v >= 0, "a non-negative integer")
_seed = _non_negative_int
_positive = _number(float, lambda v: v > 0, "a positive number")
_non_negative = _number(float, lambda v: v >= 0, "a non-negative number")
_finite = _number(float, lambda v: True, "a finite number")
_fraction = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
_level = _number(float, lambda v: 0 <= v <= 5, "a CDN level in [0, 5]")
_strength = _number(float, lambda v: 0 <= v <= 10, "a strength in [0, 10]")


def _subparser(sub, name: str, help_text: str, description: str, examples: str) -> _Parser:
    return sub.add_parser(
        name,
        help=help_text,
        description=f"{description}\n\nexamples:\n{examples}",
        formatter_class=_HelpFormatter,
    )


def _add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="allow an output to replace one of the input files",
    )


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps"
    )


def _add_materials_parser(sub) -> None:
    p = _subparser(
        sub,
        "materials",
        "list bundled materials and their zone axes",
        "List the bundled crystal structures with their usual zone axes and a description.",
        "  napari-pinned materials",
    )
    p.set_defaults(func=_cmd_materials)


def _add_simulate_parser(sub) -> None:
    p = _subparser(
        sub,
        "simulate",
        "simulate a HAADF-STEM image from a crystal structure",
        "Simulate a clean HAADF-STEM image of a crystal along a zone axis (docs/physics.md).",
        "  napari-pinned simulate --material Si --zone 1 1 0 --size 512 -o si.tif\n"
        "  napari-pinned simulate --cif mine.cif --zone 0 0 1 --columns cols.csv -o mine.tif",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--material", default="SrTiO3", help="bundled material (see 'materials')")
    src.add_argument("--cif", type=Path, help="a CIF file instead of a bundled material")
    p.add_argument(
        "--zone",
        nargs="+",
        type=int,
        metavar="I",
        help="zone axis, 3 or 4 indices (e.g. 1 1 0 or 1 1 -2 0); default: the "
        "material's usual one",
    )
    p.add_argument("--size", type=_positive_int, default=512, help="image edge in pixels")
    p.add_argument("--pixel-size", type=_positive, default=0.1, help="Å per pixel")
    p.add_argument("--probe-fwhm", type=_positive, help="use a Gaussian probe of this FWHM (Å)")
    p.add_argument("--voltage", type=_positive, default=200.0, help="kV")
    p.add_argument("--convergence", type=_positive, default=22.0, help="semi-angle, mrad")
    p.add_argument("--defocus", type=_finite, default=0.0, help="Å")
    p.add_argument("--cs", type=_finite, default=0.0, help="spherical aberration, mm")
    p.add_argument("--source-size", type=_non_negative, default=0.3, help="Å FWHM")
    p.add_argument("--thickness", type=_positive, default=200.0, help="Å")
    p.add_argument("--rotation", type=_finite, default=0.0, help="degrees")
    p.add_argument("--vacancies", type=_fraction, default=0.0, help="column vacancy fraction")
    p.add_argument("--seed", type=_seed, default=0, help="random seed")
    p.add_argument("--columns", type=Path, help="also write ground-truth columns as CSV")
    p.add_argument("-o", "--output", type=Path, required=True, help="output TIFF")
    _add_overwrite(p)
    p.set_defaults(func=_cmd_simulate)


def _add_noise_parser(sub) -> None:
    p = _subparser(
        sub,
        "noise",
        "add Composite Degradation Noise (paper Table 1) or detector dose noise",
        "Degrade a clean image: CDN of the paper's Table 1 (levels 0–5, fractional levels\n"
        "interpolate), or with --model dose shot and read noise at a given electron dose.",
        "  napari-pinned noise si.tif --level 3 --seed 1 -o si_L3.tif\n"
        "  napari-pinned noise si.tif --model dose --dose 5000 --read-noise 0.5 -o si_dose.tif",
    )
    p.add_argument("input", type=Path, help="clean image or stack (TIFF or a microscope file)")
    p.add_argument("--level", type=_level, default=3.0, help="CDN level 0–5")
    p.add_argument(
        "--gaussian-std", type=_non_negative, help="override the Gaussian std (8-bit units)"
    )
    p.add_argument("--static-fraction", type=_fraction, help="override the replaced-pixel fraction")
    p.add_argument("--speckle-variance", type=_non_negative, help="override the speckle variance")
    p.add_argument("--no-clip", action="store_true", help="do not clip to the data range")
    p.add_argument("--model", choices=["cdn", "dose"], default="cdn", help="noise model")
    p.add_argument("--dose", type=_positive, help="dose model: electrons per Å² per frame")
    p.add_argument("--pixel-size", type=_positive, help="dose model: Å/px (default: from the file)")
    p.add_argument(
        "--collection", type=_fraction, default=1.0, help="dose model: detector collection 0–1"
    )
    p.add_argument(
        "--read-noise", type=_non_negative, default=0.0, help="dose model: read noise, e⁻"
    )
    p.add_argument(
        "--jitter", type=_non_negative, default=0.0, help="dose model: scan-line jitter, px"
    )
    p.add_argument(
        "--drift",
        nargs=2,
        type=_finite,
        default=(0.0, 0.0),
        metavar=("DY", "DX"),
        help="dose model: drift in px per frame",
    )
    p.add_argument("--seed", type=_seed, default=0, help="random seed")
    p.add_argument("-o", "--output", type=Path, required=True, help="output TIFF (float32)")
    _add_overwrite(p)
    p.set_defaults(func=_cmd_noise)


def _add_metrics_parser(sub) -> None:
    p = _subparser(
        sub,
        "metrics",
        "PSNR, SSIM, FSC and EPI against a reference",
        "Score images against a clean reference (docs/metrics.md).  A stack is scored frame\n"
        "by frame (against a stack of the same shape, or every frame against a 2D reference)\n"
        "and the mean is printed.",
        "  napari-pinned metrics --reference si.tif si_L3.tif si_L3_denoised.tif",
    )
    p.add_argument("images", nargs="+", type=Path, help="images or stacks to score")
    p.add_argument("--reference", type=Path, required=True, help="clean reference image or stack")
    p.set_defaults(func=_cmd_metrics)


def _add_train_parser(sub) -> None:
    # The core's defaults, from its torch-free settings module (not repeated here).
    from napari_pinned.settings import TrainConfig

    defaults = TrainConfig()
    p = _subparser(
        sub,
        "train",
        "train a PINNED model",
        "Train a PINNED model and write one model file (docs/model.md).  Without --noisy,\n"
        "noise is drawn afresh for every patch.  Ctrl-C or SIGTERM stops after the step in\n"
        "progress and saves the best model so far (exit status 130 / 143).  The defaults\n"
        "are those of the shipped models (U-Net, width 8, depth 3): 2000 steps take about\n"
        "3 minutes on 2 CPU cores.",
        "  napari-pinned train --materials InN graphene ZrO2 AlGaN NaCN --steps 2000 -o model.pt\n"
        "  napari-pinned train --init default --clean sum1.tif sum2.tif --steps 500 -o mine.pt\n"
        "  napari-pinned train --blind-spot --noisy scan.dm4 --init default -o scan-model.pt",
    )
    p.add_argument("--clean", nargs="+", type=Path, help="clean training images")
    p.add_argument(
        "--noisy",
        nargs="+",
        type=Path,
        help="noisy images paired with --clean (Noise2Noise: a second noisy recording as "
        "--clean), or the only data with --blind-spot",
    )
    p.add_argument("--materials", nargs="+", help="also train on simulated bundled materials")
    p.add_argument("--sim-size", type=_positive_int, default=256, help="simulated image edge (px)")
    p.add_argument("--pixel-size", type=_positive, default=0.1, help="simulated Å/px")
    _add_train_model_options(p)
    _add_train_schedule_options(p, defaults)
    _add_train_noise_options(p, defaults)
    _add_train_loss_options(p)
    p.add_argument(
        "--init", help="fine-tune from a model: a shipped one ('default', 'cdn') or a file"
    )
    _add_device(p)
    p.add_argument("--threads", type=_positive_int, help="CPU threads for torch (default: torch's)")
    p.add_argument("--seed", type=_seed, default=0, help="random seed")
    p.add_argument("-o", "--output", type=Path, required=True, help="model file to write")
    _add_overwrite(p)
    p.set_defaults(func=_cmd_train)


def _add_train_model_options(p: argparse.ArgumentParser) -> None:
    """``train`` options on the network: architecture, width and depth."""
    p.add_argument(
        "--architecture",
        choices=["paper", "unet", "tiny"],
        help=f"paper: no skips (as published); unet: skips + residual; tiny: tests "
        f"(default: {TRAIN_ARCHITECTURE})",
    )
    p.add_argument(
        "--width",
        type=_positive_int,
        help=f"base channel count (default: {TRAIN_WIDTH} for unet, the preset's otherwise)",
    )
    p.add_argument(
        "--depth",
        type=_positive_int,
        help=f"number of down-samplings (default: {TRAIN_DEPTH} for unet, the preset's otherwise)",
    )


def _add_train_schedule_options(p: argparse.ArgumentParser, defaults: Any) -> None:
    """``train`` options on the optimisation, defaulting to ``defaults`` (the core's config)."""
    p.add_argument("--steps", type=_positive_int, default=defaults.steps, help="optimiser steps")
    p.add_argument(
        "--batch-size", type=_positive_int, default=defaults.batch_size, help="patches per step"
    )
    p.add_argument(
        "--patch-size", type=_positive_int, default=defaults.patch_size, help="patch edge, px"
    )
    p.add_argument(
        "--lr", type=_positive, default=defaults.learning_rate, help="peak learning rate"
    )


def _add_train_noise_options(p: argparse.ArgumentParser, defaults: Any) -> None:
    """``train`` options on the synthetic noise (CDN levels, dose) or self-supervision."""
    p.add_argument(
        "--levels",
        nargs=2,
        type=_level,
        default=defaults.noise_levels,
        metavar=("LOW", "HIGH"),
        help="CDN level range for synthetic noise",
    )
    p.add_argument(
        "--noise",
        choices=["cdn", "dose", "mix"],
        default=defaults.noise_model,
        help="synthetic noise: the paper's CDN, the dose model, or a mix",
    )
    p.add_argument(
        "--dose-counts",
        nargs=2,
        type=_positive,
        default=defaults.dose_counts,
        metavar=("LOW", "HIGH"),
        help="dose model: detected e⁻ per pixel at full intensity",
    )
    p.add_argument(
        "--blind-spot",
        action="store_true",
        help="self-supervised: learn from the --noisy images alone, no clean target",
    )


def _add_train_loss_options(p: argparse.ArgumentParser) -> None:
    """``train`` options on the physics-informed loss terms' weights."""
    p.add_argument("--lambda-tv", type=_non_negative, help="weight of total variation")
    p.add_argument("--lambda-sf", type=_non_negative, help="weight of spectral fidelity")
    p.add_argument("--lambda-b", type=_non_negative, help="weight of the brightness term")
    p.add_argument("--lambda-c", type=_non_negative, help="weight of the contrast term")


def _report_noise(path: Path, report: Any) -> None:
    """One line with the noise the model was told about (noise-aware models)."""
    estimates = [] if report is None else [e for e in report.noise if e is not None]
    if estimates:
        which = "" if len(estimates) == 1 else f" (frame 0 of {len(estimates)})"
        print(f"{path}: noise{which}: {estimates[0].describe()}")
    if report is not None and report.repaired:
        print(f"{path}: {report.repaired} hot/dead pixel(s) repaired")


def _report_faithfulness(
    path: Path, image: np.ndarray, output: np.ndarray, pixel_size: float | None
) -> None:
    """The reference-free faithfulness readout, per frame, with its warnings."""
    from napari_pinned.quality.faithfulness import faithfulness

    frames = [(image, output)] if np.ndim(image) == 2 else list(zip(image, output, strict=True))
    for index, (source, result) in enumerate(frames):
        check = faithfulness(source, result, pixel_size=pixel_size)
        where = "" if len(frames) == 1 else f" frame {index}"
        print(f"{path}{where}: {check.summary()}")
        for warning in check.warnings:
            print(f"  warning: {warning}")


def _add_denoise_parser(sub) -> None:
    p = _subparser(
        sub,
        "denoise",
        "denoise images or stacks (TIFF, .dm3/.dm4/.emd/.ser/.mrc)",
        "Denoise images or stacks with a shipped or trained model, frame by frame and in\n"
        "exact tiles (any tile size gives the whole-image result).  Reads TIFF, zarr and\n"
        "OME-Zarr (level 0) and, with the [io] extra, .dm3/.dm4/.emd/.ser/.mrc files; writes\n"
        "float32 TIFF or zarr with the pixel size.  Memory does not grow with the number of\n"
        "frames.  A zarr output is written under a temporary name; --resume continues an\n"
        "interrupted one.  --workers N or --scheduler tcp://host:port run on dask.distributed.\n"
        "In a batch, a bad file is reported at the end and the others are denoised (exit\n"
        "status 2 if any failed).",
        "  napari-pinned denoise noisy.tif -o denoised.tif\n"
        "  napari-pinned denoise a.tif b.dm4 --output-dir out/ --model mine.pt\n"
        "  napari-pinned denoise noisy.tif -o denoised.tif --reference clean.tif\n"
        "  napari-pinned denoise scan.dm4 -o out.tif --strength 0.7 --check\n"
        "  napari-pinned denoise series.zarr -o series_denoised.zarr --resume\n"
        "  napari-pinned denoise series.tif -o series.zarr --workers 2\n"
        "  napari-pinned denoise big.zarr -o out.zarr --scheduler tcp://head-node:8786",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="noisy images or stacks (files, .zarr)")
    p.add_argument("-o", "--output", type=Path, help="output .tif or .zarr (one input)")
    p.add_argument(
        "--output-dir", type=Path, help="folder for <input>_denoised.tif (several inputs)"
    )
    p.add_argument(
        "--model",
        default="default",
        help="a shipped model ('default', 'cdn'), a model file, an .onnx file, or a "
        "BioImage Model Zoo package (.zip)",
    )
    p.add_argument("--reference", type=Path, help="clean reference: print metrics")
    _add_denoise_output_options(p)
    _add_denoise_tiling_options(p)
    _add_denoise_runtime_options(p)
    _add_device(p)
    _add_overwrite(p)
    p.set_defaults(func=_cmd_denoise)


def _add_denoise_output_options(p: argparse.ArgumentParser) -> None:
    """``denoise`` options on what the output holds: strength, lattice, checks, format."""
    from napari_pinned.settings import ORIENTATION_COUNTS

    p.add_argument(
        "--strength",
        type=_strength,
        default=1.0,
        help="noise-aware models: factor on the estimated noise level (below 1 denoises "
        "less, above 1 more; 0 only repairs hot and dead pixels)",
    )
    p.add_argument(
        "--no-keep-lattice",
        action="store_true",
        help="give the network's output as it is, without giving back what it took from the "
        "input's strong lattice reflections",
    )
    p.add_argument(
        "--orientations",
        type=int,
        choices=ORIENTATION_COUNTS,
        default=1,
        help="average the network over this many turned and mirrored copies of each image "
        "(a better estimate at that many times the network's time)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="print the faithfulness readout (kept and invented lattice reflections; "
        "no reference needed) for every output",
    )
    p.add_argument(
        "--output-format",
        choices=["tif", "zarr"],
        help="with --output-dir: write <input>_denoised.tif or .zarr (default: zarr for "
        "zarr inputs, else TIFF)",
    )


def _add_denoise_tiling_options(p: argparse.ArgumentParser) -> None:
    """``denoise`` options on how frames are cut into tiles, and resuming a zarr output."""
    p.add_argument(
        "--tile",
        type=_positive_int,
        help=f"output pixels per tile edge (default {DEFAULT_TILE}: frames up to that "
        "size go whole); any tile gives the same result, bigger ones less halo work and "
        "more memory",
    )
    p.add_argument(
        "--overlap",
        type=_non_negative_int,
        help="halo (px) around every tile; default and minimum: the model's (half its "
        "receptive field, 160 px for the default model)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the zarr output of an interrupted run (frames it finished are kept)",
    )


def _add_denoise_runtime_options(p: argparse.ArgumentParser) -> None:
    """``denoise`` options on where and with what the network runs (dask, ONNX, packages)."""
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on a dask.distributed cluster, e.g. tcp://head-node:8786 (inputs and "
        "outputs on a file system every worker sees); needs the [dask] extra",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        help="run on a local dask cluster of this many worker processes (one core each)",
    )
    p.add_argument(
        "--backend",
        choices=["auto", "torch", "onnx"],
        default="auto",
        help="what runs the network: torch, or ONNX Runtime (the [onnx] extra); auto: "
        "ONNX Runtime for .onnx models, torch otherwise",
    )
    p.add_argument(
        "--trust-package",
        action="store_true",
        help="run a BioImage Model Zoo package from another tool whose weights are code "
        "(torchscript, pytorch_state_dict); napari-pinned's own packages and ONNX weights "
        "never need it",
    )


def _cmd_export(args: argparse.Namespace) -> int:
    import importlib.util

    _shipped_name_or_file(args.model, "MODEL")
    out = Path(args.output)
    fmt = args.format or ("onnx" if out.suffix.lower() == ".onnx" else "bioimageio")
    if fmt == "bioimageio" and out.suffix.lower() != ".zip":
        raise ValueError(f"{out}: a BioImage Model Zoo package is a .zip file")
    if fmt == "onnx" and out.suffix.lower() != ".onnx":
        raise ValueError(f"{out}: an ONNX model is a .onnx file")
    needed = ("bioimageio.spec",) if fmt == "bioimageio" else ("onnx", "onnxruntime")
    extra = "bioimageio" if fmt == "bioimageio" else "onnx"
    for module in needed:
        if importlib.util.find_spec(module) is None:
            raise ValueError(
                f"exporting to {fmt} needs {module}, which is not installed "
                f"(pip install 'napari-pinned[{extra}]')"
            )
    model_file = [Path(args.model)] if Path(args.model).is_file() else []
    check_outputs([out], model_file, overwrite=args.overwrite)
    if fmt == "onnx":
        from napari_pinned.nn.runners import export_onnx

        path = export_onnx(args.model, out)
        print(f"{args.model} → {path} (ONNX; run it with napari-pinned denoise --model {path})")
        return EXIT_OK
    from napari_pinned.nn.bmz import export_bioimageio

    path = export_bioimageio(
        args.model,
        out,
        name=args.name,
        description=args.description,
        authors=args.author,
        license=args.license,
        pixel_size=args.pixel_size,
        strength=args.strength,
        torchscript=not args.no_torchscript,
    )
    print(
        f"{args.model} → {path} (BioImage Model Zoo package; check it with "
        f"`bioimageio test {path}`)"
    )
    return EXIT_OK


def _add_export_parser(sub) -> None:
    p = _subparser(
        sub,
        "export",
        "write a model as a BioImage Model Zoo package or an ONNX file",
        "Export a model to share it.  --format bioimageio (the default, for .zip) writes a\n"
        "BioImage Model Zoo package (model RDF 0.5: pytorch_state_dict and torchscript\n"
        "weights, napari-pinned's normalisation and noise map inside the model, test\n"
        "tensors from a simulated BaTiO3 image, cover, documentation, citation) that\n"
        "bioimageio.core, deepImageJ and napari-pinned run; needs the [bioimageio] extra.\n"
        "--format onnx (the default for .onnx) writes the network for napari-pinned's ONNX\n"
        "Runtime backend (denoise --model model.onnx), no torch needed to run it; needs\n"
        "the [onnx] extra.",
        "  napari-pinned export default -o pinned-default.zip\n"
        "  napari-pinned export mine.pt -o mine.zip --author 'A. Microscopist' --pixel-size 0.08\n"
        "  napari-pinned export default --format onnx -o default.onnx",
    )
    p.add_argument("model", help="a shipped model ('default', 'cdn') or a model file")
    p.add_argument("-o", "--output", type=Path, required=True, help="package .zip or .onnx file")
    p.add_argument(
        "--format",
        choices=["bioimageio", "onnx"],
        help="bioimageio (a BMZ package) or onnx (default: from the output's suffix)",
    )
    p.add_argument("--name", help="package name (default: from the model)")
    p.add_argument("--description", help="one-paragraph description")
    p.add_argument("--author", action="append", help="an author's name (repeat for several)")
    p.add_argument("--license", default="BSD-3-Clause", help="SPDX licence of the weights")
    p.add_argument(
        "--pixel-size",
        type=_positive,
        help="pixel size (Å) the model is for (default: the model's, or 0.1 Å for the "
        "shipped models, trained on a range around it)",
    )
    p.add_argument(
        "--strength",
        type=_strength,
        default=1.0,
        help="noise-aware models: the denoising strength built into the package",
    )
    p.add_argument(
        "--no-torchscript", action="store_true", help="leave out the torchscript weights"
    )
    _add_overwrite(p)
    p.set_defaults(func=_cmd_export)


def _cmd_models(args: argparse.Namespace) -> int:
    from napari_pinned.nn.model_files import SHIPPED_MODELS

    for model in SHIPPED_MODELS:
        path = model.path
        if path.is_file():
            where = f"{path.name}, {path.stat().st_size / 1e6:.1f} MB"
        else:
            where = "missing: reinstall napari-pinned"
        print(f"{model.name:<8} {model.purpose} ({where})")
    return EXIT_OK


def _add_models_parser(sub) -> None:
    p = _subparser(
        sub,
        "models",
        "list the shipped models and what each is for",
        "List the models that come with napari-pinned, one line each: name, purpose, file.\n"
        "Pass a name to --model of denoise, train --init or adapt --model.",
        "  napari-pinned models",
    )
    p.set_defaults(func=_cmd_models)


def _cmd_adapt(args: argparse.Namespace) -> int:
    _check_inputs_exist(args.inputs)
    _shipped_name_or_file(args.model, "--model")
    out = Path(args.output)
    model_file = [Path(args.model)] if Path(args.model).is_file() else []
    check_outputs([out], [*args.inputs, *model_file], overwrite=args.overwrite)
    check_writable_folder(out.parent if str(out.parent) else Path("."))
    for path in args.inputs:
        shape = _input_shape(path)
        if len(shape) not in (2, 3):
            raise ValueError(f"{path}: holds a {len(shape)}-D array; expected an image or a stack")

    from napari_pinned._util.intensity import check_image
    from napari_pinned.io.images import read_image

    images = []
    for path in args.inputs:
        image = read_image(path)
        with _about(path):
            check_image(image, name="the image")
        images.append(image)

    import torch

    from napari_pinned.nn.model_files import save_model
    from napari_pinned.settings import AdaptSettings
    from napari_pinned.training.adapt import adapt

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    run = adapt(
        images,
        args.model,
        settings=AdaptSettings(steps=args.steps),
        seed=args.seed,
        device=args.device,
    )
    print(
        f"adapting {args.model!r} to {len(images)} image(s) by blind-spot training "
        f"({args.steps} steps, device {run.device})",
        file=sys.stderr,
    )
    with _training_to_end(run, args.steps, "adapt", "best", "adaptation") as (bundle, received):
        bundle.metadata["name"] = f"adapted to {', '.join(p.name for p in args.inputs)}"
        save_model(bundle, out)
    best = bundle.metadata["best_step"]
    kept = (
        "the starting model scored best on the held-out strip, so it was kept unchanged"
        if best == 0
        else f"best hidden-pixel score {bundle.metadata['val_psnr']:.2f} dB at step {best}"
    )
    if received:
        name = signal.Signals(received[0]).name
        print(
            f"napari-pinned: interrupted by {name} after {run.step} steps; saved the best "
            f"model so far to {out} ({kept})",
            file=sys.stderr,
        )
        return _exit_status(received[0])
    print(f"saved {out}: {run.step} steps in {_duration(bundle.metadata['elapsed_s'])}; {kept}")
    return EXIT_OK


def _add_adapt_parser(sub) -> None:
    p = _subparser(
        sub,
        "adapt",
        "fine-tune a noise-aware model on your own noisy image(s), no clean image needed",
        "Adapt the default model (or another noise-aware model) to your detector, scan and\n"
        "specimen by blind-spot training on the noisy images themselves.  The starting model\n"
        "competes too: the saved model is never worse on a held-out strip of the data.\n"
        "Ctrl-C or SIGTERM stops after the current step and saves the best model so far.",
        "  napari-pinned adapt scan.dm4 -o mine.pt\n"
        "  napari-pinned denoise scan.dm4 -o denoised.tif --model mine.pt",
    )
    from napari_pinned.settings import AdaptSettings

    p.add_argument("inputs", nargs="+", type=Path, help="noisy images or stacks")
    p.add_argument("-o", "--output", type=Path, required=True, help="model file to write")
    p.add_argument("--model", default="default", help="model to start from")
    p.add_argument(
        "--steps", type=_positive_int, default=AdaptSettings().steps, help="training steps"
    )
    p.add_argument("--threads", type=_positive_int, help="CPU threads for torch")
    p.add_argument("--seed", type=_seed, default=0, help="random seed")
    _add_device(p)
    _add_overwrite(p)
    p.set_defaults(func=_cmd_adapt)


def _add_align_parser(sub) -> None:
    p = _subparser(
        sub,
        "align",
        "register a frame series; write its drift-corrected mean",
        "Register a frame series (drift correction) and write its drift-corrected mean\n"
        "(docs/real-data.md).",
        "  napari-pinned align series.tif -o mean.tif --shifts shifts.csv\n"
        "  napari-pinned align series.emd -o mean.tif --halves even.tif odd.tif",
    )
    p.add_argument("input", type=Path, help="frame series (a TIFF stack or a microscope file)")
    p.add_argument("-o", "--output", type=Path, required=True, help="drift-corrected mean (TIFF)")
    p.add_argument("--aligned", type=Path, help="also write the aligned stack")
    p.add_argument(
        "--halves",
        nargs=2,
        type=Path,
        metavar=("EVEN", "ODD"),
        help="also write the means of the even and odd frames (Noise2Noise pairs)",
    )
    p.add_argument("--shifts", type=Path, help="also write the shifts as CSV (frame, dy, dx)")
    p.add_argument(
        "--reference",
        default="mean",
        choices=["mean", "previous", "first"],
        help="match frames against the series mean, the previous or the first frame",
    )
    p.add_argument("--upsample", type=_positive_int, default=20, help="1/upsample px precision")
    p.add_argument("--max-shift", type=_positive, help="largest shift one match may find (px)")
    _add_overwrite(p)
    p.set_defaults(func=_cmd_align)


def _add_demo_parser(sub) -> None:
    p = _subparser(
        sub,
        "demo",
        "the whole path headlessly: simulate, noise, train, denoise, score",
        "Simulate five training materials, train a small model on CDN noise, denoise a\n"
        f"material it never saw at CDN levels 1–5 and compare with the noisy input, a flat\n"
        f"image at the true mean, a median filter and the shipped '{DEMO_SHIPPED}' model.\n"
        "Writes the images, summary.png, metrics.csv, metrics.json and the model.  About 2\n"
        "minutes on 2 CPU cores with the defaults.",
        "  napari-pinned demo --output-dir pinned-demo\n"
        "  napari-pinned demo --material SrTiO3 --steps 4000 --output-dir longer-demo",
    )
    p.add_argument("--output-dir", type=Path, default=Path("pinned-demo"), help="output folder")
    p.add_argument("--material", default="BaTiO3", help="held-out material to denoise")
    p.add_argument("--size", type=_positive_int, default=256, help="image edge, px")
    p.add_argument("--steps", type=_positive_int, default=1500, help="training steps")
    p.add_argument("--width", type=_positive_int, default=8, help="base channel count")
    _add_device(p)
    p.set_defaults(func=_cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests).

    One ``_add_<command>_parser`` function per subcommand; a new command adds one.
    """
    parser = _Parser(
        prog="napari-pinned",
        description="Physics-informed denoising of atomic-resolution STEM images (PINNED).\n\n"
        "exit status: 0 done, 2 a mistake (one line says what), 130/143 interrupted\n"
        "(train saves the best model so far first).",
        epilog="Each command has --help with examples; full reference: docs/cli.md.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_materials_parser,
        _add_simulate_parser,
        _add_noise_parser,
        _add_metrics_parser,
        _add_train_parser,
        _add_denoise_parser,
        _add_models_parser,
        _add_export_parser,
        _add_adapt_parser,
        _add_align_parser,
        _add_demo_parser,
    ):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-pinned`` console script."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        with _signals_raise():
            parser = build_parser()
            try:
                args = parser.parse_args(argv)
            except SystemExit as exc:  # --help, --version, or a usage error already printed
                return exc.code if isinstance(exc.code, int) else EXIT_USAGE
            debug = args.debug
            return int(args.func(args) or 0)
    except (KeyboardInterrupt, Interrupted) as exc:
        if debug:
            raise
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        print(
            f"\nnapari-pinned: interrupted by {name}; no file was left half-written",
            file=sys.stderr,
        )
        return _exit_status(signum)
    except (MemoryError, RuntimeError) as exc:
        message = out_of_memory_message(exc)
        if message is None or debug:
            raise
        print(f"napari-pinned: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, OSError, FloatingPointError) as exc:
        if debug:
            raise
        print(f"napari-pinned: error: {first_line(exc)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
