"""napari-pinned: physics-informed denoising of atomic-resolution STEM images.

The public API is importable from the package root; torch-backed names are loaded
lazily so that ``import napari_pinned`` stays cheap and does not import torch.
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import Any

from napari_pinned import _moved
from napari_pinned._version import __version__

_LAZY = {
    "simulate": "napari_pinned.physics.simulate",
    "SimulationResult": "napari_pinned.physics.simulate",
    "list_materials": "napari_pinned.physics.materials",
    "read_cif": "napari_pinned.physics.cif",
    "add_cdn_noise": "napari_pinned.noise.synthesis",
    "cdn_params": "napari_pinned.noise.synthesis",
    "add_dose_noise": "napari_pinned.noise.synthesis",
    "register_frames": "napari_pinned.denoising.registration",
    "estimate_drift": "napari_pinned.denoising.registration",
    "compute_metrics": "napari_pinned.quality.metrics",
    "Metrics": "napari_pinned.quality.metrics",
    "train": "napari_pinned.training.run",
    "TrainConfig": "napari_pinned.settings",
    "denoise": "napari_pinned.denoising.denoiser",
    "estimate_noise": "napari_pinned.noise.estimate",
    "NoiseEstimate": "napari_pinned.noise.estimate",
    "faithfulness": "napari_pinned.quality.faithfulness",
    "Faithfulness": "napari_pinned.quality.faithfulness",
    "adapt": "napari_pinned.training.adapt",
    "AdaptSettings": "napari_pinned.settings",
    "random_structure": "napari_pinned.physics.specimens",
    "record_stem_image": "napari_pinned.noise.synthesis",
    "StemRecording": "napari_pinned.noise.synthesis",
    "SHIPPED_MODELS": "napari_pinned.nn.model_files",
    "load_model": "napari_pinned.nn.resolve",
    "save_model": "napari_pinned.nn.model_files",
    "ModelConfig": "napari_pinned.settings",
    "export_bioimageio": "napari_pinned.share.bmz_export",
    "load_package": "napari_pinned.nn.resolve",
    "export_onnx": "napari_pinned.share.onnx_export",
}

__all__ = ["__version__", *_LAZY]


class _Package(types.ModuleType):
    """The package module, keeping its public names bound to the API objects.

    Importing a submodule binds it as an attribute of its package.  The old module
    paths of 0.1 (:mod:`napari_pinned._moved`) share names with the API: once
    ``napari_pinned.simulate`` (the old path of the module) is imported,
    ``napari_pinned.simulate`` would be the module rather than the function, and ``from
    napari_pinned import simulate`` would hand out a module that cannot be called.  A
    documented name is never rebound to a module; the modules stay reachable at their
    paths (``napari_pinned.physics.simulate``).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
_moved.install()


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_pinned' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    # Cache the API object itself: later lookups are plain attribute reads.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
