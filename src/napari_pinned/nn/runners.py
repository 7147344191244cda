"""Network runners: the PINNED network in torch, or its ONNX export in ONNX Runtime.

:func:`napari_pinned.denoising.denoiser.iter_denoise` prepares every frame (outlier repair,
normalisation, noise map; :mod:`napari_pinned.nn.conditioning`), cuts it into tiles and
hands batches of tiles to a :class:`NetworkRunner`: a callable taking a ``(B, C, H, W)``
float32 batch in model units and returning ``(B, 1, H, W)``.  Everything around the
network is numpy, so the ONNX runner needs no torch at all (:func:`load_onnx_model`
and :class:`OnnxRunner` import neither torch nor napari-pinned's torch modules).

ONNX model files (:func:`export_onnx`) hold the bare network, for inputs whose height
and width are multiples of ``2**depth`` (the runner pads others like
:class:`napari_pinned.nn.network.PINNED` does), with napari-pinned's configuration,
metadata and checksum in the model's ``metadata_props`` under ``"napari_pinned"``.
They are bounded (:data:`MAX_ONNX_BYTES`) and refused when they keep tensors in
external files, so loading one reads nothing but the file itself.  ONNX Runtime runs
only its built-in operators: an ONNX file cannot carry code.

Which backend is faster on a CPU is measured by ``benchmarks/speed.py --backend onnx``
(docs/benchmarks.md); ``backend="auto"`` picks :data:`CPU_DEFAULT` there.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from napari_pinned._version import __version__

if TYPE_CHECKING:
    from napari_pinned.nn.network import ModelBundle

__all__ = [
    "BACKENDS",
    "CPU_DEFAULT",
    "NetworkRunner",
    "OnnxModel",
    "OnnxRunner",
    "TorchRunner",
    "export_onnx",
    "is_onnx_file",
    "load_onnx_model",
    "make_runner",
    "onnx_model",
    "set_onnx_options",
]

BACKENDS = ("auto", "torch", "onnx")
#: What ``backend="auto"`` runs on a CPU (see benchmarks/speed.py --backend onnx).
CPU_DEFAULT = "torch"
#: ``metadata_props`` key and format of napari-pinned ONNX files.
ONNX_KEY = "napari_pinned"
ONNX_FORMAT = "napari-pinned-onnx"
ONNX_FORMAT_VERSION = 1
#: ONNX operator set of exported files (ONNX Runtime ≥ 1.14 runs it).
OPSET = 17
#: Largest ONNX file napari-pinned reads (a model file's bound).
MAX_ONNX_BYTES = 512 * 1024**2
#: ONNX Runtime's graph optimisation levels, by name.
OPTIMIZATIONS = ("all", "extended", "basic", "none")
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


class NetworkRunner(Protocol):
    """Runs the network on a batch of prepared tiles."""

    backend: str

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(B, C, H, W)`` float32 model units to ``(B, 1, H, W)`` float32."""
        ...


