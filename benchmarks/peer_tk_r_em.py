"""Side by side with tk_r_em, the pretrained STEM restoration network of Lobato et al.

tk_r_em (Lobato, Aveyard, Lechner and Van Aert, npj Comput. Mater. 2024; PyPI
``tk-r-em``, GPL-3) ships TensorFlow models; it is the peer whose numbers napari-pinned's
default model is measured against.  Its licence and TensorFlow keep it out of this
project: it is installed at benchmark time into a separate virtual environment, run
there by a small runner written to a temporary folder, and only its outputs come back
(as ``.npy`` files).  Nothing of it is committed.

    python -m venv /tmp/tkvenv
    /tmp/tkvenv/bin/pip install "tensorflow-cpu==2.15.1" "tk-r-em==1.0.4"
    python benchmarks/peer_tk_r_em.py --python /tmp/tkvenv/bin/python        # ~30 min

The held-out images and recordings are those of ``benchmarks/realistic.py`` (same seeds),
and the real micrographs those of ``benchmarks/real_micrographs.py``; the scores use the
same functions, so the rows can stand beside the JSON of those benchmarks.  tk_r_em's
``sfr_hrstem`` model restores HRSTEM images; it runs on 256-px patches (its own
``predict_patch_based``, stride 128) at about 0.01 Mpx/s on two CPU cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import real_micrographs
import realistic

from napari_pinned.denoising.denoiser import denoise
from napari_pinned.io.safe_write import write_text
from napari_pinned.quality.faithfulness import faithfulness
from napari_pinned.quality.metrics import compute_metrics

ROOT = pathlib.Path(__file__).resolve().parent.parent
JSON = ROOT / "benchmarks" / "peer_tk_r_em.json"

_RUNNER = """
import os, pathlib, sys, time
threads = int(sys.argv[2])
os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(threads)
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(threads)
import tk_r_em
folder = pathlib.Path(sys.argv[1])
net = tk_r_em.load_network("sfr_hrstem")
for path in sorted(folder.glob("in-*.npy")):
    if (folder / path.name.replace("in-", "out-")).exists():
        continue
    x = np.load(path).astype(np.float32)
    t = time.perf_counter()
    if max(x.shape) > 256:
        y = net.predict_patch_based(x, patch_size=256, stride=128, batch_size=8)
    else:
        y = net.predict(x[None, ..., None], 1)
    y = np.asarray(y, np.float32).reshape(x.shape)
    np.save(folder / path.name.replace("in-", "out-"), y)
    (folder / path.name.replace("in-", "time-").replace(".npy", ".txt")).write_text(
        str(time.perf_counter() - t))
    print(path.name, flush=True)
