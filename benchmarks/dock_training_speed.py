"""How fast the Train dock trains in a drawn napari window, against the same run headless.

Each measurement runs in its own process, alternately headless and in the dock (A B A B),
so that a change of load on a shared machine affects both alike:

* **headless**: :func:`napari_pinned.training.run.train` iterated to the end, no Qt at all;
* **dock**: ``napari.Viewer(show=True)`` with the training images as layers, the Train
  dock added as the plugin adds it (``add_plugin_dock_widget``), its controls set, Start
  clicked, and napari's event loop running until the dock reports the end of the run —
  what a user sees, drawn on the X server (run it under Xvfb on a machine without one).

Both train the same :class:`~napari_pinned.training.run.TrainConfig`: the dock's own config
(``TrainWidget.train_config``) is checked against the headless one before Start.  Speed
is steps per second from the run's own records (``TrainProgress.elapsed``, the time since
the first step), leaving out the first ``--warmup`` steps; set-up (imports, the window,
building the network) is not counted.  The dock rows also say how much CPU the GUI
thread and the whole process took, how often the worker signalled the GUI thread and how
often the window was repainted (per second of the run, set-up included).  ``--spinner``
measures instead what napari's activity spinner alone costs an idle drawn viewer.

    xvfb-run -a -s "-screen 0 1920x1200x24" python benchmarks/dock_training_speed.py
    xvfb-run -a -s "-screen 0 1920x1200x24" python benchmarks/dock_training_speed.py \\
        --steps 300 --repeats 3 --width 16 --threads 1 --window 1900x1150
    xvfb-run -a -s "-screen 0 1920x1200x24" python benchmarks/dock_training_speed.py --spinner

Prints Markdown tables (paste them into docs/benchmarks.md with the machine they ran on).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

_RESULT = "RESULT "
#: Interval (ms) of the timer that probes the GUI thread's responsiveness.
PROBE_MS = 20
#: Stand-ins for the user's clean images, one layer each.
MATERIALS = ("SrTiO3", "GaN")


def bench_config(args: argparse.Namespace, threads: int):
    """The training config both measurements run (the dock's defaults for the rest)."""
    from napari_pinned.settings import ModelConfig, TrainConfig

    return TrainConfig(
        model=ModelConfig.preset("unet", width=args.width, depth=args.depth),
        steps=args.steps,
        batch_size=args.batch,
        patch_size=args.patch,
        num_threads=threads,
    )


def dock_threads() -> int:
    """The torch threads the Train dock picks on this machine (``TrainWidget.train_config``)."""
    from napari_pinned._qt.shared.train_run import dock_training_threads

    return dock_training_threads()


def images(size: int) -> list:
    from napari_pinned.physics.simulate import simulate

    return [simulate(m, shape=size, seed=i).image for i, m in enumerate(MATERIALS)]


def steps_per_second(history: list, warmup: int) -> float:
    """Steps per second between the end of step ``warmup`` and the last step."""
    first = history[warmup - 1] if warmup > 0 else None
    start = 0.0 if first is None else first.elapsed
    return (len(history) - warmup) / (history[-1].elapsed - start)


# --------------------------------------------------------------------------- one run
def run_headless(args: argparse.Namespace) -> dict[str, Any]:
    from napari_pinned.training.run import train

    threads = args.threads or dock_threads()
    config = bench_config(args, threads)
    clean = images(args.size)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    run = train(config, clean, None, seed=0, device="cpu")
    history = list(run)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "mode": "headless",
        "steps": len(history),
        "steps_per_s": steps_per_second(history, args.warmup),
        "wall_s": wall,
        "process_cpu": cpu / wall,
    }


