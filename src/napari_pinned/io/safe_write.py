"""Atomic file writes and output checks: every file napari-pinned writes goes through here.

A file is written to a temporary file in the destination's folder, flushed to disk and
renamed over the destination, so an interrupted or failing write leaves the old file or
the new one, never a cut one.  Temporary files are named ``.<name>.<pid>.<random>.tmp``
(a name too long for that keeps its beginning and a digest of the whole, so that every
legal name can be written, :func:`hidden_sibling`); one left behind by a killed process
(``kill -9``, a power cut) is removed the next time the same file is written.

New files get the permissions the user's umask allows (``0o666 & ~umask``, as ``open``
would give them), and a file that is replaced keeps its permission bits; Python's
``tempfile`` would make them private (0600).

:func:`write_together` makes the outputs of one command a unit: the renames of every
atomic write inside the block happen only once the whole block succeeded, so a failing
second output never leaves the first one written.

:func:`check_outputs` checks the destinations of a command before any work starts: the
folder exists and can be written, no destination is a folder, none is named twice, and
none is one of the command's inputs (unless replacing inputs was asked for), none is a
device, pipe or socket, and none ends with a folder separator.

A write that fails because the file system is full raises :class:`NoSpaceError`, one
line naming the file (numpy's short writes and torch's "unexpected pos" say neither).
:class:`OutputLock` claims an output for the length of a run (zarr outputs, written in
place over many minutes), so that a second run on it stops with one line.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import os
import re
import secrets
import socket
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

_TEMP_SUFFIX = ".tmp"
#: Temporary files older than this are stale on systems where a process cannot be probed.
_STALE_AGE_S = 24 * 3600.0
#: Longest file name (bytes) of the usual file systems (ext4, XFS, Btrfs, APFS, NTFS).
NAME_MAX = 255
#: Bytes kept free after a hidden sibling's stem for its tail: ".<pid>.<8 hex>.tmp" with a
#: 10-digit process id, ".partial", ".lock".
_TAIL_ROOM = 24
_DIGEST_CHARS = 12
#: A failed write with less free space than this left is taken for a full file system.
_FULL_BELOW_BYTES = 1 << 20
#: A lock file still empty after this long was left by a process killed while taking it.
_EMPTY_LOCK_AGE_S = 10.0
_pending: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar(
    "napari_pinned_atomic_pending", default=None
)


def _umask() -> int:
    # The only portable way to read the umask is to set it; put it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def hidden_stem(name: str) -> str:
    """What names ``name`` in its hidden siblings ``.<stem><tail>`` (temporaries, a zarr
    store's ``.partial``, locks): ``name`` itself, or, when ``.<name>`` and a tail of up
    to 24 bytes would pass :data:`NAME_MAX`, its beginning and a digest of the whole
    (so two long names that differ only at their end keep apart)."""
    if len(os.fsencode(name)) + 1 + _TAIL_ROOM <= NAME_MAX:
        return name
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:_DIGEST_CHARS]
    room = NAME_MAX - _TAIL_ROOM - 2 - _DIGEST_CHARS  # "." before, "~" before the digest
    prefix = name[:room]
    while len(os.fsencode(prefix)) > room:  # multi-byte characters
        prefix = prefix[:-1]
    return f"{prefix}~{digest}"


def hidden_sibling(target: str | os.PathLike, tail: str) -> Path:
    """``.<stem><tail>`` beside ``target`` (:func:`hidden_stem`; ``tail`` ≤ 24 bytes)."""
    path = Path(target)
    return path.parent / f".{hidden_stem(path.name)}{tail}"


def _temporary_path(target: Path) -> Path:
    return hidden_sibling(target, f".{os.getpid()}.{secrets.token_hex(4)}{_TEMP_SUFFIX}")


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
    stem = hidden_stem(path.name)
    pattern = re.compile(rf"\.{re.escape(stem)}\.(\d+)\.[0-9a-f]{{8}}{re.escape(_TEMP_SUFFIX)}")
    removed = []
    try:
        candidates = list(path.parent.glob(f".{_glob_escape(stem)}.*{_TEMP_SUFFIX}"))
    except OSError:
        return removed
    for candidate in candidates:
        match = pattern.fullmatch(candidate.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid():
            continue
        if _left_by_dead_process(candidate, pid):
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def _left_by_dead_process(path: Path, pid: int) -> bool:
    """Whether ``path``, written by process ``pid`` of this machine, was left behind."""
    if os.name == "nt":
        # os.kill would terminate the process on Windows: judge by age instead.
        try:
            return time.time() - path.stat().st_mtime > _STALE_AGE_S
        except OSError:
            return False
    return not _pid_alive(pid)


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
        try:
            target = target.resolve(strict=False)
        except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError on a loop
            raise ValueError(f"{path}: a symbolic link loop (it leads back to itself)") from None
    return target


def check_file_name(path: str | os.PathLike) -> None:
    """Refuse a file output named with a folder separator at its end (``out.tif/``):
    ``Path`` drops it, and the file would be written where a folder was meant."""
    text = os.fsdecode(os.fspath(path))
    if text.endswith(tuple(sep for sep in (os.sep, os.altsep) if sep)):
        raise ValueError(
            f"{text}: ends with {text[-1]!r}, which names a folder; give a file name for the output"
        )


def check_regular(target: Path, given: str | os.PathLike | None = None) -> None:
    """Refuse replacing a device, pipe or socket (``-o /dev/null`` as root would
    replace the device with a file)."""
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return  # not there (yet): a new file
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ValueError(
            f"{given if given is not None else target}: exists and is not a regular file (a "
            "device, pipe or socket); give the name of a file to write"
        )


class NoSpaceError(OSError):
    """A write failed because its file system is full; the message is one line naming
    the file (``errno`` is ENOSPC)."""

    def __init__(self, path: str | os.PathLike, detail: str = "") -> None:
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        self.message = f"{path}: no space left on device{detail}"

    def __str__(self) -> str:
        return self.message


def _free_bytes(folder: Path) -> int | None:
    """Bytes an ordinary user may still write in ``folder``'s file system, if known."""
    try:
        info = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return None
    return info.f_bavail * info.f_frsize


def no_space_error(
    exc: BaseException, target: str | os.PathLike, detail: str = ""
) -> NoSpaceError | None:
    """:class:`NoSpaceError` naming ``target`` if ``exc``, raised while writing it, means
    the file system is full; else None.

    ENOSPC and EDQUOT say so themselves.  numpy's short writes ("16384 requested and
    1960 written", tifffile's) and torch's writer ("unexpected pos …") lose the errno,
    so an OSError or RuntimeError with under 1 MiB left free counts too (call this
    before the partial file is removed).
    """
    if isinstance(exc, NoSpaceError):
        return exc if str(target) in str(exc) else NoSpaceError(target, detail)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpaceError(target, detail)
    if isinstance(exc, (OSError, RuntimeError)):
        free = _free_bytes(Path(target).parent)
        if free is not None and free < _FULL_BELOW_BYTES:
            return NoSpaceError(target, detail)
    return None


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
        If the folder does not exist, or ``path`` is a folder, a device, pipe or socket,
        or ends with a folder separator.
    NoSpaceError
        If the file system is full (the destination is untouched).

    Notes
    -----
    If the block raises (or is interrupted), the temporary file is removed and the
    destination is untouched.  Inside :func:`write_together` the rename waits for the
    end of the outer block.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    check_file_name(path)
    target = destination(path)
    if target.is_dir():
        raise ValueError(f"{target}: is a folder; give a file name")
    check_regular(target)
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
    except BaseException as exc:
        with contextlib.suppress(OSError):  # flushing a full disk's buffer fails again
            handle.close()
        full = no_space_error(exc, target)  # before the temporary frees the space
        tmp.unlink(missing_ok=True)
        if full is not None:
            raise full from None
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
        aside = hidden_sibling(dst, f".{os.getpid()}.{secrets.token_hex(4)}.old")
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
    except (OSError, RuntimeError):  # RuntimeError: a symbolic link loop (Python < 3.13)
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
        One line naming the file: a destination is a folder, a device, pipe or socket, or
        ends with a folder separator, its folder does not exist or cannot be written, it
        is read-only, two outputs are the same file, or an output is one of the inputs
        (without ``overwrite``).
    """
    checked: list[Path] = []
    given: list[Path] = []
    for raw in outputs:
        check_file_name(raw)
        path = Path(raw).expanduser()
        target = destination(path)
        if target.is_dir():
            raise ValueError(f"{path}: is a folder; give a file name for the output")
        check_regular(target, path)
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


# -- one run per output ---------------------------------------------------------------------


class OutputLock:
    """An exclusive claim on an output for the length of a run.

    The lock is a file ``.<name>.lock`` beside the output, created with ``O_EXCL`` and
    holding the process id and host of its run; a lock whose process no longer runs on
    this machine (``kill -9``, a power cut) is removed by the next run.  Use as a context
    manager, or :meth:`acquire` and :meth:`release`.

    Raises
    ------
    ValueError
        From :meth:`acquire`: another run holds the output (one line naming it, the
        process, and the lock file to delete if that process is gone).
    """

    def __init__(self, target: str | os.PathLike) -> None:
        self.target = Path(target).expanduser()
        self.path = hidden_sibling(self.target, ".lock")
        self._token = f"{os.getpid()} {socket.gethostname()}"
        self._held = False

    def acquire(self) -> OutputLock:
        """Take the lock, or raise ``ValueError`` if another run holds it."""
        for _ in range(3):  # a stale lock removed, then a race lost: try again
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                check_unlocked(self.target)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(self._token + "\n")
            self._held = True
            return self
        check_unlocked(self.target)
        raise ValueError(f"{self.target}: cannot take its lock {self.path}")

    def release(self) -> None:
        """Remove the lock if this run still holds it."""
        if not self._held:
            return
        self._held = False
        with contextlib.suppress(OSError):
            if self.path.read_text().strip() == self._token:
                self.path.unlink()

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_holder(path: Path) -> str | None:
    """Who holds the lock file ``path`` ("process 123 on host"), or None when nobody
    does (no file, or one left by a process that no longer runs, which is removed)."""
    try:
        text = path.read_text().strip()
        age = time.time() - path.stat().st_mtime
    except OSError:
        return None
    fields = text.split(maxsplit=1)
    if len(fields) != 2 or not fields[0].isdigit():
        if age < _EMPTY_LOCK_AGE_S:  # being written by a run that just took it
            return "a run that is starting"
        stale = True
    else:
        pid, host = int(fields[0]), fields[1]
        if host != socket.gethostname():
            return f"process {pid} on {host}"  # cannot be probed from here
        stale = _left_by_dead_process(path, pid)
        if not stale:
            return f"process {pid} on {host}"
    with contextlib.suppress(OSError):
        path.unlink()
    return None


def check_unlocked(target: str | os.PathLike) -> None:
    """Raise if another run holds ``target``'s :class:`OutputLock` (a lock left by a
    process that no longer runs is removed).

    Raises
    ------
    ValueError
        One line naming the output, the run holding it and the lock file.
    """
    lock = hidden_sibling(Path(target).expanduser(), ".lock")
    holder = _lock_holder(lock)
    if holder is not None:
        raise ValueError(
            f"{Path(target).expanduser()}: another run ({holder}) is writing it; wait for "
            f"that run to end, or delete {lock} if it no longer runs"
        )
