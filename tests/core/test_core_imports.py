"""The science core must not pull in Qt, magicgui, napari or the Qt widget libraries."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

#: Every module of the package outside ``_qt``, found on disk so that new modules are
#: covered without being listed.
_PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "src" / "napari_pinned"
CORE_MODULES = [
    "napari_pinned",
    *sorted(f"napari_pinned.{p.stem}" for p in _PACKAGE.glob("*.py") if p.stem != "__init__"),
]
FORBIDDEN = (
    "qtpy",
    "magicgui",
    "napari.",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "PySide6",
    "vispy",
    "pyqtgraph",
    "superqt",
)


def test_core_imports_no_gui_modules():
    code = (
        "import importlib, json, sys\n"
        f"for m in {CORE_MODULES!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    offending = [
        m for m in loaded if m in ("napari", "qtpy", "magicgui") or m.startswith(FORBIDDEN)
    ]
    assert offending == []


def test_package_import_is_lazy_about_torch():
    code = "import sys, napari_pinned; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
