"""The napari reader for microscope files (.dm3, .dm4, .emd, .ser, .mrc).

It lives beside the widgets because it talks to napari (notifications); the reading
itself is the core's :func:`napari_pinned.io.microscope.read_microscope_file`.  napari asks
:func:`get_reader` whether we can read a path.  We answer only for our suffixes, and only
once the file has actually been read: a file that RosettaSciIO cannot read (or a missing
RosettaSciIO) gives a warning naming the problem and ``None``, so that napari can still
try its other readers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from napari_pinned.io.microscope import MicroscopeImage, is_microscope_file, read_microscope_file

LayerData = tuple[Any, dict[str, Any], str]


def _notify(kind: str, message: str) -> None:
    # Imported here so that importing this module (npe2 does, to list readers) stays light.
    from napari.utils import notifications

    getattr(notifications, f"show_{kind}")(message)


def _layer_data(image: MicroscopeImage) -> LayerData:
    return (
        image.data,
        {
            "name": image.name,
            "scale": image.scale,
            "units": image.units,
            "metadata": image.metadata,
        },
        "image",
    )


def get_reader(path: str | Sequence[str]) -> Callable[..., list[LayerData]] | None:
    """Return a reader for ``path`` (one file or a list of files), or None.

    None when any path is not a microscope file, or when reading fails (a warning says
    why), so that napari falls back to another reader.
    """
    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not all(is_microscope_file(p) for p in paths):
        return None
    layers: list[LayerData] = []
    for p in paths:
        try:
            images, notes = read_microscope_file(p)
        except ValueError as exc:
            _notify("warning", f"napari-pinned: {exc}")
            return None
        for note in notes:
            _notify("info", note)
        if not images:
            _notify("warning", f"napari-pinned: {p} holds no 2D image or image stack")
            return None
        layers.extend(_layer_data(image) for image in images)
    return lambda _path: layers
