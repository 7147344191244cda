"""``napari-pinned train`` with realistic recordings (``--noise stem``): how the shipped
default learned, and the only synthetic noise it can be fine-tuned on."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned.cli.entry import build_parser, main
from napari_pinned.cli.train import _model_config
from napari_pinned.io.tiff import write_tiff
from napari_pinned.nn.resolve import load_model
from napari_pinned.settings import NOISE_AWARE_MODEL, TrainConfig

_TINY = ["--steps", "2", "--batch-size", "2", "--patch-size", "32", "--threads", "1"]


def test_fine_tuning_the_default_draws_realistic_recordings_unless_told_otherwise(tmp_path, capsys):
    # The help's example, without --noise: the default is noise-aware, so stem noise.
    out = tmp_path / "srtio3.pt"
    argv = ["train", "--init", "default", "--materials", "SrTiO3", "--doses", "1", "30"]
    assert main([*argv, *_TINY, "-o", str(out)]) == 0
    assert "synthetic stem noise" in capsys.readouterr().err
    tuned = load_model(str(out), device="cpu")
    assert tuned.config == load_model("default", device="cpu").config
    recorded = tuned.metadata["train_config"]
    assert recorded["noise_model"] == "stem"
    assert tuple(recorded["stem_noise"]["dose"]) == (1.0, 30.0)


def test_a_fine_tune_takes_the_patch_size_the_start_model_learned_from(tmp_path, capsys):
    out = tmp_path / "m.pt"
    argv = ["train", "--init", "default", "--materials", "SrTiO3", "--steps", "1"]
    assert main([*argv, "--batch-size", "1", "--threads", "1", "-o", str(out)]) == 0
    learned = load_model("default", device="cpu").metadata["patch_size"]
    assert load_model(str(out), device="cpu").metadata["patch_size"] == learned
    assert learned != TrainConfig().patch_size  # so that the test tells the two apart
    capsys.readouterr()
    # Too small for those patches: one line naming the file, before training.
    small = tmp_path / "small.tif"
    write_tiff(small, np.ones((150, 150), np.float32))
    argv = ["train", "--init", "default", "--clean", str(small), "--steps", "1"]
    assert main([*argv, "-o", str(tmp_path / "s.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(small) in err and f"{learned}-pixel patches" in err and "\n" not in err


def test_a_blind_spot_fine_tune_keeps_the_core_patch_size(tmp_path):
    noisy = tmp_path / "scan.tif"
    rng = np.random.default_rng(0)
    write_tiff(noisy, rng.poisson(5.0, (256, 256)).astype(np.float32))
    out = tmp_path / "m.pt"
    argv = ["train", "--blind-spot", "--noisy", str(noisy), "--init", "default"]
    assert main([*argv, "--steps", "1", "--batch-size", "1", "-o", str(out)]) == 0
    assert load_model(str(out), device="cpu").metadata["patch_size"] == TrainConfig().patch_size


@pytest.mark.parametrize("noise", ["cdn", "dose", "mix"])
def test_noise_the_default_cannot_learn_from_is_one_line_before_any_data(noise, tmp_path, capsys):
    argv = ["train", "--init", "default", "--materials", "SrTiO3", "--noise", noise]
    assert main([*argv, *_TINY, "-o", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--noise stem" in err and f"--noise {noise}" in err
    assert not (tmp_path / "m.pt").exists()


def test_a_new_network_on_realistic_recordings_is_noise_aware_as_in_the_dock():
    parse = build_parser().parse_args
    aware = _model_config(parse(["train", "--noise", "stem", "-o", "m.pt"]))
    assert (aware.normalization, aware.conditioning) == tuple(NOISE_AWARE_MODEL.values())
    plain = _model_config(parse(["train", "-o", "m.pt"]))
    assert plain.conditioning == "none"
    # Without --init and --noise the core's default noise is trained, as before.
    assert parse(["train", "-o", "m.pt"]).noise is None
    assert tuple(parse(["train", "-o", "m.pt"]).doses) == TrainConfig().stem_noise.dose
