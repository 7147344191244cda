"""ONNX model files: napari-pinned's network exported to ONNX, read without torch.

An ONNX model file (:func:`napari_pinned.share.onnx_export.export_onnx`) holds the bare
network, for inputs whose height and width are multiples of ``2**depth`` (the runner pads
others like :class:`napari_pinned.nn.network.PinnedNetwork` does), with napari-pinned's
configuration, metadata and checksum in the model's ``metadata_props`` under
``"napari_pinned"``.  Files are bounded (:data:`MAX_ONNX_BYTES`) and refused when they
keep tensors in external files, so loading one reads nothing but the file itself.  ONNX
Runtime runs only its built-in operators: an ONNX file cannot carry code.

Reading (:func:`load_onnx_model`) imports neither torch nor napari-pinned's torch
modules; :func:`onnx_bytes` and :func:`onnx_model` export a torch model (and need torch).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_args

from napari_pinned._version import __version__

if TYPE_CHECKING:
    from napari_pinned.nn.network import ModelBundle

__all__ = [
    "MAX_ONNX_BYTES",
    "OPSET",
    "OnnxConfig",
    "OnnxModel",
    "check_onnx_bytes",
    "is_onnx_file",
    "is_onnx_model",
    "load_onnx_model",
    "onnx_bytes",
    "onnx_model",
    "require_onnxruntime",
]

#: ``metadata_props`` key and format of napari-pinned ONNX files.
ONNX_KEY = "napari_pinned"
ONNX_FORMAT = "napari-pinned-onnx"
ONNX_FORMAT_VERSION = 1
#: ONNX operator set of exported files (ONNX Runtime ≥ 1.14 runs it).
OPSET = 17
#: Largest ONNX file napari-pinned reads (a model file's bound).
MAX_ONNX_BYTES = 512 * 1024**2
_HINT = "pip install 'napari-pinned[onnx]'"
_CONFIG_KEYS = {
    "architecture": str,
    "depth": int,
    "width": int,
    "negative_slope": (int, float),
    "skip_connections": bool,
    "residual": bool,
    "normalization": str,
    "conditioning": str,
}
#: Settings added after the first files were written, which therefore may lack them.
_OPTIONAL_CONFIG_KEYS = {"max_width_factor": int}


def require_onnxruntime(what: str = "the onnx backend") -> Any:
    """Import onnxruntime, or raise ``ValueError`` saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise ValueError(f"{what} needs onnxruntime, which is not installed ({_HINT})") from None
    return onnxruntime


def require_onnx(what: str) -> Any:
    """Import onnx, or raise ``ValueError`` saying ``what`` needs it and how to install it."""
    try:
        import onnx
    except ImportError:
        raise ValueError(
            f"{what} needs the onnx package, which is not installed ({_HINT})"
        ) from None
    return onnx


def is_onnx_file(model: Any) -> bool:
    """Whether ``model`` names an ONNX file (by its ``.onnx`` suffix)."""
    return isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx")


def is_onnx_model(model: Any) -> bool:
    """Whether ``model`` is an ONNX model: an :class:`OnnxModel` or an ONNX file's name."""
    return isinstance(model, OnnxModel) or is_onnx_file(model)


def check_onnx_bytes(data: bytes, where: str) -> Any:
    """Parse an ONNX model without loading external data, and refuse one that has any.

    Returns the ``ModelProto``.  External tensor data names files by path, which could
    make loading read files outside the model's own.
    """
    onnx = require_onnx(where)
    try:
        proto = onnx.load_model_from_string(data)  # never reads external data
    except Exception as exc:
        raise ValueError(f"{where}: not an ONNX model, or the file is corrupted ({exc})") from None
    external = onnx.TensorProto.EXTERNAL
    tensors = list(proto.graph.initializer)
    for node in proto.graph.node:
        tensors += [a.t for a in node.attribute if a.HasField("t")]
    if any(t.data_location == external for t in tensors):
        raise ValueError(
            f"{where}: refused: the ONNX model keeps tensors in external files; napari-pinned "
            "reads self-contained ONNX files only"
        )
    return proto


