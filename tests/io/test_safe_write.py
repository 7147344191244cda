"""One atomic writer for every file: permissions from the umask, all-or-nothing groups,
stale temporary files cleaned, destinations checked before work."""

from __future__ import annotations

import errno
import os
import socket
import stat

import numpy as np
import pytest

from napari_pinned.io import safe_write
from napari_pinned.io.images import read_image, write_csv, write_png
from napari_pinned.io.safe_write import (
    atomic_write,
    check_outputs,
    remove_stale_temporaries,
    write_text,
    write_together,
)
from napari_pinned.io.tiff import write_tiff


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the umask for one test and restore it afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(saved)


def _dead_pid() -> int:
    """A process id that no process has (beyond the kernel's pid_max)."""
    return 2**22 + 12345


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_files_get_the_permissions_of_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    tif = write_tiff(tmp_path / "a.tif", np.zeros((4, 4)))
    csv = write_csv(tmp_path / "a.csv", np.zeros((2, 2)), ["x", "y"])
    png = write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    for path in (tif, csv, png):
        assert _mode(path) == expected, path  # mkstemp gave 0600 whatever the umask


def test_a_replaced_file_keeps_its_permissions(tmp_path, umask):
    umask(0o077)
    target = tmp_path / "shared.tif"
    target.write_bytes(b"old")
    os.chmod(target, 0o664)
    write_tiff(target, np.ones((4, 4)))
    assert _mode(target) == 0o664
    np.testing.assert_array_equal(read_image(target), np.ones((4, 4)))


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as handle:
        handle.write("half of the new")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_write_together_renames_nothing_when_a_later_output_fails(tmp_path):
    first, second = tmp_path / "first.tif", tmp_path / "second.csv"
    first.write_bytes(b"old first")
    with pytest.raises(RuntimeError), write_together():
        write_tiff(first, np.ones((4, 4)))
        assert first.read_bytes() == b"old first"  # renamed only at the end
        with atomic_write(second, "w") as handle:
            handle.write("row,col\n1,")
            raise RuntimeError("killed half-way through the CSV")
    assert first.read_bytes() == b"old first" and not second.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.tif"]

    with write_together():
        write_tiff(first, np.ones((4, 4)))
        write_text(second, "a,b\n")
    assert second.read_text() == "a,b\n" and read_image(first).shape == (4, 4)


def test_stale_temporaries_of_dead_processes_are_removed_on_the_next_write(tmp_path):
    target = tmp_path / "out.tif"
    stale = tmp_path / f".out.tif.{_dead_pid()}.0123abcd.tmp"  # left by kill -9
    live = tmp_path / f".out.tif.{os.getppid()}.89abcdef.tmp"  # a write in progress
    other = tmp_path / f".other.tif.{_dead_pid()}.0123abcd.tmp"  # another file's
    foreign = tmp_path / ".out.tif.notours.tmp"
    for path in (stale, live, other, foreign):
        path.write_bytes(b"partial")
    write_tiff(target, np.zeros((4, 4)))
    assert not stale.exists()
    assert live.exists() and other.exists() and foreign.exists()
    assert remove_stale_temporaries(tmp_path / "other.tif") == [other]