"""


def _cases(
    quick: bool, limit: int | None
) -> list[tuple[str, np.ndarray, np.ndarray | None, float | None]]:
    """(name, noisy, truth or None, pixel size) for every image scored."""
    out = []
    specs = realistic.held_out_set(quick)[:limit]
    doses = (3.0, 30.0) if quick else realistic.DOSES
    for spec in specs[:2] if quick else specs:
        clean = realistic.make_clean(spec)
        for dose in doses:
            noisy, truth = realistic.record(clean, spec, dose)
            out.append((f"{spec.id} @ {dose:g} e⁻/px", noisy, truth, spec.pixel_size))
    real, _, _ = real_micrographs.load_data(
        real_micrographs.fetch_sdist(real_micrographs.cache_dir(None))
    )
    for name, image in real[:2] if quick else real:
        out.append((name, image.astype(np.float32), None, None))
    return out


def _peer_folder() -> pathlib.Path:
    """Where tk_r_em's inputs and outputs are kept between runs (outside the project),
    so a new model of ours is scored without running the slow peer again."""
    folder = real_micrographs.cache_dir(None) / "tk_r_em"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _key(noisy: np.ndarray) -> str:
    """Names an input by its content, so any subset of the cases finds its outputs."""
    return hashlib.sha256(np.ascontiguousarray(noisy, np.float32).tobytes()).hexdigest()[:20]


def run(python: str, quick: bool, limit: int | None = None, threads: int = 2) -> dict:
    cases = _cases(quick, limit)
    folder = _peer_folder()
    keys = [_key(noisy) for _, noisy, _, _ in cases]
    for key, (_, noisy, _, _) in zip(keys, cases, strict=True):
        if not (folder / f"in-{key}.npy").exists():
            np.save(folder / f"in-{key}.npy", np.asarray(noisy, np.float32))
    runner = folder / "runner.py"
    runner.write_text(_RUNNER)
    started = time.perf_counter()
    subprocess.run([python, str(runner), str(folder), str(threads)], check=True)
    seconds = time.perf_counter() - started
    rows = []
    for key, (name, noisy, truth, pixel_size) in zip(keys, cases, strict=True):
        peer = np.load(folder / f"out-{key}.npy")
        ours = denoise(noisy, device="cpu")
        row = {"image": name, "real": truth is None}
        for label, out in (("tk_r_em", peer), ("default", ours)):
            check = faithfulness(noisy, out, pixel_size=pixel_size)
            row[label] = {
                "faithful": check.faithful,
                "kept": check.n_kept,
                "peaks": check.n_peaks,
                "invented": check.n_invented,
            }
            if truth is not None:
                span = float(truth.max() - truth.min())
                metrics = compute_metrics(out, truth, data_range=span)
                row[label].update(psnr=metrics.psnr, ssim=metrics.ssim)
        if truth is not None:
            span = float(truth.max() - truth.min())
            row["noisy_psnr"] = compute_metrics(noisy, truth, data_range=span).psnr
        row["tk_r_em"]["seconds"] = float((folder / f"time-{key}.txt").read_text().strip() or "nan")
        rows.append(row)
        print(name, json.dumps({k: row[k] for k in ("tk_r_em", "default")}), flush=True)
    return {
        "rows": rows,
        "seconds": seconds,
        "quick": quick,
        "images_limit": limit,
        "date": time.strftime("%Y-%m-%d"),
    }


def markdown(result: dict) -> str:
    sim = [r for r in result["rows"] if not r["real"]]
    lines = []
    if sim:
        doses = sorted({float(r["image"].rsplit("@", 1)[1].split()[0]) for r in sim})
        lines += [
            "Mean PSNR (dB) over the held-out images of `benchmarks/realistic.py`:",
            "",
            "| method | " + " | ".join(f"{d:g} e⁻/px" for d in doses) + " |",
            "|---|" + "---|" * len(doses),
        ]
        for label in ("noisy", "tk_r_em", "default"):
            cells = []
            for d in doses:
                at = [r for r in sim if r["image"].endswith(f"@ {d:g} e⁻/px")]
                values = [r["noisy_psnr"] if label == "noisy" else r[label]["psnr"] for r in at]
                cells.append(f"{np.mean(values):.2f}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    for group, rows in (
        ("held-out simulations", sim),
        ("real micrographs", [r for r in result["rows"] if r["real"]]),
    ):
        if not rows:
            continue
        for label in ("tk_r_em", "default"):
            faithful = sum(r[label]["faithful"] for r in rows)
            kept = sum(r[label]["kept"] for r in rows)
            peaks = sum(r[label]["peaks"] for r in rows)
            invented = sum(r[label]["invented"] for r in rows)
            lines.append(
                f"- {group}, {label}: faithful on {faithful}/{len(rows)}, kept {kept}/{peaks} "
                f"strong reflections, invented {invented}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="/tmp/tkvenv/bin/python", help="the TF venv's python")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--images-limit", type=int, help="only the first N held-out images")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow's threads")
    parser.add_argument("--tables-only", action="store_true")
    args = parser.parse_args(argv)
    if args.tables_only:
        print(markdown(json.loads(JSON.read_text(encoding="utf-8"))))
        return 0
    result = run(args.python, args.quick, args.images_limit, args.threads)
    if not args.quick:
        write_text(JSON, json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
