"""NoiseWidget driven as a user would: pick a source, move the slider, inspect the output."""

from __future__ import annotations

import numpy as np
import pytest
from npe2 import PluginManifest
from npe2.manifest.utils import import_python_name
from qtpy.QtCore import Qt

from napari_pinned._qt.noise.widget import MODELS, NoiseWidget, output_name
from napari_pinned.noise.synthesis import add_cdn_noise, add_dose_noise, cdn_params
from napari_pinned.physics.probe import GaussianProbe
from napari_pinned.physics.simulate import simulate

SIZE = 96


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return simulate("SrTiO3", shape=SIZE, probe=GaussianProbe(0.8), seed=0).image


@pytest.fixture
def viewer(viewer_model):
    return viewer_model


@pytest.fixture
def source(viewer, clean):
    return viewer.add_image(clean.copy(), name="clean", scale=(0.1, 0.1), translate=(2.0, -1.0))


@pytest.fixture
def widget(viewer, qtbot):
    noise = NoiseWidget(viewer)
    qtbot.addWidget(noise.native)
    return noise


def click(qtbot, button) -> None:
    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


def test_nothing_is_added_until_a_control_is_used(source, widget, viewer):
    assert widget.source.value is source
    assert len(viewer.layers) == 1


def test_slider_updates_one_layer_in_place(source, widget, viewer, clean):
    widget.level.value = 2.0
    out = viewer.layers[output_name("clean")]
    assert out.name == "clean CDN"
    np.testing.assert_array_equal(out.data, add_cdn_noise(clean, 2.0, seed=0))
    np.testing.assert_allclose(out.scale, source.scale)
    np.testing.assert_allclose(out.translate, source.translate)
    assert out.metadata["cdn"]["level"] == pytest.approx(2.0)
    first = np.array(out.data)

    widget.level.value = 3.5
    assert viewer.layers[output_name("clean")] is out
    assert len(viewer.layers) == 2
    assert not np.array_equal(out.data, first)
    np.testing.assert_array_equal(out.data, add_cdn_noise(clean, 3.5, seed=0))

    widget.level.value = 0.0
    assert viewer.layers[-1] is out
    np.testing.assert_array_equal(out.data, clean)
    # The source is read, never written.
    np.testing.assert_array_equal(source.data, clean)


@pytest.mark.parametrize("level", [0.5, 2.0, 4.7])
def test_components_follow_the_preset(source, widget, level):
    widget.level.value = level
    preset = cdn_params(level)
    # Tolerances: half a display step of each spin box (1 and 2 decimals).
    assert widget.gaussian_std.value == pytest.approx(preset.gaussian_std, abs=0.05)
    assert widget.static_fraction.value == pytest.approx(preset.static_fraction, abs=0.005)
    assert widget.speckle_variance.value == pytest.approx(preset.speckle_variance, abs=0.005)
    assert not widget.gaussian_std.enabled
    assert widget.params() == preset


def test_overridden_components_are_used(source, widget, viewer, clean):
    widget.level.value = 3.0
    widget.override.value = True
    assert widget.gaussian_std.enabled
    widget.gaussian_std.value = 12.0
    widget.static_fraction.value = 0.05
    widget.speckle_variance.value = 0.02
    out = viewer.layers["clean CDN"]
    expected = add_cdn_noise(
        clean, 3.0, gaussian_std=12.0, static_fraction=0.05, speckle_variance=0.02, seed=0
    )
    np.testing.assert_array_equal(out.data, expected)
    assert out.metadata["cdn"]["gaussian_std"] == pytest.approx(12.0)

    # The slider no longer moves the overridden values.
    widget.level.value = 5.0
    assert widget.gaussian_std.value == pytest.approx(12.0)
    assert widget.static_fraction.value == pytest.approx(0.05)

    # Unticking returns to the preset of the current level.
    widget.override.value = False
    assert widget.gaussian_std.value == pytest.approx(cdn_params(5.0).gaussian_std)
    np.testing.assert_array_equal(out.data, add_cdn_noise(clean, 5.0, seed=0))
    assert len(viewer.layers) == 2


def test_seed_and_clip(source, widget, viewer, clean):
    widget.level.value = 5.0
    widget.seed.value = 5
    out = viewer.layers["clean CDN"]
    np.testing.assert_array_equal(out.data, add_cdn_noise(clean, 5.0, seed=5))
    assert not np.array_equal(out.data, add_cdn_noise(clean, 5.0, seed=0))
    assert out.data.min() >= 0.0 and out.data.max() <= 255.0

    widget.clip.value = False
    np.testing.assert_array_equal(out.data, add_cdn_noise(clean, 5.0, seed=5, clip=False))
    # Speckle of variance 0.6 on values up to 255 leaves the range on both sides.
    assert out.data.max() > 255.0 and out.data.min() < 0.0


