"""BioImage Model Zoo packages from other tools, run through bioimageio.core.

Such a package must be a 2D single-channel image-to-image model (one input and one
output with axes among batch, a channel axis of size 1, y, x, and an output the size of
the input).  It runs through bioimageio.core's prediction pipeline with the package's own
processing, and **bioimageio.core's tiling** (its blocks and the package's halo; frames
up to :data:`FOREIGN_BLOCK` px are run whole).  ``onnx`` weights run without further ado:
an ONNX graph holds no code, and onnxruntime only runs its built-in operators.
``torchscript`` and ``pytorch_state_dict`` weights run code from the package (a
TorchScript program; a Python architecture file that bioimageio.core imports), so they
run only with ``trust=True`` (CLI ``--trust-package``, a question in the dock).  Keras
and TensorFlow weights are refused (not supported here).

The package is read and bounded by :mod:`napari_pinned.nn.packages` first.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_pinned._util.errors import summary
from napari_pinned.nn.packages import (
    INSTALL_HINT,
    Package,
    PackageError,
    PackageNeedsTrust,
    read_entry,
)

__all__ = ["FOREIGN_BLOCK", "ForeignModel", "load_foreign"]

#: Frames up to this edge run whole through a foreign package; larger ones in blocks
#: of about this edge (bioimageio.core's blocking).
FOREIGN_BLOCK = 512
#: Weight formats napari-pinned runs, in order of preference, and whether they run code.
_RUNNABLE = (("onnx", False), ("torchscript", True), ("pytorch_state_dict", True))


@dataclass
class ForeignModel:
    """A 2D single-channel image-to-image BMZ package from another tool.

    Runs frame by frame through bioimageio.core's prediction pipeline (the package's own
    pre/post-processing; bioimageio.core's blocking for frames beyond
    :data:`FOREIGN_BLOCK` px), one 2D frame at a time (:meth:`denoise_frames`).
    ``strength`` and ``noise`` of :func:`napari_pinned.denoising.denoiser.denoise` do not
    apply.
    """

    source: str
    name: str
    weight_format: str
    description: Any = field(repr=False)
    device: str = "cpu"

    def denoise_frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Denoise 2D frames one by one, yielding each result (float32, the frame's
        shape) as it is done; one bioimageio.core pipeline serves them all, opened at the
        first frame and closed when the iteration ends."""
        with self._pipeline() as pipeline:
            for frame in frames:
                yield self._predict(pipeline, frame)

    def _pipeline(self) -> Any:
        from bioimageio.core import create_prediction_pipeline

        devices = None if self.weight_format == "onnx" else [_core_device(self.device)]
        try:
            return create_prediction_pipeline(
                self.description, weights_format=self.weight_format, devices=devices
            )
        except Exception as exc:
            raise PackageError(
                f"{self.source}: bioimageio.core could not load its {self.weight_format} "
                f"weights ({summary(exc)})"
            ) from None

    def _predict(self, pipeline: Any, frame: np.ndarray) -> np.ndarray:
        from bioimageio.core import Tensor
        from bioimageio.core.digest_spec import create_sample_for_model
        from bioimageio.spec.model import v0_5

        descr = self.description
        ipt, out = descr.inputs[0], descr.outputs[0]
        dims, shape = [], []
        for axis in ipt.axes:
            dims.append(str(axis.id))
            shape.append(
                frame.shape[0]
                if str(axis.id) == "y"
                else frame.shape[1]
                if str(axis.id) == "x"
                else 1
            )
        data = np.asarray(frame, np.float32).reshape(shape)
        sample = create_sample_for_model(
            descr, inputs={ipt.id: Tensor.from_numpy(data, dims=dims)}, sample_id="frame"
        )
        spatial = [a for a in ipt.axes if str(a.id) in ("y", "x")]
        fixed = {a.id: a.size for a in spatial if isinstance(a.size, int)}
        try:
            # bioimageio.core's own tiling: fixed-size models in blocks of their size,
            # others whole up to FOREIGN_BLOCK px and in blocks of about that beyond,
            # each block with the package's halo.  (Not bioimageio.core.predict: it
            # unloads the pipeline after every call.)
            if fixed:
                result = pipeline.predict_sample_with_fixed_blocking(
                    sample, input_block_shape={ipt.id: fixed}
                )
            elif max(frame.shape) > FOREIGN_BLOCK:
                sizes = [a.size for a in spatial if isinstance(a.size, v0_5.ParameterizedSize)]
                n = max(max(0, math.ceil((FOREIGN_BLOCK - s.min) / s.step)) for s in sizes)
                result = pipeline.predict_sample_with_blocking(sample, ns=n)
            else:
                result = pipeline.predict_sample_without_blocking(sample)
        except Exception as exc:
            raise PackageError(
                f"{self.source}: prediction failed in bioimageio.core ({summary(exc)})"
            ) from None
        tensor = result.members[out.id]
        values = np.asarray(tensor.data.to_numpy(), np.float32)
        kept = [i for i, d in enumerate(tensor.dims) if str(d) in ("y", "x")]
        order = sorted(kept, key=lambda i: 0 if str(tensor.dims[i]) == "y" else 1)
        squeezed = values.transpose(
            [*[i for i in range(values.ndim) if i not in kept], *order]
        ).reshape(values.shape[order[0]], values.shape[order[1]])
        if squeezed.shape != frame.shape:
            raise PackageError(
                f"{self.source}: the model returned {squeezed.shape} for a {frame.shape} frame"
            )
        return squeezed


