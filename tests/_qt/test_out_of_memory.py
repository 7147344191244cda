"""A request too large for the machine is a notification in every dock, not a traceback."""

from __future__ import annotations

import pytest

from napari_pinned._qt.generate.widget import WORKER_THRESHOLD, GeneratorWidget
from napari_pinned._qt.shared.common import describe_error

WAIT_MS = 60_000


def _no_memory(*args, **kwargs):
    raise MemoryError  # what numpy raises for an allocation that fails: no message


@pytest.fixture
def widget(viewer_model, qtbot, monkeypatch):
    monkeypatch.setattr("napari_pinned._qt.generate.widget.simulate", _no_memory)
    gen = GeneratorWidget(viewer_model)
    qtbot.addWidget(gen.native)
    return gen


def test_out_of_memory_in_the_gui_thread_is_a_notification(widget, viewer_model, notifications):
    widget.image_size.value = 64
    assert widget.generate() is None
    assert notifications.errors == ["Generate: out of memory; use a smaller size"]
    assert len(viewer_model.layers) == 0


def test_out_of_memory_in_a_worker_is_a_notification(widget, viewer_model, notifications, qtbot):
    widget.image_size.value = WORKER_THRESHOLD + 8
    widget.generate()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    assert notifications.errors == ["Generate: out of memory; use a smaller size"]
    assert len(viewer_model.layers) == 0


def test_torch_allocation_failures_read_as_out_of_memory():
    exc = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
        "you tried to allocate 95 GB"
    )
    assert describe_error(exc).startswith("out of memory ([enforce fail")
    assert describe_error(ValueError("x.tif: no such file")) == "x.tif: no such file"
