"""Training at scale: batches drawn by worker processes, bfloat16 arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_pinned.physics.simulate import simulate
from napari_pinned.settings import ModelConfig, StemNoiseRanges
from napari_pinned.training.data import BatchSampler, prepare_pairs
from napari_pinned.training.prefetch import ParallelBatches, step_generator
from napari_pinned.training.run import train


@pytest.fixture(scope="module")
def clean():
    return [simulate("SrTiO3", shape=(128, 64), pixel_size=0.2, seed=0).image]


def _weights(run) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in run.model.state_dict().items()}


def test_worker_batches_are_the_step_seeded_draws(clean, tiny_train_config):
    """Whichever worker draws it, step n's batch is the sampler's draw from step n's
    generator, in order."""
    config = tiny_train_config(batch_size=2)
    pairs = prepare_pairs(clean, None, config, config.model)
    sampler = BatchSampler(pairs, config, config.model, np.random.default_rng(0))
    batches = ParallelBatches(sampler, seed=5, workers=2)
    try:
        drawn = [batches.batch(step) for step in range(4)]
    finally:
        batches.close()
    for step, batch in enumerate(drawn):
        expected = sampler.sample(step_generator(5, step))
        np.testing.assert_array_equal(batch.inputs, expected.inputs)
        np.testing.assert_array_equal(batch.targets, expected.targets)
    assert not np.array_equal(drawn[0].inputs, drawn[1].inputs)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "model": ModelConfig.preset("tiny", normalization="robust", conditioning="noise-map"),
            "noise_model": "stem",
            "stem_noise": StemNoiseRanges(dose=(3.0, 30.0)),
        },
    ],
    ids=["patches", "recorded-frames"],
)
def test_a_run_does_not_depend_on_the_number_of_workers(clean, tiny_train_config, overrides):
    config = tiny_train_config(steps=3, batch_size=2, validate_every=3, **overrides)
    one = train(config, clean, seed=3, device="cpu", workers=1)
    one.run_to_end()
    two = train(config, clean, seed=3, device="cpu", workers=2)
    two.run_to_end()
    for name, value in _weights(one).items():
        assert torch.equal(value, two.model.state_dict()[name]), name


def test_a_run_with_workers_resumes_exactly(tmp_path, clean, tiny_train_config):
    config = tiny_train_config(steps=4, batch_size=2, validate_every=2)
    straight = train(config, clean, seed=3, device="cpu", workers=1)
    straight.run_to_end()
    first = train(config, clean, seed=3, device="cpu", workers=1)
    for _ in range(2):
        next(first)
    checkpoint = first.save_checkpoint(tmp_path / "run.ckpt")
    first.close()
    resumed = train(config, clean, seed=3, device="cpu", workers=2)
    resumed.load_checkpoint(checkpoint)
    resumed.run_to_end()
    for name, value in _weights(straight).items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    # The one-process stream is another one: its checkpoint does not continue this run.
    sequential = train(config, clean, seed=3, device="cpu")
    with pytest.raises(ValueError, match="other settings"):
        sequential.load_checkpoint(checkpoint)


def test_bfloat16_training_learns_and_keeps_float32_weights(clean, tiny_train_config):
    config = tiny_train_config(steps=6, batch_size=2, validate_every=6, learning_rate=3e-3)
    run = train(config, clean, seed=3, device="cpu", precision="bf16")
    start = _weights(run)
    run.run_to_end()
    bundle = run.result()
    assert bundle.metadata["precision"] == "bf16"
    assert all(p.dtype == torch.float32 for p in bundle.model.parameters())
    assert np.isfinite(bundle.metadata["val_psnr"])
    assert any(not torch.equal(v, run.model.state_dict()[k]) for k, v in start.items())
    # bfloat16 steps are not float32 steps: the weights differ after the same batches.
    exact = train(config, clean, seed=3, device="cpu", precision="fp32")
    exact.run_to_end()
    bf16 = run.model.state_dict()
    assert any(not torch.equal(v, bf16[k]) for k, v in exact.model.state_dict().items())


def test_precision_auto_is_float32_on_a_cpu_and_bad_values_are_refused(clean, tiny_train_config):
    config = tiny_train_config(steps=1, batch_size=2)
    assert train(config, clean, seed=0, device="cpu").precision == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        train(config, clean, seed=0, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="workers must be a non-negative integer"):
        train(config, clean, seed=0, device="cpu", workers=-1)


def _train_default_script():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[2] / "scripts" / "train_default.py"
    spec = importlib.util.spec_from_file_location("train_default", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_training_script_grows_the_default_and_trains_it_with_workers(tmp_path):
    """The recipe end to end, tiny: the shipped default grown one level deeper, batches
    from a worker, bfloat16 arithmetic, the best model written with its provenance."""
    from napari_pinned.nn.resolve import load_model

    script = _train_default_script()
    out = tmp_path / "grown.pt"
    argv = [
        "--scanning-detector", "--init", "default", "--grow", "--depth", "5",
        "--max-width-factor", "16", "--images", "4", "--shape", "192", "--steps", "2",
        "--batch", "2", "--patch", "64", "--threads", "1", "--workers", "1",
        "--precision", "bf16", "--out", str(out), "--checkpoint", str(tmp_path / "run.ckpt"),
    ]  # fmt: skip
    assert script.main(argv) == 0
    bundle = load_model(out)
    assert bundle.config.channels() == [8, 16, 32, 64, 128, 128]
    assert bundle.metadata["grown_from"]["depth"] == 4
    assert bundle.metadata["precision"] == "bf16"
    assert "--grow" in bundle.metadata["script"]


def test_fit_steps_sizes_the_run_to_the_time_left(tiny_train_config):
    from napari_pinned.training.run import TrainProgress

    script = _train_default_script()
    config = tiny_train_config(steps=100)
    progress = TrainProgress(
        step=200, total_steps=100, loss=None, learning_rate=0.0, elapsed=100.0, eta=0.0
    )
    # 0.5 s a step so far; 1000 s left, 5 % kept in hand: 1900 more steps.
    assert script.fitted_steps(config, progress, 1000.0).steps == 2100
    assert script.fitted_steps(config, progress, -5.0).steps == 201


def test_a_run_sized_to_the_time_is_exported_when_its_steps_are_done(tmp_path, monkeypatch):
    """``--fit-steps`` shortens the run: once the shortened run is done the best model is
    written (it was not: the end compared the step with ``--steps``)."""
    import dataclasses

    from napari_pinned.nn.resolve import load_model

    script = _train_default_script()
    monkeypatch.setattr(script, "_FIT_AFTER", 1)
    monkeypatch.setattr(
        script, "fitted_steps", lambda config, progress, left: dataclasses.replace(config, steps=2)
    )
    out = tmp_path / "fitted.pt"
    argv = [
        "--init", "default", "--grow", "--lattice", "--images", "4", "--shape", "192",
        "--steps", "50", "--fit-steps", "--minutes", "30", "--batch", "2", "--patch", "64",
        "--threads", "1", "--out", str(out), "--checkpoint", str(tmp_path / "run.ckpt"),
    ]  # fmt: skip
    assert script.main(argv) == 0
    bundle = load_model(out)
    assert bundle.metadata["steps"] == 2
    grown_from = load_model("default").config.conditioning  # the shipped default's own
    assert bundle.config.lattice and bundle.metadata["grown_from"]["conditioning"] == grown_from


def test_a_run_fine_tuned_from_a_file_records_it_and_draws_smears(tmp_path):
    """``--init FILE`` without ``--grow``: the model written names the file by content;
    ``--smear-fraction`` puts the detector's symmetric smear into the recordings,
    ``--resample-fraction`` frames resampled after recording."""
    import hashlib

    from napari_pinned.nn.model_files import default_model_path
    from napari_pinned.nn.resolve import load_model

    script = _train_default_script()
    start = default_model_path()
    out = tmp_path / "tuned.pt"
    argv = [
        "--scanning-detector", "--smear-fraction", "0.4", "--resample-fraction", "0.2",
        "--init", str(start),
        "--images", "4", "--shape", "192", "--steps", "2", "--batch", "2", "--patch", "64",
        "--threads", "1", "--out", str(out), "--checkpoint", str(tmp_path / "run.ckpt"),
    ]  # fmt: skip
    assert script.main(argv) == 0
    bundle = load_model(out)
    digest = hashlib.sha256(start.read_bytes()).hexdigest()
    assert digest in bundle.metadata["init_model"]
    assert "grown_from" not in bundle.metadata
    stem = bundle.metadata["train_config"]["stem_noise"]
    assert stem["smear_fraction"] == 0.4 and stem["afterglow_fraction"] > 0
    assert "smeared symmetrically" in bundle.metadata["training_data"]
    assert stem["resample_fraction"] == 0.2
    assert "resampled after recording" in bundle.metadata["training_data"]
