"""Does a lattice-averaged copy of the input make the default model better? (issue 20, §2)

A crystal repeats over hundreds of unit cells, while the network sees a window of about
a hundred pixels.  A copy of the noisy image that keeps only its significant Fourier
components (a Bragg filter: the components that stand far above the noise's power,
weighted by the Wiener gain; :mod:`napari_pinned.nn.lattice_prior`) averages
each column over every cell of the frame.  This experiment measures what it is worth:

1. **The copy alone and a blend.**  The filtered image's PSNR, and the best global blend
   ``a · filtered + (1 − a) · default`` (``a`` tuned against the truth, an oracle), on
   the held-out white-noise set of ``realistic.py``.
2. **A network told it.**  Two copies of the shipped default get two more input
   channels — the filtered copy and its difference from the input in units of the noise
   map, clipped at ±10 — whose first-layer weights start at zero, so both start as the
   default.  The *prior* model sees the channels (it is ``nn.network``'s
   ``conditioning="noise-map+lattice"`` network); the *control* model's weights on them
   are held at zero, as if it were given zeros.  Both are fine-tuned on the same
   batches (scanning-detector noise on ``structure_pool`` specimens of 256² px, the
   filter applied to the whole noisy image before the training frame is cut from it)
   and scored on the held-out set, with their PSNR per dose and per kind of image
   (crystals, defects, amorphous, particle).

Run::

    python benchmarks/lattice_prior.py --minutes 55 --out /tmp/lattice   # train, then score
    python benchmarks/lattice_prior.py --score-only --out /tmp/lattice    # score saved models

Writes ``lattice_prior.json`` (and the two models' weights) under ``--out``; prints the
tables, and the faithfulness readout's verdict on each output (without the lattice
guard).  Copy the JSON to ``benchmarks/`` for docs/benchmarks.md
(``benchmarks/docs_tables.py``).
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import realistic

from napari_pinned.nn.conditioning import finish, prepare
from napari_pinned.nn.lattice_prior import lattice_average
from napari_pinned.nn.network import feature_channels

SHAPE = 256
PATCH = 128
MARGIN = 16
DOSES = (1, 3, 10, 30, 100)


# --------------------------------------------------------------------------- the network


def prior_network(base, use_prior: bool):
    """``base`` (a noise-map ModelBundle) grown into nn.network's lattice network, whose
    prior inputs start at zero weight (:func:`napari_pinned.nn.growth.grow`).  Without
    ``use_prior`` those weights get no gradient and stay zero: the control reads nothing
    of the prior, exactly as if given zeros."""
    import dataclasses

    from napari_pinned.nn.growth import grow

    config = dataclasses.replace(base.config, conditioning="noise-map+lattice")
    model = grow(base, config).model
    if not use_prior:
        first = model.encoder[0][0]
        read = feature_channels(base.config)  # the noise-map network's features

        def unread(grad):
            grad = grad.clone()
            grad[:, read:] = 0.0
            return grad

        first.weight.register_hook(unread)
    return model


def channels_of(noisy: np.ndarray, prior: np.ndarray):
    """(3, h, w) input — image and noise map as the default gets them, plus the prior in
    the same model units — and the prepared state."""
    prepared = prepare(noisy, "robust", conditioned=True)
    state = prepared.state
    units = ((prior - state.low) / state.scale).astype(np.float32)
    return np.concatenate([prepared.channels, units[None]]), prepared


# --------------------------------------------------------------------------- training data

_POOL: list[np.ndarray] = []


def _init_pool(pool: list[np.ndarray]) -> None:
    global _POOL
    _POOL = pool


def draw_batch(seed: int, batch: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(inputs (B, 3, P, P), targets (B, 1, P, P), noise scale (B,))`` from ``seed``."""
    from napari_pinned.noise.synthesis import draw_recording, record_stem_image
    from napari_pinned.settings import SCANNING_DETECTOR

    rng = np.random.default_rng(seed)
    frame = PATCH + 2 * MARGIN
    inputs = np.empty((batch, 3, PATCH, PATCH), np.float32)
    targets = np.empty((batch, 1, PATCH, PATCH), np.float32)
    for b in range(batch):
        clean = _POOL[int(rng.integers(len(_POOL)))]
        noisy, target = record_stem_image(clean, draw_recording(rng, SCANNING_DETECTOR), rng)
        prior = lattice_average(noisy)
        top, left = (int(rng.integers(0, s - frame + 1)) for s in noisy.shape)
        window = np.s_[top : top + frame, left : left + frame]
        channels, prepared = channels_of(noisy[window], prior[window])
        state = prepared.state
        units = (np.asarray(target[window], np.float64) - state.low) / state.scale
        inner = np.s_[MARGIN:-MARGIN, MARGIN:-MARGIN]
        k = int(rng.integers(8))
        chans = np.rot90(channels[:, MARGIN:-MARGIN, MARGIN:-MARGIN], k % 4, axes=(1, 2))
        unit = np.rot90(units[inner], k % 4)
        if k >= 4:
            chans, unit = chans[..., ::-1], unit[..., ::-1]
        inputs[b], targets[b, 0] = chans, unit
    scale = np.sqrt(np.mean(inputs[:, 1].astype(np.float64) ** 2, axis=(1, 2))).astype(np.float32)
    return inputs, targets, scale


