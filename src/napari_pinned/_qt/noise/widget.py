"""Dock widget that degrades an image, live, with the paper's CDN or a realistic dose model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    PushButton,
    SpinBox,
)
from napari.layers import Image

from napari_pinned._qt.noise.controls import cdn_controls, dose_controls
from napari_pinned._qt.shared.common import (
    ImageLayerChoices,
    add_or_update_image,
    find_layer,
    image_layer_choices,
    layer_pixel_size,
    notify_error,
)
from napari_pinned._qt.shared.docking import keep_docks_together
from napari_pinned._qt.shared.sections import collapsed_magicgui
from napari_pinned.noise.synthesis import CDNParams, add_cdn_noise, add_dose_noise, cdn_params

if TYPE_CHECKING:
    import napari

__all__ = ["MODELS", "OUTPUT_SUFFIX", "NoiseWidget", "output_name"]

#: The noisy copy of layer "X" is called "X CDN" (or "X dose" with the dose model).
OUTPUT_SUFFIX = " CDN"
#: Combo-box label → noise model key.
MODELS = {"CDN (paper, Table 1)": "cdn", "Dose (shot + read noise, scan)": "dose"}
_RGB_REASON = "the layer is RGB; convert it to greyscale first"


def output_name(source_name: str, model: str = "cdn") -> str:
    """Name of the layer that holds the noisy copy of ``source_name``."""
    return f"{source_name}{OUTPUT_SUFFIX}" if model == "cdn" else f"{source_name} dose"


class NoiseWidget(Container):
    """Add noise to a copy of an image layer: CDN (paper, Table 1) or a dose model.

    Every change of the level slider or of another control recomputes one output
    layer, ``"<source> CDN"`` (or ``"<source> dose"``), in place; the source layer is
    never modified.  The three CDN components follow the level's preset unless
    "Override components" is ticked, in which case the values in their spin boxes are
    used.  The dose model takes its pixel size from the layer's scale (editable).
    Stacks get independent noise in every frame.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        Viewer whose Image layers are offered as sources and that receives the output.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._syncing = False
        self._last_error: str | None = None
        self._build_widgets()
        super().__init__(widgets=self._all_widgets(), labels=True)
        keep_docks_together(self.native)
        # Component overrides, detector and scan faults, and the seed: most runs keep
        # their defaults, so they wait collapsed above Apply.
        self.advanced_section, self._advanced = collapsed_magicgui(
            self, self._advanced_widgets(), index=-1
        )
        self._choices = ImageLayerChoices(napari_viewer, [self.source])
        # Stop following the layer list once the Qt widget is gone (viewer still open).
        self.native.destroyed.connect(self._choices.disconnect)
        self._connect()
        self._set_components_enabled(self.override.value)

    # ------------------------------------------------------------------ layout

    def _build_widgets(self) -> None:
        """Create every control (laid out by ``_all_widgets``); one helper per model."""
        self.source = ComboBox(
            label="Source",
            choices=lambda _w: image_layer_choices(self._viewer),
            tooltip="Image or stack to degrade; it is never modified",
        )
        self.model = ComboBox(
            label="Noise model",
            choices=list(MODELS),
            value=next(iter(MODELS)),
            tooltip="CDN: the PINNED paper's benchmark degradation.  Dose: what a "
            "scanning microscope does (Poisson shot noise, read noise, scan jitter, drift)",
        )
        self._build_dose_widgets()
        self._build_cdn_widgets()
        self.seed = SpinBox(label="Seed", value=0, min=0, max=2**31 - 1)
        self.clip = CheckBox(text="Clip to the data range", value=True)
        self.apply_button = PushButton(text="Apply")

    def _build_dose_widgets(self) -> None:
        """The dose model's controls: beam dose, pixel size, detector and scan faults."""
        dose = dose_controls()
        self.dose, self.pixel_size, self.collection = dose.dose, dose.pixel_size, dose.collection
        self.read_noise, self.row_jitter = dose.read_noise, dose.row_jitter
        self.drift_y, self.drift_x = dose.drift_y, dose.drift_x

    def _build_cdn_widgets(self) -> None:
        """The CDN model's controls: the paper's level, or its three components by hand."""
        cdn = cdn_controls()
        self.level, self.override = cdn.level, cdn.override
        self.gaussian_std, self.static_fraction = cdn.gaussian_std, cdn.static_fraction
        self.speckle_variance = cdn.speckle_variance

    def _components(self) -> list[FloatSpinBox]:
        return [self.gaussian_std, self.static_fraction, self.speckle_variance]

    def _cdn_widgets(self) -> list[Any]:
        return [self.level, self.override, *self._components(), self.clip]

    def _dose_widgets(self) -> list[Any]:
        return [
            self.dose,
            self.pixel_size,
            self.collection,
            self.read_noise,
            self.row_jitter,
            self.drift_y,
            self.drift_x,
        ]

    def _advanced_widgets(self) -> list[Any]:
        return [
            self.override,
            *self._components(),
            self.read_noise,
            self.row_jitter,
            self.drift_y,
            self.drift_x,
            self.seed,
        ]

    def _all_widgets(self) -> list[Any]:
        """The dock's rows, but for those of the collapsed section."""
        advanced = self._advanced_widgets()
        rows = [self.source, self.model, *self._cdn_widgets(), *self._dose_widgets()]
        return [*(w for w in rows if w not in advanced), self.apply_button]

    def _connect(self) -> None:
        self.source.changed.connect(self._on_source_changed)
        self.model.changed.connect(self._on_model_changed)
        self.level.changed.connect(self._on_level_changed)
        self.override.changed.connect(self._on_override_changed)
        for widget in (*self._components(), *self._dose_widgets(), self.seed, self.clip):
            widget.changed.connect(self._on_parameter_changed)
        self.apply_button.changed.connect(self._on_apply)
        self._show_model_widgets()
        self._take_pixel_size()

    @property
    def noise_model(self) -> str:
        """ "cdn" or "dose"."""
        return MODELS[self.model.value]

    def _show_model_widgets(self) -> None:
        dose = self.noise_model == "dose"
        for widget in self._cdn_widgets():
            widget.visible = not dose
        for widget in self._dose_widgets():
            widget.visible = dose

    def _take_pixel_size(self) -> None:
        layer = self.source.value
        size = None if layer is None else layer_pixel_size(layer)
        if size is not None:
            self._syncing = True
            try:
                self.pixel_size.value = size
            finally:
                self._syncing = False

    # --------------------------------------------------------------- reactions

    def _sync_components(self) -> None:
        """Show the level's preset in the component boxes without recomputing."""
        preset = cdn_params(float(self.level.value))
        self._syncing = True
        try:
            self.gaussian_std.value = preset.gaussian_std
            self.static_fraction.value = preset.static_fraction
            self.speckle_variance.value = preset.speckle_variance
        finally:
            self._syncing = False

    def _on_level_changed(self, _value: float) -> None:
        if not self.override.value:
            self._sync_components()
        self.update_output()

    def _set_components_enabled(self, enabled: bool) -> None:
        for widget in self._components():
            widget.enabled = bool(enabled)
        if not enabled:
            self._sync_components()

    def _on_override_changed(self, checked: bool) -> None:
        self._set_components_enabled(checked)
        self.update_output()

    def _on_parameter_changed(self, _value: object = None) -> None:
        if not self._syncing:
            self.update_output()

    def _on_model_changed(self, _value: object = None) -> None:
        self._show_model_widgets()
        layer = self.source.value
        if layer is not None and find_layer(self._viewer, self._output_name(layer)) is not None:
            self.update_output()

    def _output_name(self, layer: Image) -> str:
        return output_name(layer.name, self.noise_model)

    def _on_source_changed(self, _value: object = None) -> None:
        self._last_error = None
        self._take_pixel_size()
        layer = self.source.value
        # Choosing (or opening) an RGB layer is not yet a request for noise: its error
        # waits for the first control the user moves, so one action gives one message.
        if (
            layer is not None
            and not layer.rgb
            and find_layer(self._viewer, self._output_name(layer)) is not None
        ):
            # Only an existing output follows a new source choice; merely picking a
            # layer in the combo should not add one.
            self.update_output()

    def _on_apply(self, _value: object = None) -> None:
        self._last_error = None
        if self.source.value is None:
            notify_error("Noise: no Image layer to degrade; add or open an image first")
            return
        self.update_output()

    # ------------------------------------------------------------------ output

    def params(self) -> CDNParams:
        """The CDN parameters the next update uses."""
        if self.override.value:
            return CDNParams(
                gaussian_std=float(self.gaussian_std.value),
                static_fraction=float(self.static_fraction.value),
                speckle_variance=float(self.speckle_variance.value),
            )
        return cdn_params(float(self.level.value))

    def noise_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~napari_pinned.noise.synthesis.add_cdn_noise` for the
        controls."""
        kwargs: dict[str, Any] = {
            "level": float(self.level.value),
            "clip": bool(self.clip.value),
            "seed": int(self.seed.value),
        }
        if self.override.value:
            kwargs.update(
                gaussian_std=float(self.gaussian_std.value),
                static_fraction=float(self.static_fraction.value),
                speckle_variance=float(self.speckle_variance.value),
            )
        return kwargs

    def dose_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~napari_pinned.noise.synthesis.add_dose_noise` for the
        controls."""
        return {
            "dose": float(self.dose.value),
            "pixel_size": float(self.pixel_size.value),
            "collection": float(self.collection.value),
            "read_noise": float(self.read_noise.value),
            "row_jitter": float(self.row_jitter.value),
            "drift": (float(self.drift_y.value), float(self.drift_x.value)),
            "seed": int(self.seed.value),
        }

    def update_output(self) -> Image | None:
        """Recompute ``"<source> CDN"`` (or ``"<source> dose"``); add it if missing.

        Returns the output layer, or ``None`` when there is no usable source (the
        reason is shown as a notification, once per distinct problem).
        """
        layer = self.source.value
        if layer is None:
            return None
        name = self._output_name(layer)
        try:
            noisy = self._noisy_data(layer)
        except ValueError as exc:
            self._report(self._failure(layer, str(exc)))
            return None
        self._last_error = None
        return add_or_update_image(
            self._viewer,
            noisy,
            name,
            scale=layer.scale,
            translate=layer.translate,
            units=layer.units,
            colormap="gray",
            metadata=self._output_metadata(layer),
        )

    def _noisy_data(self, layer: Image) -> np.ndarray:
        if layer.rgb:
            raise ValueError(_RGB_REASON)
        if layer.multiscale:
            raise ValueError("multiscale (pyramid) layers are not supported")
        if self.noise_model == "dose":
            return add_dose_noise(np.asarray(layer.data), **self.dose_kwargs())
        return add_cdn_noise(np.asarray(layer.data), **self.noise_kwargs())

    def _output_metadata(self, source: Image) -> dict[str, Any]:
        metadata = {k: v for k, v in source.metadata.items() if k not in ("cdn", "dose")}
        if self.noise_model == "dose":
            dose = self.dose_kwargs()
            dose["drift"] = list(dose["drift"])
            metadata.update(source=source.name, dose=dose)
            return metadata
        params = self.params()
        metadata.update(
            source=source.name,
            cdn={
                "level": float(self.level.value),
                "override": bool(self.override.value),
                "gaussian_std": params.gaussian_std,
                "static_fraction": params.static_fraction,
                "speckle_variance": params.speckle_variance,
                "seed": int(self.seed.value),
                "clip": bool(self.clip.value),
            },
        )
        return metadata

    def _failure(self, layer: Image, reason: str) -> str:
        kind = "CDN noise" if self.noise_model == "cdn" else "Dose noise"
        return f"{kind} on {layer.name!r}: {reason}"

    def _report(self, message: str) -> None:
        # A slider drag repeats the same failure dozens of times; say it once.
        if message != self._last_error:
            self._last_error = message
            notify_error(message)
