"""The shipped default model: it is installed, loads without running code, and denoises
a material it never saw far better than doing nothing."""

from __future__ import annotations

import numpy as np

from napari_pinned.inference import denoise
from napari_pinned.metrics import compute_metrics
from napari_pinned.model import count_parameters
from napari_pinned.model_files import default_model_path, load_model
from napari_pinned.noise import add_cdn_noise
from napari_pinned.simulate import simulate


def test_default_model_is_installed_and_small():
    path = default_model_path()
    assert path.is_file(), f"{path} is missing from the package"
    assert path.stat().st_size < 5 * 2**20
    bundle = load_model("default")
    assert bundle.metadata["name"] == "napari-pinned default"
    # Sized for ≥ 1 Mpx/s on two CPU cores (docs/benchmarks.md).
    assert count_parameters(bundle.model) < 300_000


def test_default_model_denoises_an_unseen_material():
    """BaTiO3 is held out of the default model's training data.  Its margins over the
    noisy input are several dB wider than the spread between noise draws (≈ 0.2 dB)."""
    clean = simulate("BaTiO3", shape=128, pixel_size=0.1, seed=21).image
    for level, margin in ((1, 10.0), (3, 8.0)):
        noisy = add_cdn_noise(clean, level, seed=level)
        before = compute_metrics(noisy, clean)
        after = compute_metrics(denoise(noisy, device="cpu"), clean)
        assert after.psnr > before.psnr + margin
        assert after.ssim > before.ssim
        assert np.isfinite(after.fsc) and after.fsc > before.fsc
