"""Documentation that can go stale: generated tables, the CLI reference, the metadata."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from napari_pinned.cli.entry import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _demo_script():
    spec = importlib.util.spec_from_file_location("demo_bench", ROOT / "benchmarks" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_tables_in_the_docs_are_the_ones_generated_from_the_json():
    demo = _demo_script()
    summary = json.loads((ROOT / "benchmarks" / "demo.json").read_text(encoding="utf-8"))
    expected = demo.render(summary)
    assert "flat image (true mean)" in expected and "| 5 |" in expected
    for name in demo.TARGETS:
        text = (ROOT / name).read_text(encoding="utf-8")
        assert demo.current_block(text) == expected, (
            f"{name}: the demo block differs from benchmarks/demo.json; "
            "run `python benchmarks/demo.py --no-run`"
        )


def test_cli_reference_covers_every_command_exit_status_and_the_overwrite_rule():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        assert f"## `{name}`" in text, name
    for needle in ("| 0 |", "| 2 |", "| 130 |", "| 143 |", "--overwrite", "best model so far"):
        assert needle in text, needle
    assert "does not ship" not in text and "not ship it" not in text


def test_the_licence_is_an_spdx_expression_without_a_licence_classifier():
    # Read as text: tomllib is not in Python 3.10, which the package supports.
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^license = "BSD-3-Clause"$', text, re.M)
    assert "License ::" not in text and "license = {" not in text


def test_measured_tables_in_the_docs_are_the_ones_generated_from_the_json():
    # The benchmarks' JSON is the record; README, model card and benchmarks.md quote it
    # through benchmarks/docs_tables.py, never by hand.
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "docs_tables.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (
        f"{done.stdout}{done.stderr}: run `python benchmarks/docs_tables.py`"
    )
