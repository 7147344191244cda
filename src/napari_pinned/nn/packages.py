"""BioImage Model Zoo packages: reading them without running anything from them.

A package is a zip file with a model RDF (``rdf.yaml`` or ``bioimageio.yaml``) at its
root.  Packages are bounded before anything is unpacked: at most
:data:`MAX_PACKAGE_BYTES` unpacked in :data:`MAX_PACKAGE_ENTRIES` entries, an RDF of at
most :data:`MAX_RDF_BYTES` (and :data:`MAX_RDF_NODES` once YAML aliases are expanded),
and every file inside the zip (a package that points to files by URL is refused, so
loading never downloads anything).

napari-pinned's own packages (written by
:func:`napari_pinned.share.bmz_export.export_bioimageio`) are recognised by a marker in
the RDF *and* the SHA-256 of their architecture file being one of
:data:`KNOWN_ARCHITECTURE_SHA256`.  Their ``pytorch_state_dict`` weights load with
``torch.load(weights_only=True)`` into :class:`napari_pinned.nn.network.PinnedNetwork`, through
the same checks as a model file (configuration bounds, tensor shapes, checksum, finite
weights; :mod:`napari_pinned.nn.model_files`).  Nothing from the package is run, not
even its architecture file: we know what it does because its hash says it is ours.

Packages from other tools run through bioimageio.core
(:mod:`napari_pinned.nn.foreign`); which of the two a path is, and what runs it, is
decided in :mod:`napari_pinned.nn.resolve`.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from napari_pinned._util.errors import summary
from napari_pinned._version import __version__

if TYPE_CHECKING:
    from napari_pinned.nn.network import ModelBundle

__all__ = [
    "KNOWN_ARCHITECTURE_SHA256",
    "Package",
    "PackageError",
    "PackageNeedsTrust",
    "is_package",
    "load_own_package",
    "own_model",
    "read_entry",
    "read_package",
]

#: ``config.napari_pinned.format`` of the packages napari-pinned writes.
PACKAGE_FORMAT = "napari-pinned-bmz"
PACKAGE_FORMAT_VERSION = 1
#: Name of the architecture file inside a package, and its callable.
ARCHITECTURE_FILE = "napari_pinned_denoiser.py"
ARCHITECTURE_CALLABLE = "PinnedDenoiser"
#: Prefix of the network's weights in the package model's state dict.
WEIGHT_PREFIX = "network."
#: SHA-256 of every version of ``share/bmz_denoiser.py`` napari-pinned has exported: a
#: package whose architecture file has one of these is ours, and loads without running
#: it.  (``tests/share/test_bmz.py`` fails when the file changes without its hash here.)
KNOWN_ARCHITECTURE_SHA256 = frozenset(
    {
        "4d6fc8f3d0cfb98610c10acc19c6d33d3bb27fec3f2ed33821ffc347a28a44aa",
        "d80d261f44d6c76781b8cb54b8647e70f9619fb98c07d1466c380b6d174d4f27",
        "dc2f7e537c88918eb24e9637dbbe8a4641afe967efeeb74c0ce9b882eaf1c01c",
        "51a7e8e628a3e286ce877675de515c4db86417279813f9201722d1cafe0371fb",
        "5ca15b732595f9a351a58efde4e75041722933f998c4991f34fe68423813ada7",
        "3597eec4b9bd6f2695adddd85ac0ce5c6682982fb6582a5596c7113c23f93978",
        "6c65c9025afdca514e2816646fb6b6a472675b2cc750d441520b481adfe760bd",
        "df4003a3c3c27d5aed1e7020d25bb679da97b13436806733a63533ecb3f43edc",
        "c066df508a47356ea197cca8af09b59641e7235bb32061d200db19d7c79825bf",
        "8bbbf10cff3e32efc6f613d638ed657114569d63e7d3056aef8fdb93253dde37",
        "98fd00e8bec61adc8d3bd9ededde2a43c633681c224d1a9a724be0b840d5ad92",
        "7e76ffcd45db80dfb44adfad2a4362433602807e97156a6fa1665a932b8d7937",
        "ff9b7259f5fc33aa7098fbb2fdfc9f2e857f0c58fdebb647002b857b6e89218b",
        "1e586f63b1fe4dd5f9eef76eb2e1d1f936a0baa07e4d23a53d5a4f9be0610093",
        "7d0b4d4926ff8cb210dfc6dd256fb4654fd5c49a68806f1e43d03456b4a368c7",
        "b9986b2a7431163017a90791a04b91ca3980eb514fe2432d6b0effdfbc706cb3",
        "99d38bfbaa06aad14cee6c9d04478bc62c46bba92bad61415a56e05d0dc7dcf9",
        "c688a7d9cbe577a265e2b5e033f63d57e293d690df7364fee95eacc7322a5953",
        "d91d4ae10ee9d03bafe81c6e4dcf8c9533e871420377568741a044b30b5225b2",
    }
)
#: Bounds on a package, checked before anything is unpacked.
MAX_PACKAGE_BYTES = 1024**3
MAX_PACKAGE_ENTRIES = 1000
MAX_RDF_BYTES = 1024**2
#: Largest RDF once YAML aliases are expanded, in nodes (bioimageio.spec's RDFs: ~500).
MAX_RDF_NODES = 100_000
#: Names of the RDF inside a package (bioimageio.spec's, newest first).
RDF_NAMES = ("bioimageio.yaml", "rdf.yaml")
#: How to install what packages need (bioimageio.spec to write, bioimageio.core to run).
INSTALL_HINT = "pip install 'napari-pinned[bioimageio]'"


class PackageError(ValueError):
    """A BioImage Model Zoo package that cannot be read, or not run by napari-pinned."""


class PackageNeedsTrust(PackageError):
    """A package from another tool whose weights run code: it runs only with
    ``trust=True``."""


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
class Package:
    """A package's RDF and file list, read without running or unpacking anything.

    ``own`` says whether napari-pinned wrote it (marker and known architecture hash);
    ``own_reason`` says why it is or is not, for messages.
    """

    path: pathlib.Path
    rdf: dict[str, Any]
    rdf_name: str
    sizes: dict[str, int]
    own: bool
    own_reason: str


def read_package(path: str | os.PathLike) -> Package:
    """Read a package's RDF and file list, within the bounds, and tell whether it is ours.

    Raises
    ------
    PackageError
        One line naming the file: missing, not a zip, too large, no RDF, an RDF that
        is too large or describes no model, or files outside the package.
    """
    p = pathlib.Path(path).expanduser()
    if not p.exists():
        raise PackageError(f"{p}: package not found")
    rdf, rdf_name, sizes, arch_bytes = _read_archive(p)
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
    own, reason = _ownership(rdf, arch_bytes)
    return Package(p, rdf, rdf_name, sizes, own, reason)


def _read_archive(p: pathlib.Path) -> tuple[Any, str, dict[str, int], bytes | None]:
    """The RDF (parsed), its name, every entry's size and the architecture file's bytes
    (None when the RDF names none in the package), within the bounds."""
    import yaml

    try:
        with zipfile.ZipFile(p) as archive:
            sizes = _entry_sizes(p, archive)
            rdf_name = next((n for n in RDF_NAMES if n in sizes), None)
            if rdf_name is None:
                raise PackageError(
                    f"{p}: not a BioImage Model Zoo package (no {' or '.join(RDF_NAMES)})"
                )
            if sizes[rdf_name] > MAX_RDF_BYTES:
                raise PackageError(f"{p}: {rdf_name} is larger than {MAX_RDF_BYTES} bytes")
            rdf = yaml.safe_load(archive.read(rdf_name))
            if _expanded_nodes(rdf) > MAX_RDF_NODES:
                raise PackageError(
                    f"{p}: {rdf_name} expands to more than {MAX_RDF_NODES:,} entries (nested "
                    "YAML aliases); refused"
                )
            source = _architecture_source(rdf) if isinstance(rdf, dict) else None
            arch_bytes = archive.read(source) if source in sizes else None
    except PackageError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, RecursionError, yaml.YAMLError) as exc:
        raise PackageError(
            f"{p}: not a readable BioImage Model Zoo package ({summary(exc)})"
        ) from None
    return rdf, rdf_name, sizes, arch_bytes


def _entry_sizes(p: pathlib.Path, archive: zipfile.ZipFile) -> dict[str, int]:
    """Every entry's unpacked size, refusing too many entries or too many bytes."""
    entries = archive.infolist()
    if len(entries) > MAX_PACKAGE_ENTRIES:
        raise PackageError(
            f"{p}: {len(entries)} files, more than a package may hold ({MAX_PACKAGE_ENTRIES})"
        )
    sizes = {e.filename: e.file_size for e in entries}
    total = sum(sizes.values())
    if total > MAX_PACKAGE_BYTES:
        from napari_pinned._util.memory import format_bytes

        raise PackageError(
            f"{p}: unpacks to {format_bytes(total)}, more than a package may hold "
            f"({format_bytes(MAX_PACKAGE_BYTES)})"
        )
    return sizes


