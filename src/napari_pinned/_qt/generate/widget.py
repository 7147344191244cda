"""Dock widget that simulates clean STEM images with
:func:`napari_pinned.physics.simulate.simulate`."""

from __future__ import annotations

import contextlib
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    LineEdit,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Points

from napari_pinned._qt.generate.controls import PROBE_GAUSSIAN, PROBE_PHYSICAL, probe_controls
from napari_pinned._qt.shared.common import (
    ImageLayerChoices,
    add_or_update_image,
    call_or_notify,
    find_layer,
    image_layer_choices,
    layer_pixel_size,
    notify_warning,
)
from napari_pinned._qt.shared.docking import keep_docks_together
from napari_pinned._qt.shared.job_runner import JobRunner, Outcome
from napari_pinned._qt.shared.sections import collapsed_magicgui
from napari_pinned.physics.cif import read_cif
from napari_pinned.physics.defaults import (
    DEFAULT_MATERIAL,
    DEFAULT_PIXEL_SIZE,
    DEFAULT_SIZE,
    DEFAULT_THICKNESS,
)
from napari_pinned.physics.materials import list_materials
from napari_pinned.physics.probe import AberratedProbe, GaussianProbe, probe_fwhm
from napari_pinned.physics.projection import Z_EXPONENT_HAADF
from napari_pinned.physics.simulate import SimulationResult, column_points, simulate
from napari_pinned.physics.zones import parse_zone, zone_label

if TYPE_CHECKING:
    from collections.abc import Generator

    import napari
    from napari.qt.threading import GeneratorWorker

__all__ = [
    "CIF_CHOICE",
    "WORKER_THRESHOLD",
    "GeneratorWidget",
]

#: Entry of the material combo that switches to a user CIF file.
CIF_CHOICE = "CIF file…"
#: Images with more pixels per side than this are simulated in a worker thread; a
#: 1024² image takes about 0.1 s, a 2048² one about 0.3 s plus the probe set-up.
WORKER_THRESHOLD = 1024
#: A user CIF has no listed axes; [001] is the simulator's default for it too.
_CIF_ZONES: tuple[tuple[int, ...], ...] = ((0, 0, 1),)


def _simulate_job(kwargs: dict[str, Any]) -> Generator[None, None, SimulationResult]:
    """:func:`~napari_pinned.physics.simulate.simulate` as a job without progress records (one
    call), the one shape of job the dock runner runs."""
    return simulate(**kwargs)
    yield  # never reached: it makes this function a generator


def _zone_text(zone: tuple[int, ...]) -> str:
    return " ".join(str(i) for i in zone)