def train_pair(args) -> dict:
    """Fine-tune the prior and control networks on the same batches; returns the log."""
    import torch

    from napari_pinned.nn.resolve import load_model
    from napari_pinned.physics.ranges import StructureRanges
    from napari_pinned.physics.specimens import structure_pool

    torch.set_num_threads(1)
    started = time.perf_counter()
    pool = [
        s.image.astype(np.float32)
        for s in structure_pool(
            args.images,
            SHAPE,
            split="train",
            seed=args.seed,
            ranges=StructureRanges(pixel_size=(0.03, 0.6)),
        )
    ]
    print(f"{len(pool)} clean images in {time.perf_counter() - started:.0f} s", flush=True)
    base = load_model("default")
    models = {"prior": prior_network(base, True), "control": prior_network(base, False)}
    optimisers = {k: torch.optim.Adam(m.parameters(), lr=args.lr) for k, m in models.items()}
    _init_pool(pool)
    validation = [draw_batch(10_000_000 + i) for i in range(8)]
    best = {k: (-np.inf, copy.deepcopy(m.state_dict()), 0) for k, m in models.items()}
    log = []

    def validate(step: int) -> None:
        row = {"step": step}
        for name, model in models.items():
            model.eval()
            errors = []
            with torch.no_grad():
                for x, y, s in validation:
                    out = model(torch.from_numpy(x)).numpy()
                    errors.append(np.mean((out - y) ** 2, axis=(1, 2, 3)) / s**2)
            score = float(-10 * np.log10(np.mean(np.concatenate(errors))))
            row[name] = score
            if score > best[name][0]:
                best[name] = (score, copy.deepcopy(model.state_dict()), step)
        log.append(row)
        elapsed = (time.perf_counter() - started) / 60
        print(
            f"step {step:6d}  prior {row['prior']:.3f}  control {row['control']:.3f} "
            f"(noise-scaled dB)  {elapsed:.1f} min",
            flush=True,
        )

    validate(0)
    deadline = started + 60 * args.minutes
    context = multiprocessing.get_context("fork")
    with context.Pool(1, initializer=_init_pool, initargs=(pool,)) as workers:
        batches = workers.imap(draw_batch, (args.seed * 1_000_003 + i for i in range(10**7)), 4)
        step = 0
        for x, y, s in batches:
            step += 1
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            st = torch.from_numpy(s).view(-1, 1, 1, 1)
            for name, model in models.items():
                model.train()
                optimisers[name].zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = model(xt)
                loss = torch.mean(((out.float() - yt) / st) ** 2)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimisers[name].step()
            if step % 500 == 0:
                validate(step)
            if time.perf_counter() > deadline:
                break
    if step % 500:
        validate(step)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (_, state, _) in best.items():
        torch.save(state, args.out / f"{name}.pt")
    return {"log": log, "best": {k: {"val": v[0], "step": v[2]} for k, v in best.items()}}


# --------------------------------------------------------------------------- scoring


def _kind(spec) -> str:
    if spec.source == "simulate":
        return "crystal"
    return {
        "vacancies": "defects",
        "dopants": "defects",
        "grain_boundary": "defects",
        "surface": "defects",
        "amorphous": "amorphous",
        "nanoparticle": "particle",
    }.get(spec.kind, "crystal mixtures")


