from __future__ import annotations

import numpy as np
import pytest

from napari_pinned.io.images import read_image, read_pixel_size
from napari_pinned.io.tiff import write_tiff


def test_float32_round_trip_keeps_values_and_pixel_size(tmp_path):
    img = np.random.default_rng(0).normal(size=(20, 30)).astype(np.float32) * 1000
    path = write_tiff(tmp_path / "a.tif", img, pixel_size=0.0625)
    back = read_image(path)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, img)
    assert read_pixel_size(path) == pytest.approx(0.0625)


def test_stack_round_trip(tmp_path):
    stack = np.arange(3 * 8 * 9, dtype=np.float32).reshape(3, 8, 9)
    np.testing.assert_array_equal(read_image(write_tiff(tmp_path / "s.tif", stack)), stack)


def test_write_is_atomic_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "keep.tif"
    write_tiff(target, np.ones((4, 4)))
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("napari_pinned.io.tiff.tifffile.imwrite", boom)
    with pytest.raises(RuntimeError):
        write_tiff(target, np.zeros((4, 4)))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.tif"]


def test_read_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_text("not a tiff")
    with pytest.raises(ValueError, match=r"bad\.tif: not a readable TIFF"):
        read_image(bad)
    with pytest.raises(ValueError, match="no such file"):
        read_image(tmp_path / "missing.tif")
