"""BioImage Model Zoo packages: export napari-pinned models, import and run packages.

**Export** (:func:`export_bioimageio`) writes a zip package in the newest model RDF
format that ``bioimageio.spec`` accepts (0.5).  The package's model is
:class:`napari_pinned.share.bmz_denoiser.PinnedDenoiser`: raw single-channel frames
``(batch, y, x)`` in, denoised frames out, with napari-pinned's outlier repair,
normalisation and noise map done inside the model in torch operations.  These are
frame-level statistics (percentiles of the frame's 3×3 median, a Poisson–Gaussian fit
per frame) that the spec's processing steps cannot express (``scale_range`` takes
plain percentiles and ``zero_mean_unit_variance`` moments; neither gives a noise map),
so the package declares no processing steps beyond ``ensure_dtype`` and says so in its
documentation.  Every BMZ consumer (bioimageio.core, deepImageJ, ...) then gets
napari-pinned's result for a whole frame; export checks it against
:func:`napari_pinned.denoising.denoiser.denoise` to 1e-3 of the range.  Weights:
``pytorch_state_dict`` (architecture = that file, copied into the package) and
``torchscript`` (the same module scripted).  No ``onnx`` weights: the frame statistics
(sorting, data-dependent bins and branches) have no faithful ONNX export; the bare
network is exported to ONNX for napari-pinned's own runtime instead
(:func:`napari_pinned.nn.runners.export_onnx`).

**Import** (:func:`load_package`, used by ``denoise(image, model="package.zip")``):

* Our own packages, recognised by a marker in the RDF *and* the SHA-256 of their
  architecture file being one of :data:`KNOWN_ARCHITECTURE_SHA256`, load their
  ``pytorch_state_dict`` weights with ``torch.load(weights_only=True)`` into
  :class:`napari_pinned.nn.network.PINNED`, through the same checks as a model file
  (configuration bounds, tensor shapes, checksum, finite weights).  Nothing from the
  package is run, not even its architecture file: we know what it does because its
  hash says it is ours.  The result is a :class:`~napari_pinned.nn.network.ModelBundle`
  that napari-pinned tiles like any model.
* Other packages must be 2D single-channel image-to-image models (one input and one
  output with axes among batch, a channel axis of size 1, y, x, and an output the size
  of the input).  They run through bioimageio.core's prediction pipeline with the
  package's own processing, and **bioimageio.core's tiling** (its blocks and the
  package's halo; frames up to 512 px are run whole).  ``onnx`` weights run without
  further ado: an ONNX graph holds no code, and onnxruntime only runs its built-in
  operators.  ``torchscript`` and ``pytorch_state_dict`` weights run code from the
  package (a TorchScript program; a Python architecture file that bioimageio.core
  imports), so they run only with ``trust=True`` (CLI ``--trust-package``, a question
  in the dock).  Keras and TensorFlow weights are refused (not supported here).

Packages are bounded before anything is unpacked: at most :data:`MAX_PACKAGE_BYTES`
unpacked in :data:`MAX_PACKAGE_ENTRIES` entries, an RDF of at most
:data:`MAX_RDF_BYTES`, and every file inside the zip (a package that points to files
by URL is refused, so loading never downloads anything).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pathlib
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_pinned._util.errors import summary
from napari_pinned._version import __version__

if TYPE_CHECKING:
    from napari_pinned.denoising.denoiser import DenoiseProgress
    from napari_pinned.nn.network import ModelBundle

__all__ = [
    "KNOWN_ARCHITECTURE_SHA256",
    "ForeignModel",
    "PackageError",
    "PackageNeedsTrust",
    "export_bioimageio",
    "foreign_package",
    "is_package",
    "load_own_package",
    "load_package",
]

#: ``config.napari_pinned.format`` of packages written by :func:`export_bioimageio`.
PACKAGE_FORMAT = "napari-pinned-bmz"
PACKAGE_FORMAT_VERSION = 1
#: Name of the architecture file inside a package, and its callable.
ARCHITECTURE_FILE = "napari_pinned_denoiser.py"
ARCHITECTURE_CALLABLE = "PinnedDenoiser"
#: SHA-256 of every version of ``bmz_denoiser.py`` napari-pinned has exported: a package
#: whose architecture file has one of these is ours, and loads without running it.
#: (``tests/core/test_bmz.py`` fails when the file changes without its hash added here.)
KNOWN_ARCHITECTURE_SHA256 = frozenset(
    {
        "4d6fc8f3d0cfb98610c10acc19c6d33d3bb27fec3f2ed33821ffc347a28a44aa",
        "d80d261f44d6c76781b8cb54b8647e70f9619fb98c07d1466c380b6d174d4f27",
        "dc2f7e537c88918eb24e9637dbbe8a4641afe967efeeb74c0ce9b882eaf1c01c",
    }
)
#: Bounds on a package, checked before anything is unpacked.
MAX_PACKAGE_BYTES = 1024**3
MAX_PACKAGE_ENTRIES = 1000
MAX_RDF_BYTES = 1024**2
#: Names of the RDF inside a package (bioimageio.spec's, newest first).
RDF_NAMES = ("bioimageio.yaml", "rdf.yaml")
#: Frames up to this edge run whole through a foreign package; larger ones in blocks
#: of about this edge (bioimageio.core's blocking).
FOREIGN_BLOCK = 512
#: Edge (px) and pixel size (Å) of the synthetic test image of exported packages.
TEST_IMAGE_SIZE = 256
TEST_PIXEL_SIZE = 0.1
#: Training pixel sizes (Å) of the shipped models (docs/model-card*.md).
_SHIPPED_PIXEL_SIZES = {"default": (0.03, 0.3), "cdn": (0.05, 0.2)}
#: The paper, cited by every exported package.
PAPER = (
    'Awan, Shabeer, Saleem, Mehmood and Qadeer, "Physics Informed Neural Network Enhanced '
    'Denoising for Atomic Resolution STEM Imaging" (PINNED)'
)
#: Where to find the paper: a Crossref search for its title (no DOI is recorded here).
PAPER_URL = (
    "https://search.crossref.org/?q=Physics+Informed+Neural+Network+Enhanced+Denoising"
    "+for+Atomic+Resolution+STEM+Imaging"
)
_WEIGHT_PREFIX = "network."
_SPEC_HINT = "pip install 'napari-pinned[bioimageio]'"


class PackageError(ValueError):
    """A BioImage Model Zoo package that cannot be read, or not run by napari-pinned."""


class PackageNeedsTrust(PackageError):
    """A package from another tool whose weights run code: it runs only with
    ``trust=True``."""


# -- reading packages (no code, bounded) -------------------------------------------------


def is_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip file with a BioImage Model Zoo RDF at its root.

    A napari-pinned model file is a zip archive too (``torch.save``), but it has no RDF.
    """
    p = pathlib.Path(path).expanduser()
    if not p.is_file() or not zipfile.is_zipfile(p):
        return False
    try:
        with zipfile.ZipFile(p) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any(name in names for name in RDF_NAMES)


