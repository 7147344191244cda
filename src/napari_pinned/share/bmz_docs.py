"""The documentation (``README.md``) and citation of an exported BioImage Model Zoo
package: what the model is, what it takes and gives, the processing inside it, its
training data, how it was validated, its limits and the paper to cite."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_pinned._version import __version__
from napari_pinned.share.bmz_test_run import TEST_PIXEL_SIZE

if TYPE_CHECKING:
    from napari_pinned.nn.network import ModelBundle
    from napari_pinned.settings import ModelConfig
    from napari_pinned.share.bmz_test_run import TestRun

__all__ = ["PAPER", "PAPER_URL", "default_description", "documentation"]

#: The paper, cited by every exported package.
PAPER = (
    'Awan, Shabeer, Saleem, Mehmood and Qadeer, "Physics Informed Neural Network Enhanced '
    'Denoising for Atomic Resolution STEM Imaging" (PINNED)'
)
#: Where to find the paper: a Crossref search for its title (no DOI is recorded here).
PAPER_URL = (
    "https://search.crossref.org/?q=Physics+Informed+Neural+Network+Enhanced+Denoising"
    "+for+Atomic+Resolution+STEM+Imaging"
)


def default_description(label: str, config: ModelConfig) -> str:
    """The package's one-paragraph description when none is given."""
    return (
        f"Denoises atomic-resolution STEM images ({label}); raw frames in, denoised "
        "frames out, with napari-pinned's frame normalisation"
        + (" and noise map" if config.conditioned else "")
        + " inside the model."
    )


