"""The PINNED network, its configuration, intensity normalisation and model files.

Architecture (Awan et al., "Physics Informed Neural Network Enhanced Denoising for
Atomic Resolution STEM Imaging" (PINNED), Methods): a convolutional
encoder–decoder.  Every encoder and decoder block applies three successive 3×3
convolutions, each followed by a Leaky ReLU; the encoder compresses the image into a
latent representation and the decoder mirrors it, upsampling with transposed
convolutions.  The paper's network has no skip connections; we keep that as the
``"paper"`` preset and offer U-Net-style skip connections and a residual output
(``output = input + f(input)``) as the ``"unet"`` preset.

Downsampling uses 2×2 max-pooling with stride 2 rather than strided convolutions: the
paper describes each block as exactly three convolutions, pooling adds no parameters
and no extra layer to that description, and it keeps the receptive field a simple
analytic function of the depth (:func:`receptive_field`).

Model files are ``torch.save`` archives of a dict holding only tensors and plain
Python values, read back with ``torch.load(..., weights_only=True)`` so that opening a
file can never run code from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import re
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_pinned import __version__
from napari_pinned.intensity import (
    PAPER_RANGE,
    check_image,
    from_paper_scale,
    infer_data_range,
    to_paper_scale,
)

#: Version of the model-file layout written by :func:`save_model`.
FORMAT_VERSION = 1
#: Value of the ``"format"`` key that marks a napari-pinned model file.
FILE_FORMAT = "napari-pinned-model"
#: Channel count stops doubling at this multiple of the base width (memory grows as width²).
MAX_WIDTH_FACTOR = 8
#: Robust percentiles mapped to the paper's [0, 255] in ``"percentile"`` normalisation.
PERCENTILES = (0.5, 99.5)

_ARCHITECTURES = ("paper", "unet")
_NORMALIZATIONS = ("range", "percentile")
_PAPER_MAX = PAPER_RANGE[1]


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and intensity normalisation of a PINNED network.

    Parameters
    ----------
    architecture : {"paper", "unet"}
        Descriptive name only; ``skip_connections`` and ``residual`` are authoritative.
    depth : int
        Number of 2× downsamplings (the latent block works at 1/2**depth resolution).
    width : int
        Channels of the first block; doubled per level up to ``MAX_WIDTH_FACTOR × width``.
    negative_slope : float
        Slope of the Leaky ReLU for negative inputs.
    skip_connections : bool
        Concatenate encoder features into the decoder block of the same level (U-Net).
    residual : bool
        Predict a correction added to the input instead of the image itself.
    normalization : {"range", "percentile"}
        How images are mapped to model units, see :func:`normalize`.
    """

    architecture: str = "unet"
    depth: int = 3
    width: int = 32
    negative_slope: float = 0.01
    skip_connections: bool = True
    residual: bool = True
    normalization: str = "range"

    def __post_init__(self) -> None:
        if self.architecture not in _ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {self.architecture!r}; use one of {list(_ARCHITECTURES)}"
            )
        if self.normalization not in _NORMALIZATIONS:
            raise ValueError(
                f"unknown normalization {self.normalization!r}; use one of {list(_NORMALIZATIONS)}"
            )
        for name, low, high in (("depth", 1, 8), ("width", 1, 1024)):
            value = getattr(self, name)
            if not _is_int(value) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        slope = self.negative_slope
        if not _is_number(slope) or not 0.0 <= slope < 1.0:
            raise ValueError(f"negative_slope must be a number in [0, 1), got {slope!r}")
        for name in ("skip_connections", "residual"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """A named configuration, optionally with some settings changed.

        ``"paper"`` is the network as published (no skips, no residual); ``"unet"``
        adds skip connections and a residual output; ``"tiny"`` is a 4-channel,
        depth-2 U-Net for tests and demos.
        """
        if name not in _PRESETS:
            raise ValueError(f"unknown model preset {name!r}; use one of {sorted(_PRESETS)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown model setting(s) {unknown}; known: {sorted(known)}")
        return cls(**{**_PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able dict of all settings."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``, missing keys
        take their defaults."""
        if not isinstance(d, Mapping):
            raise ValueError(f"model config must be a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise ValueError(f"unknown model setting(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(d))

    @property
    def alignment(self) -> int:
        """``2**depth``: the network is shift-equivariant only for shifts by multiples
        of this, so tiles should start at multiples of it."""
        return 2**self.depth

    def channels(self) -> list[int]:
        """Channels per level: encoder levels ``0 … depth-1``, then the latent block."""
        cap = MAX_WIDTH_FACTOR * self.width
        return [min(self.width * 2**level, cap) for level in range(self.depth + 1)]


_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "architecture": "paper",
        "depth": 3,
        "width": 32,
        "skip_connections": False,
        "residual": False,
    },
    "unet": {
        "architecture": "unet",
        "depth": 3,
        "width": 32,
        "skip_connections": True,
        "residual": True,
    },
    "tiny": {
        "architecture": "unet",
        "depth": 2,
        "width": 4,
        "skip_connections": True,
        "residual": True,
    },
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- network ---------------------------------------------------------------------------


def _conv_block(in_channels: int, out_channels: int, slope: float) -> nn.Sequential:
    """Three 3×3 convolutions, each followed by a Leaky ReLU (the paper's block)."""
    layers: list[nn.Module] = []
    for i in range(3):
        layers.append(
            nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1)
        )
        layers.append(nn.LeakyReLU(slope))
    return nn.Sequential(*layers)


class PINNED(nn.Module):
    """The PINNED encoder–decoder.

    Takes ``(B, 1, H, W)`` images of any size in model units (see :func:`normalize`)
    and returns the same shape.  Inputs are reflect-padded at the bottom and right to
    a multiple of ``2**depth`` (replicate-padded where the image is too small to
    reflect) and the output is cropped back.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        channels = config.channels()
        slope = config.negative_slope
        depth = config.depth
        self.encoder = nn.ModuleList(
            _conv_block(1 if level == 0 else channels[level - 1], channels[level], slope)
            for level in range(depth)
        )
        self.pool = nn.MaxPool2d(2, stride=2)
        self.latent = _conv_block(channels[depth - 1], channels[depth], slope)
        # Index ``level`` of up/decoder works at encoder ``level``'s resolution.
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(channels[level + 1], channels[level], 2, stride=2)
            for level in range(depth)
        )
        factor = 2 if config.skip_connections else 1
        self.decoder = nn.ModuleList(
            _conv_block(factor * channels[level], channels[level], slope) for level in range(depth)
        )
        self.head = nn.Conv2d(channels[0], 1, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        """He initialisation for the Leaky ReLU (He et al. 2015, "Delving deep into
        rectifiers"), so activations keep their scale through the 20-odd layers.

        PyTorch's default (uniform, gain 1/√3) shrinks them at every layer: a fresh
        depth-3 plain network then outputs a nearly constant image and trains slowly.
        """
        slope = self.config.negative_slope
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module is not self.head:
                nn.init.kaiming_normal_(module.weight, a=slope, nonlinearity="leaky_relu")
            elif isinstance(module, nn.ConvTranspose2d):
                # Kernel 2 = stride 2: each output pixel sees one input pixel in every
                # input channel, so the fan-in is the input channel count (torch's
                # fan-in formula for transposed weights would count output channels).
                nn.init.normal_(module.weight, std=1.0 / math.sqrt(module.in_channels))
            else:
                continue
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise a ``(B, 1, H, W)`` batch; returns ``(B, 1, H, W)``."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"PINNED expects a (B, 1, H, W) tensor, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            x = x.float()
        height, width = x.shape[-2:]
        out = self._core(_pad_to_multiple(x, self.config.alignment))[..., :height, :width]
        return x + out if self.config.residual else out

    def _core(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.latent(x)
        for level in reversed(range(self.config.depth)):
            x = self.up[level](x)
            if self.config.skip_connections:
                x = torch.cat([skips[level], x], dim=1)
            x = self.decoder[level](x)
        return self.head(x)


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad H and W at the bottom and right up to a multiple of ``multiple``.

    Padding only after the image keeps the pooling grid anchored at its first row and
    column: a network with 2×2 pooling is shift-equivariant only for shifts by
    multiples of ``2**depth``, so a crop starting at such a multiple is processed
    exactly like the same pixels inside the whole image (tiled inference relies on
    it).  Reflection needs the pad to be shorter than the axis; tiny images fall back
    to replicating the edge.
    """
    for axis in (-2, -1):
        size = x.shape[axis]
        pad = (-size) % multiple
        if pad == 0:
            continue
        mode = "reflect" if pad < size else "replicate"
        x = F.pad(x, (0, 0, 0, pad) if axis == -2 else (0, pad, 0, 0), mode=mode)
    return x


def build_model(config: ModelConfig) -> PINNED:
    """A freshly initialised PINNED network for ``config``."""
    if not isinstance(config, ModelConfig):
        raise ValueError(f"config must be a ModelConfig, got {type(config).__name__}")
    return PINNED(config)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (weights and biases) of ``model``."""
    return sum(p.numel() for p in model.parameters())


def receptive_field(config: ModelConfig) -> int:
    """Edge length in pixels of the input window that can influence one output pixel.

    Computed exactly by following one output pixel back through the layers as an
    interval of pixel indices: a 3×3 convolution widens it by one pixel per side, a
    2×2 stride-2 transposed convolution maps output pixel ``q`` to input pixel
    ``q // 2``, a 2×2 stride-2 pooling maps pixel ``q`` to ``2q`` and ``2q + 1``.  The
    window depends on the output pixel's position modulo ``2**depth`` (how it aligns
    with the pooling grid); the largest is returned (26, 66, 146, 298 px for depth
    1–4).  Skip paths are shallower and lie inside it; the residual adds the pixel
    itself.  The window is the same along rows and columns.
    """
    largest = 0
    for position in range(2**config.depth):
        low = high = position
        for _ in range(config.depth):  # decoder block, then its transposed convolution
            low, high = (low - 3) // 2, (high + 3) // 2
        low, high = low - 3, high + 3  # latent block
        for _ in range(config.depth):  # pooling, then the encoder block before it
            low, high = 2 * low - 3, 2 * high + 1 + 3
        largest = max(largest, high - low + 1)
    return largest


# -- intensity normalisation -----------------------------------------------------------


@dataclass(frozen=True)
class NormState:
    """How an image was mapped to model units: ``model = (image - low) / (high - low)``.

    ``low`` and ``high`` are the image intensities that map to the paper's 0 and 255.
    """

    mode: str
    low: float
    high: float


def normalize(image: np.ndarray, config: ModelConfig) -> tuple[np.ndarray, NormState]:
    """Map an image (or stack) to model units, the paper's [0, 255] divided by 255.

    ``"range"`` maps the range from :func:`napari_pinned.intensity.infer_data_range`
    (0–255 for uint8 and for images already within [0, 255], else min–max);
    ``"percentile"`` maps the 0.5th and 99.5th percentiles, so a few hot or dead pixels
    do not compress the contrast.  Values outside the mapped range are kept, not clipped.

    Returns
    -------
    tuple
        float32 array of the image's shape, and the :class:`NormState` that
        :func:`denormalize` needs.
    """
    arr = check_image(image, name="image", ndim=(2, 3))
    if config.normalization == "percentile":
        low, high = (float(v) for v in np.percentile(arr, PERCENTILES))
        if not high > low:
            # Images that are constant over 99% of pixels: fall back to the full range.
            low, high = infer_data_range(arr)
    else:
        low, high = infer_data_range(arr)
    scaled = to_paper_scale(arr, (low, high)) / np.float32(_PAPER_MAX)
    return scaled.astype(np.float32, copy=False), NormState(config.normalization, low, high)


def denormalize(output: np.ndarray, state: NormState) -> np.ndarray:
    """Map model output back to the intensity scale of the image given to :func:`normalize`."""
    paper = np.asarray(output, dtype=np.float32) * np.float32(_PAPER_MAX)
    return from_paper_scale(paper, (state.low, state.high))


# -- devices ---------------------------------------------------------------------------


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"`` into a usable device.

    ``"auto"`` picks CUDA, then Apple MPS, then the CPU.  A device that is unknown or
    not available on this machine raises ``ValueError`` saying so.
    """
    if isinstance(device, str):
        name = device.strip().lower()
        if name == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            if _mps_available():
                return torch.device("mps")
            return torch.device("cpu")
        try:
            dev = torch.device(name)
        except (RuntimeError, ValueError):
            raise ValueError(
                f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
            ) from None
    elif isinstance(device, torch.device):
        dev = device
    else:
        raise ValueError(f"device must be a string or torch.device, got {type(device).__name__}")
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(dev)!r} requested but CUDA is not available (no NVIDIA GPU found "
                "or this PyTorch build is CPU-only); use device='cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {str(dev)!r} requested but only {count} CUDA device(s) exist")
        return dev
    if dev.type == "mps":
        if not _mps_available():
            raise ValueError(
                "device 'mps' requested but Apple MPS is not available on this machine; "
                "use device='cpu' or 'auto'"
            )
        return dev
    raise ValueError(f"unsupported device {str(dev)!r}; use 'auto', 'cpu', 'cuda' or 'mps'")


# -- model files -----------------------------------------------------------------------


class ModelFileError(ValueError):
    """A model file is missing, unreadable, corrupted, or not a napari-pinned model."""


@dataclass
class ModelBundle:
    """A network with its configuration and provenance; what model files contain.

    ``metadata`` is plain JSON-able data (training steps, losses, validation metrics,
    loss weights, noise range, date, package version, name).  ``source`` says where the
    bundle came from (a file path, or ``"<memory>"``).
    """

    model: PINNED
    config: ModelConfig
    metadata: dict = field(default_factory=dict)
    source: str = "<memory>"


def default_model_path() -> pathlib.Path:
    """Where the pretrained model shipped with the package lives (it may not exist yet)."""
    return pathlib.Path(__file__).resolve().parent / "data" / "models" / "default.pt"


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
    """Load a model: ``"default"`` (the shipped pretrained model), a file, or a bundle.

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
    if isinstance(model, str) and model.strip() == "default":
        path = default_model_path()
        if not path.is_file():
            raise ModelFileError(
                f"the default model is missing (expected {path}); reinstall napari-pinned, "
                "or train one with `napari-pinned train ... -o my-model.pt` and pass that file"
            )
    elif isinstance(model, (str, os.PathLike)):
        path = pathlib.Path(model).expanduser()
    else:
        raise ValueError(
            f"model must be 'default', a file path or a ModelBundle, got {type(model).__name__}"
        )
    bundle = _bundle_from_payload(_read_payload(path), path)
    bundle.model.to(dev)
    return bundle
