"""What every command's parser shares: the help layout, one-line usage errors, the
number types that check their values, and the common options."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_pinned._util.machine import usable_cpus
from napari_pinned.cli.exits import EXIT_USAGE
from napari_pinned.settings import MAX_STRENGTH, FrameOptions


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; every option that has a default says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        shown = (
            " ".join(str(v) for v in default)
            if isinstance(default, (list, tuple))
            else "%(default)s"
        )
        return f"{text} (default: {shown})"


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = f"see '{self.prog} --help'"
        self.exit(EXIT_USAGE, f"napari-pinned: error: {message} ({hint})\n")


def subparser(sub: Any, name: str, help_text: str, description: str, examples: str) -> Parser:
    """Add the command ``name`` to ``sub`` (the subparsers of :class:`Parser`)."""
    return sub.add_parser(
        name,
        help=help_text,
        description=f"{description}\n\nexamples:\n{examples}",
        formatter_class=HelpFormatter,
    )


def _number(kind: type, check: Callable[[Any], bool], wanted: str) -> Callable[[str], Any]:
    """An argparse ``type``: ``kind(text)``, finite and passing ``check``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if (isinstance(value, float) and not math.isfinite(value)) or not check(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    parse.__name__ = wanted  # what argparse names in its messages
    return parse


positive_int = _number(int, lambda v: v > 0, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "a non-negative integer")
seed = non_negative_int
positive = _number(float, lambda v: v > 0, "a positive number")
non_negative = _number(float, lambda v: v >= 0, "a non-negative number")
finite = _number(float, lambda v: True, "a finite number")
fraction = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def level(text: str) -> float:
    """A CDN level, 0 to the noise model's highest (5, the paper's Table 1)."""
    # Imported when a level is parsed, not with the parser: the noise package loads scipy.
    from napari_pinned.noise.synthesis import MAX_LEVEL

    return _number(float, lambda v: 0 <= v <= MAX_LEVEL, f"a CDN level in [0, {MAX_LEVEL}]")(text)


strength = _number(float, lambda v: 0 <= v <= MAX_STRENGTH, f"a strength in [0, {MAX_STRENGTH:g}]")


def threads(text: str) -> int:
    """``--threads``: 1 to :func:`usable_cpus`.  More threads than CPUs never speeds
    torch up, and a huge count makes OpenMP (libgomp) abort the process."""
    cpus = usable_cpus()
    return _number(int, lambda v: 1 <= v <= cpus, f"a number of threads from 1 to {cpus}")(text)


def workers(text: str) -> int:
    """``--workers``: 1 to :func:`usable_cpus` local worker processes (one thread each;
    their memory is checked against the frames' size before the cluster starts)."""
    cpus = usable_cpus()
    wanted = f"a number of worker processes from 1 to {cpus} (one per CPU)"
    return _number(int, lambda v: 1 <= v <= cpus, wanted)(text)


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def device(text: str) -> str:
    """``--device``: auto, cpu, cuda, cuda:N or mps, as :func:`napari_pinned._util.devices.
    resolve_device` takes them; mps only on macOS.  Whether a GPU is there is checked by
    the command (:func:`napari_pinned.cli.checks.check_torch_device`), without torch."""
    name = text.strip().lower()
    if not _DEVICE.fullmatch(name):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda, cuda:N or mps, got {text!r}")
    if name == "mps" and sys.platform != "darwin":
        raise argparse.ArgumentTypeError("mps (Apple's GPUs) exists only on macOS; use auto or cpu")
    return name


def output_file(text: str) -> Path:
    """A file to write (``-o``): refused when it ends with a folder separator, which
    ``Path`` drops (``-o out.tif/`` wrote ``out.tif``); a ``.zarr`` store is a folder and
    may end with one."""
    from napari_pinned.io.safe_write import check_file_name

    path = Path(text)
    if path.suffix.lower() != ".zarr":
        try:
            check_file_name(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return path


def add_overwrite(p: argparse.ArgumentParser) -> None:
    """``--overwrite``: without it no output may replace an input."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="allow an output to replace one of the input files",
    )


def add_device(p: argparse.ArgumentParser) -> None:
    """``--device``: where torch runs."""
    p.add_argument(
        "--device",
        type=device,
        default=FrameOptions().device,
        help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps",
    )


def add_threads(p: argparse.ArgumentParser) -> None:
    """``--threads``: torch's CPU threads, at most the CPUs this process may use."""
    p.add_argument(
        "--threads",
        type=threads,
        help="CPU threads for torch, at most the CPUs this process may use (default: torch's)",
    )


def add_seed(p: argparse.ArgumentParser) -> None:
    """``--seed``: the random seed, 0 unless given."""
    p.add_argument("--seed", type=seed, default=0, help="random seed")
