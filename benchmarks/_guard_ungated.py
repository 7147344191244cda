"""The lattice guard as shipped before issue 22 §2, for ``benchmarks/lattice_guard.py``.

It gave back what the network took at the input's strong reflections over the whole
frame, as plane waves, and so painted stripes into the vacuum beside a crystal.  Today's
guard (:mod:`napari_pinned.quality.lattice_guard`) multiplies that restoration by a gate
that is open only where the input shows those reflections; this is the same guard with
the gate held open.
"""

from __future__ import annotations

from unittest import mock

import numpy as np

from napari_pinned.quality import lattice_guard as shipped


def _open_gate(spectrum, power, strong, floor, shape) -> np.ndarray:
    return np.ones(shape, np.float32)


def keep_lattice(source: np.ndarray, output: np.ndarray) -> np.ndarray:
    """:func:`napari_pinned.quality.lattice_guard.keep_lattice` without its gate."""
    with mock.patch.object(shipped, "_gate", _open_gate):
        return shipped.keep_lattice(source, output)
