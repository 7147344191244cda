"""Training on realistic STEM recordings, noise-conditioned models, and adaptation."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from napari_pinned.denoising.denoiser import denoise
from napari_pinned.nn.network import ModelBundle
from napari_pinned.noise.synthesis import StemRecording, draw_recording, record_stem_image
from napari_pinned.quality.metrics import psnr
from napari_pinned.settings import (
    AdaptSettings,
    ModelConfig,
    StemNoiseRanges,
)
from napari_pinned.training.adapt import adapt
from napari_pinned.training.data import FRAME_MARGIN, BatchSampler, prepare_pairs
from napari_pinned.training.run import train

CONDITIONED = ModelConfig.preset("tiny", normalization="robust", conditioning="noise-map")


def _pool(count: int = 12, size: int = 96) -> list[np.ndarray]:
    """Clean expected signals: lattices of random period and phase on a background."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    images = []
    for _ in range(count):
        period = rng.uniform(6.0, 14.0)
        phase = rng.uniform(0, 2 * np.pi, 2)
        peaks = np.cos(2 * np.pi * x / period + phase[0]) * np.cos(
            2 * np.pi * y / period + phase[1]
        )
        images.append((0.3 + np.maximum(peaks, 0) ** 2).astype(np.float32))
    return images


@pytest.fixture(scope="module")
def tiny_train_config(tiny_train_config):
    """The shared tiny run, noise-conditioned on realistic recordings: 60 steps,
    validated every 20 on 6 patches."""
    return partial(
        tiny_train_config,
        model=CONDITIONED,
        noise_model="stem",
        steps=60,
        validation_patches=6,
        validate_every=20,
    )


def test_recordings_have_the_requested_dose_and_keep_the_geometry():
    rng = np.random.default_rng(1)
    clean = _pool(1, 128)[0]
    noisy, expected = record_stem_image(clean, StemRecording(25.0, read_noise=0.5), rng)
    assert expected.mean() == pytest.approx(25.0, rel=1e-5)
    # Poisson plus read noise: the mean is unbiased and the variance is λ + σ_r².
    residual = noisy - expected
    n = residual.size
    assert abs(residual.mean()) < 5 * np.sqrt((25.0 + 0.25) / n)
    assert residual.var() == pytest.approx(25.25, rel=5 * np.sqrt(2 / n) + 0.01)
    jittered = StemRecording(25.0, row_jitter=0.4, drift=(1.0, 1.0))
    noisy, target = record_stem_image(clean, jittered, np.random.default_rng(2))
    # The target carries the same scan geometry as the recording (no column moves).
    assert not np.allclose(target, expected)
    assert np.corrcoef((noisy - target).ravel(), target.ravel())[0, 1] < 0.05


def test_drawn_recordings_span_the_configured_ranges():
    rng = np.random.default_rng(3)
    ranges = StemNoiseRanges(clean_fraction=0.1)
    drawn = [draw_recording(rng, ranges) for _ in range(2000)]
    doses = np.array([r.dose for r in drawn])
    noisy = doses[doses < ranges.clean_dose]
    assert noisy.min() >= 0.3 and noisy.max() <= 1000
    # Log-uniform: half of the doses below the geometric mean of the range (±4 σ).
    half = np.mean(noisy < np.sqrt(0.3 * 1000))
    assert abs(half - 0.5) < 4 * np.sqrt(0.25 / noisy.size)
    clean_share = np.mean(doses == ranges.clean_dose)
    assert abs(clean_share - 0.1) < 4 * np.sqrt(0.09 / 2000)
    assert any(r.row_jitter > 0 for r in drawn) and any(r.quantum > 0 for r in drawn)


def test_frame_batches_carry_the_noise_map_and_its_scale(tiny_train_config):
    config = tiny_train_config()
    pairs = prepare_pairs(_pool(), None, config, CONDITIONED)
    # A pool of 12 images: whole images are held out for validation.
    assert sum(p.validation_only for p in pairs) == 2
    batch = BatchSampler(pairs, config, CONDITIONED, np.random.default_rng(4)).sample()
    assert batch.inputs.shape == (4, 2, 32, 32) and batch.targets.shape == (4, 1, 32, 32)
    assert np.all(batch.inputs[:, 1] > 0)
    expected_scale = np.sqrt((batch.inputs[:, 1].astype(np.float64) ** 2).mean(axis=(1, 2)))
    np.testing.assert_allclose(batch.noise_scale, expected_scale, rtol=1e-5)


@pytest.mark.slow
def test_stem_training_learns_to_denoise_at_every_dose(tiny_train_config):
    run = train(tiny_train_config(steps=150), _pool(), seed=0, device="cpu")
    bundle = run.run_to_end()
    assert bundle.config.conditioned and bundle.metadata["noise"] == "stem"
    rng = np.random.default_rng(5)
    clean = _pool(14, 128)[13]
    for dose in (2.0, 50.0):
        noisy, expected = record_stem_image(clean, StemRecording(dose, read_noise=0.5), rng)
        out = denoise(noisy, bundle, device="cpu")
        span = float(np.ptp(expected))
        # 150 steps of a 4-channel network: already better than the noisy input.
        assert psnr(out, expected, data_range=span) > psnr(noisy, expected, data_range=span) + 1


def test_conditioned_models_refuse_noise_they_cannot_learn_from(tiny_train_config):
    with pytest.raises(ValueError, match="noise-conditioned"):
        train(tiny_train_config(noise_model="cdn"), _pool(), seed=0, device="cpu")


def test_stem_pool_images_must_be_signals(tiny_train_config):
    images = _pool()
    images[3] = images[3] - 1.0
    with pytest.raises(ValueError, match="clean image 3 has negative values"):
        train(tiny_train_config(), images, seed=0, device="cpu")


