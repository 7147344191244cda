"""Speed and memory of the core: simulation, CDN noise, training steps and inference.

Prints a Markdown table (paste it into docs/benchmarks.md with the machine it ran on).
Each measurement that needs a fresh peak-memory reading runs in its own subprocess.

    python benchmarks/speed.py                # the standard table
    python benchmarks/speed.py --quick        # smaller sizes, for a smoke run
    python benchmarks/speed.py --model m.pt   # time a specific model file
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


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _load(model: str):
    from napari_pinned.model import ModelBundle, ModelConfig, build_model, load_model

    if model == "fresh":
        config = ModelConfig()
        return ModelBundle(model=build_model(config).eval(), config=config, metadata={})
    return load_model(model)


def measure_inference(size: int, frames: int, model: str, device: str, tile: int) -> dict:
    """Run in a subprocess: Mpx/s and peak RSS of denoising one image or stack."""
    from napari_pinned.inference import denoise

    bundle = _load(model)
    rng = np.random.default_rng(0)
    shape = (size, size) if frames == 1 else (frames, size, size)
    image = rng.uniform(0, 255, shape).astype(np.float32)
    denoise(image[..., :64, :64] if frames == 1 else image[:1, :64, :64], bundle, device=device)
    seconds = _best_of(lambda: denoise(image, bundle, device=device, tile=tile), 1)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "mpx_s": image.size / seconds / 1e6, "peak_rss_mb": peak_mb}


def measure_training(model: str, device: str, steps: int) -> dict:
    from napari_pinned.model import ModelConfig
    from napari_pinned.simulate import simulate
    from napari_pinned.training import TrainConfig, train

    clean = [simulate(name, shape=256, seed=i).image for i, name in enumerate(["InN", "ZrO2"])]
    config = TrainConfig(model=ModelConfig(), steps=steps + 2, validate_every=10_000)
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
        help="'fresh' (default-size random model), 'default' or a model file",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile", type=int, default=512)
    args = parser.parse_args()

    import torch

    from napari_pinned.noise import add_cdn_noise
    from napari_pinned.simulate import simulate

    print(
        f"# napari-pinned speed — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU threads, torch {torch.__version__} ({torch.get_num_threads()} "
        f"intra-op threads), device {args.device}\n"
    )
    rows = []
    sim_size = 512 if args.quick else 1024
    t = _best_of(lambda: simulate("SrTiO3", shape=sim_size, seed=0), 3)
    rows.append((f"simulate SrTiO3 {sim_size}²", f"{t * 1000:.0f} ms", ""))
    noise_size = 512 if args.quick else 2048
    img = simulate("SrTiO3", shape=noise_size, seed=0).image
    t = _best_of(lambda: add_cdn_noise(img, 5, seed=0), 3)
    rows.append((f"CDN level 5, {noise_size}²", f"{t * 1000:.0f} ms", ""))

    steps = 3 if args.quick else 20
    r = _subprocess("measure_training", model=args.model, device=args.device, steps=steps)
    rows.append(("training, batch 8 × 64², default-size model", f"{r['steps_s']:.2f} steps/s", ""))

    sizes = [(256, 1), (512, 1)] if args.quick else [(512, 1), (2048, 1), (4096, 1), (512, 20)]
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
        rows.append(
            (label, f"{r['mpx_s']:.2f} Mpx/s ({r['seconds']:.1f} s)", f"{r['peak_rss_mb']:.0f} MB")
        )

    print("| measurement | speed | peak RSS |")
    print("|---|---|---|")
    for name, speed, mem in rows:
        print(f"| {name} | {speed} | {mem} |")


if __name__ == "__main__":
    main()