def _ownership(rdf: Mapping[str, Any], arch_bytes: bytes | None) -> tuple[bool, str]:
    """Whether napari-pinned wrote the package, and why (not)."""
    marker = (rdf.get("config") or {}).get("napari_pinned")
    if not (isinstance(marker, dict) and marker.get("format") == PACKAGE_FORMAT):
        return False, "not made by napari-pinned"
    digest = None if arch_bytes is None else hashlib.sha256(arch_bytes).hexdigest()
    if digest in KNOWN_ARCHITECTURE_SHA256:
        return True, "napari-pinned package"
    return False, (
        "marked as made by napari-pinned, but its architecture file is not one this "
        f"napari-pinned {__version__} wrote (unknown SHA-256)"
    )


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


def read_entry(package: Package, name: Any) -> bytes:
    """The bytes of a file the RDF names; :class:`PackageError` if it is not in the
    package."""
    if not isinstance(name, str) or name not in package.sizes:
        raise PackageError(f"{package.path}: file {name!r} named in the RDF is not in the package")
    with zipfile.ZipFile(package.path) as archive:
        return archive.read(name)


def own_model(package: Package, device: Any = "cpu") -> ModelBundle:
    """A napari-pinned package (``package.own``) as a ModelBundle, through the checks of
    a model file: its weights are read with ``weights_only=True`` and nothing else from
    the package is run."""
    from napari_pinned._util.devices import resolve_device
    from napari_pinned.nn.model_files import (
        ModelFileError,
        bundle_from_payload,
        load_torch_weights,
    )

    path = package.path
    marker = package.rdf["config"]["napari_pinned"]
    weights = package.rdf["weights"]["pytorch_state_dict"]
    data = read_entry(package, weights.get("source"))
    declared = weights.get("sha256")
    if declared is not None and hashlib.sha256(data).hexdigest() != declared:
        raise PackageError(f"{path}: the weights are corrupted (their SHA-256 does not match)")
    where = f"{path}:{weights.get('source')}"
    try:
        state = load_torch_weights(data, where)
        if not isinstance(state, dict) or not all(
            isinstance(k, str) and k.startswith(WEIGHT_PREFIX) for k in state
        ):
            raise PackageError(f"{where}: weights are not a PinnedDenoiser state dict")
        payload = {
            "config": marker.get("model_config"),
            "metadata_json": marker.get("metadata_json"),
            "state_dict": {k[len(WEIGHT_PREFIX) :]: v for k, v in state.items()},
            "sha256": marker.get("sha256"),
        }
        bundle = bundle_from_payload(payload, path)
    except ModelFileError as exc:
        raise PackageError(str(exc)) from None
    bundle.model.to(resolve_device(device))
    return bundle


def load_own_package(path: str | os.PathLike, *, device: Any = "cpu") -> ModelBundle:
    """A package written by napari-pinned as a ModelBundle (what
    :func:`napari_pinned.nn.resolve.load_model` does with one); any other package raises
    :class:`PackageError` saying why."""
    package = read_package(path)
    if not package.own:
        raise PackageError(
            f"{package.path}: {package.own_reason}; napari-pinned can denoise with it "
            "(denoise, --model, the Denoise dock) but not use it as its own model "
            "(training, adaptation, export)"
        )
    return own_model(package, device)
