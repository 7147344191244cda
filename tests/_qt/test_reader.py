"""Opening microscope files in napari: layers with their scale in Å, notifications for
what is skipped or unreadable, and no claim on other files."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned._qt.reader import get_reader


def test_open_an_mrc_stack_in_napari(make_napari_viewer, tmp_path, write_mrc):
    stack = np.random.default_rng(0).random((3, 24, 32)).astype(np.float32)
    path = write_mrc(tmp_path / "series.mrc", stack, 0.25)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-pinned")
    np.testing.assert_array_equal(layer.data, stack)
    np.testing.assert_allclose(layer.scale, (1.0, 0.25, 0.25))
    assert str(layer.units[-1]) == "angstrom"
    assert layer.metadata["format"] == "mrc"


def test_skipped_datasets_are_reported(tmp_path, notifications, write_berkeley_emd):
    path = tmp_path / "s.emd"
    image = np.ones((16, 16), np.float32)
    write_berkeley_emd(
        path,
        {
            "HAADF": (image, [("y", 0.01, "[n_m]"), ("x", 0.01, "[n_m]")]),
            "EELS": (np.ones(50, np.float32), [("E", 1.0, "[e_V]")]),
        },
    )
    reader = get_reader(str(path))
    ((_data, kwargs, kind),) = reader(str(path))
    assert kind == "image" and kwargs["scale"] == pytest.approx((0.1, 0.1))
    assert len(notifications.infos) == 1 and "EELS" in notifications.infos[0]


def test_unreadable_files_fall_back_to_other_readers(tmp_path, notifications):
    broken = tmp_path / "broken.dm4"
    broken.write_bytes(b"not a DigitalMicrograph file" * 20)
    assert get_reader(str(broken)) is None
    assert any("broken.dm4: cannot read" in m for m in notifications.warnings)
    assert get_reader(str(tmp_path / "image.tif")) is None
    assert get_reader([str(broken), str(tmp_path / "image.tif")]) is None
