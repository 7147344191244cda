"""The module paths of napari-pinned 0.1, kept for one release (removed in 0.3).

0.2 regrouped the flat package into subpackages (docs/CHANGELOG.md).  Code that imports
an old path, e.g. ``from napari_pinned.inference import iter_denoise``, gets the module
at its new path, with a ``DeprecationWarning`` naming it.  Nothing is imported until an
old path is asked for.  (``napari_pinned.io``, ``napari_pinned.noise``,
``napari_pinned.training`` and ``napari_pinned.cli`` are packages now and still offer
the names their modules did.)
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED", "install"]

#: Old module path → where the module lives now.
MOVED = {
    f"napari_pinned.{old}": f"napari_pinned.{new}"
    for old, new in {
        "adapt": "training.adapt",
        "atomic": "io.safe_write",
        "backends": "nn.runners",
        "bmz": "nn.bmz",
        "bmz_denoiser": "share.bmz_denoiser",
        "conditioning": "nn.conditioning",
        "config": "settings",
        "crystal": "physics.crystal",
        "devices": "_util.devices",
        "faithfulness": "quality.faithfulness",
        "frames": "denoising.registration",
        "inference": "denoising.denoiser",
        "intensity": "_util.intensity",
        "jobs": "_util.jobs",
        "lattice_guard": "quality.lattice_guard",
        "losses": "nn.losses",
        "memory": "_util.memory",
        "metrics": "quality.metrics",
        "model": "nn.network",
        "model_files": "nn.model_files",
        "noise_level": "noise.estimate",
        "scale": "denoising.files",
        "simulate": "physics.simulate",
        "specimens": "physics.specimens",
        "spectra": "quality.spectra",
        "training_data": "training.data",
        "units": "_util.units",
        "zarr_io": "io.zarr_store",
    }.items()
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module path and hands out the module at its new one."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new} in napari-pinned 0.2; the old path goes in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        # The module object itself, so that both names share its state.
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was imported under its new name."""


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())
