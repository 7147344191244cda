"""The module paths of napari-pinned 0.1, kept for one release (removed in 0.3).

0.2 regrouped the flat package into subpackages (CHANGELOG.md).  Code that imports an
old path, e.g. ``from napari_pinned.inference import iter_denoise``, gets a
``DeprecationWarning`` naming the new path and the names it asks for.  An old module that
now lives in one module is that module (its state shared); one whose contents were split
is a module that looks each name up in the new modules in turn.  Nothing is imported
until an old path is asked for.  (``napari_pinned.io``, ``napari_pinned.noise``,
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
from typing import Any

__all__ = ["MOVED", "install"]

#: Old module path → the module(s) holding its names now, searched in this order.
MOVED: dict[str, tuple[str, ...]] = {
    f"napari_pinned.{old}": tuple(f"napari_pinned.{new}" for new in news)
    for old, news in {
        "adapt": ("training.adapt", "settings"),
        "atomic": ("io.safe_write",),
        "backends": ("share.onnx_export", "nn.onnx_files", "nn.runners", "nn.resolve"),
        "bmz": ("share.bmz_export", "nn.packages", "nn.foreign", "nn.resolve"),
        "bmz_denoiser": ("share.bmz_denoiser",),
        "conditioning": ("nn.conditioning",),
        "config": ("settings",),
        "crystal": (
            "physics.structure",
            "physics.cif",
            "physics.materials",
            "physics.zones",
            "physics.projection",
            "physics.tiling",
        ),
        "devices": ("_util.devices",),
        "faithfulness": ("quality.faithfulness", "quality.reflections"),
        "frames": ("denoising.registration",),
        "inference": (
            "denoising.denoiser",
            "denoising.engine",
            "denoising.tiling",
            "denoising.model_spec",
            "denoising.dask_arrays",
            "denoising.inputs",
            "settings",
        ),
        "intensity": ("_util.intensity",),
        "jobs": ("_util.jobs",),
        "lattice_guard": ("quality.lattice_guard",),
        "losses": ("nn.losses", "settings"),
        "memory": ("_util.memory",),
        "metrics": (
            "quality.metrics",
            "quality.columns",
            "quality.faithfulness",
            "quality.reflections",
        ),
        "model": ("nn.network", "settings"),
        "model_files": ("nn.model_files", "nn.resolve"),
        "noise_level": ("noise.estimate",),
        "scale": ("denoising.files",),
        "simulate": (
            "physics.simulate",
            "physics.probe",
            "physics.rendering",
            "physics.ranges",
        ),
        "specimens": ("physics.specimens", "physics.ranges", "physics.materials"),
        "spectra": ("quality.spectra",),
        "training_data": ("training.data",),
        "units": ("_util.units",),
        "zarr_io": ("io.zarr_store",),
    }.items()
}


class _Gathered(ModuleType):
    """An old module whose names now live in several modules: each name is looked up in
    them in turn, on first use."""

    def __init__(self, name: str, sources: tuple[str, ...]) -> None:
        super().__init__(name, f"The 0.1 module {name}; its names live in {', '.join(sources)}.")
        self.__sources = sources

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        for source in self.__sources:
            module = importlib.import_module(source)
            if hasattr(module, attribute):
                return getattr(module, attribute)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attribute!r}")

    def __dir__(self) -> list[str]:
        names = set()
        for source in self.__sources:
            module = importlib.import_module(source)
            names.update(getattr(module, "__all__", [n for n in vars(module) if n[0] != "_"]))
        return sorted(names)


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module path and hands out the module at its new one."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        sources = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {' and '.join(sources)} in napari-pinned 0.2; the old "
            "path goes in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        if len(sources) == 1:
            # The module object itself, so that both names share its state.
            return importlib.import_module(sources[0])
        return _Gathered(spec.name, sources)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was imported under its new name."""


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())
