"""Model files: writing and reading trained PINNED networks with their provenance.

Model files are ``torch.save`` archives of a dict holding only tensors and plain
Python values, read back with ``torch.load(..., weights_only=True)`` so that opening a
file can never run code from it.  A SHA-256 over the contents catches corruption (not
tampering: anyone can recompute it).

Before anything is allocated for a file, its size is bounded: the archive may not expand
beyond :data:`MAX_ARCHIVE_BYTES` (a zip bomb is refused before ``torch.load`` reads it),
the stored configuration may not ask for a network beyond :data:`MAX_WIDTH`,
:data:`MAX_DEPTH` and :data:`MAX_PARAMETERS`, and every stored tensor must have the
shape that configuration gives it; only then is the network built.

The checks of a stored model (:func:`load_torch_weights`, :func:`bundle_from_payload`,
:func:`checksum`) serve napari-pinned's BioImage Model Zoo packages too
(:mod:`napari_pinned.nn.packages`), whose weights are a model's in another container.
What a model *reference* means (a shipped model's name, a file, a package) is decided in
:func:`napari_pinned.nn.resolve.load_model`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import pathlib
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_pinned._util.errors import summary
from napari_pinned._version import __version__
from napari_pinned.io.safe_write import atomic_write
from napari_pinned.nn.network import ModelBundle, PinnedNetwork
from napari_pinned.settings import ModelConfig

#: Version of the model-file layout written by :func:`save_model`.
FORMAT_VERSION = 1
#: Value of the ``"format"`` key that marks a napari-pinned model file.
FILE_FORMAT = "napari-pinned-model"
#: Largest base width and depth a model file may ask for (the shipped models: 8 and 3).
MAX_WIDTH = 128
MAX_DEPTH = 6
#: Largest number of parameters a model file may hold (200 MB of float32 weights).
MAX_PARAMETERS = 50_000_000
#: Largest total size of the entries of a model file's archive once unpacked.
MAX_ARCHIVE_BYTES = 512 * 1024**2


class ModelFileError(ValueError):
    """A model file is missing, unreadable, corrupted, or not a napari-pinned model."""


@dataclass(frozen=True)
class ShippedModel:
    """A pretrained model that comes with the package."""

    name: str
    filename: str
    purpose: str

    @property
    def path(self) -> pathlib.Path:
        """Where the file lives (see :func:`default_model_path` for the default)."""
        if self.name == "default":
            return default_model_path()
        return _models_folder() / self.filename


#: The shipped models, the default first.
SHIPPED_MODELS = (
    ShippedModel(
        "default",
        "default.pt",
        "real STEM images: shot and read noise at any dose (0.3–1000 e⁻/px), "
        "noise-level aware, leaves clean data unchanged",
    ),
    ShippedModel(
        "cdn",
        "cdn.pt",
        "the paper's benchmark: images degraded with Composite Degradation Noise (Table 1)",
    ),
)


def _models_folder() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[1] / "data" / "models"


def default_model_path() -> pathlib.Path:
    """Where the default pretrained model shipped with the package lives."""
    return _models_folder() / "default.pt"


def shipped_model(name: str) -> ShippedModel | None:
    """The shipped model called ``name`` (case-insensitive), or None."""
    key = name.strip().lower()
    return next((m for m in SHIPPED_MODELS if m.name == key), None)


def _json_default(value: Any) -> Any:
    """``json.dumps``'s ``default`` for model metadata: numpy values, paths, devices."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (pathlib.PurePath, torch.device)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def file_payload(bundle: ModelBundle) -> dict[str, Any]:
    """What :func:`save_model` writes: the format marker, configuration, metadata JSON,
    CPU weights and their :func:`checksum`."""
    if not isinstance(bundle, ModelBundle):
        raise ValueError(f"save_model expects a ModelBundle, got {type(bundle).__name__}")
    if bundle.model.config != bundle.config:
        raise ValueError(
            "the bundle's config does not match its model's config; "
            "build the model from bundle.config"
        )
    try:
        metadata_json = metadata_text(bundle.metadata)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model metadata must be plain JSON-able data: {exc}") from None
    state = cpu_state(bundle)
    config = bundle.config.to_dict()
    return {
        "format": FILE_FORMAT,
        "format_version": FORMAT_VERSION,
        "written_by": f"napari-pinned {__version__}",
        "config": config,
        "metadata_json": metadata_json,
        "state_dict": state,
        "sha256": checksum(config, metadata_json, state),
    }


def metadata_text(metadata: Mapping[str, Any]) -> str:
    """A model's metadata as the JSON text that model files, packages and ONNX files
    store (and :func:`checksum` covers)."""
    return json.dumps(metadata, default=_json_default, allow_nan=True)


def cpu_state(bundle: ModelBundle) -> dict[str, torch.Tensor]:
    """The network's weights, detached, on the CPU."""
    return {k: v.detach().to("cpu") for k, v in bundle.model.state_dict().items()}


