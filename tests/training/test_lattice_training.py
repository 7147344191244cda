"""Training models that take the lattice prior: their batches carry the prior of what
was recorded around each frame, computed as inference computes it."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned.nn.conditioning import frame_statistics
from napari_pinned.nn.lattice_prior import WINDOW
from napari_pinned.physics.simulate import simulate
from napari_pinned.settings import ModelConfig, StemNoiseRanges
from napari_pinned.training.adapt import AdaptSettings, adapt
from napari_pinned.training.data import BatchSampler, _context, prepare_pairs
from napari_pinned.training.run import train

LATTICE = ModelConfig.preset("tiny", normalization="robust", conditioning="noise-map+lattice")
#: Shot and read noise only: the prior of a recording without scan distortions.
PLAIN_SCAN = StemNoiseRanges(
    dose=(3.0, 30.0), clean_fraction=0.0, jitter_fraction=0.0, line_fraction=0.0,
    drift_fraction=0.0, quantum_fraction=0.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def crystal() -> np.ndarray:
    return simulate("SrTiO3", shape=(256, 288), pixel_size=0.1, seed=0).image


def test_recorded_frames_carry_the_prior_of_their_surroundings(crystal, tiny_train_config):
    """The third channel is the lattice prior of the recorded window around the frame,
    in the frame's model units: it sits much closer to the target than the input does
    (a tenth of the noise variance for a lattice of 40-odd cells)."""
    config = tiny_train_config(model=LATTICE, noise_model="stem", stem_noise=PLAIN_SCAN)
    pairs = prepare_pairs([crystal], None, config, LATTICE)
    batch = BatchSampler(pairs, config, LATTICE, np.random.default_rng(0)).sample()
    assert batch.inputs.shape[1] == 3
    image, prior, target = batch.inputs[:, 0], batch.inputs[:, 2], batch.targets[:, 0]
    assert np.mean((prior - target) ** 2) < 0.3 * np.mean((image - target) ** 2)


def test_the_recorded_window_is_centred_on_the_frame_inside_the_image():
    assert _context((1000, 1000), np.s_[400:560, 400:560]) == (
        slice(352, 352 + WINDOW),
        slice(352, 352 + WINDOW),
    )
    assert _context((1000, 300), np.s_[0:160, 140:300]) == (slice(0, WINDOW), slice(44, 300))
    assert _context((200, 200), np.s_[20:180, 20:180]) == (slice(0, 200), slice(0, 200))


def test_a_lattice_model_trains_and_adapts(crystal, tiny_train_config):
    config = tiny_train_config(
        model=LATTICE, noise_model="stem", stem_noise=PLAIN_SCAN, steps=2, batch_size=2
    )
    run = train(config, [crystal], seed=0, device="cpu")
    bundle = run.run_to_end()
    assert bundle.config.lattice
    noisy = np.random.default_rng(1).poisson(crystal / crystal.mean() * 10.0).astype(np.float32)
    adapting = adapt(
        noisy, bundle, settings=AdaptSettings(steps=2, batch_size=2, patch_size=64), device="cpu"
    )
    # Blind-spot frames take the prior of the whole recording, as inference does.
    stats = frame_statistics(noisy, "robust", conditioned=True, lattice=True)
    expected = stats.prior * stats.state.scale + stats.state.low
    np.testing.assert_allclose(adapting._pairs[0].prior, expected, rtol=1e-5, atol=1e-4)
    adapted = adapting.run_to_end()
    assert adapted.config.lattice
