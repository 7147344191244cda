"""Realistic STEM noise on held-out specimens: does a model beat tuned classical denoisers?

The benchmark that decides whether a default model is good enough (issue 11, §7 and
"Targets").  Everything is simulated, so the truth is known, and nothing in it was used
for training:

* **Held-out set** (256² px, fixed seeds).  Crystals from
  :func:`napari_pinned.physics.simulate.simulate` of the held-out materials (BaTiO3, BaTiO3-P4mm,
  Al, ZnMgTe, monolayer WSe2; :data:`napari_pinned.physics.materials.HELD_OUT_MATERIALS`) along
  every listed zone axis at 0.1 Å/px and along the first one at 0.05 and 0.2 Å/px, each
  rotated by a seeded angle, on a weak smooth background (5 % of the range, varying by
  half).  Plus structures from :func:`napari_pinned.physics.specimens.random_structure` drawn
  with held-out seeds (≥ ``BENCHMARK_SEED_START``) and held-out materials only:
  weak/strong column mixtures, an amorphous film, a particle on an amorphous support, a
  grain boundary, vacancies, a dopant, a surface.
* **Recording**: :func:`napari_pinned.noise.synthesis.record_stem_image` at mean doses 1, 3, 10,
  30, 100 detected e⁻/px with Gaussian read noise σ = 0.5 e⁻ (Poisson shot noise, no scan
  distortion); one noise draw per image and dose, seeded from the image's name.  The
  truth is the expected count image; PSNR and SSIM use ``data_range = max − min`` of
  that truth (``compute_metrics(..., data_range=...)``).
* **Classical methods** (``benchmarks/_bench.py``), each **tuned per image against the
  truth** — an oracle, an upper bound on what a user could tune by eye: Gaussian filter,
  median, non-local means and TV (Chambolle) — both in the variance-stabilised domain —
  and **VST + BM3D**: the generalised Anscombe transform for Poisson–Gaussian noise,
  BM3D (``bm3d`` package) with σ tuned over 0.25–8 × the nominal 1, and the closed-form
  approximation of the exact unbiased inverse (Makitalo & Foi, IEEE TIP 20(9), 2011
  and 22(1), 2013).  The VST uses the known gain 1 and read noise 0.5 e⁻ (also oracle).
* **Models** given with ``--model`` (repeatable: ``NAME``, ``PATH`` or ``LABEL=PATH_OR_NAME``;
  default: the shipped ``default`` and ``cdn`` where present), run as a user would:
  ``denoise(noisy, model)``, noise estimated from the image.  With ``--adapt``, the
  first model is also adapted to each noisy image of the first ``--adapt-images`` images
  (:func:`napari_pinned.training.adapt.adapt`, blind-spot fine-tuning): slow, about 2 min each.
* **Metrics** per image × dose × method: PSNR, SSIM, FSC, EPI
  (:func:`napari_pinned.quality.metrics.compute_metrics`), column recall / precision / RMS
  error in pm (:func:`napari_pinned.quality.columns.column_accuracy`; columns lighter than 30 %
  of the heaviest are "don't care"), the
  faithfulness readout (:func:`napari_pinned.quality.faithfulness.faithfulness`, reference-free,
  when the module exists) and runtime.

Run::

    python benchmarks/realistic.py --quick                 # smoke run, ~1-2 min: 2 images, 2 doses
    python benchmarks/realistic.py --images-limit 14       # the core set: 5 crystals + 9 structures
    python benchmarks/realistic.py --model default --model cdn --jobs 2
    python benchmarks/realistic.py --model new=/tmp/exp/quick.pt --model default
    python benchmarks/realistic.py --tables-only           # re-print the markdown from the JSON

The full run writes ``benchmarks/realistic.json`` and ``docs/images/realistic-*.png``;
``--quick`` writes only where ``--json`` / ``--images`` are given.  Deterministic: every
noise draw and structure comes from a fixed seed, so reruns give the same rows (up to
the last digits of the models' float arithmetic).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import pathlib
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _bench import (
    CLASSICAL,
    GAT,
    ModelSpec,
    bm3d_available,
    dump_json,
    finite,
    fmt,
    load_spec,
    machine,
    markdown_table,
    parse_model_specs,
    run_classical,
    save_png,
)

from napari_pinned.denoising.denoiser import denoise
from napari_pinned.noise.estimate import estimate_noise
from napari_pinned.noise.synthesis import StemRecording, record_stem_image
from napari_pinned.physics import specimens as _specimens
from napari_pinned.physics.materials import HELD_OUT_MATERIALS
from napari_pinned.physics.simulate import simulate
from napari_pinned.quality.columns import column_accuracy
from napari_pinned.quality.faithfulness import faithfulness as _faithfulness
from napari_pinned.quality.metrics import compute_metrics

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOSES = (1.0, 3.0, 10.0, 30.0, 100.0)
QUICK_DOSES = (1.0, 10.0)
READ_NOISE = 0.5  # e⁻
SHAPE = 256
PIXEL_SIZES = (0.05, 0.1, 0.2)  # Å/px
#: Held-out structures: (kind, pixel size, what the draw must show).  The first draw (seed
#: BENCHMARK_SEED_START + 1000·slot + attempt) that satisfies the condition is used.
STRUCTURES: tuple[tuple[str, float, str], ...] = (
    ("weak_strong", 0.1, "columns"),
    ("weak_strong", 0.05, "columns"),
    ("weak_strong", 0.2, "columns"),
    ("amorphous", 0.1, ""),
    ("nanoparticle", 0.1, "support"),
    ("grain_boundary", 0.1, "columns"),
    ("vacancies", 0.1, "columns"),
    ("dopants", 0.05, "columns"),
    ("surface", 0.2, "columns"),
)
NOISY, TRUTH = "noisy", "clean (truth)"
#: The example figure: the first image of the set at these doses.
EXAMPLE_DOSES = (1.0, 10.0)
EXAMPLE_CROP = slice(SHAPE // 4, 3 * SHAPE // 4)


# --------------------------------------------------------------------------- the set


@dataclass(frozen=True)
class ImageSpec:
    """One held-out image, rebuilt from these fields alone."""

    id: str
    group: str  # "crystal 0.1 Å/px", "weak_strong", ...
    source: str  # "simulate" or "specimen"
    pixel_size: float
    material: str = ""
    zone: tuple[int, ...] = ()
    kind: str = "crystal"
    slot: int = 0
    condition: str = ""


@dataclass
class Clean:
    image: np.ndarray
    positions: np.ndarray
    weights: np.ndarray
    label: str
    seed: int


def _seed(text: str) -> int:
    return zlib.crc32(text.encode())


def held_out_materials() -> tuple[str, ...]:
    return HELD_OUT_MATERIALS


def held_out_set(quick: bool = False) -> list[ImageSpec]:
    """The benchmark's images, in a fixed order."""
    from napari_pinned.physics.materials import get_material
    from napari_pinned.physics.zones import zone_label

    crystals = []
    for name in held_out_materials():
        zones = get_material(name).zone_axes
        for px in PIXEL_SIZES:
            for zone in zones if px == 0.1 else zones[:1]:
                ident = f"{name} {zone_label(zone)} {px:g} Å/px"
                crystals.append(
                    ImageSpec(ident, f"crystal {px:g} Å/px", "simulate", px, name, zone)
                )
    structures = []
    for slot, (kind, px, cond) in enumerate(STRUCTURES):
        ident = f"{kind} #{slot} {px:g} Å/px"
        structures.append(
            ImageSpec(ident, kind, "specimen", px, kind=kind, slot=slot, condition=cond)
        )
    if quick:
        first = [s for s in crystals if s.pixel_size == 0.1][:1]
        return first + (structures[:1] if structures else crystals[1:2])
    # The core set first (``--images-limit 14``): each material along its first zone at
    # 0.1 Å/px and every structure; then the other zones, then the other pixel sizes.
    core, rest = [], []
    for name in held_out_materials():
        mine = [s for s in crystals if s.material == name and s.pixel_size == 0.1]
        core += mine[:1]
        rest += mine[1:]
    others = [s for px in (0.05, 0.2) for s in crystals if s.pixel_size == px]
    return core + structures + rest + others


