"""Atomic file writes and output checks: every file napari-pinned writes goes through here.

A file is written to a temporary file in the destination's folder, flushed to disk and
renamed over the destination, so an interrupted or failing write leaves the old file or
the new one, never a cut one.  Temporary files are named ``.<name>.<pid>.<random>.tmp``;
one left behind by a killed process (``kill -9``, a power cut) is removed the next time
the same file is written.

New files get the permissions the user's umask allows (``0o666 & ~umask``, as ``open``
would give them), and a file that is replaced keeps its permission bits; Python's
``tempfile`` would make them private (0600).

:func:`write_together` makes the outputs of one command a unit: the renames of every
atomic write inside the block happen only once the whole block succeeded, so a failing
second output never leaves the first one written.

:func:`check_outputs` checks the destinations of a command before any work starts: the
folder exists and can be written, no destination is a folder, none is named twice, and
none is one of the command's inputs (unless replacing inputs was asked for).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

_TEMP_SUFFIX = ".tmp"
#: Temporary files older than this are stale on systems where a process cannot be probed.
_STALE_AGE_S = 24 * 3600.0
_pending: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar(
    "napari_pinned_atomic_pending", default=None
)


def _umask() -> int:
    # The only portable way to read the umask is to set it; put it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temporary_path(target: Path) -> Path:
    return target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{_TEMP_SUFFIX}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: the process exists but is another user's
        return True
    return True


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Remove temporary files of ``target`` left by processes that no longer run.

    Only files of this module's naming for this very destination are considered; those
    of a process still running (another write of the same file in progress) are kept.

    Returns
    -------
    list of Path
        The files removed.
    """
    path = Path(target)
    pattern = re.compile(
        rf"\.{re.escape(path.name)}\.(\d+)\.[0-9a-f]{{8}}{re.escape(_TEMP_SUFFIX)}"
    )
    removed = []
    try:
        candidates = list(path.parent.glob(f".{_glob_escape(path.name)}.*{_TEMP_SUFFIX}"))
    except OSError:
        return removed
    for candidate in candidates:
        match = pattern.fullmatch(candidate.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid():
            continue
        if os.name == "nt":
            # os.kill would terminate the process on Windows: judge by age instead.
            try:
                stale = time.time() - candidate.stat().st_mtime > _STALE_AGE_S
            except OSError:
                continue
        else:
            stale = not _pid_alive(pid)
        if stale:
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def _glob_escape(name: str) -> str:
    """``name`` with the glob metacharacters ``*?[`` escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable; not possible on every platform (Windows), hence best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def destination(path: str | os.PathLike) -> Path:
    """The file a write to ``path`` replaces: ``~`` expanded, symbolic links followed
    (writing through a link updates the file it points to, as ``open`` would)."""
    target = Path(path).expanduser()
    if target.is_symlink():
        target = target.resolve()
    return target


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike,
    mode: str = "wb",
    *,
    encoding: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` when the block ends.

    Parameters
    ----------
    path : path-like
        Destination; its folder must exist.
    mode : {"wb", "w"}
        Binary or text.
    encoding, newline : str, optional
        For text mode, as in :func:`open` (``encoding`` defaults to UTF-8).

    Raises
    ------
    ValueError
        If the folder does not exist or ``path`` is a folder.

    Notes
    -----
    If the block raises (or is interrupted), the temporary file is removed and the
    destination is untouched.  Inside :func:`write_together` the rename waits for the
    end of the outer block.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    target = destination(path)
    if target.is_dir():
        raise ValueError(f"{target}: is a folder; give a file name")
    if not target.parent.is_dir():
        raise ValueError(f"{target}: folder {target.parent} does not exist")
    remove_stale_temporaries(target)
    tmp = _temporary_path(target)
    # open() creates files as 0o666 & ~umask, unlike tempfile's private 0o600; "x"
    # (O_EXCL) never reuses a file of that name.
    if mode == "wb":
        handle = open(tmp, "xb")  # noqa: SIM115 -- closed below, before the rename
    else:
        handle = open(tmp, "x", encoding=encoding or "utf-8", newline=newline)  # noqa: SIM115
    try:
        with contextlib.suppress(OSError):
            # A replaced file keeps its permissions (a shared 0664 file stays shared).
            os.chmod(tmp, target.stat().st_mode & 0o7777)
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        pending = _pending.get()
        if pending is not None:
            pending.append((tmp, target))
        else:
            os.replace(tmp, target)
            _fsync_directory(target.parent)
    except BaseException:
        handle.close()
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the destination."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return destination(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the destination."""
    with atomic_write(path, "w", newline="") as handle:
        handle.write(text)
    return destination(path)


def replace_directory(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Rename a complete folder (a zarr store written under a temporary name) to
    ``target``, replacing a store already there.

    The old store is first renamed aside, then the new one into place, then the old
    one removed: at every moment ``target`` is either the old store or the new one.
    """
    src, dst = Path(source), destination(target)
    aside = None
    if dst.exists():
        aside = dst.parent / f".{dst.name}.{os.getpid()}.{secrets.token_hex(4)}.old"
        os.replace(dst, aside)
    try:
        os.replace(src, dst)
    except BaseException:
        if aside is not None:
            os.replace(aside, dst)
        raise
    _fsync_directory(dst.parent)
    if aside is not None:
        remove_directory(aside)
    return dst


def remove_directory(path: str | os.PathLike) -> None:
    """Remove a folder tree napari-pinned wrote (a temporary or replaced store)."""
    import shutil

    shutil.rmtree(Path(path), ignore_errors=True)


@contextlib.contextmanager
def write_together() -> Iterator[None]:
    """Write every file of the block atomically as a group.

    Each :func:`atomic_write` inside writes its temporary file as usual, but the
    renames over the destinations happen only when the block ends without an error;
    otherwise every temporary file is removed and no destination changes.  A nested
    block joins the outer one.
    """
    if _pending.get() is not None:
        yield
        return
    pending: list[tuple[Path, Path]] = []
    token = _pending.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _pending.reset(token)
    try:
        for tmp, target in pending:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        raise
    for folder in {target.parent for _, target in pending}:
        _fsync_directory(folder)


# -- checks before work starts ----------------------------------------------------------


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file: the same path, or links to one inode."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        pass
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def check_writable_folder(path: str | os.PathLike) -> None:
    """Check that a file can be created in ``path``'s folder, by creating one.

    A probe, not ``os.access``: it also catches read-only file systems, full quota
    and access-control lists, and it is right for root.

    Raises
    ------
    ValueError
        If the folder does not exist or no file can be created in it.
    """
    target = destination(path)
    folder = target.parent
    if not folder.is_dir():
        raise ValueError(f"{target}: folder {folder} does not exist")
    probe = _temporary_path(target)
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(f"{target}: cannot write in folder {folder} ({reason})") from None
    os.close(fd)
    probe.unlink(missing_ok=True)


def check_outputs(
    outputs: Iterable[str | os.PathLike],
    inputs: Iterable[str | os.PathLike] = (),
    *,
    overwrite: bool = False,
) -> list[Path]:
    """Check a command's destinations before it starts work.

    Parameters
    ----------
    outputs : iterable of path-like
        Every file the command will write.
    inputs : iterable of path-like
        Every file it reads.
    overwrite : bool
        Allow an output to replace one of the inputs (``--overwrite``).

    Returns
    -------
    list of Path
        The destinations, as :func:`atomic_write` will write them.

    Raises
    ------
    ValueError
        One line naming the file: a destination is a folder, its folder does not exist or
        cannot be written, it is read-only, two outputs are the same file, or an output is
        one of the inputs (without ``overwrite``).
    """
    checked: list[Path] = []
    given: list[Path] = []
    for raw in outputs:
        path = Path(raw).expanduser()
        target = destination(path)
        if target.is_dir():
            raise ValueError(f"{path}: is a folder; give a file name for the output")
        if target.exists() and not os.access(target, os.W_OK):
            raise ValueError(f"{path}: the file exists and is read-only")
        for earlier, earlier_given in zip(checked, given, strict=True):
            if _same_file(target, earlier):
                same = "" if earlier_given == path else f" (as {earlier_given})"
                raise ValueError(f"{path}: named twice as an output{same}; give each its own name")
        check_writable_folder(target)
        checked.append(target)
        given.append(path)
    if not overwrite:
        sources = [Path(p).expanduser() for p in inputs]
        for target, path in zip(checked, given, strict=True):
            for source in sources:
                if _same_file(target, source):
                    also = "" if source == path else f" ({source})"
                    raise ValueError(
                        f"{path}: is also an input{also}; writing it would replace that data "
                        "(choose another output name, or add --overwrite)"
                    )
    return checked


def unique_names(targets: Sequence[Path], sources: Sequence[Path]) -> None:
    """Raise if two inputs of a batch would be written to the same output.

    Raises
    ------
    ValueError
        Naming both inputs and the output they share.
    """
    seen: dict[Path, Path] = {}
    for target, source in zip(targets, sources, strict=True):
        key = destination(target).absolute()
        if key in seen:
            raise ValueError(
                f"{source}: its output {target} is also the output of {seen[key]}; rename one "
                "of them or denoise them separately"
            )
        seen[key] = source