@dataclass(frozen=True)
class _Package:
    """A package's RDF and file list, read without running or unpacking anything."""

    path: pathlib.Path
    rdf: dict[str, Any]
    rdf_name: str
    sizes: dict[str, int]
    own: bool
    own_reason: str


def _read_package(path: str | os.PathLike) -> _Package:
    import yaml

    p = pathlib.Path(path).expanduser()
    if not p.exists():
        raise PackageError(f"{p}: package not found")
    try:
        with zipfile.ZipFile(p) as archive:
            entries = archive.infolist()
            if len(entries) > MAX_PACKAGE_ENTRIES:
                raise PackageError(
                    f"{p}: {len(entries)} files, more than a package may hold "
                    f"({MAX_PACKAGE_ENTRIES})"
                )
            sizes = {e.filename: e.file_size for e in entries}
            total = sum(sizes.values())
            if total > MAX_PACKAGE_BYTES:
                from napari_pinned._util.memory import format_bytes

                raise PackageError(
                    f"{p}: unpacks to {format_bytes(total)}, more than a package may hold "
                    f"({format_bytes(MAX_PACKAGE_BYTES)})"
                )
            rdf_name = next((n for n in RDF_NAMES if n in sizes), None)
            if rdf_name is None:
                raise PackageError(
                    f"{p}: not a BioImage Model Zoo package (no {' or '.join(RDF_NAMES)})"
                )
            if sizes[rdf_name] > MAX_RDF_BYTES:
                raise PackageError(f"{p}: {rdf_name} is larger than {MAX_RDF_BYTES} bytes")
            text = archive.read(rdf_name)
            rdf = yaml.safe_load(text)
            if _expanded_nodes(rdf) > MAX_RDF_NODES:
                raise PackageError(
                    f"{p}: {rdf_name} expands to more than {MAX_RDF_NODES:,} entries (nested "
                    "YAML aliases); refused"
                )
            arch_bytes = None
            if isinstance(rdf, dict):
                arch_source = _architecture_source(rdf)
                if arch_source in sizes:
                    arch_bytes = archive.read(arch_source)
    except PackageError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, RecursionError, yaml.YAMLError) as exc:
        raise PackageError(
            f"{p}: not a readable BioImage Model Zoo package ({summary(exc)})"
        ) from None
    if not isinstance(rdf, dict):
        raise PackageError(f"{p}: {rdf_name} does not describe a resource")
    if rdf.get("type") != "model":
        raise PackageError(
            f"{p}: the package describes a {rdf.get('type')!r}, not a model; napari-pinned "
            "runs model packages"
        )
    remote = _remote_sources(rdf)
    if remote:
        raise PackageError(
            f"{p}: the package refers to files outside it ({remote[0]}); napari-pinned loads "
            "only self-contained packages and downloads nothing"
        )
    marker = (rdf.get("config") or {}).get("napari_pinned") if isinstance(rdf, dict) else None
    own, reason = False, "not made by napari-pinned"
    if isinstance(marker, dict) and marker.get("format") == PACKAGE_FORMAT:
        digest = None if arch_bytes is None else hashlib.sha256(arch_bytes).hexdigest()
        if digest in KNOWN_ARCHITECTURE_SHA256:
            own, reason = True, "napari-pinned package"
        else:
            reason = (
                "marked as made by napari-pinned, but its architecture file is not one this "
                f"napari-pinned {__version__} wrote (unknown SHA-256)"
            )
    return _Package(p, rdf, rdf_name, sizes, own, reason)


