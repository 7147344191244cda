"""Choosing the torch device: CUDA, Apple MPS or the CPU."""

from __future__ import annotations

import torch


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"`` into a usable device.

    ``"auto"`` picks CUDA, then Apple MPS, then the CPU.  A device that is unknown or
    not available on this machine raises ``ValueError`` saying so.
    """
    if isinstance(device, str):
        name = device.strip().lower()
        if name == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            if _mps_available():
                return torch.device("mps")
            return torch.device("cpu")
        try:
            dev = torch.device(name)
        except (RuntimeError, ValueError):
            raise ValueError(
                f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
            ) from None
    elif isinstance(device, torch.device):
        dev = device
    else:
        raise ValueError(f"device must be a string or torch.device, got {type(device).__name__}")
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(dev)!r} requested but CUDA is not available (no NVIDIA GPU found "
                "or this PyTorch build is CPU-only); use device='cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {str(dev)!r} requested but only {count} CUDA device(s) exist")
        return dev
    if dev.type == "mps":
        if not _mps_available():
            raise ValueError(
                "device 'mps' requested but Apple MPS is not available on this machine; "
                "use device='cpu' or 'auto'"
            )
        return dev
    raise ValueError(f"unsupported device {str(dev)!r}; use 'auto', 'cpu', 'cuda' or 'mps'")
