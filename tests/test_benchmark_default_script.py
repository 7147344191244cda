"""scripts/benchmark_default.sh: every benchmark that names the shipped default, in one
background run.  Its commands are printed, not run, with ``PYTHON=echo``."""

from __future__ import annotations

import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "benchmark_default.sh"


def _run(*steps: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHON": "echo", "TK_PYTHON": "tk-python"}
    return subprocess.run(
        ["bash", str(SCRIPT), *steps], capture_output=True, text=True, env=env, check=False
    )


def test_every_step_runs_a_benchmark_that_exists_and_the_tables_last():
    done = _run()
    assert done.returncode == 0, done.stderr
    commands = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    scripts = [line.split()[0] for line in commands]
    for script in scripts:
        assert (ROOT / script).is_file(), script
    # Each scan-noise family, the shipped models on white noise, noise never trained on,
    # real data, adapt, uncertainty, the peer and training without a clean image; the
    # docs' tables at the end.
    for response in ("afterglow", "bandwidth", "resampled", "upsampled"):
        assert any(f"--response {response} --variants" in c for c in commands), response
    assert scripts[-1] == "benchmarks/docs_tables.py"
    assert len(scripts) == 12
    assert any(c.startswith("benchmarks/other_noise.py") for c in commands)
    assert any("--python tk-python" in c for c in commands)


def test_chosen_steps_run_alone_and_an_unknown_one_stops_before_any():
    done = _run("real", "adapt")
    scripts = [line.split()[0] for line in done.stdout.splitlines() if not line.startswith("#")]
    assert scripts == [
        "benchmarks/real_micrographs.py",
        "benchmarks/adapt.py",
        "benchmarks/docs_tables.py",
    ]
    refused = _run("nosuch", "real")
    assert refused.returncode == 2
    assert "unknown step 'nosuch'" in refused.stderr
    assert refused.stdout == ""
