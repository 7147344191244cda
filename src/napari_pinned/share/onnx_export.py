"""ONNX export: a napari-pinned model's network as an ONNX file, for napari-pinned's ONNX
Runtime backend on machines without torch (``denoise --model model.onnx``).

The file format (bounds, metadata, checksum) is :mod:`napari_pinned.nn.onnx_files`; the
runner :mod:`napari_pinned.nn.runners`.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from napari_pinned.nn.onnx_files import OPSET, onnx_bytes

__all__ = ["export_onnx"]


def export_onnx(model: Any, path: str | os.PathLike, *, opset: int = OPSET) -> pathlib.Path:
    """Write a model's network as an ONNX file for
    :func:`~napari_pinned.nn.onnx_files.load_onnx_model` (atomically).

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
    from napari_pinned.nn.resolve import load_model

    target = check_outputs([path])[0]
    bundle = load_model(model, device="cpu")
    return write_bytes(target, onnx_bytes(bundle, opset=opset))