def test_stack_gets_independent_noise_per_frame(widget, viewer, clean):
    stack = np.repeat(clean[None], 3, axis=0)
    viewer.add_image(stack, name="stack", scale=(1.0, 0.1, 0.1))
    widget.source.value = viewer.layers["stack"]
    widget.level.value = 2.0
    out = viewer.layers["stack CDN"]
    assert out.data.shape == stack.shape
    np.testing.assert_allclose(out.scale, (1.0, 0.1, 0.1))
    np.testing.assert_array_equal(out.data, add_cdn_noise(stack, 2.0, seed=0))
    assert not np.array_equal(out.data[0], out.data[1])
    assert not np.array_equal(out.data[1], out.data[2])


def test_only_image_layers_are_offered_and_the_list_follows(source, widget, viewer):
    viewer.add_points(np.zeros((2, 2)), name="points")
    viewer.add_labels(np.zeros((8, 8), dtype=np.uint8), name="labels")
    other = viewer.add_image(np.ones((8, 8)), name="other")
    assert set(widget.source.choices) == {source, other}

    other.name = "renamed"
    combo = widget.source.native
    assert "renamed" in [combo.itemText(i) for i in range(combo.count())]

    viewer.layers.remove(other)
    assert set(widget.source.choices) == {source}


def test_rgb_layer_gives_one_notification(widget, viewer, notifications):
    rgb = viewer.add_image(np.zeros((32, 32, 3), dtype=np.uint8), name="rgb", rgb=True)
    widget.source.value = rgb
    widget.level.value = 2.0
    widget.level.value = 3.0
    assert len(notifications.errors) == 1
    assert "RGB" in notifications.errors[0]
    assert [layer.name for layer in viewer.layers] == ["rgb"]


def test_apply_adds_the_output(source, widget, viewer, qtbot, clean):
    click(qtbot, widget.apply_button)
    expected = add_cdn_noise(clean, 1.0, seed=0)
    np.testing.assert_array_equal(viewer.layers["clean CDN"].data, expected)


def test_apply_without_any_image_notifies(widget, viewer, qtbot, notifications):
    click(qtbot, widget.apply_button)
    assert len(viewer.layers) == 0
    assert len(notifications.errors) == 1


def test_choosing_another_source_adds_no_layer(source, widget, viewer, clean):
    widget.level.value = 2.0
    other = viewer.add_image(clean * 0.5, name="other")
    widget.source.value = other
    assert "other CDN" not in viewer.layers
    expected = add_cdn_noise(clean, 2.0, seed=0)
    np.testing.assert_array_equal(viewer.layers["clean CDN"].data, expected)


def _choose_dose(widget) -> None:
    widget.model.value = next(k for k, v in MODELS.items() if v == "dose")


def test_dose_model_takes_the_pixel_size_from_the_layer(source, widget, viewer, clean):
    _choose_dose(widget)
    assert widget.pixel_size.value == pytest.approx(0.1)
    assert widget.dose.visible is True or not widget.native.isVisible()
    assert not widget.level.visible
    nm = viewer.add_image(clean, name="in nm", scale=(0.02, 0.02), units=("nm", "nm"))
    widget.source.value = nm
    assert widget.pixel_size.value == pytest.approx(0.2)


def test_dose_model_writes_its_own_layer(source, widget, viewer, clean):
    _choose_dose(widget)
    widget.dose.value = 5000.0
    widget.read_noise.value = 0.5
    widget.row_jitter.value = 0.3
    out = viewer.layers[output_name("clean", "dose")]
    assert out.name == "clean dose"
    expected = add_dose_noise(clean, 5000.0, pixel_size=0.1, read_noise=0.5, row_jitter=0.3, seed=0)
    np.testing.assert_array_equal(out.data, expected)
    assert out.metadata["dose"]["dose"] == pytest.approx(5000.0)
    assert "clean CDN" not in viewer.layers
    # A lower dose is noisier against the clean image.
    before = np.abs(out.data - clean).mean()
    widget.dose.value = 50.0
    assert np.abs(viewer.layers["clean dose"].data - clean).mean() > before


def test_manifest_command_is_this_widget():
    manifest = PluginManifest.from_distribution("napari-pinned")
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    assert import_python_name(commands["napari-pinned.noise"]) is NoiseWidget


def test_noise_docks_from_the_plugin_menu(make_napari_viewer, clean):
    viewer = make_napari_viewer()
    viewer.add_image(clean, name="clean")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-pinned", "CDN noise")
    assert isinstance(widget, NoiseWidget)
    widget.level.value = 2.5
    assert viewer.layers[-1].name == "clean CDN"
    np.testing.assert_array_equal(viewer.layers[-1].data, add_cdn_noise(clean, 2.5, seed=0))


def test_opening_an_rgb_image_then_applying_says_it_once(make_napari_viewer, notifications):
    # In a real viewer the new layer becomes the combo's choice by itself; that is not
    # a request for noise, so only the click on Apply reports the problem.
    viewer = make_napari_viewer()
    noise = NoiseWidget(viewer)
    viewer.window.add_dock_widget(noise)
    viewer.add_image(np.zeros((32, 32, 3), dtype=np.uint8), name="rgb", rgb=True)
    assert noise.source.value is viewer.layers["rgb"]
    assert notifications.errors == []

    noise.apply_button.native.click()
    assert len(notifications.errors) == 1
    assert "RGB" in notifications.errors[0]
    assert [layer.name for layer in viewer.layers] == ["rgb"]