def run_dock(args: argparse.Namespace) -> dict[str, Any]:
    import napari
    from qtpy.QtCore import QEvent, QEventLoop, QObject, QTimer

    from napari_pinned._qt.train.widget import TrainWidget

    threads = args.threads or dock_threads()
    config = bench_config(args, threads)
    if threads != dock_threads():
        # The dock derives its thread count from the machine; follow --threads instead.
        from dataclasses import replace

        own = TrainWidget.train_config
        TrainWidget.train_config = lambda self: replace(own(self), num_threads=threads)

    clean = images(args.size)
    viewer = napari.Viewer(show=True)
    window = viewer.window._qt_window
    if args.window:
        window.resize(*(int(v) for v in args.window.lower().split("x")))
    layers = [viewer.add_image(image, name=m) for image, m in zip(clean, MATERIALS, strict=True)]
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-pinned", "Train PINNED")
    assert isinstance(widget, TrainWidget), type(widget)
    _wait(1.0)  # let the window map and draw before anything is timed

    widget.architecture.setCurrentText("unet")
    widget.width_spin.setValue(args.width)
    widget.depth_spin.setValue(args.depth)
    widget.steps_spin.setValue(args.steps)
    widget.batch_spin.setValue(args.batch)
    widget.patch_spin.setValue(args.patch)
    widget.device_combo.setCurrentText("cpu")
    widget.seed_spin.setValue(0)
    widget.clean_layers.value = layers
    if widget.train_config() != config:
        raise SystemExit(f"the dock would train\n{widget.train_config()}\nnot\n{config}")

    class Counter(QObject):
        """Counts the window's repaints (one UpdateRequest per backing-store flush)."""

        updates = 0

        def eventFilter(self, obj, event) -> bool:
            if event.type() == QEvent.Type.UpdateRequest:
                self.updates += 1
            return False

    counter = Counter()
    window.installEventFilter(counter)
    received = [0]
    handle: list = []
    loop = QEventLoop()
    widget.training_finished.connect(lambda _name: loop.quit())
    QTimer.singleShot(int(args.timeout * 1000), loop.quit)

    def click() -> None:
        widget.start_button.click()
        handle.append(widget._handle)
        # Every signal the worker sends to the GUI thread with records.
        widget._runner.job.worker.yielded.connect(
            lambda _r: received.__setitem__(0, received[0] + 1)
        )

    QTimer.singleShot(0, click)
    # How responsive the GUI stays: a 20-ms timer's ticks; a late tick is a click or a
    # pan that waits as long.
    ticks: list[float] = []
    probe = QTimer()
    probe.setInterval(PROBE_MS)
    probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
    probe.start()
    gui0, cpu0, wall0 = time.thread_time(), time.process_time(), time.perf_counter()
    loop.exec_()
    wall = time.perf_counter() - wall0
    probe.stop()
    gaps = [1000.0 * (b - a) for a, b in itertools.pairwise(ticks)] or [math.nan]
    gui, cpu = time.thread_time() - gui0, time.process_time() - cpu0
    window.removeEventFilter(counter)
    run = handle[0].run if handle else None
    if run is None or widget.is_running or run.step != args.steps:
        raise SystemExit(f"the dock's run did not finish: {widget.status_label.text()}")
    result = {
        "mode": "dock",
        "steps": len(run.history),
        "steps_per_s": steps_per_second(run.history, args.warmup),
        "wall_s": wall,
        "process_cpu": cpu / wall,
        "gui_cpu": gui / wall,
        "signals_per_s": received[0] / wall,
        "repaints_per_s": counter.updates / wall,
        "gui_gap_p95_ms": statistics.quantiles(gaps, n=20)[-1] if len(gaps) > 1 else gaps[0],
        "gui_gap_max_ms": max(gaps),
        # Batches of records the GUI thread handed to the dock (the runner's count).
        "batches_per_s": getattr(widget._runner, "batches", received[0]) / wall,
        "window": f"{window.width()}x{window.height()}",
        "renderer": _gl_renderer(viewer),
    }
    viewer.close()
    return result


def run_spinner(args: argparse.Namespace) -> dict[str, Any]:
    """CPU an idle drawn viewer takes with a napari progress bar open: spinner animated,
    then held still as the dock's job runner holds it (no training)."""
    import napari
    from napari.utils import progress

    from napari_pinned._qt.shared.job_runner import _hold_activity_spinner

    viewer = napari.Viewer(show=True)
    window = viewer.window._qt_window
    if args.window:
        window.resize(*(int(v) for v in args.window.lower().split("x")))
    for image, m in zip(images(args.size), MATERIALS, strict=True):
        viewer.add_image(image, name=m)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-pinned", "Train PINNED")
    _wait(1.0)

    def cpu(seconds: float = 8.0) -> float:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        _wait(seconds)
        return (time.process_time() - cpu0) / (time.perf_counter() - wall0)

    result: dict[str, Any] = {"mode": "spinner", "idle": cpu()}
    bar = progress(total=100, desc="spinner cost")
    result["spinner_running"] = cpu()
    _hold_activity_spinner(widget)
    result["spinner_held"] = cpu()
    bar.close()
    result["window"] = f"{window.width()}x{window.height()}"
    result["renderer"] = _gl_renderer(viewer)
    viewer.close()
    return result


def _gl_renderer(viewer) -> str:
    """The OpenGL renderer drawing the canvas ("llvmpipe ..." for Mesa's software one)."""
    from vispy.gloo import gl

    canvas = viewer.window._qt_viewer.canvas._scene_canvas
    canvas.native.makeCurrent()
    return str(gl.glGetParameter(gl.GL_RENDERER))


def _wait(seconds: float) -> None:
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec_()


