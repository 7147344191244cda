"""The Denoise dock's trust signal: did the denoiser remove or invent structure?

After every denoising run, the current frame's input and output go through
:func:`napari_pinned.quality.faithfulness.faithfulness` (no reference image needed) in a
worker, and the verdict is shown in plain words: how many of the input's lattice
reflections the output kept, reflections it invented, and whether the residual looks
like noise; the check also runs window by window, and where a region lost or gained
lattice the warning names it and :mod:`._qt.denoise.faithfulness_map` shows it as a
layer over the output.  Definitions: docs/metrics.md, "Faithfulness" and "Local
faithfulness".
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import QGroupBox, QLabel, QVBoxLayout, QWidget

from napari_pinned._qt.shared.job_runner import JobRunner, Outcome

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

    from napari_pinned.quality.faithfulness import Faithfulness

__all__ = ["FaithfulnessPanel", "verdict_text"]

_COLOURS = {"ok": "#4caf50", "warn": "#ff9800", "bad": "#f44336"}


def _check(source: np.ndarray, output: np.ndarray, pixel_size: float | None) -> Iterator[None]:
    """The worker's generator: one check, no progress to report."""
    from napari_pinned.quality.faithfulness import faithfulness

    yield from ()
    return faithfulness(source, output, pixel_size=pixel_size)


def verdict_text(result: Faithfulness) -> tuple[str, str]:
    """(headline, colour key) for a result."""
    if result.kept_fraction is None and result.faithful:
        return "No lattice reflections stand above the noise: nothing to check.", "warn"
    if result.kept_fraction is None:
        headline = "No lattice reflections stand above the noise in the whole field."
    else:
        headline = (
            f"Kept {result.n_kept} of {result.n_peaks} lattice reflections within ±25 %; "
            f"{result.n_invented} invented."
        )
    local = result.local
    if local is not None and not local.passed:
        headline += (
            f" Windows: lattice lost in {int(local.lattice_lost.sum())}, invented in "
            f"{int(local.lattice_gained.sum())}, structure removed in "
            f"{int(local.structure_removed.sum())} of {local.windows} (the map layer)."
        )
    if result.faithful:
        return f"Faithful. {headline}", "warn" if result.warnings else "ok"
    return f"Not faithful. {headline}", "bad"


class FaithfulnessPanel(QGroupBox):
    """Shows the faithfulness of the latest result; :meth:`check` starts a check.

    Given a viewer, each finished check of an output layer also shows its map
    (:func:`napari_pinned._qt.denoise.faithfulness_map.show_map`).
    """

    def __init__(
        self, viewer: napari.viewer.Viewer | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__("Faithfulness (no reference needed)", parent)
        self._viewer = viewer
        self._layer: Image | None = None
        layout = QVBoxLayout(self)
        self.verdict_label = QLabel("Denoise an image to check what the denoiser kept.")
        self.verdict_label.setWordWrap(True)
        self.warnings_label = QLabel("")
        self.warnings_label.setWordWrap(True)
        self.verdict_label.setToolTip(
            "Compares the strongest Bragg reflections of the input's power spectrum with "
            "the output's: a ratio far from 1 means a sublattice was removed or weakened, "
            "new reflections mean invented structure (docs/metrics.md, Faithfulness)"
        )
        layout.addWidget(self.verdict_label)
        layout.addWidget(self.warnings_label)
        self._runner = JobRunner(self, "Faithfulness", progress_bar=False)
        self.last_result: Faithfulness | None = None
        self._pending: tuple[Any, ...] | None = None

    @property
    def running(self) -> bool:
        """True while a check runs."""
        return self._runner.running

    def check(
        self,
        source: np.ndarray,
        output: np.ndarray,
        pixel_size: float | None,
        layer: Image | None = None,
    ) -> None:
        """Check one 2D frame pair (a newer request replaces one that waits); ``layer``
        is the output layer whose map the result updates."""
        request = (np.asarray(source), np.asarray(output), pixel_size)
        if self._runner.running:
            self._pending = (*request, layer)
            return
        self._layer = layer
        self.verdict_label.setText("Checking faithfulness…")
        self.warnings_label.setText("")
        self._runner.start(
            _check, *request, description="Checking faithfulness", on_finish=self._finished
        )

    def clear(self, message: str = "") -> None:
        """Forget the shown result."""
        self.last_result = None
        self.verdict_label.setText(message)
        self.warnings_label.setText("")

    def shutdown(self) -> None:
        """Stop a running check (the dock is closing)."""
        self._pending = None
        self._runner.shutdown()

    def _finished(self, outcome: Outcome, result: Faithfulness | None) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self.check(*pending)
            return
        if outcome != "done" or result is None:
            self.clear("The faithfulness check did not finish.")
            return
        self.last_result = result
        layer, self._layer = self._layer, None
        viewer = self._viewer
        if viewer is not None and layer in viewer.layers and result.local is not None:
            from napari_pinned._qt.denoise.faithfulness_map import map_of, show_map

            # A faithful result adds no layer; it clears the map an earlier check made.
            if not result.local.passed or map_of(viewer, layer) is not None:
                show_map(viewer, layer, result.local)
        headline, colour = verdict_text(result)
        self.verdict_label.setText(
            f'<span style="color:{_COLOURS[colour]}"><b>{html.escape(headline)}</b></span>'
        )
        extra = []
        if result.residual_noise_ratio is not None:
            extra.append(
                f"Residual variance {result.residual_noise_ratio:.2f}× the estimated noise."
            )
        lines = [*result.warnings, *extra]
        self.warnings_label.setText("\n".join(f"• {line}" for line in lines))