def _accept(specimen, condition: str) -> bool:
    if condition == "columns":
        return len(specimen.columns.weights) >= 8
    if condition == "support":
        return " on " in specimen.label and len(specimen.columns.weights) >= 8
    return True


@lru_cache(maxsize=4)
def make_clean(spec: ImageSpec) -> Clean:
    """The clean image and its ground truth (cached per process)."""
    if spec.source == "simulate":
        from napari_pinned.physics.materials import get_material

        seed = _seed(spec.id)
        rotation = float(np.random.default_rng(seed).uniform(0.0, 90.0))
        material = get_material(spec.material)
        # Monolayers: one layer (the cell's c is vacuum); bulk crystals 200 Å thick.
        thickness = 20.0 if material.two_dimensional else 200.0
        result = simulate(
            spec.material,
            spec.zone,
            shape=SHAPE,
            pixel_size=spec.pixel_size,
            thickness=thickness,
            rotation=rotation,
            background=0.05,
            background_variation=0.5,
            seed=seed,
        )
        label = f"{result.label()}, {spec.pixel_size:g} Å/px, rotated {rotation:.0f}°"
        return Clean(result.image, result.columns.positions, result.columns.weights, label, seed)
    start = _specimens.BENCHMARK_SEED_START + 1000 * spec.slot
    for attempt in range(200):
        rng = np.random.default_rng(start + attempt)
        s = _specimens.random_structure(
            rng, SHAPE, held_out_materials(), kind=spec.kind, pixel_size=spec.pixel_size
        )
        if _accept(s, spec.condition):
            return Clean(s.image, s.columns.positions, s.columns.weights, s.label, start + attempt)
    raise RuntimeError(f"no draw of {spec.kind} satisfied {spec.condition!r}")


