"""Big data and many machines: tiling overhead and exactness, flat stack memory, workers.

Prints Markdown tables (paste them into docs/scale.md with the machine they ran on):

1. **tiling** — for each tile size, how many network windows a frame takes and the
   share of the network's work spent on halos, for the model's exact halo; with
   ``--timing`` also the measured Mpx/s of one 2048² frame per tile size.
2. **exact** — the largest difference between tiled and whole-image results (fraction
   of the output range) for tiles 64, 96 and 200 on a 512² image.
3. **memory** — peak RSS of ``napari-pinned denoise in.zarr -o out.zarr`` (one
   process) for a short and a long 1024² stack: it must not grow with the length.
4. **workers** — throughput of 1 and 2 local worker processes (``LocalCluster``,
   one thread each) on a batch of files and on one zarr stack, and each worker's peak
   RSS.  Cluster start-up is excluded (it is timed separately).

    python benchmarks/scale.py                          # everything, the shipped default
    python benchmarks/scale.py --quick                  # small sizes: a smoke run
    python benchmarks/scale.py --model unet:8:4c        # random width-8 depth-4 conditioned
    python benchmarks/scale.py --only memory workers    # some sections

Each measurement that reads a peak RSS runs in a fresh process.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SECTIONS = ("tiling", "exact", "memory", "workers")


def _bundle(model: str):
    """A shipped model, a file, or ``unet:WIDTH:DEPTH[c]`` (random weights; ``c``:
    noise-conditioned, robust normalisation, like the default model)."""
    import torch

    from napari_pinned.nn.network import ModelBundle, build_model
    from napari_pinned.nn.resolve import load_model
    from napari_pinned.settings import ModelConfig

    if not model.startswith("unet:"):
        return load_model(model)
    _, width, depth = model.split(":")
    conditioned = depth.endswith("c")
    config = ModelConfig.preset(
        "unet",
        width=int(width),
        depth=int(depth.rstrip("c")),
        **({"normalization": "robust", "conditioning": "noise-map"} if conditioned else {}),
    )
    torch.manual_seed(0)
    net = build_model(config).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return ModelBundle(net, config, {"name": model})


def _model_file(model: str, folder: Path) -> str:
    """A path or shipped name the CLI can load for ``model``."""
    if not model.startswith("unet:"):
        return model
    from napari_pinned.nn.model_files import save_model

    return str(save_model(_bundle(model), folder / "model.pt"))


def _counts(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[-2], 0 : shape[-1]]
    lattice = 2.0 + np.cos(2 * np.pi * x / 9.0) * np.cos(2 * np.pi * y / 7.0)
    return rng.poisson(lattice * 10.0, shape).astype(np.uint16)


# -- 1. tiling overhead -------------------------------------------------------------------


def tiling(model: str, timing: bool, quick: bool) -> None:
    from napari_pinned.denoising.denoiser import denoise
    from napari_pinned.denoising.tiling import axis_windows, frame_padding, minimum_overlap

    bundle = _bundle(model)
    config = bundle.config
    halo = minimum_overlap(config)
    print(
        f"\n### Tiling overhead (depth {config.depth}: halo {halo} px per side)\n\n"
        "| frame | tile | windows | window edge | halo share of the work |"
        + (" Mpx/s |" if timing else "")
    )
    print("|---|---|---|---|---|" + ("---|" if timing else ""))
    frames = [1024, 2048] if quick else [1024, 2048, 4096]
    tiles = [256, 512, 1024, 2048] if not quick else [512, 2048]
    for edge in frames:
        before, after = frame_padding(edge, config.alignment)
        length = edge + before + after
        for tile in tiles:
            size, starts, _ = axis_windows(
                0, length, length, (before, before + edge), tile, halo, config.alignment
            )
            work = (len(starts) * size) ** 2
            share = 1 - edge * edge / work
            cells = f"| {edge}² | {tile} | {len(starts) ** 2} | {size} | {share:.0%} |"
            if timing and edge == 2048:
                image = _counts((edge, edge))
                denoise(image[:256, :256], bundle, device="cpu")
                t0 = time.perf_counter()
                denoise(image, bundle, tile=tile, device="cpu")
                cells += f" {edge * edge / (time.perf_counter() - t0) / 1e6:.2f} |"
            elif timing:
                cells += " |"
            print(cells, flush=True)


# -- 2. exactness ----------------------------------------------------------------------------


def exact(model: str, quick: bool) -> None:
    from napari_pinned.denoising.denoiser import denoise

    bundle = _bundle(model)
    image = _counts((256, 256) if quick else (512, 512))
    whole = denoise(image, bundle, tile=4096, device="cpu")
    span = float(np.ptp(whole))
    print("\n### Tiled vs whole image (default overlap)\n")
    print("| image | tile | max difference / output range |")
    print("|---|---|---|")
    for tile in (64, 96, 200):
        tiled = denoise(image, bundle, tile=tile, device="cpu")
        print(f"| {image.shape[0]}² | {tile} | {np.abs(tiled - whole).max() / span:.1e} |")


# -- 3. flat memory -------------------------------------------------------------------------


def _write_zarr(path: Path, frames: int, edge: int) -> None:
    import zarr

    store = zarr.create_array(
        str(path), shape=(frames, edge, edge), chunks=(1, edge, edge), dtype="u2"
    )
    for f in range(frames):
        store[f] = _counts((edge, edge), seed=f)


def _cli_peak(argv: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one CLI run in a fresh process."""
    code = (
        "import resource, sys, time\n"
        "from napari_pinned.cli import main\n"
        "t = time.perf_counter()\n"
        f"status = main({argv!r})\n"
        "dt = time.perf_counter() - t\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(f'RESULT {status} {dt} {peak}')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    _, status, dt, peak = line.split()
    assert status == "0", out
    return float(dt), float(peak)


def memory(model: str, quick: bool) -> None:
    edge = 512 if quick else 1024
    counts = (4, 12) if quick else (20, 120)
    print(f"\n### Peak memory of one process, {edge}² frames, zarr → zarr\n")
    print("| frames | time | Mpx/s | peak RSS |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        name = _model_file(model, folder)
        for frames in counts:
            source = folder / f"in{frames}.zarr"
            _write_zarr(source, frames, edge)
            argv = ["denoise", str(source), "-o", str(folder / f"out{frames}.zarr")]
            seconds, peak = _cli_peak([*argv, "--model", name, "--device", "cpu"])
            mpx = frames * edge * edge / seconds / 1e6
            print(f"| {frames} | {seconds:.0f} s | {mpx:.2f} | {peak:.0f} MB |", flush=True)


# -- 4. worker processes ----------------------------------------------------------------------


def _worker_peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def workers(model: str, quick: bool) -> None:
    import logging

    from distributed import Client, LocalCluster

    from napari_pinned.denoising.files import (
        iter_denoise_file_on_cluster,
        iter_denoise_files_on_cluster,
    )
    from napari_pinned.denoising.model_spec import ModelSpec
    from napari_pinned.io.tiff import write_tiff

    edge = 512 if quick else 1024
    files, frames = (4, 2) if quick else (8, 2)
    stack_frames = 4 if quick else 16
    print(
        f"\n### Local worker processes (one thread each): {files} files of {frames} × {edge}², "
        f"and one {stack_frames} × {edge}² zarr stack\n"
    )
    print(
        "| workers | cluster start | batch | batch Mpx/s | stack | stack Mpx/s "
        "| peak RSS per worker |"
    )
    print("|---|---|---|---|---|---|---|")
    spec = ModelSpec.of(_bundle(model))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sources = [
            write_tiff(folder / f"f{i}.tif", _counts((frames, edge, edge), seed=i))
            for i in range(files)
        ]
        stack = folder / "stack.zarr"
        _write_zarr(stack, stack_frames, edge)
        base = None
        for count in (1, 2):
            t0 = time.perf_counter()
            with (
                LocalCluster(
                    n_workers=count,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                ) as cluster,
                Client(cluster) as client,
            ):
                start = time.perf_counter() - t0
                # Warm up: every worker builds the model once (as in a long run).
                warm = [(sources[0], folder / f"warm{count}_{i}.zarr") for i in range(count)]
                list(iter_denoise_files_on_cluster(warm, spec, client))
                out = folder / f"out{count}"
                out.mkdir()
                pairs = [(s, out / f"{s.stem}.tif") for s in sources]
                t0 = time.perf_counter()
                for _src, _dst, error in iter_denoise_files_on_cluster(pairs, spec, client):
                    assert error is None, error
                batch = time.perf_counter() - t0
                t0 = time.perf_counter()
                for _ in iter_denoise_file_on_cluster(
                    stack, folder / f"stack{count}.zarr", spec, client
                ):
                    pass
                whole = time.perf_counter() - t0
                peaks = client.run(_worker_peak)
            batch_mpx = files * frames * edge * edge / batch / 1e6
            stack_mpx = stack_frames * edge * edge / whole / 1e6
            base = base or (batch_mpx, stack_mpx)
            ratio = f" (×{batch_mpx / base[0]:.2f})" if count > 1 else ""
            ratio_s = f" (×{stack_mpx / base[1]:.2f})" if count > 1 else ""
            print(
                f"| {count} | {start:.1f} s | {batch:.0f} s | {batch_mpx:.2f}{ratio} | "
                f"{whole:.0f} s | {stack_mpx:.2f}{ratio_s} | "
                f"{', '.join(f'{v:.0f} MB' for v in peaks.values())} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="shipped name, file or unet:W:D[c]")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--timing", action="store_true", help="time each tile size at 2048²")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args()

    import torch

    print(
        f"# napari-pinned scale — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU threads, torch {torch.__version__} "
        f"({torch.get_num_threads()} intra-op threads); model {args.model}"
    )
    if "tiling" in args.only:
        tiling(args.model, args.timing, args.quick)
    if "exact" in args.only:
        exact(args.model, args.quick)
    if "memory" in args.only:
        memory(args.model, args.quick)
    if "workers" in args.only:
        workers(args.model, args.quick)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
