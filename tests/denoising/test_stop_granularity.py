"""A denoising job can be stopped after every network pass (issue 21: Cancel took 11.5 s
at 2048² with 8 orientations, one record per batch of windows × orientations).

Counted, not timed: the work done between two records is what a stop request waits for.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned.denoising import engine
from napari_pinned.denoising.denoiser import iter_denoise
from napari_pinned.settings import FrameOptions, ModelConfig


class _CountingRunner:
    """The real network runner, counting its forward passes."""

    def __init__(self, runner, passes: list[int]) -> None:
        self._runner = runner
        self._passes = passes

    def __getattr__(self, name):
        return getattr(self._runner, name)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self._passes.append(len(batch))
        return self._runner(batch)


@pytest.fixture
def passes(monkeypatch) -> list[int]:
    """Batch sizes of the network passes of the jobs started in the test."""
    seen: list[int] = []
    make = engine.make_runner
    monkeypatch.setattr(engine, "make_runner", lambda *a, **k: _CountingRunner(make(*a, **k), seen))
    return seen


@pytest.fixture(scope="module")
def bundle(random_bundle):
    return random_bundle(ModelConfig.preset("tiny", depth=2, normalization="robust"), 3)


@pytest.mark.parametrize("orientations", [1, 2])
def test_at_most_one_network_pass_runs_between_two_records(bundle, passes, orientations):
    image = np.random.default_rng(0).poisson(20.0, (2, 48, 48)).astype(np.float32)
    # 16 px tiles: several windows per frame (9), batched four at a time.
    options = FrameOptions(tile=16, device="cpu", orientations=orientations)
    job = iter_denoise(image, bundle, options, batch_size=4)
    counts = []
    for _ in job:
        counts.append(len(passes))
    windows = engine.Denoiser(bundle, options).windows(image.shape[1:])
    batches_per_frame = -(-windows // 4)
    assert len(passes) == 2 * batches_per_frame * orientations  # all the work was done
    assert max(passes) == 4 and windows > 4  # batches of several windows
    steps = np.diff([0, *counts])
    assert steps.max() <= 1, f"passes between records: {steps.tolist()}"


def test_no_pass_runs_after_the_job_is_closed(bundle, passes):
    image = np.random.default_rng(1).poisson(20.0, (48, 48)).astype(np.float32)
    job = iter_denoise(image, bundle, FrameOptions(tile=16, device="cpu", orientations=8))
    next(job)
    started = len(passes)
    job.close()  # what a cancel does
    assert started <= 1 and len(passes) == started
