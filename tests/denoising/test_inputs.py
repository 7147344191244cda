"""What denoise() and iter_denoise() accept (issue 21): a CPU torch tensor is taken as
the array it holds; other wrong types are one ValueError line saying what to pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_pinned.denoising.denoiser import denoise, iter_denoise
from napari_pinned.settings import ModelConfig


@pytest.fixture(scope="module")
def bundle(random_bundle):
    return random_bundle(ModelConfig.preset("tiny"))


def test_a_cpu_tensor_is_denoised_as_its_array(bundle, lattice_image):
    image = lattice_image(size=64)
    expected = denoise(image, bundle, device="cpu")
    tensor = torch.from_numpy(image.copy()).requires_grad_(True)
    result = denoise(tensor, bundle, device="cpu")
    assert isinstance(result, np.ndarray)
    np.testing.assert_array_equal(result, expected)


def test_a_tensor_off_the_cpu_is_refused_with_what_to_pass(bundle):
    tensor = torch.empty((64, 64), device="meta")
    with pytest.raises(ValueError, match=r"on meta.*image\.cpu\(\)\.numpy\(\)") as info:
        denoise(tensor, bundle, device="cpu")
    assert "\n" not in str(info.value)


def _fail(*args, **kwargs):
    raise AssertionError("the model was made ready before the arguments were checked")


@pytest.mark.parametrize("noise", ["high", 0.5, {"gain": 1.0}])
def test_noise_must_be_a_noise_estimate(bundle, lattice_image, monkeypatch, noise):
    monkeypatch.setattr("napari_pinned.denoising.denoiser.make_denoiser", _fail)
    image = lattice_image(size=64)
    with pytest.raises(ValueError, match="noise must be a NoiseEstimate") as info:
        denoise(image, bundle, noise=noise)
    assert type(noise).__name__ in str(info.value)
    with pytest.raises(ValueError, match="noise must be a NoiseEstimate"):
        next(iter_denoise(image, bundle, noise=noise))


def test_an_array_whose_dtype_numpy_does_not_know_is_one_line(bundle):
    class Odd:
        shape = (64, 64)
        dtype = "not-a-dtype"

    with pytest.raises(ValueError, match="image has dtype 'not-a-dtype'"):
        denoise(Odd(), bundle, device="cpu")
