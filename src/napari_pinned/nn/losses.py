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
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# The weights live in the torch-free settings module; they are also importable here.
from napari_pinned.settings import LossWeights

#: Added to the variance before the square root: the gradient of sqrt is infinite at a
#: constant prediction (a dead network) and would turn into NaN; the value moves by
#: at most 1e-6 (sqrt of this), far below any contrast that matters.
_VARIANCE_EPS = 1e-12


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