def test_check_outputs_refuses_folders_missing_folders_twice_named_and_inputs(tmp_path):
    data = tmp_path / "data.tif"
    data.write_bytes(b"raw")
    link = tmp_path / "link.tif"
    link.symlink_to(data)
    hard = tmp_path / "hard.tif"
    os.link(data, hard)
    with pytest.raises(ValueError, match="is a folder"):
        check_outputs([tmp_path])
    with pytest.raises(ValueError, match="does not exist"):
        check_outputs([tmp_path / "nope" / "a.tif"])
    with pytest.raises(ValueError, match="named twice"):
        check_outputs([tmp_path / "a.tif", tmp_path / "." / "a.tif"])
    for output in (data, link, hard):
        with pytest.raises(ValueError, match="is also an input"):
            check_outputs([output], [data])
    # --overwrite allows it; other outputs are fine either way.
    assert check_outputs([link], [data], overwrite=True) == [data]
    assert check_outputs([tmp_path / "new.tif"], [data]) == [tmp_path / "new.tif"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.tif", "hard.tif", "link.tif"]


def test_writing_through_a_link_updates_the_file_it_points_to(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_an_unwritable_folder_is_found_before_work(tmp_path, monkeypatch):
    # Root may write anywhere, so the refusal of the file system is simulated.
    real_open = os.open

    def refuse(path, flags, mode=0o777, **kwargs):
        if str(path).startswith(str(tmp_path)) and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(ValueError, match=r"cannot write in folder .*Permission denied"):
        check_outputs([tmp_path / "model.pt"])


# -- outputs that are not regular files, names, full disks, locks (issue 21) ------------------


def test_outputs_that_exist_and_are_not_regular_files_are_refused(tmp_path):
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    null = "/dev/null"
    for target in (fifo, null):
        with pytest.raises(ValueError, match="not a regular file"):
            check_outputs([target])
        # Every path that writes refuses it too, not only the command's checks.
        with pytest.raises(ValueError, match="not a regular file"):
            write_tiff(target, np.zeros((4, 4)))
        with pytest.raises(ValueError, match="not a regular file"):
            write_text(target, "x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert stat.S_ISCHR(os.stat(null).st_mode)  # still the device, not a file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.tif"]


def test_a_file_output_ending_in_a_slash_is_refused(tmp_path):
    with pytest.raises(ValueError, match="ends with '/'"):
        check_outputs([f"{tmp_path}/out.tif/"])
    with pytest.raises(ValueError, match="ends with '/'"):
        write_text(f"{tmp_path}/out.txt/", "x")
    assert list(tmp_path.iterdir()) == []


def test_the_longest_legal_names_can_be_written(tmp_path):
    # 254 + the temporary's ".<name>.<pid>.<random>.tmp" went past NAME_MAX (255 bytes).
    names = ["a" * 250 + ".tif", "b" * 250 + ".tif", "é" * 123 + ".tif"]
    for name in names:
        assert len(os.fsencode(name)) <= 255
        target = tmp_path / name
        assert check_outputs([target]) == [target]
        write_tiff(target, np.ones((4, 4)))
        np.testing.assert_array_equal(read_image(target), np.ones((4, 4)))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    # Temporaries of two long names that differ only at their end are told apart.
    a, b = (safe_write._temporary_path(tmp_path / n) for n in names[:2])
    assert len(os.fsencode(a.name)) <= 255 and a.name != b.name
    stale = safe_write._temporary_path(tmp_path / names[0])
    stale = stale.with_name(stale.name.replace(f".{os.getpid()}.", f".{_dead_pid()}."))
    stale.write_bytes(b"left by kill -9")
    write_tiff(tmp_path / names[0], np.zeros((4, 4)))
    assert not stale.exists()


def _fill_the_disk(monkeypatch, module, name: str, error: BaseException) -> None:
    """Make ``module.name`` (a writer) fail as on a full disk."""

    def full(*args, **kwargs):
        raise error

    monkeypatch.setattr(module, name, full)


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        # numpy's tofile (tifffile's writes) on a full disk: no errno, no word of space.
        OSError("16384 requested and 1960 written"),
    ],
    ids=["ENOSPC", "short write"],
)
def test_a_full_disk_is_one_line_naming_the_file_for_every_writer(tmp_path, monkeypatch, error):
    import tifffile

    from napari_pinned.io import images

    # A short write leaves the file system without free space; ENOSPC says it itself.
    monkeypatch.setattr(safe_write, "_free_bytes", lambda folder: 0, raising=False)
    _fill_the_disk(monkeypatch, tifffile, "imwrite", error)
    _fill_the_disk(monkeypatch, images.np, "savetxt", error)
    cases = [
        (tmp_path / "a.tif", lambda p: write_tiff(p, np.zeros((4, 4)))),
        (tmp_path / "a.csv", lambda p: write_csv(p, np.zeros((2, 2)), ["x", "y"])),
    ]
    for target, write in cases:
        with pytest.raises(OSError) as caught:
            write(target)
        text = str(caught.value)
        assert len(text.splitlines()) == 1
        assert text.startswith(f"{target}: no space left on device"), text
        assert caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_saving_a_model_names_the_file(tmp_path, monkeypatch):
    import torch

    from napari_pinned.nn.model_files import save_model
    from napari_pinned.nn.network import ModelBundle, build_model
    from napari_pinned.settings import ModelConfig

    config = ModelConfig.preset("tiny")
    bundle = ModelBundle(model=build_model(config), config=config, metadata={})
    # What torch.save raises when the disk fills under it: its own error, not ENOSPC.
    torch_full = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704")
    monkeypatch.setattr(safe_write, "_free_bytes", lambda folder: 0, raising=False)
    for error in (OSError(errno.ENOSPC, "No space left on device"), torch_full):
        _fill_the_disk(monkeypatch, torch, "save", error)
        with pytest.raises(OSError, match=r"m\.pt: no space left on device"):
            save_model(bundle, tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []
    # With free space a library's own error is left as it is.
    monkeypatch.setattr(safe_write, "_free_bytes", lambda folder: 10**12, raising=False)
    with pytest.raises(RuntimeError, match="enforce fail"):
        save_model(bundle, tmp_path / "m.pt")


def test_an_output_lock_is_held_by_one_run_and_a_dead_run_s_lock_is_removed(tmp_path):
    target = tmp_path / "out.zarr"
    with safe_write.OutputLock(target) as lock:
        assert lock.path.exists()
        with pytest.raises(ValueError, match=rf"out\.zarr: another run \(process {os.getpid()}"):
            safe_write.OutputLock(target).acquire()
        with pytest.raises(ValueError, match="another run"):
            safe_write.check_unlocked(target)
    assert list(tmp_path.iterdir()) == []
    # A lock whose process is gone (kill -9) is taken over.
    lock_file = safe_write.OutputLock(target).path
    lock_file.write_text(f"{_dead_pid()} {socket.gethostname()}\n")
    safe_write.check_unlocked(target)
    with safe_write.OutputLock(target):
        assert lock_file.read_text().split()[0] == str(os.getpid())
    assert list(tmp_path.iterdir()) == []