# -- ONNX model files -------------------------------------------------------------------


@dataclass(frozen=True)
class OnnxConfig:
    """The parts of a :class:`~napari_pinned.nn.network.ModelConfig` inference needs, read
    from an ONNX file without torch."""

    settings: Mapping[str, Any]
    #: :func:`napari_pinned.nn.network.receptive_reach` of the network (tiles need it as halo).
    receptive_reach: int

    @property
    def depth(self) -> int:
        return int(self.settings["depth"])

    @property
    def alignment(self) -> int:
        return 2**self.depth

    @property
    def normalization(self) -> str:
        return str(self.settings["normalization"])

    @property
    def conditioned(self) -> bool:
        return self.settings["conditioning"] != "none"

    @property
    def lattice(self) -> bool:
        return self.settings["conditioning"] == "noise-map+lattice"

    @property
    def input_channels(self) -> int:
        return 1 + self.conditioned + self.lattice

    def to_dict(self) -> dict[str, Any]:
        return dict(self.settings)


@dataclass(frozen=True)
class OnnxModel:
    """A napari-pinned network exported to ONNX: the graph and its provenance."""

    data: bytes = field(repr=False)
    config: OnnxConfig
    metadata: dict[str, Any]
    source: str = "<memory>"


def _check_config(settings: Any, where: str, reach: Any) -> OnnxConfig:
    from napari_pinned.settings import NORMALIZATIONS, Conditioning

    known = {**_CONFIG_KEYS, **_OPTIONAL_CONFIG_KEYS}
    if not isinstance(settings, Mapping) or set(settings) - set(known):
        raise ValueError(f"{where}: invalid napari-pinned configuration in the ONNX file")
    for key, kind in known.items():
        value = settings.get(key)
        if key in _OPTIONAL_CONFIG_KEYS and key not in settings:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"{where}: invalid napari-pinned configuration ({key}={value!r})")
    if not 1 <= settings["depth"] <= 8 or settings["normalization"] not in NORMALIZATIONS:
        raise ValueError(f"{where}: invalid napari-pinned configuration")
    if settings["conditioning"] not in get_args(Conditioning):
        raise ValueError(f"{where}: invalid napari-pinned configuration (conditioning)")
    if isinstance(reach, bool) or not isinstance(reach, int) or not 0 < reach < 10_000:
        raise ValueError(f"{where}: invalid receptive field in the ONNX file ({reach!r})")
    return OnnxConfig(dict(settings), reach)


def _onnx_checksum(config: Mapping[str, Any], metadata_json: str, graph: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(dict(config), sort_keys=True).encode())
    digest.update(metadata_json.encode())
    digest.update(graph)
    return digest.hexdigest()


def load_onnx_model(path: str | os.PathLike) -> OnnxModel:
    """Read an ONNX model file written by :func:`export_onnx` (no torch needed).

    Raises
    ------
    ValueError
        One line naming the file: missing, too large, not ONNX, external data, not
        written by napari-pinned, or corrupted (checksum).
    """
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"{p}: ONNX model file not found")
    if p.stat().st_size > MAX_ONNX_BYTES:
        raise ValueError(f"{p}: larger than an ONNX model file may be ({MAX_ONNX_BYTES} bytes)")
    data = p.read_bytes()
    proto = check_onnx_bytes(data, str(p))
    props = {prop.key: prop.value for prop in proto.metadata_props}
    try:
        info = json.loads(props[ONNX_KEY])
    except (KeyError, ValueError):
        raise ValueError(
            f"{p}: not a napari-pinned ONNX model (no {ONNX_KEY!r} metadata); export one with "
            "`napari-pinned export MODEL --format onnx -o model.onnx`"
        ) from None
    if not isinstance(info, dict) or info.get("format") != ONNX_FORMAT:
        raise ValueError(f"{p}: not a napari-pinned ONNX model")
    if info.get("format_version") != ONNX_FORMAT_VERSION:
        raise ValueError(
            f"{p}: napari-pinned ONNX format version {info.get('format_version')!r} is not "
            f"supported; this napari-pinned {__version__} reads version {ONNX_FORMAT_VERSION}"
        )
    config = _check_config(info.get("config"), str(p), info.get("receptive_reach"))
    metadata_json = info.get("metadata_json")
    try:
        metadata = json.loads(metadata_json)
    except (TypeError, ValueError):
        raise ValueError(f"{p}: invalid metadata in the ONNX file") from None
    del proto.metadata_props[:]
    graph = proto.SerializeToString(deterministic=True)
    if info.get("sha256") != _onnx_checksum(config.settings, metadata_json, graph):
        raise ValueError(f"{p}: the file is corrupted (its checksum does not match its contents)")
    return OnnxModel(data, config, metadata if isinstance(metadata, dict) else {}, str(p))


