"""Training without clean targets (blind-spot), with the dose noise model, and the
masked loss they rely on."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from napari_pinned.denoising.denoiser import denoise
from napari_pinned.nn.losses import pinned_loss
from napari_pinned.quality.metrics import psnr
from napari_pinned.settings import LossWeights, ModelConfig
from napari_pinned.training.data import blind_spot as _blind_spot
from napari_pinned.training.run import train


@pytest.fixture(scope="module")
def tiny_train_config(tiny_train_config):
    """The shared tiny run, with a plain (non-residual) network and 20 steps."""
    return partial(tiny_train_config, model=ModelConfig.preset("tiny", residual=False), steps=20)


def test_blind_spot_hides_pixels_behind_a_neighbour():
    image = np.arange(40 * 30, dtype=np.float32).reshape(40, 30)  # every value unique
    masked, mask = _blind_spot(image, 0.05, np.random.default_rng(0))
    assert mask.sum() == round(0.05 * image.size)
    np.testing.assert_array_equal(masked[~mask], image[~mask])
    for y, x in zip(*np.nonzero(mask), strict=True):
        value = masked[y, x]
        assert value != image[y, x]
        sy, sx = np.divmod(int(value), image.shape[1])
        assert abs(sy - y) <= 2 and abs(sx - x) <= 2  # a 5×5 neighbour (or its mirror)


def test_masked_loss_counts_only_hidden_pixels_and_uses_the_reference():
    pred = torch.zeros(1, 1, 8, 8)
    target = torch.ones(1, 1, 8, 8)
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[0, 0, 2, 3] = True
    target[0, 0, 2, 3] = 3.0
    _, terms = pinned_loss(pred, target, LossWeights.none(), mask=mask)
    assert terms.mse == pytest.approx(9.0)
    reference = torch.full((1, 1, 8, 8), 0.5)
    weights = LossWeights(tv=0.0, sf=0.0, brightness=1.0, contrast=0.0)
    total, terms = pinned_loss(pred, target, weights, mask=mask, reference=reference)
    assert terms.brightness == pytest.approx(0.5)  # against the reference, not the target
    assert float(total) == pytest.approx(9.5)


@pytest.mark.slow
def test_blind_spot_training_denoises_without_a_clean_image(lattice_image, tiny_train_config):
    """Gaussian noise of σ = 30 on a lattice: the network never sees the clean image,
    yet its output is closer to it than the noisy input by far more than the ≈ 0.1 dB
    that separates noise draws at this size (measured: 18.8 → 23.5 dB; after 150 steps
    the network still outputs a nearly flat image, so fewer steps would not test it)."""
    clean = [lattice_image(seed=s) for s in range(2)]
    rng = np.random.default_rng(5)
    noisy = [np.clip(c + rng.normal(0, 30, c.shape), 0, 255).astype(np.float32) for c in clean]
    config = tiny_train_config(self_supervised="blind-spot", steps=400, mask_fraction=0.05)
    bundle = train(config, noisy, seed=0, device="cpu").run_to_end()
    assert bundle.metadata["noise"] == "blind-spot"
    test_clean = lattice_image(seed=9)
    test_noisy = np.clip(test_clean + rng.normal(0, 30, test_clean.shape), 0, 255)
    out = denoise(test_noisy.astype(np.float32), bundle, device="cpu")
    before = psnr(test_noisy, test_clean, data_range=255)
    after = psnr(out, test_clean, data_range=255)
    assert after > before + 3.0


@pytest.mark.parametrize("model", ["dose", "mix"])
def test_dose_noise_models_train_and_are_recorded(model, lattice_image, tiny_train_config):
    run = train(
        tiny_train_config(noise_model=model, steps=4), [lattice_image()], seed=0, device="cpu"
    )
    bundle = run.run_to_end()
    assert bundle.metadata["noise"] == model
    assert bundle.metadata["dose_counts"] == [5.0, 500.0]
    assert np.isfinite(bundle.metadata["val_psnr"])


def test_dose_validation_spans_strong_to_weak_noise(lattice_image, tiny_train_config):
    """Validation patches go from the most electrons (weakest noise) to the fewest."""
    config = tiny_train_config(noise_model="dose", validation_patches=6, dose_counts=(2.0, 2000.0))
    run = train(config, [lattice_image(size=160)], seed=0, device="cpu")
    err = np.abs(run._val_inputs.numpy() - run._val_targets).mean(axis=(1, 2, 3))
    assert err[-1] > 5 * err[0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"noise_model": "poisson"}, "noise_model"),
        ({"self_supervised": "noise2self"}, "self_supervised"),
        ({"dose_counts": (0.0, 10.0)}, "dose_counts"),
        ({"mask_fraction": 0.5}, "mask_fraction"),
    ],
)
def test_bad_self_supervised_settings_are_refused(overrides, message, tiny_train_config):
    with pytest.raises(ValueError, match=message):
        tiny_train_config(**overrides)


def test_blind_spot_refuses_a_second_image_set(lattice_image, tiny_train_config):
    with pytest.raises(ValueError, match="noisy images alone"):
        train(
            tiny_train_config(self_supervised="blind-spot"),
            [lattice_image()],
            [lattice_image()],
            device="cpu",
        )


def test_blind_spot_frames_are_told_the_noise_denoise_tells(tiny_train_config):
    """Noise smeared along the scan: a pixel carries several times what the fit sees.
    The frames a model adapts on, and the held-out choice, are told what ``denoise``
    tells it afterwards (told the raw fit, an adapted model met noise up to 30× stronger
    at use than in training)."""
    from napari_pinned.noise.correlation import pixel_equivalent
    from napari_pinned.noise.estimate import estimate_noise
    from napari_pinned.noise.scanning import apply_afterglow
    from napari_pinned.physics.simulate import simulate
    from napari_pinned.settings import ModelConfig
    from napari_pinned.training.data import prepare_pairs

    image = simulate("SrTiO3", shape=(256, 256), pixel_size=0.1, seed=0).image
    expected = image.astype(np.float64) / image.mean() * 20.0
    counts = np.random.default_rng(0).poisson(expected).astype(np.float32)
    noisy = apply_afterglow(counts, 2.0)
    config = tiny_train_config(self_supervised="blind-spot")
    model = ModelConfig.preset("tiny", conditioning="noise-map", normalization="robust")
    (pair,) = prepare_pairs([noisy], None, config, model)
    told = pixel_equivalent(estimate_noise(noisy), noisy)
    assert told.correlation > 2.0
    assert pair.noise == told