#: Largest RDF once YAML aliases are expanded, in nodes (bioimageio.spec's RDFs: ~500).
MAX_RDF_NODES = 100_000


def _expanded_nodes(node: Any, memo: dict[int, int] | None = None) -> int:
    """How many nodes ``node`` has with every YAML alias expanded, in linear time: nested
    aliases ("billion laughs") make a 1 MiB file a structure too large to walk."""
    memo = {} if memo is None else memo
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a cycle counts once (safe_load can build self-referencing lists)
    if isinstance(node, Mapping):
        count = 1 + sum(_expanded_nodes(v, memo) for v in node.values())
    elif isinstance(node, list):
        count = 1 + sum(_expanded_nodes(v, memo) for v in node)
    else:
        count = 1
    memo[key] = count
    return count


def _architecture_source(rdf: Mapping[str, Any]) -> str | None:
    weights = rdf.get("weights")
    if not isinstance(weights, Mapping):
        return None
    entry = weights.get("pytorch_state_dict")
    arch = entry.get("architecture") if isinstance(entry, Mapping) else None
    source = arch.get("source") if isinstance(arch, Mapping) else None
    return source if isinstance(source, str) else None


def _remote_sources(node: Any, key: str = "") -> list[str]:
    """File sources given as URLs anywhere in an RDF (tensors, weights, docs, ...)."""
    found: list[str] = []
    if isinstance(node, Mapping):
        for k, v in node.items():
            found += _remote_sources(v, str(k))
    elif isinstance(node, list):
        for v in node:
            found += _remote_sources(v, key)
    elif (
        isinstance(node, str)
        and key in ("source", "documentation", "covers", "test_tensor", "sample_tensor")
        and "://" in node
    ):
        found.append(node)
    return found


def _read_entry(package: _Package, name: Any) -> bytes:
    if not isinstance(name, str) or name not in package.sizes:
        raise PackageError(f"{package.path}: file {name!r} named in the RDF is not in the package")
    with zipfile.ZipFile(package.path) as archive:
        return archive.read(name)


def _check_torch_bytes(data: bytes, where: str) -> None:
    """The bounds of :func:`napari_pinned.nn.model_files._check_archive`, for weights held
    in memory: a ``torch.save`` archive has only stored entries, of bounded total size."""
    from napari_pinned.nn.model_files import MAX_ARCHIVE_BYTES

    buffer = io.BytesIO(data)
    if not zipfile.is_zipfile(buffer):
        raise PackageError(f"{where}: weights are not a torch.save archive")
    with zipfile.ZipFile(buffer) as archive:
        entries = archive.infolist()
    if any(e.compress_type != zipfile.ZIP_STORED for e in entries):
        raise PackageError(f"{where}: refused: weights hold compressed entries")
    if sum(e.file_size for e in entries) > MAX_ARCHIVE_BYTES:
        raise PackageError(f"{where}: weights unpack to more than a model file may hold")


def _load_own(package: _Package, device: str) -> ModelBundle:
    """A napari-pinned package as a ModelBundle, through the model-file checks."""
    import torch

    from napari_pinned.nn.model_files import ModelFileError, _bundle_from_payload, _load_error

    path = package.path
    marker = package.rdf["config"]["napari_pinned"]
    weights = package.rdf["weights"]["pytorch_state_dict"]
    data = _read_entry(package, weights.get("source"))
    declared = weights.get("sha256")
    if declared is not None and hashlib.sha256(data).hexdigest() != declared:
        raise PackageError(f"{path}: the weights are corrupted (their SHA-256 does not match)")
    where = f"{path}:{weights.get('source')}"
    _check_torch_bytes(data, where)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PackageError(str(_load_error(pathlib.Path(where), exc))) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and k.startswith(_WEIGHT_PREFIX) for k in state
    ):
        raise PackageError(f"{where}: weights are not a PinnedDenoiser state dict")
    payload = {
        "config": marker.get("model_config"),
        "metadata_json": marker.get("metadata_json"),
        "state_dict": {k[len(_WEIGHT_PREFIX) :]: v for k, v in state.items()},
        "sha256": marker.get("sha256"),
    }
    try:
        bundle = _bundle_from_payload(payload, path)
    except ModelFileError as exc:
        raise PackageError(str(exc)) from None
    from napari_pinned._util.devices import resolve_device

    bundle.model.to(resolve_device(device))
    return bundle


def load_own_package(path: str | os.PathLike, *, device: str = "cpu") -> ModelBundle:
    """A package written by napari-pinned as a ModelBundle (what ``load_model`` does
    with one); any other package raises :class:`PackageError` saying why."""
    package = _read_package(path)
    if not package.own:
        raise PackageError(
            f"{package.path}: {package.own_reason}; napari-pinned can denoise with it "
            "(denoise, --model, the Denoise dock) but not use it as its own model "
            "(training, adaptation, export)"
        )
    return _load_own(package, device)


