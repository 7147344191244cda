"""GeneratorWidget driven as a user would: set values, click Generate, inspect layers."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from napari.layers import Image, Points
from npe2 import PluginManifest
from npe2.manifest.utils import import_python_name
from qtpy.QtCore import Qt

from napari_pinned._qt.generate.widget import CIF_CHOICE, WORKER_THRESHOLD, GeneratorWidget
from napari_pinned.physics.materials import get_material
from napari_pinned.physics.probe import AberratedProbe, GaussianProbe, probe_fwhm
from napari_pinned.physics.simulate import simulate
from napari_pinned.physics.zones import parse_zone

SIZE = 96
#: Longest wait for a simulation in a worker (ms): generous, for a loaded machine.
WORKER_WAIT_MS = 60_000


@pytest.fixture
def viewer(viewer_model):
    return viewer_model


@pytest.fixture
def widget(viewer, qtbot):
    gen = GeneratorWidget(viewer)
    qtbot.addWidget(gen.native)
    gen.image_size.value = SIZE
    return gen


def shown(widget) -> bool:
    """Whether a control is shown in the form (its dock need not be on screen)."""
    return not widget.native.isHidden()


def click(qtbot, button) -> None:
    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


def reference(**overrides):
    """simulate() with the widget's defaults, for comparison with what it shows."""
    kwargs = dict(
        material="SrTiO3",
        zone=(0, 0, 1),
        shape=SIZE,
        pixel_size=0.1,
        probe=AberratedProbe(),
        z_exponent=1.7,
        thickness=200.0,
        vacancy_fraction=0.0,
        rotation=0.0,
        seed=0,
    )
    kwargs.update(overrides)
    return simulate(**kwargs)


def test_generate_adds_a_scaled_image_layer(widget, viewer, qtbot):
    widget.pixel_size.value = 0.12
    click(qtbot, widget.generate_button)

    assert [layer.name for layer in viewer.layers] == ["SrTiO3 [001]"]
    layer = viewer.layers["SrTiO3 [001]"]
    assert isinstance(layer, Image)
    assert layer.data.shape == (SIZE, SIZE)
    np.testing.assert_allclose(layer.scale, [0.12, 0.12])
    assert [str(u) for u in layer.units] == ["angstrom", "angstrom"]
    assert layer.metadata["pixel_size"] == pytest.approx(0.12)
    assert layer.metadata["material"] == "SrTiO3"
    assert layer.metadata["zone"] == (0, 0, 1)
    np.testing.assert_array_equal(layer.data, reference(pixel_size=0.12).image)


def test_second_generate_updates_the_layer_in_place(widget, viewer, qtbot):
    click(qtbot, widget.generate_button)
    layer = viewer.layers["SrTiO3 [001]"]
    first = np.array(layer.data)

    widget.seed.value = 7
    widget.vacancy.value = 0.2
    click(qtbot, widget.generate_button)

    assert len(viewer.layers) == 1
    assert viewer.layers["SrTiO3 [001]"] is layer
    assert not np.array_equal(layer.data, first)
    np.testing.assert_array_equal(layer.data, reference(seed=7, vacancy_fraction=0.2).image)


def test_material_sets_its_zone_axes(widget, viewer, qtbot):
    widget.material.value = "GaN"
    expected = [tuple(z) for z in get_material("GaN").zone_axes]
    assert list(widget.zone_preset.choices) == expected
    assert parse_zone(widget.zone_text.value) == expected[0]

    widget.zone_preset.value = expected[1]
    assert parse_zone(widget.zone_text.value) == expected[1]

    click(qtbot, widget.generate_button)
    assert viewer.layers[-1].name == "GaN [0001]"

    # napari refreshes docked magicgui widgets on every new layer; the axes must survive.
    widget.reset_choices()
    assert list(widget.zone_preset.choices) == expected


def test_typed_zone_axis_is_used(widget, viewer, qtbot):
    widget.zone_text.value = "[110]"
    click(qtbot, widget.generate_button)
    layer = viewer.layers["SrTiO3 [110]"]
    assert layer.metadata["zone"] == (1, 1, 0)
    np.testing.assert_array_equal(layer.data, reference(zone=(1, 1, 0)).image)


@pytest.mark.parametrize(
    ("text", "zone"),
    [
        ("0 0 1", (0, 0, 1)),
        ("1, 1, -2, 0", (1, 1, -2, 0)),
        ("[11-20]", (1, 1, -2, 0)),
        ("[10 0 1]", (10, 0, 1)),
        (" 1 1 0 ", (1, 1, 0)),
    ],
)
def test_parse_zone_accepts_usual_notations(text, zone):
    assert parse_zone(text) == zone


