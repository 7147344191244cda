"""BioImage Model Zoo export: napari-pinned models as packages other tools run.

:func:`export_bioimageio` writes a zip package in the newest model RDF format that
``bioimageio.spec`` accepts (0.5).  The package's model is
:class:`napari_pinned.share.bmz_denoiser.PinnedDenoiser`: raw single-channel frames
``(batch, y, x)`` in, denoised frames out, with napari-pinned's outlier repair,
normalisation, noise map and lattice prior done inside the model in torch operations.
These are frame-level statistics (percentiles of the frame's 3×3 median, a
Poisson–Gaussian fit per frame, the frame's significant Fourier components) that the
spec's processing steps cannot express (``scale_range`` takes plain percentiles and
``zero_mean_unit_variance`` moments; neither gives a noise map), so the package declares
no processing steps beyond ``ensure_dtype`` and says so in its documentation
(:mod:`napari_pinned.share.bmz_docs`).  Every BMZ consumer
(bioimageio.core, deepImageJ, ...) then gets napari-pinned's result for a whole frame;
export checks it against :func:`napari_pinned.denoising.denoiser.denoise` to 1e-3 of the
range (:mod:`napari_pinned.share.bmz_test_run`).  Weights: ``pytorch_state_dict``
(architecture = ``bmz_denoiser.py``, copied into the package) and ``torchscript`` (the
same module scripted).  No ``onnx`` weights: the frame statistics (sorting,
data-dependent bins and branches) have no faithful ONNX export; the bare network is
exported to ONNX for napari-pinned's own runtime instead
(:func:`napari_pinned.share.onnx_export.export_onnx`).

napari-pinned reads its packages back as models without running anything from them
(:mod:`napari_pinned.nn.packages`).
"""

from __future__ import annotations

import hashlib
import math
import os
import pathlib
import shutil
import string
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_pinned._version import __version__
from napari_pinned.nn.packages import (
    ARCHITECTURE_CALLABLE,
    ARCHITECTURE_FILE,
    INSTALL_HINT,
    PACKAGE_FORMAT,
    PACKAGE_FORMAT_VERSION,
)
from napari_pinned.share.bmz_docs import PAPER, PAPER_URL, default_description, documentation
from napari_pinned.share.bmz_test_run import (
    TEST_PIXEL_SIZE,
    TestRun,
    architecture_kwargs,
    cover,
    run_test,
)

if TYPE_CHECKING:
    from napari_pinned.nn.network import ModelBundle

__all__ = ["architecture_path", "architecture_sha256", "export_bioimageio"]

#: Training pixel sizes (Å) of the shipped models (docs/model-card*.md).
_SHIPPED_PIXEL_SIZES = {"default": (0.03, 0.3), "cdn": (0.05, 0.2)}


def architecture_path() -> pathlib.Path:
    """The architecture file this napari-pinned writes into packages."""
    return pathlib.Path(__file__).resolve().with_name("bmz_denoiser.py")


def architecture_sha256() -> str:
    """SHA-256 of :func:`architecture_path` (one of
    :data:`napari_pinned.nn.packages.KNOWN_ARCHITECTURE_SHA256`)."""
    return hashlib.sha256(architecture_path().read_bytes()).hexdigest()


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
        Build in the lattice guard, as ``denoise`` applies it by default (never for
        models trained on CDN, as in ``denoise``).

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
        import bioimageio.spec  # noqa: F401
    except ImportError:
        raise ValueError(
            f"exporting a BioImage Model Zoo package needs bioimageio.spec ({INSTALL_HINT})"
        ) from None
    from napari_pinned._util.checks import check_strength
    from napari_pinned.io.safe_write import check_outputs
    from napari_pinned.nn.resolve import load_model

    check_package_fields(name=name, description=description, authors=authors, license=license)
    target = check_outputs([path])[0]
    strength = check_strength(strength)
    bundle = load_model(model, device="cpu")
    label = str(bundle.metadata.get("name") or "napari-pinned model")
    axis = _pixel_axis(bundle, model, pixel_size)
    test = run_test(bundle, strength, bool(keep_lattice))
    _write_package(
        target,
        bundle,
        test,
        name=_package_name(name, label),
        description=description or default_description(label, bundle.config),
        authors=authors,
        license=license,
        axis=axis,
        strength=strength,
        keep_lattice=bool(keep_lattice),
        torchscript=torchscript,
    )
    return target


