"""``denoise --scheduler``/``--workers``: on dask.distributed, one stack's frames or a
batch's files as tasks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from napari_pinned._util.memory import out_of_memory_message
from napari_pinned.cli.denoise_shared import report_problems, run_file_job
from napari_pinned.cli.exits import EXIT_OK
from napari_pinned.cli.progress import ProgressBar
from napari_pinned.cli.signals import import_torch
from napari_pinned.settings import FrameOptions


def denoise_on_cluster(
    args: argparse.Namespace,
    pairs: list[tuple[Path, Path]],
    spec: Any,
    options: FrameOptions,
    problems: dict[Path, str],
) -> int:
    """Connect to (or start) the cluster, denoise; return the exit status."""
    import_torch()

    from napari_pinned.denoising.files import dask_client, iter_denoise_file_on_cluster

    where = args.scheduler or f"a local cluster of {args.workers} worker processes"
    with dask_client(args.scheduler, args.workers) as client:
        workers = len(client.scheduler_info().get("workers", {}))
        print(f"napari-pinned: denoising on {where} ({workers} workers)", file=sys.stderr)
        if len(pairs) == 1 and len(args.inputs) == 1:
            path, target = pairs[0]
            run_file_job(
                path,
                target,
                lambda: iter_denoise_file_on_cluster(
                    path, target, spec, client, options, resume=args.resume
                ),
                tiles=False,
            )
            print(f"{path} → {target}")
            return EXIT_OK
        _denoise_batch(args, pairs, spec, client, options, problems)
    return report_problems(args, problems)


def _denoise_batch(
    args: argparse.Namespace,
    pairs: list[tuple[Path, Path]],
    spec: Any,
    client: Any,
    options: FrameOptions,
    problems: dict[Path, str],
) -> None:
    """One task per file; a file that fails joins ``problems``."""
    from napari_pinned.denoising.files import iter_denoise_files_on_cluster

    bar = ProgressBar(len(pairs), "denoise batch")
    done = 0
    try:
        for path, target, error in iter_denoise_files_on_cluster(
            pairs, spec, client, options, resume=args.resume
        ):
            done += 1
            bar.update(done, "files")
            if error is not None:
                memory = out_of_memory_message(error)
                problems[path] = memory or str(error).splitlines()[0]
            else:
                bar.close()
                print(f"{path} → {target}")
    finally:
        bar.close()
