"""How soon a denoising job can stop: the longest wait between two of its records.

A job (:func:`napari_pinned.denoising.denoiser.iter_denoise`) stops at its next record
once asked (the Denoise dock's Cancel, the CLI's Ctrl-C), so the longest gap between two
records, or from the start to the first, is the worst wait a user has after Cancel.
Prints a Markdown table: the gaps' maximum, median and count, and the whole run's time.

    python benchmarks/cancel_latency.py                        # 2048², 8 orientations, 256 px tiles
    python benchmarks/cancel_latency.py --size 1024 --orientations 1 4 8 --tile 256 512
    python benchmarks/cancel_latency.py --model fresh          # default ModelConfig, random weights
    python benchmarks/cancel_latency.py --seconds 60           # stop each job after a minute
    python benchmarks/cancel_latency.py --orientations 1 8 --tile 256 2048 --write-docs

``--write-docs`` writes the table into the ``cancel-latency`` block of
docs/benchmarks.md, as printed.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import numpy as np


def _model(name: str):
    from napari_pinned.nn.network import ModelBundle, build_model
    from napari_pinned.settings import ModelConfig

    if name != "fresh":
        return name  # a shipped model's name or a model file
    config = ModelConfig()
    return ModelBundle(model=build_model(config).eval(), config=config, metadata={})


def measure(
    image: np.ndarray, model, tile: int, orientations: int, device: str, seconds: float = 0.0
) -> dict:
    """Gaps (s) between consecutive records of one job, the start counting as one; the job
    is stopped (closed, as a cancel does) after ``seconds`` when that is not 0."""
    from napari_pinned.denoising.denoiser import iter_denoise
    from napari_pinned.settings import FrameOptions

    options = FrameOptions(tile=tile, orientations=orientations, device=device)
    job = iter_denoise(image, model, options)
    gaps = []
    start = last = time.perf_counter()
    for _ in job:
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
        if seconds and now - start > seconds:
            job.close()
            break
    return {
        "max": max(gaps),
        "median": statistics.median(gaps),
        "records": len(gaps),
        "total": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--orientations", type=int, nargs="+", default=[8])
    parser.add_argument("--tile", type=int, nargs="+", default=[256])
    parser.add_argument("--model", default="default", help="'default', 'fresh' or a model file")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--seconds", type=float, default=0.0, help="stop each job after this long (0: never)"
    )
    parser.add_argument("--write-docs", action="store_true", help="into docs/benchmarks.md")
    args = parser.parse_args()

    import torch

    from napari_pinned.denoising.denoiser import denoise

    model = _model(args.model)
    rng = np.random.default_rng(0)
    # A lattice in Poisson noise: the noise estimate and the lattice guard do real work.
    y, x = np.mgrid[0 : args.size, 0 : args.size]
    lattice = 2.0 + np.cos(2 * np.pi * x / 9.0) + np.cos(2 * np.pi * (x + y) / 7.0)
    image = rng.poisson(lattice * 15.0).astype(np.float32)
    denoise(image[:64, :64], model, device=args.device)  # warm-up: load the model once
    lines = [
        f"`python benchmarks/cancel_latency.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        f"({platform.machine()}, {torch.get_num_threads()} torch threads, torch "
        f"{torch.__version__}, model {args.model}, {args.size}² px; {time.strftime('%Y-%m-%d')}).",
        "",
        "| tile | orientations | longest wait (s) | median gap (s) | records | run (s) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for line in lines:
        print(line, flush=True)
    for tile in args.tile:
        for count in args.orientations:
            r = measure(image, model, tile, count, args.device, args.seconds)
            lines.append(
                f"| {tile} | {count} | {r['max']:.2f} | {r['median']:.3f} | {r['records']} "
                f"| {r['total']:.1f} |"
            )
            print(lines[-1], flush=True)
    if args.write_docs:
        from _docs_block import write_docs_block

        write_docs_block(lines, "cancel-latency")


if __name__ == "__main__":
    main()
