"""CPU-thread bounds: one answer for the CLI and the API."""

from __future__ import annotations

import pytest

from napari_pinned._util.machine import check_threads, usable_cpus


def test_threads_from_one_to_the_usable_cpus_are_accepted():
    cpus = usable_cpus()
    assert cpus >= 1
    assert check_threads(1) == 1 and check_threads(cpus) == cpus


@pytest.mark.parametrize("bad", [0, -1, 1000, 2.0, True, "2", None])
def test_other_thread_counts_are_refused_in_one_line(bad, monkeypatch):
    monkeypatch.setattr("napari_pinned._util.machine.usable_cpus", lambda: 4)
    with pytest.raises(ValueError, match=r"^threads must be a number of threads from 1 to 4"):
        check_threads(bad, "threads")


def test_a_training_run_refuses_more_threads_than_cpus_before_it_starts(
    tiny_train_config, monkeypatch
):
    """Issue 21: ``train --threads 1000`` aborted in libgomp; the CLI bounds it, and
    the API (``TrainConfig.num_threads``) now does too, before torch is told."""
    import numpy as np
    import torch

    from napari_pinned.training.run import train

    monkeypatch.setattr("napari_pinned._util.machine.usable_cpus", lambda: 2)
    before = torch.get_num_threads()
    config = tiny_train_config(num_threads=1000)
    clean = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    with pytest.raises(ValueError, match=r"TrainConfig\.num_threads must be .* from 1 to 2"):
        train(config, clean, seed=0, device="cpu")
    assert torch.get_num_threads() == before