def foreign_package(path: str | os.PathLike, *, device: str = "cpu") -> ForeignModel | None:
    """The package at ``path`` as a :class:`ForeignModel` (untrusted), or None when it
    is napari-pinned's own (then :func:`napari_pinned.nn.model_files.load_model` reads it)."""
    package = _read_package(path)
    return None if package.own else _load_foreign(package, trust=False, device=device)


def load_package(
    path: str | os.PathLike, *, trust: bool = False, device: str = "cpu"
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
        exported model); others as a :class:`ForeignModel` run by bioimageio.core.

    Raises
    ------
    PackageError
        One line naming the file: unreadable, too large, not self-contained, not a 2D
        single-channel image-to-image model, weights that would need ``trust``, or a
        missing optional dependency.
    """
    package = _read_package(path)
    if package.own:
        return _load_own(package, device)
    return _load_foreign(package, trust=trust, device=device)


# -- foreign packages ----------------------------------------------------------------------

#: Weight formats napari-pinned runs, in order of preference, and whether they run code.
_RUNNABLE = (("onnx", False), ("torchscript", True), ("pytorch_state_dict", True))


@dataclass
class ForeignModel:
    """A 2D single-channel image-to-image BMZ package from another tool.

    Runs frame by frame through bioimageio.core's prediction pipeline (the package's own
    pre/post-processing; bioimageio.core's blocking for frames beyond
    :data:`FOREIGN_BLOCK` px).  ``strength`` and ``noise`` of
    :func:`napari_pinned.denoising.denoiser.denoise` do not apply.
    """

    source: str
    name: str
    weight_format: str
    description: Any = field(repr=False)
    device: str = "cpu"

    def iter_denoise(self, image: np.ndarray) -> Iterator[DenoiseProgress]:
        """Denoise a 2D image or ``(N, Y, X)`` stack, yielding one record per frame."""
        from napari_pinned._util.intensity import check_image
        from napari_pinned.denoising.denoiser import DenoiseProgress

        arr = check_image(image, name="image", ndim=(2, 3))
        frames = arr[None] if arr.ndim == 2 else arr
        output = np.empty(frames.shape, np.float32)
        with self._pipeline() as pipeline:
            for f, frame in enumerate(frames):
                output[f] = self._predict(pipeline, frame)
                if f + 1 < len(frames):
                    yield DenoiseProgress(f + 1, len(frames), f, len(frames))
        result = output[0] if arr.ndim == 2 else output
        yield DenoiseProgress(len(frames), len(frames), len(frames) - 1, len(frames), output=result)

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
        f"bioimageio.core ({_SPEC_HINT})"
    )


def _load_foreign(package: _Package, *, trust: bool, device: str) -> ForeignModel:
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
        from napari_pinned.nn.runners import require_onnxruntime

        require_onnxruntime(f"{path}: its onnx weights")
    return ForeignModel(str(path), descr.name, wf, descr, device)


def _check_onnx(package: _Package, entry: Any) -> None:
    """ONNX weights may not read files beside the package (external tensor data)."""
    if entry.external_data is not None:
        raise PackageError(
            f"{package.path}: its onnx weights keep their tensors in a separate file; "
            "napari-pinned runs self-contained ONNX weights only"
        )
    from napari_pinned.nn.runners import check_onnx_bytes

    source = (package.rdf.get("weights") or {}).get("onnx", {}).get("source")
    check_onnx_bytes(_read_entry(package, source), str(package.path))


# -- export --------------------------------------------------------------------------------


def _architecture_path() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[1] / "share" / "bmz_denoiser.py"


def architecture_sha256() -> str:
    """SHA-256 of the architecture file this napari-pinned writes into packages."""
    return hashlib.sha256(_architecture_path().read_bytes()).hexdigest()


def _wrapper(bundle: ModelBundle, strength: float, keep_lattice: bool = True) -> Any:
    from napari_pinned.share.bmz_denoiser import PinnedDenoiser

    wrapper = PinnedDenoiser(
        **bundle.config.to_dict(), strength=strength, keep_lattice=keep_lattice
    )
    wrapper.network.load_state_dict(
        {k: v.detach().cpu() for k, v in bundle.model.state_dict().items()}
    )
    return wrapper.eval()


def _test_images(bundle: ModelBundle, size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """A bundled material the models never saw (BaTiO3), clean and noisy, and the noise."""
    from napari_pinned.noise.synthesis import add_cdn_noise, add_dose_noise
    from napari_pinned.physics.simulate import simulate

    clean = simulate("BaTiO3", shape=size, pixel_size=TEST_PIXEL_SIZE, seed=0).image
    noise = str(bundle.metadata.get("noise") or "")
    if noise in ("cdn", "mix") or (not bundle.config.conditioned and noise != "dose"):
        return clean, add_cdn_noise(clean, 3, seed=0).astype(np.float32), "CDN level 3"
    # 20 detected electrons per pixel at the brightest column, 0.5 e⁻ read noise.
    dose = 20.0 / TEST_PIXEL_SIZE**2
    noisy = add_dose_noise(clean, dose, pixel_size=TEST_PIXEL_SIZE, read_noise=0.5, seed=0)
    return clean, noisy.astype(np.float32), "shot noise at 20 e⁻/px (brightest), 0.5 e⁻ read noise"


def _cover(noisy: np.ndarray, denoised: np.ndarray) -> np.ndarray:
    """Noisy | denoised side by side (2:1), each stretched to its 0.5–99.5 percentiles."""

    def grey(x: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(x, (0.5, 99.5))
        return (np.clip((x - lo) / max(hi - lo, 1e-12), 0, 1) * 255).astype(np.uint8)

    return np.concatenate([grey(noisy), grey(denoised)], axis=1)


def _author_list(authors: Sequence[str | Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    if not authors:
        return [{"name": "napari-pinned developers"}]
    out = []
    for a in authors:
        if isinstance(a, Mapping):
            out.append(dict(a))
        elif isinstance(a, str) and a.strip():
            out.append({"name": a.strip()})
        else:
            raise ValueError(f"authors must be names or dicts with a 'name', got {a!r}")
    return out


def _fmt(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "—"


def _documentation(
    bundle: ModelBundle,
    *,
    name: str,
    noise: str,
    quality: dict[str, Any],
    pixel: str,
    min_size: int,
    step: int,
    strength: float,
    keep_lattice: bool,
) -> str:
    meta = bundle.metadata
    cfg = bundle.config
    conditioned = cfg.conditioned
    processing = [
        "1. **Hot/dead pixel repair**: pixels far outside their eight neighbours' range "
        "(beyond 10 noise standard deviations and their neighbours' own lift) are replaced "
        "by the median of their neighbours.",
        "2. **Normalisation** to model units, once per frame: "
        + {
            "range": "the paper's 0–255 for frames already inside it, 0–1 for frames inside "
            "[0, 1], otherwise the 0.1st–99.9th percentiles of the frame's 3×3 median"
            + ("" if conditioned else ", with the input clipped to [−0.1, 1.1]"),
            "robust": "the 1st–99th percentiles of the frame's 3×3 median map to 0 and 1",
            "percentile": "the raw 0.5th–99.5th percentiles map to 0 and 1",
        }[cfg.normalization]
        + ".",
    ]
    if conditioned:
        processing.append(
            "3. **Noise map**: a Poisson–Gaussian noise model σ²(I) = g·I + c fitted to the "
            "frame (Immerkær's residual, Foi et al. 2008) gives each pixel's noise σ from "
            f"its local mean; the network gets it as a second channel (times {strength:g}, "
            "the denoising strength) and returns x + σ·f(x, σ, log σ)."
        )
    processing.append(
        f"{len(processing) + 1}. The frame is mirrored outwards by 32 px (rounded to a "
        f"multiple of {cfg.alignment}), run through the network whole, cropped, and mapped "
        "back to the frame's intensities."
    )
    if keep_lattice:
        processing.append(
            f"{len(processing) + 1}. **Lattice guard**: where the input's power spectrum "
            "stands ten times above its local floor (a Bragg reflection noise cannot make), "
            "the part of the residual input − output above the residual's own floor is "
            "given back (Wiener-weighted), so a sublattice the network weakened is kept."
        )
    lines = [
        f"# {name}",
        "",
        "Denoises atomic-resolution (HAADF-)STEM images. A PINNED network (" + PAPER + ") "
        f"exported by napari-pinned {__version__}: a U-Net-style encoder–decoder of "
        f"three-convolution blocks, width {cfg.width}, depth {cfg.depth}"
        + (", noise-conditioned" if conditioned else "")
        + ".",
        "",
        "## Input and output",
        "",
        "- input `raw`: one or more raw 2D single-channel frames `(batch, y, x)`, float32, "
        "in any intensity scale (detector counts, 8-bit, normalised). Height and width "
        f"at least {min_size} px and a multiple of {step} beyond that (the network pools "
        f"{cfg.depth} times); napari-pinned itself accepts any size.",
        f"- pixel size: {pixel}",
        "- output `denoised`: the denoised frames, same shape, in the input's intensities.",
        "",
        "## Pre- and post-processing (inside the model)",
        "",
        "The processing is part of the model (`napari_pinned_denoiser.py`, plain torch), "
        "because it uses statistics of the whole frame that the BioImage Model Zoo "
        "processing steps cannot express (`scale_range` takes plain percentiles, "
        "`zero_mean_unit_variance` moments, and neither gives a noise map). The package "
        "therefore declares no processing steps. Per frame:",
        "",
        *processing,
        "",
        "**Run each frame whole.** A consumer that cuts a frame into tiles computes these "
        "statistics per tile: the result is still a denoised image, but no longer exactly "
        "napari-pinned's. napari-pinned (`denoise(image, model='this.zip')`) reads this "
        "package back into its own tiled pipeline with the frame's statistics.",
        "",
        "## Training data",
        "",
        str(meta.get("training_data") or "not recorded in the model file"),
        "",
        f"Noise: {meta.get('noise', '—')}"
        + (f", CDN levels {meta['noise_levels']}" if meta.get("noise_levels") else "")
        + f"; {meta.get('steps', '—')} steps of {meta.get('batch_size', '—')} patches of "
        f"{meta.get('patch_size', '—')}² px, learning rate {meta.get('learning_rate', '—')}, "
        f"seed {meta.get('seed', '—')}"
        + (f" (`{meta['script']}`)" if meta.get("script") else "")
        + ".",
        "",
        "## Validation",
        "",
        f"- during training: PSNR {_fmt(meta.get('val_psnr'))} dB, SSIM "
        f"{_fmt(meta.get('val_ssim'), 3)} on held-out validation crops (best step "
        f"{meta.get('best_step', '—')}).",
        f"- the test image of this package: simulated BaTiO3 (held out from the shipped "
        f"models' training), {quality['size']}² px at {TEST_PIXEL_SIZE} Å/px, {noise}: PSNR "
        f"{_fmt(quality['noisy_psnr'])} dB noisy → **{_fmt(quality['denoised_psnr'])} dB** "
        f"denoised (SSIM {_fmt(quality['noisy_ssim'], 3)} → "
        f"{_fmt(quality['denoised_ssim'], 3)}) against the clean simulation.",
        f"- this package's output equals napari-pinned's `denoise` on that image to "
        f"{quality['agreement']:.1e} of its range (checked when it was written).",
        "",
        "To validate on your own data: denoise a frame series' single frames and compare "
        "with the drift-corrected mean of the series (`napari-pinned align`), or compare "
        "column positions found before and after (see napari-pinned's docs/metrics.md).",
        "",
        "## Limitations",
        "",
        "Trained on simulated images (see training data); at very low dose it may invent "
        "lattice where there is none. Check results against the raw data.",
        "",
        "## Citation",
        "",
        PAPER + ".",
        "",
    ]
    return "\n".join(lines)


def _pixel_axis(
    bundle: ModelBundle, model: Any, pixel_size: float | None
) -> tuple[dict[str, Any], str]:
    """Unit and scale of the spatial axes, and a sentence for the documentation."""
    if pixel_size is None and isinstance(bundle.metadata.get("pixel_size"), (int, float)):
        pixel_size = float(bundle.metadata["pixel_size"])
    if pixel_size is not None:
        if not (math.isfinite(pixel_size) and pixel_size > 0):
            raise ValueError(f"pixel_size must be a positive number of Å, got {pixel_size!r}")
        return {"unit": "angstrom", "scale": float(pixel_size)}, f"{pixel_size:g} Å/px"
    shipped = _SHIPPED_PIXEL_SIZES.get(model) if isinstance(model, str) else None
    if shipped is not None:
        lo, hi = shipped
        text = (
            f"trained on {lo:g}–{hi:g} Å/px; the axes state {TEST_PIXEL_SIZE:g} Å/px, the "
            "test image's"
        )
        return {"unit": "angstrom", "scale": TEST_PIXEL_SIZE}, text
    return {}, "not recorded (the model has no training pixel size)"


def _valid_size(alignment: int) -> tuple[int, int]:
    """Smallest frame edge and step: a multiple of the alignment, at least 64 px, and
    more than the mirrored context so that reflection stays inside the frame."""
    before = -(-32 // alignment) * alignment
    minimum = max(64, before + alignment)
    return -(-minimum // alignment) * alignment, alignment


def export_bioimageio(
    model: Any = "default",
    path: str | os.PathLike = "model.bioimageio.zip",
    *,
    name: str | None = None,
    description: str | None = None,
    authors: Sequence[str | Mapping[str, Any]] | None = None,
    license: str = "BSD-3-Clause",
    pixel_size: float | None = None,
    strength: float = 1.0,
    torchscript: bool = True,
    keep_lattice: bool = True,
) -> pathlib.Path:
    """Write a model as a BioImage Model Zoo package (model RDF 0.5, zip).

    Parameters
    ----------
    model : str, path or ModelBundle
        A shipped model's name (``"default"``, ``"cdn"``), a model file, or a model.
    path : path-like
        The package to write (written atomically).
    name, description : str, optional
        The package's name (5–128 letters, digits, spaces, ``_+-()``) and one-paragraph
        description; by default from the model's metadata.
    authors : sequence of str or dict, optional
        Names (or BMZ author dicts: name, affiliation, email, orcid, github_user).
    license : str
        SPDX licence identifier of the weights.
    pixel_size : float, optional
        Pixel size in Å the model is meant for; by default the model's metadata, or the
        test image's 0.1 Å for the shipped models (trained on a range that includes it).
    strength : float
        Denoising strength of noise-conditioned models, fixed in the package.
    torchscript : bool
        Also include ``torchscript`` weights (for deepImageJ and others without Python).
    keep_lattice : bool
        Build in the lattice guard, as ``denoise`` applies it by default.

    Returns
    -------
    pathlib.Path
        The package.

    Raises
    ------
    ValueError
        For an unreadable model, invalid settings, a destination that cannot be written,
        or bioimageio.spec missing.
    """
    try:
        from bioimageio.spec import InvalidDescr, build_description, save_bioimageio_package
        from bioimageio.spec.model.v0_5 import ModelDescr
    except ImportError:
        raise ValueError(
            f"exporting a BioImage Model Zoo package needs bioimageio.spec ({_SPEC_HINT})"
        ) from None
    from napari_pinned._util.checks import check_strength
    from napari_pinned.io.safe_write import atomic_write, check_outputs
    from napari_pinned.nn.model_files import load_model

    target = check_outputs([path])[0]
    strength = check_strength(strength)
    bundle = load_model(model, device="cpu")
    min_size, step = _valid_size(bundle.config.alignment)
    label = str(bundle.metadata.get("name") or "napari-pinned model")
    name = name or f"PINNED STEM denoiser ({label.replace('napari-pinned ', '')})"
    name = "".join(c for c in name if c.isalnum() or c in " _+-()").strip()
    axis_extra, pixel_text = _pixel_axis(bundle, model, pixel_size)
    wrapper = _wrapper(bundle, strength, bool(keep_lattice))
    test = _test_run(bundle, wrapper, strength, bool(keep_lattice))

    with tempfile.TemporaryDirectory(prefix="napari-pinned-bmz-") as tmp:
        folder = pathlib.Path(tmp)
        _write_test_files(folder, test)
        doc = _documentation(
            bundle,
            name=name,
            noise=test.noise_text,
            quality=test.quality,
            pixel=pixel_text,
            min_size=min_size,
            step=step,
            strength=strength,
            keep_lattice=bool(keep_lattice),
        )
        (folder / "README.md").write_text(doc, encoding="utf-8")
        rdf = {
            "type": "model",
            "format_version": ModelDescr.implemented_format_version,
            "name": name,
            "description": description or _default_description(label, bundle.config),
            "authors": _author_list(authors),
            "cite": [{"text": PAPER, "url": PAPER_URL}],
            "license": license,
            "tags": ["denoising", "electron-microscopy", "stem", "2d", "pytorch", "napari-pinned"],
            "documentation": {"source": str(folder / "README.md")},
            "covers": [{"source": str(folder / "cover.png")}],
            **_tensor_descriptions(folder, min_size, step, axis_extra),
            "weights": _weights_description(
                folder, bundle, wrapper, strength, bool(keep_lattice), torchscript
            ),
            "training_data": _training_data(bundle, authors, license),
            "version": "0.1.0",
            "config": _package_config(bundle, strength, test.quality),
        }
        descr = build_description(rdf)
        if isinstance(descr, InvalidDescr):
            raise ValueError(f"{target}: the package would be invalid: {descr.get_reason()}")
        built = save_bioimageio_package(descr, output_path=folder / "package.zip")
        with atomic_write(target) as handle, open(built, "rb") as packed:
            shutil.copyfileobj(packed, handle)
    return target


def _training_data(
    bundle: ModelBundle, authors: Sequence[str | Mapping[str, Any]] | None, license: str
) -> dict[str, Any]:
    """The RDF's ``training_data``: a dataset description of the simulated images."""
    from bioimageio.spec.dataset.v0_3 import DatasetDescr

    return {
        "type": "dataset",
        "format_version": DatasetDescr.implemented_format_version,
        "name": "Simulated HAADF-STEM images (napari-pinned)",
        "authors": _author_list(authors),
        "license": license,
        "cite": [{"text": PAPER, "url": PAPER_URL}],
        "tags": ["electron-microscopy", "stem", "simulated"],
        "description": str(
            bundle.metadata.get("training_data")
            or "simulated by napari-pinned; not recorded in the model file"
        )[:1024],
    }


