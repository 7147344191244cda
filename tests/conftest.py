"""Fixtures shared by every test: tiny networks, test images, training settings, and
(from the ``fixtures`` package beside this file) microscope files and BMZ packages.

Most of these fixtures are factories: they return a function that the test calls with
the arguments it needs.  They keep no state, so they are session-scoped and any fixture,
whatever its own scope, may use them.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pytest

from napari_pinned.settings import LossWeights, ModelConfig, TrainConfig

if TYPE_CHECKING:  # torch loads only when a test asks for a network
    from napari_pinned.nn.network import ModelBundle

# pytest imports this file with its folder first on sys.path (the default "prepend"
# import mode), so the fixture modules in tests/fixtures/ import as ``fixtures.*``.
pytest_plugins = ["fixtures.bmz_packages", "fixtures.microscope_files"]

#: A short supervised run of the tiny network, the base of ``tiny_train_config``.
_TINY_TRAINING = {
    "loss_weights": LossWeights.none(),
    "steps": 30,
    "batch_size": 4,
    "patch_size": 32,
    "learning_rate": 3e-3,
    "validation_patches": 4,
    "validate_every": 10,
    "warmup_steps": 5,
}


def _lattice_image(size: int = 96, period: float = 8.0, seed: int = 0) -> np.ndarray:
    """Sum of two cosines of ``period`` px with random phases, scaled to [20, 220]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi, 2)
    img = np.cos(2 * np.pi * x / period + phase[0]) + np.cos(2 * np.pi * y / period + phase[1])
    return ((img + 2) / 4 * 200 + 20).astype(np.float32)


@pytest.fixture(autouse=True)
def python_signal_handlers():
    """Every test starts with Python's own SIGINT and SIGTERM handlers (KeyboardInterrupt,
    the default) and leaves them so: a GUI test's event loop may replace them, and the
    CLI's signal tests would then depend on the order the tests run in."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(scope="session")
def lattice_image() -> Callable[..., np.ndarray]:
    """A smooth square lattice in [20, 220], a stand-in for a simulated STEM image:
    ``lattice_image(size=96, period=8.0, seed=0)`` (float32, ``size`` × ``size``)."""
    return _lattice_image


def _random_bundle(config: ModelConfig, seed: int = 0, **metadata) -> ModelBundle:
    """The network of ``config`` with weights moved by 0.05 · N(0, 1) from ``seed``."""
    import torch

    from napari_pinned.nn.network import ModelBundle, build_model

    torch.manual_seed(seed)
    net = build_model(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return ModelBundle(net.eval(), config, {"name": "tiny test", **metadata})


@pytest.fixture(scope="session")
def random_bundle() -> Callable[..., ModelBundle]:
    """A network with random weights: ``random_bundle(config, seed=0, **metadata)``.

    A fresh noise-conditioned network is the identity, so every weight gets a small
    random push; ``metadata`` (e.g. ``name=``) goes into the bundle.
    """
    return _random_bundle


@pytest.fixture(scope="session")
def tiny_conditioned() -> Callable[..., ModelBundle]:
    """:func:`random_bundle` of the tiny preset, robust and noise-conditioned (the shipped
    default's kind of network): ``tiny_conditioned(seed=0, **metadata)``."""
    config = ModelConfig.preset("tiny", normalization="robust", conditioning="noise-map")

    def make(seed: int = 0, **metadata) -> ModelBundle:
        return _random_bundle(config, seed, **metadata)

    return make


@pytest.fixture(scope="session")
def tiny_train_config() -> Callable[..., TrainConfig]:
    """Settings of a short run of the tiny network: ``tiny_train_config(**overrides)``.

    The defaults are ``_TINY_TRAINING`` with the tiny preset and no extra loss terms;
    any :class:`~napari_pinned.settings.TrainConfig` field can be overridden.
    """

    def make(**overrides) -> TrainConfig:
        return TrainConfig(**{"model": ModelConfig.preset("tiny"), **_TINY_TRAINING, **overrides})

    return make
