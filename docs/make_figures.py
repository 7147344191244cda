"""Render the README's figure: a clean simulated image and CDN levels 1–5.

    python docs/make_figures.py          # writes docs/images/cdn-levels.png

Needs matplotlib (in the `testing` extra).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from napari_pinned.noise.synthesis import add_cdn_noise, cdn_params
from napari_pinned.physics.simulate import simulate

OUT = Path(__file__).parent / "images"


def cdn_levels(material: str = "SrTiO3", zone=(0, 0, 1)) -> Path:
    """Clean image plus CDN levels 1–5, one panel each, same grey scale."""
    result = simulate(material, zone, shape=192, pixel_size=0.1, seed=0)
    panels = [("clean", result.image)]
    for level in range(1, 6):
        p = cdn_params(level)
        title = (
            f"level {level}: σ={p.gaussian_std:g}, "
            f"{p.static_fraction:.0%} static, var {p.speckle_variance:g}"
        )
        panels.append((title, add_cdn_noise(result.image, level, seed=level)))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.4))
    for ax, (title, image) in zip(axes, panels, strict=True):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{result.label()}, {result.pixel_size} Å/px — Composite Degradation Noise")
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "cdn-levels.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(cdn_levels())
