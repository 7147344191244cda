"""What a simulation uses unless told otherwise, in one light module (no numpy).

The probes of :mod:`~napari_pinned.physics.probe` take these as their dataclass defaults
(``AberratedProbe()`` is 200 kV, 22 mrad, no aberrations, a 0.3 Å source;
``GaussianProbe()`` 0.8 Å), :func:`~napari_pinned.physics.simulate.simulate` the image
and specimen ones; the command line shows them in ``--help`` and the Generate dock starts
from them, without importing the physics.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_CONVERGENCE_MRAD",
    "DEFAULT_CS_MM",
    "DEFAULT_DEFOCUS",
    "DEFAULT_GAUSSIAN_FWHM",
    "DEFAULT_MATERIAL",
    "DEFAULT_PIXEL_SIZE",
    "DEFAULT_SIZE",
    "DEFAULT_SOURCE_SIZE",
    "DEFAULT_THICKNESS",
    "DEFAULT_VOLTAGE_KV",
    "MAX_CONVERGENCE_MRAD",
]

# -- the probe
#: FWHM (Å) of the Gaussian probe, the paper's "Gaussian filtering".
DEFAULT_GAUSSIAN_FWHM = 0.8
#: Accelerating voltage (kV) of the aberrated probe.
DEFAULT_VOLTAGE_KV = 200.0
#: Convergence semi-angle (mrad): an aberration-corrected probe.
DEFAULT_CONVERGENCE_MRAD = 22.0
#: Defocus (Å) and spherical aberration (mm): a corrected, focused microscope.
DEFAULT_DEFOCUS = 0.0
DEFAULT_CS_MM = 0.0
#: FWHM (Å) of the effective (incoherent) source.
DEFAULT_SOURCE_SIZE = 0.3
#: Convergence semi-angles must stay below this (mrad): the small-angle optics of the
#: aberrated probe do not hold beyond it.
MAX_CONVERGENCE_MRAD = 200.0

# -- the image and the specimen
#: Bundled material shown when none is named.
DEFAULT_MATERIAL = "SrTiO3"
#: Image edge in pixels.
DEFAULT_SIZE = 512
#: Å per pixel.
DEFAULT_PIXEL_SIZE = 0.1
#: Specimen thickness in Å.
DEFAULT_THICKNESS = 200.0
