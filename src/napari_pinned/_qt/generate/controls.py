"""The Generate dock's probe controls (magicgui widgets, not laid out).

A Gaussian probe of a given FWHM, or the physical one: accelerating voltage, convergence
semi-angle, defocus, spherical aberration and source size, with its FWHM read out.
"""

from __future__ import annotations

from dataclasses import dataclass

from magicgui.widgets import ComboBox, FloatSpinBox, Label

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
    """New probe controls at their defaults (the physical probe chosen)."""
    probe_kind = ComboBox(
        label="Probe", choices=[PROBE_PHYSICAL, PROBE_GAUSSIAN], value=PROBE_PHYSICAL
    )
    fwhm = FloatSpinBox(label="FWHM (Å)", value=0.8, min=0.05, max=10.0, step=0.05)
    voltage = FloatSpinBox(label="Voltage (kV)", value=200.0, min=20.0, max=1000.0, step=10.0)
    convergence = FloatSpinBox(label="Convergence (mrad)", value=22.0, min=1.0, max=100.0, step=0.5)
    defocus = FloatSpinBox(label="Defocus (Å)", value=0.0, min=-2000.0, max=2000.0, step=5.0)
    cs = FloatSpinBox(label="Cs (mm)", value=0.0, min=-10.0, max=10.0, step=0.001)
    source_size = FloatSpinBox(label="Source size (Å)", value=0.3, min=0.0, max=5.0, step=0.05)
    fwhm_readout = Label(label="Probe FWHM", value="")
    return ProbeControls(
        probe_kind, fwhm, voltage, convergence, defocus, cs, source_size, fwhm_readout
    )
