"""How much memory a request needs, and refusing early when the machine does not have it.

A request that cannot fit (``simulate --size 100000``, a 40000² TIFF) should be answered
with one line saying how much it needs before any of it is allocated, not with a
``MemoryError`` traceback minutes later or the kernel's out-of-memory killer.  The
available memory is the smallest of what the operating system reports as available
(``MemAvailable`` on Linux), what a control group (a container, a SLURM job) still
allows, and what an address-space limit (``ulimit -v``) leaves.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from pathlib import Path

_GIB = 1024**3

# -- what each request costs --------------------------------------------------------------
# Peak memory per pixel, measured on 2 cores with tracemalloc/RSS and rounded up: the
# simulation's padded FFT canvas (float64 image, complex spectra, kernel spectrum),
# noise and registration (float64 work arrays).
_SIMULATE_BYTES_PER_PX = 56
_NOISE_BYTES_PER_PX = 40
_REGISTRATION_BYTES_PER_PX = 40
# Denoising streams frames: per pixel of one frame (the conditioning's float64 work
# arrays, the padded network input, the output frame and the writer's two queued
# frames), per pixel of one network window (the depth-4 width-8 network's activations;
# a window is at most the tile plus the largest halo, 2 × 160 px), plus the process
# (torch, the model).  Measured with benchmarks/scale.py (docs/scale.md).
_DENOISE_BYTES_PER_PX = 160
_DENOISE_WINDOW_BYTES_PER_PX = 320
_DENOISE_HALO = 320
# A frame smaller than the tile is one window: the frame, its mirrored context (32 px
# a side) and the padding to the network's alignment (at most 47 px).
_DENOISE_WHOLE_FRAME_MARGIN = 2 * 32 + 47
_DENOISE_FIXED_BYTES = 512 * 1024**2
# A simulation's atomic columns: the tiling's cells and positions and the rendering's
# deposit (16 Lagrange weights and indices per column), 980–1010 B per column of
# simulate() at 4–8 Å/px where the columns outweigh the image (tracemalloc, Si, SrTiO3,
# graphene, rotated and not).
_COLUMN_BYTES = 1024
# Training on the CPU, per pixel of a step's batch (batch × patch²): the network's
# activations and their gradients grow with its width, the patches and their noise do
# not; measured with peak RSS over batches of 8–256 patches of 64² px (the U-Net of
# depth 3–4 at widths 8, 16, 32: 770, 1370, 2470 B/px), plus the process.
_TRAIN_BYTES_PER_PX = 320
_TRAIN_BYTES_PER_PX_PER_WIDTH = 72
_TRAIN_FIXED_BYTES = 512 * 1024**2


#: Pixels per band of rows when a whole-frame step works band by band, so that its
#: temporary arrays are this size and not the frame's (the conditioning, the lattice guard).
BAND_PIXELS = 1 << 18


def row_bands(shape: tuple[int, ...]) -> list[slice]:
    """Bands of rows of about :data:`BAND_PIXELS` pixels covering an array of ``shape``
    (its first axis; a row is the product of nothing but its last axis)."""
    height, width = shape[0], shape[-1] if len(shape) > 1 else 1
    step = max(1, BAND_PIXELS // max(1, width))
    return [slice(start, min(height, start + step)) for start in range(0, height, step)]


def format_bytes(count: float) -> str:
    """``count`` bytes as a short human-readable size (``"1.5 GiB"``, ``"320 MiB"``)."""
    for unit, size in (("TiB", 1024**4), ("GiB", _GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{int(count)} B"


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _inactive_file_bytes(stat_file: str, key: str) -> int:
    """Page cache the kernel reclaims before it fails an allocation (``memory.stat``)."""
    try:
        with open(stat_file) as handle:
            for line in handle:
                name, _, value = line.partition(" ")
                if name == key and value.strip().isdigit():
                    return int(value)
    except OSError:
        pass
    return 0


def _cgroup_headroom() -> int | None:
    # cgroup v2, then v1; "max" (no limit) reads as not a number.  The usage counts the
    # page cache, which is given back on demand: only its inactive part is subtracted,
    # as `docker stats` does.
    for limit_file, usage_file, stat_file, key in (
        (
            "/sys/fs/cgroup/memory.max",
            "/sys/fs/cgroup/memory.current",
            "/sys/fs/cgroup/memory.stat",
            "inactive_file",
        ),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
            "/sys/fs/cgroup/memory/memory.stat",
            "total_inactive_file",
        ),
    ):
        limit = _read_int(limit_file)
        usage = _read_int(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:
            used = max(usage - _inactive_file_bytes(stat_file, key), 0)
            return max(limit - used, 0)
    return None


def _address_space_headroom() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/statm") as handle:
            used = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        used = 0
    return max(soft - used, 0)


def _sysconf_available() -> int | None:
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def available_bytes() -> int | None:
    """Memory this process can still allocate, in bytes, or None when unknown."""
    system = _meminfo_available()
    if system is None:
        system = _sysconf_available()
    known = [v for v in (system, _cgroup_headroom(), _address_space_headroom()) if v is not None]
    return min(known) if known else None


def check_memory(needed: float, what: str, advice: str = "use a smaller size") -> None:
    """Refuse a request that needs more memory than is available.

    Parameters
    ----------
    needed : float
        Estimated bytes the request allocates.
    what : str
        What needs it, for the message (e.g. ``"simulating a 100000×100000 px image"``).
    advice : str
        What to do instead, ending the message.

    Raises
    ------
    ValueError
        One line: what, how much it needs and how much is available.
    """
    available = available_bytes()
    if available is not None and needed > available:
        raise ValueError(
            f"{what} needs about {format_bytes(needed)} of memory, more than the "
            f"{format_bytes(available)} available; {advice}"
        )


def out_of_memory_message(exc: BaseException) -> str | None:
    """One line for an allocation failure (``MemoryError``, torch's "can't allocate
    memory" or CUDA out-of-memory), or None if ``exc`` is something else."""
    if isinstance(exc, MemoryError):
        detail = str(exc).splitlines()[0] if str(exc) else ""
        return "out of memory" + (f" ({detail})" if detail else "") + "; use a smaller size"
    text = str(exc)
    if isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text
        or "out of memory" in text.lower()
        or type(exc).__name__ == "OutOfMemoryError"
    ):
        first = text.splitlines()[0] if text else type(exc).__name__
        return f"out of memory ({first[:160]}); use a smaller size or tile"
    return None


