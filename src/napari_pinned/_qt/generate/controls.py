"""The Generate dock's probe controls (magicgui widgets, not laid out).

A Gaussian probe of a given FWHM, or the physical one: accelerating voltage, convergence
semi-angle, defocus, spherical aberration and source size, with its FWHM read out.
The controls start at the probes' own defaults (the fields of ``GaussianProbe()`` and
``AberratedProbe()``); their limits are the dock's, within what the probes accept.
"""

from __future__ import annotations

from dataclasses import dataclass

from magicgui.widgets import ComboBox, FloatSpinBox, Label

from napari_pinned.physics.probe import AberratedProbe, GaussianProbe

__all__ = ["PROBE_GAUSSIAN", "PROBE_PHYSICAL", "ProbeControls", "probe_controls"]

PROBE_GAUSSIAN = "Gaussian"
PROBE_PHYSICAL = "Physical (aberrated)"


@dataclass(frozen=True)
class ProbeControls:
    """The probe's controls."""

    probe_kind: ComboBox
    fwhm: FloatSpinBox
    voltage: FloatSpinBox
    convergence: FloatSpinBox
    defocus: FloatSpinBox
    cs: FloatSpinBox
    source_size: FloatSpinBox
    fwhm_readout: Label


def probe_controls() -> ProbeControls:
    """New probe controls at the probes' defaults (the physical probe chosen)."""
    gaussian, physical = GaussianProbe(), AberratedProbe()
    probe_kind = ComboBox(
        label="Probe", choices=[PROBE_PHYSICAL, PROBE_GAUSSIAN], value=PROBE_PHYSICAL
    )
    fwhm = FloatSpinBox(label="FWHM (Å)", value=gaussian.fwhm, min=0.05, max=10.0, step=0.05)
    voltage = FloatSpinBox(
        label="Voltage (kV)", value=physical.voltage_kv, min=20.0, max=1000.0, step=10.0
    )
    convergence = FloatSpinBox(
        label="Convergence (mrad)",
        value=physical.convergence_mrad,
        min=1.0,
        max=100.0,
        step=0.5,
    )
    defocus = FloatSpinBox(
        label="Defocus (Å)", value=physical.defocus, min=-2000.0, max=2000.0, step=5.0
    )
    cs = FloatSpinBox(label="Cs (mm)", value=physical.cs_mm, min=-10.0, max=10.0, step=0.001)
    # A point source (0) is the smallest the probe accepts.
    source_size = FloatSpinBox(
        label="Source size (Å)", value=physical.source_size, min=0.0, max=5.0, step=0.05
    )
    fwhm_readout = Label(label="Probe FWHM", value="")
    return ProbeControls(
        probe_kind, fwhm, voltage, convergence, defocus, cs, source_size, fwhm_readout
    )
