"""Model files that ask for too much: bounded before anything is built or unpacked;
refusals of code in our words."""

from __future__ import annotations

import io
import os
import stat
import zipfile

import pytest
import torch

import napari_pinned.nn.model_files as model_files
from napari_pinned.nn.model_files import (
    MAX_DEPTH,
    MAX_WIDTH,
    ModelFileError,
    check_model_size,
    save_model,
)
from napari_pinned.nn.network import ModelBundle, build_model
from napari_pinned.nn.resolve import load_model
from napari_pinned.settings import ModelConfig

TINY = ModelConfig.preset("tiny")


def _bundle(config: ModelConfig = TINY) -> ModelBundle:
    return ModelBundle(model=build_model(config), config=config, metadata={"name": "t"})


def _rehashed(payload: dict) -> dict:
    payload["sha256"] = model_files.checksum(
        payload["config"], payload["metadata_json"], payload["state_dict"]
    )
    return payload


@pytest.fixture
def builds(monkeypatch):
    """The devices networks are built on while loading: the file's weights must be
    checked on the meta device (no memory) before a real network exists on the CPU."""
    devices: list[str] = []
    real = model_files.PinnedNetwork

    def recording(config):
        devices.append(torch.empty(0).device.type)
        return real(config)

    monkeypatch.setattr(model_files, "PinnedNetwork", recording)
    return devices


def test_a_config_asking_for_a_huge_network_is_refused_before_building(tmp_path, builds):
    # The sweep's 9.8 KB file: width 1024, depth 8 would have allocated ~95 GiB.  Width
    # 200 is enough to show it (113 M parameters, 450 MB if it were built).
    payload = model_files.file_payload(_bundle())
    payload["config"] = ModelConfig.preset("unet", width=200, depth=3).to_dict()
    payload["state_dict"] = {}
    path = tmp_path / "huge.pt"
    torch.save(_rehashed(payload), path)
    with pytest.raises(ModelFileError, match=r"huge\.pt: width 200, depth 3 is beyond"):
        load_model(path)
    assert builds == []  # not even on the meta device: the width alone decides


def test_parameter_count_bounds_widths_and_depths_together(tmp_path, builds):
    payload = model_files.file_payload(_bundle())
    payload["config"] = ModelConfig.preset("unet", width=MAX_WIDTH, depth=MAX_DEPTH).to_dict()
    payload["state_dict"] = {}
    path = tmp_path / "deep.pt"
    torch.save(_rehashed(payload), path)
    with pytest.raises(ModelFileError, match=r"parameters .* more than the 50,000,000"):
        load_model(path)
    assert "cpu" not in builds


def test_weights_of_the_wrong_shape_are_found_before_the_network_is_built(tmp_path, builds):
    payload = model_files.file_payload(_bundle())
    payload["state_dict"] = build_model(ModelConfig.preset("tiny", width=5)).state_dict()
    path = tmp_path / "shapes.pt"
    torch.save(_rehashed(payload), path)
    with pytest.raises(ModelFileError, match=r"weights do not match .* has shape"):
        load_model(path)
    assert "cpu" not in builds
    payload["state_dict"] = {}
    torch.save(_rehashed(payload), path)
    with pytest.raises(ModelFileError, match=r"missing 'decoder"):
        load_model(path)


def test_shipped_sizes_are_within_the_bounds():
    assert check_model_size(ModelConfig.preset("unet", width=8, depth=3)) == 181_913
    assert check_model_size(ModelConfig.preset("paper")) > 2_000_000
    with pytest.raises(ValueError, match="beyond"):
        check_model_size(ModelConfig.preset("unet", width=MAX_WIDTH + 1))


def test_a_zip_bomb_is_refused_before_torch_unpacks_it(tmp_path):
    good = tmp_path / "good.pt"
    save_model(_bundle(), good)
    bomb = tmp_path / "bomb.pt"
    # The same archive with deflated entries plus 64 MB of zeros that pack into 64 KB.
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
        dst.writestr("archive/data/zeros", bytes(64 * 1024**2))
    assert bomb.stat().st_size < 1024**2
    with pytest.raises(ModelFileError, match=r"bomb\.pt: refused: .*compressed entries"):
        load_model(bomb)


def test_an_archive_larger_than_a_model_may_be_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.pt"
    save_model(_bundle(), path)
    monkeypatch.setattr(model_files, "MAX_ARCHIVE_BYTES", 10_000)
    with pytest.raises(ModelFileError, match=r"big\.pt: unpacks to .* more than a model"):
        load_model(path)
    legacy = tmp_path / "legacy.pt"
    buffer = io.BytesIO()
    torch.save({"x": torch.zeros(5000)}, buffer, _use_new_zipfile_serialization=False)
    legacy.write_bytes(buffer.getvalue())
    with pytest.raises(ModelFileError, match="larger than a model file may be"):
        load_model(legacy)


class _Code:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_files_with_code_are_refused_in_our_words(tmp_path):
    marker = tmp_path / "ran"
    for name, obj in (("system.pt", _Code(marker)), ("eval.pt", {"a": eval})):
        path = tmp_path / name
        torch.save({"format": model_files.FILE_FORMAT, "x": obj}, path)
        with pytest.raises(ModelFileError) as info:
            load_model(path)
        message = str(info.value)
        assert message.startswith(f"{path}: refused: the file contains code or Python objects")
        assert "PyTorch 2.6" not in message and "weights_only" not in message
        assert len(message.splitlines()) == 1
    assert not marker.exists()


def test_model_files_are_written_with_the_umask(tmp_path):
    saved = os.umask(0o022)
    try:
        path = save_model(_bundle(), tmp_path / "m.pt")
    finally:
        os.umask(saved)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert load_model(path).config == TINY
