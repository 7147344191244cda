"""Zarr stores in and out: plain arrays, OME-Zarr level 0, resumable atomic outputs.

Inputs (:func:`open_zarr`) are a zarr array at the store's root, or an OME-Zarr image
(``multiscales`` metadata, v0.4 in zarr v2 or v0.5 in zarr v3): its full-resolution
level 0, with the pixel size from its ``scale`` transform and axis units.  Arrays with
leading axes of length one (OME's ``t, c, z``) are read as the image or stack they hold.
Nothing is read until a frame is indexed.

Outputs (:class:`ZarrOutput`) are written under a temporary name beside the
destination, ``.<name>.partial``, and renamed to the destination only when every frame
is written, so a half-written store never carries the final name.  The temporary store
is the exception to "temporary files are removed": it is kept when a run is
interrupted, so that ``--resume`` can continue it.  A file inside it,
``pinned-progress.json`` (written atomically after each frame's chunks), lists the
frames that are complete, a digest of each one's input frame, and the settings of the
run; a frame not listed — half written when the run stopped — is computed again.  A
resumed run checks the frames it keeps: their input must be unchanged (else it is
refused), and a frame with a chunk missing (NaN, the fill value) is computed again.
Frames are chunked one per chunk along the stack axis, so no chunk holds pixels of two
frames.  One run at a time writes an output (:class:`~napari_pinned.io.safe_write.OutputLock`).

Requires the ``[zarr]`` extra (``pip install "napari-pinned[zarr]"``: zarr ≥ 3).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_pinned._util.errors import first_line
from napari_pinned.io.safe_write import (
    OutputLock,
    check_regular,
    check_unlocked,
    check_writable_folder,
    hidden_sibling,
    no_space_error,
    remove_directory,
    replace_directory,
    write_text,
)

__all__ = [
    "PARTIAL_SUFFIX",
    "PROGRESS_FILE",
    "ZarrInput",
    "ZarrOutput",
    "frame_digest",
    "is_zarr_path",
    "open_zarr",
    "output_chunks",
    "partial_path",
]

PARTIAL_SUFFIX = ".partial"
PROGRESS_FILE = "pinned-progress.json"
_INSTALL_HINT = "pip install 'napari-pinned[zarr]'"
_MARKERS = ("zarr.json", ".zarray", ".zgroup")
#: Largest chunk edge of outputs: a 2048² float32 chunk is 16 MiB.
CHUNK_EDGE = 2048
#: OME-Zarr length units → Å.
_UNIT_IN_ANGSTROM = {
    "angstrom": 1.0,
    "nanometer": 10.0,
    "picometer": 0.01,
    "micrometer": 1e4,
    "millimeter": 1e7,
    "meter": 1e10,
}


def is_zarr_path(path: str | os.PathLike) -> bool:
    """True for a ``.zarr`` path or a folder holding zarr metadata."""
    p = Path(path)
    if p.suffix.lower() == ".zarr":
        return True
    return p.is_dir() and any((p / m).exists() for m in _MARKERS)


def _zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise ValueError(
            f"zarr stores need zarr ≥ 3, which is not installed: {_INSTALL_HINT}"
        ) from None
    return zarr


def partial_path(target: str | os.PathLike) -> Path:
    """Where the output ``target`` is written until it is complete."""
    return hidden_sibling(Path(target).expanduser(), PARTIAL_SUFFIX)


def frame_digest(frame: Any) -> str:
    """A digest of one input frame's values, shape and type (byte order aside), by which
    a resumed run knows its input is the one the frames it keeps came from."""
    data = np.asarray(frame)
    data = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("="))
    digest = hashlib.sha256(f"{data.dtype.str}{data.shape}".encode())
    digest.update(memoryview(data).cast("B"))
    return digest.hexdigest()


class _Squeezed:
    """A lazy view of an array without its leading axes of length one."""

    def __init__(self, array: Any, lead: int) -> None:
        self.array = array
        self.lead = lead
        self.shape = tuple(int(n) for n in array.shape[lead:])
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        key = index if isinstance(index, tuple) else (index,)
        return np.asarray(self.array[(0,) * self.lead + key])

    def __len__(self) -> int:
        return self.shape[0]


@dataclass
class ZarrInput:
    """An image or stack in a zarr store.

    Attributes
    ----------
    path : Path
        The store.
    array : array
        The data, read lazily: a zarr array, or a view of one without its leading
        length-one axes.
    pixel_size : float or None
        Pixel size in Å (``pixel_size_angstrom`` attribute, or the OME ``scale``).
    ome : dict or None
        For OME-Zarr inputs: the ``axes`` and level-0 ``scale`` of the image, to
        write the output with.
    """

    path: Path
    array: Any
    pixel_size: float | None
    ome: dict[str, Any] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def zarr_array(self) -> Any:
        """The underlying zarr array (for dask.array.from_zarr)."""
        return self.array.array if isinstance(self.array, _Squeezed) else self.array


def _multiscales(attrs: dict[str, Any]) -> list[dict[str, Any]] | None:
    ome = attrs.get("ome")
    if isinstance(ome, dict) and isinstance(ome.get("multiscales"), list):
        return ome["multiscales"]
    found = attrs.get("multiscales")
    return found if isinstance(found, list) else None


def _scale_of(dataset: dict[str, Any], store: Path) -> list[float] | None:
    """The level's ``scale`` transform, or None; one line naming the store and the field
    if it holds something other than numbers."""
    for transform in dataset.get("coordinateTransformations") or []:
        if not isinstance(transform, dict) or transform.get("type") != "scale":
            continue
        values = transform.get("scale")
        if not isinstance(values, list):
            continue
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError(
                f"{store}: OME-Zarr multiscales datasets[0] coordinateTransformations "
                f"scale {values!r} is not a number for every axis"
            )
        return [float(v) for v in values]
    return None


def open_zarr(path: str | os.PathLike) -> ZarrInput:
    """Open a zarr array or OME-Zarr image for reading, without reading pixels.

    Raises
    ------
    ValueError
        One line naming the store: missing, not zarr, no array at its root nor OME
        multiscales, more than three non-trivial axes, or zarr not installed.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"{p}: no such zarr store")
    zarr = _zarr()
    try:
        node = zarr.open(str(p), mode="r")
    except Exception as exc:  # zarr raises many types for broken stores
        raise ValueError(f"{p}: not a readable zarr store ({first_line(exc)})") from None
    attrs = dict(node.attrs)
    ome = None
    pixel_size = None
    if isinstance(node, zarr.Group):
        scales = _multiscales(attrs)
        if not scales:
            raise ValueError(
                f"{p}: a zarr group without OME-Zarr multiscales; give the array inside it "
                f"(e.g. {p / 'name'})"
            )
        first = scales[0]
        datasets = first.get("datasets") or []
        if not datasets or "path" not in datasets[0]:
            raise ValueError(f"{p}: OME-Zarr multiscales without a level-0 dataset")
        level = str(datasets[0]["path"])
        try:
            array = node[level]
        except KeyError:
            raise ValueError(f"{p}: OME-Zarr level {level!r} is missing") from None
        axes = first.get("axes") or []
        scale = _scale_of(datasets[0], p)
        ome = {"axes": axes, "scale": scale, "name": first.get("name")}
        if scale and axes and len(axes) == len(scale):
            unit = axes[-1].get("unit") if isinstance(axes[-1], dict) else None
            factor = _UNIT_IN_ANGSTROM.get(str(unit)) if unit else None
            if factor is not None and scale[-1] > 0:
                pixel_size = scale[-1] * factor
    else:
        array = node
    if pixel_size is None:
        value = array.attrs.get("pixel_size_angstrom", attrs.get("pixel_size_angstrom"))
        if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
            pixel_size = float(value)
    shape = tuple(int(n) for n in array.shape)
    lead = 0
    while len(shape) - lead > 2 and shape[lead] == 1:
        lead += 1
    if len(shape) - lead > 3:
        raise ValueError(
            f"{p}: holds a {len(shape)}-D array of shape {shape}; expected an image or a stack"
        )
    data = array if lead == 0 else _Squeezed(array, lead)
    if ome is not None:
        ome["lead"] = lead
    return ZarrInput(p, data, pixel_size, ome, attrs)


