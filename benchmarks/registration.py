"""How accurately frame series are registered, and what the drift-corrected mean gains.

Simulated SrTiO3 [001] at 0.1 Å/px is shifted by a known drift (linear plus 0.3 px of
random jitter per frame, by a cubic spline on a larger field, then cropped) and given
Poisson noise at a few doses (counts per pixel per frame at the brightest column).

    python benchmarks/registration.py               # a few minutes on 2 cores
    python benchmarks/registration.py --seeds 5 --frames 32

Prints Markdown tables: the RMS shift error of each ``reference`` (after removing the
offset common to all frames, which only moves the mean), an ablation of the choices in
:mod:`napari_pinned.denoising.registration` (made with scikit-image's
``phase_cross_correlation``, frame to frame, shifts accumulated), and the PSNR of a
single frame, the plain mean, the drift-corrected mean and the mean aligned with the true shifts.
A last table registers crystals at the paper's CDN level 2, where a frame's correlation
peak at a lattice vector can be the highest (GaN [11-20] and SrTiO3 [001], 256² px):
the RMS and the largest shift error, drift-free and drifting by more than one period.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
from scipy import ndimage
from scipy.signal import windows
from skimage.registration import phase_cross_correlation

from napari_pinned._util.jobs import run_job
from napari_pinned.denoising.registration import (
    REFERENCES,
    align_frames,
    estimate_drift,
    register_frames,
)
from napari_pinned.noise.synthesis import add_cdn_noise
from napari_pinned.physics.simulate import simulate
from napari_pinned.quality.metrics import psnr

DOSES = (20.0, 5.0, 2.0)
SLOW = (0.25, -0.18)  # px per frame
FAST = (2.2, 1.6)  # beyond half the 39 px lattice period over 16 frames
CDN_SIZE = 256
CRYSTALS = {
    "GaN [11-20] (27.6 px)": ("GaN", (1, 1, -2, 0)),
    "SrTiO3 [001] (39 px)": ("SrTiO3", (0, 0, 1)),
}


def make_series(
    seed: int, peak: float, drift: tuple[float, float], frames: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy frames, the true registering shifts, and the clean frame 0 (counts)."""
    rng = np.random.default_rng(seed)
    motion = np.arange(frames)[:, None] * np.asarray(drift) + rng.normal(0, 0.3, (frames, 2))
    motion -= motion[0]
    pad = int(np.ceil(np.abs(motion).max())) + 8
    base = simulate("SrTiO3", shape=size + 2 * pad, pixel_size=0.1, seed=seed).image
    base = base.astype(np.float64) / 255.0 * peak
    inner = (slice(pad, pad + size), slice(pad, pad + size))
    clean = np.stack([ndimage.shift(base, m, order=3, mode="nearest")[inner] for m in motion])
    return rng.poisson(np.clip(clean, 0, None)).astype(np.float32), -motion, clean[0]


