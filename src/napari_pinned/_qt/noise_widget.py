"""Dock widget that degrades an image with CDN noise, live, as a level slider moves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSlider,
    FloatSpinBox,
    PushButton,
    SpinBox,
)
from napari.layers import Image

from napari_pinned.noise import MAX_LEVEL, CDNParams, add_cdn_noise, cdn_params

from ._common import (
    ImageLayerChoices,
    add_or_update_image,
    find_layer,
    image_layer_choices,
    notify_error,
)

if TYPE_CHECKING:
    import napari

__all__ = ["OUTPUT_SUFFIX", "NoiseWidget", "output_name"]

#: The noisy copy of layer "X" is called "X CDN".
OUTPUT_SUFFIX = " CDN"
_RGB_REASON = "the layer is RGB; convert it to greyscale first"


def output_name(source_name: str) -> str:
    """Name of the layer that holds the noisy copy of ``source_name``."""
    return f"{source_name}{OUTPUT_SUFFIX}"


class NoiseWidget(Container):
    """Add Composite Degradation Noise (paper, Table 1) to a copy of an image layer.

    Every change of the level slider or of another control recomputes one output
    layer, ``"<source> CDN"``, in place; the source layer is never modified.  The
    three noise components follow the level's preset unless "Override components"
    is ticked, in which case the values in their spin boxes are used.  Stacks get
    independent noise in every frame.

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
        self._choices = ImageLayerChoices(napari_viewer, [self.source])
        # Stop following the layer list once the Qt widget is gone (viewer still open).
        self.native.destroyed.connect(self._choices.disconnect)
        self._connect()
        self._set_components_enabled(self.override.value)

    # ------------------------------------------------------------------ layout

    def _build_widgets(self) -> None:
        self.source = ComboBox(
            label="Source",
            choices=lambda _w: image_layer_choices(self._viewer),
            tooltip="Image or stack to degrade; it is never modified",
        )
        self.level = FloatSlider(
            label="CDN level",
            value=1.0,
            min=0.0,
            max=float(MAX_LEVEL),
            step=0.1,
            tooltip="0: no noise; 1-5: Table 1 of the PINNED paper; in between: interpolated",
        )
        self.override = CheckBox(text="Override components", value=False)
        self.gaussian_std = FloatSpinBox(
            label="Gaussian std",
            min=0.0,
            max=255.0,
            step=0.5,
            tooltip="Standard deviation of the additive noise, in 8-bit units",
        )
        self.static_fraction = FloatSpinBox(
            label="Static fraction",
            min=0.0,
            max=1.0,
            step=0.01,
            tooltip="Fraction of pixels replaced by uniform random values",
        )
        self.speckle_variance = FloatSpinBox(
            label="Speckle variance",
            min=0.0,
            max=10.0,
            step=0.01,
            tooltip="Variance of the multiplicative speckle factor",
        )
        self.seed = SpinBox(label="Seed", value=0, min=0, max=2**31 - 1)
        self.clip = CheckBox(text="Clip to the data range", value=True)
        self.apply_button = PushButton(text="Apply")

    def _components(self) -> list[FloatSpinBox]:
        return [self.gaussian_std, self.static_fraction, self.speckle_variance]

    def _all_widgets(self) -> list[Any]:
        return [
            self.source,
            self.level,
            self.override,
            *self._components(),
            self.seed,
            self.clip,
            self.apply_button,
        ]

    def _connect(self) -> None:
        self.source.changed.connect(self._on_source_changed)
        self.level.changed.connect(self._on_level_changed)
        self.override.changed.connect(self._on_override_changed)
        for widget in (*self._components(), self.seed, self.clip):
            widget.changed.connect(self._on_parameter_changed)
        self.apply_button.changed.connect(self._on_apply)

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

    def _on_source_changed(self, _value: object = None) -> None:
        self._last_error = None
        layer = self.source.value
        if layer is not None and layer.rgb:
            self._report(self._failure(layer, _RGB_REASON))
        elif layer is not None and find_layer(self._viewer, output_name(layer.name)) is not None:
            # Only an existing output follows a new source choice; merely picking a
            # layer in the combo should not add one.
            self.update_output()

    def _on_apply(self, _value: object = None) -> None:
        self._last_error = None
        if self.source.value is None:
            notify_error("CDN noise: no Image layer to degrade; add or open an image first")
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
        """Keyword arguments of :func:`~napari_pinned.noise.add_cdn_noise` for the controls."""
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

    def update_output(self) -> Image | None:
        """Recompute ``"<source> CDN"`` from the source layer; add it if missing.

        Returns the output layer, or ``None`` when there is no usable source (the
        reason is shown as a notification, once per distinct problem).
        """
        layer = self.source.value
        if layer is None:
            return None
        name = output_name(layer.name)
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
        return add_cdn_noise(np.asarray(layer.data), **self.noise_kwargs())

    def _output_metadata(self, source: Image) -> dict[str, Any]:
        params = self.params()
        metadata = {k: v for k, v in source.metadata.items() if k != "cdn"}
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

    @staticmethod
    def _failure(layer: Image, reason: str) -> str:
        return f"CDN noise on {layer.name!r}: {reason}"

    def _report(self, message: str) -> None:
        # A slider drag repeats the same failure dozens of times; say it once.
        if message != self._last_error:
            self._last_error = message
            notify_error(message)
