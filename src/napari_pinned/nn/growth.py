"""A trained network grown into a wider or deeper one that starts where it left off.

Training a bigger network from scratch costs days of CPU time; growing a trained one
keeps what it learned and lets fine-tuning spend only the extra capacity (after
Chen, Goodfellow and Shlens, "Net2Net: accelerating learning via knowledge transfer",
ICLR 2016).  :func:`grow` copies every old weight into the same place of the new
network and gives each new channel random incoming weights but zero outgoing ones, so
the new channels compute features that nothing reads yet: a widened network returns
exactly what the old one did.

Deepening (``depth`` + k) turns the old latent block into the new deepest encoder
block and makes that level's decoder block pass the skip connection through unchanged,
reading nothing of what comes up from the new levels below until training says so.
Each value travels through that block as the pair ``leaky(y)``, ``leaky(-y)``,
whose difference is ``(1 + slope)·y`` for either sign, so the grown network returns
what the old one did up to rounding (``tests/nn/test_growth.py``).  This needs twice the
old latent channels at the new level, which doubling the width per level gives.

A noise-conditioned network can also be given the lattice prior
(``conditioning="noise-map+lattice"``): its features come after the old ones, and their
weights start at zero.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_pinned.nn.network import ModelBundle, PinnedNetwork, build_model
from napari_pinned.settings import ModelConfig

#: Settings a grown network must share with the one it grows from.
_KEPT = ("negative_slope", "skip_connections", "residual", "normalization")
#: Conditionings a network can grow into: its own, or one that adds inputs after its own.
_GROWS_INTO = {
    "none": ("none",),
    "noise-map": ("noise-map", "noise-map+lattice"),
    "noise-map+lattice": ("noise-map+lattice",),
}


def grow(bundle: ModelBundle, config: ModelConfig, *, seed: int = 0) -> ModelBundle:
    """``bundle``'s network grown to ``config`` (more channels per level, more levels).

    Parameters
    ----------
    bundle : ModelBundle
        A trained U-Net (skip connections).
    config : ModelConfig
        The bigger network: the same settings except ``depth`` ≥ the old depth, at
        least as many channels at every old level (``width``, ``max_width_factor``),
        and optionally the lattice prior added to a noise map (``conditioning``).
    seed : int
        Seeds the new channels' incoming weights.

    Returns
    -------
    ModelBundle
        The grown network (CPU, eval mode) with ``bundle``'s metadata and a
        ``grown_from`` entry naming the old configuration.

    Raises
    ------
    ValueError
        If ``config`` is not a superset of ``bundle.config``.
    """
    old_config = bundle.config
    _check_growable(old_config, config)
    torch.manual_seed(seed)
    new = build_model(config)
    old: PinnedNetwork = bundle.model.cpu()
    depth = old_config.depth
    with torch.no_grad():
        for level in range(depth):
            _copy_block(old.encoder[level], new.encoder[level])
            _copy_block(old.decoder[level], new.decoder[level], skip=True)
            if level < depth - 1 or config.depth == depth:
                _copy_layer(old.up[level], new.up[level])
        _copy_layer(old.head, new.head)
        if config.depth == depth:
            _copy_block(old.latent, new.latent)
        else:
            # The old latent block becomes encoder ``depth``; its decoder passes that
            # skip through and does not read what comes up from the new levels yet.
            # (The upsampling itself stays random: were it zero too, neither it nor
            # the weights reading it would ever get a gradient.)
            _copy_block(old.latent, new.encoder[depth])
            _pass_through(new.decoder[depth], old_config.channels()[depth], config.negative_slope)
            _copy_layer(old.up[depth - 1], new.up[depth - 1], split=config.negative_slope)
    new.eval()
    metadata = {**bundle.metadata, "grown_from": old_config.to_dict()}
    return ModelBundle(model=new, config=config, metadata=metadata)


def _check_growable(old: ModelConfig, new: ModelConfig) -> None:
    changed = [name for name in _KEPT if getattr(old, name) != getattr(new, name)]
    if changed:
        raise ValueError(f"a grown network keeps {', '.join(changed)} of the old one")
    if new.conditioning not in _GROWS_INTO[old.conditioning]:
        raise ValueError(
            f"conditioning {old.conditioning!r} cannot grow into {new.conditioning!r}: only "
            "the lattice prior can be added to a noise map"
        )
    if not old.skip_connections:
        raise ValueError("only U-Nets (skip connections) can be grown")
    if new.depth < old.depth:
        raise ValueError(f"depth {new.depth} is shallower than the old depth {old.depth}")
    narrower = [
        level
        for level, (a, b) in enumerate(zip(old.channels(), new.channels(), strict=False))
        if b < a
    ]
    if narrower:
        raise ValueError(f"the new network is narrower than the old one at level(s) {narrower}")


def _copy_rows(old_weight: torch.Tensor, new_weight: torch.Tensor, columns: list) -> None:
    """Old output channels of a ``(out, in, k, k)`` weight: the old values where
    ``columns`` (pairs of old and new input slices) say, zero on every new input."""
    rows = old_weight.shape[0]
    new_weight[:rows] = 0.0
    for old_slice, new_slice in columns:
        new_weight[:rows, new_slice] = old_weight[:, old_slice]


def _copy_layer(
    old: nn.Conv2d | nn.ConvTranspose2d,
    new: nn.Conv2d | nn.ConvTranspose2d,
    *,
    split: float | None = None,
) -> None:
    """Old weights into the old channels; old outputs read nothing new, and new output
    channels keep their random weights (new features nothing reads yet).

    ``split`` (a Leaky ReLU slope s): the new layer's input holds each old channel
    twice, as ``leaky(y)`` and then ``leaky(-y)`` (see :func:`_pass_through`), whose
    difference is ``(1 + s)·y`` whatever the sign of y.
    """
    transposed = isinstance(new, nn.ConvTranspose2d)
    # Transposed convolutions store (in, out, k, k): swap to (out, in, k, k) views.
    w_old = old.weight.transpose(0, 1) if transposed else old.weight
    w_new = new.weight.transpose(0, 1) if transposed else new.weight
    inputs = w_old.shape[1]
    if split is None:
        _copy_rows(w_old, w_new, [(slice(0, inputs), slice(0, inputs))])
    else:
        rows = w_old.shape[0]
        w_new[:rows] = 0.0
        w_new[:rows, :inputs] = w_old / (1 + split)
        w_new[:rows, inputs : 2 * inputs] = -w_old / (1 + split)
    new.bias[: w_old.shape[0]] = old.bias


def _copy_block(old: nn.Sequential, new: nn.Sequential, *, skip: bool = False) -> None:
    """Every convolution of ``old`` into ``new``.  A decoder block's first layer reads
    ``[skip, upsampled]``: each half goes to its own place in the wider input."""
    convs_old = [m for m in old if isinstance(m, nn.Conv2d)]
    convs_new = [m for m in new if isinstance(m, nn.Conv2d)]
    for index, (a, b) in enumerate(zip(convs_old, convs_new, strict=True)):
        if index == 0 and skip:
            half_old, half_new = a.weight.shape[1] // 2, b.weight.shape[1] // 2
            columns = [
                (slice(0, half_old), slice(0, half_old)),
                (slice(half_old, 2 * half_old), slice(half_new, half_new + half_old)),
            ]
            _copy_rows(a.weight, b.weight, columns)
            b.bias[: a.weight.shape[0]] = a.bias
        else:
            _copy_layer(a, b)


def _pass_through(block: nn.Sequential, channels: int, slope: float) -> None:
    """A decoder block that passes its first ``channels`` skip inputs y through exactly.

    Each y travels as the pair ``leaky(y)``, ``leaky(-y)`` in output channels ``i`` and
    ``channels + i``: with slope s, ``leaky(y) - leaky(-y) = (1 + s)·y`` for either
    sign, so every layer can rebuild y from the previous pair and split it again.  The
    block needs at least twice as many channels as it passes through.
    """
    convs = [m for m in block if isinstance(m, nn.Conv2d)]
    if convs[0].out_channels < 2 * channels:
        raise ValueError(
            f"deepening needs at least {2 * channels} channels at the old latent level"
        )
    eye = torch.eye(channels)
    for index, conv in enumerate(convs):
        weight = conv.weight[: 2 * channels, :, 1, 1]
        conv.weight[: 2 * channels] = 0.0
        conv.bias[: 2 * channels] = 0.0
        if index == 0:
            rebuilt = torch.cat([eye, torch.zeros(channels, conv.in_channels - channels)], 1)
        else:
            rest = torch.zeros(channels, conv.in_channels - 2 * channels)
            rebuilt = torch.cat([eye, -eye, rest], 1) / (1 + slope)
        weight[:channels] = rebuilt
        weight[channels:] = -rebuilt
        conv.weight[: 2 * channels, :, 1, 1] = weight
