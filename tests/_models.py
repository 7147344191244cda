"""Tiny networks with random weights for the tests (a fresh noise-conditioned one is the
identity, so every weight gets a small random push)."""

from __future__ import annotations

import torch

from napari_pinned.nn.network import ModelBundle, build_model
from napari_pinned.settings import ModelConfig


def random_bundle(config: ModelConfig, seed: int = 0, **metadata) -> ModelBundle:
    """The network of ``config`` with weights moved by 0.05 · N(0, 1) from ``seed``;
    ``metadata`` (e.g. ``name=``) goes into the bundle."""
    torch.manual_seed(seed)
    net = build_model(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return ModelBundle(net.eval(), config, {"name": "tiny test", **metadata})


def tiny_conditioned(seed: int = 0, **metadata) -> ModelBundle:
    """:func:`random_bundle` of the tiny preset, robust and noise-conditioned (the
    shipped default's kind of network)."""
    config = ModelConfig.preset("tiny", normalization="robust", conditioning="noise-map")
    return random_bundle(config, seed, **metadata)