def _fmt(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "—"


def _processing_steps(config: ModelConfig, strength: float, keep_lattice: bool) -> list[str]:
    """The numbered steps the package's model takes per frame."""
    conditioned = config.conditioned
    steps = [
        "1. **Hot, dead and saturated pixel repair**: pixels far outside their eight "
        "neighbours' range (beyond 10 noise standard deviations and their neighbours' own "
        "lift), and pixels far above the frame's range or at its ceiling in pairs, "
        "clusters, columns or on the edge (tested against the nearest ring of ordinary "
        "pixels), are filled from their neighbours' median, blocks from the edge inwards.",
        "2. **Normalisation** to model units, once per frame: "
        + {
            "range": "the paper's 0–255 (or 0–1) for frames clipped at both of its ends, "
            "otherwise the 0.1st–99.9th percentiles of the frame's 3×3 median"
            + ("" if conditioned else ", with the input clipped to [−0.1, 1.1]"),
            "robust": "the 1st–99th percentiles of the frame's 3×3 median map to 0 and 1",
            "percentile": "the raw 0.5th–99.5th percentiles map to 0 and 1",
        }[config.normalization]
        + ".",
    ]
    if conditioned:
        steps.append(
            "3. **Noise map**: a Poisson–Gaussian noise model σ²(I) = g·I + c fitted to the "
            "frame (Immerkær's residual, Foi et al. 2008) gives each pixel's noise σ from "
            f"its local mean; the network gets it as a second channel (times {strength:g}, "
            "the denoising strength) and returns x + σ·f(x, σ, log σ)."
        )
    steps.append(
        f"{len(steps) + 1}. The frame is mirrored outwards by 32 px (rounded to a "
        f"multiple of {config.alignment}), run through the network whole, cropped, and mapped "
        "back to the frame's intensities."
    )
    if keep_lattice:
        steps.append(
            f"{len(steps) + 1}. **Lattice guard**: where the input's power spectrum "
            "stands ten times above its local floor (a Bragg reflection noise cannot make), "
            "the part of the residual input − output above the residual's own floor is "
            "given back (Wiener-weighted), so a sublattice the network weakened is kept."
        )
    return steps


def _training_section(meta: dict[str, Any]) -> list[str]:
    return [
        "## Training data",
        "",
        str(meta.get("training_data") or "not recorded in the model file"),
        "",
        f"Noise: {meta.get('noise', '—')}"
        + (f", CDN levels {meta['noise_levels']}" if meta.get("noise_levels") else "")
        + f"; {meta.get('steps', '—')} steps of {meta.get('batch_size', '—')} patches of "
        f"{meta.get('patch_size', '—')}² px, learning rate {meta.get('learning_rate', '—')}, "
        f"seed {meta.get('seed', '—')}"
        + (f" (`{meta['script']}`)" if meta.get("script") else "")
        + ".",
        "",
    ]


def _validation_section(meta: dict[str, Any], test: TestRun) -> list[str]:
    quality = test.quality
    return [
        "## Validation",
        "",
        f"- during training: PSNR {_fmt(meta.get('val_psnr'))} dB, SSIM "
        f"{_fmt(meta.get('val_ssim'), 3)} on held-out validation crops (best step "
        f"{meta.get('best_step', '—')}).",
        f"- the test image of this package: simulated BaTiO3 (held out from the shipped "
        f"models' training), {quality['size']}² px at {TEST_PIXEL_SIZE} Å/px, "
        f"{test.noise_text}: PSNR {_fmt(quality['noisy_psnr'])} dB noisy → "
        f"**{_fmt(quality['denoised_psnr'])} dB** denoised (SSIM "
        f"{_fmt(quality['noisy_ssim'], 3)} → {_fmt(quality['denoised_ssim'], 3)}) against the "
        "clean simulation.",
        f"- this package's output equals napari-pinned's `denoise` on that image to "
        f"{quality['agreement']:.1e} of its range (checked when it was written).",
        "",
        "To validate on your own data: denoise a frame series' single frames and compare "
        "with the drift-corrected mean of the series (`napari-pinned align`), or compare "
        "column positions found before and after (see napari-pinned's docs/metrics.md).",
        "",
    ]


def documentation(
    bundle: ModelBundle,
    test: TestRun,
    *,
    name: str,
    pixel: str,
    min_size: int,
    step: int,
    strength: float,
    keep_lattice: bool,
) -> str:
    """The package's ``README.md`` (Markdown)."""
    cfg = bundle.config
    lines = [
        f"# {name}",
        "",
        "Denoises atomic-resolution (HAADF-)STEM images. A PINNED network (" + PAPER + ") "
        f"exported by napari-pinned {__version__}: a U-Net-style encoder–decoder of "
        f"three-convolution blocks, width {cfg.width}, depth {cfg.depth}"
        + (", noise-conditioned" if cfg.conditioned else "")
        + ".",
        "",
        "## Input and output",
        "",
        "- input `raw`: one or more raw 2D single-channel frames `(batch, y, x)`, float32, "
        "in any intensity scale (detector counts, 8-bit, normalised). Height and width "
        f"at least {min_size} px and a multiple of {step} beyond that (the network pools "
        f"{cfg.depth} times); napari-pinned itself accepts any size.",
        f"- pixel size: {pixel}",
        "- output `denoised`: the denoised frames, same shape, in the input's intensities.",
        "",
        "## Pre- and post-processing (inside the model)",
        "",
        "The processing is part of the model (`napari_pinned_denoiser.py`, plain torch), "
        "because it uses statistics of the whole frame that the BioImage Model Zoo "
        "processing steps cannot express (`scale_range` takes plain percentiles, "
        "`zero_mean_unit_variance` moments, and neither gives a noise map). The package "
        "therefore declares no processing steps. Per frame:",
        "",
        *_processing_steps(cfg, strength, keep_lattice),
        "",
        "**Run each frame whole.** A consumer that cuts a frame into tiles computes these "
        "statistics per tile: the result is still a denoised image, but no longer exactly "
        "napari-pinned's. napari-pinned (`denoise(image, model='this.zip')`) reads this "
        "package back into its own tiled pipeline with the frame's statistics.",
        "",
        *_training_section(bundle.metadata),
        *_validation_section(bundle.metadata, test),
        "## Limitations",
        "",
        "Trained on simulated images (see training data); at very low dose it may invent "
        "lattice where there is none. Check results against the raw data.",
        "",
        "## Citation",
        "",
        PAPER + ".",
        "",
    ]
    return "\n".join(lines)
