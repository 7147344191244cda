"""Capacity within the speed budget: what each network shape costs, and what it learns.

Two parts, both written to ``benchmarks/capacity.json`` and, by
``benchmarks/docs_tables.py``, to docs/benchmarks.md ("Capacity"):

* **Cost**, measured here in one run: for each network shape (random weights; the
  default model's settings otherwise) the parameters, ``denoise`` speed on a 2048²
  image with ``--threads`` threads (Mpx/s, best of ``--repeats``), and a training step
  on 8 × 128² patches on one thread in float32 and in bfloat16, both channels-last
  as ``training.run`` takes them.  BM3D's speed is measured in the same run (VST +
  BM3D at σ = 1 on a 512² crop, the realistic benchmark's method) so the speed budget
  (≥ 25 × BM3D) is a ratio of two numbers from one machine at one time.
* **What fine-tuning makes of it**: validation PSNR against steps from training logs
  (``--runs LABEL=LOG``: ``scripts/train_default.py`` output), kept in
  ``benchmarks/logs/``.  Runs that start from the same model, with the same seed and
  settings, see the same batches: the difference is the network's.

* **On held-out images**: ``--held-out JSON`` takes a ``benchmarks/realistic.py`` run
  that scored the runs' models (and the starting one) and keeps its mean PSNR per dose.

Run::

    python benchmarks/realistic.py --model "default (where both started)=default" \
        --model "d4 ×8 (shipped)=runs/ctl.pt" --model "d5 ×16 (grown)=runs/grown.pt" \
        --reuse benchmarks/realistic.json \
        --json /tmp/capacity-realistic.json --images /tmp --jobs 2
    python benchmarks/capacity.py --runs "d4 ×8 (shipped)=benchmarks/logs/ctl.log" \
        "d5 ×16 (grown)=benchmarks/logs/grown.log" \
        --held-out /tmp/capacity-realistic.json      # ~3 min on 2 cores
    python benchmarks/capacity.py --cost-only         # re-measure the cost, keep the rest
    python benchmarks/capacity.py --tables-only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _bench import best_of, dump_json, fmt, machine, markdown_table

ROOT = pathlib.Path(__file__).resolve().parent
OUT = ROOT / "capacity.json"
#: Network shapes compared: label → changes to the default model's configuration.
SHAPES = {
    "d4 ×8 (shipped)": {},
    "d4 ×16": {"max_width_factor": 16},
    "d5 ×16 (grown)": {"depth": 5, "max_width_factor": 16},
    "d5 ×32": {"depth": 5, "max_width_factor": 32},
    "d4 w12": {"width": 12},
    "d4 w16": {"width": 16},
}
_LOG_LINE = re.compile(r"step\s+(\d+)\s+loss\s+\S+\s+val\s+([\d.]+) dB")


def _config(changes: dict):
    from napari_pinned.nn.resolve import load_model

    return dataclasses.replace(load_model("default").config, **changes)


def inference_speed(changes: dict, size: int, threads: int, repeats: int) -> dict:
    """Mpx/s of ``denoise`` on a ``size``² image, and the parameter count."""
    import torch

    from napari_pinned.denoising.denoiser import denoise
    from napari_pinned.nn.network import ModelBundle, build_model, count_parameters

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = _config(changes)
    bundle = ModelBundle(build_model(config).eval(), config, {"name": "shape"})
    image = np.random.default_rng(0).poisson(5.0, (size, size)).astype(np.float32)
    denoise(image[:256, :256], bundle, device="cpu")  # warm-up
    seconds = best_of(lambda: denoise(image, bundle, device="cpu"), repeats)
    return {
        "parameters": count_parameters(bundle.model),
        "mpx_s": size * size / seconds / 1e6,
        "channels": config.channels(),
    }


def training_speed(changes: dict, steps: int) -> dict:
    """Seconds per training step (8 × 128², one thread), float32 and bfloat16."""
    import torch

    from napari_pinned.nn.network import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = _config(changes)
    model = build_model(config).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(8, config.input_channels, 128, 128) + 0.1
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.rand(8, 1, 128, 128)
    out = {}
    for precision in ("fp32", "bf16"):

        def step(bf16: bool = precision == "bf16") -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                prediction = model(x)
            loss = (prediction.float() - y).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        step()
        out[f"step_s_{precision}"] = best_of(lambda: [step() for _ in range(steps)], 2) / steps
    return out


def bm3d_speed(size: int = 512) -> float | None:
    """Mpx/s of VST + BM3D at σ = 1 (the realistic benchmark's classical best)."""
    from _bench import GAT, _bm3d_vst, bm3d_available

    if not bm3d_available():
        return None
    from napari_pinned.physics.simulate import simulate

    clean = simulate("SrTiO3", shape=size, seed=0).image
    noisy = np.random.default_rng(0).poisson(clean / clean.mean() * 5.0).astype(np.float32)
    gat = GAT(gain=1.0, sigma=0.5, mu=0.0)
    seconds = best_of(lambda: _bm3d_vst(noisy, gat, 1.0), 1)
    return size * size / seconds / 1e6


def read_log(path: pathlib.Path) -> list[list[float]]:
    """``[step, val PSNR]`` of every validation in a ``train_default.py`` log."""
    return [
        [int(m.group(1)), float(m.group(2))]
        for m in map(_LOG_LINE.search, path.read_text(encoding="utf-8").splitlines())
        if m
    ]


def markdown(result: dict) -> list[str]:
    bm3d = result.get("bm3d_mpx_s")
    lines = [
        f"Cost ({result['machine']}; `denoise` of {result['size']}² on {result['threads']} "
        f"threads; training steps of 8 × 128² on one thread; VST + BM3D "
        f"{fmt(bm3d, '.3f')} Mpx/s in the same run):",
        "",
        markdown_table(
            [
                "network",
                "channels",
                "parameters",
                "Mpx/s",
                "× BM3D",
                "step fp32 (s)",
                "step bf16 (s)",
            ],
            [
                [
                    label,
                    "–".join(map(str, r["channels"])),
                    f"{r['parameters']:,}",
                    fmt(r["mpx_s"]),
                    fmt(r["mpx_s"] / bm3d, ".0f") if bm3d else "–",
                    fmt(r["step_s_fp32"], ".3f"),
                    fmt(r["step_s_bf16"], ".3f"),
                ]
                for label, r in result["shapes"].items()
            ],
        ),
    ]
    runs = result.get("runs") or {}
    if runs:
        steps = sorted({s for curve in runs.values() for s, _ in curve})
        marks = [s for s in steps if all(s in dict(c) for c in runs.values())]
        marks = marks[:: max(1, len(marks) // 8)] + ([marks[-1]] if marks else [])
        marks = sorted(set(marks))
        lines += [
            "",
            "Fine-tuning from the shipped default (same seed, batches and schedule), "
            "validation PSNR (dB) after each number of steps:",
            "",
            markdown_table(
                ["run", *map(str, marks), "best"],
                [
                    [label, *(f"{dict(c)[s]:.2f}" for s in marks), f"{max(v for _, v in c):.2f}"]
                    for label, c in runs.items()
                ],
            ),
        ]
    held_out = result.get("held_out") or {}
    if held_out:
        doses = sorted({d for per in held_out.values() for d in per}, key=float)
        lines += [
            "",
            "Mean PSNR (dB) of the runs' best models over the realistic benchmark's 28 "
            "held-out images (white shot and read noise):",
            "",
            markdown_table(
                ["model", *(f"{float(d):g} e⁻/px" for d in doses)],
                [[label, *(f"{per[d]:.2f}" for d in doses)] for label, per in held_out.items()],
            ),
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", default=[], metavar="LABEL=LOG")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="training steps timed per shape")
    parser.add_argument(
        "--held-out", type=pathlib.Path, help="a realistic.py JSON that scored the runs' models"
    )
    parser.add_argument(
        "--cost-only",
        action="store_true",
        help="measure the cost part again and keep the JSON's runs and held-out parts "
        "(after the default model changed)",
    )
    parser.add_argument("--tables-only", action="store_true")
    args = parser.parse_args(argv)
    if args.tables_only:
        print("\n".join(markdown(json.loads(OUT.read_text(encoding="utf-8")))))
        return 0
    result = {
        "machine": machine(),
        "size": args.size,
        "threads": args.threads,
        "bm3d_mpx_s": bm3d_speed(),
        "shapes": {},
        "runs": {},
    }
    for label, changes in SHAPES.items():
        row = inference_speed(changes, args.size, args.threads, args.repeats)
        row.update(training_speed(changes, args.steps))
        result["shapes"][label] = row
        print(label, row, flush=True)
    if args.cost_only:
        kept = json.loads(OUT.read_text(encoding="utf-8"))
        result["runs"] = kept.get("runs", {})
        if "held_out" in kept:
            result["held_out"] = kept["held_out"]
    for spec in args.runs:
        label, _, path = spec.partition("=")
        result["runs"][label] = read_log(pathlib.Path(path))
    if args.held_out:
        models = json.loads(args.held_out.read_text(encoding="utf-8"))["summary"]["models"]
        result["held_out"] = {
            label: {dose: row["mean_psnr"] for dose, row in summary["per_dose"].items()}
            for label, summary in models.items()
        }
    dump_json(result, OUT)
    print("\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
