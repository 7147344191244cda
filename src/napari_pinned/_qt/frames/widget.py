"""Dock widget that registers a frame series and adds its drift-corrected mean.

Registration runs the core's
:func:`~napari_pinned.denoising.registration.register_frames` in a napari worker
(cancellable between frames) and adds ``"<stack> aligned"`` (the shifted frames, on the
stack's grid) and ``"<stack> drift-corrected mean"`` (the region every frame
covers, placed where it lies in the stack); the stack itself is never modified.  With
"Add even/odd halves" ticked it also adds ``"<stack> even mean"`` and ``"<stack> odd
mean"``, two independent noisy images of the same specimen for Noise2Noise training.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox
from napari.layers import Image
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_pinned._qt.shared.common import (
    ImageLayerChoices,
    add_or_update_image,
    image_layer_choices,
    is_greyscale,
    layer_pixel_size,
    notify_error,
    notify_warning,
)
from napari_pinned._qt.shared.docking import keep_docks_together
from napari_pinned._qt.shared.job_runner import JobRunner, Outcome
from napari_pinned.denoising.registration import REFERENCES

if TYPE_CHECKING:
    import napari

    from napari_pinned.denoising.registration import RegistrationProgress, RegistrationResult

__all__ = [
    "REFERENCE_LABELS",
    "FramesWidget",
    "aligned_name",
    "describe_drift",
    "half_name",
    "mean_name",
]

_DESCRIPTIONS = {
    "mean": "mean of the series (robust, most accurate)",
    "previous": "previous frame (chained)",
    "first": "first frame",
}
#: Reference combo label → ``reference`` of the core, in the core's order.
REFERENCE_LABELS = {_DESCRIPTIONS[key]: key for key in REFERENCES}
_NO_STACK = (
    "Frame series: choose an image stack (a 3D Image layer of frames); {extra}"
    "open the series as one stack, e.g. a multi-page TIFF"
)


def aligned_name(name: str) -> str:
    """Name of the aligned stack of layer ``name``."""
    return f"{name} aligned"


def mean_name(name: str) -> str:
    """Name of the drift-corrected mean of layer ``name``."""
    return f"{name} drift-corrected mean"


def half_name(name: str, half: str) -> str:
    """Name of the ``"even"`` or ``"odd"`` frame mean of layer ``name``."""
    return f"{name} {half} mean"


def _register_series(
    data: Any, reference: str
) -> Generator[RegistrationProgress, None, RegistrationResult | None]:
    """The worker's generator: one report per frame step; returns the result.

    The result travels by the worker's ``returned`` signal, which cannot be overtaken by
    ``finished``, instead of as a last yielded value.
    """
    from napari_pinned.denoising.registration import register_frames

    # np.asarray here, in the worker: a lazy (dask) stack is read off the GUI thread.
    return (yield from register_frames(np.asarray(data), reference=reference))


def describe_drift(result: RegistrationResult, pixel_size: float | None) -> str:
    """One sentence on the drift and the common region, in px (and Å when known)."""
    drift = f"{result.max_drift:.2f} px"
    if pixel_size is not None:
        drift += f" ({result.max_drift * pixel_size:.2f} Å)"
    h, w = result.mean.shape
    return (
        f"Max drift {drift} over {len(result.shifts)} frames; "
        f"mean of the {h}×{w} px region all frames cover."
    )


class FramesWidget(QWidget):
    """Register a frame series (drift correction) and add its drift-corrected mean.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        Viewer whose 3D Image layers are offered and that receives the output layers.
    """

    #: Emitted when a job ends, with the mean layer (None if cancelled or failed).
    registration_finished = Signal(object)

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        keep_docks_together(self)
        self._viewer = napari_viewer
        self._target: dict[str, Any] = {}
        self._closed = False

        self.stack_layer = ComboBox(choices=self._stack_choices)
        self.stack_layer.native.setToolTip("A series of frames (3D Image layer); never modified")
        self.reference_combo = QComboBox()
        self.reference_combo.addItems(list(REFERENCE_LABELS))
        self.reference_combo.setToolTip(
            "What each frame is matched against.  'mean': chain frame to frame, then refine "
            "every frame against the mean of the series (recommended).  In frames of a "
            "crystal every match stays within less than half a unit cell of the drift the "
            "frames before predict, so no frame jumps to a neighbouring lattice site."
        )
        self.halves_check = QCheckBox("Add even/odd halves for Noise2Noise")
        self.halves_check.setToolTip(
            "Also add the means of the even and of the odd frames: two independent noisy "
            "images of the same area, a training pair for Noise2Noise (shot and read noise "
            "only, not the paper's CDN)"
        )
        self.register_button = QPushButton("Register")
        self.cancel_button = QPushButton("Cancel")
        self.register_button.clicked.connect(self.register)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.register_button)
        buttons.addWidget(self.cancel_button)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.drift_label = QLabel("")
        self.drift_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Frame series", self.stack_layer.native)
        form.addRow("Reference", self.reference_combo)
        form.addRow(self.halves_check)
        form.addRow(buttons)
        form.addRow(self.status_label)
        form.addRow(self.drift_label)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addStretch(1)

        self._layer_choices = ImageLayerChoices(napari_viewer, [self.stack_layer])
        self._runner = JobRunner(
            self,
            "Frame series",
            cancel_button=self.cancel_button,
            status_label=self.status_label,
            cancelled="no layer was added",
        )
        self._set_running(False)

    def _stack_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [
            (name, layer)
            for name, layer in image_layer_choices(self._viewer)
            if is_greyscale(layer) and layer.ndim == 3
        ]

    # -- running ----------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """True while a registration job runs."""
        return self._runner.running

    @property
    def reference(self) -> str:
        """The core's ``reference`` for the current combo choice."""
        return REFERENCE_LABELS[self.reference_combo.currentText()]

    def _set_running(self, running: bool) -> None:
        self.register_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def register(self) -> bool:
        """Start registering the selected stack; returns whether a job started."""
        if self.is_running:
            notify_warning("Frame series: a registration is already running")
            return False
        layer = self.stack_layer.value
        if layer is None:
            flat = [n for n, lyr in image_layer_choices(self._viewer) if lyr.ndim == 2]
            extra = f"{flat[0]!r} is a single 2D image; " if flat else "there is none; "
            notify_error(_NO_STACK.format(extra=extra))
            return False
        self._target = {
            "name": layer.name,
            "scale": tuple(layer.scale),
            "translate": tuple(layer.translate),
            "units": tuple(layer.units),
            "metadata": dict(layer.metadata),
            "pixel_size": layer_pixel_size(layer),
            "reference": self.reference,
        }
        started = self._runner.start(
            _register_series,
            layer.data,
            self._target["reference"],
            description=f"Registering {layer.name}",
            on_progress=self._on_progress,
            on_finish=self._on_finish,
        )
        if not started:
            return False
        self.status_label.setText(f"Registering {layer.name!r}…")
        self.drift_label.setText("")
        self._set_running(True)
        return True

    def cancel(self) -> None:
        """Stop the job after the frame in progress; no layer is added."""
        self._runner.cancel()

    def _on_progress(self, report: RegistrationProgress) -> tuple[int, int]:
        self.status_label.setText(
            f"{report.stage.capitalize()}: frame {report.frame}/{report.frames}"
        )
        return report.done, report.total

    def _on_finish(self, outcome: Outcome, result: RegistrationResult | None) -> None:
        self._set_running(False)
        layer = None
        if outcome == "done" and result is not None:
            layer = self._add_outputs(result)
        elif outcome != "cancelled":  # a cancel is reported by the runner
            self.status_label.setText("Registration failed; see the notification.")
        self.registration_finished.emit(layer)

    # -- output layers --------------------------------------------------------------------
    def _add_outputs(self, result: RegistrationResult) -> Image:
        target = self._target
        name = target["name"]
        registration = {
            "reference": result.reference,
            "shifts": result.shifts.tolist(),
            "crop": [[s.start, s.stop] for s in result.crop],
        }
        metadata = {**target["metadata"], "source": name, "registration": registration}
        aligned = add_or_update_image(
            self._viewer,
            result.aligned,
            aligned_name(name),
            scale=target["scale"],
            translate=target["translate"],
            units=target["units"],
            metadata=metadata,
        )
        # The mean covers only the common region: offset it so it overlays the stack.
        scale = target["scale"][-2:]
        origin = tuple(
            t + s.start * k
            for t, s, k in zip(target["translate"][-2:], result.crop, scale, strict=True)
        )
        plane = {"scale": scale, "translate": origin, "units": target["units"][-2:]}
        mean = add_or_update_image(
            self._viewer, result.mean, mean_name(name), metadata=metadata, **plane
        )
        added = [aligned.name, mean.name]
        if self.halves_check.isChecked():
            halves = dict(zip(("even", "odd"), result.halves(), strict=True))
            for half, image in halves.items():
                partner = half_name(name, "odd" if half == "even" else "even")
                extra = {"noise2noise": {"half": half, "partner": partner}}
                layer = add_or_update_image(
                    self._viewer,
                    image,
                    half_name(name, half),
                    metadata={**metadata, **extra},
                    **plane,
                )
                added.append(layer.name)
        self.drift_label.setText(describe_drift(result, target["pixel_size"]))
        self.status_label.setText(f"Added {', '.join(repr(n) for n in added)}.")
        return mean

    # -- closing ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel a running job and wait for its thread (the dock or viewer is closing)."""
        self._runner.shutdown()

    def closeEvent(self, event) -> None:
        self.shutdown()
        if not self._closed:
            self._closed = True
            self._layer_choices.disconnect()
        super().closeEvent(event)
