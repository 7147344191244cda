"""A training batch the memory cannot hold is refused by train() before any work
(issue 21), with the cost of :func:`napari_pinned._util.memory.training_bytes`."""

from __future__ import annotations

import pytest

from napari_pinned._util.memory import training_bytes
from napari_pinned.settings import ModelConfig, TrainConfig
from napari_pinned.training.run import train

MiB = 1024**2


def test_training_bytes_grow_with_the_batch_the_patch_and_the_width():
    base = training_bytes(8, 64, 8)
    assert training_bytes(16, 64, 8) > base
    assert training_bytes(8, 128, 8) > training_bytes(16, 64, 8) - 1  # 4× the pixels
    assert training_bytes(8, 64, 16) > base
    # batch 1000000 of 64² px: terabytes, as the 15 GiB attempt showed it grows
    assert training_bytes(1_000_000, 64, 8) > 1024**4


def _fail(*args, **kwargs):
    raise AssertionError("the training data were prepared before the memory check")


def test_train_refuses_a_batch_beyond_the_memory_before_preparing_data(monkeypatch, lattice_image):
    monkeypatch.setattr("napari_pinned._util.memory.available_bytes", lambda: 1024 * MiB)
    monkeypatch.setattr("napari_pinned.training.run.prepare_pairs", _fail)
    config = TrainConfig(model=ModelConfig.preset("tiny"), batch_size=100_000, patch_size=64)
    with pytest.raises(ValueError, match=r"100000 patches of 64² px needs about") as info:
        train(config, [lattice_image(size=128)], device="cpu")
    assert "\n" not in str(info.value)