def _network_module(bundle: ModelBundle) -> Any:
    """PINNED without its own padding: H and W must be multiples of ``2**depth``."""
    import torch

    net = bundle.model

    class _Network(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.forward_aligned(x)

    return _Network().eval()


def onnx_bytes(bundle: ModelBundle, *, opset: int = OPSET) -> bytes:
    """The network of ``bundle`` as an ONNX model (with napari-pinned's metadata)."""
    import warnings

    import torch

    from napari_pinned.nn.model_files import metadata_text
    from napari_pinned.nn.network import receptive_reach

    onnx = require_onnx("exporting to ONNX")
    cfg = bundle.config
    module = _network_module(bundle).to("cpu")
    align = cfg.alignment
    example = torch.zeros(1, cfg.input_channels, 2 * align, 3 * align)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript-based exporter: dynamic axes, no onnxscript needed, 4× faster
        # to export than torch 2.13's default dynamo exporter; both give the same graph
        # up to 1e-4 (tests/nn/test_runners.py checks the result against torch).
        torch.onnx.export(
            module,
            (example,),
            buffer,
            dynamo=False,
            input_names=["tiles"],
            output_names=["denoised"],
            dynamic_axes={
                "tiles": {0: "batch", 2: "height", 3: "width"},
                "denoised": {0: "batch", 2: "height", 3: "width"},
            },
            opset_version=opset,
        )
    proto = onnx.load_model_from_string(buffer.getvalue())
    proto.producer_name = "napari-pinned"
    proto.producer_version = __version__
    del proto.metadata_props[:]
    graph = proto.SerializeToString(deterministic=True)
    metadata_json = metadata_text(bundle.metadata)
    info = {
        "format": ONNX_FORMAT,
        "format_version": ONNX_FORMAT_VERSION,
        "written_by": f"napari-pinned {__version__}",
        "config": cfg.to_dict(),
        "receptive_reach": receptive_reach(cfg),
        "metadata_json": metadata_json,
        "input": f"(batch, {cfg.input_channels}, H, W) float32 model units, H and W "
        f"multiples of {align}",
        "sha256": _onnx_checksum(cfg.to_dict(), metadata_json, graph),
    }
    entry = proto.metadata_props.add()
    entry.key = ONNX_KEY
    entry.value = json.dumps(info)
    return proto.SerializeToString()


#: ONNX exports of models given to the onnx backend as torch models, by checksum.
_ONNX_CACHE: dict[str, OnnxModel] = {}


def onnx_model(bundle: ModelBundle) -> OnnxModel:
    """The network of ``bundle`` as an :class:`OnnxModel`, exported once per model and
    process (the last few are kept, by their checksum)."""
    from napari_pinned.nn.model_files import bundle_checksum

    key = bundle_checksum(bundle)
    if key not in _ONNX_CACHE:
        if len(_ONNX_CACHE) >= 4:
            _ONNX_CACHE.pop(next(iter(_ONNX_CACHE)))
        from napari_pinned.nn.network import receptive_reach

        data = onnx_bytes(bundle)
        config = OnnxConfig(bundle.config.to_dict(), receptive_reach(bundle.config))
        _ONNX_CACHE[key] = OnnxModel(data, config, dict(bundle.metadata), bundle.source)
    return _ONNX_CACHE[key]
