"""napari-pinned: physics-informed denoising of atomic-resolution STEM images.

The public API is importable from the package root; torch-backed names are loaded
lazily so that ``import napari_pinned`` stays cheap and does not import torch.
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "simulate": "napari_pinned.simulate",
    "SimulationResult": "napari_pinned.simulate",
    "list_materials": "napari_pinned.crystal",
    "read_cif": "napari_pinned.crystal",
    "add_cdn_noise": "napari_pinned.noise",
    "cdn_params": "napari_pinned.noise",
    "add_dose_noise": "napari_pinned.noise",
    "register_frames": "napari_pinned.frames",
    "estimate_drift": "napari_pinned.frames",
    "compute_metrics": "napari_pinned.metrics",
    "Metrics": "napari_pinned.metrics",
    "train": "napari_pinned.training",
    "TrainConfig": "napari_pinned.training",
    "denoise": "napari_pinned.inference",
    "estimate_noise": "napari_pinned.noise_level",
    "NoiseEstimate": "napari_pinned.noise_level",
    "faithfulness": "napari_pinned.faithfulness",
    "Faithfulness": "napari_pinned.faithfulness",
    "adapt": "napari_pinned.adapt",
    "AdaptSettings": "napari_pinned.adapt",
    "random_structure": "napari_pinned.specimens",
    "record_stem_image": "napari_pinned.noise",
    "StemRecording": "napari_pinned.noise",
    "SHIPPED_MODELS": "napari_pinned.model_files",
    "load_model": "napari_pinned.model_files",
    "save_model": "napari_pinned.model_files",
    "ModelConfig": "napari_pinned.model",
    "export_bioimageio": "napari_pinned.bmz",
    "load_package": "napari_pinned.bmz",
    "export_onnx": "napari_pinned.backends",
}

__all__ = ["__version__", *_LAZY]


class _Package(types.ModuleType):
    """The package module, keeping its public names bound to the API objects.

    Importing a submodule binds it as an attribute of its package, so once
    ``napari_pinned.simulate`` (the module) is imported, ``napari_pinned.simulate``
    would be the module rather than the function, and ``from napari_pinned import
    simulate`` would hand out a module that cannot be called.  A documented name
    is never rebound to a module; submodules stay reachable as ``sys.modules`` entries
    and with ``from napari_pinned.simulate import ...`` (``importlib.import_module``
    for the module object: a dotted ``"napari_pinned.simulate.x"`` string given to
    pytest's ``monkeypatch.setattr`` now reaches the function, not the module).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