def record(clean: Clean, spec: ImageSpec, dose: float) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy, truth)`` counts at ``dose``: one fixed draw per image and dose."""
    rng = np.random.default_rng([_seed(spec.id), round(dose * 1000)])
    noisy, expected = record_stem_image(
        clean.image, StemRecording(dose, read_noise=READ_NOISE), rng
    )
    return noisy.astype(np.float64), expected.astype(np.float64)


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Case:
    spec: ImageSpec
    dose: float
    models: tuple[ModelSpec, ...]
    classical: tuple[str, ...]
    quick: bool
    threads: int
    adapt: bool = False
    adapt_steps: int = 500
    keep_outputs: bool = False
    #: Rows of the noisy input and the classical methods from an earlier run of the same
    #: image and dose (``--reuse``): they do not depend on the models.
    reused: tuple[dict, ...] = ()


@dataclass
class CaseResult:
    rows: list[dict]
    info: dict
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


def _columns(out: np.ndarray, clean: Clean, spec: ImageSpec) -> dict:
    if len(clean.weights) < 4:
        return {}
    try:
        acc = column_accuracy(out, clean.positions, spec.pixel_size, weights=clean.weights)
    except ValueError:
        return {}
    return {
        "recall": finite(acc.recall),
        "precision": finite(acc.precision),
        "rms_pm": finite(acc.rms_error_pm),
        "n_columns": acc.n_true,
    }


def _faithful(noisy: np.ndarray, out: np.ndarray, noise, spec: ImageSpec) -> dict:
    f = _faithfulness(noisy, out, noise=noise, pixel_size=spec.pixel_size)
    return {
        "faithful": bool(f.faithful),
        "kept_fraction": finite(f.kept_fraction),
        "n_peaks": f.n_peaks,
        "n_invented": f.n_invented,
        "n_in_residual": f.n_in_residual,
        "residual_noise_ratio": finite(f.residual_noise_ratio),
    }


def score_case(case: Case) -> CaseResult:
    """Every method on one image at one dose."""
    import torch

    torch.set_num_threads(case.threads)
    spec, dose = case.spec, case.dose
    clean = make_clean(spec)
    noisy, truth = record(clean, spec, dose)
    data_range = float(truth.max() - truth.min())
    noise = estimate_noise(noisy)
    gat = GAT(gain=1.0, sigma=READ_NOISE, mu=0.0)  # known detector: oracle, like the tuning
    base = {"image": spec.id, "group": spec.group, "dose": dose}

    def psnr(out: np.ndarray) -> float:
        return float(10 * np.log10(data_range**2 / np.mean((out - truth) ** 2)))

    rows: list[dict] = []
    outputs: dict[str, np.ndarray] = {}

    def add(method: str, out: np.ndarray, seconds: float | None, **extra) -> None:
        m = compute_metrics(out, truth, data_range=data_range)
        row = dict(base, method=method, **{k: finite(v) for k, v in m.as_dict().items()})
        row["seconds"] = finite(seconds)
        row.update(extra)
        row.update({k: v for k, v in _columns(out, clean, spec).items() if k != "n_columns"})
        if method != NOISY:
            row.update(_faithful(noisy, out, noise, spec))
        rows.append(row)
        if case.keep_outputs:
            outputs[method] = out.astype(np.float32)

    done = {r["method"] for r in case.reused}
    rows.extend(dict(r) for r in case.reused)
    if case.keep_outputs:
        outputs[NOISY] = noisy.astype(np.float32)
        bm3d_row = next((r for r in case.reused if r["method"] == "VST + BM3D"), None)
        bm3d = next((m for m in CLASSICAL if m.name == "VST + BM3D"), None)
        if bm3d_row is not None and bm3d is not None:  # the example figure needs the image
            outputs[bm3d.name] = bm3d.run(noisy, gat, bm3d_row["parameter"]).astype(np.float32)
    if NOISY not in done:
        add(NOISY, noisy, None)
    for method in CLASSICAL:
        if method.name not in case.classical or method.name in done:
            continue
        t = run_classical(method, noisy, gat, psnr, quick=case.quick)
        add(
            method.name,
            t.output,
            t.seconds,
            parameter=t.parameter,
            at_edge=t.at_edge,
            evaluations=t.evaluations,
            search_seconds=round(t.search_seconds, 3),
        )
    for model in case.models:
        bundle = load_spec(model)
        t0 = time.perf_counter()
        out = denoise(noisy, bundle, device="cpu", orientations=model.orientations)
        add(model.label, np.asarray(out, np.float64), time.perf_counter() - t0)
    if case.adapt and case.models:
        from napari_pinned.settings import AdaptSettings
        from napari_pinned.training.adapt import adapt

        model = case.models[0]
        t0 = time.perf_counter()
        run = adapt(
            noisy.astype(np.float32),
            load_spec(model),
            settings=AdaptSettings(steps=case.adapt_steps),
            seed=0,
            device="cpu",
        )
        adapted = run.run_to_end()
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = denoise(noisy, adapted, device="cpu")
        add(
            f"{model.label} + adapt",
            np.asarray(out, np.float64),
            time.perf_counter() - t0,
            adapt_seconds=round(train_s, 1),
            adapt_steps=case.adapt_steps,
        )
    if case.keep_outputs:
        outputs[TRUTH] = truth.astype(np.float32)
    info = dict(
        base,
        kind=spec.kind,
        pixel_size=spec.pixel_size,
        label=clean.label,
        seed=clean.seed,
        data_range=data_range,
        reused=sorted(done),
        estimated_counts=finite(noise.mean_counts),
        estimated=noise.describe(),
        clean_columns=_columns(truth, clean, spec),
    )
    return CaseResult(rows, info, outputs)


def fingerprint(spec: ImageSpec, dose: float) -> tuple[tuple, float]:
    """What must match for an earlier run's rows of this image and dose to be reused: the
    image, dose, label and seed exactly, and the truth's range (which moves with any change
    of the clean image or the recording) to 1e-4."""
    clean = make_clean(spec)
    _, truth = record(clean, spec, dose)
    return (spec.id, float(dose), clean.label, int(clean.seed)), float(np.ptp(truth))


#: Row fields of earlier versions that now live in ``images`` and ``meta``.
_DROPPED = ("kind", "pixel_size", "parameter_name", "n_columns")


def reusable_rows(path: pathlib.Path | None, quick: bool, classical: list[str]) -> dict:
    """Noisy and classical rows of an earlier run: ``{key: (data_range, rows)}`` with the
    key and range of :func:`fingerprint`."""
    if path is None or not path.is_file():
        print(f"# --reuse: no earlier run at {path}; scoring everything")
        return {}
    old = json.loads(path.read_text())
    if bool(old["meta"].get("quick")) != quick or old["meta"].get("read_noise") != READ_NOISE:
        print(f"# --reuse: {path} was run with other settings; scoring everything")
        return {}
    keep = {NOISY, *classical}
    out: dict[tuple, tuple[float, list[dict]]] = {}
    for info in old["images"]:
        key = (info["image"], float(info["dose"]), info["label"], int(info["seed"]))
        rows = [
            {k: v for k, v in r.items() if k not in _DROPPED}
            for r in old["rows"]
            if r["image"] == info["image"] and r["dose"] == info["dose"] and r["method"] in keep
        ]
        out[key] = (float(info["data_range"]), rows)
    return out


def reused_for(reusable: dict, spec: ImageSpec, dose: float) -> tuple[dict, ...]:
    """The earlier rows of this image and dose, if its clean image is unchanged."""
    if not reusable:
        return ()
    key, data_range = fingerprint(spec, dose)
    old_range, rows = reusable.get(key, (None, []))
    if old_range is None or not math.isclose(old_range, data_range, rel_tol=1e-4):
        return ()
    return tuple(rows)


def _init_worker(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)


def run_cases(cases: list[Case], jobs: int) -> list[CaseResult]:
    """Score the cases, in order, ``jobs`` processes at a time."""
    results: list[CaseResult] = []
    if jobs <= 1:
        for i, case in enumerate(cases):
            t0 = time.perf_counter()
            results.append(score_case(case))
            _progress(i, len(cases), case, time.perf_counter() - t0)
        return results
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with concurrent.futures.ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_init_worker, initargs=(cases[0].threads,)
    ) as pool:
        for i, (case, result) in enumerate(zip(cases, pool.map(score_case, cases), strict=True)):
            results.append(result)
            _progress(i, len(cases), case, None)
    return results


def _progress(i: int, n: int, case: Case, seconds: float | None) -> None:
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    print(f"# [{i + 1}/{n}] {case.spec.id} at {case.dose:g} e⁻/px{took}", flush=True)


# --------------------------------------------------------------------------- summary


def _models(result: dict) -> list[str]:
    return [m["label"] for m in result["meta"]["models"]] + [
        m for m in result["meta"].get("adapted", [])
    ]


def _by(rows: list[dict], method: str, dose: float) -> dict[str, dict]:
    return {r["image"]: r for r in rows if r["method"] == method and r["dose"] == dose}


def summarise(result: dict) -> dict:
    """Per model and dose: mean PSNR, gain over the best classical method per image (mean
    and minimum), worst gain over the noisy input (the no-harm check), column accuracy,
    and the target verdicts."""
    rows, meta = result["rows"], result["meta"]
    doses = meta["doses"]
    classical = [m for m in meta["classical"]]
    out: dict = {"models": {}}
    for model in _models(result):
        per_dose = {}
        for dose in doses:
            ours = _by(rows, model, dose)
            if not ours:
                continue
            noisy = _by(rows, NOISY, dose)
            gains, harm, versus = [], [], []
            for image, r in ours.items():
                best = max(
                    (
                        (x["psnr"], x["method"])
                        for x in rows
                        if x["image"] == image and x["dose"] == dose and x["method"] in classical
                    ),
                    default=None,
                )
                if best is not None:
                    gains.append((r["psnr"] - best[0], image, best[1]))
                harm.append((r["psnr"] - noisy[image]["psnr"], image))
                bm = _by(rows, "VST + BM3D", dose).get(image)
                if bm is not None:
                    versus.append(r["psnr"] - bm["psnr"])
            cols = [r for r in ours.values() if r.get("recall") is not None]
            faith = [r for r in ours.values() if "faithful" in r]
            per_dose[str(dose)] = {
                "images": len(ours),
                "mean_psnr": float(np.mean([r["psnr"] for r in ours.values()])),
                "mean_gain_over_best_classical": finite(np.mean([g[0] for g in gains]))
                if gains
                else None,
                "min_gain_over_best_classical": min(gains)[0] if gains else None,
                "min_gain_image": min(gains)[1] if gains else None,
                "mean_gain_over_bm3d": finite(np.mean(versus)) if versus else None,
                "min_gain_over_noisy": min(harm)[0],
                "min_gain_over_noisy_image": min(harm)[1],
                "mean_recall": finite(np.mean([r["recall"] for r in cols])) if cols else None,
                "mean_rms_pm": _mean([r["rms_pm"] for r in cols]),
                "faithful": sum(r["faithful"] for r in faith) if faith else None,
                "faithful_of": len(faith) if faith else None,
            }
        if not per_dose:
            continue
        mean_gains = [d["mean_gain_over_best_classical"] for d in per_dose.values()]
        targets = {
            "plus_1_db_over_classical_every_dose": all(
                g is not None and g >= 1.0 for g in mean_gains
            ),
            "never_below_noisy": all(d["min_gain_over_noisy"] >= 0 for d in per_dose.values()),
        }
        at10 = per_dose.get(str(10.0))
        if at10 and at10["mean_recall"] is not None:
            targets["columns_at_10"] = bool(
                at10["mean_recall"] >= 0.95 and (at10["mean_rms_pm"] or np.inf) < 10.0
            )
        out["models"][model] = {"per_dose": per_dose, "targets": targets}
    return out


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def markdown(result: dict) -> str:
    """The benchmark's tables in markdown, from the JSON alone (docs reuse this)."""
    rows, meta = result["rows"], result["meta"]
    doses = meta["doses"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    models = [m for m in _models(result) if m in methods]
    classical = [m for m in meta["classical"] if m in methods]
    summary = result.get("summary") or summarise(result)
    n_images = len({r["image"] for r in rows})
    dose_head = [f"{d:g} e⁻/px" for d in doses]
    parts = []

    def mean_of(method: str, dose: float, key: str) -> float | None:
        return _mean([r.get(key) for r in rows if r["method"] == method and r["dose"] == dose])

    # 1. mean PSNR and SSIM
    for key, spec, title in (("psnr", ".2f", "PSNR (dB)"), ("ssim", ".3f", "SSIM")):
        body = []
        for m in methods:
            n = len({r["image"] for r in rows if r["method"] == m})
            name = f"**{m}**" if m in models else m
            if n != n_images:
                name += f" ({n} images)"
            body.append([name] + [fmt(mean_of(m, d, key), spec) for d in doses])
        parts.append(
            f"Mean {title} over {n_images} held-out images (classical methods tuned per "
            "image against the truth):\n\n" + markdown_table(["method", *dose_head], body)
        )

    # 2. gain over the best classical method, per image
    body = []
    for m in models:
        pd = summary["models"].get(m, {}).get("per_dose", {})
        cells = []
        for d in doses:
            s = pd.get(str(d))
            if s is None or s["mean_gain_over_best_classical"] is None:
                cells.append("–")
                continue
            mean, low = s["mean_gain_over_best_classical"], s["min_gain_over_best_classical"]
            cells.append(f"{mean:+.2f} (min {low:+.2f})")
        body.append([m, *cells])
        cells = []
        for d in doses:
            s = pd.get(str(d))
            cells.append(fmt(s and s["mean_gain_over_bm3d"], "+.2f"))
        body.append([f"{m} − VST + BM3D", *cells])
    parts.append(
        "PSNR gain (dB) of each model over the best tuned classical method of each image, "
        "mean over images (and the minimum):\n\n" + markdown_table(["model", *dose_head], body)
    )

    # 3. no harm
    body = []
    for m in models:
        pd = summary["models"].get(m, {}).get("per_dose", {})
        cells = []
        for d in doses:
            s = pd.get(str(d))
            cells.append(
                "–"
                if s is None
                else f"{s['min_gain_over_noisy']:+.2f} ({s['min_gain_over_noisy_image']})"
            )
        body.append([m, *cells])
    parts.append(
        "No harm: the worst (minimum over images) PSNR gain over the noisy input, dB, and "
        "where:\n\n" + markdown_table(["model", *dose_head], body)
    )

    # 4. columns at 10 e⁻/px
    d10 = 10.0 if 10.0 in doses else doses[len(doses) // 2]
    col_rows = [r for r in rows if r["dose"] == d10 and r.get("recall") is not None]
    images = sorted({r["image"] for r in col_rows})
    body = []
    clean_info = [i for i in result["images"] if i["dose"] == d10 and i.get("clean_columns")]
    if clean_info:
        cc = [i["clean_columns"] for i in clean_info]
        body.append(
            [
                TRUTH,
                fmt(_mean([c["recall"] for c in cc]), ".3f"),
                fmt(_mean([c["precision"] for c in cc]), ".3f"),
                fmt(_mean([c["rms_pm"] for c in cc]), ".1f"),
            ]
        )
    for m in methods:
        sel = [r for r in col_rows if r["method"] == m]
        if not sel:
            continue
        body.append(
            [
                f"**{m}**" if m in models else m,
                fmt(_mean([r["recall"] for r in sel]), ".3f"),
                fmt(_mean([r["precision"] for r in sel]), ".3f"),
                fmt(_mean([r["rms_pm"] for r in sel]), ".1f"),
            ]
        )
    parts.append(
        f"Atomic columns at {d10:g} e⁻/px, mean over the {len(images)} images with columns "
        "(recall and precision of columns ≥ 30 % of the heaviest; RMS position error of "
        "the matched ones):\n\n"
        + markdown_table(["method", "recall", "precision", "RMS (pm)"], body)
    )

    # 5. faithfulness
    if any("faithful" in r for r in rows):
        body = []
        for m in [*models, *classical]:
            cells = []
            for d in doses:
                sel = [r for r in rows if r["method"] == m and r["dose"] == d and "faithful" in r]
                if not sel:
                    cells.append("–")
                    continue
                kept = _mean([r["kept_fraction"] for r in sel])
                inv = _mean([r["n_invented"] for r in sel])
                cells.append(
                    f"{sum(r['faithful'] for r in sel)}/{len(sel)}, kept {fmt(kept, '.2f')}, "
                    f"inv {fmt(inv, '.1f')}"
                )
            body.append([f"**{m}**" if m in models else m, *cells])
        parts.append(
            "Faithfulness readout (reference-free, on input and output only): images judged "
            "faithful / all, mean kept fraction of the input's strong reflections (±25 %), "
            "mean invented reflections:\n\n" + markdown_table(["method", *dose_head], body)
        )

    # 6. by group at 10 e⁻/px
    groups = list(dict.fromkeys(r["group"] for r in rows))
    show = [*models, "VST + BM3D"] if "VST + BM3D" in methods else models
    body = []
    for g in groups:
        sel = [r for r in rows if r["group"] == g and r["dose"] == d10]
        n = len({r["image"] for r in sel})
        cells = [fmt(_mean([r["psnr"] for r in sel if r["method"] == NOISY]))]
        cells += [fmt(_mean([r["psnr"] for r in sel if r["method"] == m])) for m in show]
        body.append([f"{g} ({n})", *cells])
    parts.append(
        f"Mean PSNR (dB) at {d10:g} e⁻/px by kind of image (number of images):\n\n"
        + markdown_table(["images", NOISY, *show], body)
    )

    # 7. runtime
    body = []
    for m in methods:
        if m == NOISY:
            continue
        sel = [r for r in rows if r["method"] == m]
        body.append(
            [
                m,
                fmt(_mean([r["seconds"] for r in sel]), ".3f"),
                fmt(_mean([r.get("search_seconds") for r in sel]), ".1f"),
                fmt(_mean([r.get("evaluations") for r in sel]), ".1f"),
                str(sum(bool(r.get("at_edge")) for r in sel)) if m in classical else "–",
            ]
        )
    parts.append(
        f"Runtime per {SHAPE}² image on {meta['machine']} ({meta['threads']} torch thread(s) "
        "per process): one run at the chosen parameter, the whole oracle search, its "
        "evaluations, and how often the optimum sat on the edge of the grid:\n\n"
        + markdown_table(["method", "s / image", "search s", "evaluations", "at grid edge"], body)
    )

    # 8. targets
    lines = []
    for m, s in summary["models"].items():
        t = s["targets"]
        verdicts = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in t.items())
        lines.append(f"- **{m}**: {verdicts}")
    if lines:
        parts.append("Targets (issue 11):\n\n" + "\n".join(lines))
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------- plots


def example_model(models: list[str]) -> str:
    """The model shown in the example figure: ``default`` if scored, else the first one
    that is not the CDN model."""
    if "default" in models:
        return "default"
    return next((m for m in models if m != "cdn"), models[0] if models else "")


def plot(result: dict, outputs: dict, out_dir: pathlib.Path) -> list[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, meta = result["rows"], result["meta"]
    doses = meta["doses"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    models = [m for m in _models(result) if m in methods]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    palette = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20").colors
    colours = dict(zip(methods, palette, strict=False))
    noisy = {d: _by(rows, NOISY, d) for d in doses}
    for m in methods:
        ys = [_mean([r["psnr"] for r in _by(rows, m, d).values()]) for d in doses]
        gain = [
            _mean([r["psnr"] - noisy[d][i]["psnr"] for i, r in _by(rows, m, d).items()])
            for d in doses
        ]
        style = "-" if m in models else "--"
        width = 2.2 if m in models else 1.2
        for ax, y in zip(axes, (ys, gain), strict=True):
            y = [np.nan if v is None else v for v in y]
            ax.plot(doses, y, style, marker="o", lw=width, label=m, color=colours.get(m))
    for m in models:
        worst = [
            min(
                (r["psnr"] - noisy[d][i]["psnr"] for i, r in _by(rows, m, d).items()),
                default=np.nan,
            )
            for d in doses
        ]
        axes[1].plot(doses, worst, ":", color=colours.get(m), label=f"{m} (worst image)")
    axes[1].axhline(0.0, color="k", lw=0.8)
    for ax, ylabel in zip(axes, ("mean PSNR (dB)", "PSNR − noisy input (dB)"), strict=True):
        ax.set_xscale("log")
        ax.set_xticks(doses, [f"{d:g}" for d in doses])
        ax.set_xlabel("mean dose (detected e⁻/px), read noise 0.5 e⁻")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    n = len({r["image"] for r in rows})
    fig.suptitle(f"Held-out realistic STEM noise, {n} images (classical methods tuned per image)")
    fig.tight_layout()
    path = out_dir / "realistic-psnr.png"
    save_png(fig, path, 110)
    plt.close(fig)
    written.append(path)

    if outputs:
        shown = [TRUTH, NOISY, "VST + BM3D", example_model(models)]
        ds = sorted(outputs)
        fig, axes = plt.subplots(len(ds), len(shown), figsize=(3.2 * len(shown), 3.7 * len(ds)))
        axes = np.atleast_2d(axes)
        example = meta.get("example", "")
        for row, d in enumerate(ds):
            outs = outputs[d]
            truth = outs[TRUTH]
            lo, hi = np.percentile(truth, (0.5, 99.8))
            for col, m in enumerate(shown):
                ax = axes[row, col]
                ax.axis("off")
                if m not in outs:
                    continue
                crop = outs[m][EXAMPLE_CROP, EXAMPLE_CROP]
                ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
                title = m if m != TRUTH else "clean"
                r = _by(rows, m, d).get(example) if m != TRUTH else None
                if r is not None:
                    title += f"\n{r['psnr']:.1f} dB"
                ax.set_title(f"{title}  ({d:g} e⁻/px)" if col == 0 else title, fontsize=9)
        fig.suptitle(f"{example}: central {SHAPE // 2}² crop", fontsize=10)
        fig.tight_layout()
        path = out_dir / "realistic-example.png"
        save_png(fig, path, 80)
        plt.close(fig)
        written.append(path)
    return written


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        metavar="[LABEL=]PATH_OR_NAME",
        help="a model to score (repeatable); default: the shipped 'default' and 'cdn'",
    )
    parser.add_argument("--quick", action="store_true", help="2 images, 2 doses, coarse grids")
    parser.add_argument("--doses", type=float, nargs="+", help="override the doses (e⁻/px)")
    parser.add_argument("--images-limit", type=int, help="only the first N images of the set")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--jobs", type=int, default=1, help="processes scoring cases in parallel")
    parser.add_argument("--no-classical", action="store_true", help="models and noisy input only")
    parser.add_argument("--adapt", action="store_true", help="also adapt the first model (slow)")
    parser.add_argument("--adapt-images", type=int, default=2, help="images adapted to, per dose")
    parser.add_argument("--adapt-steps", type=int, default=500)
    parser.add_argument("--json", type=pathlib.Path, help="default: benchmarks/realistic.json")
    parser.add_argument("--images", type=pathlib.Path, help="default: docs/images")
    parser.add_argument("--markdown", type=pathlib.Path, help="also write the tables here")
    parser.add_argument(
        "--reuse",
        nargs="?",
        type=pathlib.Path,
        const=True,
        metavar="JSON",
        help="keep the noisy and classical rows of an earlier run (default: --json) for the "
        "images and doses it has unchanged, and score only the models: minutes, not an hour",
    )
    parser.add_argument(
        "--tables-only", action="store_true", help="re-print the tables from --json"
    )
    args = parser.parse_args()
    json_path = args.json or (None if args.quick else ROOT / "benchmarks" / "realistic.json")
    image_dir = args.images or (None if args.quick else ROOT / "docs" / "images")

    if args.tables_only:
        result = json.loads((json_path or ROOT / "benchmarks" / "realistic.json").read_text())
        text = markdown(result)
        print(text)
        if args.markdown:
            args.markdown.write_text(text)
        return

    models = parse_model_specs(args.model, ["default", "cdn"])
    notes = []
    classical = [] if args.no_classical else [m.name for m in CLASSICAL]
    if "VST + BM3D" in classical and not bm3d_available():
        classical.remove("VST + BM3D")
        notes.append("bm3d not installed (pip install -e '.[benchmarks]'): VST + BM3D left out")
    for note in notes:
        print(f"# {note}")
    specs = held_out_set(args.quick)
    if args.images_limit:
        specs = specs[: args.images_limit]
    doses = tuple(args.doses) if args.doses else (QUICK_DOSES if args.quick else DOSES)
    example = specs[0].id
    reusable = {}
    if args.reuse:
        source = json_path if args.reuse is True else args.reuse
        reusable = reusable_rows(source, args.quick, classical)
    cases = [
        Case(
            spec,
            dose,
            tuple(models),
            tuple(classical),
            args.quick,
            args.threads,
            adapt=args.adapt and i < args.adapt_images,
            adapt_steps=args.adapt_steps,
            keep_outputs=spec.id == example and dose in EXAMPLE_DOSES,
            reused=reused_for(reusable, spec, dose),
        )
        for i, spec in enumerate(specs)
        for dose in doses
    ]
    if args.reuse:
        n = sum(bool(c.reused) for c in cases)
        print(f"# reusing the noisy and classical rows of {n} of {len(cases)} cases")
    names = [NOISY, *classical, *(m.label for m in models)]
    print(f"# {len(specs)} images × {len(doses)} doses; methods: {', '.join(names)}", flush=True)
    start = time.perf_counter()
    results = run_cases(cases, args.jobs)
    seconds = time.perf_counter() - start
    rows = [r for res in results for r in res.rows]
    outputs = {c.dose: res.outputs for c, res in zip(cases, results, strict=True) if res.outputs}
    result = {
        "meta": {
            "benchmark": "realistic STEM noise, held-out set (benchmarks/realistic.py)",
            "date": time.strftime("%Y-%m-%d"),
            "machine": machine(),
            "threads": args.threads,
            "jobs": args.jobs,
            "seconds": round(seconds),
            "quick": args.quick,
            "shape": SHAPE,
            "doses": list(doses),
            "read_noise": READ_NOISE,
            "held_out_materials": list(held_out_materials()),
            "classical": classical,
            "models": [m.describe() for m in models],
            "adapted": sorted({r["method"] for r in rows if r["method"].endswith(" + adapt")}),
            "example": example,
            "notes": notes,
            "parameters": {m.name: m.parameter for m in CLASSICAL if m.name in classical},
        },
        "specs": [asdict(s) for s in specs],
        "images": [res.info for res in results],  # one per image and dose
        "rows": rows,
    }
    result["summary"] = summarise(result)
    text = markdown(result)
    print()
    print(text)
    print(f"# {len(cases)} cases in {seconds / 60:.1f} min")
    if json_path is not None:
        dump_json(result, json_path, one_line=("images", "rows", "specs"))
        print(f"# wrote {json_path}")
    if args.markdown:
        args.markdown.write_text(text)
    if image_dir is not None:
        for path in plot(result, outputs, image_dir):
            print(f"# wrote {path}")


if __name__ == "__main__":
    main()
