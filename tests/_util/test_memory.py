"""Memory estimates: the smallest of what the system, a control group and an address-space
limit allow; a request beyond it is one line saying how much."""

from __future__ import annotations

import pytest

import napari_pinned._util.memory as memory


def test_the_tightest_limit_wins_and_cache_does_not_count_as_used(tmp_path, monkeypatch):
    limit, current, stat = tmp_path / "memory.max", tmp_path / "memory.current", tmp_path / "s"
    limit.write_text(str(8 * 1024**3))
    current.write_text(str(7 * 1024**3))  # of which 5 GiB is page cache the kernel gives back
    stat.write_text(f"anon 123\ninactive_file {5 * 1024**3}\n")
    real_read = memory._read_int
    paths = {"/sys/fs/cgroup/memory.max": limit, "/sys/fs/cgroup/memory.current": current}
    monkeypatch.setattr(memory, "_read_int", lambda p: real_read(str(paths.get(p, p))))
    real_inactive = memory._inactive_file_bytes
    monkeypatch.setattr(
        memory,
        "_inactive_file_bytes",
        lambda f, k: real_inactive(str(stat), k) if f.endswith("memory.stat") else 0,
    )
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 100 * 1024**3)
    monkeypatch.setattr(memory, "_address_space_headroom", lambda: None)
    assert memory.available_bytes() == 6 * 1024**3
    monkeypatch.setattr(memory, "_address_space_headroom", lambda: 3 * 1024**3)
    assert memory.available_bytes() == 3 * 1024**3


def test_a_request_beyond_the_available_memory_says_how_much(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 2 * 1024**3)
    memory.check_memory(1024**3, "anything")
    with pytest.raises(ValueError, match=r"^x: needs about 3\.0 GiB of memory, more than the 2\.0"):
        memory.check_memory(3 * 1024**3, "x:")
    monkeypatch.setattr(memory, "available_bytes", lambda: None)  # unknown: no refusal
    memory.check_memory(10**15, "anything")
