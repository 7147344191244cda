"""The settings dataclasses: torch-free, one to_dict/from_dict, auto validation interval."""

from __future__ import annotations

import subprocess
import sys

import pytest

from napari_pinned.settings import (
    LossWeights,
    ModelConfig,
    TrainConfig,
    auto_validate_every,
)


def test_settings_import_without_torch():
    code = "import sys, napari_pinned.settings; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_train_config_round_trips_through_a_plain_dict():
    config = TrainConfig(
        model=ModelConfig.preset("tiny", normalization="robust", conditioning="noise-map"),
        loss_weights=LossWeights.none(),
        steps=40,
        noise_levels=(0.5, 2.0),
        noise_model="stem",
        init_model="default",
    )
    plain = config.to_dict()
    assert plain["model"]["width"] == 4 and plain["noise_levels"] == [0.5, 2.0]
    assert TrainConfig.from_dict(plain) == config
    with pytest.raises(ValueError, match="unknown training setting"):
        TrainConfig.from_dict({**plain, "stepz": 3})


def test_validate_every_none_is_the_automatic_interval():
    assert TrainConfig(steps=2000).validation_interval == 100
    assert TrainConfig(steps=200).validation_interval == auto_validate_every(200) == 10
    assert TrainConfig(steps=30).validation_interval == 5
    assert TrainConfig(steps=30, validate_every=7).validation_interval == 7


def test_init_model_is_a_name_or_a_path(tmp_path):
    assert TrainConfig(init_model=tmp_path / "m.pt").init_model == str(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="train"):
        TrainConfig(init_model=object())


def test_the_cli_reads_the_training_defaults():
    from napari_pinned.cli.entry import build_parser
    from napari_pinned.cli.train import _settings

    args = build_parser().parse_args(["train", "--materials", "Si", "-o", "m.pt"])
    defaults = TrainConfig()
    # The patch size is left to a model to fine-tune (the core's without one).
    assert (args.steps, args.batch_size, _settings(args).patch_size, args.lr) == (
        defaults.steps,
        defaults.batch_size,
        defaults.patch_size,
        defaults.learning_rate,
    )
    assert tuple(args.levels) == defaults.noise_levels
    assert tuple(args.dose_counts) == defaults.dose_counts
    assert tuple(args.doses) == defaults.stem_noise.dose