@pytest.mark.parametrize("text", ["", "1 2", "1 1 0 0 1", "a b c", "1.5 0 0"])
def test_parse_zone_rejects_malformed_text(text):
    with pytest.raises(ValueError, match="zone axis"):
        parse_zone(text)


def test_bad_zone_text_notifies_and_adds_nothing(widget, viewer, qtbot, notifications):
    widget.zone_text.value = "1 2"
    click(qtbot, widget.generate_button)
    assert len(viewer.layers) == 0
    assert len(notifications.errors) == 1
    assert "zone axis" in notifications.errors[0]


def test_ground_truth_columns_as_points(widget, viewer, qtbot):
    widget.add_columns.value = True
    click(qtbot, widget.generate_button)

    points = viewer.layers["SrTiO3 [001] columns"]
    assert isinstance(points, Points)
    truth = reference().columns
    np.testing.assert_allclose(points.data, truth.positions)
    np.testing.assert_allclose(points.features["weight"], truth.weights)
    np.testing.assert_allclose(points.scale, [0.1, 0.1])

    # A second run with another seed replaces points and weights in the same layer.
    widget.seed.value = 3
    widget.vacancy.value = 0.3
    click(qtbot, widget.generate_button)
    assert viewer.layers["SrTiO3 [001] columns"] is points
    assert len(viewer.layers) == 2
    truth = reference(seed=3, vacancy_fraction=0.3).columns
    assert len(points.data) == len(truth.weights)
    np.testing.assert_allclose(points.features["weight"], truth.weights)


def test_no_points_unless_asked(widget, viewer, qtbot):
    click(qtbot, widget.generate_button)
    assert not any(isinstance(layer, Points) for layer in viewer.layers)


def test_unticking_columns_removes_the_old_points(widget, viewer, qtbot):
    widget.add_columns.value = True
    click(qtbot, widget.generate_button)
    assert "SrTiO3 [001] columns" in viewer.layers
    widget.add_columns.value = False
    widget.seed.value = 4
    click(qtbot, widget.generate_button)
    assert not any(isinstance(layer, Points) for layer in viewer.layers)


def test_a_missing_cif_file_is_named(widget, viewer, qtbot, notifications, tmp_path):
    widget.material.value = CIF_CHOICE
    widget.cif_file.value = tmp_path / "gone.cif"
    click(qtbot, widget.generate_button)
    assert len(viewer.layers) == 0
    assert len(notifications.errors) == 1
    assert "gone.cif" in notifications.errors[0] and "does not exist" in notifications.errors[0]


def test_bad_cif_notifies_and_touches_no_layer(widget, viewer, qtbot, notifications, tmp_path):
    click(qtbot, widget.generate_button)
    layer = viewer.layers["SrTiO3 [001]"]
    before = np.array(layer.data)

    bad = tmp_path / "broken.cif"
    bad.write_text("this is not a crystal\n_cell_length_a banana\n")
    widget.cif_file.value = bad
    assert widget.material.value == CIF_CHOICE
    click(qtbot, widget.generate_button)

    assert len(notifications.errors) == 1
    assert "broken.cif" in notifications.errors[0]
    assert [lyr.name for lyr in viewer.layers] == ["SrTiO3 [001]"]
    np.testing.assert_array_equal(layer.data, before)


def test_cif_file_defaults_to_001_and_simulates(widget, viewer, qtbot, tmp_path):
    cif = tmp_path / "my_silicon.cif"
    shutil.copy(get_material("Si").cif, cif)
    widget.material.value = "GaN"
    widget.cif_file.value = cif

    assert widget.material.value == CIF_CHOICE
    assert parse_zone(widget.zone_text.value) == (0, 0, 1)
    click(qtbot, widget.generate_button)
    layer = viewer.layers["my_silicon [001]"]
    np.testing.assert_array_equal(layer.data, reference(material=cif).image)


def test_cif_choice_without_file_notifies(widget, viewer, qtbot, notifications):
    widget.material.value = CIF_CHOICE
    click(qtbot, widget.generate_button)
    assert len(viewer.layers) == 0
    assert len(notifications.errors) == 1
    assert "CIF" in notifications.errors[0]


