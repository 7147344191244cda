"""Network runners: the PINNED network in torch, or its ONNX export in ONNX Runtime.

:func:`napari_pinned.denoising.denoiser.iter_denoise` prepares every frame (outlier repair,
normalisation, noise map; :mod:`napari_pinned.nn.conditioning`), cuts it into tiles and
hands batches of tiles to a :class:`NetworkRunner`: a callable taking a ``(B, C, H, W)``
float32 batch in model units and returning ``(B, 1, H, W)``.  Everything around the
network is numpy, so the ONNX runner needs no torch at all (:class:`OnnxRunner` and the
ONNX files of :mod:`napari_pinned.nn.onnx_files` import neither torch nor napari-pinned's
torch modules).

Which network a model reference gives, for which backend, is decided by
:func:`napari_pinned.nn.resolve.load_network`; which backend is faster on a CPU is
measured by ``benchmarks/speed.py --backend onnx`` (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from napari_pinned.nn.onnx_files import OnnxModel, is_onnx_model, require_onnxruntime
from napari_pinned.nn.resolve import check_backend, load_network

if TYPE_CHECKING:
    from napari_pinned.nn.network import ModelBundle

__all__ = [
    "NetworkRunner",
    "OnnxRunner",
    "TorchRunner",
    "make_runner",
    "set_onnx_options",
]

#: ONNX Runtime's graph optimisation levels, by name.
OPTIMIZATIONS = ("all", "extended", "basic", "none")


class NetworkRunner(Protocol):
    """Runs the network on a batch of prepared tiles."""

    backend: str

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(B, C, H, W)`` float32 model units to ``(B, 1, H, W)`` float32."""
        ...


def _check_onnx_options(threads: Any, optimization: Any) -> None:
    if optimization not in OPTIMIZATIONS:
        raise ValueError(f"optimization must be one of {list(OPTIMIZATIONS)}, got {optimization!r}")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")


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
        _check_onnx_options(threads, optimization)
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
    _check_onnx_options(threads, optimization)
    ONNX_OPTIONS.update(threads=threads, optimization=optimization)


def make_runner(
    model: Any,
    *,
    backend: str = "auto",
    device: Any = "auto",
    threads: int | None = None,
    optimization: str | None = None,
) -> TorchRunner | OnnxRunner:
    """The runner for ``model``: a :class:`TorchRunner` or an :class:`OnnxRunner`.

    ``model`` is a shipped model's name, a model file, a BMZ package of ours, a
    :class:`~napari_pinned.nn.network.ModelBundle`, an ``.onnx`` file or an
    :class:`~napari_pinned.nn.onnx_files.OnnxModel`; ``backend`` picks how it runs
    (:func:`napari_pinned.nn.resolve.load_network`).  An ONNX model never imports torch,
    so for it ``device="auto"`` is the CPU; a torch model run by ONNX Runtime uses CUDA
    where torch resolves ``"auto"`` to CUDA.
    """
    check_backend(backend)
    threads = ONNX_OPTIONS["threads"] if threads is None else threads
    optimization = ONNX_OPTIONS["optimization"] if optimization is None else optimization
    if is_onnx_model(model):
        where = "cpu" if device == "auto" else str(device)
        network = load_network(model, backend=backend, device=where)
        return OnnxRunner(network, threads=threads, optimization=optimization, device=where)
    from napari_pinned._util.devices import resolve_device

    dev = resolve_device(device)
    network = load_network(model, backend=backend, device=dev)
    if isinstance(network, OnnxModel):
        where = "cuda" if dev.type == "cuda" else "cpu"
        return OnnxRunner(network, threads=threads, optimization=optimization, device=where)
    return TorchRunner(network, dev)
