"""The command line: each subcommand on tiny data, and one-line errors for user mistakes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_pinned.cli.entry import main
from napari_pinned.io.images import read_image, read_pixel_size
from napari_pinned.io.tiff import write_tiff


def test_simulate_noise_metrics_chain(tmp_path, capsys):
    clean, noisy = tmp_path / "si.tif", tmp_path / "noisy.tif"
    cols = tmp_path / "cols.csv"
    assert (
        main(
            [
                "simulate",
                "--material",
                "Si",
                "--zone",
                "1",
                "1",
                "0",
                "--size",
                "96",
                "--pixel-size",
                "0.1",
                "-o",
                str(clean),
                "--columns",
                str(cols),
            ]
        )
        == 0
    )
    image = read_image(clean)
    assert image.shape == (96, 96) and image.dtype == np.float32
    assert read_pixel_size(clean) == pytest.approx(0.1)
    table = np.loadtxt(cols, delimiter=",", skiprows=1)
    assert table.shape[1] == 3 and len(table) > 10

    assert main(["noise", str(clean), "--level", "3", "--seed", "0", "-o", str(noisy)]) == 0
    assert not np.array_equal(read_image(noisy), image)

    capsys.readouterr()
    assert main(["metrics", "--reference", str(clean), str(noisy), str(clean)]) == 0
    out = capsys.readouterr().out
    assert "PSNR" in out and "noisy.tif" in out and "inf" in out


def test_train_then_denoise_with_reference(tmp_path, capsys):
    clean = tmp_path / "clean.tif"
    y, x = np.mgrid[0:96, 0:96]
    write_tiff(clean, (np.cos(x / 2.0) * np.cos(y / 2.0) * 100 + 120).astype(np.float32))
    model = tmp_path / "m.pt"
    assert (
        main(
            [
                "train",
                "--clean",
                str(clean),
                "--architecture",
                "tiny",
                "--steps",
                "4",
                "--batch-size",
                "2",
                "--patch-size",
                "32",
                "--device",
                "cpu",
                "-o",
                str(model),
            ]
        )
        == 0
    )
    assert model.is_file()
    assert "saved" in capsys.readouterr().out

    noisy = tmp_path / "noisy.tif"
    main(["noise", str(clean), "--level", "1", "-o", str(noisy)])
    outdir = tmp_path / "out"
    outdir.mkdir()
    capsys.readouterr()
    assert (
        main(
            [
                "denoise",
                str(noisy),
                "--model",
                str(model),
                "--output-dir",
                str(outdir),
                "--reference",
                str(clean),
                "--tile",
                "64",
                "--overlap",
                "80",  # the depth-3 model's minimum halo
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    result = read_image(outdir / "noisy_denoised.tif")
    assert result.shape == (96, 96) and result.dtype == np.float32
    assert "denoised" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["noise", "missing.tif", "-o", "x.tif"], "no such file"),
        (["simulate", "--material", "Unobtainium", "-o", "x.tif"], "Unobtainium"),
        (["simulate", "--zone", "0", "0", "0", "-o", "x.tif"], "zone"),
        (["denoise", "a.tif"], "exactly one of"),
        (["train", "-o", "m.pt"], "no training data"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("napari-pinned: error:") and message in err[0]


def test_corrupt_model_file_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04garbage")
    img = tmp_path / "i.tif"
    write_tiff(img, np.zeros((32, 32), np.float32))
    assert main(["denoise", str(img), "--model", str(bad), "-o", str(tmp_path / "o.tif")]) == 2
    err = capsys.readouterr().err
    assert "bad.pt" in err and "Traceback" not in err


def test_console_script_help_runs():
    out = subprocess.run(
        [sys.executable, "-m", "napari_pinned.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("simulate", "noise", "metrics", "train", "denoise", "demo", "materials"):
        assert command in out.stdout


def test_demo_runs_the_whole_path_on_tiny_settings(tmp_path, capsys):
    import json
    import struct

    out = tmp_path / "demo"
    args = ["demo", "--output-dir", str(out), "--size", "64", "--steps", "3", "--width", "4"]
    assert main([*args, "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    methods = (
        "noisy",
        "flat image (true mean)",
        "median 3×3",
        "PINNED (demo model)",
        "PINNED (cdn model)",
    )
    for level in range(1, 6):
        for kind in methods:
            assert f"L{level} {kind}" in table
        denoised = read_image(out / f"denoised_L{level}.tif")
        assert denoised.shape == (64, 64) and denoised.dtype == np.float32
        assert np.isfinite(denoised).all()
    assert (out / "reference.tif").is_file() and (out / "demo-model.pt").is_file()
    # summary.png: a PNG of 5 rows (levels) × 4 panels (clean, noisy, demo, cdn) of 64 px.
    png = (out / "summary.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (4 * 64 + 3 * 4, 5 * 64 + 4 * 4)
    lines = (out / "metrics.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "level,method,psnr,ssim,fsc,epi" and len(lines) == 1 + 5 * len(methods)
    assert lines[2].startswith("1,flat image (true mean),")
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["methods"] == list(methods) and summary["shipped_model"] == "cdn"
    flat = summary["levels"]["1"]["flat image (true mean)"]["psnr"]
    csv_flat = float(lines[2].split(",")[2])
    assert csv_flat == pytest.approx(flat, abs=1e-4)


class _Stream:
    """A text stream that says whether it is a terminal."""

    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        pass


def test_progress_bar_redraws_in_a_terminal_and_prints_deciles_in_a_log():
    from napari_pinned.cli.progress import ProgressBar

    log = _Stream(tty=False)
    bar = ProgressBar(1000, "train", stream=log)
    for step in range(1, 1001):
        bar.update(step, f"loss {1 / step:.3f}")
    bar.close()
    lines = log.text.splitlines()
    assert "\r" not in log.text and len(lines) == 11  # 0 %, 10 %, …, 100 %
    assert lines[-1].startswith("train [" + "#" * 28 + "] 1000/1000 loss 0.001")

    term = _Stream(tty=True)
    bar = ProgressBar(3, "denoise", stream=term)
    for step in (1, 2, 3):
        bar.update(step, force=True)
    bar.close()
    assert term.text.count("\r") == 3 and term.text.endswith("\n")