def _core_device(device: str) -> str:
    from napari_pinned._util.devices import resolve_device

    return str(resolve_device(device))


def _axis_problem(axes: Sequence[Any], which: str) -> str | None:
    kinds = []
    for axis in axes:
        kind = getattr(axis, "type", "?")
        aid = str(axis.id)
        if kind == "batch":
            continue
        if kind == "channel":
            count = len(axis.channel_names)
            if count != 1:
                return f"its {which} has {count} channels; napari-pinned runs single-channel models"
            continue
        if kind != "space" or aid not in ("y", "x"):
            return (
                f"its {which} has a {kind} axis {aid!r}; napari-pinned runs 2D models "
                "(axes batch, channel of size 1, y, x)"
            )
        kinds.append(aid)
    if sorted(kinds) != ["x", "y"]:
        return f"its {which} axes are {[str(a.id) for a in axes]}; napari-pinned needs y and x"
    return None


def _check_foreign(descr: Any, source: pathlib.Path) -> None:
    from bioimageio.spec.model import v0_5

    name = f"{source}: package {descr.name!r}"
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise PackageError(
            f"{name} has {len(descr.inputs)} inputs and {len(descr.outputs)} outputs; "
            "napari-pinned runs image-to-image models (one input, one output)"
        )
    for which, tensor in (("input", descr.inputs[0]), ("output", descr.outputs[0])):
        problem = _axis_problem(tensor.axes, which)
        if problem:
            raise PackageError(f"{name}: {problem}")
    for axis in descr.outputs[0].axes:
        if str(axis.id) not in ("y", "x"):
            continue
        size = axis.size
        source = next((a for a in descr.inputs[0].axes if str(a.id) == str(axis.id)), None)
        same = isinstance(size, v0_5.SizeReference) and size.offset == 0
        same = same and str(size.axis_id) == str(axis.id)
        # A fixed-size model: the output's size is the input's.
        same = same or (isinstance(size, int) and source is not None and source.size == size)
        scale_ok = getattr(axis, "scale", 1.0) == getattr(source, "scale", 1.0)
        if not (same and scale_ok):
            raise PackageError(
                f"{name}: its output {axis.id} axis is not the size of the input's; "
                "napari-pinned runs models whose output has the input's shape"
            )


def _needs_core(path: Any) -> PackageError:
    return PackageError(
        f"{path}: running BioImage Model Zoo packages from other tools needs "
        f"bioimageio.core ({INSTALL_HINT})"
    )


def load_foreign(package: Package, *, trust: bool = False, device: str = "cpu") -> ForeignModel:
    """Another tool's package (not ``package.own``) as a :class:`ForeignModel`.

    Raises
    ------
    PackageError
        One line naming the file: not a valid model, not a 2D single-channel
        image-to-image model, no weights napari-pinned runs, ONNX weights with external
        data, or bioimageio.core / onnxruntime missing.
    PackageNeedsTrust
        When only weights that run code are present and ``trust`` is False.
    """
    path = package.path
    try:
        from bioimageio.spec import InvalidDescr, load_description
        from bioimageio.spec.model import v0_5
    except ImportError:
        raise _needs_core(path) from None
    descr = load_description(path, format_version="latest", perform_io_checks=False)
    if isinstance(descr, InvalidDescr) or not isinstance(descr, v0_5.ModelDescr):
        reason = descr.get_reason() if isinstance(descr, InvalidDescr) else "not a model"
        raise PackageError(f"{path}: not a valid model package ({summary(ValueError(reason))})")
    _check_foreign(descr, path)
    present = [wf for wf, entry in descr.weights if entry is not None]
    runnable = [(wf, code) for wf, code in _RUNNABLE if wf in present]
    if not runnable:
        raise PackageError(
            f"{path}: its weights are {', '.join(present)}; napari-pinned runs onnx, "
            "torchscript and pytorch_state_dict weights"
        )
    choice = next(((wf, code) for wf, code in runnable if trust or not code), None)
    if choice is None:
        formats = " and ".join(wf for wf, _ in runnable)
        raise PackageNeedsTrust(
            f"{path}: {package.own_reason}, and its {formats} weights run code from the "
            "package; napari-pinned runs them only when you trust the package "
            "(trust=True, --trust-package, or Yes in the dock)"
        )
    wf, _ = choice
    if wf == "onnx":
        _check_onnx(package, descr.weights.onnx)
    try:
        import bioimageio.core  # noqa: F401
    except ImportError:
        raise _needs_core(path) from None
    if wf == "onnx":
        from napari_pinned.nn.onnx_files import require_onnxruntime

        require_onnxruntime(f"{path}: its onnx weights")
    return ForeignModel(str(path), descr.name, wf, descr, device)


def _check_onnx(package: Package, entry: Any) -> None:
    """ONNX weights may not read files beside the package (external tensor data)."""
    if entry.external_data is not None:
        raise PackageError(
            f"{package.path}: its onnx weights keep their tensors in a separate file; "
            "napari-pinned runs self-contained ONNX weights only"
        )
    from napari_pinned.nn.onnx_files import check_onnx_bytes

    source = (package.rdf.get("weights") or {}).get("onnx", {}).get("source")
    check_onnx_bytes(read_entry(package, source), str(package.path))