def bundle_checksum(bundle: ModelBundle) -> str:
    """:func:`checksum` of a model in memory: what its file would record."""
    return checksum(bundle.config.to_dict(), metadata_text(bundle.metadata), cpu_state(bundle))


def checksum(config: dict, metadata_json: str, state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over config, metadata and every tensor's name, dtype, shape and bytes.

    torch's archive reader does not verify its CRCs, so a flipped bit inside the
    weights would otherwise load as a silently different network.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(config, sort_keys=True).encode())
    digest.update(metadata_json.encode())
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_model(bundle: ModelBundle, path: str | os.PathLike) -> pathlib.Path:
    """Write a model file atomically and return its path.

    The file is written to a temporary file in the same folder, flushed to disk and
    then renamed over ``path``, so an interrupted save leaves either the old file or
    the new one, never a partial file.

    Raises
    ------
    ValueError
        If the folder does not exist, ``path`` is a folder, or the metadata is not
        plain JSON-able data.
    """
    target = pathlib.Path(path).expanduser()
    if target.is_dir():
        raise ValueError(f"{target}: is a folder; give a file name for the model")
    if not target.parent.is_dir():
        raise ValueError(f"{target}: folder {target.parent} does not exist")
    return atomic_torch_save(file_payload(bundle), target)


def atomic_torch_save(payload: Any, target: str | os.PathLike) -> pathlib.Path:
    """``torch.save`` through :func:`napari_pinned.io.safe_write.atomic_write`: a temporary
    file beside ``target``, flushed, then renamed over it."""
    path = pathlib.Path(target).expanduser()
    with atomic_write(path) as handle:
        torch.save(payload, handle)
    return path


def _load_error(where: object, exc: Exception) -> ModelFileError:
    """Turn torch's long unpickling messages into one line naming the file (``where``)."""
    text = str(exc)
    # torch names the refused callable or class as "GLOBAL module.name" (both spellings
    # occur across versions); that is code, or an object, a model file may not contain.
    refused = re.search(r"(?:Unsupported global|unsupported GLOBAL): GLOBAL ([\w.]+)", text)
    refused = refused or re.search(r"unsupported GLOBAL ([\w.]+)", text)
    if refused:
        return ModelFileError(
            f"{where}: refused: the file contains code or Python objects that a model file "
            f"may not contain ({refused.group(1)}); nothing from it was run"
        )
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1]
        reason = next((ln.strip() for ln in detail.splitlines() if ln.strip()), "")
        reason = f"unpickling failed: {reason}"
    elif "Weights only load failed" in text:
        # torch's boilerplate about its weights_only default says nothing about this file.
        lines = [ln.strip() for ln in text.splitlines()[1:] if ln.strip()]
        useful = [ln for ln in lines if not ln.startswith("Check the documentation")]
        reason = f"unpickling failed: {useful[0]}" if useful else "unpickling failed"
    else:
        reason = summary(exc)
    return ModelFileError(
        f"{where}: not a napari-pinned model file, or the file is truncated or corrupted ({reason})"
    )


def _opened(source: pathlib.Path | bytes) -> Any:
    """Something ``zipfile`` and ``torch.load`` read: the file, or its bytes in memory."""
    return io.BytesIO(source) if isinstance(source, bytes) else source