def score(args) -> dict:
    import torch

    from napari_pinned.nn.resolve import load_model
    from napari_pinned.noise.estimate import estimate_noise
    from napari_pinned.quality.faithfulness import faithfulness

    torch.set_num_threads(2)
    base = load_model("default")
    models = {"default": prior_network(base, False)}
    for name in ("control", "prior"):
        path = args.out / f"{name}.pt"
        if path.exists():
            model = prior_network(base, name == "prior")
            model.load_state_dict(torch.load(path, weights_only=True))
            models[name] = model
    rows = []
    for spec in realistic.held_out_set():
        clean = realistic.make_clean(spec)
        for dose in DOSES:
            noisy, truth = realistic.record(clean, spec, dose)
            data_range = float(truth.max() - truth.min())

            def psnr(out, truth=truth, data_range=data_range):
                return float(10 * np.log10(data_range**2 / np.mean((out - truth) ** 2)))

            noise = estimate_noise(noisy)
            prior = lattice_average(noisy)
            channels, prepared = channels_of(noisy, prior)
            row = {"image": spec.id, "kind": _kind(spec), "dose": dose, "filtered": psnr(prior)}
            outs = {}
            with torch.no_grad():
                for name, model in models.items():
                    model.eval()
                    out = model(torch.from_numpy(channels[None]))[0, 0].numpy()
                    outs[name] = finish(out, prepared).astype(np.float64)
                    row[name] = psnr(outs[name])
                    verdict = faithfulness(
                        noisy, outs[name], noise=noise, pixel_size=spec.pixel_size
                    )
                    row[f"{name} faithful"] = bool(verdict.faithful)
                    row[f"{name} invented"] = int(verdict.n_invented)
            row["blend"] = max(
                psnr(a * prior + (1 - a) * outs["default"]) for a in np.linspace(0, 1, 21)
            )
            rows.append(row)
            print(
                f"{spec.id[:30]:30s} {dose:4d} "
                + " ".join(f"{k} {v:6.2f}" for k, v in row.items() if isinstance(v, float)),
                flush=True,
            )
    return {"rows": rows}


def tables(result: dict) -> str:
    """The comparison in markdown, from the JSON alone (docs/benchmarks.md reuses it)."""
    rows = result["rows"]
    methods = [m for m in ("filtered", "blend", "control", "prior") if m in rows[0]]
    paired = "prior" in methods and "control" in methods

    def gain(mine: list[dict], method: str) -> str:
        return f"{np.mean([r[method] - r['default'] for r in mine]):+.2f}"

    def cells(mine: list[dict]) -> list[str]:
        out = [gain(mine, m) for m in methods]
        if paired:
            out.append(f"{np.mean([r['prior'] - r['control'] for r in mine]):+.2f}")
        return out

    names = [*methods, "prior − control"] if paired else methods
    lines = [
        "Mean PSNR over the held-out images: the default's in dB, the others' in dB against it.",
        "",
        "| dose (e⁻/px) | default | " + " | ".join(names) + " |",
        "|---" * (len(names) + 2) + "|",
    ]
    for dose in DOSES:
        mine = [r for r in rows if r["dose"] == dose]
        default = f"{np.mean([r['default'] for r in mine]):.2f}"
        lines.append(f"| {dose} | {default} | " + " | ".join(cells(mine)) + " |")
    lines += ["", "By kind of image, dB against the default:", ""]
    lines += ["| kind (images) | dose | " + " | ".join(names) + " |"]
    lines.append("|---" * (len(names) + 2) + "|")
    for kind in sorted({r["kind"] for r in rows}):
        for dose in (1, 10, 100):
            mine = [r for r in rows if r["dose"] == dose and r["kind"] == kind]
            lines.append(f"| {kind} ({len(mine)}) | {dose} | " + " | ".join(cells(mine)) + " |")
    log = result.get("training", {}).get("log", [])
    if log:
        shown = [r for r in log if r["step"] % 1000 == 0 or r is log[-1]]
        lines += [
            "",
            "Validation during the fine-tunes (64 held-out patches, scanning-detector noise; "
            "dB of the noise variance removed, the same batches for both):",
            "",
            "| step | " + " | ".join(str(r["step"]) for r in shown) + " |",
            "|---" * (len(shown) + 1) + "|",
        ]
        for name in ("control", "prior"):
            lines.append(f"| {name} | " + " | ".join(f"{r[name]:.2f}" for r in shown) + " |")
    models = [m for m in ("default", "control", "prior") if f"{m} faithful" in rows[0]]
    if models:
        counts = ", ".join(
            f"{m} {sum(r[f'{m} faithful'] for r in rows)}/{len(rows)} "
            f"({sum(r[f'{m} invented'] > 0 for r in rows)} with invented reflections)"
            for m in models
        )
        lines += ["", f"Faithful by the readout: {counts}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2028)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--score-only", action="store_true")
    args = parser.parse_args()
    result = {}
    saved = args.out / "lattice_prior.json"
    if not args.score_only:
        result["training"] = train_pair(args)
    elif saved.is_file():  # rescoring keeps the log of the run that made the models
        result = {k: v for k, v in json.loads(saved.read_text()).items() if k == "training"}
    result.update(score(args))
    args.out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(result, indent=1))
    print("\nPSNR against the shipped default (dB; mean over the held-out images)\n")
    print(tables(result))


if __name__ == "__main__":
    main()
