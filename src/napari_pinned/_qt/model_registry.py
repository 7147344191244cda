"""The models available in this napari session, shared by the Train and Denoise docks.

Three kinds of entry:

* ``"default (pretrained)"`` — the model shipped with the package, listed only while
  :func:`napari_pinned.model.default_model_path` exists (it is shipped in ``data/models``);
* models trained since napari started, named like ``"trained 1 (unet, 1200 steps, 24.3 dB)"``;
* models loaded from files, named ``"file: <stem>"``.

The registry is plain Python (no Qt); it announces every change through the psygnal
signal :attr:`ModelRegistry.changed` so that model combo boxes can refresh.  Use it from
the GUI thread only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from psygnal import Signal

if TYPE_CHECKING:
    from napari_pinned.model import ModelBundle

__all__ = ["DEFAULT_NAME", "ModelRegistry", "RegistryEntry", "get_registry"]

#: Name under which the shipped pretrained model is listed.
DEFAULT_NAME = "default (pretrained)"

EntryKind = Literal["default", "trained", "file"]


@dataclass(frozen=True)
class RegistryEntry:
    """One model in the registry.

    Attributes
    ----------
    name : str
        Unique display name.
    kind : {"default", "trained", "file"}
        Where it came from.
    bundle : ModelBundle or None
        The model in memory; ``None`` for the default model, loaded on use.
    path : pathlib.Path or None
        File it was loaded from (``None`` for trained models until saved).
    """

    name: str
    kind: EntryKind
    bundle: ModelBundle | None = None
    path: Path | None = None


def _default_model_exists() -> bool:
    # Looked up through the module on every call so that tests can monkeypatch it.
    from napari_pinned import model_files as core_model

    return core_model.default_model_path().is_file()


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
        self._had_default = _default_model_exists()

    # -- queries ---------------------------------------------------------------------
    def names(self) -> list[str]:
        """Names in display order: the default model first (if installed), then the
        others in the order they were added."""
        self._check_default()
        head = [DEFAULT_NAME] if self._had_default else []
        return head + list(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __len__(self) -> int:
        return len(self.names())

    def entry(self, name: str) -> RegistryEntry:
        """The entry called ``name``; ``KeyError`` if there is none."""
        if name == DEFAULT_NAME and self._default_available():
            return RegistryEntry(DEFAULT_NAME, "default")
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"no model called {name!r} in this session") from None

    def model_source(self, name: str) -> ModelBundle | str:
        """What to pass to ``load_model``/``iter_denoise``/``TrainConfig.init_model``:
        ``"default"`` for the shipped model, else the bundle in memory."""
        entry = self.entry(name)
        if entry.kind == "default":
            return "default"
        assert entry.bundle is not None
        return entry.bundle

    # -- changes ---------------------------------------------------------------------
    def add_trained(self, bundle: ModelBundle) -> str:
        """Add a model trained in this session and return its new name."""
        self._trained_count += 1
        name = trained_name(self._trained_count, bundle)
        return self._add(RegistryEntry(self._unique(name), "trained", bundle))

    def add_file(self, path: str | os.PathLike) -> str:
        """Load a model file and add it; returns its name.

        A file that is already listed is not loaded twice: its existing name is returned.

        Raises
        ------
        napari_pinned.model_files.ModelFileError
            If the file is missing or not a readable napari-pinned model.
        """
        from napari_pinned.model_files import load_model

        resolved = Path(path).expanduser().resolve()
        for entry in self._entries.values():
            if entry.kind == "file" and entry.path == resolved:
                return entry.name
        bundle = load_model(resolved, device="cpu")
        name = self._unique(f"file: {resolved.stem}")
        return self._add(RegistryEntry(name, "file", bundle, resolved))

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
        self._had_default = _default_model_exists()
        self.changed.emit()

    def refresh(self) -> None:
        """Re-check whether the default model is installed; emits if that changed."""
        self._check_default()

    # -- internals -------------------------------------------------------------------
    def _default_available(self) -> bool:
        self._check_default()
        return self._had_default

    def _check_default(self) -> None:
        present = _default_model_exists()
        if present != self._had_default:
            self._had_default = present
            self.changed.emit()

    def _unique(self, name: str) -> str:
        taken = set(self._entries) | {DEFAULT_NAME}
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