def _check_archive(source: pathlib.Path | bytes, where: object) -> None:
    """Bound what ``torch.load`` will unpack from a file (or its bytes), before it unpacks
    anything.

    ``torch.save`` writes an uncompressed zip archive, so a compressed entry (a zip
    bomb: megabytes that inflate to gigabytes) is not from it; the entries' total size
    is bounded too.  Data that is not a zip archive (torch's legacy format, or not a
    model at all) is read as it is, so its size on disk is its size in memory.
    """
    from napari_pinned._util.memory import format_bytes

    size = len(source) if isinstance(source, bytes) else source.stat().st_size
    limit = format_bytes(MAX_ARCHIVE_BYTES)
    if not zipfile.is_zipfile(_opened(source)):
        if size > MAX_ARCHIVE_BYTES:
            raise ModelFileError(
                f"{where}: {format_bytes(size)}, larger than a model file may be ({limit})"
            )
        return
    try:
        with zipfile.ZipFile(_opened(source)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelFileError(
            f"{where}: not a napari-pinned model file, or the file is truncated or corrupted "
            f"({summary(exc)})"
        ) from None
    packed = [e.filename for e in entries if e.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise ModelFileError(
            f"{where}: refused: the archive holds compressed entries ({packed[0]}), which "
            "torch.save never writes"
        )
    total = sum(e.file_size for e in entries)
    if total > MAX_ARCHIVE_BYTES:
        raise ModelFileError(
            f"{where}: unpacks to {format_bytes(total)}, more than a model file may hold ({limit})"
        )


def load_torch_weights(source: pathlib.Path | bytes, where: object) -> Any:
    """``torch.load`` of a file (or its bytes) that can run no code: bounded first (no
    compressed entry, at most :data:`MAX_ARCHIVE_BYTES`), then read with
    ``weights_only=True``, so that the unpickler only rebuilds tensors and plain
    containers; a file carrying code (a custom class, a ``__reduce__`` payload) is
    refused unrun, in one line naming ``where``."""
    _check_archive(source, where)
    try:
        with warnings.catch_warnings():
            # e.g. "Detected pickle protocol 4": noise for a file we are about to reject.
            warnings.simplefilter("ignore")
            return torch.load(_opened(source), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _load_error(where, exc) from None


def _read_payload(path: pathlib.Path) -> dict[str, Any]:
    if not path.exists():
        raise ModelFileError(f"{path}: model file not found")
    if not path.is_file():
        raise ModelFileError(f"{path}: is not a file")
    payload = load_torch_weights(path, path)
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise ModelFileError(f"{path}: not a napari-pinned model file")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {version!r} is not supported; this "
            f"napari-pinned {__version__} reads version {FORMAT_VERSION} (file written by "
            f"{payload.get('written_by', 'an unknown version')})"
        )
    return payload


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name and shape of every tensor of a network of ``config``, without allocating it.

    The network is built on PyTorch's ``meta`` device, whose tensors have shapes but
    no storage, so even a configuration far too large to build answers at once.
    """
    return dict(_expected_shapes(config))


@functools.lru_cache(maxsize=32)
def _expected_shapes(config: ModelConfig) -> tuple[tuple[str, tuple[int, ...]], ...]:
    with torch.device("meta"):
        network = PinnedNetwork(config)
    return tuple((name, tuple(t.shape)) for name, t in network.state_dict().items())


def check_model_size(config: ModelConfig, *, source: str = "the model") -> int:
    """Refuse a configuration beyond the sizes napari-pinned builds and reads.

    Returns
    -------
    int
        The number of parameters of a network of ``config``.

    Raises
    ------
    ValueError
        If the width, the depth or the parameter count (estimated without building the
        network) is beyond :data:`MAX_WIDTH`, :data:`MAX_DEPTH`, :data:`MAX_PARAMETERS`.
    """
    from napari_pinned._util.memory import format_bytes

    if config.width > MAX_WIDTH or config.depth > MAX_DEPTH:
        raise ValueError(
            f"{source}: width {config.width}, depth {config.depth} is beyond what napari-pinned "
            f"builds (width at most {MAX_WIDTH}, depth at most {MAX_DEPTH})"
        )
    count = sum(math.prod(shape) for shape in expected_shapes(config).values())
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"{source}: width {config.width}, depth {config.depth} has {count:,} parameters "
            f"({format_bytes(4 * count)}), more than the {MAX_PARAMETERS:,} napari-pinned builds"
        )
    return count


def bundle_from_payload(payload: Mapping[str, Any], where: object) -> ModelBundle:
    """A stored model (configuration, metadata JSON, weights, checksum) as a checked
    :class:`~napari_pinned.nn.network.ModelBundle` on the CPU, in evaluation mode.

    The size the configuration asks for, the checksum and every tensor's shape are
    checked before the network is built; its weights must be finite.  ``where`` names
    the file in the one-line :class:`ModelFileError`.
    """
    try:
        config = ModelConfig.from_dict(payload.get("config"))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: invalid model configuration: {exc}") from None
    try:
        check_model_size(config, source=str(where))
    except ValueError as exc:
        raise ModelFileError(str(exc)) from None
    metadata_json = payload.get("metadata_json")
    try:
        metadata = json.loads(metadata_json)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: invalid metadata: {summary(exc)}") from None
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{where}: invalid metadata: not a dict")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{where}: weights missing or not tensors")
    if payload.get("sha256") != checksum(payload["config"], metadata_json, state):
        raise ModelFileError(
            f"{where}: the file is corrupted (its checksum does not match its contents)"
        )
    # Every tensor must be what the configuration says, before the network is built.
    expected = expected_shapes(config)
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        count = len(missing) + len(extra)
        raise ModelFileError(
            f"{where}: weights do not match the stored architecture ({what}"
            f"{f' and {count - 1} more' if count > 1 else ''})"
        )
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise ModelFileError(
                f"{where}: weights do not match the stored architecture ({name!r} has shape "
                f"{tuple(state[name].shape)}, the configuration needs {shape})"
            )
    model = PinnedNetwork(config)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise ModelFileError(
            f"{where}: weights do not match the stored architecture: {summary(exc)}"
        ) from None
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise ModelFileError(f"{where}: weights contain NaN or infinite values")
    return ModelBundle(model=model.eval(), config=config, metadata=metadata, source=str(where))


def read_model_file(path: str | os.PathLike) -> ModelBundle:
    """A napari-pinned model file as a :class:`~napari_pinned.nn.network.ModelBundle` on
    the CPU, in evaluation mode (any model reference: :func:`napari_pinned.nn.resolve.load_model`).

    Raises
    ------
    ModelFileError
        If the file is missing, truncated, corrupted, of another format version, not
        a model file, or carries Python objects other than tensors and plain data
        (such files are refused without running anything from them).
    """
    p = pathlib.Path(path).expanduser()
    return bundle_from_payload(_read_payload(p), p)
