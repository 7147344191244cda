"""The Noise dock's controls of each noise model (magicgui widgets, not laid out).

The dose model: beam dose, pixel size, detector collection, read noise and the scan's
faults; CDN: the paper's level (Table 1) or its three components by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from magicgui.widgets import CheckBox, FloatSlider, FloatSpinBox

from napari_pinned.noise.synthesis import MAX_LEVEL

__all__ = ["CdnControls", "DoseControls", "cdn_controls", "dose_controls"]


@dataclass(frozen=True)
class DoseControls:
    """The dose model's controls."""

    dose: FloatSpinBox
    pixel_size: FloatSpinBox
    collection: FloatSpinBox
    read_noise: FloatSpinBox
    row_jitter: FloatSpinBox
    drift_y: FloatSpinBox
    drift_x: FloatSpinBox


@dataclass(frozen=True)
class CdnControls:
    """The CDN model's controls."""

    level: FloatSlider
    override: CheckBox
    gaussian_std: FloatSpinBox
    static_fraction: FloatSpinBox
    speckle_variance: FloatSpinBox


def dose_controls() -> DoseControls:
    """New controls of the dose model, at their defaults."""
    dose = FloatSpinBox(
        label="Dose (e⁻/Å²)",
        value=1000.0,
        min=0.01,
        max=1e8,
        step=100.0,
        tooltip="Beam dose per frame, in electrons per Å² of specimen; converted to "
        "detected electrons per pixel as dose · pixel size² · detector collection "
        "(the unit of the Train dock's detected dose, e⁻/px)",
    )
    pixel_size = FloatSpinBox(
        label="Pixel size (Å)",
        value=0.1,
        min=0.001,
        max=100.0,
        step=0.001,
        tooltip="Taken from the source layer's scale when it has one",
    )
    collection = FloatSpinBox(
        label="Detector collection",
        value=1.0,
        min=0.001,
        max=1.0,
        step=0.01,
        tooltip="Fraction of the beam the detector collects at the brightest pixel "
        "(a few per cent for an annular dark-field detector; 1: the dose is detected)",
    )
    read_noise = FloatSpinBox(
        label="Read noise (e⁻)",
        value=0.0,
        min=0.0,
        max=1000.0,
        step=0.1,
        tooltip="Standard deviation of the detector's Gaussian read noise",
    )
    row_jitter = FloatSpinBox(
        label="Line jitter (px)",
        value=0.0,
        min=0.0,
        max=20.0,
        step=0.05,
        tooltip="Standard deviation of each scan line's sideways displacement",
    )
    drift_y = FloatSpinBox(label="Drift y (px/frame)", value=0.0, min=-100.0, max=100.0, step=0.1)
    drift_x = FloatSpinBox(
        label="Drift x (px/frame)",
        value=0.0,
        min=-100.0,
        max=100.0,
        step=0.1,
        tooltip="Slow drift: a shear within a frame, a shift from frame to frame",
    )
    return DoseControls(dose, pixel_size, collection, read_noise, row_jitter, drift_y, drift_x)


def cdn_controls() -> CdnControls:
    """New controls of the CDN model (the components follow the level until overridden)."""
    level = FloatSlider(
        label="CDN level",
        value=1.0,
        min=0.0,
        max=float(MAX_LEVEL),
        step=0.1,
        tooltip="0: no noise; 1-5: Table 1 of the PINNED paper; in between: interpolated",
    )
    override = CheckBox(text="Override components", value=False)
    gaussian_std = FloatSpinBox(
        label="Gaussian std",
        min=0.0,
        max=255.0,
        step=0.5,
        tooltip="Standard deviation of the additive noise, in 8-bit units",
    )
    static_fraction = FloatSpinBox(
        label="Static fraction",
        min=0.0,
        max=1.0,
        step=0.01,
        tooltip="Fraction of pixels replaced by uniform random values",
    )
    speckle_variance = FloatSpinBox(
        label="Speckle variance",
        min=0.0,
        max=10.0,
        step=0.01,
        tooltip="Variance of the multiplicative speckle factor",
    )
    return CdnControls(level, override, gaussian_std, static_fraction, speckle_variance)
