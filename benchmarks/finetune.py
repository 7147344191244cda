"""What a short CPU training run achieves: train for a fixed wall-clock budget, then score
a material the model never saw at one CDN level against the noisy input and a median filter.

    python benchmarks/finetune.py                       # 5 minutes, fresh unet width 8, level 2
    python benchmarks/finetune.py --minutes 1 --model unet:16 --level 3
    python benchmarks/finetune.py --init default        # fine-tune the shipped model instead

Prints a Markdown table (paste it into docs/benchmarks.md with the machine it ran on).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from scipy.ndimage import median_filter

from napari_pinned.denoising.denoiser import denoise
from napari_pinned.nn.network import count_parameters
from napari_pinned.noise.synthesis import add_cdn_noise
from napari_pinned.physics.simulate import simulate
from napari_pinned.quality.metrics import compute_metrics
from napari_pinned.settings import ModelConfig, TrainConfig
from napari_pinned.training.run import train

#: Stand-ins for "a few user images": three simulated materials at 256² px.
TRAIN_MATERIALS = ("InN", "ZrO2", "graphene")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--model", default="unet:8", help="preset[:width[:depth]] for a new model")
    parser.add_argument("--init", help="fine-tune this model ('default' or a file) instead")
    parser.add_argument("--level", type=float, default=2.0, help="CDN level of the test image")
    parser.add_argument("--material", default="BaTiO3", help="held-out test material")
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    name, *sizes = args.model.split(":")
    model = ModelConfig.preset(name, **dict(zip(("width", "depth"), map(int, sizes), strict=False)))
    clean = [
        simulate(m, shape=256, pixel_size=0.1, seed=i).image for i, m in enumerate(TRAIN_MATERIALS)
    ]
    config = TrainConfig(
        model=model,
        steps=1_000_000,  # the wall-clock budget ends the run
        learning_rate=args.lr,
        validate_every=50,
        init_model=args.init,
    )
    run = train(config, clean, seed=0, device="cpu")
    budget = args.minutes * 60
    start = time.perf_counter()
    for _ in run:
        if time.perf_counter() - start > budget:
            run.stop()
    elapsed = time.perf_counter() - start
    bundle = run.result()

    reference = simulate(args.material, shape=512, pixel_size=0.1, seed=99).image
    noisy = add_cdn_noise(reference, args.level, seed=1)
    rows = {
        "noisy input": compute_metrics(noisy, reference),
        "median 3×3": compute_metrics(median_filter(noisy, 3), reference),
        "flat image at the clean mean": compute_metrics(
            np.full_like(reference, reference.mean()), reference
        ),
        "PINNED after the run": compute_metrics(denoise(noisy, bundle, device="cpu"), reference),
    }
    source = args.init or f"new {args.model}"
    n_params = count_parameters(bundle.model)
    print(
        f"# {source} ({n_params:,} parameters), trained {elapsed / 60:.1f} min"
        f" = {run.step} steps ({run.step / elapsed:.2f} steps/s) on {', '.join(TRAIN_MATERIALS)}"
        f" 256² with CDN 1–5; {os.cpu_count()} CPU threads, torch {torch.__version__}\n"
        f"# test: {args.material} 512², CDN level {args.level:g}, never seen in training\n"
    )
    print("| method | PSNR (dB) | SSIM | FSC | EPI |")
    print("|---|---|---|---|---|")
    for label, m in rows.items():
        print(f"| {label} | {m.psnr:.2f} | {m.ssim:.3f} | {m.fsc:.3f} | {m.epi:.3f} |")


if __name__ == "__main__":
    main()
