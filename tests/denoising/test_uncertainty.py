"""The per-pixel uncertainty of the output (``denoise_with_uncertainty``, issue 22 §4)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_pinned.denoising.denoiser import denoise, denoise_with_uncertainty, iter_denoise
from napari_pinned.denoising.uncertainty import (
    CALIBRATION,
    coverage,
    fit_weights,
    least_certain,
    uncertainty_summary,
    uncertainty_weights,
)
from napari_pinned.noise.synthesis import StemRecording, record_stem_image
from napari_pinned.physics.simulate import simulate
from napari_pinned.settings import ModelConfig

CPU = {"device": "cpu"}


@pytest.fixture(scope="module")
def tiny(tiny_conditioned):
    return tiny_conditioned(seed=3)


@pytest.fixture(scope="module")
def recording():
    """``(noisy, truth)``: SrTiO3 [001] at 0.1 Å/px, 96² px, 10 e⁻/px, read noise 0.5 e⁻."""
    clean = simulate("SrTiO3", (0, 0, 1), shape=96, pixel_size=0.1, seed=2).image
    rng = np.random.default_rng(7)
    noisy, truth = record_stem_image(clean, StemRecording(10.0, read_noise=0.5), rng)
    return noisy, truth


def test_the_map_is_finite_non_negative_and_leaves_the_output_alone(tiny, recording):
    noisy, _ = recording
    result = denoise_with_uncertainty(noisy, tiny, orientations=4, **CPU)
    assert result.uncertainty.shape == noisy.shape
    assert result.uncertainty.dtype == np.float32
    assert np.isfinite(result.uncertainty).all()
    assert (result.uncertainty >= 0).all()
    assert result.uncertainty.mean() > 0
    # Asking for the uncertainty does not change the output by a single bit.
    plain = denoise(noisy, tiny, orientations=4, **CPU)
    np.testing.assert_array_equal(result.output, plain)


def test_the_map_is_in_the_outputs_units(tiny, recording):
    noisy, _ = recording
    base = denoise_with_uncertainty(noisy, tiny, orientations=2, **CPU).uncertainty
    gained = denoise_with_uncertainty(noisy * 7.0, tiny, orientations=2, **CPU).uncertainty
    shifted = denoise_with_uncertainty(noisy + 300.0, tiny, orientations=2, **CPU).uncertainty
    np.testing.assert_allclose(gained, 7.0 * base, rtol=1e-3, atol=1e-3 * float(base.max()))
    np.testing.assert_allclose(shifted, base, rtol=1e-3, atol=1e-3 * float(base.max()))


def test_tiled_map_equals_the_whole_image_map(tiny, recording):
    noisy, _ = recording
    whole = denoise_with_uncertainty(noisy, tiny, orientations=2, **CPU)
    tiled = denoise_with_uncertainty(noisy, tiny, orientations=2, tile=32, **CPU)
    np.testing.assert_allclose(tiled.output, whole.output, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(tiled.uncertainty, whole.uncertainty, rtol=1e-4, atol=1e-5)


def test_stacks_get_one_map_per_frame(tiny, recording):
    noisy, _ = recording
    stack = np.stack([noisy, noisy[::-1].copy()])
    result = denoise_with_uncertainty(stack, tiny, orientations=1, **CPU)
    single = denoise_with_uncertainty(noisy, tiny, orientations=1, **CPU)
    assert result.uncertainty.shape == stack.shape
    np.testing.assert_allclose(result.uncertainty[0], single.uncertainty, rtol=1e-6)


def test_the_map_is_larger_where_the_noise_is(tiny):
    # Poisson counts: a bright half carries more noise (in counts) than a dim one.
    rng = np.random.default_rng(1)
    level = np.where(np.arange(64)[None, :] < 32, 4.0, 60.0) * np.ones((64, 1))
    noisy = rng.poisson(level).astype(np.float32)
    sigma = denoise_with_uncertainty(noisy, tiny, orientations=1, **CPU).uncertainty
    dim, bright = np.median(sigma[:, 4:28]), np.median(sigma[:, 36:60])
    # Poisson σ grows as √level: √15 ≈ 3.9 times; the smoothing of the map blurs the edge only.
    assert bright > 2.5 * dim


def test_a_higher_dose_is_relatively_more_certain(recording):
    clean = simulate("SrTiO3", (0, 0, 1), shape=96, pixel_size=0.1, seed=2).image
    relative = []
    for dose in (3.0, 100.0):
        rng = np.random.default_rng(int(dose))
        noisy, truth = record_stem_image(clean, StemRecording(dose, read_noise=0.5), rng)
        sigma = denoise_with_uncertainty(noisy, "default", orientations=2, **CPU).uncertainty
        relative.append(float(np.mean(sigma) / np.mean(truth)))
    # Poisson: relative noise falls as 1/√dose (√33 ≈ 5.8 over this range).
    assert relative[1] < relative[0] / 2.5


def test_an_untrained_model_is_less_certain_than_the_trained_one(recording):
    import torch

    from napari_pinned.nn.network import ModelBundle, build_model

    noisy, _ = recording
    trained = denoise_with_uncertainty(noisy, "default", orientations=8, **CPU).uncertainty
    # The default network's shape with its weights scrambled: a model that learned nothing,
    # whose turned copies disagree.
    from napari_pinned.nn.resolve import load_model

    default = load_model("default", device="cpu")
    torch.manual_seed(0)
    net = build_model(default.config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    scrambled = ModelBundle(net.eval(), default.config, {"name": "untrained"})
    untrained = denoise_with_uncertainty(noisy, scrambled, orientations=8, **CPU).uncertainty
    assert np.median(untrained) > 1.2 * np.median(trained)


def test_the_default_model_covers_95_percent_within_two_sigma():
    # A quick case of the calibration's kind (benchmarks/uncertainty.py): the shipped
    # default on a training material at 10 e⁻/px, 128² px.
    clean = simulate("GaN", shape=128, pixel_size=0.1, seed=11, background=0.05).image
    rng = np.random.default_rng(3)
    noisy, truth = record_stem_image(clean, StemRecording(10.0, read_noise=0.5), rng)
    result = denoise_with_uncertainty(noisy, "default", orientations=8, **CPU)
    share = coverage(result.output - truth, result.uncertainty)
    # Errors of neighbouring pixels are correlated (the network's and the probe's reach):
    # count one independent pixel per 4×4 block, n = 1024.  The calibrated band is
    # 90–98 %; allow 4 binomial standard deviations of a 95 % share beyond it.
    slack = 4.0 * math.sqrt(0.95 * 0.05 / (128 * 128 / 16))
    assert 0.90 - slack <= share <= 0.98 + slack
    # Not merely wide: within ±1σ a Gaussian error lies 68 % of the time (a map twice too
    # wide would hold about 95 % there).
    within = coverage(result.output - truth, result.uncertainty, k=1.0)
    assert abs(within - 0.68) <= 0.06 + 4.0 * math.sqrt(0.68 * 0.32 / (128 * 128 / 16))


def test_fit_weights_recovers_known_constants():
    rng = np.random.default_rng(4)
    n = 40000
    s2 = rng.gamma(1.0, 2.0, n)
    n2 = rng.gamma(2.0, 1.0, n)
    r2 = np.repeat([1.0, 4.0], n // 2)
    a, b, c = 0.6, 0.08, 0.05
    errors = rng.normal(0.0, np.sqrt(a * s2 + b * n2 + c * r2))
    fa, fb, fc = fit_weights([s2, n2, r2], errors**2)
    # Maximum likelihood on 40 000 pixels: a few per cent (Fisher information).
    assert fa == pytest.approx(a, rel=0.1)
    assert fb == pytest.approx(b, rel=0.1)
    assert fc == pytest.approx(c, rel=0.2)
    # A feature that is zero everywhere (one orientation: no spread) gets weight 0.
    only = rng.normal(0.0, np.sqrt(b * n2)) ** 2
    zero_a, only_b = fit_weights([np.zeros(n), n2], only)
    assert zero_a == 0.0 and only_b == pytest.approx(b, rel=0.05)


def test_the_calibration_is_the_benchmarks():
    import json
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "uncertainty.json"
    fitted = json.loads(path.read_text())["fitted"]
    for k, constants in CALIBRATION.items():
        for name, value in zip("abcd", constants, strict=True):
            assert value == pytest.approx(fitted[str(k)][name], rel=0.01, abs=1e-7)


def test_refusals(random_bundle, tiny, recording):
    noisy, _ = recording
    plain = random_bundle(ModelConfig.preset("tiny", normalization="robust"), 1)
    with pytest.raises(ValueError, match="noise-aware model"):
        denoise_with_uncertainty(noisy, plain, **CPU)
    with pytest.raises(ValueError, match="strength above 0"):
        denoise_with_uncertainty(noisy, tiny, strength=0.0, **CPU)
    with pytest.raises(ValueError, match="uncertainty has shape"):
        list(iter_denoise(noisy, tiny, uncertainty=np.empty((3, 3), np.float32)))
    with pytest.raises(ValueError, match="strength above 0"):
        uncertainty_weights(8, 0.0, True)


def test_the_summary_names_the_least_certain_pixels():
    sigma = np.ones((40, 40), np.float32)
    expected = np.ones((40, 40), np.float32)
    output = np.zeros((40, 40), np.float32)
    output[10:20, 10:20] = 100.0
    assert "no pixel" in uncertainty_summary(sigma, output, expected)
    sigma[10:20, 10:20] = 3.0  # the doubt sits on the bright block: 100 of 1600 px
    mask = least_certain(sigma, expected)
    assert mask.sum() == 100
    line = uncertainty_summary(sigma, output, expected)
    assert "least certain: 6 % of pixels, on bright columns" in line
    assert line.startswith("Uncertainty: median ±2σ = 2")
    # Doubt in the dark background is named so.
    sigma[:] = 1.0
    sigma[30:40, :] = 3.0
    assert "in the dark background" in uncertainty_summary(sigma, output, expected)