def _package_config(bundle: ModelBundle, strength: float, quality: dict[str, Any]) -> dict:
    """The RDF's ``config``: the Zoo's keys, and ours that make the package loadable
    without running its code (:func:`load_own_package`)."""
    from napari_pinned.nn.model_files import _checksum, _json_default

    config = bundle.config
    metadata_json = json.dumps(bundle.metadata, default=_json_default, allow_nan=True)
    state = {k: v.detach().cpu() for k, v in bundle.model.state_dict().items()}
    return {
        "bioimageio": {
            "architecture_type": "U-Net (PINNED)",
            "modality": "scanning transmission electron microscopy",
            "task": "denoising",
            "model_parameter_count": int(sum(v.numel() for v in state.values())),
        },
        "napari_pinned": {
            "format": PACKAGE_FORMAT,
            "format_version": PACKAGE_FORMAT_VERSION,
            "written_by": f"napari-pinned {__version__}",
            "model_config": config.to_dict(),
            "metadata_json": metadata_json,
            "sha256": _checksum(config.to_dict(), metadata_json, state),
            "strength": strength,
            "quality": quality,
        },
    }


@dataclass(frozen=True)
class _TestRun:
    """The package's test and sample tensors and what they measure."""

    noisy: np.ndarray
    test_input: np.ndarray
    test_output: np.ndarray
    noise_text: str
    quality: dict[str, Any]
    wrapper: Any


