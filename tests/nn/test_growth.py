"""Growing a trained network: the grown one starts out returning what the old one did."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_pinned.nn.growth import grow
from napari_pinned.nn.network import ModelBundle, build_model
from napari_pinned.settings import ModelConfig

#: Channels 4, 8, 8.
SMALL = ModelConfig.preset("unet", width=4, depth=2, conditioning="noise-map", max_width_factor=2)


def _trained_looking(config: ModelConfig = SMALL) -> ModelBundle:
    """A network whose every weight is non-zero (a fresh conditioned one starts as the
    identity, which any growth would preserve trivially)."""
    torch.manual_seed(1)
    model = build_model(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    return ModelBundle(model=model.eval(), config=config, metadata={"name": "small"})


def _inputs() -> torch.Tensor:
    """Sides that are multiples of every depth's alignment (16), so no padding differs."""
    generator = torch.Generator().manual_seed(2)
    image = torch.randn(2, 1, 64, 48, generator=generator)
    sigma = torch.rand(2, 1, 64, 48, generator=generator) + 0.1
    return torch.cat([image, sigma], dim=1)


def _outputs(bundle: ModelBundle, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return bundle.model(x)


@pytest.mark.parametrize(
    "changes",
    [
        {"width": 6},
        {"max_width_factor": 4},
        {"depth": 3, "max_width_factor": 4},
        {"depth": 4, "max_width_factor": 16},
        {"depth": 3, "width": 8},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_a_grown_network_returns_what_the_old_one_did(changes):
    old = _trained_looking()
    new = grow(old, dataclasses.replace(SMALL, **changes))
    x = _inputs()
    before, after = _outputs(old, x), _outputs(new, x)
    assert new.config.channels() != SMALL.channels()
    spread = float((before - x[:, :1]).std())
    assert float((after - before).abs().max()) < 1e-5 * spread
    assert new.metadata["grown_from"] == SMALL.to_dict()


def test_the_lattice_prior_added_starts_unread_and_learns():
    """A noise-map network given the lattice prior returns what it did, whatever the
    prior says, until training teaches it to read the new features."""
    old = _trained_looking()
    new = grow(old, dataclasses.replace(SMALL, conditioning="noise-map+lattice"))
    assert new.config.input_channels == 3
    x = _inputs()
    prior = torch.randn(2, 1, 64, 48, generator=torch.Generator().manual_seed(3))
    with_prior = torch.cat([x, prior], dim=1)
    before = _outputs(old, x)
    np.testing.assert_array_equal(_outputs(new, with_prior).numpy(), before.numpy())
    model = new.model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        optimizer.zero_grad()
        loss = (model(with_prior) - prior).pow(2).mean()
        loss.backward()
        optimizer.step()
    assert float(model.encoder[0][0].weight[:, 3:].abs().max()) > 0.0
    assert float((_outputs(new, with_prior) - before).abs().max()) > 0.0


def test_the_new_channels_learn():
    """Nothing reads the new features at first, but a training step reaches them:
    a growth that blocked their gradients would leave the old network as it was."""
    old = _trained_looking()
    new = grow(old, dataclasses.replace(SMALL, depth=3, max_width_factor=4))
    model = new.model.train()
    # The decoder block at the old latent level does not read what comes up yet.
    silent = model.decoder[2][0].weight[:, 16:]
    assert float(silent.abs().max()) == 0.0
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = _inputs()
    for _ in range(2):
        optimizer.zero_grad()
        loss = (model(x) - x[:, :1] * 0.5).pow(2).mean()
        loss.backward()
        optimizer.step()
    assert float(model.decoder[2][0].weight[:, 16:].abs().max()) > 0.0
    assert float(model.latent[0].weight.grad.abs().max()) > 0.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"depth": 1}, "shallower"),
        ({"width": 2}, "narrower"),
        ({"conditioning": "none"}, "conditioning"),
        ({"conditioning": "none", "width": 4}, "only the lattice prior"),
        ({"normalization": "percentile"}, "normalization"),
    ],
)
def test_a_network_that_is_not_bigger_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        grow(_trained_looking(), dataclasses.replace(SMALL, **changes))


def test_deepening_needs_room_for_the_pass_through():
    """The old latent level's values cross the new decoder block as pairs: a level no
    wider than before cannot hold them."""
    with pytest.raises(ValueError, match="at least 16 channels"):
        grow(_trained_looking(), dataclasses.replace(SMALL, depth=3))  # 4, 8, 8, 8
