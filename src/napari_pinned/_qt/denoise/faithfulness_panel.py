"""The Denoise dock's trust signal: did the denoiser remove or invent structure?

After every denoising run, the current frame's input and output go through
:func:`napari_pinned.quality.faithfulness.faithfulness` (no reference image needed) in a
worker, and the verdict is shown in plain words: how many of the input's lattice
reflections the output kept, reflections it invented, and whether the residual looks
like noise.  Definitions: docs/metrics.md, "Faithfulness".
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import QGroupBox, QLabel, QVBoxLayout, QWidget

from napari_pinned._qt.shared.job_runner import JobRunner, Outcome

if TYPE_CHECKING:
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
    if result.kept_fraction is None:
        return "No lattice reflections stand above the noise: nothing to check.", "warn"
    headline = (
        f"Kept {result.n_kept} of {result.n_peaks} lattice reflections within ±25 %; "
        f"{result.n_invented} invented."
    )
    if result.faithful:
        return f"Faithful. {headline}", "warn" if result.warnings else "ok"
    return f"Not faithful. {headline}", "bad"


class FaithfulnessPanel(QGroupBox):
    """Shows the faithfulness of the latest result; :meth:`check` starts a check."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Faithfulness (no reference needed)", parent)
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

    def check(self, source: np.ndarray, output: np.ndarray, pixel_size: float | None) -> None:
        """Check one 2D frame pair (a newer request replaces one that waits)."""
        request = (np.asarray(source), np.asarray(output), pixel_size)
        if self._runner.running:
            self._pending = request
            return
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