def make_cdn_series(
    seed: int, crystal: tuple[str, tuple[int, ...]], drift: tuple[float, float], frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Frames of a crystal at CDN level 2 drifting linearly (and 0.3 px of jitter when it
    drifts), 256² px, and the true registering shifts."""
    rng = np.random.default_rng(seed)
    motion = np.arange(frames)[:, None] * np.asarray(drift, dtype=np.float64)
    if any(drift):
        motion += rng.normal(0, 0.3, (frames, 2))
        motion -= motion[0]
    size, pad = CDN_SIZE, int(np.ceil(np.abs(motion).max())) + 8
    base = simulate(*crystal, shape=size + 2 * pad, pixel_size=0.1, seed=seed).image
    inner = (slice(pad, pad + size), slice(pad, pad + size))
    clean = np.stack([ndimage.shift(base, m, order=3, mode="nearest")[inner] for m in motion])
    return np.asarray(add_cdn_noise(clean, 2, seed=seed), dtype=np.float32), -motion


def lattice_table(seeds: range, frames: int) -> None:
    """RMS / largest shift error of every reference at CDN 2 (a jump is a period)."""
    print(f"\nCDN level 2, {frames} frames of {CDN_SIZE}² px, {len(seeds)} seeds: RMS / largest")
    print("shift error (px), frame 0 anchored as the shifts are defined\n")
    print("| crystal (shortest period) | drift (px/frame) | " + " | ".join(REFERENCES) + " |")
    print("|---|---|" + "---|" * len(REFERENCES))
    for label, crystal in CRYSTALS.items():
        for drift in ((0.0, 0.0), FAST):
            cells = []
            for reference in REFERENCES:
                rms, worst = [], []
                for seed in seeds:
                    stack, truth = make_cdn_series(seed, crystal, drift, frames)
                    error = estimate_drift(stack, reference=reference) - truth
                    rms.append(float(np.sqrt(np.mean(np.sum(error**2, axis=1)))))
                    worst.append(float(np.abs(error).max()))
                cells.append(f"{np.mean(rms):.2f} / {np.max(worst):.1f}")
            print(f"| {label} | {drift[0]}, {drift[1]} | " + " | ".join(cells) + " |")


def offset_free_rms(estimate: np.ndarray, truth: np.ndarray) -> float:
    error = estimate - truth
    error -= error.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(error**2, axis=1))))


def _ablation_shifts(frames: np.ndarray, smooth: float, taper: float, phase: bool) -> np.ndarray:
    """Frame-to-frame shifts, accumulated, with one preparation variant."""

    def prepared(frame: np.ndarray) -> np.ndarray:
        f = frame.astype(np.float64)
        f = ndimage.gaussian_filter(f, smooth) if smooth else f
        f = f - f.mean()
        return f * np.outer(windows.tukey(f.shape[0], taper), windows.tukey(f.shape[1], taper))

    norm = "phase" if phase else None
    steps = [np.zeros(2)]
    for before, after in itertools.pairwise(frames):
        shift = phase_cross_correlation(
            prepared(before), prepared(after), upsample_factor=20, normalization=norm
        )[0]
        steps.append(np.asarray(shift, dtype=np.float64))
    return np.cumsum(steps, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    seeds = range(args.seeds)

    def series(seed, peak, drift=SLOW):
        return make_series(seed, peak, drift, args.frames, args.size)

    print(f"{args.frames} frames of {args.size}² px, {args.seeds} seeds; RMS shift error (px)\n")
    print("| drift (px/frame) | counts at peak | " + " | ".join(REFERENCES) + " |")
    print("|---|---|" + "---|" * len(REFERENCES))
    for drift, doses in ((SLOW, DOSES), (FAST, DOSES[:2])):
        for peak in doses:
            cells = []
            for reference in REFERENCES:
                errors = []
                for seed in seeds:
                    frames, truth, _ = series(seed, peak, drift)
                    result = run_job(register_frames(frames, reference=reference))
                    errors.append(offset_free_rms(result.shifts, truth))
                cells.append(f"{np.mean(errors):.3f}")
            print(f"| {drift[0]}, {drift[1]} | {peak:g} | " + " | ".join(cells) + " |")

    variants = {
        "cross-correlation, σ 1.5 px low-pass, Hann window (ours)": (1.5, 1.0, False),
        "light window (Tukey, 20 % taper)": (1.5, 0.2, False),
        "no window": (1.5, 0.0, False),
        "no low-pass": (0.0, 1.0, False),
        "phase normalisation": (1.5, 1.0, True),
    }
    cases = [(SLOW, p) for p in DOSES] + [(FAST, p) for p in DOSES[:2]]
    print("\nAblation, frame to frame: RMS shift error (px)\n")
    print("| variant | " + " | ".join(f"{d[0]} px/frame, {p:g} counts" for d, p in cases) + " |")
    print("|---|" + "---|" * len(cases))
    for name, options in variants.items():
        cells = []
        for drift, peak in cases:
            errors = []
            for seed in seeds:
                frames, truth, _ = series(seed, peak, drift)
                errors.append(offset_free_rms(_ablation_shifts(frames, *options), truth))
            cells.append(f"{np.mean(errors):.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")

    print("\nPSNR (dB) against the clean frame 0 over the common region\n")
    print("| counts at peak | best single frame | plain mean | drift-corrected | true shifts |")
    print("|---|---|---|---|---|")
    for peak in DOSES:
        rows = []
        for seed in seeds:
            frames, truth, clean = series(seed, peak)
            result = run_job(register_frames(frames))
            rows_, cols = result.crop
            reference = clean[rows_, cols]

            def score(image, reference=reference, peak=peak):
                return psnr(image, reference, data_range=peak)

            ideal = align_frames(frames, truth)[:, rows_, cols].mean(axis=0)
            rows.append(
                (
                    max(score(f[rows_, cols]) for f in frames),
                    score(frames.mean(axis=0)[rows_, cols]),
                    score(result.mean),
                    score(ideal),
                )
            )
        cells = " | ".join(f"{v:.1f}" for v in np.mean(rows, axis=0))
        print(f"| {peak:g} | {cells} |")

    lattice_table(seeds, args.frames)


if __name__ == "__main__":
    main()
