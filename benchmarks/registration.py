"""How accurately frame series are registered, and what the drift-corrected mean gains.

Simulated SrTiO3 [001] at 0.1 Å/px is shifted by a known drift (linear plus 0.3 px of
random jitter per frame, by a cubic spline on a larger field, then cropped) and given
Poisson noise at a few doses (counts per pixel per frame at the brightest column).

    python benchmarks/registration.py               # about a minute on 2 cores
    python benchmarks/registration.py --seeds 5 --frames 32

Prints Markdown tables: the RMS shift error of each ``reference`` (after removing the
offset common to all frames, which only moves the mean), an ablation of the choices in
:mod:`napari_pinned.denoising.registration` (made with scikit-image's
``phase_cross_correlation``, frame to frame, shifts accumulated), and the PSNR of a
single frame, the plain mean, the drift-corrected mean and the mean aligned with the true shifts.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
from scipy import ndimage
from scipy.signal import windows
from skimage.registration import phase_cross_correlation

from napari_pinned._util.jobs import run_job
from napari_pinned.denoising.registration import REFERENCES, align_frames, register_frames
from napari_pinned.physics.simulate import simulate
from napari_pinned.quality.metrics import psnr

DOSES = (20.0, 5.0, 2.0)
SLOW = (0.25, -0.18)  # px per frame
FAST = (2.2, 1.6)  # beyond half the 39 px lattice period over 16 frames


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


if __name__ == "__main__":
    main()
