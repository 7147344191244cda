"""A fine-tune's patch size: the one the start model learned from."""

from __future__ import annotations

import pytest

from napari_pinned.nn.resolve import load_model
from napari_pinned.training.data import fine_tune_patch_size


def test_the_shipped_default_is_fine_tuned_on_the_patches_it_learned_from():
    default = load_model("default", device="cpu")
    assert fine_tune_patch_size(default.metadata, 64) == default.metadata["patch_size"] == 128


@pytest.mark.parametrize(
    "metadata",
    [{}, {"patch_size": None}, {"patch_size": True}, {"patch_size": 4}, {"patch_size": "128"}],
)
def test_without_a_usable_record_the_setting_stands(metadata):
    assert fine_tune_patch_size(metadata, 64) == 64