# --------------------------------------------------------------------------- driver
def measure(mode: str, argv: list[str]) -> dict[str, Any]:
    """One measurement in a fresh process (no torch or Qt state shared between them)."""
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as config_dir:
        # Neither the user's napari settings nor their changes at exit.
        env["NAPARI_CONFIG"] = os.path.join(config_dir, "settings.yaml")
        done = subprocess.run(
            [sys.executable, __file__, *argv, "--only", mode],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    for line in done.stdout.splitlines():
        if line.startswith(_RESULT):
            result = json.loads(line[len(_RESULT) :])
            result["load_average"] = os.getloadavg()[0]
            return result
    raise RuntimeError(f"{mode} run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def _spread(values: list[float], spec: str) -> str:
    middle = statistics.median(values)
    return f"{middle:{spec}} ({min(values):{spec}}–{max(values):{spec}})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="headless/dock pairs")
    parser.add_argument("--threads", type=int, help="torch threads (default: the dock's)")
    parser.add_argument("--width", type=int, default=16, help="U-Net width")
    parser.add_argument("--depth", type=int, default=2, help="U-Net depth")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--size", type=int, default=256, help="side of each training image")
    parser.add_argument("--warmup", type=int, default=10, help="first steps left out")
    parser.add_argument("--window", help="resize napari's window, e.g. 1600x1000")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per dock run")
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument(
        "--spinner",
        action="store_true",
        help="only measure the CPU an idle viewer takes with napari's spinner animated or held",
    )
    parser.add_argument("--only", choices=("headless", "dock", "spinner"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.only:
        import napari_pinned

        runs = {"headless": run_headless, "dock": run_dock, "spinner": run_spinner}
        result = runs[args.only](args)
        result["package"] = os.path.dirname(napari_pinned.__file__)
        print(_RESULT + json.dumps(result), flush=True)
        return

    argv = sys.argv[1:]
    if args.spinner:
        cost = measure("spinner", argv)
        print(f"\nIdle viewer, window {cost['window']}, {cost['renderer']}\n")
        print("| napari progress bar | process CPU |")
        print("|---|---|")
        print(f"| none | {cost['idle']:.0%} |")
        print(f"| open, spinner animated (napari) | {cost['spinner_running']:.0%} |")
        print(f"| open, spinner held (JobRunner) | {cost['spinner_held']:.0%} |")
        return
    threads = args.threads or dock_threads()
    load = os.getloadavg()
    pairs = []
    for repeat in range(args.repeats):
        headless = measure("headless", argv)
        dock = measure("dock", argv)
        pairs.append((headless, dock))
        print(
            f"repeat {repeat + 1}: headless {headless['steps_per_s']:.2f}, "
            f"dock {dock['steps_per_s']:.2f} steps/s",
            file=sys.stderr,
            flush=True,
        )
    load_after = os.getloadavg()

    print(
        f"\nU-Net width {args.width} depth {args.depth}, batch {args.batch}, patch "
        f"{args.patch}, {args.steps} steps on {len(MATERIALS)} images {args.size}², "
        f"{threads} torch thread(s); {platform.node()}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} before, {load_after[0]:.2f} after; "
        f"window {pairs[0][1]['window']}, {pairs[0][1]['renderer']}\n"
    )
    print("| repeat | headless steps/s | dock steps/s | dock / headless |")
    print("|---|---|---|---|")
    ratios = []
    for i, (headless, dock) in enumerate(pairs, 1):
        ratio = dock["steps_per_s"] / headless["steps_per_s"]
        ratios.append(ratio)
        print(f"| {i} | {headless['steps_per_s']:.2f} | {dock['steps_per_s']:.2f} | {ratio:.0%} |")
    if len(pairs) > 1:
        print(
            f"| median (range) | {_spread([h['steps_per_s'] for h, _ in pairs], '.2f')} | "
            f"{_spread([d['steps_per_s'] for _, d in pairs], '.2f')} | "
            f"{_spread(ratios, '.0%')} |"
        )
    print(
        "\n| dock run | GUI thread CPU | process CPU | worker signals/s | window repaints/s "
        f"| GUI gap p95 / max (ms; timer {PROBE_MS} ms) |"
    )
    print("|---|---|---|---|---|---|")
    for i, (headless, dock) in enumerate(pairs, 1):
        print(
            f"| {i} | {dock['gui_cpu']:.0%} | {dock['process_cpu']:.0%} "
            f"(headless {headless['process_cpu']:.0%}) | {dock['signals_per_s']:.1f} | "
            f"{dock['repaints_per_s']:.1f} | "
            f"{dock['gui_gap_p95_ms']:.0f} / {dock['gui_gap_max_ms']:.0f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "runs": pairs, "ratios": ratios}, f, indent=1)


if __name__ == "__main__":
    main()