def test_frames_need_room_for_their_margin(tiny_train_config):
    with pytest.raises(ValueError, match=f"{FRAME_MARGIN} px of context"):
        train(tiny_train_config(patch_size=96), _pool(size=64), seed=0, device="cpu")


@pytest.fixture(scope="module")
def trained(tiny_train_config) -> ModelBundle:
    torch.manual_seed(0)
    return train(tiny_train_config(steps=100), _pool(), seed=1, device="cpu").run_to_end()


@pytest.mark.slow
def test_adaptation_keeps_the_starting_model_when_it_is_best(trained):
    rng = np.random.default_rng(6)
    clean = np.tile(_pool(1, 96)[0], (2, 2))
    noisy, _ = record_stem_image(clean, StemRecording(5.0), rng)
    settings = AdaptSettings(steps=20, patch_size=32, batch_size=4, validate_every=10)
    run = adapt(noisy, trained, settings=settings, device="cpu")
    records = list(run)
    assert len(records) == 20
    result = run.result()
    assert result.config == trained.config
    # The starting model was scored before the first step and competes for "best".
    assert run.history[0].step == 1
    assert result.metadata["best_step"] in (0, 10, 20)
    assert result.metadata["init_model"] is not None


def test_adaptation_needs_a_conditioned_model():
    cdn_like = ModelBundle(
        model=__import__("napari_pinned.nn.network", fromlist=["build_model"]).build_model(
            ModelConfig.preset("tiny")
        ),
        config=ModelConfig.preset("tiny"),
    )
    with pytest.raises(ValueError, match="not noise-conditioned"):
        adapt(np.zeros((64, 64)), cdn_like)


def test_a_detector_of_finite_bandwidth_correlates_the_noise_along_rows():
    clean = np.full((256, 256), 1.0, np.float32)
    a = 0.25
    noisy, expected = record_stem_image(
        clean, StemRecording(50.0, smear=a), np.random.default_rng(7)
    )
    np.testing.assert_allclose(expected, 50.0, rtol=1e-5)  # a flat signal stays flat
    noise = (noisy - expected).astype(np.float64)
    along = np.corrcoef(noise[:, 1:].ravel(), noise[:, :-1].ravel())[0, 1]
    across = np.corrcoef(noise[1:].ravel(), noise[:-1].ravel())[0, 1]
    # Lag-1 correlation of the filtered white noise: 2a(1 − 2a) / (2a² + (1 − 2a)²).
    predicted = 2 * a * (1 - 2 * a) / (2 * a**2 + (1 - 2 * a) ** 2)
    n = noise.size
    assert along == pytest.approx(predicted, abs=5 / np.sqrt(n))
    assert abs(across) < 5 / np.sqrt(n)
    with pytest.raises(ValueError, match="smear"):
        StemRecording(10.0, smear=0.4)


def test_a_scanning_detector_run_validates_with_and_without_afterglow(tiny_train_config):
    from napari_pinned.settings import SCANNING_DETECTOR
    from napari_pinned.training.data import validation_set

    plain = tiny_train_config()
    scanning = tiny_train_config(stem_noise=SCANNING_DETECTOR)
    pairs = prepare_pairs(_pool(), None, plain, CONDITIONED)
    a = validation_set(pairs, plain, CONDITIONED, np.random.default_rng(6))
    b = validation_set(pairs, scanning, CONDITIONED, np.random.default_rng(6))
    # Every other patch is recorded with the middle of the afterglow range: the others
    # are the plain run's, bit for bit.
    np.testing.assert_array_equal(a.inputs[0::2], b.inputs[0::2])
    assert not np.array_equal(a.inputs[1::2, 0], b.inputs[1::2, 0])
    # The targets keep the afterglow's smear (the expected image as recorded).
    assert not np.allclose(a.targets[1::2], b.targets[1::2])
    run = train(scanning, _pool(), seed=0, device="cpu")
    bundle = run.run_to_end()
    assert np.isfinite(bundle.metadata["val_psnr"])
    recorded = bundle.metadata["train_config"]["stem_noise"]
    assert recorded["afterglow_fraction"] == SCANNING_DETECTOR.afterglow_fraction


def test_the_held_out_choice_keeps_the_model_closer_to_the_truth():
    """Between a network that returns its input (a fresh noise-aware network starts as
    the identity) and the shipped default, the held-out risk picks the default, in
    either role; its estimate of the identity's error is the noise it leaves."""
    from napari_pinned.nn.network import build_model
    from napari_pinned.nn.resolve import load_model
    from napari_pinned.noise.estimate import estimate_noise
    from napari_pinned.training.adaptation_run import held_out_choice

    identity_config = ModelConfig.preset("tiny", normalization="robust", conditioning="noise-map")
    identity = ModelBundle(model=build_model(identity_config).eval(), config=identity_config)
    default = load_model("default")
    rng = np.random.default_rng(8)
    clean = np.tile(_pool(1, 128)[0], (2, 2))
    noisy, _ = record_stem_image(clean, StemRecording(10.0), rng)
    frames = [(noisy, noisy.shape[0] - 64, estimate_noise(noisy))]
    better = held_out_choice(identity, default, frames)
    assert better["kept"] == "adapted"
    worse = held_out_choice(default, identity, frames)
    assert worse["kept"] == "start"
    # The same probes; the variance's profile follows the start model's output, so
    # the identity's estimate moves a little with the role.
    assert worse["risk_adapted"] == pytest.approx(better["risk_start"], rel=0.02)
    assert better["risk_adapted"] < 0.5 * better["risk_start"]