def _test_run(bundle: ModelBundle, wrapper: Any, strength: float, keep_lattice: bool) -> _TestRun:
    """Run the package's model on the bundled test image; check it against ``denoise``."""
    import torch

    from napari_pinned.denoising.denoiser import denoise
    from napari_pinned.quality.metrics import compute_metrics

    clean, noisy, noise_text = _test_images(bundle, TEST_IMAGE_SIZE)
    test_input = noisy[None].astype(np.float32)
    with torch.inference_mode():
        test_output = wrapper(torch.from_numpy(test_input)).numpy()
    reference = denoise(noisy, bundle, device="cpu", strength=strength, keep_lattice=keep_lattice)
    span = float(np.ptp(reference)) or 1.0
    agreement = float(np.max(np.abs(test_output[0] - reference))) / span
    if agreement > 1e-3:
        raise RuntimeError(
            f"the package's model differs from napari-pinned's denoise by {agreement:.2e} of "
            "the range on the test image (more than 1e-3): a bug in bmz_denoiser.py"
        )
    noisy_m = compute_metrics(noisy, clean)
    denoised_m = compute_metrics(test_output[0], clean)
    quality = {
        "size": TEST_IMAGE_SIZE,
        "noisy_psnr": noisy_m.psnr,
        "noisy_ssim": noisy_m.ssim,
        "denoised_psnr": denoised_m.psnr,
        "denoised_ssim": denoised_m.ssim,
        "agreement": agreement,
    }
    return _TestRun(noisy, test_input, test_output, noise_text, quality, wrapper)


