"""Peak memory of denoising one 2-D TIFF, through the CLI and the API, against its frame.

Every measurement runs in a fresh process and reads that process's own peak resident
memory (``ru_maxrss`` from ``os.wait4``).  Linux carries the parent's resident size into
a child's ``ru_maxrss`` across the fork and exec, so this script stays small: it imports
neither numpy nor torch, and the images are written by a process of their own.  The
baseline, measured in the same run, is the floor every denoising process pays: the
interpreter, numpy, torch and the model loaded.  What a denoising run adds above it is
compared with the frame's float32 size.

    python benchmarks/memory.py                        # 1024² 2048² 4096², default model
    python benchmarks/memory.py --sizes 1024 2048      # fewer sizes
    python benchmarks/memory.py --model cdn --tile 512
    python benchmarks/memory.py --write-docs           # also into docs/benchmarks.md

``--write-docs`` writes the table between ``<!-- memory:begin -->`` and
``<!-- memory:end -->`` in docs/benchmarks.md, as printed (``--docs-block NAME``: between
``NAME:begin`` and ``NAME:end``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

from _docs_block import write_docs_block

ROOT = pathlib.Path(__file__).resolve().parent.parent
MB = 1024**2

_BASELINE = """
import sys
from napari_pinned.nn.resolve import load_model
load_model(sys.argv[1], device="cpu")
"""

_WRITE = """
import sys
import numpy as np
from napari_pinned.io.tiff import write_tiff
height, width = int(sys.argv[2]), int(sys.argv[3])
y = np.arange(height, dtype=np.float32)[:, None]
x = np.arange(width, dtype=np.float32)[None, :]
mean = 20.0 * (2.0 + np.cos(2 * np.pi * x / 12.0) * np.cos(2 * np.pi * y / 12.0))
write_tiff(sys.argv[1], np.random.default_rng(0).poisson(mean).astype(np.float32), pixel_size=0.1)
"""

_API = """
import sys
from napari_pinned.denoising.denoiser import denoise
from napari_pinned.io.images import open_frames
tile = {"tile": int(sys.argv[3])} if len(sys.argv) > 3 else {}
denoise(open_frames(sys.argv[1]), sys.argv[2], **tile)
"""


def peak_rss(argv: list[str], timeout: float) -> tuple[float, float, int, str]:
    """Run ``argv``; its peak RSS (MB), wall time (s), exit status and last stderr line."""
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, text=True)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        err.seek(0)
        lines = [line.strip() for line in err.read().splitlines() if line.strip()]
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return usage.ru_maxrss * scale / MB, seconds, process.returncode, (lines or [""])[-1]


def write_image(path: pathlib.Path, height: int, width: int) -> None:
    """A float32 TIFF of Poisson counts on a lattice (memory does not depend on content),
    written by a process of its own (see the module docstring)."""
    subprocess.run([sys.executable, "-c", _WRITE, str(path), str(height), str(width)], check=True)


def measure(args: argparse.Namespace, folder: pathlib.Path) -> list[str]:
    """The table's lines (Markdown), printed as they are measured."""
    python = sys.executable
    tile = [] if args.tile is None else [str(args.tile)]
    base, base_s, status, last = peak_rss([python, "-c", _BASELINE, args.model], args.timeout)
    if status != 0:
        raise SystemExit(f"baseline failed ({status}): {last}")
    lines = [
        f"Baseline (Python, numpy, torch and the model `{args.model}` loaded, nothing "
        f"denoised): **{base:.0f} MB** ({base_s:.1f} s).",
        "",
        "| image | frame (float32) | CLI peak RSS | CLI above baseline | ÷ frame | CLI time "
        "| API peak RSS | API above baseline | ÷ frame | API time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for line in lines:
        print(line, flush=True)
    peaks: dict[str, list[tuple[float, float]]] = {"CLI": [], "API": []}
    for size in args.sizes:
        source, target = folder / f"p{size}.tif", folder / f"p{size}_out.tif"
        write_image(source, size, size)
        frame = size * size * 4 / MB
        cells = [f"{size}²", f"{frame:.0f} MB" if frame >= 1 else f"{frame:.2f} MB"]
        cli = [python, "-m", "napari_pinned.cli", "denoise", str(source), "-o", str(target)]
        cli += ["--model", args.model, "--overwrite"]
        cli += [] if args.tile is None else ["--tile", str(args.tile)]
        api = [python, "-c", _API, str(source), args.model, *tile]
        for name, argv in (("CLI", cli), ("API", api)):
            peak, seconds, status, last = peak_rss(argv, args.timeout)
            if status != 0:
                cells += [f"failed ({status}): {last}", "", "", f"{seconds:.0f} s"]
                continue
            peaks[name].append((frame, peak))
            above = peak - base
            cells += [f"{peak:.0f} MB", f"{above:.0f} MB", f"{above / frame:.1f}×"]
            cells.append(f"{seconds:.1f} s")
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
        source.unlink()
        target.unlink(missing_ok=True)
    lines += growth(peaks)
    if args.strip:
        lines += ["", *strip_row(args, folder)]
    return lines


def growth(peaks: dict[str, list[tuple[float, float]]]) -> list[str]:
    """How much the peak grows per byte of frame between consecutive sizes: the
    multiple of the frame a run holds, once the network's window no longer grows
    with it (a fixed ``--tile``)."""
    parts = []
    for name, points in peaks.items():
        steps = [
            f"{(p1 - p0) / (f1 - f0):.1f}× ({f0:.0f} → {f1:.0f} MB)"
            for (f0, p0), (f1, p1) in itertools.pairwise(points)
            if f1 > f0
        ]
        if steps:
            parts.append(f"{name} " + ", ".join(steps))
    if not parts:
        return []
    line = "Peak growth per MB of frame between sizes: " + "; ".join(parts) + "."
    print(line, flush=True)
    return ["", line]


def strip_row(args: argparse.Namespace, folder: pathlib.Path) -> list[str]:
    """The issue's 100000×1 strip through the CLI: how it ends, its peak, its time."""
    source = folder / "strip.tif"
    write_image(source, 100_000, 1)
    argv = [sys.executable, "-m", "napari_pinned.cli", "denoise", str(source)]
    argv += ["-o", str(folder / "strip_out.tif"), "--model", args.model, "--overwrite"]
    peak, seconds, status, last = peak_rss(argv, args.timeout)
    last = last.replace(f"{folder}{os.sep}", "")
    line = (
        f"A 100000×1 float32 strip (0.4 MB) through the CLI: exit {status} in "
        f"{seconds:.1f} s, peak RSS {peak:.0f} MB; it said: `{last}`"
    )
    print(line, flush=True)
    return [line]


def header(args: argparse.Namespace) -> list[str]:
    torch = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return [
        "`" + " ".join(["python benchmarks/memory.py", *sys.argv[1:]]) + "`",
        f"({platform.machine()}, {os.cpu_count()} CPU threads, torch {torch}, "
        f"Python {platform.python_version()}; tile {args.tile or 'default'}; "
        f"{time.strftime('%Y-%m-%d')}).",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--model", default="default", help="a shipped name or a model file")
    parser.add_argument("--tile", type=int, default=None, help="the core's default if left out")
    parser.add_argument("--strip", action="store_true", help="add the 100000×1 strip")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per process at most")
    parser.add_argument("--write-docs", action="store_true", help="into docs/benchmarks.md")
    parser.add_argument(
        "--docs-block", default="memory", help="the block NAME:begin … NAME:end to write"
    )
    args = parser.parse_args()
    lines = header(args)
    for line in lines:
        print(line, flush=True)
    with tempfile.TemporaryDirectory(prefix="pinned-memory-") as folder:
        lines += measure(args, pathlib.Path(folder))
    if args.write_docs:
        write_docs_block(lines, args.docs_block)


if __name__ == "__main__":
    main()
