"""TIFF files: frames read once, either byte order, files of several series, and
tifffile's own complaints kept out of the one-line errors."""

from __future__ import annotations

import json
import logging
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_pinned.cli.entry import main
from napari_pinned.io.images import image_shape, open_frames, read_image
from napari_pinned.io.tiff import TiffFrames, write_tiff
from napari_pinned.nn.model_files import save_model


def _lattice(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[-2], 0 : shape[-1]]
    mean = 30.0 * (2.0 + np.cos(2 * np.pi * x / 8.0) * np.cos(2 * np.pi * y / 8.0))
    return rng.poisson(mean, shape).astype(np.float32)


def _count_frame_reads(monkeypatch) -> list[int]:
    """The frames :class:`TiffFrames` reads from its file, in order."""
    reads: list[int] = []
    original = TiffFrames._frame

    def counted(self, index):
        reads.append(index)
        return original(self, index)

    monkeypatch.setattr(TiffFrames, "_frame", counted)
    return reads


# -- reading each frame once ------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["contiguous", "compressed"])
def test_asarray_of_a_2d_image_reads_the_file_once(tmp_path, monkeypatch, layout):
    # numpy took a 2-D TiffFrames without __array__ for a sequence of rows and read the
    # whole frame once per row, holding every copy: 4.5 GB for a 4 MB 1024² file.
    image = _lattice((96, 80))
    path = tmp_path / "image.tif"
    if layout == "contiguous":
        write_tiff(path, image)
    else:
        tifffile.imwrite(path, image, compression="zlib", tile=(32, 32))
    frames = TiffFrames(path)
    reads = _count_frame_reads(monkeypatch)
    np.testing.assert_array_equal(np.asarray(frames), image)
    assert reads == [0]
    as_float64 = np.asarray(frames, dtype=np.float64)
    assert as_float64.dtype == np.float64 and reads == [0, 0]
    np.testing.assert_array_equal(as_float64, image)


def test_asarray_of_a_stack_reads_each_frame_once(tmp_path, monkeypatch):
    stack = _lattice((3, 40, 36))
    frames = TiffFrames(write_tiff(tmp_path / "stack.tif", stack))
    reads = _count_frame_reads(monkeypatch)
    np.testing.assert_array_equal(np.asarray(frames), stack)
    assert reads == [0, 1, 2]


def test_a_long_strip_is_read_once(tmp_path, monkeypatch):
    # The 100000×1 strip of the issue, shorter: one read, not one per row.
    strip = _lattice((20000, 1))
    frames = open_frames(write_tiff(tmp_path / "strip.tif", strip))
    reads = _count_frame_reads(monkeypatch)
    np.testing.assert_array_equal(np.asarray(frames), strip)
    assert reads == [0]


def test_a_strip_too_thin_for_the_noise_fit_is_refused_before_the_model_loads(
    tmp_path, monkeypatch, tiny_conditioned
):
    from napari_pinned.denoising.denoiser import denoise

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("napari_pinned.denoising.denoiser.make_denoiser", no_model)
    strip = open_frames(write_tiff(tmp_path / "strip.tif", _lattice((100_000, 1))))
    with pytest.raises(ValueError, match=r"image is 100000×1 px, too small to estimate its noise"):
        denoise(strip, tiny_conditioned())


# -- byte order -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(40, 36), (3, 40, 36)], ids=["image", "stack"])
def test_big_endian_files_read_as_their_values(tmp_path, dtype, shape):
    # ImageJ writes big-endian TIFFs; the frame-by-frame reader read them byte-swapped.
    data = _lattice(shape).astype(dtype)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, data, byteorder=">", imagej=True)
    with tifffile.TiffFile(path) as tif:
        assert tif.byteorder == ">"
    np.testing.assert_array_equal(read_image(path), data)
    frames = open_frames(path)
    assert isinstance(frames, TiffFrames) and frames.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(frames), data)
    if len(shape) == 3:
        for i in range(shape[0]):
            np.testing.assert_array_equal(frames[i], data[i])
        np.testing.assert_array_equal(frames[1:, 2:9], data[1:, 2:9])
    else:
        np.testing.assert_array_equal(frames[...], data)
        np.testing.assert_array_equal(frames[3:7], data[3:7])
    assert np.asarray(frames).dtype.isnative and frames[...].dtype.isnative


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_denoise_of_a_big_endian_file_is_that_of_the_little_endian_one(
    tmp_path, capsys, tiny_conditioned, dtype
):
    model = save_model(tiny_conditioned(name="tiny"), tmp_path / "tiny.pt")
    data = _lattice((48, 40)).astype(dtype)
    tifffile.imwrite(tmp_path / "big.tif", data, byteorder=">", imagej=True)
    tifffile.imwrite(tmp_path / "little.tif", data, byteorder="<", imagej=True)
    for name in ("big", "little"):
        argv = ["denoise", str(tmp_path / f"{name}.tif"), "--model", str(model)]
        assert main([*argv, "-o", str(tmp_path / f"{name}_out.tif")]) == 0, capsys.readouterr()
    np.testing.assert_array_equal(
        read_image(tmp_path / "big_out.tif"), read_image(tmp_path / "little_out.tif")
    )