def _write_test_files(folder: pathlib.Path, test: _TestRun) -> None:
    """Architecture, state-dict weights, test/sample tensors and cover, into ``folder``."""
    import torch

    from napari_pinned.io.images import write_png, write_tiff

    shutil.copyfile(_architecture_path(), folder / ARCHITECTURE_FILE)
    torch.save(test.wrapper.state_dict(), folder / "weights.pt")
    np.save(folder / "test_input.npy", test.test_input)
    np.save(folder / "test_output.npy", test.test_output)
    write_tiff(folder / "sample_input.tif", test.noisy, pixel_size=TEST_PIXEL_SIZE)
    write_tiff(folder / "sample_output.tif", test.test_output[0], pixel_size=TEST_PIXEL_SIZE)
    write_png(folder / "cover.png", _cover(test.noisy, test.test_output[0]))


def _default_description(label: str, config: Any) -> str:
    return (
        f"Denoises atomic-resolution STEM images ({label}); raw frames in, denoised "
        "frames out, with napari-pinned's frame normalisation"
        + (" and noise map" if config.conditioned else "")
        + " inside the model."
    )


def _tensor_descriptions(
    folder: pathlib.Path, min_size: int, step: int, axis_extra: dict[str, Any]
) -> dict[str, Any]:
    """The RDF's ``inputs`` and ``outputs``: raw frames in, frames of their size out."""
    space = {"type": "space", "size": {"min": min_size, "step": step}, **axis_extra}
    ref = {"type": "space", **axis_extra}
    raw = {
        "id": "raw",
        "description": "raw STEM frames, any intensity scale",
        "axes": [{"type": "batch"}, {**space, "id": "y"}, {**space, "id": "x"}],
        "test_tensor": {"source": str(folder / "test_input.npy")},
        "sample_tensor": {"source": str(folder / "sample_input.tif")},
        "data": {"type": "float32"},
        "preprocessing": [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}],
    }
    denoised = {
        "id": "denoised",
        "description": "denoised frames, in the input's intensities",
        "axes": [
            {"type": "batch"},
            {**ref, "id": "y", "size": {"tensor_id": "raw", "axis_id": "y"}},
            {**ref, "id": "x", "size": {"tensor_id": "raw", "axis_id": "x"}},
        ],
        "test_tensor": {"source": str(folder / "test_output.npy")},
        "sample_tensor": {"source": str(folder / "sample_output.tif")},
        "data": {"type": "float32"},
    }
    return {"inputs": [raw], "outputs": [denoised]}


def _weights_description(
    folder: pathlib.Path,
    bundle: ModelBundle,
    wrapper: Any,
    strength: float,
    keep_lattice: bool,
    torchscript: bool,
) -> dict[str, Any]:
    """The RDF's ``weights``: our state dict and architecture file, and TorchScript."""
    import torch

    torch_version = torch.__version__.split("+")[0]
    kwargs = {**bundle.config.to_dict(), "strength": strength, "keep_lattice": keep_lattice}
    weights: dict[str, Any] = {
        "pytorch_state_dict": {
            "source": str(folder / "weights.pt"),
            "architecture": {
                "source": str(folder / ARCHITECTURE_FILE),
                "callable": ARCHITECTURE_CALLABLE,
                "kwargs": kwargs,
            },
            "pytorch_version": torch_version,
        }
    }
    if torchscript:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script
            torch.jit.script(wrapper).save(str(folder / "weights_torchscript.pt"))
        weights["torchscript"] = {
            "source": str(folder / "weights_torchscript.pt"),
            "pytorch_version": torch_version,
            "parent": "pytorch_state_dict",
        }
    return weights