# What the model RDF 0.5 accepts (bioimageio.spec: ModelDescr.name, .description,
# generic.v0_3.Author, LicenseId/DeprecatedLicenseId), checked before any work.
_NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "_+- ()")
_NAME_LENGTH = (5, 128)
_DESCRIPTION_LENGTH = 1024
_AUTHOR_FIELDS = ("name", "affiliation", "email", "orcid", "github_user")


def spdx_licence_ids() -> frozenset[str]:
    """The SPDX licence identifiers bioimageio.spec accepts (deprecated ones included),
    from the list it ships, read without importing it (a second of imports)."""
    import importlib.util
    import json

    try:
        spec = importlib.util.find_spec("bioimageio.spec")
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"exporting a BioImage Model Zoo package needs bioimageio.spec ({INSTALL_HINT})"
        )
    listing = pathlib.Path(spec.submodule_search_locations[0]) / "static" / "spdx_licenses.json"
    licences = json.loads(listing.read_text(encoding="utf-8"))["licenses"]
    return frozenset(entry["licenseId"] for entry in licences)


def check_package_fields(
    *,
    name: str | None = None,
    description: str | None = None,
    authors: Sequence[str | Mapping[str, Any]] | None = None,
    license: str = "BSD-3-Clause",
) -> None:
    """Check the package's name, description, authors and licence as the model RDF
    requires them, before the model is loaded, tested and packed (seconds of work that
    bioimageio.spec's validation would otherwise undo at the end).

    Raises
    ------
    ValueError
        One short line naming the field (as the command line spells it) and the rule.
    """
    if not isinstance(license, str) or license not in spdx_licence_ids():
        close = [i for i in spdx_licence_ids() if i.lower() == str(license).lower()]
        hint = f"did you mean {close[0]!r}?" if close else "e.g. BSD-3-Clause, MIT, CC-BY-4.0"
        raise ValueError(
            f"--license {license}: not an SPDX licence identifier ({hint}; the list: "
            "https://spdx.org/licenses/)"
        )
    if name is not None:
        kept = "".join(c for c in name if c in _NAME_CHARACTERS).strip()
        low, high = _NAME_LENGTH
        if not low <= len(kept) <= high:
            raise ValueError(
                f"--name {name!r}: a package name has {low} to {high} letters, digits, "
                "spaces or _+-()"
            )
    if description is not None and len(description) > _DESCRIPTION_LENGTH:
        raise ValueError(
            f"--description: at most {_DESCRIPTION_LENGTH} characters, got {len(description)}"
        )
    _author_list(authors)


def _package_name(name: str | None, label: str) -> str:
    """The given name, or one from the model's, in the characters a package name allows."""
    name = name or f"PINNED STEM denoiser ({label.replace('napari-pinned ', '')})"
    return "".join(c for c in name if c.isalnum() or c in " _+-()").strip()


def _save_package(rdf: dict[str, Any], folder: pathlib.Path, target: pathlib.Path) -> None:
    """Validate the RDF (bioimageio.spec), pack it with the files it names, and write
    the zip to ``target`` atomically."""
    from bioimageio.spec import InvalidDescr, build_description, save_bioimageio_package

    from napari_pinned.io.safe_write import atomic_write

    descr = build_description(rdf)
    if isinstance(descr, InvalidDescr):
        raise ValueError(f"{target}: the package would be invalid: {descr.get_reason()}")
    built = save_bioimageio_package(descr, output_path=folder / "package.zip")
    with atomic_write(target) as handle, open(built, "rb") as packed:
        shutil.copyfileobj(packed, handle)


def _write_package(
    target: pathlib.Path,
    bundle: ModelBundle,
    test: TestRun,
    *,
    name: str,
    description: str,
    authors: Sequence[str | Mapping[str, Any]] | None,
    license: str,
    axis: tuple[dict[str, Any], str],
    strength: float,
    keep_lattice: bool,
    torchscript: bool,
) -> None:
    """Write the package's files (architecture, weights, tensors, cover, README) and
    its model RDF, which names them, into a temporary folder, and pack them into
    ``target``."""
    with tempfile.TemporaryDirectory(prefix="napari-pinned-bmz-") as tmp:
        folder = pathlib.Path(tmp)
        _write_files(folder, test)
        min_size, step = _valid_size(bundle.config.alignment)
        axis_extra, pixel_text = axis
        doc = documentation(
            bundle,
            test,
            name=name,
            pixel=pixel_text,
            min_size=min_size,
            step=step,
            strength=strength,
            keep_lattice=keep_lattice,
        )
        (folder / "README.md").write_text(doc, encoding="utf-8")
        rdf = _model_rdf(
            folder,
            name=name,
            description=description,
            authors=_author_list(authors),
            license=license,
            tensors=_tensor_descriptions(folder, min_size, step, axis_extra),
            weights=_weights_description(folder, bundle, test, strength, keep_lattice, torchscript),
            training_data=_training_data(bundle, authors, license),
            config=_package_config(bundle, strength, test.quality),
        )
        _save_package(rdf, folder, target)


