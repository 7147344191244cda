"""What every command's parser shares: the help layout, one-line usage errors, the
number types that check their values, and the common options."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

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
        default=FrameOptions().device,
        help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps",
    )


def add_seed(p: argparse.ArgumentParser) -> None:
    """``--seed``: the random seed, 0 unless given."""
    p.add_argument("--seed", type=seed, default=0, help="random seed")
