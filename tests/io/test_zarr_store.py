"""Zarr stores: OME-Zarr metadata read with one-line errors, outputs written under a
temporary name by one run at a time, full disks named."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from napari_pinned.io import safe_write
from napari_pinned.io.zarr_store import ZarrOutput, open_zarr, partial_path

zarr = pytest.importorskip("zarr")


def _ome_image(path, scale) -> None:
    group = zarr.open_group(str(path), mode="w")
    group.create_array("0", shape=(8, 8), dtype="f4")
    axes = [{"name": "y", "type": "space", "unit": "nanometer"}, {"name": "x", "type": "space"}]
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": axes,
                "datasets": [
                    {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
                ],
            }
        ],
    }


@pytest.mark.parametrize("scale", [[0.02, "x"], [None, 0.02], [[1], 0.02]])
def test_an_ome_scale_that_is_not_numbers_is_one_line_naming_the_store_and_field(tmp_path, scale):
    store = tmp_path / "image.ome.zarr"
    _ome_image(store, scale)
    with pytest.raises(ValueError) as caught:
        open_zarr(store)
    text = str(caught.value)
    assert text.startswith(f"{store}: ") and len(text.splitlines()) == 1
    assert "coordinateTransformations" in text and "scale" in text and "not a number" in text
    assert "could not convert" not in text


def _output(target, **kwargs) -> ZarrOutput:
    return ZarrOutput(target, (3, 8, 8), run={"input": "x"}, attrs={}, **kwargs)


def test_a_zarr_output_is_written_by_one_run_at_a_time(tmp_path):
    target = tmp_path / "out.zarr"
    first = _output(target)
    for resume in (False, True):  # a second run, resuming or not, is refused
        with pytest.raises(ValueError, match=r"out\.zarr: another run \(process"):
            _output(target, resume=resume)
    first.array[...] = np.ones((3, 8, 8), np.float32)
    first.mark_done(range(3))
    assert first.finish() == target
    assert (target / "zarr.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]  # lock removed
    second = _output(target)  # the output is free again
    second.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


def test_the_longest_legal_zarr_name_can_be_written(tmp_path):
    target = tmp_path / ("z" * 249 + ".zarr")  # 254 bytes; ".<name>.partial" is 263
    output = _output(target)
    assert len(os.fsencode(partial_path(target).name)) <= 255
    output.array[...] = np.zeros((3, 8, 8), np.float32)
    output.mark_done(range(3))
    output.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_a_full_disk_while_creating_a_zarr_output_names_the_store(tmp_path, monkeypatch):
    target = tmp_path / "out.zarr"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zarr, "create_array", full)
    with pytest.raises(OSError) as caught:
        _output(target)
    assert str(caught.value).startswith(f"{target}: no space left on device")
    assert list(tmp_path.iterdir()) == []  # no partial store, no lock
    monkeypatch.undo()
    _output(target).discard()  # not locked by the failed run


def test_outputs_onto_a_pipe_are_refused(tmp_path):
    fifo = tmp_path / "out.zarr"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        _output(fifo)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]
    assert not safe_write.OutputLock(fifo).path.exists()
