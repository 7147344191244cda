"""Render the plugin's dock widgets, at work on simulated data, into docs/images/.

Every widget is docked in a real napari window, driven the way a user would drive it,
and the whole window is saved as ``docs/images/widget-<name>.png``.  It needs a display;
on a headless machine run it on a virtual one large enough for the window::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py \\
        --only generator noise

Each widget has its own ``shoot_<name>(viewer)`` function that builds its scene; a widget
whose module cannot be imported is reported and skipped.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_pinned.noise.synthesis import add_cdn_noise
from napari_pinned.physics.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
WINDOW_SIZE = (1500, 950)
#: Docks are wide enough for their labels and spin boxes without eliding.
DOCK_MIN_WIDTH = 380


# --------------------------------------------------------------------------- helpers


def settle(ms: int = 400) -> None:
    """Let Qt lay out and paint (vispy draws on the event loop)."""
    from qtpy.QtTest import QTest

    QApplication.processEvents()
    QTest.qWait(ms)
    QApplication.processEvents()


def dock(viewer: napari.Viewer, widget, name: str) -> None:
    """Dock ``widget`` on the right, as napari's Plugins menu would."""
    dock_widget = viewer.window.add_dock_widget(widget, name=name, area="right")
    dock_widget.setMinimumWidth(DOCK_MIN_WIDTH)


def add_clean_image(viewer: napari.Viewer, material: str, zone: tuple[int, ...], size: int = 384):
    """Simulate a clean image and add it the way the generator widget does."""
    result = simulate(material, zone, shape=size, pixel_size=0.1, seed=0)
    return viewer.add_image(
        result.image,
        name=result.label(),
        scale=(0.1, 0.1),
        units=("Å", "Å"),
        colormap="gray",
        metadata={"pixel_size": 0.1, "material": result.material},
    )


