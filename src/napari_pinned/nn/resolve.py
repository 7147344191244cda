"""What a model reference names, and what runs it: the one place that tells them apart.

A model reference is one of

* a shipped model's name (``"default"``, ``"cdn"``;
  :data:`napari_pinned.nn.model_files.SHIPPED_MODELS`);
* a napari-pinned model file (:mod:`napari_pinned.nn.model_files`);
* a BioImage Model Zoo package written by napari-pinned (a napari-pinned model in
  another container) or by another tool (:mod:`napari_pinned.nn.packages`);
* an ONNX file written by napari-pinned (:mod:`napari_pinned.nn.onnx_files`);
* a model in memory: a :class:`~napari_pinned.nn.network.ModelBundle`, an
  :class:`~napari_pinned.nn.onnx_files.OnnxModel` or a
  :class:`~napari_pinned.nn.foreign.ForeignModel`.

With a backend (``"auto"``, ``"torch"``, ``"onnx"``), a device and whether to trust a
package's code, :func:`resolve_model` turns it into what runs it: a ModelBundle (the
torch network), an OnnxModel (ONNX Runtime) or a ForeignModel (bioimageio.core).
:func:`load_model` gives napari-pinned models only (what training, adaptation and export
take); :func:`load_network` the network napari-pinned's tiling runs
(:func:`napari_pinned.nn.runners.make_runner`).

Nothing here imports torch until a torch model is asked for: an ONNX file runs on a
machine without it.
"""

from __future__ import annotations

import os
import pathlib
from typing import TYPE_CHECKING, Any

from napari_pinned.nn.foreign import ForeignModel, load_foreign
from napari_pinned.nn.onnx_files import (
    OnnxModel,
    is_onnx_model,
    load_onnx_model,
    onnx_model,
    require_onnxruntime,
)
from napari_pinned.nn.packages import (
    PackageError,
    is_package,
    load_own_package,
    own_model,
    read_package,
)

if TYPE_CHECKING:
    from napari_pinned.nn.network import ModelBundle

__all__ = [
    "BACKENDS",
    "CPU_DEFAULT",
    "check_backend",
    "foreign_model",
    "load_model",
    "load_network",
    "load_package",
    "resolve_model",
    "runtime_model",
]

BACKENDS = ("auto", "torch", "onnx")
#: What ``backend="auto"`` runs a torch model with on a CPU (benchmarks/speed.py
#: --backend onnx measures both; docs/benchmarks.md says why it is torch).
CPU_DEFAULT = "torch"


def check_backend(backend: Any) -> str:
    """Validate a backend name."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    return str(backend)


def _model_path(model: Any) -> pathlib.Path:
    """The file a shipped model's name or a path names."""
    from napari_pinned.nn.model_files import SHIPPED_MODELS, ModelFileError, shipped_model

    shipped = shipped_model(model) if isinstance(model, str) else None
    if shipped is not None:
        if not shipped.path.is_file():
            raise ModelFileError(
                f"the {shipped.name!r} model is missing (expected {shipped.path}); reinstall "
                "napari-pinned, or train one with `napari-pinned train ... -o my-model.pt` "
                "and pass that file"
            )
        return shipped.path
    if isinstance(model, (str, os.PathLike)):
        return pathlib.Path(model).expanduser()
    raise ValueError(
        f"model must be a shipped model's name ({', '.join(m.name for m in SHIPPED_MODELS)}), "
        f"a file path or a ModelBundle, got {type(model).__name__}"
    )


def load_model(model: Any = "default", *, device: Any = "cpu") -> ModelBundle:
    """Load a napari-pinned model: a shipped one by name (``"default"``, ``"cdn"``), a
    model file, a BioImage Model Zoo package napari-pinned wrote, or a bundle.

    Packages from other tools and ONNX files run through
    :func:`napari_pinned.denoising.denoiser.denoise` (:func:`resolve_model`) but are not
    napari-pinned models.  A bundle is returned as is, with its network moved to
    ``device``.  Models read from files are in evaluation mode.

    Raises
    ------
    napari_pinned.nn.model_files.ModelFileError
        If the file is missing, truncated, corrupted, of another format version, not
        a model file, or carries Python objects other than tensors and plain data
        (such files are refused without running anything from them).
    ValueError
        If ``device`` is unknown or unavailable.
    """
    from napari_pinned._util.devices import resolve_device
    from napari_pinned.nn.model_files import ModelFileError, read_model_file
    from napari_pinned.nn.network import ModelBundle

    dev = resolve_device(device)
    if isinstance(model, ModelBundle):
        model.model.to(dev)
        return model
    path = _model_path(model)
    if path.suffix.lower() == ".zip" and path.is_file() and is_package(path):
        # A package written by napari-pinned; its weights are read without running
        # anything from it (napari_pinned.nn.packages).
        try:
            return load_own_package(path, device=dev)
        except PackageError as exc:
            raise ModelFileError(str(exc)) from None
    bundle = read_model_file(path)
    bundle.model.to(dev)
    return bundle


