"""The PINNED training loss: MSE plus physics-inspired terms.

From Awan et al., "Physics Informed Neural Network Enhanced Denoising for Atomic
Resolution STEM Imaging" (PINNED), Methods, loss function:

    L_total = L_MSE + λ_TV·L_TV + λ_SF·L_SF + λ_B·L_B + λ_C·L_C

* L_TV, total variation of the prediction x̂ (paper: Σ_ij |x̂_i+1,j − x̂_ij| + |x̂_i,j+1 − x̂_ij|).
  We take the mean of the absolute forward differences, averaged over the two
  directions, i.e. the paper's sum divided by 2N: λ_TV then means the same for any
  patch size.
* L_SF, spectral fidelity: (1/N) Σ_k ||F(x̂)(k)| − |F(x)(k)||, with an orthonormal 2D FFT
  so magnitudes are on the pixel scale (Parseval) whatever the patch size.
* L_B = |μ(x̂) − μ(x)| and L_C = |σ(x̂) − σ(x)|, per image (σ the population standard
  deviation), averaged over the batch.

All terms are computed in float32 on images in model units (paper intensities / 255).
With all λ = 0 the total is exactly the MSE (the paper's ablation baseline).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from napari_pinned.config import config_from_dict, config_to_dict

#: Added to the variance before the square root: the gradient of sqrt is infinite at a
#: constant prediction (a dead network) and would turn into NaN; the value moves by
#: at most 1e-6 (sqrt of this), far below any contrast that matters.
_VARIANCE_EPS = 1e-12


@dataclass(frozen=True)
class LossWeights:
    """The λ of the paper's total loss.

    The paper gives no values.  These defaults are the "paper" configuration of our
    benchmarks; ``benchmarks/quality.py`` measured them against all λ = 0 (plain MSE)
    for the paper's network trained the paper's way, and plain MSE scored better in
    PSNR, SSIM and FSC at every CDN level (docs/benchmarks.md), so the shipped default
    model is trained with λ = 0.  Their magnitudes come from the size of each term
    next to the MSE, measured in model units (paper intensities / 255) on 64- and
    128-pixel patches of simulated SrTiO3, GaN and graphene with CDN level 3 (fresh
    networks: width 32, depth 3, applied to the noisy patches):

    =============================  ===========  ===========  =====  ==========  ==========
    prediction                     MSE          TV           SF     B           C
    =============================  ===========  ===========  =====  ==========  ==========
    noisy input (≈ residual init)  0.19–0.22    0.38         0.30   0.19–0.31   0.11–0.22
    fresh "unet" network           0.16–0.21    0.43–0.45    0.31   0.007–0.13  0.16–0.27
    fresh "paper" network          0.16–0.40    0.34–0.44    0.11   0.21–0.43   0.08–0.26
    clean + 0.03 error (≈ 30 dB)   9e-4         0.04–0.065   0.02   3e-4        2e-3–4e-3
    =============================  ===========  ===========  =====  ==========  ==========

    Every physics term is an L1 distance, so its gradient norm relative to the MSE's
    grows as 1/RMSE while training converges: λ/(2·RMSE) for SF, B and C, ≈ 0.65·λ/RMSE
    for TV.  At 30 dB (RMSE 0.03): λ_TV = 0.01 → ≈ 0.2× the MSE's gradient, a mild
    smoothing prior (TV of a clean lattice stays ≈ 0.05 because it penalises the sharp
    columns themselves, so λ_TV must stay small); λ_SF = 0.05 → ≈ 0.8×, on a par with
    the MSE; λ_B = λ_C = 0.1 → ≈ 1.7×, but these act only on each image's mean and
    spread.  At initialisation the weighted terms add up to 0.15–0.4× the MSE for both
    presets, so the MSE leads early training.
    """

    tv: float = 0.01
    sf: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"loss weight {f.name} must be a finite number >= 0, got {value!r}"
                )

    @classmethod
    def none(cls) -> LossWeights:
        """All λ = 0: plain MSE, the ablation without physics terms."""
        return cls(tv=0.0, sf=0.0, brightness=0.0, contrast=0.0)

    def to_dict(self) -> dict[str, float]:
        """Plain dict ``{"tv": ..., "sf": ..., "brightness": ..., "contrast": ...}``."""
        return {name: float(value) for name, value in config_to_dict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LossWeights:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``, missing keys
        take their defaults."""
        return config_from_dict(cls, d, what="loss weight")


