"""The lattice guard (``quality/lattice_guard.py``): what it buys, where it acts, what it costs.

For the shipped models, each output is scored with and without the guard (the same
network output: ``denoise(..., keep_lattice=False)``, then
:func:`napari_pinned.quality.lattice_guard.keep_lattice` on it, as ``denoise`` does):

* **Held-out simulations** (``benchmarks/realistic.py``'s images and recordings, the
  first ``--images`` images at doses 1, 10 and 100 e⁻/px): PSNR against the truth and the
  faithfulness verdict (reference-free, as that benchmark scores it).
* **Real micrographs** (tk-r-em's six HAADF images, ``benchmarks/real_micrographs.py``;
  GPL data in the benchmark cache, never committed): the faithfulness verdict, reflections
  kept, invented, and the residual over the noise.
* **Cost** of the guard alone on a 2048² frame: seconds and numpy's peak (tracemalloc)
  over the float32 frame.

* **A scene** (``--scene``): a SrTiO3 half-plane beside vacuum at 20 / 2 counts per pixel,
  an output with the lattice blurred away (Gaussian, σ 4 px) and the truth itself: how much
  each guard changes the vacuum at each distance from the crystal's edge (painting), and
  the crystal's error after it.

Guards: none, the shipped one (it restores only where the input shows the lattice,
issue 22 §2), and the one before it, which restored over the whole frame
(``benchmarks/_guard_ungated.py``); ``--reference PATH`` adds another (a Python file with
a ``keep_lattice(source, output)``).

Run::

    python benchmarks/lattice_guard.py --scene --skip simulations --skip real
    python benchmarks/lattice_guard.py --images 4            # a few minutes on 2 cores

Prints tables; writes nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from napari_pinned.denoising.denoiser import denoise
from napari_pinned.noise.estimate import estimate_noise
from napari_pinned.quality.faithfulness import faithfulness
from napari_pinned.quality.lattice_guard import keep_lattice

DOSES = (1.0, 10.0, 100.0)


def _guards(reference: pathlib.Path | None) -> dict:
    import _guard_ungated

    guards = {
        "none": None,
        "shipped": keep_lattice,
        "ungated (before issue 22)": _guard_ungated.keep_lattice,
    }
    if reference is not None:
        spec = importlib.util.spec_from_file_location("reference_guard", reference)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        guards[f"reference ({reference.name})"] = module.keep_lattice
    return guards


def scene(guards) -> None:
    from scipy import ndimage

    from napari_pinned.physics.simulate import simulate

    n = 256
    clean = simulate("SrTiO3", shape=n, pixel_size=0.1, seed=3).image.astype(np.float64)
    truth = clean / clean.mean() * 20.0
    truth[:, : n // 2] = 2.0
    noisy = np.random.default_rng(0).poisson(truth).astype(np.float32)
    erased = ndimage.gaussian_filter(truth, 4).astype(np.float32)
    bands = ((0, 16), (16, 32), (32, 64), (64, 128))
    print("\nChange of the vacuum (rms counts; its noise: 1.41) by distance from the crystal:")
    print(
        "\n| output | guard | "
        + " | ".join(f"{a}–{b} px" for a, b in bands)
        + " | crystal rms error |"
    )
    print("|---|---|" + "---|" * (len(bands) + 1))
    for label, out in (("lattice blurred away", erased), ("the truth", truth.astype(np.float32))):
        for name, guard in guards.items():
            if guard is None:
                continue
            changed = np.asarray(guard(noisy, out), np.float64) - out
            cells = [f"{changed[:, n // 2 - b : n // 2 - a].std():.2f}" for a, b in bands]
            error = np.sqrt(np.mean((out + changed - truth)[:, n // 2 + 16 :] ** 2))
            print(f"| {label} | {name} | " + " | ".join(cells) + f" | {error:.2f} |")


def _apply(guard, source: np.ndarray, bare: np.ndarray) -> np.ndarray:
    if guard is None:
        return bare
    out = np.asarray(guard(source, bare), np.float64)
    return np.maximum(out, 0.0) if np.issubdtype(source.dtype, np.unsignedinteger) else out


def simulations(models, guards, n_images: int) -> None:
    import realistic

    print("\n| model | guard | images × doses | mean PSNR (dB) | faithful |")
    print("|---|---|---|---|---|")
    rows: dict[tuple[str, str], list] = {}
    for spec in realistic.held_out_set()[:n_images]:
        clean = realistic.make_clean(spec)
        for dose in DOSES:
            noisy, truth = realistic.record(clean, spec, dose)
            span = float(truth.max() - truth.min())
            noise = estimate_noise(noisy)
            for model in models:
                bare = np.asarray(denoise(noisy, model, device="cpu", keep_lattice=False))
                for name, guard in guards.items():
                    out = _apply(guard, noisy, bare)
                    psnr = 10 * np.log10(span**2 / np.mean((out - truth) ** 2))
                    f = faithfulness(noisy, out, noise=noise, pixel_size=spec.pixel_size)
                    rows.setdefault((model, name), []).append((psnr, f.faithful))
                    print(f"# {spec.id} dose {dose:g} {model} {name}: {psnr:.2f} dB", flush=True)
    for (model, name), values in rows.items():
        psnr = np.mean([v[0] for v in values])
        faithful = sum(v[1] for v in values)
        print(f"| {model} | {name} | {len(values)} | {psnr:.2f} | {faithful}/{len(values)} |")


def micrographs(models, guards) -> None:
    import real_micrographs as rm

    real, _, _ = rm.load_data(rm.fetch_sdist(rm.cache_dir(None)))
    lines = []
    for image_name, image in real:
        x = image.astype(np.float64)
        noise = estimate_noise(x)
        for model in models:
            bare = np.asarray(denoise(image, model, device="cpu", keep_lattice=False))
            for name, guard in guards.items():
                f = faithfulness(x, _apply(guard, image, bare), noise=noise)
                lines.append(
                    f"| {image_name} | {model} | {name} | {'yes' if f.faithful else 'no'} | "
                    f"{f.n_kept}/{f.n_peaks} | {f.n_invented} | {f.residual_noise_ratio:.2f} |"
                )
                print("# " + lines[-1], flush=True)
    print("\n| image | model | guard | faithful | kept | invented | residual / noise |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(lines))


def cost(size: int = 2048) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    truth = (20 + 10 * np.cos(2 * np.pi * xx / 7.3) * np.cos(2 * np.pi * yy / 6.1)).astype(
        np.float32
    )
    noisy = rng.poisson(truth).astype(np.float32)
    keep_lattice(noisy[:256, :256], truth[:256, :256])  # FFT plans, caches
    t0 = time.perf_counter()
    keep_lattice(noisy, truth)
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    keep_lattice(noisy, truth)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"\nguard alone, {size}² float32: {seconds:.2f} s, numpy peak {peak / noisy.nbytes:.2f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="held-out images (× 3 doses)")
    parser.add_argument("--model", action="append", help="shipped name or path (repeatable)")
    parser.add_argument("--reference", type=pathlib.Path, help="another guard's module file")
    parser.add_argument("--scene", action="store_true", help="the crystal-beside-vacuum scene")
    parser.add_argument("--skip", action="append", default=[], help="simulations, real, cost")
    args = parser.parse_args()
    guards = _guards(args.reference)
    if args.scene:
        scene(guards)
    if "cost" not in args.skip:
        cost()
    if "simulations" not in args.skip:
        simulations(args.model or ["default"], guards, args.images)
    if "real" not in args.skip:
        micrographs(args.model or ["default", "cdn"], guards)


if __name__ == "__main__":
    main()
