"""The models available in this napari session, shared by the Train and Denoise docks.

Three kinds of entry:

* the models shipped with the package (:data:`napari_pinned.nn.model_files.SHIPPED_MODELS`):
  ``"default (pretrained)"`` for real STEM data and ``"cdn (pretrained)"`` for the
  paper's CDN benchmark, each listed only while its file exists;
* models trained or adapted since napari started, named like
  ``"trained 1 (unet, 1200 steps, 24.3 dB)"`` or ``"adapted to <layer>"``; a model made
  for particular layers (adapted to one) records their names (:meth:`ModelRegistry.made_for`),
  so that the Denoise dock does not carry it over to other layers without a word;
* models loaded from files, named ``"file: <stem>"``: model files, napari-pinned's
  BioImage Model Zoo packages (models like any other), ONNX files and packages from
  other tools (run as they are: :class:`napari_pinned.nn.onnx_files.OnnxModel`,
  :class:`napari_pinned.nn.foreign.ForeignModel`); what a file is decides
  :func:`napari_pinned.nn.resolve.resolve_model`.

The registry is plain Python (no Qt); it announces every change through the psygnal
signal :attr:`ModelRegistry.changed` so that model combo boxes can refresh.  Use it from
the GUI thread only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from psygnal import Signal

if TYPE_CHECKING:
    from napari_pinned.nn.network import ModelBundle

__all__ = ["DEFAULT_NAME", "ModelRegistry", "RegistryEntry", "get_registry", "shipped_name"]

#: Name under which the shipped default model is listed.
DEFAULT_NAME = "default (pretrained)"

EntryKind = Literal["default", "shipped", "trained", "file"]


def shipped_name(name: str) -> str:
    """Display name of a shipped model (``"default"`` → ``"default (pretrained)"``)."""
    return f"{name} (pretrained)"


@dataclass(frozen=True)
class RegistryEntry:
    """One model in the registry.

    Attributes
    ----------
    name : str
        Unique display name.
    kind : {"default", "shipped", "trained", "file"}
        Where it came from ("default" is the shipped default model).
    bundle : ModelBundle or None
        The model in memory; ``None`` for shipped models, loaded on use.
    path : pathlib.Path or None
        File it was loaded from (``None`` for trained models until saved).
    shipped : str or None
        The shipped model's name (``"default"``, ``"cdn"``).
    runtime : OnnxModel or ForeignModel or None
        A model that runs outside napari-pinned's torch network (an ONNX file, another
        tool's BMZ package); ``bundle`` is then None.
    made_for : tuple of str
        Names of the layers the model was made for (the layer it was adapted to); empty
        for models meant for any image.
    """

    name: str
    kind: EntryKind
    bundle: ModelBundle | None = None
    path: Path | None = None
    shipped: str | None = None
    runtime: Any = None
    made_for: tuple[str, ...] = ()


def _installed_shipped() -> list[str]:
    """Names of the shipped models whose files exist, the default first."""
    # Looked up through the module on every call so that tests can monkeypatch it.
    from napari_pinned.nn import model_files as core_model

    names = []
    for model in core_model.SHIPPED_MODELS:
        path = core_model.default_model_path() if model.name == "default" else model.path
        if path.is_file():
            names.append(model.name)
    return names


#: A trained model's automatic name: "trained 3 (unet, 1200 steps, 24.3 dB)".
_TRAINED_NAME = re.compile(r"(trained \d+) \(.*\)$")


def trained_name(index: int, bundle: ModelBundle) -> str:
    """Display name of the ``index``-th trained model, from its metadata."""
    parts = [bundle.config.architecture]
    steps = bundle.metadata.get("steps")
    if steps is not None:
        parts.append(f"{int(steps)} steps")
    val_psnr = bundle.metadata.get("val_psnr")
    if val_psnr is not None:
        parts.append(f"{float(val_psnr):.1f} dB")
    return f"trained {index} ({', '.join(parts)})"


class ModelRegistry:
    """Ordered collection of named models; emits :attr:`changed` on every change."""

    #: Emitted (without arguments) after an entry is added or removed.
    changed = Signal()

    def __init__(self) -> None:
        self._entries: dict[str, RegistryEntry] = {}
        self._trained_count = 0
        self._shipped = _installed_shipped()

    # -- queries ---------------------------------------------------------------------
    def names(self) -> list[str]:
        """Names in display order: the shipped models first (the default first), then
        the others in the order they were added."""
        self._check_shipped()
        return [shipped_name(n) for n in self._shipped] + list(self._entries)

    def trainable_names(self) -> list[str]:
        """:meth:`names` without ONNX files and other tools' packages, which can denoise
        but not be trained further or adapted."""
        return [n for n in self.names() if self.is_trainable(n)]

    def is_trainable(self, name: str) -> bool:
        """Whether the model is a napari-pinned network (can start training or adaptation)."""
        return self.entry(name).runtime is None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __len__(self) -> int:
        return len(self.names())

    def entry(self, name: str) -> RegistryEntry:
        """The entry called ``name``; ``KeyError`` if there is none."""
        self._check_shipped()
        for shipped in self._shipped:
            if name == shipped_name(shipped):
                kind: EntryKind = "default" if shipped == "default" else "shipped"
                return RegistryEntry(name, kind, shipped=shipped)
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"no model called {name!r} in this session") from None

    def model_source(self, name: str) -> Any:
        """What to pass to ``load_model``/``iter_denoise``/``TrainConfig.init_model``:
        the shipped model's name (``"default"``, ``"cdn"``), else the bundle in memory
        (or the ONNX model / foreign package, for ``iter_denoise`` only)."""
        entry = self.entry(name)
        if entry.shipped is not None:
            return entry.shipped
        if entry.runtime is not None:
            return entry.runtime
        assert entry.bundle is not None
        return entry.bundle

    def describe(self, name: str) -> str:
        """One line saying what a model is for."""
        from napari_pinned.nn.model_files import shipped_model

        entry = self.entry(name)
        if entry.shipped is not None:
            model = shipped_model(entry.shipped)
            return model.purpose if model is not None else ""
        if entry.runtime is not None:
            from napari_pinned.nn.foreign import ForeignModel

            if isinstance(entry.runtime, ForeignModel):
                what = (
                    f"BioImage Model Zoo package {entry.runtime.name!r} "
                    f"({entry.runtime.weight_format} weights, run by bioimageio.core)"
                )
            else:
                what = f"ONNX model, {_inputs(entry.runtime.config)}, run by ONNX Runtime"
            return f"{what}, from {entry.path}"
        assert entry.bundle is not None
        meta = entry.bundle.metadata
        noise = meta.get("noise")
        aware = _inputs(entry.bundle.config)
        where = f"from {entry.path}" if entry.path is not None else "made in this session"
        made_for = ", ".join(repr(n) for n in entry.made_for)
        parts = [
            aware,
            f"trained on {noise} noise" if noise else "",
            where,
            f"for {made_for}" if made_for else "",
        ]
        return ", ".join(p for p in parts if p)

    def made_for(self, name: str) -> tuple[str, ...]:
        """Names of the layers the model was made for; empty when it is for any image."""
        return self.entry(name).made_for

    def label(self, name: str) -> str:
        """A short name for layer names: ``"default"`` for ``"default (pretrained)"``,
        ``"trained 3"`` for ``"trained 3 (unet, 1200 steps, 24.3 dB)"``, else the name."""
        entry = self.entry(name)
        if entry.shipped is not None:
            return entry.shipped
        automatic = _TRAINED_NAME.match(name) if entry.kind == "trained" else None
        return automatic.group(1) if automatic else name

    def is_conditioned(self, name: str) -> bool:
        """Whether the model takes a noise map (has a noise estimate and a strength)."""
        entry = self.entry(name)
        if entry.shipped is not None:
            return entry.shipped == "default"
        if entry.runtime is not None:
            config = getattr(entry.runtime, "config", None)
            return bool(config is not None and config.conditioned)
        assert entry.bundle is not None
        return entry.bundle.config.conditioned

    # -- changes ---------------------------------------------------------------------
    def add_trained(
        self, bundle: ModelBundle, name: str | None = None, *, made_for: Iterable[str] = ()
    ) -> str:
        """Add a model trained (or adapted) in this session and return its new name;
        ``made_for`` names the layers it was made for (the layer it was adapted to)."""
        if name is None:
            self._trained_count += 1
            name = trained_name(self._trained_count, bundle)
        entry = RegistryEntry(self._unique(name), "trained", bundle, made_for=tuple(made_for))
        return self._add(entry)

    def add_file(self, path: str | os.PathLike, *, trust: bool = False) -> str:
        """Load a model file, ONNX file or BioImage Model Zoo package and add it; returns
        its name.

        A file that is already listed is not loaded twice: its existing name is returned.
        ``trust`` allows a package from another tool whose weights are code.

        Raises
        ------
        napari_pinned.nn.model_files.ModelFileError
            If the file is missing or not a readable model.
        napari_pinned.nn.packages.PackageNeedsTrust
            If the package would run code from it and ``trust`` is False.
        """
        from napari_pinned.nn.model_files import ModelFileError
        from napari_pinned.nn.network import ModelBundle
        from napari_pinned.nn.packages import PackageNeedsTrust
        from napari_pinned.nn.resolve import resolve_model

        resolved = Path(path).expanduser().resolve()
        for entry in self._entries.values():
            if entry.kind == "file" and entry.path == resolved:
                return entry.name
        try:
            model = resolve_model(resolved, device="cpu", trust=trust)
        except (PackageNeedsTrust, ModelFileError):
            raise
        except ValueError as exc:
            raise ModelFileError(str(exc)) from None
        name = self._unique(f"file: {resolved.stem}")
        if isinstance(model, ModelBundle):
            return self._add(RegistryEntry(name, "file", model, resolved))
        return self._add(RegistryEntry(name, "file", None, resolved, runtime=model))

    def remove(self, name: str) -> None:
        """Remove a trained or file model (the shipped default cannot be removed)."""
        if name not in self._entries:
            raise KeyError(f"no removable model called {name!r} in this session")
        del self._entries[name]
        self.changed.emit()

    def clear(self) -> None:
        """Forget every trained and loaded model and restart the trained-model count."""
        self._entries.clear()
        self._trained_count = 0
        self._shipped = _installed_shipped()
        self.changed.emit()

    def refresh(self) -> None:
        """Re-check which shipped models are installed; emits if that changed."""
        self._check_shipped()

    # -- internals -------------------------------------------------------------------
    def _check_shipped(self) -> None:
        present = _installed_shipped()
        if present != self._shipped:
            self._shipped = present
            self.changed.emit()

    def _unique(self, name: str) -> str:
        from napari_pinned.nn.model_files import SHIPPED_MODELS

        taken = set(self._entries) | {shipped_name(m.name) for m in SHIPPED_MODELS}
        if name not in taken:
            return name
        n = 2
        while f"{name} #{n}" in taken:
            n += 1
        return f"{name} #{n}"

    def _add(self, entry: RegistryEntry) -> str:
        self._entries[entry.name] = entry
        self.changed.emit()
        return entry.name


_REGISTRY: ModelRegistry | None = None


def get_registry() -> ModelRegistry:
    """The process-wide registry shared by all plugin widgets."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = ModelRegistry()
    return _REGISTRY


def _inputs(config: Any) -> str:
    """What a model is told besides the image, in the words of its tooltip."""
    if not config.conditioned:
        return "fixed noise"
    return "noise-aware, lattice prior" if config.lattice else "noise-aware"