def test_probe_controls_and_fwhm_readout(widget):
    assert widget.probe_kind.value.startswith("Physical")
    assert shown(widget.voltage) and not shown(widget.fwhm)
    widget.convergence.value = 30.0
    expected = probe_fwhm(AberratedProbe(convergence_mrad=30.0))
    assert widget.fwhm_readout.value == f"{expected:.3f} Å"

    widget.probe_kind.value = "Gaussian"
    assert shown(widget.fwhm) and not shown(widget.voltage)
    widget.fwhm.value = 1.25
    assert widget.probe() == GaussianProbe(fwhm=1.25)
    assert widget.fwhm_readout.value == f"{probe_fwhm(GaussianProbe(1.25)):.3f} Å"


def test_the_probe_controls_start_at_the_probes_defaults(widget):
    assert widget.probe() == AberratedProbe()
    widget.probe_kind.value = "Gaussian"
    assert widget.probe() == GaussianProbe()


def test_an_image_the_memory_cannot_hold_is_refused_in_one_line(
    widget, viewer, qtbot, notifications, monkeypatch
):
    from napari_pinned._util import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 64 * 1024**2)
    widget.image_size.value = 4096
    assert widget.generate() is None
    # The worker may end before a signal blocker could connect: wait for its outcome.
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WORKER_WAIT_MS)
    assert len(viewer.layers) == 0
    assert len(notifications.errors) == 1
    error = notifications.errors[0]
    assert error.startswith("Generate: simulating a 4096×4096 px image needs about ")
    assert "\n" not in error
    assert widget.generate_button.enabled


@pytest.mark.slow
def test_impossible_probe_is_flagged_before_generate(widget, viewer, qtbot, notifications):
    # Cs = 1.2 mm without a corrector, slightly defocused, spreads the probe over
    # ~140 Å, beyond what the simulator computes.
    widget.cs.value = 1.2
    widget.defocus.value = -50.0
    with pytest.raises(ValueError) as info:
        probe_fwhm(AberratedProbe(defocus=-50.0, cs_mm=1.2))
    assert widget.fwhm_readout.value.startswith("cannot compute")
    assert widget.fwhm_readout.tooltip == str(info.value)

    click(qtbot, widget.generate_button)
    assert len(viewer.layers) == 0
    assert len(notifications.errors) == 1
    assert notifications.errors[0].startswith("Generate: the probe")


def test_gaussian_probe_is_used_for_the_image(widget, viewer, qtbot):
    widget.probe_kind.value = "Gaussian"
    widget.fwhm.value = 1.0
    click(qtbot, widget.generate_button)
    expected = reference(probe=GaussianProbe(fwhm=1.0)).image
    np.testing.assert_array_equal(viewer.layers[0].data, expected)


def test_large_images_are_simulated_in_a_worker(widget, viewer, qtbot):
    widget.image_size.value = WORKER_THRESHOLD + 32
    widget.probe_kind.value = "Gaussian"
    assert widget.generate() is None
    worker = widget.worker
    assert worker is not None
    assert not widget.generate_button.enabled
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WORKER_WAIT_MS)
    layer = viewer.layers["SrTiO3 [001]"]
    assert layer.data.shape == (WORKER_THRESHOLD + 32,) * 2
    assert widget.generate_button.enabled
    assert widget.worker is None


def test_manifest_lists_the_five_widgets():
    # from_distribution validates the manifest against npe2's schema while loading it.
    manifest = PluginManifest.from_distribution("napari-pinned")
    names = {w.display_name for w in manifest.contributions.widgets}
    assert names == {
        "Synthetic STEM generator",
        "CDN noise",
        "Train PINNED",
        "Denoise",
        "Frame series",
    }
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    widget_commands = {w.command for w in manifest.contributions.widgets}
    assert widget_commands <= set(commands)
    assert import_python_name(commands["napari-pinned.generator"]) is GeneratorWidget


def test_generator_docks_from_the_plugin_menu(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(
        "napari-pinned", "Synthetic STEM generator"
    )
    assert isinstance(widget, GeneratorWidget)
    click(qtbot, widget.generate_button)
    assert viewer.layers[-1].name == "SrTiO3 [001]"
    assert widget.zone_preset.native.currentText() == "[001]"


def test_match_layer_copies_pixel_size_and_size(widget, viewer, notifications):
    micrograph = viewer.add_image(
        np.zeros((300, 420), np.float32), name="micrograph", scale=(0.0123, 0.0123), units="nm"
    )
    widget.match_layer.value = micrograph
    assert widget.pixel_size.value == pytest.approx(0.123)
    assert widget.image_size.value == 420
    plain = viewer.add_image(np.zeros((64, 64), np.float32), name="uncalibrated")
    widget.match_layer.value = plain
    assert widget.image_size.value == 64
    assert any("no pixel size" in m for m in notifications.warnings)