def require_onnxruntime(what: str = "the onnx backend") -> Any:
    """Import onnxruntime, or raise ``ValueError`` saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise ValueError(f"{what} needs onnxruntime, which is not installed ({_HINT})") from None
    return onnxruntime


def _require_onnx(what: str) -> Any:
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


def check_onnx_bytes(data: bytes, where: str) -> Any:
    """Parse an ONNX model without loading external data, and refuse one that has any.

    Returns the ``ModelProto``.  External tensor data names files by path, which could
    make loading read files outside the model's own.
    """
    onnx = _require_onnx(where)
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


# -- ONNX model files --------------------------------------------------------------------


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
        return self.settings["conditioning"] == "noise-map"

    @property
    def input_channels(self) -> int:
        return 2 if self.conditioned else 1

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
    from napari_pinned.settings import NORMALIZATIONS

    if not isinstance(settings, Mapping) or set(settings) - set(_CONFIG_KEYS):
        raise ValueError(f"{where}: invalid napari-pinned configuration in the ONNX file")
    for key, kind in _CONFIG_KEYS.items():
        value = settings.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"{where}: invalid napari-pinned configuration ({key}={value!r})")
    if not 1 <= settings["depth"] <= 8 or settings["normalization"] not in NORMALIZATIONS:
        raise ValueError(f"{where}: invalid napari-pinned configuration")
    if settings["conditioning"] not in ("none", "noise-map"):
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
    cfg = bundle.config

    class _Network(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if cfg.conditioned:
                image, sigma = x[:, :1], x[:, 1:]
                log_sigma = torch.log(sigma.clamp_min(1e-3))
                out = self.net._core(torch.cat([image, sigma, log_sigma], dim=1))
                return image + sigma * out
            out = self.net._core(x)
            return x + out if cfg.residual else out

    return _Network().eval()


def onnx_bytes(bundle: ModelBundle, *, opset: int = OPSET) -> bytes:
    """The network of ``bundle`` as an ONNX model (with napari-pinned's metadata)."""
    import warnings

    import torch

    from napari_pinned.nn.model_files import _json_default
    from napari_pinned.nn.network import receptive_reach

    onnx = _require_onnx("exporting to ONNX")
    cfg = bundle.config
    module = _network_module(bundle).to("cpu")
    align = cfg.alignment
    example = torch.zeros(1, cfg.input_channels, 2 * align, 3 * align)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript-based exporter: dynamic axes, no onnxscript needed, 4× faster
        # to export than torch 2.13's default dynamo exporter; both give the same graph
        # up to 1e-4 (tests/core/test_backends.py checks the result against torch).
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
    metadata_json = json.dumps(bundle.metadata, default=_json_default, allow_nan=True)
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


def export_onnx(model: Any, path: str | os.PathLike, *, opset: int = OPSET) -> pathlib.Path:
    """Write a model's network as an ONNX file for :func:`load_onnx_model` (atomically).

    Parameters
    ----------
    model : str, path or ModelBundle
        A shipped model's name, a model file, or a model.
    path : path-like
        The ``.onnx`` file to write.
    opset : int
        ONNX operator set.
    """
    from napari_pinned.io.safe_write import check_outputs, write_bytes
    from napari_pinned.nn.model_files import load_model

    target = check_outputs([path])[0]
    bundle = load_model(model, device="cpu")
    return write_bytes(target, onnx_bytes(bundle, opset=opset))


# -- runners -------------------------------------------------------------------------------


def _pad_to_multiple(batch: np.ndarray, multiple: int) -> np.ndarray:
    """:func:`napari_pinned.nn.network._pad_to_multiple` in numpy (bottom and right)."""
    pads = [(0, 0), (0, 0)]
    for size in batch.shape[2:]:
        pads.append((0, (-size) % multiple))
    if all(after == 0 for _, after in pads):
        return batch
    out = batch
    for axis, (_, after) in enumerate(pads):
        if after:
            mode = "reflect" if after < out.shape[axis] else "edge"
            width = [(0, 0)] * out.ndim
            width[axis] = (0, after)
            out = np.pad(out, width, mode=mode)
    return out


class OnnxRunner:
    """Runs an ONNX model with ONNX Runtime on the CPU (or CUDA when asked and present).

    Parameters
    ----------
    model : OnnxModel
        The network.
    threads : int, optional
        Intra-op threads (default: ONNX Runtime's, one per physical core).
    optimization : {"all", "extended", "basic", "none"}
        ONNX Runtime's graph optimisation level.
    device : str
        ``"cpu"`` or ``"cuda"``.
    """

    backend = "onnx"

    def __init__(
        self,
        model: OnnxModel,
        *,
        threads: int | None = None,
        optimization: str = "all",
        device: str = "cpu",
    ) -> None:
        ort = require_onnxruntime()
        if optimization not in OPTIMIZATIONS:
            raise ValueError(
                f"optimization must be one of {list(OPTIMIZATIONS)}, got {optimization!r}"
            )
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[optimization]
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError(
                    "the onnx backend cannot use CUDA: this onnxruntime has no CUDA provider "
                    "(install onnxruntime-gpu, or use --device cpu)"
                )
            providers.insert(0, "CUDAExecutionProvider")
        elif str(device) not in ("cpu", "auto"):
            raise ValueError(f"the onnx backend runs on cpu or cuda, not {device!r}")
        self.model = model
        self.config = model.config
        self.device = providers[0].replace("ExecutionProvider", "").lower()
        self.session = ort.InferenceSession(model.data, sess_options=options, providers=providers)
        self._input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        h, w = x.shape[-2:]
        padded = _pad_to_multiple(x, self.config.alignment)
        out = self.session.run(None, {self._input: padded})[0]
        return np.asarray(out[..., :h, :w], np.float32)


class TorchRunner:
    """Runs a model's torch network on its device (channels-last on CPUs)."""

    backend = "torch"

    def __init__(self, bundle: ModelBundle, device: Any) -> None:
        import torch

        self.bundle = bundle
        self.config = bundle.config
        self.device = device
        # Channels-last convolutions run about twice as fast on x86 CPUs (oneDNN):
        # 1.68 vs 0.88 Mpx/s for the default model on 4 × 576² tiles, machine A.
        cpu = torch.device(device).type == "cpu"
        self.layout = torch.channels_last if cpu else torch.contiguous_format
        self.net = bundle.model.to(device, memory_format=self.layout).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            pred = self.net(x.contiguous(memory_format=self.layout))
        return pred.float().cpu().numpy()


#: ONNX Runtime settings used when :func:`make_runner` is not given them (see
#: :func:`set_onnx_options`): intra-op threads (None: ONNX Runtime's default, one per
#: physical core) and the graph optimisation level.
ONNX_OPTIONS: dict[str, Any] = {"threads": None, "optimization": "all"}


def set_onnx_options(*, threads: int | None = None, optimization: str = "all") -> None:
    """Set the ONNX Runtime threads and graph optimisation of later ``backend="onnx"``
    runs (benchmarks/speed.py measures their effect)."""
    if optimization not in OPTIMIZATIONS:
        raise ValueError(f"optimization must be one of {list(OPTIMIZATIONS)}, got {optimization!r}")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    ONNX_OPTIONS.update(threads=threads, optimization=optimization)


#: ONNX exports of models given to the onnx backend as torch models, by checksum.
_ONNX_CACHE: dict[str, OnnxModel] = {}


def onnx_model(bundle: ModelBundle) -> OnnxModel:
    from napari_pinned.nn.model_files import _checksum, _json_default

    metadata_json = json.dumps(bundle.metadata, default=_json_default, allow_nan=True)
    state = {k: v.detach().cpu() for k, v in bundle.model.state_dict().items()}
    key = _checksum(bundle.config.to_dict(), metadata_json, state)
    if key not in _ONNX_CACHE:
        if len(_ONNX_CACHE) >= 4:
            _ONNX_CACHE.pop(next(iter(_ONNX_CACHE)))
        from napari_pinned.nn.network import receptive_reach

        data = onnx_bytes(bundle)
        config = OnnxConfig(bundle.config.to_dict(), receptive_reach(bundle.config))
        _ONNX_CACHE[key] = OnnxModel(data, config, dict(bundle.metadata), bundle.source)
    return _ONNX_CACHE[key]


def check_backend(backend: Any) -> str:
    """Validate a backend name."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    return str(backend)


def make_runner(
    model: Any,
    *,
    backend: str = "auto",
    device: Any = "auto",
    threads: int | None = None,
    optimization: str | None = None,
) -> Any:
    """The runner for ``model``: a :class:`TorchRunner` or an :class:`OnnxRunner`.

    ``model`` is a shipped model's name, a model file, a BMZ package of ours, a
    :class:`~napari_pinned.nn.network.ModelBundle`, an ``.onnx`` file or an
    :class:`OnnxModel`.  ``backend="auto"`` runs ONNX files and models in ONNX Runtime
    and torch models in torch (:data:`CPU_DEFAULT` on CPUs); ``"onnx"`` exports a torch
    model to ONNX first (once per model and process).  An ONNX model never imports torch.
    """
    check_backend(backend)
    threads = ONNX_OPTIONS["threads"] if threads is None else threads
    optimization = ONNX_OPTIONS["optimization"] if optimization is None else optimization
    if isinstance(model, OnnxModel) or is_onnx_file(model):
        if backend == "torch":
            raise ValueError(
                f"{getattr(model, 'source', model)}: an ONNX model runs with the onnx backend, "
                "not torch"
            )
        loaded = model if isinstance(model, OnnxModel) else load_onnx_model(model)
        dev = "cpu" if device == "auto" else str(device)
        return OnnxRunner(loaded, threads=threads, optimization=optimization, device=dev)
    from napari_pinned._util.devices import resolve_device
    from napari_pinned.nn.model_files import load_model

    dev = resolve_device(device)
    if backend == "auto":
        backend = CPU_DEFAULT if dev.type == "cpu" else "torch"
    if backend == "onnx":
        require_onnxruntime()
        bundle = load_model(model, device="cpu")
        return OnnxRunner(
            onnx_model(bundle),
            threads=threads,
            optimization=optimization,
            device="cuda" if dev.type == "cuda" else "cpu",
        )
    return TorchRunner(load_model(model, device=dev), dev)