def camera(viewer: napari.Viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9 on)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def grid(viewer: napari.Viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` from napari 0.9 on)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None else viewer.grid


def click(button) -> None:
    """Click a magicgui PushButton or a QPushButton."""
    native = getattr(button, "native", button)
    native.click()


# ------------------------------------------------------------------------ the scenes


def shoot_generator(viewer: napari.Viewer) -> None:
    """GaN along [11-20] with its ground-truth columns, zoomed to show the dumbbells."""
    from napari_pinned._qt.generate.widget import GeneratorWidget

    widget = GeneratorWidget(viewer)
    dock(viewer, widget, "Synthetic STEM generator")
    widget.material.value = "GaN"
    widget.image_size.value = 512
    widget.add_columns.value = True
    click(widget.generate_button)
    settle()
    viewer.reset_view()
    camera(viewer).zoom *= 2.0


def shoot_noise(viewer: napari.Viewer) -> None:
    """SrTiO3 [001] and its CDN level-2 copy side by side, zoomed to a few unit cells."""
    from napari_pinned._qt.noise.widget import NoiseWidget

    add_clean_image(viewer, "SrTiO3", (0, 0, 1))
    widget = NoiseWidget(viewer)
    dock(viewer, widget, "CDN noise")
    widget.level.value = 2.0
    grid(viewer).enabled = True
    settle()
    viewer.reset_view()
    camera(viewer).zoom *= 1.8


def wait_for(signal, timeout_ms: int = 1_800_000) -> tuple:
    """Run the event loop until ``signal`` fires; return its arguments (the train scene's
    1500 steps took over 10 minutes on 2 busy cores)."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop, received = QEventLoop(), []

    def on_signal(*args) -> None:
        received.append(args)
        loop.quit()

    signal.connect(on_signal)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec_() if hasattr(loop, "exec_") else loop.exec()
    signal.disconnect(on_signal)
    if not received:
        raise TimeoutError(f"no signal within {timeout_ms / 1000:.0f} s")
    return received[0]


#: A small model that trains in about three minutes on two CPU cores and already beats a median
#: filter on CDN; the screenshots show the docks at work, not the best achievable model.
TRAIN_SETTINGS = {"width": 8, "depth": 3, "steps": 1500, "batch": 8, "patch": 64}


def shoot_train(viewer: napari.Viewer) -> None:
    """Training on two simulated lattices with on-the-fly CDN noise; the loss curve live."""
    from napari_pinned._qt.train.data_panel import NOISE_MODES
    from napari_pinned._qt.train.widget import TrainWidget

    layers = [
        add_clean_image(viewer, "InN", (1, 1, -2, 0), size=256),
        add_clean_image(viewer, "ZrO2", (0, 0, 1), size=256),
    ]
    widget = TrainWidget(viewer)
    dock(viewer, widget, "Train PINNED")
    widget.noise_mode.setCurrentText(NOISE_MODES[0])
    widget.clean_layers.value = layers
    widget.width_spin.setValue(TRAIN_SETTINGS["width"])
    widget.depth_spin.setValue(TRAIN_SETTINGS["depth"])
    widget.steps_spin.setValue(TRAIN_SETTINGS["steps"])
    widget.batch_spin.setValue(TRAIN_SETTINGS["batch"])
    widget.patch_spin.setValue(TRAIN_SETTINGS["patch"])
    widget.device_combo.setCurrentText("cpu")
    grid(viewer).enabled = True
    viewer.reset_view()
    click(widget.start_button)
    (name,) = wait_for(widget.training_finished)
    print(f"trained {name}")
    settle()


def ensure_trained_model() -> str:
    """The model from the train scene, or the same recipe trained here without the GUI."""
    from napari_pinned._qt.shared.model_registry import get_registry
    from napari_pinned.settings import ModelConfig, TrainConfig
    from napari_pinned.training.run import train

    registry = get_registry()
    trained = [n for n in registry.names() if n.startswith("trained")]
    if trained:
        return trained[-1]
    clean = [simulate(m, shape=256, pixel_size=0.1, seed=0).image for m in ("InN", "ZrO2")]
    config = TrainConfig(
        model=ModelConfig.preset(
            "unet", width=TRAIN_SETTINGS["width"], depth=TRAIN_SETTINGS["depth"]
        ),
        steps=TRAIN_SETTINGS["steps"],
        batch_size=TRAIN_SETTINGS["batch"],
        patch_size=TRAIN_SETTINGS["patch"],
    )
    return registry.add_trained(train(config, clean, seed=0, device="cpu").run_to_end())


def shoot_denoise(viewer: napari.Viewer) -> None:
    """GaN at CDN level 2 (a material the model never saw): grid of noisy / denoised /
    reference with the metric readouts filled in."""
    from napari_pinned._qt.denoise.widget import DenoiseWidget

    model_name = ensure_trained_model()
    clean = add_clean_image(viewer, "GaN", (1, 1, -2, 0), size=256)
    noisy = viewer.add_image(
        add_cdn_noise(clean.data, 2, seed=0),
        name=f"{clean.name} CDN",
        scale=clean.scale,
        units=clean.units,
        colormap="gray",
    )
    widget = DenoiseWidget(viewer)
    dock(viewer, widget, "Denoise")
    widget.select_model(model_name)
    widget.input_layer.value = noisy
    widget.reference_layer.value = clean
    widget.device_combo.setCurrentText("cpu")
    click(widget.denoise_button)
    wait_for(widget.denoise_finished)
    widget.update_metrics()
    click(widget.compare_button)
    settle()
    viewer.reset_view()


def shoot_frames(viewer: napari.Viewer) -> None:
    """An 8-frame SrTiO3 [001] series with dose noise and drift, registered: the stack,
    its aligned copy and the drift-corrected mean side by side."""
    import numpy as np

    from napari_pinned._qt.frames.widget import FramesWidget
    from napari_pinned.noise.synthesis import add_dose_noise

    clean = simulate("SrTiO3", (0, 0, 1), shape=320, pixel_size=0.1, seed=0).image
    series = add_dose_noise(
        np.repeat(clean[None], 8, axis=0), 3000.0, pixel_size=0.1, drift=(0.6, 1.0), seed=0
    )
    viewer.add_image(series, name="SrTiO3 series", scale=(1.0, 0.1, 0.1), units=("pixel", "Å", "Å"))
    widget = FramesWidget(viewer)
    dock(viewer, widget, "Frame series")
    widget.stack_layer.value = viewer.layers["SrTiO3 series"]
    click(widget.register_button)
    wait_for(widget.registration_finished)
    grid(viewer).enabled = True
    settle()
    viewer.reset_view()


SCENES: dict[str, Callable[[napari.Viewer], None]] = {
    "generator": shoot_generator,
    "noise": shoot_noise,
    "train": shoot_train,
    "denoise": shoot_denoise,
    "frames": shoot_frames,
}


# ------------------------------------------------------------------------------ main


def quiet_napari() -> None:
    """Keep napari's start-up warnings out of the pictures (they pop up as toasts)."""
    warnings.filterwarnings("ignore", message="System theme detection requires")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # Under PyQt5 (not the project's binding, but a user may have it) napari 0.9's
    # deprecation notice is a notification, not a warning; napari shows it once per
    # process, from this private flag.
    try:
        import napari._qt.qt_main_window as qt_main_window

        qt_main_window.SHOW_QT_WARNING = False
    except (ImportError, AttributeError):
        pass


def shoot(name: str, out_dir: Path) -> Path | None:
    """Build one scene in a fresh viewer and save the window; ``None`` if skipped."""
    viewer = napari.Viewer(title=f"napari-pinned: {name}", show=True)
    try:
        viewer.window.resize(*WINDOW_SIZE)
        try:
            SCENES[name](viewer)
        except ImportError as exc:
            print(f"skipped {name}: its widget cannot be imported ({exc})", file=sys.stderr)
            return None
        settle(800)
        path = out_dir / f"widget-{name}.png"
        image = viewer.screenshot(path=str(path), canvas_only=False, flash=False)
        print(f"wrote {path.relative_to(ROOT)} ({image.shape[1]}x{image.shape[0]})")
        return path
    finally:
        viewer.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(SCENES),
        default=list(SCENES),
        help="widgets to render (default: all)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="output folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    quiet_napari()
    failed = []
    for name in args.only:
        try:
            shoot(name, args.out.resolve())
        except Exception:
            traceback.print_exc()
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
