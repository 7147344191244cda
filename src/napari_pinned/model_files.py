"""Model files: writing and reading trained PINNED networks with their provenance.

Model files are ``torch.save`` archives of a dict holding only tensors and plain
Python values, read back with ``torch.load(..., weights_only=True)`` so that opening a
file can never run code from it.  A SHA-256 over the contents catches corruption (not
tampering: anyone can recompute it).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_pinned import __version__
from napari_pinned.devices import resolve_device
from napari_pinned.model import PINNED, ModelBundle, ModelConfig

#: Version of the model-file layout written by :func:`save_model`.
FORMAT_VERSION = 1
#: Value of the ``"format"`` key that marks a napari-pinned model file.
FILE_FORMAT = "napari-pinned-model"


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
    return pathlib.Path(__file__).resolve().parent / "data" / "models"


def default_model_path() -> pathlib.Path:
    """Where the default pretrained model shipped with the package lives."""
    return _models_folder() / "default.pt"


def shipped_model(name: str) -> ShippedModel | None:
    """The shipped model called ``name`` (case-insensitive), or None."""
    key = name.strip().lower()
    return next((m for m in SHIPPED_MODELS if m.name == key), None)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (pathlib.PurePath, torch.device)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _file_payload(bundle: ModelBundle) -> dict[str, Any]:
    if not isinstance(bundle, ModelBundle):
        raise ValueError(f"save_model expects a ModelBundle, got {type(bundle).__name__}")
    if bundle.model.config != bundle.config:
        raise ValueError(
            "the bundle's config does not match its model's config; "
            "build the model from bundle.config"
        )
    try:
        metadata_json = json.dumps(bundle.metadata, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model metadata must be plain JSON-able data: {exc}") from None
    state = {k: v.detach().to("cpu") for k, v in bundle.model.state_dict().items()}
    config = bundle.config.to_dict()
    return {
        "format": FILE_FORMAT,
        "format_version": FORMAT_VERSION,
        "written_by": f"napari-pinned {__version__}",
        "config": config,
        "metadata_json": metadata_json,
        "state_dict": state,
        "sha256": _checksum(config, metadata_json, state),
    }


def _checksum(config: dict, metadata_json: str, state: Mapping[str, torch.Tensor]) -> str:
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


def _fsync_directory(directory: pathlib.Path) -> None:
    """Make a rename durable; not possible on every platform (Windows), hence best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    return atomic_torch_save(_file_payload(bundle), target)


def atomic_torch_save(payload: Any, target: pathlib.Path) -> pathlib.Path:
    """``torch.save`` to a temporary file beside ``target``, flushed, then renamed over it."""
    tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # os.open with 0o666 honours the user's umask, unlike tempfile's private 0o600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)
    return target


def _first_line(exc: BaseException, limit: int = 160) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    line = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _load_error(path: pathlib.Path, exc: Exception) -> ModelFileError:
    """Turn torch's long unpickling messages into one line naming the file."""
    text = str(exc)
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return ModelFileError(
            f"{path}: refused: the file contains the Python object {refused.group(1)!r}; "
            "napari-pinned model files hold only weights and plain data, and loading "
            "anything else could run code"
        )
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1]
        reason = next((ln.strip() for ln in detail.splitlines() if ln.strip()), "")
        reason = f"unpickling failed: {reason}"
    else:
        reason = _first_line(exc)
    return ModelFileError(
        f"{path}: not a napari-pinned model file, or the file is truncated or corrupted ({reason})"
    )


def _read_payload(path: pathlib.Path) -> dict[str, Any]:
    if not path.exists():
        raise ModelFileError(f"{path}: model file not found")
    if not path.is_file():
        raise ModelFileError(f"{path}: is not a file")
    try:
        # weights_only: the unpickler only rebuilds tensors and plain containers, so a
        # file carrying code (a custom class, a __reduce__ payload) is refused unrun.
        with warnings.catch_warnings():
            # e.g. "Detected pickle protocol 4": noise for a file we are about to reject.
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _load_error(path, exc) from None
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


def _bundle_from_payload(payload: dict[str, Any], path: pathlib.Path) -> ModelBundle:
    try:
        config = ModelConfig.from_dict(payload.get("config"))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid model configuration: {exc}") from None
    metadata_json = payload.get("metadata_json")
    try:
        metadata = json.loads(metadata_json)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid metadata: {_first_line(exc)}") from None
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{path}: invalid metadata: not a dict")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{path}: weights missing or not tensors")
    if payload.get("sha256") != _checksum(payload["config"], metadata_json, state):
        raise ModelFileError(
            f"{path}: the file is corrupted (its checksum does not match its contents)"
        )
    model = PINNED(config)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise ModelFileError(
            f"{path}: weights do not match the stored architecture: {_first_line(exc)}"
        ) from None
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise ModelFileError(f"{path}: weights contain NaN or infinite values")
    return ModelBundle(model=model.eval(), config=config, metadata=metadata, source=str(path))


def load_model(
    model: str | os.PathLike | ModelBundle = "default",
    *,
    device: str | torch.device = "cpu",
) -> ModelBundle:
    """Load a model: a shipped one by name (``"default"``, ``"cdn"``), a file, or a bundle.

    A bundle is returned as is, with its network moved to ``device``.  Models read
    from files are in evaluation mode.

    Raises
    ------
    ModelFileError
        If the file is missing, truncated, corrupted, of another format version, not
        a model file, or carries Python objects other than tensors and plain data
        (such files are refused without running anything from them).
    ValueError
        If ``device`` is unknown or unavailable.
    """
    dev = resolve_device(device)
    if isinstance(model, ModelBundle):
        model.model.to(dev)
        return model
    shipped = shipped_model(model) if isinstance(model, str) else None
    if shipped is not None:
        path = shipped.path
        if not path.is_file():
            raise ModelFileError(
                f"the {shipped.name!r} model is missing (expected {path}); reinstall "
                "napari-pinned, or train one with `napari-pinned train ... -o my-model.pt` "
                "and pass that file"
            )
    elif isinstance(model, (str, os.PathLike)):
        path = pathlib.Path(model).expanduser()
    else:
        raise ValueError(
            f"model must be a shipped model's name ({', '.join(m.name for m in SHIPPED_MODELS)}), "
            f"a file path or a ModelBundle, got {type(model).__name__}"
        )
    bundle = _bundle_from_payload(_read_payload(path), path)
    bundle.model.to(dev)
    return bundle
