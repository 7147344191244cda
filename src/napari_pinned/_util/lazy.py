"""Names a package hands out without importing their modules until first use.

``import napari_pinned`` (or ``napari_pinned.io``) must stay cheap: the names it offers
live in modules that import torch, tifffile or zarr.  A package lists each name with
the module defining it and gets a module-level ``__getattr__`` (PEP 562) that imports
that module on first access.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, resolving ``names`` lazily.

    Parameters
    ----------
    package : str
        The package's ``__name__``, for the error message.
    names : mapping
        Public name → the module that defines it.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(module), name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
