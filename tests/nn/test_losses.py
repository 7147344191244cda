"""The PINNED loss terms against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_pinned.nn.losses import (
    LossTerms,
    brightness_loss,
    contrast_loss,
    pinned_loss,
    spectral_fidelity_loss,
    tv_loss,
)
from napari_pinned.settings import LossWeights

# Two 3×3 images; the second is twice the first.
A = np.array([[0.0, 1.0, 3.0], [1.0, 1.0, 1.0], [2.0, 0.0, 0.0]])
PRED_NP = np.stack([A, 2 * A])[:, None]  # (2, 1, 3, 3)
TARGET_NP = np.stack([np.full((3, 3), 1.0), A.T])[:, None]
PRED = torch.tensor(PRED_NP, dtype=torch.float32)
TARGET = torch.tensor(TARGET_NP, dtype=torch.float32)


def test_tv_by_hand():
    # Vertical differences of A: [[1, 0, -2], [1, -1, -1]] → |·| sums to 6 over 6 entries.
    # Horizontal differences:   [[1, 2], [0, 0], [-2, 0]] → |·| sums to 5 over 6 entries.
    # 2A doubles both.  Means over the batch: vertical (6 + 12)/12, horizontal (5 + 10)/12.
    expected = ((6 + 12) / 12 + (5 + 10) / 12) / 2
    assert tv_loss(PRED).item() == pytest.approx(expected, rel=1e-6)


def test_tv_is_per_pixel_so_independent_of_size():
    # A linear ramp a·i + b·j has |Δ_i| = |a| and |Δ_j| = |b| everywhere.
    for size in (4, 17, 64):
        i, j = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        ramp = (0.3 * i - 0.1 * j).float()[None, None]
        assert tv_loss(ramp).item() == pytest.approx((0.3 + 0.1) / 2, rel=1e-5)


def test_tv_of_a_single_pixel_is_zero():
    assert tv_loss(torch.ones(2, 1, 1, 1)).item() == 0.0


def test_spectral_fidelity_matches_numpy_fft():
    mag_pred = np.abs(np.fft.fft2(PRED_NP, norm="ortho"))
    mag_target = np.abs(np.fft.fft2(TARGET_NP, norm="ortho"))
    expected = np.mean(np.abs(mag_pred - mag_target))
    assert spectral_fidelity_loss(PRED, TARGET).item() == pytest.approx(expected, rel=1e-5)


def test_spectral_fidelity_ignores_circular_shifts_but_not_contrast():
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    shifted = torch.roll(x, shifts=(3, 5), dims=(-2, -1))
    assert spectral_fidelity_loss(shifted, x).item() < 1e-6
    assert spectral_fidelity_loss(1.5 * x, x).item() > 0.1


def test_brightness_by_hand():
    # Means: mean(A) = 9/9 = 1, mean(2A) = 2; targets: 1 and mean(Aᵀ) = 1.
    expected = (abs(1 - 1) + abs(2 - 1)) / 2
    assert brightness_loss(PRED, TARGET).item() == pytest.approx(expected, rel=1e-6)


def test_contrast_by_hand():
    # Population std of A: values 0,1,3,1,1,1,2,0,0 around mean 1 → squares 1,0,4,0,0,0,1,1,1
    # sum to 8, so σ(A) = sqrt(8/9); σ(2A) = 2σ(A); σ(const) = 0; σ(Aᵀ) = σ(A).
    sigma = math.sqrt(8 / 9)
    expected = (abs(sigma - 0) + abs(2 * sigma - sigma)) / 2
    assert contrast_loss(PRED, TARGET).item() == pytest.approx(expected, abs=2e-6)
    np.testing.assert_allclose(sigma, np.std(A))


def test_all_zero_weights_is_exactly_mse():
    rng = torch.Generator().manual_seed(1)
    pred, target = torch.rand(4, 1, 12, 10, generator=rng), torch.rand(4, 1, 12, 10, generator=rng)
    total, terms = pinned_loss(pred, target, LossWeights.none())
    assert torch.equal(total, F.mse_loss(pred, target))
    assert terms.total == terms.mse
    expected = np.mean((pred.numpy().astype(np.float64) - target.numpy()) ** 2)
    assert terms.mse == pytest.approx(expected, rel=1e-5)


def test_terms_match_the_individual_functions():
    weights = LossWeights(tv=0.3, sf=0.2, brightness=0.5, contrast=0.7)
    total, terms = pinned_loss(PRED, TARGET, weights)
    parts = {
        "mse": F.mse_loss(PRED, TARGET).item(),
        "tv": tv_loss(PRED).item(),
        "sf": spectral_fidelity_loss(PRED, TARGET).item(),
        "brightness": brightness_loss(PRED, TARGET).item(),
        "contrast": contrast_loss(PRED, TARGET).item(),
    }
    assert isinstance(terms, LossTerms)
    for name, value in parts.items():
        assert getattr(terms, name) == pytest.approx(value, rel=1e-6)
    combined = parts["mse"] + sum(getattr(weights, k) * parts[k] for k in weights.to_dict())
    assert terms.total == pytest.approx(combined, rel=1e-6)
    assert total.item() == pytest.approx(combined, rel=1e-6)
    assert set(terms.as_dict()) == {"total", "mse", "tv", "sf", "brightness", "contrast"}
    assert all(isinstance(v, float) for v in terms.as_dict().values())


def test_unweighted_terms_are_logged_but_carry_no_gradient():
    pred = PRED.clone().requires_grad_(True)
    total, terms = pinned_loss(pred, TARGET, LossWeights.none())
    total.backward()
    expected_grad = 2 * (PRED - TARGET) / PRED.numel()
    torch.testing.assert_close(pred.grad, expected_grad)
    assert terms.tv > 0 and terms.sf > 0 and terms.contrast > 0


@pytest.mark.parametrize("kind", ["random", "constant prediction", "prediction equals target"])
def test_gradients_are_finite(kind):
    rng = torch.Generator().manual_seed(2)
    target = torch.rand(3, 1, 16, 16, generator=rng)
    if kind == "random":
        pred = torch.rand(3, 1, 16, 16, generator=rng)
    elif kind == "constant prediction":  # σ = 0 and all non-DC Fourier magnitudes are 0
        pred = torch.full((3, 1, 16, 16), 0.5)
    else:
        pred = target.clone()
    pred.requires_grad_(True)
    weights = LossWeights(tv=1.0, sf=1.0, brightness=1.0, contrast=1.0)
    total, _ = pinned_loss(pred, target, weights)
    total.backward()
    assert torch.isfinite(pred.grad).all()
    if kind == "random":
        assert pred.grad.abs().sum() > 0


def test_gradients_reach_network_parameters():
    from napari_pinned.nn.network import build_model
    from napari_pinned.settings import ModelConfig

    torch.manual_seed(0)
    net = build_model(ModelConfig.preset("tiny"))
    x = torch.rand(2, 1, 24, 24)
    total, _ = pinned_loss(net(x), torch.rand(2, 1, 24, 24), LossWeights())
    total.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_loss_weights_defaults_and_round_trip():
    defaults = LossWeights()
    assert all(v > 0 for v in defaults.to_dict().values())
    assert all(v == 0 for v in LossWeights.none().to_dict().values())
    assert LossWeights.from_dict(defaults.to_dict()) == defaults
    assert LossWeights.from_dict({"tv": 0.5}) == LossWeights(tv=0.5)


@pytest.mark.parametrize(
    "call",
    [
        lambda: LossWeights(tv=-0.1),
        lambda: LossWeights(sf=float("nan")),
        lambda: LossWeights(contrast="high"),
        lambda: LossWeights.from_dict({"tv": 0.1, "edges": 1.0}),
        lambda: pinned_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5), LossWeights()),
        lambda: tv_loss(torch.zeros(4, 4)),
    ],
)
def test_invalid_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
