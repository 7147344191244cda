"""Speed and memory of the core: simulation, CDN noise, training steps and inference.

Prints a Markdown table (paste it into docs/benchmarks.md with the machine it ran on).
Each measurement that needs a fresh peak-memory reading runs in its own subprocess.

    python benchmarks/speed.py                # the standard table
    python benchmarks/speed.py --quick        # smaller sizes, for a smoke run
    python benchmarks/speed.py --model m.pt   # time a specific model file
    python benchmarks/speed.py --model unet:8 --sizes 2048   # a fresh width-8 U-Net
    python benchmarks/speed.py --backend onnx --model default --threads 2   # torch vs ONNX Runtime
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
from _bench import best_of


def _fresh_config(model: str):
    """``"fresh"`` (the default ModelConfig) or ``"preset[:width[:depth]]"``, e.g. ``unet:8``."""
    from napari_pinned.settings import ModelConfig

    if model == "fresh":
        return ModelConfig()
    name, *sizes = model.split(":")
    overrides = dict(zip(("width", "depth"), (int(v) for v in sizes), strict=False))
    return ModelConfig.preset(name, **overrides)


def _load(model: str):
    from napari_pinned.nn.network import ModelBundle, build_model
    from napari_pinned.nn.resolve import load_model

    if model == "default" or model.endswith(".pt"):
        return load_model(model)
    config = _fresh_config(model)
    return ModelBundle(model=build_model(config).eval(), config=config, metadata={})


def measure_inference(
    size: int,
    frames: int,
    model: str,
    device: str,
    tile: int | None,
    backend: str = "torch",
    threads: int | None = None,
    optimization: str = "all",
    repeats: int = 1,
) -> dict:
    """Run in a subprocess: Mpx/s and peak RSS of denoising one image or stack.

    ``backend="onnx"`` runs the network in ONNX Runtime with ``threads`` intra-op
    threads and graph ``optimization``; torch gets the same thread count.  The result
    also holds the largest difference from torch's output, in units of its range.
    """
    import torch

    from napari_pinned.denoising.denoiser import denoise

    if threads is not None:
        torch.set_num_threads(threads)
    if backend == "onnx":
        from napari_pinned.nn.runners import set_onnx_options

        set_onnx_options(threads=threads, optimization=optimization)
    bundle = _load(model)
    rng = np.random.default_rng(0)
    shape = (size, size) if frames == 1 else (frames, size, size)
    image = rng.uniform(0, 255, shape).astype(np.float32)
    settings = {"device": device, "backend": backend}
    if tile is not None:
        settings["tile"] = tile
    # Warm-up (and, for onnx, the one-off export and session set-up).
    t0 = time.perf_counter()
    denoise(image[..., :64, :64] if frames == 1 else image[:1, :64, :64], bundle, **settings)
    setup = time.perf_counter() - t0
    out = {}
    cpu = []

    def run() -> None:
        c0 = time.process_time()
        out["y"] = denoise(image, bundle, **settings)
        cpu.append(time.process_time() - c0)

    seconds = best_of(run, repeats)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "seconds": seconds,
        "mpx_s": image.size / seconds / 1e6,
        "peak_rss_mb": peak_mb,
        "setup_s": setup,
        # CPU time of all this process's threads per megapixel: what a busy shared
        # machine cannot inflate the way it inflates wall time (spin-waits count).
        "cpu_s_per_mpx": min(cpu) / (image.size / 1e6),
    }
    if backend != "torch":
        reference = denoise(image, bundle, device=device, backend="torch")
        span = float(np.ptp(reference)) or 1.0
        result["max_diff"] = float(np.max(np.abs(out["y"] - reference))) / span
    return result


def measure_training(model: str, device: str, steps: int) -> dict:
    from napari_pinned.physics.simulate import simulate
    from napari_pinned.settings import TrainConfig
    from napari_pinned.training.run import train

    clean = [simulate(name, shape=256, seed=i).image for i, name in enumerate(["InN", "ZrO2"])]
    init = model if model == "default" or model.endswith(".pt") else None
    fresh = _fresh_config("fresh" if init else model)
    if init is not None:
        from napari_pinned.nn.resolve import load_model

        fresh = load_model(init).config
    config = TrainConfig(
        model=fresh,
        steps=steps + 2,
        validate_every=10_000,
        init_model=init,
        # A noise-aware model learns from realistic recordings (what its training uses).
        noise_model="stem" if fresh.conditioned else "cdn",
    )
    run = train(config, clean, seed=0, device=device)
    next(run), next(run)  # warm-up steps
    t0 = time.perf_counter()
    for _ in range(steps):
        next(run)
    seconds = time.perf_counter() - t0
    return {"steps_s": steps / seconds}


def _subprocess(kind: str, **kwargs) -> dict:
    code = (
        f"import json, sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); import speed; "
        f"print(json.dumps(speed.{kind}(**{kwargs!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--model",
        default="fresh",
        help="'fresh' (default ModelConfig, random weights), 'preset[:width[:depth]]' "
        "(e.g. unet:8, paper:16:3), 'default' or a model file (.pt)",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        help="inference sizes as EDGE or EDGExFRAMES (default 512 2048 4096 512x20)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--backend",
        choices=["torch", "onnx"],
        default="torch",
        help="onnx: only the inference rows, torch against ONNX Runtime (graph "
        "optimisation all/basic/none; --threads and 1 thread)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="intra-op threads for torch and onnx"
    )
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    parser.add_argument(
        "--tile", type=int, default=None, help="tile (default: the core's, frames ≤ 2048² whole)"
    )
    args = parser.parse_args()

    import torch

    from napari_pinned.nn.network import build_model, count_parameters
    from napari_pinned.noise.synthesis import add_cdn_noise
    from napari_pinned.physics.simulate import simulate

    config = _load(args.model).config
    print(
        f"# napari-pinned speed — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU threads, torch {torch.__version__} ({torch.get_num_threads()} "
        f"intra-op threads), device {args.device}\n"
        f"# model {args.model}: {config.architecture}, depth {config.depth}, width "
        f"{config.width}, {count_parameters(build_model(config)):,} parameters; "
        f"tile {args.tile or 'default'}\n"
    )
    if args.backend == "onnx":
        _compare_backends(args)
        return
    print("| measurement | speed | peak RSS |")
    print("|---|---|---|", flush=True)

    def row(name: str, speed: str, mem: str = "") -> None:
        print(f"| {name} | {speed} | {mem} |", flush=True)

    sim_size = 512 if args.quick else 1024
    t = best_of(lambda: simulate("SrTiO3", shape=sim_size, seed=0), 3)
    row(f"simulate SrTiO3 {sim_size}²", f"{t * 1000:.0f} ms")
    noise_size = 512 if args.quick else 2048
    img = simulate("SrTiO3", shape=noise_size, seed=0).image
    t = best_of(lambda: add_cdn_noise(img, 5, seed=0), 3)
    row(f"CDN level 5, {noise_size}²", f"{t * 1000:.0f} ms")

    steps = 3 if args.quick else 20
    r = _subprocess("measure_training", model=args.model, device=args.device, steps=steps)
    row("training step, batch 8 × 64²", f"{r['steps_s']:.2f} steps/s")

    default_sizes = ["256", "512"] if args.quick else ["512", "2048", "4096", "512x20"]
    sizes = [
        (int(edge), int(frames[0]) if frames else 1)
        for edge, *frames in (spec.split("x") for spec in args.sizes or default_sizes)
    ]
    for size, frames in sizes:
        r = _subprocess(
            "measure_inference",
            size=size,
            frames=frames,
            model=args.model,
            device=args.device,
            tile=args.tile,
        )
        label = f"denoise {size}²" + (f" × {frames} frames" if frames > 1 else "")
        row(label, f"{r['mpx_s']:.2f} Mpx/s ({r['seconds']:.1f} s)", f"{r['peak_rss_mb']:.0f} MB")


def _compare_backends(args: argparse.Namespace) -> None:
    """Inference rows only: torch, then ONNX Runtime at each graph optimisation level
    and thread count, on the same images (onnxruntime's version in the header)."""
    import onnxruntime

    threads = args.threads or os.cpu_count() or 1
    print(f"# onnxruntime {onnxruntime.__version__}; {threads} threads unless stated\n")
    print(
        "| image | backend | graph optimisation | threads | speed (best wall) | CPU s / Mpx "
        "| set-up | max diff / range |"
    )
    print("|---|---|---|---|---|---|---|---|", flush=True)
    variants = [("torch", "—", threads)]
    variants += [("onnx", opt, threads) for opt in ("all", "basic", "none")]
    if threads > 1:
        variants.append(("onnx", "all", 1))
        variants.append(("torch", "—", 1))
    sizes = [int(s.split("x")[0]) for s in (args.sizes or ["512", "2048"])]
    for size in sizes:
        for backend, opt, count in variants:
            r = _subprocess(
                "measure_inference",
                size=size,
                frames=1,
                model=args.model,
                device=args.device,
                tile=args.tile,
                backend=backend,
                threads=count,
                optimization="all" if opt == "—" else opt,
                repeats=args.repeats,
            )
            diff = f"{r['max_diff']:.1e}" if "max_diff" in r else "—"
            print(
                f"| {size}² | {backend} | {opt} | {count} | {r['mpx_s']:.2f} Mpx/s "
                f"({r['seconds']:.2f} s) | {r['cpu_s_per_mpx']:.2f} | {r['setup_s']:.1f} s "
                f"| {diff} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
