"""Checks of arguments and input files that the commands share, all without torch:
they run before any slow import or work, so a mistake is reported at once."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def about(path: str | Path) -> Iterator[None]:
    """Prefix a core ``ValueError`` about "image" with the file it came from."""
    try:
        yield
    except ValueError as exc:
        text = str(exc)
        if str(path) in text:
            raise
        raise ValueError(f"{path}: {text}") from None


def input_shape(path: Path) -> tuple[int, ...]:
    """The shape of an input image, from its header; one line naming the file if not."""
    from napari_pinned._util.intensity import check_header
    from napari_pinned.io.images import image_shape

    shape, dtype = image_shape(path)
    if len(shape) not in (2, 3):
        raise ValueError(
            f"{path}: holds a {len(shape)}-D array of shape {shape}; expected an image or a stack"
        )
    with about(path):
        check_header(shape, dtype)  # RGB, not a number, empty: from the header
    return shape


def not_a_file(path: Path) -> str:
    """Why ``path`` is no input file, in one line naming it: missing, a folder, a broken
    symbolic link or a loop of them (which ``Path.resolve`` would raise RuntimeError on)."""
    if path.is_dir():
        return f"{path}: is a folder"
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return f"{path}: a symbolic link loop (it leads back to itself)"
        return f"{path}: a broken symbolic link (to {os.readlink(path)}, which does not exist)"
    return f"{path}: no such file"


def check_inputs_exist(paths: Sequence[Path]) -> None:
    """Each path is a file (not missing, not a folder)."""
    for path in paths:
        if not path.is_file():
            raise ValueError(not_a_file(path))


def check_reference_shape(
    path: Path, shape: tuple[int, ...], ref: Path, ref_shape: tuple[int, ...]
) -> None:
    """A stack may be scored frame by frame against one 2D reference."""
    if shape == ref_shape or (len(shape) == 3 and len(ref_shape) == 2 and shape[1:] == ref_shape):
        return
    raise ValueError(f"{path} has shape {shape} but the reference {ref} has shape {ref_shape}")


def check_finite_output(data: np.ndarray, source: str | Path) -> None:
    """Never write a NaN image: say so instead (extreme inputs, a diverged model)."""
    if not np.isfinite(data).all():
        raise ValueError(f"{source}: the result contains NaN or infinite values; nothing written")


def shipped_name_or_file(value: str, option: str) -> None:
    """Check a model argument without torch: a file that exists, or a shipped name
    (checked when the model is loaded)."""
    path = Path(value).expanduser()
    looks_like_a_file = path.suffix != "" or "/" in value or "\\" in value
    if path.exists() and not path.is_file():
        raise ValueError(f"{option} {value}: is a folder, not a model file")
    if path.is_symlink() and not path.exists():
        raise ValueError(f"{option} {not_a_file(path)}")
    if looks_like_a_file and not path.exists():
        raise ValueError(f"{option} {value}: model file not found")


def torch_cuda_build() -> bool | None:
    """Whether the installed torch was built with CUDA (or ROCm), read from its
    ``torch/version.py`` without importing torch (seconds); None when unknown."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    builds = re.findall(r"^(cuda|hip)\s*(?::[^=]*)?=\s*(None|'[^']*'|\"[^\"]*\")", text, re.M)
    if not builds:
        return None
    return any(value != "None" for _name, value in builds)


def check_torch_device(device: str) -> None:
    """Refuse, without importing torch, a CUDA device that the installed torch cannot
    use because it was built without CUDA (a GPU that is missing or a device index
    beyond the GPUs is found when torch starts)."""
    if device.startswith("cuda") and torch_cuda_build() is False:
        raise ValueError(
            f"--device {device}: this PyTorch build has no CUDA (a CPU-only build); use "
            "--device cpu or auto, or install a CUDA build of torch"
        )


def model_inputs(model: str) -> list[Path]:
    """The model argument as an input file no output may replace: ``[path]``, or ``[]``
    for a shipped name."""
    return [Path(model)] if Path(model).is_file() else []
