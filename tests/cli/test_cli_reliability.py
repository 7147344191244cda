"""The command line under faults: signals, batches with bad files, divergence, partial
writes, extreme values; and what a new user meets first (help, defaults, progress)."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from napari_pinned.cli.entry import build_parser, main
from napari_pinned.cli.progress import ProgressBar
from napari_pinned.io.images import read_image
from napari_pinned.io.tiff import write_tiff

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def lattice(tmp_path) -> Path:
    y, x = np.mgrid[0:96, 0:96]
    image = (np.cos(x / 2.0) * np.cos(y / 2.0) * 100 + 120).astype(np.float32)
    return write_tiff(tmp_path / "clean.tif", image, pixel_size=0.1)


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    from napari_pinned.nn.model_files import save_model
    from napari_pinned.nn.network import ModelBundle, build_model
    from napari_pinned.settings import ModelConfig

    config = ModelConfig.preset("tiny")
    bundle = ModelBundle(model=build_model(config), config=config, metadata={"name": "tiny"})
    return save_model(bundle, tmp_path / "tiny.pt")


def _no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.rglob(".*.tmp")]


TINY_TRAIN = ["--architecture", "tiny", "--batch-size", "2", "--patch-size", "32"]


# -- signals -------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_training_saves_the_best_model_and_exits_128_plus_it(
    lattice, tmp_path, signum, status
):
    from napari_pinned.nn.resolve import load_model

    model = tmp_path / "m.pt"
    argv = ["train", "--clean", str(lattice), *TINY_TRAIN, "--steps", "100000", "--device", "cpu"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "napari_pinned.cli", *argv, "-o", str(model)],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    try:
        lines = []
        for line in proc.stderr:  # the first progress line: training has started
            lines.append(line)
            if line.startswith("train ["):
                break
        proc.send_signal(signum)
        _, rest = proc.communicate()
        lines.extend(rest.splitlines(keepends=True))
    finally:
        watchdog.cancel()
    assert proc.returncode == status, "".join(lines)
    name = signal.Signals(signum).name
    last = lines[-1]
    assert last.startswith(f"napari-pinned: interrupted by {name}: stopped after "), last
    assert "Traceback" not in "".join(lines)
    bundle = load_model(model)
    assert 1 <= bundle.metadata["steps"] < 100000
    assert _no_temporaries(tmp_path)


def test_ctrl_c_before_training_starts_is_one_line_and_130(lattice, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # Where a Ctrl-C in the first seconds lands: imports and data loading.
    monkeypatch.setattr("napari_pinned.cli.train._load_training_images", interrupted)
    argv = ["train", "--clean", str(lattice), *TINY_TRAIN, "-o", str(tmp_path / "m.pt")]
    assert main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["napari-pinned: interrupted by SIGINT; no file was left half-written"]
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_writing_leaves_no_output_and_no_temporary(
    lattice, tiny_model, tmp_path, capsys, monkeypatch, sig, code
):
    import tifffile

    real = tifffile.imwrite
    before = signal.getsignal(sig)

    def killed_half_way(handle, data, **kwargs):
        handle.write(b"II*\x00 part of a TIFF")
        os.kill(os.getpid(), sig)  # handled at once: raises Interrupted here
        real(handle, data, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", killed_half_way)
    out = tmp_path / "out.tif"
    argv = ["denoise", str(lattice), "--model", str(tiny_model), "-o", str(out), "--device", "cpu"]
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    name = signal.Signals(sig).name
    assert err[-1] == f"napari-pinned: interrupted by {name}; no file was left half-written"
    assert not out.exists() and _no_temporaries(tmp_path)
    assert signal.getsignal(sig) is before  # restored for the caller


# -- batches, validation order ---------------------------------------------------------------
def test_a_batch_denoises_the_good_files_and_names_the_bad_ones(
    lattice, tiny_model, tmp_path, capsys
):
    bad = tmp_path / "broken.tif"
    bad.write_text("not a TIFF")
    with_nan = read_image(lattice)
    with_nan[0, 0] = np.nan
    nan = write_tiff(tmp_path / "nan.tif", with_nan)
    second = write_tiff(tmp_path / "second.tif", read_image(lattice) + 1)
    out = tmp_path / "out"
    out.mkdir()
    inputs = [lattice, bad, tmp_path / "missing.tif", nan, second]
    argv = ["denoise", *map(str, inputs), "--model", str(tiny_model), "--output-dir", str(out)]
    assert main([*argv, "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["clean_denoised.tif", "second_denoised.tif"]
    errors = [ln for ln in captured.err.splitlines() if ln.startswith("napari-pinned: error:")]
    assert len(errors) == 4
    assert "broken.tif: not a readable TIFF" in errors[0]
    assert "missing.tif: no such file" in errors[1]
    assert "nan.tif: " in errors[2] and "NaN" in errors[2]
    assert errors[3] == "napari-pinned: error: 3 of 5 files failed (listed above); 2 denoised"


def test_a_reference_problem_is_found_before_anything_is_written(lattice, tiny_model, tmp_path):
    small = write_tiff(tmp_path / "small.tif", np.zeros((50, 50), np.float32))
    out = tmp_path / "out.tif"
    argv = ["denoise", str(lattice), "--model", str(tiny_model), "--reference", str(small)]
    assert main([*argv, "-o", str(out)]) == 2
    assert not out.exists()  # the old command wrote the output, then failed


def test_metrics_score_a_stack_against_one_2d_reference(lattice, tmp_path, capsys):
    stack = write_tiff(tmp_path / "stack.tif", np.stack([read_image(lattice)] * 3))
    assert main(["metrics", "--reference", str(lattice), str(stack)]) == 0
    assert "stack.tif" in capsys.readouterr().out


def test_overwrite_replaces_an_input_only_when_asked(lattice, capsys):
    before = lattice.read_bytes()
    assert main(["noise", str(lattice), "-o", str(lattice)]) == 2
    assert lattice.read_bytes() == before
    assert main(["noise", str(lattice), "-o", str(lattice), "--overwrite"]) == 0
    assert lattice.read_bytes() != before


def test_a_failing_csv_leaves_neither_output(tmp_path, monkeypatch, capsys):
    tif, csv = tmp_path / "si.tif", tmp_path / "cols.csv"
    tif.write_bytes(b"previous run")

    def cut(handle, *args, **kwargs):
        handle.write("row,col,weight\n1.0,")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("napari_pinned.io.images.np.savetxt", cut)
    argv = ["simulate", "--material", "Si", "--size", "64", "-o", str(tif), "--columns", str(csv)]
    assert main(argv) == 2
    # One line naming the file (was "[Errno 28] No space left on device", no file named).
    assert capsys.readouterr().err == f"napari-pinned: error: {csv}: no space left on device\n"
    assert tif.read_bytes() == b"previous run" and not csv.exists()
    assert _no_temporaries(tmp_path)


def test_a_huge_learning_rate_is_reported_as_divergence(lattice, tmp_path, capsys):
    model = tmp_path / "m.pt"
    argv = ["train", "--clean", str(lattice), *TINY_TRAIN, "--steps", "3", "--lr", "1e9"]
    assert main([*argv, "--device", "cpu", "-o", str(model)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("napari-pinned: error: training diverged at step "), last
    assert "lower the learning rate" in last and not model.exists()


@pytest.mark.parametrize("value", [1e17, -3e29])
def test_constant_images_of_huge_values_give_finite_outputs(tmp_path, tiny_model, value, capsys):
    # ZeroDivisionError before: lo + 1 == lo once the values pass 2**53.
    flat = write_tiff(tmp_path / "flat.tif", np.full((96, 96), value, np.float32))
    noisy, denoised = tmp_path / "noisy.tif", tmp_path / "denoised.tif"
    assert main(["noise", str(flat), "--level", "3", "-o", str(noisy)]) == 0
    argv = ["denoise", str(flat), "--model", str(tiny_model), "-o", str(denoised)]
    assert main([*argv, "--device", "cpu"]) == 0
    for path in (noisy, denoised):
        assert np.isfinite(read_image(path)).all()
    argv = ["train", "--clean", str(flat), *TINY_TRAIN, "--steps", "2", "--device", "cpu"]
    assert main([*argv, "-o", str(tmp_path / "m.pt")]) == 0


# -- what a new user meets ---------------------------------------------------------------------
def test_help_has_a_description_examples_and_defaults_for_every_command(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) >= {"materials", "simulate", "noise", "metrics", "train", "denoise"}
    for name, sub in commands.items():
        text = sub.format_help()
        assert "examples:" in text and f"napari-pinned {name}" in text, name
        if name not in ("materials", "metrics", "models"):  # no option with a default
            assert "(default: " in text, name
    assert "(default: 2000)" in commands["train"].format_help()
    assert "(default: 8 for unet" in commands["train"].format_help()
    assert ".dm4" in commands["denoise"].format_help()
    assert "130/143" in parser.format_help()
    assert main(["--version"]) == 0
    from napari_pinned import __version__

    assert capsys.readouterr().out.strip() == f"napari-pinned {__version__}"


def test_train_defaults_are_the_shipped_models_and_the_core_s():
    import torch

    from napari_pinned.cli.train import _model_config, _settings
    from napari_pinned.nn.model_files import shipped_model
    from napari_pinned.settings import ModelConfig, TrainConfig

    # One source: the CLI trains the default ModelConfig, which is the shipped models'.
    shipped = torch.load(shipped_model("cdn").path, weights_only=True)["config"]
    default = ModelConfig()
    assert (shipped["architecture"], shipped["width"], shipped["depth"]) == (
        default.architecture,
        default.width,
        default.depth,
    )
    assert _model_config(build_parser().parse_args(["train", "-o", "m.pt"])) == default
    args = build_parser().parse_args(["train", "-o", "m.pt"])
    core = TrainConfig()
    assert (args.steps, args.batch_size, _settings(args).patch_size, args.lr) == (
        core.steps,
        core.batch_size,
        core.patch_size,
        core.learning_rate,
    )
    assert args.patch_size is None  # a fine-tune takes its start model's (test_cli_train_stem)
    assert tuple(args.levels) == core.noise_levels and tuple(args.dose_counts) == core.dose_counts


class _Log:
    def __init__(self):
        self.text = ""

    def isatty(self) -> bool:
        return False

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        pass


def test_a_log_gets_a_progress_line_at_least_every_30_seconds():
    now = [0.0]
    log = _Log()
    bar = ProgressBar(10_000, "train", stream=log, clock=lambda: now[0])
    for step in range(1, 200):  # 2 % of the run, one step every 7 s
        now[0] += 7.0
        bar.update(step)
    lines = log.text.splitlines()
    # The first step (0 %), then one line per 30 s: 199 steps × 7 s = 1393 s.
    assert 1393 // 35 <= len(lines) - 1 <= 1393 // 28 + 1
    assert lines[-1].startswith("train [")


def test_running_out_of_memory_during_work_is_one_line(tmp_path, capsys, monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 74.5 GiB for an array with shape (100000, 100000)")

    # The module, not the package attribute of the same name (which is the function).
    module = importlib.import_module("napari_pinned.physics.simulate")
    monkeypatch.setattr(module, "simulate", no_memory)
    assert main(["simulate", "--size", "64", "-o", str(tmp_path / "x.tif")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "napari-pinned: error: out of memory (Unable to allocate 74.5 GiB for an array with "
        "shape (100000, 100000)); use a smaller size"
    ]
    assert list(tmp_path.iterdir()) == []


# -- full disks and interrupted runs: what is kept, what is said (issue 21) -----------------
@pytest.mark.slow
def test_a_full_disk_when_train_saves_keeps_the_model_elsewhere(
    lattice, tmp_path, capsys, monkeypatch
):
    import errno
    import tempfile

    import torch

    from napari_pinned.nn.resolve import load_model

    full, spare, here = tmp_path / "full", tmp_path / "tmp", tmp_path / "here"
    for folder in (full, spare, here):
        folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    monkeypatch.chdir(here)
    real = torch.save
    no_room = {full}

    def save(obj, f, *args, **kwargs):
        if Path(f.name).parent in no_room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    out = full / "m.pt"
    argv = ["train", "--clean", str(lattice), *TINY_TRAIN, "--steps", "2", "--device", "cpu"]
    assert main([*argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"napari-pinned: error: {out}: no space left on device; the trained model was "
        f"written to {spare / 'm.pt'} instead"
    )
    assert load_model(spare / "m.pt").metadata["steps"] == 2
    assert list(full.iterdir()) == [] and _no_temporaries(tmp_path)

    no_room.add(spare)  # the temporary folder full too: the current folder
    assert main([*argv, "-o", str(out)]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .endswith(f"written to {here / 'm.pt'} instead")
    )
    no_room.add(here)  # nowhere: one line that says so
    assert main([*argv, "-o", str(out)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"napari-pinned: error: {out}: no space left on device; ")
    assert "could not be written" in last and str(spare) in last and str(here) in last


@pytest.mark.parametrize("planned", [100000, 6], ids=["mid-run", "after the last step"])
def test_an_interrupted_train_says_how_far_it_got_and_how_long_it_took(
    lattice, tmp_path, capsys, monkeypatch, planned
):
    import re
    import time

    from napari_pinned.cli import training_job
    from napari_pinned.nn.resolve import load_model

    real = training_job.run_job

    def run_job(job, show):
        def shown(record):
            show(record)
            if record.step == 6:
                signal.raise_signal(signal.SIGINT)  # Ctrl-C: stop after this step

        return real(job, shown)

    monkeypatch.setattr(training_job, "run_job", run_job)
    model = tmp_path / "m.pt"
    argv = ["train", "--clean", str(lattice), *TINY_TRAIN, "--device", "cpu", "-o", str(model)]
    started = time.monotonic()
    assert main([*argv, "--steps", str(planned)]) == 130
    wall = time.monotonic() - started
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert load_model(model).metadata["steps"] == 6
    took = r"(?:(?P<s>\d+\.\d) s|(?P<m>\d+)m(?P<ms>\d\d)s)"
    assert "0m00s" not in last  # was "6 steps in 0m00s"
    if planned > 6:
        pattern = (
            r"napari-pinned: interrupted by SIGINT: stopped after 6 of 100000 steps "
            rf"\({took} of training\); saved the best model so far to {re.escape(str(model))}"
            r" \(best validation .* at step \d\)"
        )
    else:  # the run had finished: nothing was cut short
        pattern = (
            r"napari-pinned: SIGINT arrived after the last step; saved the finished "
            rf"model to {re.escape(str(model))} \(6 steps in {took}, best validation .*\)"
        )
    found = re.fullmatch(pattern, last)
    assert found is not None, last
    seconds = float(found["s"]) if found["s"] else 60 * int(found["m"]) + int(found["ms"])
    assert 0 < seconds <= wall + 0.5  # the time it took, rounded