def output_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks of an output: one frame per chunk along a stack, at most 2048² px."""
    edges = tuple(min(int(n), CHUNK_EDGE) for n in shape[-2:])
    return (1, *edges) if len(shape) == 3 else edges


def check_zarr_output(
    target: str | os.PathLike, inputs: Iterable[str | os.PathLike], *, overwrite: bool
) -> Path:
    """Check a zarr destination before any work (as :func:`atomic.check_outputs` does
    for files): its folder is writable, it is not a folder of other data nor a device,
    pipe or socket, no other run is writing it, and it is not an input unless
    ``overwrite``."""
    p = Path(target).expanduser()
    check_regular(p)
    check_unlocked(p)
    if p.exists() and not is_zarr_path(p):
        raise ValueError(f"{p}: exists and is not a zarr store; choose another output name")
    if p.exists() and not p.is_dir():
        raise ValueError(f"{p}: exists and is a file, not a zarr store")
    check_writable_folder(p)
    if not overwrite:
        for source in inputs:
            s = Path(source).expanduser()
            try:
                same = s.exists() and p.exists() and os.path.samefile(s, p)
            except OSError:
                same = False
            if same or (p.exists() and _inside(s, p)):
                raise ValueError(
                    f"{p}: is also an input ({s}); writing it would replace that data "
                    "(choose another output name, or add --overwrite)"
                )
    return p


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


class ZarrOutput:
    """A zarr output written frame by frame under a temporary name (see the module
    docstring); :meth:`finish` renames it into place.

    The output is locked for this object's run: :meth:`finish`, :meth:`fail`,
    :meth:`discard` or :meth:`close` (an interrupted run, its frames kept for
    ``--resume``) ends it.

    Parameters
    ----------
    target : path-like
        The destination store (``.zarr``).
    shape : tuple of int
        ``(Y, X)`` or ``(N, Y, X)``; written as float32.
    run : dict
        JSON-able description of the run (input, model, settings): a resumed run must
        match it.
    attrs : dict
        Attributes of the output array (pixel size, model, …).
    ome : dict, optional
        Write an OME-Zarr image (group with level ``"0"``) with these ``axes`` and
        ``scale`` (from :class:`ZarrInput`).
    resume : bool
        Continue the temporary store of an interrupted run with the same ``run``.

    Raises
    ------
    ValueError
        Another run is writing ``target``; a temporary store of an interrupted run
        exists and ``resume`` is False, or it belongs to a different run; ``target`` is
        a device, pipe or socket.
    NoSpaceError
        The file system is full (nothing is left behind).
    """

    def __init__(
        self,
        target: str | os.PathLike,
        shape: tuple[int, ...],
        *,
        run: dict[str, Any],
        attrs: dict[str, Any] | None = None,
        ome: dict[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        zarr = _zarr()
        self.target = Path(target).expanduser()
        self.partial = partial_path(self.target)
        self.shape = tuple(int(n) for n in shape)
        self.run = json.loads(json.dumps(run))
        self.attrs = dict(attrs or {})
        self.ome = ome
        self.done: set[int] = set()
        #: Frame → digest of the input frame it was denoised from (:func:`frame_digest`).
        self.digests: dict[int, str] = {}
        check_regular(self.target)
        if self.target.exists() and not self.target.is_dir():
            raise ValueError(f"{self.target}: exists and is a file, not a zarr store")
        self._lock = OutputLock(self.target).acquire()
        created = not self.partial.exists()
        try:
            if created:
                self._create(zarr, "0" if ome is not None else None)
                self._save_progress()
            else:
                self._reopen(zarr, resume)
        except BaseException as exc:
            full = no_space_error(exc, self.target, "; nothing was written")
            if created:
                remove_directory(self.partial)
            self._lock.release()
            if full is not None:
                raise full from None
            raise

    @property
    def _frames(self) -> int:
        return self.shape[0] if len(self.shape) == 3 else 1

    def _reopen(self, zarr: Any, resume: bool) -> None:
        """Continue the temporary store of an interrupted run of the same ``run``."""
        record = _read_progress(self.partial / PROGRESS_FILE)
        if not resume:
            count = len(record.get("done", [])) if record else 0
            raise ValueError(
                f"{self.target}: an interrupted run left {self.partial.name} ({count} of "
                f"{self._frames} frames done); add --resume to continue it, or delete it "
                "to start again"
            )
        if record is None or record.get("run") != self.run:
            raise ValueError(
                f"{self.target}: {self.partial.name} was written by a run with another "
                "input, model or settings; delete it, or resume with the same ones"
            )
        self.done = {int(i) for i in record.get("done", [])}
        digests = record.get("inputs")
        if isinstance(digests, dict):
            self.digests = {int(k): str(v) for k, v in digests.items() if int(k) in self.done}
        node = zarr.open(str(self.partial), mode="r+")
        self.array = node["0"] if self.ome is not None else node
        if tuple(self.array.shape) != self.shape:
            raise ValueError(f"{self.target}: {self.partial.name} has another shape")

    def _create(self, zarr: Any, level: str | None) -> None:
        chunks = output_chunks(self.shape)
        if level is None:
            self.array = zarr.create_array(
                str(self.partial),
                shape=self.shape,
                chunks=chunks,
                dtype="float32",
                fill_value=np.nan,
                attributes=self.attrs,
            )
            return
        group = zarr.open_group(str(self.partial), mode="w")
        self.array = group.create_array(
            level, shape=self.shape, chunks=chunks, dtype="float32", fill_value=np.nan
        )
        self.array.attrs.update(self.attrs)

    def _save_progress(self) -> None:
        record = {
            "run": self.run,
            "done": sorted(self.done),
            "frames": self._frames,
            "inputs": {str(f): self.digests[f] for f in sorted(self.digests)},
        }
        write_text(self.partial / PROGRESS_FILE, json.dumps(record, indent=1) + "\n")

    def mark_done(self, frames: Iterable[int], digests: Mapping[int, str] | None = None) -> None:
        """Record frames whose chunks are written (after writing them), with the
        :func:`frame_digest` of each one's input frame when known."""
        self.done.update(int(f) for f in frames)
        self.digests.update({int(f): str(d) for f, d in (digests or {}).items()})
        self._save_progress()

    def check_resumed(self, digests: Mapping[int, str], source: object) -> list[int]:
        """Check the frames an interrupted run finished, before they are kept.

        Parameters
        ----------
        digests : mapping
            Frame → :func:`frame_digest` of the input frame now, for the frames of
            :attr:`digests`.
        source : object
            The input, for the message.

        Returns
        -------
        list of int
            Frames to compute again: those with no recorded digest or with a chunk
            missing (read as NaN, the fill value); they are no longer :attr:`done`.

        Raises
        ------
        ValueError
            If the input of a finished frame changed since the interrupted run.
        """
        for frame in sorted(self.done):
            recorded, now = self.digests.get(frame), digests.get(frame)
            if recorded is not None and now is not None and now != recorded:
                raise ValueError(
                    f"{self.target}: the input {source} changed since the interrupted run "
                    f"(frame {frame} differs); delete {self.partial.name} to start again"
                )
        again = [f for f in sorted(self.done) if f not in self.digests or self._has_hole(f)]
        if again:
            self.done.difference_update(again)
            for frame in again:
                self.digests.pop(frame, None)
            self._save_progress()
        return again

    def _has_hole(self, frame: int) -> bool:
        """Whether a chunk of ``frame`` is missing (it reads as NaN, the fill value)."""
        data = self.array[frame] if len(self.shape) == 3 else self.array[...]
        return bool(np.isnan(np.asarray(data)).any())

    @property
    def missing(self) -> list[int]:
        """Frames still to write."""
        return [f for f in range(self._frames) if f not in self.done]

    def finish(self) -> Path:
        """Write the final metadata and rename the store into place (the lock ends).

        Raises
        ------
        ValueError
            A frame is not written, or a chunk of one is missing from the temporary store
            (deleted under the run): nothing is renamed, ``--resume`` writes them.
        """
        if self.missing:
            raise ValueError(f"{self.target}: frames {self.missing[:5]} are not written yet")
        if self.array.nchunks_initialized < self.array.nchunks:
            raise ValueError(
                f"{self.target}: chunks are missing from {self.partial.name} (deleted while "
                "it was written); run again with --resume to write them"
            )
        if self.ome is not None:
            group = _zarr().open_group(str(self.partial), mode="r+")
            group.attrs.update(_ome_attrs(self.ome, len(self.shape), self.attrs))
        (self.partial / PROGRESS_FILE).unlink(missing_ok=True)
        replace_directory(self.partial, self.target)
        self.close()
        return self.target

    def fail(self, exc: BaseException) -> BaseException | None:
        """End a run that ``exc`` stopped (an error, not a signal): the temporary store
        is removed unless it holds finished frames, which a run with ``--resume``
        continues.  Returns what to raise instead of ``exc`` (a full disk, named with
        what was kept), or None to raise ``exc``."""
        kept = len(self.done)
        detail = (
            f"; {kept} of {self._frames} frames are kept in {self.partial.name}: free some "
            "space and run again with --resume"
            if kept
            else "; nothing was written"
        )
        full = no_space_error(exc, self.target, detail)
        if kept:
            self.close()
        else:
            self.discard()
        return full

    def discard(self) -> None:
        """Remove the temporary store (a run that failed rather than stopped)."""
        remove_directory(self.partial)
        self.close()

    def close(self) -> None:
        """End this run's hold on the output (the temporary store stays, for
        ``--resume``)."""
        self._lock.release()


def _read_progress(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _ome_attrs(ome: dict[str, Any], ndim: int, attrs: dict[str, Any]) -> dict[str, Any]:
    """OME-Zarr v0.5 attributes of a one-level image, axes and scale as the input's."""
    lead = int(ome.get("lead", 0))
    axes = list(ome.get("axes") or [])[lead:] or [
        {"name": n, "type": "space"} for n in "zyx"[-ndim:]
    ]
    scale = list(ome.get("scale") or [])[lead:] or [1.0] * ndim
    if len(axes) != ndim or len(scale) != ndim:
        axes = [{"name": n, "type": "space"} for n in "zyx"[-ndim:]]
        scale = [1.0] * ndim
    return {
        "ome": {
            "version": "0.5",
            "multiscales": [
                {
                    "name": f"{ome.get('name') or 'image'} denoised",
                    "axes": axes,
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [{"type": "scale", "scale": scale}],
                        }
                    ],
                    "metadata": {"napari-pinned": attrs.get("napari_pinned", {})},
                }
            ],
        }
    }
