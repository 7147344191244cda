"""Microscope files: images and stacks with their scale in Å, skipped datasets, clear
errors, and the CLI reading them."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from napari_pinned.cli.entry import main
from napari_pinned.io.images import read_image, read_pixel_size
from napari_pinned.io.microscope import MICROSCOPE_FORMATS, is_microscope_file, read_microscope_file


def test_mrc_image_and_stack_have_their_pixel_size_in_angstrom(tmp_path, write_mrc):
    image = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    images, notes = read_microscope_file(write_mrc(tmp_path / "one.mrc", image, 0.5))
    assert notes == [] and len(images) == 1
    np.testing.assert_array_equal(images[0].data, image)
    assert images[0].pixel_size == pytest.approx(0.5)
    assert images[0].units == ("Å", "Å") and images[0].name == "one"

    stack = np.random.default_rng(1).random((3, 20, 30)).astype(np.float32)
    (series,), _ = read_microscope_file(write_mrc(tmp_path / "series.mrc", stack, 0.25))
    np.testing.assert_array_equal(series.data, stack)
    assert series.scale == pytest.approx((1.0, 0.25, 0.25))
    assert series.units == ("pixel", "Å", "Å")
    assert series.metadata["format"] == "mrc" and "original_metadata" in series.metadata


def test_emd_datasets_give_one_image_each_and_spectra_are_skipped(tmp_path, write_berkeley_emd):
    path = tmp_path / "session.emd"
    image = np.random.default_rng(2).random((24, 24)).astype(np.float32)
    write_berkeley_emd(
        path,
        {
            "HAADF": (image, [("y", 0.02, "[n_m]"), ("x", 0.02, "[n_m]")]),
            "ABF": (image * 2, [("y", 0.02, "[n_m]"), ("x", 0.02, "[n_m]")]),
            "EELS": (np.ones(100, np.float32), [("E", 0.5, "[e_V]")]),
        },
    )
    images, notes = read_microscope_file(path)
    assert sorted(i.name for i in images) == ["session ABF", "session HAADF"]
    for found in images:
        assert found.pixel_size == pytest.approx(0.2)  # 0.02 nm
    assert len(notes) == 1 and "EELS" in notes[0] and "spectrum" in notes[0]


def test_ser_image_and_series_in_metres_become_angstrom(tmp_path, write_ser):
    image = np.arange(24, dtype=np.float32).reshape(6, 4)
    (single,), notes = read_microscope_file(write_ser(tmp_path / "one.ser", image, 2e-11))
    np.testing.assert_array_equal(single.data, image)
    assert single.pixel_size == pytest.approx(0.2) and notes == []
    frames = np.stack([image, image + 100, image + 200])
    (series,), _ = read_microscope_file(write_ser(tmp_path / "series.ser", frames, 2e-11))
    np.testing.assert_array_equal(series.data, frames)
    assert series.scale == pytest.approx((1.0, 0.2, 0.2))


def test_cli_and_read_image_take_the_first_image(tmp_path, capsys, write_mrc):
    image = np.random.default_rng(3).random((32, 32)).astype(np.float32)
    path = write_mrc(tmp_path / "scan.mrc", image, 0.1)
    np.testing.assert_array_equal(read_image(path), image)
    assert read_pixel_size(path) == pytest.approx(0.1)
    assert main(["noise", str(path), "--level", "2", "-o", str(tmp_path / "noisy.tif")]) == 0
    assert read_pixel_size(tmp_path / "noisy.tif") == pytest.approx(0.1)


@pytest.mark.parametrize("suffix", sorted(MICROSCOPE_FORMATS))
def test_corrupt_files_give_one_clear_error(tmp_path, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(np.random.default_rng(4).bytes(3000))
    with pytest.raises(ValueError, match=rf"broken\{suffix}: cannot read this \{suffix} file"):
        read_microscope_file(path)


def test_missing_rosettasciio_names_the_extra(tmp_path, monkeypatch, write_mrc):
    path = write_mrc(tmp_path / "a.mrc", np.zeros((8, 8)), 1.0)
    monkeypatch.setitem(sys.modules, "rsciio", None)
    monkeypatch.setitem(sys.modules, "rsciio.mrc", None)
    with pytest.raises(ValueError, match=r"napari-pinned\[io\]"):
        read_microscope_file(path)


def test_other_suffixes_are_not_ours(tmp_path):
    assert not is_microscope_file("image.tif")
    assert is_microscope_file("IMAGE.DM4")
    with pytest.raises(ValueError, match="not a microscope file"):
        read_microscope_file(tmp_path / "x.png")


def _fake_reader(datasets):
    def reader(filename, **kwargs):
        return datasets

    return reader


def _axis(index, name, size, scale, units, navigate):
    return {
        "index_in_array": index,
        "name": name,
        "size": size,
        "scale": scale,
        "units": units,
        "navigate": navigate,
        "offset": 0.0,
    }


def test_dm_style_calibrations_stacks_and_4d_data(tmp_path, monkeypatch):
    """What RosettaSciIO returns for a DigitalMicrograph file (nm and pm axes), a Velox
    frame series (frames as the navigation axis, last in the array) and a 4D-STEM scan."""
    import napari_pinned.io.microscope as io

    rng = np.random.default_rng(5)
    frames = rng.random((16, 12, 5)).astype(np.float32)  # (y, x, frame), frame navigates
    datasets = [
        {
            "data": rng.random((16, 12)),
            "axes": [_axis(0, "y", 16, 0.01, "nm", False), _axis(1, "x", 12, 0.01, "nm", False)],
            "metadata": {"General": {"title": "HAADF"}},
            "original_metadata": {"Microscope": "ARM"},
        },
        {
            "data": frames,
            "axes": [
                _axis(0, "y", 16, 8.0, "pm", False),
                _axis(1, "x", 12, 8.0, "pm", False),
                _axis(2, "Time", 5, 0.5, "s", True),
            ],
            "metadata": {"General": {"title": "DF4 series"}},
        },
        {
            "data": np.zeros((4, 4, 8, 8)),
            "axes": [_axis(i, "a", n, 1.0, "nm", i < 2) for i, n in enumerate((4, 4, 8, 8))],
            "metadata": {"General": {"title": "4D"}},
        },
        {
            "data": np.zeros((5, 5)),
            "axes": [_axis(0, "y", 5, 1.0, None, False), _axis(1, "x", 5, 1.0, None, False)],
            "metadata": {"General": {"title": "raw"}},
        },
    ]
    monkeypatch.setattr(io, "_rsciio_reader", lambda suffix: _fake_reader(datasets))
    path = tmp_path / "session.dm4"
    path.write_bytes(b"")
    images, notes = read_microscope_file(path)
    names = [i.name for i in images]
    assert names == ["session HAADF", "session DF4 series", "session raw"]
    assert images[0].pixel_size == pytest.approx(0.1)
    assert images[0].metadata["original_metadata"] == {"Microscope": "ARM"}
    series = images[1]
    assert series.data.shape == (5, 16, 12)
    np.testing.assert_array_equal(series.data[2], frames[:, :, 2])
    assert series.scale == pytest.approx((1.0, 0.08, 0.08))
    assert images[2].pixel_size is None and images[2].units == ("pixel", "pixel")
    assert any("'4D'" in n and "4-D data" in n for n in notes)
    assert any("'raw'" in n and "no length calibration" in n for n in notes)


def _mrc_header(nx: int, ny: int, nz: int, mode: int, extended: int = 0) -> bytes:
    header = np.zeros(256, dtype="<i4")
    header[0:4] = (nx, ny, nz, mode)
    header[23] = extended  # NEXT: bytes of extended header after the 1024
    return header.tobytes()


def _not_read(*args, **kwargs):
    raise AssertionError("the reader ran before the header was checked")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (_mrc_header(100_000, 100_000, 100_000, 2) + bytes(4000), "claims 100000×100000×100000"),
        (_mrc_header(64, 64, 2, 2) + bytes(64 * 64 * 4), "needs 33792 bytes; the file has 17408"),
        (_mrc_header(64, 64, 1, 2, extended=1024) + bytes(64 * 64 * 4), "needs 18432 bytes"),
        (_mrc_header(8, 8, 1, 101) + bytes(64), "data mode 101"),
        (bytes(500), "shorter than the 1024-byte MRC header"),
    ],
)
def test_an_mrc_header_that_disagrees_with_the_file_is_refused_before_reading(
    tmp_path, monkeypatch, content, message
):
    path = tmp_path / "claims.mrc"
    path.write_bytes(content)
    monkeypatch.setattr("napari_pinned.io.microscope._rsciio_reader", _not_read)
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        read_microscope_file(path)
    text = str(info.value)
    assert text.startswith(f"{path}: cannot read this .mrc file") and "\n" not in text


def test_an_mrc_header_that_agrees_is_read(tmp_path, write_mrc):
    from napari_pinned.io.microscope import check_mrc_header

    image = np.arange(12 * 10, dtype=np.float32).reshape(12, 10)
    path = write_mrc(tmp_path / "fine.mrc", image, 0.5)
    check_mrc_header(path)
    path.write_bytes(path.read_bytes() + bytes(100))  # trailing bytes are not a problem
    check_mrc_header(path)
    (found,), _ = read_microscope_file(path)
    np.testing.assert_array_equal(found.data, image)
