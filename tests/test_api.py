"""The top-level Python API: the documented names, the README's example as written."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import napari_pinned

README = Path(__file__).resolve().parents[1] / "README.md"


def _run(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def test_every_documented_name_is_the_api_object_whatever_was_imported_first():
    # Importing a submodule of the same name (napari_pinned.simulate) used to replace the
    # function by the module: `from napari_pinned import simulate` then gave a module.
    code = textwrap.dedent(
        """
        import importlib, pkgutil, types
        import napari_pinned
        for info in pkgutil.iter_modules(napari_pinned.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"napari_pinned.{info.name}")
        from napari_pinned import simulate
        assert callable(simulate) and not isinstance(simulate, types.ModuleType), simulate
        for name in napari_pinned.__all__:
            value = getattr(napari_pinned, name)
            assert not isinstance(value, types.ModuleType), name
        import napari_pinned.physics.simulate
        from napari_pinned.physics.simulate import AberratedProbe
        assert napari_pinned.simulate is simulate
        print("ok")
        """
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    for name in napari_pinned.__all__:
        assert not isinstance(getattr(napari_pinned, name), types.ModuleType), name


@pytest.mark.slow
def test_the_readme_python_example_runs_as_written(tmp_path):
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "from napari_pinned import (" in code and "simulate," in code
    # Only fewer steps, so that the test stays short; everything else as printed.
    short = code.replace("TrainConfig(steps=2000)", "TrainConfig(steps=3)")
    assert short != code
    # The submodule of the same name imported first, as any other import may do.
    result = _run("import napari_pinned.simulate\n" + short, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5, lines
    assert "e⁻/px" in lines[0]
    assert [line.startswith("PSNR ") for line in lines] == [False, True, False, True, True]
    assert "reflections" in lines[2]
    assert (tmp_path / "model.pt").is_file()


def test_metrics_print_as_one_readable_line():
    from napari_pinned.quality.metrics import Metrics

    metrics = Metrics(psnr=24.3127, ssim=0.71234, fsc=0.98765, epi=0.9123)
    assert str(metrics) == "PSNR 24.31 dB, SSIM 0.7123, FSC 0.9877, EPI 0.912"
    assert repr(metrics).startswith("Metrics(psnr=24.3127")
