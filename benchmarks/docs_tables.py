"""Write the measured tables into the docs, from the benchmarks' JSON alone.

Every number in the README, the model cards and docs/benchmarks.md that comes from
``benchmarks/realistic.py``, ``benchmarks/real_micrographs.py``, ``benchmarks/adapt.py``,
``benchmarks/peer_tk_r_em.py``, ``benchmarks/scan_noise.py``, ``benchmarks/other_noise.py``,
``benchmarks/capacity.py``, ``benchmarks/lattice_prior.py``,
``benchmarks/self_supervised.py`` or (the ``cdn``
model's tables) ``benchmarks/quality.py`` is written here, between
``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` markers, so that the docs say what
the last run measured and nothing typed by hand::

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
import capacity
import lattice_prior
import other_noise
import peer_tk_r_em
import real_micrographs
import realistic
import scan_noise
import self_supervised

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
        f"On {len(rows)} real micrographs (tk_r_em's example data and atomap's ADF test "
        "image, benchmark-only), "
        f"the readout judges the {model} model faithful on {faithful}; over all of them it "
        f"keeps {kept} of {peaks} strong reflections within ±25 % and invents {invented} "
        "(`python benchmarks/real_micrographs.py`)."
    )


def _quality_means(rows: list[dict], method: str, level: int, key: str = "psnr") -> float:
    values = [r[key] for r in rows if r["method"] == method and r["level"] == level]
    return sum(values) / len(values)


def _best_classical(rows: list[dict], levels: list[int]) -> str:
    """The classical method with the best mean PSNR over every level and material."""
    import quality

    present = [m for m in quality.CLASSICAL if any(r["method"] == m for r in rows)]
    return max(present, key=lambda m: sum(_quality_means(rows, m, lv) for lv in levels))


def _gains(rows: list[dict], level: int) -> list[float]:
    """The cdn model minus the best tuned classical filter of each material (dB)."""
    import quality

    out = []
    for material in sorted({r["material"] for r in rows}):
        mine = [r for r in rows if r["material"] == material and r["level"] == level]
        ours = next(r["psnr"] for r in mine if r["method"] == quality.SHIPPED_CDN_METHOD)
        out.append(ours - max(r["psnr"] for r in mine if r["method"] in quality.CLASSICAL))
    return out


def cdn_benchmark(result: dict) -> str:
    """The README's table of the shipped cdn model on the paper's benchmark."""
    import quality

    rows, cdn = result["rows"], quality.SHIPPED_CDN_METHOD
    levels = sorted({r["level"] for r in rows if r["method"] == cdn})
    best = _best_classical(rows, levels)

    def row(label: str, method: str, bold: bool = False) -> str:
        cells = [f"{_quality_means(rows, method, lv):.1f}" for lv in levels]
        return f"| {label} | " + " | ".join(f"**{c}**" if bold else c for c in cells) + " |"

    columns = " | ".join(
        f"{100 * _quality_means(rows, cdn, lv, 'recall'):.0f} % / "
        f"{_quality_means(rows, cdn, lv, 'rms_pm'):.0f} pm"
        for lv in levels
    )
    low = [g for lv in levels if lv <= 3 for g in _gains(rows, lv)]
    top = _gains(rows, levels[-1])
    return "\n".join(
        [
            "| CDN level (paper, Table 1) | " + " | ".join(str(lv) for lv in levels) + " |",
            "|---|" + "---|" * len(levels),
            row("noisy input", "noisy"),
            row(f"best classical filter, tuned per image against the truth ({best})", best),
            row("flat grey image at the true mean", "flat (clean mean)"),
            row("**PINNED cdn model**", cdn, bold=True),
            f"| atom columns found (recall) / RMS position error | {columns} |",
            "",
            f"It beats every classical filter by {min(low):.1f}–{max(low):.1f} dB at levels "
            f"1–3 and {min(top):.1f}–{max(top):.1f} dB at level {levels[-1]}.",
        ]
    )


def cdn_card(result: dict) -> str:
    """The cdn model card's PSNR table, per material, from the paper's benchmark."""
    import quality

    rows, cdn = result["rows"], quality.SHIPPED_CDN_METHOD
    levels = sorted({r["level"] for r in rows if r["method"] == cdn})
    best = _best_classical(rows, levels)
    n = len({r["material"] for r in rows})

    def mean_row(label: str, method: str) -> str:
        cells = " | ".join(f"{_quality_means(rows, method, lv):.2f}" for lv in levels)
        return f"| {label} (mean of {n}) | {cells} |"

    lines = [
        "| PSNR (dB) | " + " | ".join(f"L{lv}" for lv in levels) + " |",
        "|---|" + "---|" * len(levels),
        mean_row("noisy input", "noisy"),
        mean_row(f"best per-image-tuned classical filter, the {best}", best),
        mean_row("flat image at the clean mean", "flat (clean mean)"),
    ]
    for material in quality.VALIDATION_MATERIALS:
        cells = [
            next(
                r["psnr"]
                for r in rows
                if (r["method"], r["material"], r["level"]) == (cdn, material, lv)
            )
            for lv in levels
        ]
        lines.append(f"| **cdn model**, {material} | " + " | ".join(f"{c:.2f}" for c in cells))
        lines[-1] += " |"
    gains = [_gains(rows, lv) for lv in levels]
    lines.append(
        "| gain over the best classical filter | "
        + " | ".join(f"{min(g):+.1f} to {max(g):+.1f}" for g in gains)
        + " |"
    )
    return "\n".join(lines)


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
    scan = _load("scan_noise.json")
    if scan is not None:
        out["scan-noise"] = "\n".join(scan_noise.markdown(scan))
    bandwidth = _load(scan_noise.JSONS["bandwidth"].name)
    if bandwidth is not None:
        out["scan-noise-bandwidth"] = "\n".join(scan_noise.markdown(bandwidth))
    resampled = _load(scan_noise.JSONS["resampled"].name)
    if resampled is not None:
        out["scan-noise-resampled"] = "\n".join(scan_noise.markdown(resampled))
    upsampled = _load(scan_noise.JSONS["upsampled"].name)
    if upsampled is not None:
        out["scan-noise-upsampled"] = "\n".join(scan_noise.markdown(upsampled))
    other = _load(other_noise.JSON.name)
    if other is not None:
        out["other-noise"] = "\n".join(other_noise.markdown(other))
    sizes = _load("capacity.json")
    if sizes is not None:
        out["capacity"] = "\n".join(capacity.markdown(sizes))
    prior = _load("lattice_prior.json")
    if prior is not None:
        out["lattice-prior"] = lattice_prior.tables(prior)
    unsupervised = _load(self_supervised.JSON.name)
    if unsupervised is not None and "settings" in unsupervised:
        out["self-supervised"] = self_supervised.markdown(unsupervised)
    cdn = _load("quality.json")
    if cdn is not None:
        out["cdn-benchmark"] = cdn_benchmark(cdn)
        out["cdn-card"] = cdn_card(cdn)
    return out


TARGETS = (
    "README.md",
    "docs/model-card.md",
    "docs/model-card-cdn.md",
    "docs/benchmarks.md",
    "docs/real-data.md",
)


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
