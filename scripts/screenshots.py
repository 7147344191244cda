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

from napari_pinned.noise import add_cdn_noise
from napari_pinned.simulate import simulate

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
    from napari_pinned._qt.generator_widget import GeneratorWidget

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
    from napari_pinned._qt.noise_widget import NoiseWidget

    add_clean_image(viewer, "SrTiO3", (0, 0, 1))
    widget = NoiseWidget(viewer)
    dock(viewer, widget, "CDN noise")
    widget.level.value = 2.0
    grid(viewer).enabled = True
    settle()
    viewer.reset_view()
    camera(viewer).zoom *= 1.8


def shoot_train(viewer: napari.Viewer) -> None:
    """Clean/noisy Si [110] pairs selected for training (the lead finishes this scene)."""
    from napari_pinned._qt.train_widget import TrainWidget

    clean = add_clean_image(viewer, "Si", (1, 1, 0))
    noisy = add_cdn_noise(clean.data, 3, seed=0)
    viewer.add_image(
        noisy, name=f"{clean.name} CDN", scale=clean.scale, units=clean.units, colormap="gray"
    )
    widget = TrainWidget(viewer)
    dock(viewer, widget, "Train PINNED")


def shoot_denoise(viewer: napari.Viewer) -> None:
    """A noisy GaN image ready to denoise (the lead finishes this scene)."""
    from napari_pinned._qt.denoise_widget import DenoiseWidget

    clean = add_clean_image(viewer, "GaN", (1, 1, -2, 0))
    noisy = add_cdn_noise(clean.data, 3, seed=0)
    viewer.add_image(
        noisy, name=f"{clean.name} CDN", scale=clean.scale, units=clean.units, colormap="gray"
    )
    widget = DenoiseWidget(viewer)
    dock(viewer, widget, "Denoise")


SCENES: dict[str, Callable[[napari.Viewer], None]] = {
    "generator": shoot_generator,
    "noise": shoot_noise,
    "train": shoot_train,
    "denoise": shoot_denoise,
}


# ------------------------------------------------------------------------------ main


def quiet_napari() -> None:
    """Keep napari's start-up warnings out of the pictures (they pop up as toasts)."""
    warnings.filterwarnings("ignore", message="System theme detection requires")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # The PyQt5 deprecation notice is a notification, not a warning; napari shows it
    # once per process, from this private flag.
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
        help="widgets to render (default: all four)",
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
