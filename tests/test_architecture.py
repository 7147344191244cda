"""The package's shape: a Qt-free core, packages in one direction, no import cycles.

The layers, bottom to top (docs/CONTRIBUTING.md explains each):

``settings`` → ``_util`` → ``io`` → ``physics`` → ``noise`` → ``quality`` → ``nn`` →
``training`` → ``denoising`` → ``share`` → ``cli`` → ``_qt``

A module may import from its own package and from the packages below it, never from
one above, whether the import is at the top of the file, inside a function or only for
type checking.  The package root (``__init__``, the napari contributions) sits on top.
"""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import pytest

_SRC = pathlib.Path(__file__).resolve().parents[1] / "src"
_PACKAGE = _SRC / "napari_pinned"

#: Bottom to top.  ``_version`` sits with ``settings``: everything may read the version.
LAYERS = (
    ("settings", "_version"),
    ("_util",),
    ("io",),
    ("physics",),
    ("noise",),
    ("quality",),
    ("nn",),
    ("training",),
    ("denoising",),
    ("share",),
    ("cli",),
    ("_qt",),
)
#: Modules of the package root above every layer.
TOP = ("napari_pinned", "napari_pinned._moved", "napari_pinned._sample_data")

GUI_MODULES = (
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


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(_SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(_PACKAGE.rglob("*.py"))}
#: Imported by the GUI check; a ``__main__`` module is a script (importing it runs it).
CORE_MODULES = sorted(
    m for m in MODULES if not m.startswith("napari_pinned._qt") and not m.endswith(".__main__")
)


def _imports(name: str) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in its file."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            # ``from package import module`` imports the module.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _layer(name: str) -> int:
    if name in TOP:
        return len(LAYERS)
    first = name.split(".")[1]
    for rank, packages in enumerate(LAYERS):
        if first in packages:
            return rank
    raise AssertionError(f"{name} belongs to no layer; add its package to LAYERS")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_has_a_layer(name):
    _layer(name)


def test_no_module_imports_from_a_package_above_it():
    upward = [
        f"{name} ({LAYERS[_layer(name)][0] if name not in TOP else 'top'}) imports {target}"
        for name, targets in GRAPH.items()
        for target in sorted(targets)
        if _layer(target) > _layer(name)
    ]
    assert upward == []


def _cycles() -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert _cycles() == []


def test_the_cycle_check_finds_a_cycle(monkeypatch):
    # The check itself must be able to fail.
    monkeypatch.setitem(GRAPH, "napari_pinned.settings", {"napari_pinned._util.jobs"})
    monkeypatch.setitem(GRAPH, "napari_pinned._util.jobs", {"napari_pinned.settings"})
    assert ["napari_pinned._util.jobs", "napari_pinned.settings"] in _cycles()


def test_core_imports_no_gui_modules():
    code = (
        "import importlib, json, sys\n"
        f"for m in {CORE_MODULES!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    offending = [
        m for m in loaded if m in ("napari", "qtpy", "magicgui") or m.startswith(GUI_MODULES)
    ]
    assert offending == []


def test_the_core_list_reaches_into_subpackages():
    assert "napari_pinned.denoising.denoiser" in CORE_MODULES
    assert "napari_pinned.nn.network" in CORE_MODULES
    assert not any(m.startswith("napari_pinned._qt") for m in CORE_MODULES)


def test_package_import_is_lazy_about_torch():
    code = "import sys, napari_pinned; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