# -- several series ---------------------------------------------------------------------------


def test_a_second_series_is_ignored_with_one_warning(tmp_path, capsys):
    # A TIFF of several series (an image and its thumbnail, or two detectors): the first
    # is read and one line says the others were not.
    image = _lattice((48, 40))
    path = tmp_path / "two.tif"
    with tifffile.TiffWriter(path) as writer:
        writer.write(image)
        writer.write(np.zeros((16, 16), np.uint8))
    for read in (read_image, open_frames, image_shape):
        with pytest.warns(UserWarning, match=r"two\.tif: holds 2 image series") as record:
            result = read(path)
        assert len(record) == 1, [str(w.message) for w in record]
        assert "48×40 float32" in str(record[0].message)
        if read is not image_shape:
            np.testing.assert_array_equal(np.asarray(result), image)

    capsys.readouterr()
    assert main(["noise", str(path), "--level", "2", "-o", str(tmp_path / "noisy.tif")]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"napari-pinned: warning: {path}: holds 2 image series; read the first (48×40 "
        "float32), ignored the others"
    ]
    assert read_image(tmp_path / "noisy.tif").shape == image.shape


# -- tifffile's complaints --------------------------------------------------------------------


def _corrupt(path: Path, tag: int | None, field: str, value: int) -> Path:
    """A little-endian TIFF of one strip with one IFD entry (or the first IFD's
    offset, for ``tag=None``) overwritten."""
    tifffile.imwrite(path, _lattice((64, 64)))
    data = bytearray(path.read_bytes())
    ifd = struct.unpack("<I", data[4:8])[0]
    if tag is None:
        data[4:8] = struct.pack("<I", value)
    for k in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * k
        if struct.unpack("<H", data[entry : entry + 2])[0] == tag:
            at = entry + 2 if field == "type" else entry + 8
            data[at : at + (2 if field == "type" else 4)] = struct.pack(
                "<H" if field == "type" else "<I", value
            )
    path.write_bytes(bytes(data))
    return path


def test_reading_a_corrupt_tiff_logs_nothing_and_names_the_cause(tmp_path, caplog):
    first_page = _corrupt(tmp_path / "first_page.tif", None, "", 10**8)
    offsets = _corrupt(tmp_path / "offsets.tif", 273, "type", 0)
    description = _corrupt(tmp_path / "description.tif", 270, "type", 0)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ValueError, match=r"first_page\.tif: .*invalid offset to first page"):
        read_image(first_page)
    with pytest.raises(ValueError, match=r"offsets\.tif: not a readable TIFF image"):
        np.asarray(open_frames(offsets))
    with pytest.raises(ValueError, match=r"offsets\.tif: not a readable TIFF image"):
        read_image(offsets)
    # A broken tag the image does not need: the image reads, with nothing said.
    np.testing.assert_array_equal(read_image(description), _lattice((64, 64)))
    np.testing.assert_array_equal(np.asarray(open_frames(description)), _lattice((64, 64)))
    assert [r for r in caplog.records if r.name.startswith("tifffile")] == []


def test_a_corrupt_tiff_gives_exactly_one_line_on_the_real_stderr(tmp_path):
    # In a process of its own: pytest's log capture would hide tifffile's records here.
    files = {
        "first_page": _corrupt(tmp_path / "first_page.tif", None, "", 10**8),
        "offsets": _corrupt(tmp_path / "offsets.tif", 273, "type", 0),
        "width": _corrupt(tmp_path / "width.tif", 256, "type", 0),
        "description": _corrupt(tmp_path / "description.tif", 270, "type", 0),
    }
    code = textwrap.dedent(
        f"""
        import io, json, sys
        from napari_pinned.cli.entry import main
        files = {json.dumps({k: str(v) for k, v in files.items()})}
        out = {str(tmp_path)!r} + "/out.tif"
        results = {{}}
        for name, path in files.items():
            commands = ("noise",) if name == "description" else ("denoise", "noise")
            for command in commands:
                argv = [command, path, "-o", out, "--overwrite"]
                sys.stderr = io.StringIO()
                status = main(argv)
                results[name + " " + argv[0]] = [status, sys.stderr.getvalue()]
        sys.stderr = sys.__stderr__
        with open({str(tmp_path / "results.json")!r}, "w") as handle:
            json.dump(results, handle)
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    for case, (status, err) in results.items():
        lines = err.strip().splitlines()
        if case == "description noise":  # the image itself reads: nothing said
            assert status == 0 and lines == [], (case, err)
            continue
        assert status == 2, (case, err)
        name = case.split()[0]
        assert len(lines) == 1, (case, err)
        assert lines[0].startswith(f"napari-pinned: error: {files[name]}: "), (case, err)