def simulation_bytes(canvas_pixels: float) -> float:
    """Peak bytes of simulating an image whose padded canvas has ``canvas_pixels``."""
    return _SIMULATE_BYTES_PER_PX * canvas_pixels


def columns_bytes(count: float) -> float:
    """Peak bytes of simulating ``count`` atomic columns (tiling and rendering them)."""
    return _COLUMN_BYTES * count


def training_bytes(batch_size: int, patch_size: int, width: int) -> int:
    """Peak bytes of training a network of base ``width`` on batches of ``batch_size``
    patches of ``patch_size``² px (the training images are counted where they are made)."""
    per_px = _TRAIN_BYTES_PER_PX + _TRAIN_BYTES_PER_PX_PER_WIDTH * int(width)
    return _TRAIN_FIXED_BYTES + per_px * int(batch_size) * int(patch_size) ** 2


def local_cluster_bytes(workers: int, frame_shape: Sequence[int], tile: int) -> int:
    """Peak bytes of ``workers`` local worker processes, each with its own torch and model
    (:data:`_DENOISE_FIXED_BYTES`) denoising one ``(Y, X)`` frame at a time."""
    return int(workers) * denoise_bytes(frame_shape[-2:], tile, in_memory=False)


def noise_bytes(shape: Sequence[int]) -> int:
    """Peak bytes of adding noise to an image or stack of ``shape``."""
    return _NOISE_BYTES_PER_PX * math.prod(int(n) for n in shape)


def registration_bytes(shape: Sequence[int]) -> int:
    """Peak bytes of registering a ``(frames, Y, X)`` stack."""
    return _REGISTRATION_BYTES_PER_PX * math.prod(int(n) for n in shape)


def denoise_bytes(shape: Sequence[int], tile: int, *, in_memory: bool) -> int:
    """Peak bytes of denoising an image or stack of ``shape`` frame by frame.

    Parameters
    ----------
    shape : sequence of int
        ``(Y, X)`` or ``(frames, Y, X)``.
    tile : int
        Kept output pixels per network window edge.
    in_memory : bool
        Whether the whole input is in memory (read whole, or an array) and the whole
        float32 output is kept, rather than streamed frame by frame.
    """
    h, w = (int(n) for n in shape[-2:])
    edge = tile + _DENOISE_HALO
    window = min(h + _DENOISE_WHOLE_FRAME_MARGIN, edge) * min(w + _DENOISE_WHOLE_FRAME_MARGIN, edge)
    need = (
        _DENOISE_FIXED_BYTES + _DENOISE_BYTES_PER_PX * h * w + _DENOISE_WINDOW_BYTES_PER_PX * window
    )
    if in_memory:
        need += 12 * math.prod(int(n) for n in shape)
    return need
