"""What docs/model.md promises about reproducibility on the CPU: the same seed and thread
count give bit-identical weights; another thread count differs by rounding only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_pinned.settings import TrainConfig
from napari_pinned.training.run import train


@pytest.fixture
def restore_threads():
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


def _weights(config: TrainConfig) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.random((96, 96)).astype(np.float32)
    bundle = train(config, [image], seed=3, device="cpu").run_to_end()
    return {k: v.numpy().copy() for k, v in bundle.model.state_dict().items()}


def test_same_seed_and_threads_are_bit_identical_other_threads_differ_by_rounding(
    restore_threads, tiny_train_config
):
    def config(threads: int) -> TrainConfig:
        return tiny_train_config(steps=4, batch_size=2, validate_every=2, num_threads=threads)

    one, again, two = _weights(config(1)), _weights(config(1)), _weights(config(2))
    for name in one:
        np.testing.assert_array_equal(one[name], again[name])
        np.testing.assert_allclose(two[name], one[name], rtol=0, atol=1e-4)
