"""Training loop: data checks, learning, validation, stop-and-keep-best, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_pinned.nn.network import ModelBundle
from napari_pinned.physics.simulate import simulate
from napari_pinned.settings import ModelConfig
from napari_pinned.training.run import TrainProgress, train


def test_progress_records_every_step_and_fields(lattice_image, tiny_train_config):
    run = train(tiny_train_config(steps=12), [lattice_image()], seed=0, device="cpu")
    records = list(run)
    assert [p.step for p in records] == list(range(1, 13))
    assert all(isinstance(p, TrainProgress) and p.total_steps == 12 for p in records)
    validated = [p.step for p in records if p.val_psnr is not None]
    assert validated == [10, 12]  # every validate_every, and always the last step
    assert records[-1].eta == 0.0
    assert records[-1].fraction == 1.0
    assert all(np.isfinite(p.loss.total) and p.learning_rate > 0 for p in records)


@pytest.mark.slow
def test_training_reduces_loss_and_raises_validation_psnr(lattice_image, tiny_train_config):
    clean = [lattice_image(seed=s) for s in range(2)]
    config = tiny_train_config(
        model=ModelConfig.preset("tiny", residual=False), steps=80, noise_levels=(1.0, 1.0)
    )
    run = train(config, clean, seed=1, device="cpu")
    records = list(run)
    early = np.mean([p.loss.total for p in records[:10]])
    late = np.mean([p.loss.total for p in records[-10:]])
    assert late < 0.5 * early
    validated = [p.val_psnr for p in records if p.val_psnr is not None]
    # 80 steps take a fresh network from ~6 dB to ~11 dB on held-out CDN level-1 patches.
    assert validated[-1] > validated[0] + 3.0
    bundle = run.result()
    assert isinstance(bundle, ModelBundle)
    assert bundle.metadata["steps"] == 80
    assert bundle.metadata["val_psnr"] == pytest.approx(max(validated))


def test_paired_mode_uses_given_noisy_images(lattice_image, tiny_train_config):
    clean = lattice_image()
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 20, clean.shape), 0, 255)
    run = train(
        tiny_train_config(steps=5), [clean], [noisy.astype(np.float32)], seed=0, device="cpu"
    )
    list(run)
    assert run.result().metadata["noise"] == "paired"


def test_stop_between_steps_ends_the_run_and_keeps_best(lattice_image, tiny_train_config):
    run = train(
        tiny_train_config(steps=1000, validate_every=5), [lattice_image()], seed=0, device="cpu"
    )
    for progress in run:
        if progress.step == 7:
            run.stop()
    assert run.step == 7 and run.finished
    bundle = run.result()  # validates the step-7 weights too, then returns the best
    assert bundle.metadata["steps"] == 7
    assert bundle.metadata["best_step"] in (5, 7)
    validated = [p.val_psnr for p in run.history if p.val_psnr is not None]
    assert bundle.metadata["val_psnr"] >= max(validated)


def test_stop_during_a_step_finishes_it_and_validates(lattice_image, tiny_train_config):
    """A GUI calls stop() from another thread while a step runs."""
    run = train(
        tiny_train_config(steps=1000, validate_every=50), [lattice_image()], seed=0, device="cpu"
    )
    next(run)
    original = run._train_step

    def step_then_stop(lr):
        terms = original(lr)
        run.stop()  # arrives while this step is in progress
        return terms

    run._train_step = step_then_stop
    records = list(run)
    assert [p.step for p in records] == [2]
    assert records[-1].stopped and records[-1].val_psnr is not None
    assert run.result().metadata["best_step"] == 2


def test_breaking_out_of_the_loop_still_gives_a_model(lattice_image, tiny_train_config):
    run = train(tiny_train_config(steps=100), [lattice_image()], seed=0, device="cpu")
    for progress in run:
        if progress.step == 3:
            break
    bundle = run.result()
    assert bundle.metadata["steps"] == 3
    out = bundle.model(torch.zeros(1, 1, 32, 32))
    assert out.shape == (1, 1, 32, 32)


def test_same_seed_same_weights_on_cpu(lattice_image, tiny_train_config):
    def final_weights(seed: int) -> torch.Tensor:
        run = train(tiny_train_config(steps=4), [lattice_image()], seed=seed, device="cpu")
        bundle = run.run_to_end()
        return torch.cat([p.detach().flatten() for p in bundle.model.parameters()])

    a, b, c = final_weights(3), final_weights(3), final_weights(4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_fine_tune_starts_from_given_model(lattice_image, tiny_train_config):
    first = train(tiny_train_config(steps=3), [lattice_image()], seed=0, device="cpu").run_to_end()
    run = train(
        tiny_train_config(steps=2), [lattice_image()], seed=5, device="cpu", init_model=first
    )
    assert run.model_config == first.config
    before = torch.cat([p.flatten() for p in run.model.parameters()])
    reference = torch.cat([p.flatten() for p in first.model.parameters()])
    assert torch.equal(before, reference)


def test_result_before_any_step_is_an_error(lattice_image, tiny_train_config):
    run = train(tiny_train_config(), [lattice_image()], seed=0, device="cpu")
    with pytest.raises(RuntimeError, match="no training step"):
        run.result()


@pytest.mark.parametrize(
    ("clean", "noisy", "message"),
    [
        ([np.zeros((96, 96, 3), np.float32)], None, "RGB"),
        ([np.full((96, 96), np.nan, np.float32)], None, "NaN"),
        ([np.zeros((30, 30), np.float32)], None, "too small"),
        ([np.zeros((96, 96), np.float32)], [np.zeros((96, 80), np.float32)], "must match"),
        ([np.zeros((96, 96), np.float32)] * 2, [np.zeros((96, 96), np.float32)], "one noisy"),
        ([], None, "no clean"),
    ],
)
def test_bad_training_data_is_rejected_clearly(clean, noisy, message, tiny_train_config):
    with pytest.raises(ValueError, match=message):
        train(tiny_train_config(), clean, noisy, seed=0, device="cpu")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"steps": 0}, "steps"),
        ({"patch_size": 4}, "patch_size"),
        ({"noise_levels": (3.0, 2.0)}, "noise_levels"),
        ({"learning_rate": -1.0}, "learning_rate"),
    ],
)
def test_bad_config_is_rejected(overrides, message, tiny_train_config):
    with pytest.raises(ValueError, match=message):
        tiny_train_config(**overrides)


def test_checkpoint_resume_takes_the_same_steps(tmp_path, tiny_train_config):
    """A run interrupted after 3 steps and resumed from its checkpoint ends with exactly
    the weights of an uninterrupted 6-step run (optimiser moments and RNG restored)."""
    clean = [simulate("SrTiO3", shape=64, pixel_size=0.2, seed=0).image]
    config = tiny_train_config(steps=6, batch_size=2, validate_every=2)
    straight = train(config, clean, seed=3, device="cpu")
    straight.run_to_end()

    first = train(config, clean, seed=3, device="cpu")
    for _ in range(3):
        next(first)
    checkpoint = first.save_checkpoint(tmp_path / "run.ckpt")
    resumed = train(config, clean, seed=3, device="cpu")
    resumed.load_checkpoint(checkpoint)
    assert resumed.step == 3
    resumed.run_to_end()
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert resumed.result().metadata["val_psnr"] == straight.result().metadata["val_psnr"]


def test_checkpoint_from_other_settings_is_refused(tmp_path, tiny_train_config):
    clean = [simulate("SrTiO3", shape=64, pixel_size=0.2, seed=0).image]
    config = tiny_train_config(steps=4, batch_size=2)
    run = train(config, clean, seed=3, device="cpu")
    next(run)
    checkpoint = run.save_checkpoint(tmp_path / "run.ckpt")
    other = train(config, clean, seed=4, device="cpu")
    with pytest.raises(ValueError, match="other settings"):
        other.load_checkpoint(checkpoint)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable training checkpoint"):
        other.load_checkpoint(garbage)
