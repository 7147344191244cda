"""``napari-pinned align``: a drifting series in, the drift-corrected mean, the aligned
stack, the Noise2Noise halves and the shifts out; one-line errors for user mistakes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_pinned._util.jobs import run_job
from napari_pinned.cli.entry import main
from napari_pinned.denoising.registration import register_frames
from napari_pinned.io.images import read_image, read_pixel_size
from napari_pinned.io.tiff import write_tiff
from napari_pinned.physics.simulate import simulate


@pytest.fixture(scope="module")
def stack() -> tuple[np.ndarray, np.ndarray]:
    """Six noisy 96² frames drifting by whole pixels (so the truth is exact) and the
    shifts that register them."""
    rng = np.random.default_rng(0)
    base = simulate("SrTiO3", shape=128, pixel_size=0.1, seed=0).image.astype(np.float64)
    motion = np.array([[0, 0], [1, -1], [2, -1], [3, -2], [3, -3], [4, -3]], dtype=float)
    frames = np.stack(
        [ndimage.shift(base, m, order=0, mode="nearest")[16:112, 16:112] for m in motion]
    )
    noisy = rng.poisson(frames / 255.0 * 30.0).astype(np.float32)
    return noisy, -motion


def test_align_writes_mean_aligned_halves_and_shifts(tmp_path, capsys, stack):
    frames, truth = stack
    source = write_tiff(tmp_path / "series.tif", frames, pixel_size=0.1)
    mean, aligned = tmp_path / "mean.tif", tmp_path / "aligned.tif"
    even, odd, shifts = tmp_path / "even.tif", tmp_path / "odd.tif", tmp_path / "shifts.csv"
    argv = ["align", str(source), "-o", str(mean), "--aligned", str(aligned)]
    argv += ["--halves", str(even), str(odd), "--shifts", str(shifts)]
    assert main(argv) == 0
    out = capsys.readouterr().out

    result = run_job(register_frames(frames))
    np.testing.assert_array_equal(read_image(mean), result.mean)
    np.testing.assert_array_equal(read_image(aligned), result.aligned)
    for path, half in zip((even, odd), result.halves(), strict=True):
        np.testing.assert_array_equal(read_image(path), half)
    for path in (mean, aligned, even, odd):
        assert read_pixel_size(path) == pytest.approx(0.1)
    table = np.loadtxt(shifts, delimiter=",", skiprows=1)
    np.testing.assert_array_equal(table[:, 0], np.arange(6))
    np.testing.assert_allclose(table[:, 1:], truth, atol=0.2)

    drift = np.hypot(*truth.T).max()  # 5 px
    assert f"max drift {result.max_drift:.2f} px ({result.max_drift * 0.1:.2f} Å)" in out
    assert result.max_drift == pytest.approx(drift, abs=0.3)
    assert "6 frames" in out and f"{result.mean.shape[0]}×{result.mean.shape[1]}" in out


def test_align_without_pixel_size_reports_pixels_only(tmp_path, capsys, stack):
    source = write_tiff(tmp_path / "series.tif", stack[0][:3])
    assert main(["align", str(source), "-o", str(tmp_path / "m.tif"), "--reference", "first"]) == 0
    out = capsys.readouterr().out
    assert "px" in out and "Å" not in out
    assert read_pixel_size(tmp_path / "m.tif") is None


@pytest.mark.parametrize(
    ("data", "extra", "message"),
    [
        (np.zeros((32, 32), np.float32), [], "single 2D image"),
        (np.zeros((3, 32, 32), np.float32), ["--max-shift", "-1"], "--max-shift"),
        (np.zeros((3, 32, 32), np.float32), ["--aligned", "nowhere/a.tif"], "does not exist"),
    ],
)
def test_align_mistakes_give_one_line_and_exit_2(
    tmp_path, monkeypatch, capsys, data, extra, message
):
    monkeypatch.chdir(tmp_path)
    write_tiff(tmp_path / "in.tif", data)
    assert main(["align", "in.tif", "-o", "out.tif", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("napari-pinned: error:") and message in err[0]
    assert not (tmp_path / "out.tif").exists()


def test_align_names_the_file_of_a_single_image(tmp_path, capsys):
    write_tiff(tmp_path / "single.tif", np.zeros((32, 32), np.float32))
    assert main(["align", str(tmp_path / "single.tif"), "-o", str(tmp_path / "o.tif")]) == 2
    assert "single.tif is a single 2D image" in capsys.readouterr().err


def test_align_the_drift_free_gan_sample_without_lattice_jumps(tmp_path, capsys):
    """The shipped GaN [11-20] stack does not drift; its frames once jumped by a lattice
    period (27.6 px) and the mean was cropped to 255×200 px."""
    from napari_pinned._sample_data import gan_stack

    data, kwargs, _ = gan_stack()[0]
    source = write_tiff(tmp_path / "gan.tif", data, pixel_size=kwargs["scale"][-1])
    shifts = tmp_path / "shifts.csv"
    assert main(["align", str(source), "-o", str(tmp_path / "m.tif"), "--shifts", str(shifts)]) == 0
    capsys.readouterr()
    table = np.loadtxt(shifts, delimiter=",", skiprows=1)
    # A jump is a whole period; the noise of CDN 2 leaves errors under a pixel.
    assert np.hypot(table[:, 1], table[:, 2]).max() < 1.0
    h, w = read_image(tmp_path / "m.tif").shape
    assert h >= data.shape[1] - 2 and w >= data.shape[2] - 2  # at most a pixel per side
