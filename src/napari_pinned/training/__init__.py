"""Training PINNED models: training data (:mod:`.data`), the training run (:mod:`.run`)
and adaptation to one noisy image without a clean one (:mod:`.adapt`).

:func:`train` and the run's records are importable from here; torch loads on first use.
"""

from __future__ import annotations

from napari_pinned._util.lazy import lazy_attributes

_NAMES = {
    "TrainConfig": "napari_pinned.settings",
    "TrainProgress": "napari_pinned.training.run",
    "TrainingRun": "napari_pinned.training.run",
    "train": "napari_pinned.training.run",
}

__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_attributes(__name__, _NAMES)