def _model_rdf(
    folder: pathlib.Path,
    *,
    name: str,
    description: str,
    authors: list[dict[str, Any]],
    license: str,
    tensors: dict[str, Any],
    weights: dict[str, Any],
    training_data: dict[str, Any],
    config: dict[str, Any],
) -> dict[str, Any]:
    """The model RDF: the parts that depend on the model, and what every package of
    napari-pinned's says (format, citation, tags, documentation, cover, version)."""
    from bioimageio.spec.model.v0_5 import ModelDescr

    return {
        "type": "model",
        "format_version": ModelDescr.implemented_format_version,
        "name": name,
        "description": description,
        "authors": authors,
        "cite": [{"text": PAPER, "url": PAPER_URL}],
        "license": license,
        "tags": ["denoising", "electron-microscopy", "stem", "2d", "pytorch", "napari-pinned"],
        "documentation": {"source": str(folder / "README.md")},
        "covers": [{"source": str(folder / "cover.png")}],
        **tensors,
        "weights": weights,
        "training_data": training_data,
        "version": "0.1.0",
        "config": config,
    }


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


def _author_list(authors: Sequence[str | Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The RDF's authors: each a non-empty name without '/' or '\\' (bioimageio.spec's
    rule), or a dict of the fields an author has."""
    if authors is None or (not isinstance(authors, str) and len(authors) == 0):
        return [{"name": "napari-pinned developers"}]
    if isinstance(authors, str):
        raise ValueError(f"authors must be a list of names, got the string {authors!r}")
    out = []
    for a in authors:
        entry = dict(a) if isinstance(a, Mapping) else {"name": a}
        unknown = [k for k in entry if k not in _AUTHOR_FIELDS]
        if unknown:
            raise ValueError(
                f"--author {a!r}: unknown author field {unknown[0]!r} (known: "
                f"{', '.join(_AUTHOR_FIELDS)})"
            )
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"--author {a!r}: an author needs a name")
        if "/" in name or "\\" in name:
            raise ValueError(f"--author {a!r}: a name has no '/' or '\\'")
        out.append({**entry, "name": name.strip()})
    return out


def _write_files(folder: pathlib.Path, test: TestRun) -> None:
    """Architecture, state-dict weights, test/sample tensors and cover, into ``folder``."""
    import torch

    from napari_pinned.io.images import write_png
    from napari_pinned.io.tiff import write_tiff

    shutil.copyfile(architecture_path(), folder / ARCHITECTURE_FILE)
    torch.save(test.wrapper.state_dict(), folder / "weights.pt")
    np.save(folder / "test_input.npy", test.test_input)
    np.save(folder / "test_output.npy", test.test_output)
    write_tiff(folder / "sample_input.tif", test.noisy, pixel_size=TEST_PIXEL_SIZE)
    write_tiff(folder / "sample_output.tif", test.test_output[0], pixel_size=TEST_PIXEL_SIZE)
    write_png(folder / "cover.png", cover(test.noisy, test.test_output[0]))


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
    test: TestRun,
    strength: float,
    keep_lattice: bool,
    torchscript: bool,
) -> dict[str, Any]:
    """The RDF's ``weights``: our state dict and architecture file, and TorchScript."""
    import torch

    torch_version = torch.__version__.split("+")[0]
    kwargs = architecture_kwargs(bundle, strength, keep_lattice)
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
            torch.jit.script(test.wrapper).save(str(folder / "weights_torchscript.pt"))
        weights["torchscript"] = {
            "source": str(folder / "weights_torchscript.pt"),
            "pytorch_version": torch_version,
            "parent": "pytorch_state_dict",
        }
    return weights


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
    without running its code (:func:`napari_pinned.nn.packages.own_model`)."""
    from napari_pinned.nn.model_files import checksum, cpu_state, metadata_text

    config = bundle.config
    metadata_json = metadata_text(bundle.metadata)
    state = cpu_state(bundle)
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
            "sha256": checksum(config.to_dict(), metadata_json, state),
            "strength": strength,
            "quality": quality,
        },
    }
