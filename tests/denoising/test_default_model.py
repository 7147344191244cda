"""The shipped models: installed, loaded without running code, and good at their jobs on
a material they never saw (BaTiO3 is held out of both)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned.denoising.denoiser import denoise
from napari_pinned.nn.model_files import SHIPPED_MODELS
from napari_pinned.nn.network import count_parameters
from napari_pinned.nn.resolve import load_model
from napari_pinned.noise.synthesis import StemRecording, add_cdn_noise, record_stem_image
from napari_pinned.physics.simulate import simulate
from napari_pinned.quality.faithfulness import faithfulness
from napari_pinned.quality.metrics import compute_metrics, psnr


@pytest.mark.parametrize("model", SHIPPED_MODELS, ids=lambda m: m.name)
def test_shipped_models_are_installed_and_small(model):
    assert model.path.is_file(), f"{model.path} is missing from the package"
    assert model.path.stat().st_size < 5 * 2**20
    bundle = load_model(model.name)
    # Sized for ≥ 1 Mpx/s on two CPU cores (docs/benchmarks.md).
    assert count_parameters(bundle.model) < 600_000
    assert bundle.config.conditioned is (model.name == "default")


def test_the_default_model_is_better_than_the_input_at_every_dose():
    """Shot and read noise from 1 to 100 e⁻/px: the margins are several dB wider than
    the spread between noise draws (≈ 0.3 dB at 128² px)."""
    clean = simulate("BaTiO3", shape=128, pixel_size=0.1, seed=21).image
    rng = np.random.default_rng(5)
    for dose, margin in ((1.0, 4.0), (10.0, 3.0), (100.0, 1.0)):
        noisy, truth = record_stem_image(clean, StemRecording(dose, read_noise=0.5), rng)
        span = float(np.ptp(truth))
        out = denoise(noisy, device="cpu")
        assert psnr(out, truth, data_range=span) > psnr(noisy, truth, data_range=span) + margin


def test_the_default_model_leaves_clean_data_alone():
    clean = simulate("BaTiO3", shape=128, pixel_size=0.1, seed=22).image
    out = denoise(clean, device="cpu")
    # No measurable noise, so the correction (σ times the network) is tiny.
    assert psnr(out, clean, data_range=float(np.ptp(clean))) > 45
    assert faithfulness(clean, out).faithful


def test_the_cdn_model_denoises_cdn():
    clean = simulate("BaTiO3", shape=128, pixel_size=0.1, seed=21).image
    for level, margin in ((1, 10.0), (3, 8.0)):
        noisy = add_cdn_noise(clean, level, seed=level)
        before = compute_metrics(noisy, clean)
        after = compute_metrics(denoise(noisy, "cdn", device="cpu"), clean)
        assert after.psnr > before.psnr + margin
        assert after.ssim > before.ssim
        assert np.isfinite(after.fsc) and after.fsc > before.fsc