@dataclass(frozen=True)
class LossTerms:
    """Values of the total loss and each unweighted term, as floats for logging."""

    total: float
    mse: float
    tv: float
    sf: float
    brightness: float
    contrast: float

    def as_dict(self) -> dict[str, float]:
        """The terms as a plain dict."""
        return dataclasses.asdict(self)


def _check_pair(pred: torch.Tensor, target: torch.Tensor | None = None) -> None:
    if pred.ndim != 4:
        raise ValueError(f"loss expects (B, C, H, W) tensors, got shape {tuple(pred.shape)}")
    if target is not None and target.shape != pred.shape:
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} does not match target shape "
            f"{tuple(target.shape)}"
        )


def tv_loss(pred: torch.Tensor) -> torch.Tensor:
    """Total variation: mean absolute forward difference, averaged over both directions."""
    _check_pair(pred)
    pred = pred.float()
    maps = [pred.diff(dim=-2), pred.diff(dim=-1)]
    means = [m.abs().mean() for m in maps if m.numel() > 0]
    if not means:  # 1×1 images have no neighbours
        return pred.sum() * 0.0
    return torch.stack(means).mean()


def spectral_fidelity_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over frequencies of ||F(pred)| − |F(target)|| (orthonormal 2D FFT)."""
    _check_pair(pred, target)
    mag_pred = torch.fft.fft2(pred.float(), norm="ortho").abs()
    mag_target = torch.fft.fft2(target.float(), norm="ortho").abs()
    return (mag_pred - mag_target).abs().mean()


def brightness_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Batch mean of |μ(pred) − μ(target)| per image."""
    _check_pair(pred, target)
    mu_pred = pred.float().flatten(1).mean(dim=1)
    mu_target = target.float().flatten(1).mean(dim=1)
    return (mu_pred - mu_target).abs().mean()


def _std(x: torch.Tensor) -> torch.Tensor:
    var = x.float().flatten(1).var(dim=1, correction=0)
    return torch.sqrt(var + _VARIANCE_EPS)


def contrast_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Batch mean of |σ(pred) − σ(target)| per image (population standard deviation)."""
    _check_pair(pred, target)
    return (_std(pred) - _std(target)).abs().mean()


def pinned_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: LossWeights,
    *,
    mask: torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
) -> tuple[torch.Tensor, LossTerms]:
    """The paper's total loss and its terms.

    Terms with λ = 0 are still evaluated for logging, but without gradient and
    without being added, so that all-zero weights give exactly the MSE.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(B, C, H, W)`` prediction and target.
    weights : LossWeights
        λ of each physics term.
    mask : torch.Tensor, optional
        Boolean ``(B, C, H, W)``: the MSE counts only these pixels (blind-spot
        training, where the target is the noisy input and only hidden pixels teach).
    reference : torch.Tensor, optional
        What the spectral, brightness and contrast terms compare with instead of
        ``target`` (blind-spot training uses a low-pass of the noisy input).

    Returns
    -------
    tuple
        The differentiable total (scalar tensor) and a :class:`LossTerms` of floats.
    """
    _check_pair(pred, target)
    target = target.detach()
    if mask is None:
        mse = F.mse_loss(pred.float(), target.float())
    else:
        _check_pair(pred, mask)
        diff = (pred.float() - target.float())[mask.bool()]
        mse = (diff * diff).mean() if diff.numel() else pred.sum() * 0.0
    ref = target if reference is None else reference.detach()
    _check_pair(pred, ref)
    total = mse
    parts: dict[str, torch.Tensor] = {}
    for name, weight, fn in (
        ("tv", weights.tv, lambda: tv_loss(pred)),
        ("sf", weights.sf, lambda: spectral_fidelity_loss(pred, ref)),
        ("brightness", weights.brightness, lambda: brightness_loss(pred, ref)),
        ("contrast", weights.contrast, lambda: contrast_loss(pred, ref)),
    ):
        if weight:
            parts[name] = fn()
            total = total + weight * parts[name]
        else:
            with torch.no_grad():
                parts[name] = fn()
    # One device→host transfer for all six numbers.
    values = torch.stack([total.detach(), mse.detach(), *(p.detach() for p in parts.values())])
    floats = values.cpu().tolist()
    return total, LossTerms(*floats)