class GeneratorWidget(Container):
    """Simulate a clean HAADF-like image of a bundled material or a CIF file.

    "Generate" adds an Image layer named after the material and zone axis (for
    example ``"SrTiO3 [001]"``) with its pixel size as scale in Å, or replaces the data
    of the layer of that name if it exists.  Optionally the ground-truth columns are
    added as a Points layer ``"<label> columns"`` with a ``weight`` feature.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        Viewer that receives the layers.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self._materials = {m.name: m for m in list_materials()}
        self._build_widgets()
        super().__init__(widgets=self._all_widgets(), labels=True)
        keep_docks_together(self.native)
        # Aberrations (0: a corrected microscope), specimen details and the seed: most
        # images keep their defaults, so they wait collapsed above Generate.
        self.advanced_section, self._advanced = collapsed_magicgui(
            self, self._advanced_widgets(), index=-1
        )
        self._runner = JobRunner(self.native, "Generate")
        self._match_choices = ImageLayerChoices(napari_viewer, [self.match_layer])
        self.native.destroyed.connect(self._match_choices.disconnect)
        self._connect()
        self._on_material_changed()
        self._on_probe_kind_changed()

    # ------------------------------------------------------------------ layout

    def _build_widgets(self) -> None:
        self.material = ComboBox(
            label="Material",
            choices=[*self._materials, CIF_CHOICE],
            value=DEFAULT_MATERIAL,
            tooltip="Bundled crystal structure, or a CIF file of your own",
        )
        self.cif_file = FileEdit(label="CIF file", mode="r", filter="*.cif")
        # Callable choices: napari calls reset_choices() on docked magicgui widgets
        # whenever a layer is added, which would empty a list set after construction.
        self.zone_preset = ComboBox(
            label="Zone axis", choices=self._zone_choices, tooltip="Usual zone axes"
        )
        self.zone_text = LineEdit(
            label="u v w (t)",
            value="0 0 1",
            tooltip="Zone axis as 3 or 4 (hexagonal u v t w) integers; edit freely",
        )
        self.match_layer = ComboBox(
            label="Match layer",
            choices=lambda _w: image_layer_choices(self._viewer),
            nullable=True,
            value=None,
            tooltip="Take pixel size and image size from an experimental layer, so that "
            "training data is sampled like your micrograph",
        )
        self.image_size = SpinBox(
            label="Image size (px)", value=DEFAULT_SIZE, min=32, max=4096, step=32
        )
        # A step of 0.001 gives three decimals: micrograph pixel sizes such as 0.079 Å.
        self.pixel_size = FloatSpinBox(
            label="Pixel size (Å)", value=DEFAULT_PIXEL_SIZE, min=0.01, max=2.0, step=0.001
        )
        probe = probe_controls()
        self.probe_kind, self.fwhm = probe.probe_kind, probe.fwhm
        self.fwhm_readout = probe.fwhm_readout
        self.voltage, self.convergence = probe.voltage, probe.convergence
        self.defocus, self.cs, self.source_size = probe.defocus, probe.cs, probe.source_size
        self.z_exponent = FloatSpinBox(
            label="Z exponent", value=Z_EXPONENT_HAADF, min=0.5, max=3.0, step=0.05
        )
        self.thickness = FloatSpinBox(
            label="Thickness (Å)", value=DEFAULT_THICKNESS, min=1.0, max=5000.0, step=10.0
        )
        self.vacancy = FloatSpinBox(
            label="Vacancy fraction", value=0.0, min=0.0, max=1.0, step=0.01
        )
        self.rotation = FloatSpinBox(
            label="Rotation (°)", value=0.0, min=-180.0, max=180.0, step=1.0
        )
        self.seed = SpinBox(label="Seed", value=0, min=0, max=2**31 - 1)
        self.add_columns = CheckBox(text="Add ground-truth columns (Points)", value=False)
        self.generate_button = PushButton(text="Generate")

    def _physical_widgets(self) -> list[FloatSpinBox]:
        return [self.voltage, self.convergence, self.defocus, self.cs, self.source_size]

    def _advanced_widgets(self) -> list[Any]:
        return [
            self.defocus,
            self.cs,
            self.source_size,
            self.z_exponent,
            self.thickness,
            self.vacancy,
            self.seed,
        ]

    def _all_widgets(self) -> list[Any]:
        """The dock's rows, but for those of the collapsed section."""
        return [
            self.material,
            self.cif_file,
            self.zone_preset,
            self.zone_text,
            self.match_layer,
            self.image_size,
            self.pixel_size,
            self.probe_kind,
            self.fwhm,
            self.voltage,
            self.convergence,
            self.fwhm_readout,
            self.rotation,
            self.add_columns,
            self.generate_button,
        ]

    def _connect(self) -> None:
        self.material.changed.connect(self._on_material_changed)
        self.cif_file.changed.connect(self._on_cif_changed)
        self.zone_preset.changed.connect(self._on_zone_preset)
        self.probe_kind.changed.connect(self._on_probe_kind_changed)
        for widget in (self.fwhm, self.pixel_size, *self._physical_widgets()):
            widget.changed.connect(self._update_fwhm_readout)
        self.generate_button.changed.connect(self.generate)
        self.match_layer.changed.connect(self._on_match_layer)

    def _on_match_layer(self, layer: Image | None) -> None:
        """Copy the chosen layer's sampling: pixel size from its scale, size from its shape."""
        if layer is None:
            return
        size = layer_pixel_size(layer)
        if size is None:
            notify_warning(
                f"Generator: layer {layer.name!r} has no pixel size (scale 1, no length "
                "unit); set the pixel size by hand"
            )
        else:
            self.pixel_size.value = min(max(size, self.pixel_size.min), self.pixel_size.max)
        edge = max(int(n) for n in np.shape(layer.data)[-2:])
        self.image_size.value = min(max(edge, self.image_size.min), self.image_size.max)

    # --------------------------------------------------------------- reactions

    def _uses_cif(self) -> bool:
        return self.material.value == CIF_CHOICE

    def _zones(self) -> tuple[tuple[int, ...], ...]:
        if self._uses_cif():
            return _CIF_ZONES
        return tuple(tuple(z) for z in self._materials[self.material.value].zone_axes)

    def _zone_choices(self, _widget: object = None) -> list[tuple[str, tuple[int, ...]]]:
        return [(zone_label(z), z) for z in self._zones()]

    def _on_material_changed(self, _value: object = None) -> None:
        self.cif_file.visible = self._uses_cif()
        default = self._zones()[0]
        self.zone_preset.reset_choices()
        self.zone_preset.value = default
        # Setting the same preset again emits nothing, so write the text explicitly.
        self.zone_text.value = _zone_text(default)

    def _on_cif_changed(self, _value: object = None) -> None:
        if not self._cif_path():
            return
        if not self._uses_cif():
            self.material.value = CIF_CHOICE  # also resets the zone via its handler
        else:
            self.zone_text.value = _zone_text(_CIF_ZONES[0])

    def _on_zone_preset(self, zone: tuple[int, ...] | None) -> None:
        if zone:
            self.zone_text.value = _zone_text(tuple(zone))

    def _on_probe_kind_changed(self, _value: object = None) -> None:
        physical = self.probe_kind.value == PROBE_PHYSICAL
        self.fwhm.visible = not physical
        for widget in self._physical_widgets():
            widget.visible = physical
        self._update_fwhm_readout()

    def _cif_path(self) -> Path | None:
        value = self.cif_file.value
        path = Path(value) if value else None
        return path if path is not None and path.is_file() else None

    # ------------------------------------------------------------------ probe

    def probe(self) -> GaussianProbe | AberratedProbe:
        """The probe described by the widget's current values.

        Raises
        ------
        ValueError
            If a probe parameter is out of the simulator's range.
        """
        if self.probe_kind.value == PROBE_GAUSSIAN:
            return GaussianProbe(fwhm=self.fwhm.value)
        return AberratedProbe(
            voltage_kv=self.voltage.value,
            convergence_mrad=self.convergence.value,
            defocus=self.defocus.value,
            cs_mm=self.cs.value,
            source_size=self.source_size.value,
        )

    def _update_fwhm_readout(self, _value: object = None) -> None:
        try:
            fwhm = probe_fwhm(self.probe())
        except ValueError as exc:
            # The same probe would fail in Generate; say so now, with the reason.
            self._set_readout("cannot compute (hover for why)", str(exc))
            return
        self._set_readout(f"{fwhm:.3f} Å", "")

    def _set_readout(self, text: str, tooltip: str) -> None:
        self.fwhm_readout.value = text
        self.fwhm_readout.tooltip = tooltip or None

    # -------------------------------------------------------------- generation

    def _material_argument(self) -> object:
        """The bundled name, or the crystal read from the chosen CIF (raises ValueError)."""
        if not self._uses_cif():
            return self.material.value
        value = self.cif_file.value
        path = Path(value) if value else None
        # An empty FileEdit holds "." (a folder): nothing chosen yet.
        if path is None or path.is_dir():
            raise ValueError("choose a CIF file first")
        if not path.is_file():
            raise ValueError(f"CIF file {path} does not exist")
        try:
            return read_cif(path)
        except FileNotFoundError as exc:
            raise ValueError(str(exc)) from exc

    def simulation_kwargs(self) -> dict[str, Any]:
        """Arguments for :func:`~napari_pinned.physics.simulate.simulate` from the widget.

        Raises
        ------
        ValueError
            For an unreadable CIF, a malformed zone axis or an invalid probe.
        """
        return {
            "material": self._material_argument(),
            "zone": parse_zone(self.zone_text.value),
            "shape": int(self.image_size.value),
            "pixel_size": float(self.pixel_size.value),
            "probe": self.probe(),
            "z_exponent": float(self.z_exponent.value),
            "thickness": float(self.thickness.value),
            "vacancy_fraction": float(self.vacancy.value),
            "rotation": float(self.rotation.value),
            "seed": int(self.seed.value),
        }

    def generate(self, _value: object = None) -> SimulationResult | None:
        """Simulate with the current settings and show the result.

        Small images are simulated at once and the result is returned; larger ones
        (over :data:`WORKER_THRESHOLD` pixels per side) run in :attr:`worker` and
        ``None`` is returned.  Bad input gives an error notification and changes no
        layer.
        """
        kwargs = call_or_notify(self.simulation_kwargs, context="Generate")
        if kwargs is None:
            return None
        if kwargs["shape"] <= WORKER_THRESHOLD:
            result = call_or_notify(simulate, context="Generate", **kwargs)
            if result is not None:
                self.show_result(result)
            return result
        self._start_worker(kwargs)
        return None

    @property
    def worker(self) -> GeneratorWorker | None:
        """The worker of a simulation in progress (None when there is none)."""
        job = self._runner.job
        return None if job is None else job.worker

    def _start_worker(self, kwargs: dict[str, Any]) -> None:
        # The settings of the click, not those the user may have changed meanwhile.
        shown = partial(self._on_simulated, seed=kwargs["seed"], columns=self.add_columns.value)
        if self._runner.start(
            _simulate_job, kwargs, description="Simulating STEM image", on_finish=shown
        ):
            self.generate_button.enabled = False

    def _on_simulated(
        self, outcome: Outcome, result: SimulationResult | None, *, seed: int, columns: bool
    ) -> None:
        if outcome == "done" and result is not None:
            self.show_result(result, seed=seed, columns=columns)
        # The dock may have been closed while the simulation ran.
        with contextlib.suppress(RuntimeError):
            self.generate_button.enabled = True

    # ------------------------------------------------------------------ layers

    def show_result(
        self, result: SimulationResult, *, seed: int | None = None, columns: bool | None = None
    ) -> Image:
        """Add ``result`` as an Image layer, or update the layer of the same name.

        ``seed`` (recorded in the metadata) and ``columns`` (also show the ground
        truth) default to the widget's current values.
        """
        seed = int(self.seed.value) if seed is None else int(seed)
        columns = bool(self.add_columns.value) if columns is None else columns
        label = result.label()
        scale = (result.pixel_size, result.pixel_size)
        metadata = {
            "pixel_size": result.pixel_size,
            "material": result.material,
            "zone": tuple(int(i) for i in result.zone),
            "zone_label": zone_label(result.zone),
            "seed": seed,
        }
        existing = find_layer(self._viewer, label, Image) is not None
        layer = add_or_update_image(
            self._viewer,
            result.image,
            label,
            scale=scale,
            units=("Å", "Å"),
            colormap="gray",
            metadata=metadata,
        )
        if existing:
            layer.reset_contrast_limits()
        points = f"{label} columns"
        if columns:
            self._show_columns(result, points)
        elif (stale := find_layer(self._viewer, points, Points)) is not None:
            # Columns unticked: the previous run's columns would no longer match.
            self._viewer.layers.remove(stale)
        return layer

    def _show_columns(self, result: SimulationResult, name: str) -> Points:
        positions, kwargs = column_points(result, name)
        layer = find_layer(self._viewer, name, Points)
        if layer is None:
            return self._viewer.add_points(positions, **kwargs)
        layer.data = positions
        layer.features = kwargs["features"]
        layer.scale = kwargs["scale"]
        layer.size = kwargs["size"]
        return layer
