"""Signals while torch is imported: held until the import ends, then one clean stop."""

from __future__ import annotations

import argparse
import os
import signal

import pytest

from napari_pinned.cli.signals import Interrupted, signals_held, signals_raise


def test_a_signal_while_held_is_delivered_when_the_block_ends():
    # Raised inside torch's C++ set-up, the exception aborted the process (SIGABRT).
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    finished = False
    with signals_raise(), pytest.raises(Interrupted), signals_held():
        os.kill(os.getpid(), signal.SIGTERM)
        finished = True
    assert finished
    finished = False
    with pytest.raises(KeyboardInterrupt), signals_held():
        os.kill(os.getpid(), signal.SIGINT)
        finished = True
    assert finished
    assert {s: signal.getsignal(s) for s in before} == before  # nothing left held


def test_loading_the_model_for_denoise_holds_signals(monkeypatch):
    from napari_pinned.cli import denoise_local

    loaded = []

    def load_model(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # as if during "import torch"
        loaded.append(True)
        raise ValueError("not reached: the signal comes first")

    monkeypatch.setattr("napari_pinned.nn.resolve.load_model", load_model)
    args = argparse.Namespace(model="default", overlap=None, strength=1.0)
    with signals_raise(), pytest.raises(Interrupted):
        denoise_local.load_denoise_model(args)
    assert loaded == [True]
