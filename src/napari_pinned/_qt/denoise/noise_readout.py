"""The Denoise dock's noise readout: how noisy the input is, before denoising it.

The Poisson–Gaussian fit of :func:`napari_pinned.nn.conditioning.measure_noise` (the
noise a noise-aware model is told, without the frame's hot and saturated pixels) runs on
the input's current frame in a worker whenever the input or the frame changes (results
are kept per frame) and is read for the user by :func:`napari_pinned.noise.readout.read_noise`
in one line: the dose at the mean intensity ("≈ 12 e⁻/px at the mean intensity (σ = 35
at the mean)", corrected for noise correlated along the scan), "no noise measurable (the
image looks noise-free)", or why the values are not detector counts and what the model
is told instead.  The strength spin box beside it scales the noise
level the model is told about.

An input that cannot be estimated (NaN, a constant frame) is said once: one notification
naming the layer per problem, the reason in the label, and no new attempt on that frame
when other layers come and go (every layer event re-reads the readouts).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtWidgets import QLabel, QWidget

from napari_pinned._qt.shared.common import notify_error
from napari_pinned._qt.shared.job_runner import JobRunner, Outcome

if TYPE_CHECKING:
    from napari_pinned.noise.estimate import NoiseEstimate
    from napari_pinned.noise.readout import NoiseReading

__all__ = ["NoiseReadout"]


def _estimate(frame: np.ndarray) -> Iterator[None]:
    """The worker's job: the estimate, or the reason (a ``ValueError``'s line) it cannot
    be made, which the readout reports itself, once."""
    # The noise the model is told: fitted without the frame's hot and saturated pixels.
    from napari_pinned.nn.conditioning import measure_noise
    from napari_pinned.noise.readout import read_noise

    yield from ()
    try:
        return read_noise(frame, estimate=measure_noise(frame))
    except ValueError as exc:
        return str(exc)


class NoiseReadout(QLabel):
    """A label showing the estimated noise of one frame."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("", parent)
        self.setWordWrap(True)
        self.setToolTip(
            "Poisson–Gaussian noise fitted to the current frame (variance = gain · "
            "intensity + offset); e⁻/px is the detected dose at the mean intensity, read "
            "from the noise at zero frequency. The noise-aware model is told the fitted "
            "level, times the strength."
        )
        self._runner = JobRunner(self, "Noise estimate", progress_bar=False)
        # Per (data, frame): the estimate, or why there is none.
        self._cache: dict[tuple[int, int], NoiseReading | str] = {}
        self._reported: set[tuple[int, str]] = set()  # (data, reason) already notified
        self._key: tuple[int, int] | None = None
        self._names: dict[tuple[int, int], str] = {}  # the layer each key was asked for
        self._pending: tuple[tuple[int, int], np.ndarray] | None = None
        self.estimate: NoiseEstimate | None = None  # what a model is told
        self.reading: NoiseReading | None = None  # what the label says

    @property
    def running(self) -> bool:
        """True while an estimate runs."""
        return self._runner.running

    def show_for(
        self, data: np.ndarray | None, frame: int, units: str = "", *, name: str = ""
    ) -> None:
        """Estimate (or recall) the noise of ``data[frame]`` (or ``data`` if 2D), the data
        of layer ``name``."""
        self._units = units
        if data is None:
            self._key = None
            self.estimate = None
            self.reading = None
            self.setText("")
            return
        key = (id(data), frame)
        self._key = key
        self._names[key] = name
        if key in self._cache:
            self._show(self._cache[key])
            return
        image = np.asarray(data[frame] if np.ndim(data) == 3 else data)
        if image.ndim != 2 or min(image.shape) < 8:
            self.setText("")
            return
        if self._runner.running:
            self._pending = (key, image)
            return
        self._start(key, image)

    def clear_cache(self) -> None:
        """Forget stored estimates (the data changed)."""
        self._cache.clear()
        self._reported.clear()
        self._names.clear()

    def shutdown(self) -> None:
        """Stop a running estimate (the dock is closing)."""
        self._pending = None
        self._runner.shutdown()

    def _start(self, key: tuple[int, int], image: np.ndarray) -> None:
        self.setText("Noise: estimating…")
        self._runner.start(
            _estimate,
            image,
            description="Estimating noise",
            on_finish=lambda outcome, result: self._finished(key, outcome, result),
        )

    def _finished(
        self, key: tuple[int, int], outcome: Outcome, result: NoiseReading | str | None
    ) -> None:
        if outcome == "done" and result is not None:
            self._cache[key] = result
            if isinstance(result, str) and (key[0], result) not in self._reported:
                # Once per layer data and problem, not per frame or layer event.
                self._reported.add((key[0], result))
                name = self._names.get(key, "")
                layer = f" of {name!r}" if name else ""
                notify_error(f"Noise estimate{layer}: {result}")
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] != key:
            self._start(*pending)
            return
        if key == self._key:
            if outcome == "done" and result is not None:
                self._show(result)
            else:
                self.setText("Noise: could not be estimated for this frame.")

    def _show(self, reading: NoiseReading | str) -> None:
        if isinstance(reading, str):
            self.estimate = self.reading = None
            self.setText(f"Noise: cannot be estimated: {reading}.")
            return
        self.estimate, self.reading = reading.estimate, reading
        self.setText(f"Noise: {reading.line(getattr(self, '_units', ''))}")
