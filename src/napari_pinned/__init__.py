"""napari-pinned: physics-informed denoising of atomic-resolution STEM images.

The public API is importable from the package root; torch-backed names are loaded
lazily so that ``import napari_pinned`` stays cheap and does not import torch.
"""

from __future__ import annotations

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
    "load_model": "napari_pinned.model",
    "save_model": "napari_pinned.model",
    "ModelConfig": "napari_pinned.model",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_pinned' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
