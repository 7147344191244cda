"""The model of an exported BioImage Model Zoo package, and its test run.

The package's model is :class:`napari_pinned.share.bmz_denoiser.PinnedDenoiser` with a
napari-pinned model's weights (:func:`package_model`).  Before a package is written it
runs on a simulated BaTiO3 image the shipped models never saw (:func:`run_test`): its
output must equal :func:`napari_pinned.denoising.denoiser.denoise` to 1e-3 of the range,
and its PSNR/SSIM against the clean simulation go into the package's documentation.
The noisy image and the output become the package's test and sample tensors and its
cover (:func:`cover`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_pinned.quality.lattice_guard import guard_applies

if TYPE_CHECKING:
    from napari_pinned.nn.network import ModelBundle

__all__ = [
    "TEST_IMAGE_SIZE",
    "TEST_PIXEL_SIZE",
    "TestRun",
    "architecture_kwargs",
    "cover",
    "package_model",
    "run_test",
]

#: Edge (px) and pixel size (Å) of the synthetic test image of exported packages.
TEST_IMAGE_SIZE = 256
TEST_PIXEL_SIZE = 0.1


def architecture_kwargs(bundle: ModelBundle, strength: float, keep_lattice: bool) -> dict:
    """The ``PinnedDenoiser`` arguments of a package of ``bundle`` (the RDF's
    architecture kwargs): its configuration, strength and lattice guard, which for a
    model trained on CDN leaves CDN-like (clipped) frames alone, as ``denoise`` does."""
    return {
        **bundle.config.to_dict(),
        "strength": strength,
        "keep_lattice": bool(keep_lattice),
        "guard_clipped": guard_applies(bundle.metadata.get("noise")),
    }


def package_model(bundle: ModelBundle, strength: float, keep_lattice: bool = True) -> Any:
    """The package's model (a ``PinnedDenoiser``) with the weights of ``bundle``, in
    evaluation mode, its strength and lattice guard fixed."""
    from napari_pinned.nn.model_files import cpu_state
    from napari_pinned.share.bmz_denoiser import PinnedDenoiser

    wrapper = PinnedDenoiser(**architecture_kwargs(bundle, strength, keep_lattice))
    wrapper.network.load_state_dict(cpu_state(bundle))
    return wrapper.eval()


def test_images(bundle: ModelBundle, size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """A bundled material the models never saw (BaTiO3), clean and noisy, and the noise."""
    from napari_pinned.noise.synthesis import add_cdn_noise, add_dose_noise
    from napari_pinned.physics.simulate import simulate

    clean = simulate("BaTiO3", shape=size, pixel_size=TEST_PIXEL_SIZE, seed=0).image
    noise = str(bundle.metadata.get("noise") or "")
    if noise in ("cdn", "mix") or (not bundle.config.conditioned and noise != "dose"):
        return clean, add_cdn_noise(clean, 3, seed=0).astype(np.float32), "CDN level 3"
    # 20 detected electrons per pixel at the brightest column, 0.5 e⁻ read noise.
    dose = 20.0 / TEST_PIXEL_SIZE**2
    noisy = add_dose_noise(clean, dose, pixel_size=TEST_PIXEL_SIZE, read_noise=0.5, seed=0)
    return clean, noisy.astype(np.float32), "shot noise at 20 e⁻/px (brightest), 0.5 e⁻ read noise"


@dataclass(frozen=True)
class TestRun:
    """The package's model, its test and sample tensors, and what they measure."""

    __test__ = False  # not a pytest test class

    noisy: np.ndarray
    test_input: np.ndarray
    test_output: np.ndarray
    noise_text: str
    quality: dict[str, Any]
    wrapper: Any


def run_test(bundle: ModelBundle, strength: float, keep_lattice: bool) -> TestRun:
    """Run the package's model on the test image; check it against ``denoise``.

    Raises
    ------
    RuntimeError
        If the package's model differs from ``denoise`` by more than 1e-3 of the range
        (a bug in ``bmz_denoiser.py``).
    """
    import torch

    from napari_pinned.denoising.denoiser import denoise
    from napari_pinned.quality.metrics import compute_metrics

    wrapper = package_model(bundle, strength, keep_lattice)
    clean, noisy, noise_text = test_images(bundle, TEST_IMAGE_SIZE)
    test_input = noisy[None].astype(np.float32)
    with torch.inference_mode():
        test_output = wrapper(torch.from_numpy(test_input)).numpy()
    reference = denoise(noisy, bundle, device="cpu", strength=strength, keep_lattice=keep_lattice)
    span = float(np.ptp(reference)) or 1.0
    agreement = float(np.max(np.abs(test_output[0] - reference))) / span
    if agreement > 1e-3:
        raise RuntimeError(
            f"the package's model differs from napari-pinned's denoise by {agreement:.2e} of "
            "the range on the test image (more than 1e-3): a bug in bmz_denoiser.py"
        )
    noisy_m = compute_metrics(noisy, clean)
    denoised_m = compute_metrics(test_output[0], clean)
    quality = {
        "size": TEST_IMAGE_SIZE,
        "noisy_psnr": noisy_m.psnr,
        "noisy_ssim": noisy_m.ssim,
        "denoised_psnr": denoised_m.psnr,
        "denoised_ssim": denoised_m.ssim,
        "agreement": agreement,
    }
    return TestRun(noisy, test_input, test_output, noise_text, quality, wrapper)


def cover(noisy: np.ndarray, denoised: np.ndarray) -> np.ndarray:
    """Noisy | denoised side by side (2:1), each stretched to its 0.5–99.5 percentiles."""

    def grey(x: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(x, (0.5, 99.5))
        return (np.clip((x - lo) / max(hi - lo, 1e-12), 0, 1) * 255).astype(np.uint8)

    return np.concatenate([grey(noisy), grey(denoised)], axis=1)