def load_package(
    path: str | os.PathLike, *, trust: bool = False, device: Any = "cpu"
) -> ModelBundle | ForeignModel:
    """Open a BioImage Model Zoo package for denoising.

    Parameters
    ----------
    path : path-like
        The package (``.zip``).
    trust : bool
        Allow packages from other tools whose weights run code (``torchscript``,
        ``pytorch_state_dict``); napari-pinned's own packages and ``onnx`` weights
        never need it.
    device : str
        Torch device for napari-pinned packages and torch weights.

    Returns
    -------
    ModelBundle or ForeignModel
        Our own packages as a :class:`~napari_pinned.nn.network.ModelBundle` (exactly the
        exported model); others as a :class:`~napari_pinned.nn.foreign.ForeignModel` run
        by bioimageio.core.

    Raises
    ------
    napari_pinned.nn.packages.PackageError
        One line naming the file: unreadable, too large, not self-contained, not a 2D
        single-channel image-to-image model, weights that would need ``trust``, or a
        missing optional dependency.
    """
    package = read_package(path)
    if package.own:
        return own_model(package, device)
    return load_foreign(package, trust=trust, device=device)


def foreign_model(model: Any, *, trust: bool = False, device: Any = "cpu") -> ForeignModel | None:
    """The :class:`~napari_pinned.nn.foreign.ForeignModel` that ``model`` is or names (a
    BMZ package from another tool), else None: napari-pinned's own packages are models
    (:func:`load_model`), and so is anything that is not a package."""
    if isinstance(model, ForeignModel):
        return model
    if not (isinstance(model, (str, os.PathLike)) and is_package(model)):
        return None
    package = read_package(model)
    return None if package.own else load_foreign(package, trust=trust, device=str(device))


def load_network(
    model: Any, *, backend: str = "auto", device: Any = "auto"
) -> ModelBundle | OnnxModel:
    """The network napari-pinned's tiling runs for ``model`` with ``backend``.

    ONNX models (files and :class:`~napari_pinned.nn.onnx_files.OnnxModel`) run with
    ONNX Runtime and never import torch; ``backend="torch"`` refuses them.  Torch models
    (:func:`load_model`) give their bundle on ``device``, or with ``backend="onnx"`` its
    ONNX export (once per model and process); ``"auto"`` runs them with
    :data:`CPU_DEFAULT` on a CPU and with torch elsewhere.
    """
    check_backend(backend)
    if is_onnx_model(model):
        if backend == "torch":
            raise ValueError(
                f"{getattr(model, 'source', model)}: an ONNX model runs with the onnx backend, "
                "not torch"
            )
        return model if isinstance(model, OnnxModel) else load_onnx_model(model)
    from napari_pinned._util.devices import resolve_device

    dev = resolve_device(device)
    if backend == "auto":
        backend = CPU_DEFAULT if dev.type == "cpu" else "torch"
    if backend == "onnx":
        require_onnxruntime()
        return onnx_model(load_model(model, device="cpu"))
    return load_model(model, device=dev)


def runtime_model(
    model: Any, *, backend: str = "auto", device: Any = "cpu", trust: bool = False
) -> OnnxModel | ForeignModel | None:
    """What runs ``model`` when napari-pinned's torch network does not: another tool's
    package (bioimageio.core), an ONNX model, or with ``backend="onnx"`` a torch model's
    ONNX export (ONNX Runtime); None for a torch model run by torch, which is not loaded
    here (:func:`load_model` loads it)."""
    check_backend(backend)
    foreign = foreign_model(model, trust=trust, device=device)
    if foreign is not None:
        return foreign
    if is_onnx_model(model) or backend == "onnx":
        return load_network(model, backend=backend, device="cpu")
    return None


def resolve_model(
    model: Any, *, backend: str = "auto", device: Any = "cpu", trust: bool = False
) -> ModelBundle | OnnxModel | ForeignModel:
    """What runs ``model``: a ModelBundle (torch), an OnnxModel (ONNX Runtime) or a
    ForeignModel (bioimageio.core).

    ``backend="onnx"`` exports a torch model to ONNX; ``trust`` lets another tool's
    package run code (:func:`load_package`); ``device`` is where a torch model goes.

    Raises
    ------
    ValueError
        One line naming the file or argument: a
        :class:`~napari_pinned.nn.model_files.ModelFileError`, a
        :class:`~napari_pinned.nn.packages.PackageError` (a
        :class:`~napari_pinned.nn.packages.PackageNeedsTrust` where only ``trust``
        is missing), an ONNX file that is not napari-pinned's, or a missing optional
        dependency.
    """
    found = runtime_model(model, backend=backend, device=device, trust=trust)
    return found if found is not None else load_model(model, device=device)
