"""Write the measured tables into the docs, from the benchmarks' JSON alone.

Every number in the README, the model card and docs/benchmarks.md that comes from
``benchmarks/realistic.py``, ``benchmarks/real_micrographs.py``, ``benchmarks/adapt.py`` or
``benchmarks/peer_tk_r_em.py``
is written here, between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` markers, so
that the docs say what the last run measured and nothing typed by hand::

    python benchmarks/docs_tables.py            # rewrite every block
    python benchmarks/docs_tables.py --check    # exit 1 if a block differs from the JSON
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import adapt as adapt_bench
import peer_tk_r_em
import real_micrographs
import realistic

from napari_pinned.io.safe_write import write_text

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOSES = ("1.0", "3.0", "10.0", "30.0", "100.0")
BEST_CLASSICAL = "VST + BM3D"


def _load(name: str) -> dict | None:
    path = ROOT / "benchmarks" / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _mean_psnr(result: dict, method: str, dose: str) -> float:
    rows = [r for r in result["rows"] if r["method"] == method and str(float(r["dose"])) == dose]
    return sum(r["psnr"] for r in rows) / len(rows)


def headline(result: dict, model: str = "default") -> str:
    """The README's and the model card's compact table."""
    per = result["summary"]["models"][model]["per_dose"]
    doses = [d for d in DOSES if d in per]
    head = " | ".join(f"{float(d):g}" for d in doses)
    lines = [
        f"| mean detected e⁻/px | {head} |",
        "|---|" + "---|" * len(doses),
        "| noisy input | "
        + " | ".join(f"{_mean_psnr(result, 'noisy', d):.1f}" for d in doses)
        + " |",
        f"| {BEST_CLASSICAL}, tuned per image against the truth | "
        + " | ".join(f"{_mean_psnr(result, BEST_CLASSICAL, d):.1f}" for d in doses)
        + " |",
        f"| **PINNED {model} model** | "
        + " | ".join(f"**{per[d]['mean_psnr']:.1f}**" for d in doses)
        + " |",
    ]
    lines += [
        "| gain over the best tuned classical method: mean (worst image) | "
        + " | ".join(
            f"{per[d]['mean_gain_over_best_classical']:+.1f} "
            f"({per[d]['min_gain_over_best_classical']:+.1f})"
            for d in doses
        )
        + " |",
        "| worst gain over the noisy input | "
        + " | ".join(f"{per[d]['min_gain_over_noisy']:+.1f}" for d in doses)
        + " |",
        "| faithful by the readout (images) | "
        + " | ".join(f"{per[d]['faithful']}/{per[d]['faithful_of']}" for d in doses)
        + " |",
    ]
    ensemble = result["summary"]["models"].get(f"{model} ×8", {}).get("per_dose")
    if ensemble:
        lines += [
            f"| PINNED {model} model, `orientations=8` (8× the network's time) | "
            + " | ".join(f"{ensemble[d]['mean_psnr']:.1f}" for d in doses)
            + " |",
            "| its gain over the best tuned classical method: mean (worst image) | "
            + " | ".join(
                f"{ensemble[d]['mean_gain_over_best_classical']:+.1f} "
                f"({ensemble[d]['min_gain_over_best_classical']:+.1f})"
                for d in doses
            )
            + " |",
        ]
    columns = per.get("10.0", {})
    note = ""
    if columns.get("mean_recall") is not None:
        note = (
            f"\n\nAt 10 e⁻/px it finds {100 * columns['mean_recall']:.1f} % of the atomic "
            f"columns with an RMS position error of {columns['mean_rms_pm']:.1f} pm."
        )
    images = per[doses[0]]["images"]
    intro = (
        f"Mean PSNR (dB) over {images} held-out images of 256² px (materials and structures "
        "never used in training; shot noise and 0.5 e⁻ read noise; "
        "`python benchmarks/realistic.py`):\n\n"
    )
    return intro + "\n".join(lines) + note


def real_summary(result: dict, model: str = "default") -> str:
    rows = [r for r in result["real"] if r["method"] == model and "faithful" in r]
    if not rows:
        return "(no real-micrograph rows for this model)"
    faithful = sum(r["faithful"] for r in rows)
    kept = sum(r["n_kept"] for r in rows)
    peaks = sum(r["n_peaks"] for r in rows)
    invented = sum(r["n_invented"] for r in rows)
    return (
        f"On {len(rows)} real HAADF micrographs (tk_r_em's example data, benchmark-only), "
        f"the readout judges the {model} model faithful on {faithful}; over all of them it "
        f"keeps {kept} of {peaks} strong reflections within ±25 % and invents {invented} "
        "(`python benchmarks/real_micrographs.py`)."
    )


def blocks() -> dict[str, str]:
    """Block name → text, for every JSON that exists."""
    out: dict[str, str] = {}
    result = _load("realistic.json")
    if result is not None:
        out["realistic"] = realistic.markdown(result)
        out["realistic-headline"] = headline(result)
    real = _load("real_micrographs.json")
    if real is not None:
        out["real-micrographs"] = real_micrographs.markdown(real)
        out["real-summary"] = real_summary(real)
    adapted = _load("adapt.json")
    if adapted is not None:
        out["adapt"] = adapt_bench.markdown(adapted)
    peer = _load("peer_tk_r_em.json")
    if peer is not None:
        out["peer"] = peer_tk_r_em.markdown(peer)
    return out


TARGETS = ("README.md", "docs/model-card.md", "docs/benchmarks.md", "docs/real-data.md")


def replace(text: str, name: str, block: str) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in text:
        return text
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block.strip()}\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, exit 1 on a difference")
    args = parser.parse_args(argv)
    texts = blocks()
    stale = []
    for target in TARGETS:
        path = ROOT / target
        old = path.read_text(encoding="utf-8")
        new = old
        for name, block in texts.items():
            new = replace(new, name, block)
        if new != old:
            stale.append(target)
            if not args.check:
                write_text(path, new)
                print(f"updated {target}")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
