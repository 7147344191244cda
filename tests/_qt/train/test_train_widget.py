"""Train dock: data checks, a live run with its curves, stop-keeps-best, a responsive GUI,
saving, fine-tuning, errors, and clean shutdown when the dock or the viewer closes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from qtpy.QtCore import Qt, QThreadPool, QTimer

from napari_pinned._qt.shared.model_registry import DEFAULT_NAME, get_registry
from napari_pinned._qt.shared.train_run import format_duration
from napari_pinned._qt.train.data_panel import NOISE_MODES
from napari_pinned._qt.train.loss_plot import LOSS_TERMS
from napari_pinned._qt.train.widget import TrainWidget
from napari_pinned.nn.network import ModelBundle
from napari_pinned.nn.resolve import load_model
from napari_pinned.physics.simulate import simulate
from napari_pinned.training.run import TrainingRun

WAIT_MS = 60_000


@pytest.fixture
def viewer(make_napari_viewer):
    """A real napari viewer (closed by napari's fixture) for docking the widget."""
    return make_napari_viewer()


@pytest.fixture(scope="module")
def clean_image() -> np.ndarray:
    return simulate("SrTiO3", shape=96, seed=0).image


def _dock(viewer, qtbot) -> TrainWidget:
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train PINNED")
    return widget


def _tiny_settings(widget: TrainWidget, steps: int) -> None:
    """What a user would type for a quick run: a 4-channel depth-2 U-Net on small patches."""
    widget.architecture.setCurrentText("unet")
    widget.width_spin.setValue(4)
    widget.depth_spin.setValue(2)
    widget.steps_spin.setValue(steps)
    widget.batch_spin.setValue(2)
    widget.patch_spin.setValue(32)
    widget.lr_spin.setValue(0.003)
    widget.device_combo.setCurrentText("cpu")


def _select(widget: TrainWidget, clean, noisy=()) -> None:
    widget.clean_layers.value = list(clean)
    widget.noisy_layers.value = list(noisy)


@pytest.fixture
def no_threads_left():
    yield
    # Every test must leave napari's thread pool idle: no worker outlives its test.
    assert QThreadPool.globalInstance().waitForDone(WAIT_MS)


def test_defaults_come_from_the_core(viewer, qtbot):
    from napari_pinned.settings import LossWeights, TrainConfig

    widget = _dock(viewer, qtbot)
    weights = LossWeights()
    assert widget.weight_spins["tv"].value() == pytest.approx(weights.tv)
    assert widget.weight_spins["sf"].value() == pytest.approx(weights.sf)
    assert widget.weight_spins["brightness"].value() == pytest.approx(weights.brightness)
    assert widget.weight_spins["contrast"].value() == pytest.approx(weights.contrast)
    defaults = TrainConfig()
    assert widget.steps_spin.value() == defaults.steps
    assert (widget.level_low.value(), widget.level_high.value()) == defaults.noise_levels
    widget.architecture.setCurrentText("paper")
    assert (widget.width_spin.value(), widget.depth_spin.value()) == (32, 3)
    assert widget.device_label.text() == "Device: cpu" or "cuda" in widget.device_label.text()


def test_collapsed_settings_still_reach_the_config(viewer, qtbot):
    widget = _dock(viewer, qtbot)
    assert not widget.advanced_section.isExpanded()
    assert not widget.model_panel.network_section.isExpanded()
    # Steps and device stay in view; what most runs leave alone is collapsed.
    assert widget.advanced_section.isAncestorOf(widget.batch_spin)
    assert widget.model_panel.network_section.isAncestorOf(widget.width_spin)
    assert not widget.advanced_section.isAncestorOf(widget.steps_spin)
    widget.batch_spin.setValue(3)
    widget.lr_spin.setValue(0.01)
    widget.weight_spins["tv"].setValue(0.5)
    widget.architecture.setCurrentText("paper")
    config = widget.train_config()
    assert config.batch_size == 3 and config.learning_rate == pytest.approx(0.01)
    assert config.loss_weights.tv == pytest.approx(0.5)
    assert config.model.architecture == "paper" and config.model.width == 32


def test_the_loss_plot_follows_the_viewer_theme(viewer, qtbot):
    from napari_pinned._qt.train.loss_plot import theme_colours

    widget = _dock(viewer, qtbot)
    viewer.theme = "light"
    background, text = theme_colours("light")
    assert widget.loss_plot.graphics.backgroundBrush().color().name() == background
    assert widget.loss_plot.curves["total"].opts["pen"].color().name() == text
    viewer.theme = "dark"
    assert widget.loss_plot.graphics.backgroundBrush().color().name() == theme_colours("dark")[0]


def test_bad_data_is_reported_and_nothing_starts(viewer, qtbot, notifications, clean_image):
    widget = _dock(viewer, qtbot)
    a = viewer.add_image(clean_image, name="a")
    b = viewer.add_image(clean_image.copy(), name="b")
    small = viewer.add_image(clean_image[:64, :64], name="small")

    assert not widget.start()  # nothing selected
    assert "select at least one clean" in notifications.errors[-1]

    widget.noise_mode.setCurrentText(NOISE_MODES[1])  # paired
    assert widget.noisy_layers.native.isEnabled() and not widget.level_low.isEnabled()
    _select(widget, [a, b], [small])
    assert not widget.start()
    assert "2 clean layer(s) but 1 noisy" in notifications.errors[-1]

    _select(widget, [a], [small])
    assert not widget.start()
    assert "shape (96, 96)" in notifications.errors[-1] and "'small'" in notifications.errors[-1]

    _select(widget, [a], [a])
    assert not widget.start()
    assert "both clean and noisy" in notifications.errors[-1]

    # Invalid settings are caught before anything starts.
    widget.noise_mode.setCurrentText(NOISE_MODES[0])
    _tiny_settings(widget, 5)
    widget.level_low.setValue(4.0)
    widget.level_high.setValue(2.0)
    _select(widget, [a])
    assert not widget.start()
    assert "noise_levels" in notifications.errors[-1]
    assert not widget.is_running

    # Too small for the patch size: the core finds out in the worker, and says so.
    widget.level_low.setValue(1.0)
    widget.patch_spin.setValue(96)
    with qtbot.waitSignal(widget.training_finished, timeout=WAIT_MS) as finished:
        assert widget.start()
    assert finished.args[0] is None
    assert "too small" in notifications.errors[-1]
    assert "could not start" in widget.status_label.text()
    assert not widget.is_running and widget.start_button.isEnabled()
    assert len(get_registry()) == 0


def test_run_to_end_plots_every_term_and_registers_the_model(
    viewer, qtbot, notifications, clean_image, no_threads_left
):
    widget = _dock(viewer, qtbot)
    clean = viewer.add_image(clean_image, name="clean")
    noisy = viewer.add_image(
        np.clip(clean_image + np.random.default_rng(0).normal(0, 25, clean_image.shape), 0, 255),
        name="noisy",
    )
    _tiny_settings(widget, 12)
    widget.noise_mode.setCurrentText(NOISE_MODES[1])
    _select(widget, [clean], [noisy])
    assert "clean ↔ noisy" in widget.pairs_label.text()

    with qtbot.waitSignal(widget.training_finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(widget.start_button, Qt.MouseButton.LeftButton)
        assert widget.is_running and not widget.start_button.isEnabled()
    name = finished.args[0]
    assert name is not None and name.startswith("trained 1 (unet, 12 steps, ")
    assert name.endswith(" dB)")
    assert get_registry().names() == [name]
    bundle = get_registry().model_source(name)
    assert isinstance(bundle, ModelBundle) and bundle.metadata["noise"] == "paired"
    assert bundle.config.width == 4 and bundle.config.depth == 2
    assert widget.save_button.isEnabled() and widget.start_button.isEnabled()
    assert "Step 12/12" in widget.status_label.text() or "finished after 12" in (
        widget.status_label.text()
    )

    plot = widget.loss_plot
    np.testing.assert_array_equal(plot.steps, np.arange(1, 13))
    assert all(np.all(np.isfinite(plot.term(t))) for t in LOSS_TERMS)
    val_steps, val_psnr = plot.validation
    assert val_steps[-1] == 12 and np.all(np.isfinite(val_psnr))
    assert bundle.metadata["val_psnr"] == pytest.approx(val_psnr.max())
    # The curves show every step: the last one came with the run's last progress update.
    np.testing.assert_array_equal(plot.curves["total"].getOriginalDataset()[0], np.arange(1, 13))
    np.testing.assert_array_equal(plot.curves["psnr"].getOriginalDataset()[0], val_steps)
    assert not widget.loss_plot.grab().isNull()
    assert any("ready in the Denoise dock" in m for m in notifications.infos)


@pytest.mark.parametrize(
    ("mode", "noise"),
    [(NOISE_MODES[2], "dose"), (NOISE_MODES[3], "mix"), (NOISE_MODES[4], "blind-spot")],
)
def test_dose_and_blind_spot_modes_train_from_the_dock(
    viewer, qtbot, clean_image, no_threads_left, mode, noise
):
    widget = _dock(viewer, qtbot)
    clean = viewer.add_image(clean_image, name="clean")
    noisy = viewer.add_image(
        np.random.default_rng(1).poisson(clean_image / clean_image.max() * 20.0).astype(float),
        name="noisy",
    )
    _tiny_settings(widget, 6)
    widget.noise_mode.setCurrentText(mode)
    blind = noise == "blind-spot"
    # Only the controls that matter for the mode are enabled.
    assert widget.clean_layers.native.isEnabled() is not blind
    assert widget.noisy_layers.native.isEnabled() is blind
    assert widget.counts_low.isEnabled() is (noise in ("dose", "mix"))
    assert widget.level_low.isEnabled() is (noise == "mix")
    widget.counts_low.setValue(2.0)
    _select(widget, [clean], [noisy] if blind else [])
    config = widget.train_config()
    assert config.self_supervised == ("blind-spot" if blind else None)
    assert config.dose_counts[0] == pytest.approx(2.0)
    with qtbot.waitSignal(widget.training_finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(widget.start_button, Qt.MouseButton.LeftButton)
    bundle = get_registry().model_source(finished.args[0])
    assert bundle.metadata["noise"] == noise


def test_train_for_this_image_fine_tunes_the_default_on_matched_data(
    viewer, qtbot, notifications, clean_image, no_threads_left, monkeypatch
):
    import napari_pinned

    shipped = Path(napari_pinned.__file__).parent / "data" / "models" / "default.pt"
    monkeypatch.setattr("napari_pinned.nn.model_files.default_model_path", lambda: shipped)
    widget = _dock(viewer, qtbot)
    micrograph = viewer.add_image(clean_image, name="scan", scale=(0.008, 0.008), units="nm")
    uncalibrated = viewer.add_image(clean_image, name="raw")
    _tiny_settings(widget, 3)
    widget.match_layer.value = uncalibrated
    assert not widget.train_for_image()
    assert any("no pixel size" in m for m in notifications.errors)

    widget.match_layer.value = micrograph
    widget.match_material.setCurrentText("SrTiO3")
    widget.match_count.setValue(2)
    with qtbot.waitSignal(widget.training_finished, timeout=WAIT_MS) as finished:
        assert widget.train_for_image()
    synthetic = viewer.layers["SrTiO3 like scan"]
    assert synthetic.data.shape == (2, 256, 256)
    np.testing.assert_allclose(synthetic.scale, (1.0, 0.08, 0.08))
    bundle = get_registry().model_source(finished.args[0])
    assert bundle.metadata["noise"] == "stem"
    assert bundle.metadata["init_model"].endswith("default.pt")  # fine-tuned from the default
    assert bundle.config == load_model("default").config  # its architecture kept
    # ... and its patch size, whatever the dock was set to (32 by _tiny_settings).
    assert bundle.metadata["patch_size"] == load_model("default").metadata["patch_size"] > 32
    # Again with the default already chosen: the patch size is set all the same.
    widget.patch_spin.setValue(32)
    with qtbot.waitSignal(widget.training_finished, timeout=WAIT_MS) as again:
        assert widget.train_for_image()
    again_bundle = get_registry().model_source(again.args[0])
    assert again_bundle.metadata["patch_size"] == bundle.metadata["patch_size"]


def test_the_default_with_noise_it_cannot_learn_from_is_refused_before_a_run(
    viewer, qtbot, notifications, clean_image, monkeypatch
):
    import napari_pinned

    shipped = Path(napari_pinned.__file__).parent / "data" / "models" / "default.pt"
    monkeypatch.setattr("napari_pinned.nn.model_files.default_model_path", lambda: shipped)
    widget = _dock(viewer, qtbot)
    layer = viewer.add_image(clean_image, name="clean")
    _tiny_settings(widget, 3)
    _select(widget, [layer])
    widget.model_panel.refresh_init_models()
    widget.init_model.setCurrentText(DEFAULT_NAME)
    assert widget.init_model.currentText() == DEFAULT_NAME
    # Chosen by hand, the default brings the patch size it learned from.
    assert widget.patch_spin.value() == load_model("default").metadata["patch_size"] > 32
    widget.noise_mode.setCurrentText(NOISE_MODES[2])  # dose noise
    assert not widget.start()
    assert not widget.is_running
    assert "noise-aware" in notifications.errors[-1] and NOISE_MODES[5] in notifications.errors[-1]
    # Blind-spot training keeps the dock's patch size (it loses more on large ones).
    widget.noise_mode.setCurrentText(NOISE_MODES[4])
    widget.init_model.setCurrentIndex(0)
    widget.patch_spin.setValue(64)
    widget.init_model.setCurrentText(DEFAULT_NAME)
    assert widget.patch_spin.value() == 64


def test_blind_spot_without_noisy_layers_is_reported(viewer, qtbot, notifications, clean_image):
    widget = _dock(viewer, qtbot)
    viewer.add_image(clean_image, name="clean")
    widget.noise_mode.setCurrentText(NOISE_MODES[4])
    qtbot.mouseClick(widget.start_button, Qt.MouseButton.LeftButton)
    assert not widget.is_running
    assert any("noisy Image layer" in m for m in notifications.errors)


@pytest.mark.slow
def test_gui_stays_responsive_and_stop_keeps_best(viewer, qtbot, clean_image, no_threads_left):
    widget = _dock(viewer, qtbot)
    layer = viewer.add_image(clean_image, name="clean")
    _tiny_settings(widget, 100_000)
    _select(widget, [layer])

    ticks = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    assert widget.start()
    timer.start()
    started = time.perf_counter()
    qtbot.waitUntil(lambda: widget.loss_plot.steps.size >= 30, timeout=WAIT_MS)
    qtbot.wait(300)
    elapsed = time.perf_counter() - started
    timer.stop()
    # A frozen event loop would deliver at most one (coalesced) tick.  A live one delivers
    # about elapsed / 10 ms; a fifth of that leaves room for a loaded 2-core machine.
    assert len(ticks) >= max(10, 0.2 * elapsed / 0.010), (len(ticks), elapsed)
    assert widget.is_running

    with qtbot.waitSignal(widget.training_finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(widget.stop_button, Qt.MouseButton.LeftButton)
    name = finished.args[0]
    bundle = get_registry().model_source(name)
    steps = bundle.metadata["steps"]
    assert 30 <= steps < 100_000
    assert f"{steps} steps" in name
    assert bundle.metadata["val_psnr"] is not None  # stopping validates the last weights
    assert widget.last_bundle is bundle
    assert "stopped after" in widget.status_label.text()


def test_a_stop_between_two_steps_reads_as_stopped(
    viewer, qtbot, clean_image, monkeypatch, no_threads_left
):
    # The race of a loaded machine, made certain: the worker is held after its third
    # step, before it looks at the stop flag, so the stop ends the run without another
    # progress record (the last record says stopped=False).
    import threading

    gate = threading.Event()
    original = TrainingRun.__next__

    def held(self):
        if self.step >= 3:
            gate.wait(WAIT_MS / 1000)
        return original(self)

    monkeypatch.setattr(TrainingRun, "__next__", held)
    widget = _dock(viewer, qtbot)
    _tiny_settings(widget, 1000)
    _select(widget, [viewer.add_image(clean_image, name="clean")])
    assert widget.start()
    qtbot.waitUntil(lambda: widget.loss_plot.steps.size >= 3, timeout=WAIT_MS)
    with qtbot.waitSignal(widget.training_finished, timeout=WAIT_MS):
        widget.stop()
        gate.set()
    assert widget.last_bundle.metadata["steps"] == 3
    assert "stopped after 3 steps" in widget.status_label.text()


def test_stop_before_the_first_step_gives_no_model(viewer, qtbot, clean_image, monkeypatch):
    import napari_pinned.training.run as training

    # Hold the worker while it builds the run until the stop has been sent, so the stop
    # arrives before the run exists however fast or loaded the machine is.
    stop_sent = threading.Event()
    build = training.train

    def slow_build(*args, **kwargs):
        assert stop_sent.wait(WAIT_MS / 1000)
        return build(*args, **kwargs)

    monkeypatch.setattr(training, "train", slow_build)
    widget = _dock(viewer, qtbot)
    _tiny_settings(widget, 1000)
    _select(widget, [viewer.add_image(clean_image, name="clean")])
    with qtbot.waitSignal(widget.training_finished, timeout=WAIT_MS) as finished:
        assert widget.start()
        widget.stop()  # the run is still being built in the worker: the stop must not be lost
        stop_sent.set()
    assert finished.args[0] is None and len(get_registry()) == 0
    assert "before the first step" in widget.status_label.text()
    assert widget.loss_plot.steps.size == 0


def test_save_writes_a_loadable_model(viewer, qtbot, notifications, clean_image, tmp_path):
    widget = _dock(viewer, qtbot)
    assert widget.save_model(tmp_path / "none.pt") is None
    assert "no trained model" in notifications.errors[-1]

    layer = viewer.add_image(clean_image, name="clean")
    _tiny_settings(widget, 3)
    _select(widget, [layer])
    with qtbot.waitSignal(widget.training_finished, timeout=WAIT_MS):
        widget.start()
    path = widget.save_model(tmp_path / "my-model")
    assert path == tmp_path / "my-model.pt" and path.is_file()
    loaded = load_model(path)
    assert loaded.config == widget.last_bundle.config
    original = widget.last_bundle.model.state_dict()
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, original[key])
    assert any(str(path) in m for m in notifications.infos)

    assert widget.save_model(tmp_path / "missing-folder" / "m.pt") is None
    assert "does not exist" in notifications.errors[-1]


def test_fine_tuning_keeps_the_starting_architecture(viewer, qtbot, clean_image):
    widget = _dock(viewer, qtbot)
    layer = viewer.add_image(clean_image, name="clean")
    _tiny_settings(widget, 3)
    _select(widget, [layer])
    with qtbot.waitSignal(widget.training_finished, timeout=WAIT_MS) as first:
        widget.start()
    assert widget.init_model.findText(first.args[0]) > 0  # offered as a starting point

    widget.patch_spin.setValue(40)
    widget.init_model.setCurrentText(first.args[0])
    assert widget.patch_spin.value() == 32  # the patch size the start model learned from
    assert not widget.width_spin.isEnabled()
    widget.width_spin.setValue(8)  # ignored: fine-tuning keeps the model's own width
    with qtbot.waitSignal(widget.training_finished, timeout=WAIT_MS) as second:
        widget.start()
    tuned = get_registry().model_source(second.args[0])
    assert second.args[0].startswith("trained 2 ")
    assert tuned.config.width == 4
    assert tuned.metadata["init_model"] == "<memory>"


def test_failure_mid_run_is_notified_and_keeps_the_best(
    viewer, qtbot, notifications, clean_image, monkeypatch
):
    original = TrainingRun._train_step

    def diverge_at_step_8(self, lr):
        if self.step == 7:
            raise FloatingPointError("training diverged at step 8 (loss nan)")
        return original(self, lr)

    monkeypatch.setattr(TrainingRun, "_train_step", diverge_at_step_8)
    widget = _dock(viewer, qtbot)
    layer = viewer.add_image(clean_image, name="clean")
    _tiny_settings(widget, 10)  # validates every 5 steps, so step 5 holds a best model
    _select(widget, [layer])
    with qtbot.waitSignal(widget.training_finished, timeout=WAIT_MS) as finished:
        widget.start()
    assert any("training diverged at step 8" in m for m in notifications.errors)
    assert finished.args[0] is not None
    assert get_registry().model_source(finished.args[0]).metadata["best_step"] == 5
    assert any("kept the best model" in m for m in notifications.warnings)
    assert widget.start_button.isEnabled() and not widget.is_running


@pytest.mark.parametrize("how", ["viewer", "dock"])
def test_closing_mid_run_stops_the_worker(make_napari_viewer, qtbot, clean_image, how):
    viewer = make_napari_viewer()
    widget = _dock(viewer, qtbot)
    layer = viewer.add_image(clean_image, name="clean")
    _tiny_settings(widget, 100_000)
    _select(widget, [layer])
    assert widget.start()
    job = widget._runner.job
    qtbot.waitUntil(lambda: widget.loss_plot.steps.size >= 3, timeout=WAIT_MS)
    if how == "viewer":
        viewer.close()
    else:
        viewer.window.remove_dock_widget(widget)
    # shutdown() waited for the thread: it is over by the time close returns.
    assert job.done
    assert not widget.is_running
    assert QThreadPool.globalInstance().waitForDone(1000)
    names = get_registry().names()
    assert len(names) == 1 and names[0].startswith("trained 1 ")
    if how == "dock":
        widget.close()


def test_format_duration():
    assert format_duration(0) == "0:00"
    assert format_duration(61.4) == "1:01"
    assert format_duration(3 * 3600 + 5) == "3:00:05"
    assert format_duration(float("nan")) == "?"


def test_the_train_and_noise_docks_say_which_dose_they_mean(viewer, qtbot):
    """Training dose is detected e⁻ per pixel, the Noise dock's is beam e⁻ per Å²: each
    label names its unit, and each tooltip says how one converts to the other."""
    from qtpy.QtWidgets import QLabel

    from napari_pinned._qt.noise.widget import NoiseWidget

    train = _dock(viewer, qtbot)
    noise = NoiseWidget(viewer)
    viewer.window.add_dock_widget(noise, name="Noise PINNED")

    train_labels = [label.text() for label in train.data_panel.findChildren(QLabel)]
    assert "Detected dose (e⁻/px)" in train_labels
    assert "Dose (e⁻/px)" not in train_labels  # the old label, ambiguous beside e⁻/Å²
    assert "e⁻/Å²" in train.counts_low.toolTip() and "pixel size²" in train.counts_low.toolTip()

    noise_labels = [label.text() for label in noise.native.findChildren(QLabel)]
    assert "Dose (e⁻/Å²)" in noise_labels
    assert "e⁻/px" in noise.dose.tooltip and "pixel size²" in noise.dose.tooltip


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 2), (3, 2), (8, 7)])
def test_cpu_training_leaves_a_core_to_the_gui_from_three_up(cores, threads):
    from napari_pinned._qt.shared.train_run import dock_training_threads

    assert dock_training_threads(cores) == threads
