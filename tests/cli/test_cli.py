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


def _read_png(path) -> np.ndarray:
    """The pixels of a greyscale PNG as ``io.images.write_png`` writes it (one IDAT chunk,
    no filtering)."""
    import struct
    import zlib

    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, colour = struct.unpack(">IIBB", png[16:26])
    assert (depth, colour) == (8, 0)
    start = png.index(b"IDAT")
    (length,) = struct.unpack(">I", png[start - 4 : start])
    raw = zlib.decompress(png[start + 4 : start + 4 + length])
    return np.frombuffer(raw, np.uint8).reshape(height, width + 1)[:, 1:]


def _ink(mask: np.ndarray) -> np.ndarray:
    """``mask`` cut to the box around its True pixels."""
    ys, xs = np.nonzero(mask)
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] if ys.size else mask[:0, :0]


def _says(region: np.ndarray, text: str) -> bool:
    """True when the black pixels of ``region`` (of a white band) are ``text``, alone, in the
    figure font at some whole scale."""
    from napari_pinned.io.bitmap_text import GLYPH_HEIGHT, render_text

    ink = _ink(region == 0)
    scale = max(1, ink.shape[0] // GLYPH_HEIGHT)
    return np.array_equal(ink, _ink(render_text(text, scale)))


def test_the_summary_figure_names_its_columns_and_rows():
    from napari_pinned.cli.demo import _summary_figure

    reference = np.linspace(0.0, 1.0, 256 * 256).reshape(256, 256)
    grey = np.full_like(reference, 0.5)  # a panel of 128, never taken for ink (0)
    titles = ["clean", "noisy", "demo model", "cdn model"]
    figure = _summary_figure([[grey] * 4] * 5, reference, titles)
    panels = figure == 128
    columns = np.flatnonzero(panels.any(axis=0))
    rows = np.flatnonzero(panels.any(axis=1))
    top, left = rows[0], columns[0]
    starts_x = columns[np.r_[0, np.flatnonzero(np.diff(columns) > 1) + 1]]
    starts_y = rows[np.r_[0, np.flatnonzero(np.diff(rows) > 1) + 1]]
    assert len(starts_x) == 4 and len(starts_y) == 5
    for x, title in zip(starts_x, titles, strict=True):
        assert _says(figure[:top, x : x + 256], title), title
    for i, y in enumerate(starts_y):
        assert _says(figure[y : y + 256, :left], f"level {i + 1}")
    assert _says(figure[:top, :left], "CDN")  # what the row labels count
    # 256-px panels: two pixels per dot, seven dots high.
    assert _ink(figure[:top, starts_x[0] : starts_x[0] + 256] == 0).shape[0] == 14


def test_demo_runs_the_whole_path_on_tiny_settings(tmp_path, capsys):
    import json

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
    # summary.png: 5 rows (levels) × 4 panels (clean, noisy, demo, cdn) of 64 px, 4 px
    # apart, below a band of column titles and right of a column of level labels.
    figure = _read_png(out / "summary.png")
    top, left = figure.shape[0] - (5 * 64 + 4 * 4), figure.shape[1] - (4 * 64 + 3 * 4)
    assert top > 0 and left > 0
    for j, title in enumerate(["clean", "noisy", "demo model", "cdn model"]):
        assert _says(figure[:top, left + j * 68 : left + j * 68 + 64], title), title
    for i in range(5):
        assert _says(figure[top + i * 68 : top + i * 68 + 64, :left], f"level {i + 1}")
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
