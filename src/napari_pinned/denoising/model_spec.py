"""A model as plain data for other processes (dask workers), built once per process.

A dask graph or a cluster task carries the model once, as a :class:`ModelSpec`
(configuration, CPU weights and a token naming them); :func:`cached_denoiser` gives
each process the :class:`~napari_pinned.denoising.engine.Denoiser` of a spec and
options, building the network only the first time.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from napari_pinned.denoising.engine import Denoiser

if TYPE_CHECKING:
    import torch

    from napari_pinned.nn.network import ModelBundle
    from napari_pinned.noise.estimate import NoiseEstimate
    from napari_pinned.settings import FrameOptions, ModelConfig

__all__ = ["ModelSpec", "cached_denoiser", "make_denoiser"]

#: Denoisers a process keeps (the least recently used goes first).
_CACHE_SIZE = 4
_CACHE: OrderedDict[tuple, Denoiser] = OrderedDict()
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """A model as plain data for other processes (dask workers): configuration, CPU
    weights and a token naming them.  :func:`cached_denoiser` builds the network from
    it once per process and token."""

    token: str
    config: ModelConfig
    state: dict[str, torch.Tensor]
    metadata: dict
    source: str

    @classmethod
    def of(cls, model: Any) -> ModelSpec:
        """The spec of a shipped model's name, a model file or a bundle."""
        import torch

        from napari_pinned.nn.resolve import load_model

        bundle = load_model(model, device="cpu")
        state = {k: v.detach().to("cpu").contiguous() for k, v in bundle.model.state_dict().items()}
        digest = hashlib.sha256(json.dumps(bundle.config.to_dict(), sort_keys=True).encode())
        for name in sorted(state):
            digest.update(name.encode())
            digest.update(state[name].reshape(-1).view(torch.uint8).numpy().tobytes())
        return cls(digest.hexdigest(), bundle.config, state, dict(bundle.metadata), bundle.source)

    def bundle(self) -> ModelBundle:
        """A fresh network with these weights, in evaluation mode."""
        from napari_pinned.nn.network import ModelBundle, build_model

        net = build_model(self.config)
        net.load_state_dict(self.state, strict=True)
        return ModelBundle(net.eval(), self.config, dict(self.metadata), self.source)


def cached_denoiser(
    spec: ModelSpec,
    options: FrameOptions | None = None,
    *,
    batch_size: int = 4,
    noise: NoiseEstimate | None = None,
    backend: str = "auto",
) -> Denoiser:
    """This process's :class:`~napari_pinned.denoising.engine.Denoiser` for ``spec`` and
    the settings (built once; the arguments are those of the Denoiser)."""
    key = (spec.token, repr(options), batch_size, repr(noise), backend)
    with _CACHE_LOCK:
        found = _CACHE.get(key)
        if found is not None:
            _CACHE.move_to_end(key)
            return found
        denoiser = Denoiser(
            spec.bundle(), options, batch_size=batch_size, noise=noise, backend=backend
        )
        _CACHE[key] = denoiser
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return denoiser


def make_denoiser(model: Any, options: FrameOptions | None = None, **settings: Any) -> Denoiser:
    """A :class:`~napari_pinned.denoising.engine.Denoiser`; for a :class:`ModelSpec`, the
    one this process keeps (:func:`cached_denoiser`).  ``settings`` are the Denoiser's
    keyword arguments."""
    if isinstance(model, ModelSpec):
        return cached_denoiser(model, options, **settings)
    return Denoiser(model, options, **settings)
