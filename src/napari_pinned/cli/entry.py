"""The ``napari-pinned`` command line: simulate, add noise, train, denoise, score.

This module parses and dispatches; each command is a module of this package with an
``add_parser(sub)`` that adds its subcommand and a ``run(args)`` that does the work
through the API.

Every command checks its arguments, its input files (from their headers) and its
destinations before it imports torch or starts any work, so a mistake is reported in
a fraction of a second and a long run never fails at its end.  User mistakes (bad
files, wrong shapes, invalid parameters, a request too large for the machine) print
one line starting with ``napari-pinned: error:`` and exit with status 2; nothing
prints a traceback unless ``--debug`` is given.

Exit status: 0 done; 2 a mistake, or some files of a batch failed (each is named);
130 / 143 interrupted by SIGINT (Ctrl-C) / SIGTERM (``kill``, ``timeout``, SLURM) —
``train`` then saves the best model so far before it exits.

Outputs never replace an input (the same file, also through a link) unless
``--overwrite`` is given, and every file is written atomically
(:mod:`napari_pinned.io.safe_write`).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from napari_pinned._util.errors import first_line
from napari_pinned._util.memory import out_of_memory_message
from napari_pinned._version import __version__
from napari_pinned.cli import (
    adapt,
    align,
    demo,
    denoise,
    export,
    materials,
    metrics,
    models,
    noise,
    simulate,
    train,
)
from napari_pinned.cli.exits import EXIT_USAGE, signal_status
from napari_pinned.cli.options import HelpFormatter, Parser
from napari_pinned.cli.signals import Interrupted, signals_raise

#: The subcommands, in the order ``--help`` lists them.
COMMANDS = (materials, simulate, noise, metrics, train, denoise, models, export, adapt, align, demo)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests).

    Each module of :data:`COMMANDS` adds its subcommand; a new command adds a module.
    """
    parser = Parser(
        prog="napari-pinned",
        description="Physics-informed denoising of atomic-resolution STEM images (PINNED).\n\n"
        "exit status: 0 done, 2 a mistake (one line says what), 130/143 interrupted\n"
        "(train saves the best model so far first).",
        epilog="Each command has --help with examples; full reference: docs/cli.md.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


_PACKAGE = str(Path(__file__).resolve().parent.parent)


@contextlib.contextmanager
def _warnings_as_lines(debug: bool) -> Iterator[None]:
    """napari-pinned's warnings (a TIFF's other series ignored, …) as one line each,
    ``napari-pinned: warning: …``, once per text; tifffile's own warnings unshown (its
    log records are kept off stderr by :mod:`napari_pinned.io.tiff`); others as usual."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="<tifffile")
        if debug:
            yield
            return
        shown: set[str] = set()
        usual = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            if not str(filename).startswith(_PACKAGE):
                usual(message, category, filename, lineno, file, line)
                return
            text = first_line(message) if isinstance(message, Warning) else str(message)
            if text not in shown:
                shown.add(text)
                print(f"napari-pinned: warning: {text}", file=sys.stderr)

        warnings.showwarning = show
        yield


def _link_loop_message(exc: BaseException) -> str | None:
    """One line for the RuntimeError ``Path.resolve`` raises on a loop of symbolic links
    (Python < 3.13), naming the link; None for any other error."""
    found = re.fullmatch(r"Symlink loop from '(.*)'", str(exc))
    if not isinstance(exc, RuntimeError) or found is None:
        return None
    return f"{found.group(1)}: a symbolic link loop (it leads back to itself)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-pinned`` console script; returns the exit status."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        with signals_raise(), _warnings_as_lines(debug):
            parser = build_parser()
            try:
                args = parser.parse_args(argv)
            except SystemExit as exc:  # --help, --version, or a usage error already printed
                return exc.code if isinstance(exc.code, int) else EXIT_USAGE
            debug = args.debug
            return int(args.func(args) or 0)
    except (KeyboardInterrupt, Interrupted) as exc:
        if debug:
            raise
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        print(
            f"\nnapari-pinned: interrupted by {name}; no file was left half-written",
            file=sys.stderr,
        )
        return signal_status(signum)
    except (MemoryError, RuntimeError) as exc:
        message = out_of_memory_message(exc) or _link_loop_message(exc)
        if message is None or debug:
            raise
        print(f"napari-pinned: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, OSError, FloatingPointError) as exc:
        if debug:
            raise
        print(f"napari-pinned: error: {first_line(exc)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
