"""Where the windows of a frame lie: exact tiling for a network of known reach.

An output pixel of the network depends only on the input pixels within
:func:`~napari_pinned.nn.network.receptive_reach` of it (73 px at depth 3, 153 px at
depth 4).  Each frame is first mirrored outwards by a context margin (:data:`CONTEXT`
px, rounded up so that the padded frame is a multiple of the network's alignment
``2**depth``: :func:`frame_padding`), so pixels at the border see reflected lattice
rather than the network's zero padding.  The padded frame is then cut into windows of
at most ``tile + 2·overlap`` px that overlap by at least ``2·overlap`` and start at
multiples of the alignment (the only shifts the network is equivariant to); every
output pixel is taken from a window in which it has at least ``overlap`` px of input on
every side, or which reaches the padded frame's edge there (:func:`axis_windows`).
With ``overlap`` at least the reach — the default, :func:`minimum_overlap`, is the
reach rounded up to the alignment — no kept pixel sees a window edge, so any tile size
gives the whole frame's result to float rounding.  A frame that fits in one window (up
to :data:`~napari_pinned.settings.DEFAULT_TILE` px plus the margins, by default) is
processed whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_pinned.settings import DEFAULT_TILE, MIN_TILE

if TYPE_CHECKING:
    from napari_pinned.settings import ModelConfig

__all__ = [
    "CONTEXT",
    "axis_windows",
    "check_tile",
    "frame_padding",
    "minimum_overlap",
    "resolve_tiling",
    "tile_layout",
    "tile_starts",
    "windows_per_frame",
]

#: Mirrored context (pixels) added around every frame before tiling.
CONTEXT = 32


def _receptive_reach(config: Any) -> int:
    """:func:`napari_pinned.nn.network.receptive_reach`; ONNX models carry theirs."""
    reach = getattr(config, "receptive_reach", None)
    if reach is not None:
        return int(reach)
    from napari_pinned.nn.network import receptive_reach

    return receptive_reach(config)


def minimum_overlap(config: ModelConfig) -> int:
    """The smallest halo (px) that makes tiling exact for a network: its
    :func:`~napari_pinned.nn.network.receptive_reach` rounded up to its alignment
    (36 px at depth 2, 80 at depth 3, 160 at depth 4)."""
    align = config.alignment
    return -(-_receptive_reach(config) // align) * align


def tile_layout(length: int, tile: int, overlap: int, align: int = 1) -> tuple[int, list[int]]:
    """Tile size and start offsets covering an axis of ``length`` pixels.

    Uses the fewest tiles of at most ``tile`` pixels that overlap by at least
    ``overlap``, then shrinks them to equal sizes so no tile computes much more than
    its share (512 px tiles on a 2112 px axis: five of 480 px instead of five of 512).
    Sizes and starts are multiples of ``align`` when ``length`` and ``tile`` are.
    """
    if length <= tile:
        return length, [0]
    count = -(-(length - overlap) // (tile - overlap))
    size = -(-(length + (count - 1) * overlap) // count)
    # Rounding starts down to the alignment can widen one gap by up to align - 1 pixels.
    size = min(tile, -(-size // align) * align + align)
    step = (length - size) / (count - 1)
    starts = [int(i * step) // align * align for i in range(count - 1)] + [length - size]
    return size, starts


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of :func:`tile_layout` (tiles of its returned size)."""
    return tile_layout(length, tile, overlap)[1]


def frame_padding(length: int, align: int) -> tuple[int, int]:
    """Mirrored padding (before, after) of one frame axis.

    ``CONTEXT`` pixels on each side, rounded up so that the padded length is a multiple
    of the network's alignment: then every window starts at a multiple of it.
    """
    before = -(-CONTEXT // align) * align
    after = before + (-(length + 2 * before)) % align
    return before, after


def axis_windows(
    first: int,
    last: int,
    length: int,
    target: tuple[int, int],
    tile: int,
    overlap: int,
    align: int,
) -> tuple[int, list[int], list[tuple[int, int]]]:
    """Windows along one axis of a padded frame of ``length`` px.

    The input is available for ``[first, last)`` and the output wanted for
    ``target``, all in padded-frame coordinates.  Returns the window size, the
    windows' starts and the part of ``target`` kept from each.
    """
    t0, t1 = target
    lo = max(-(-first // align) * align, (t0 - overlap) // align * align)
    hi = min(
        last // align * align if last < length else length, -(-(t1 + overlap) // align) * align
    )
    if (lo > 0 and lo > t0 - overlap) or (hi < length and hi < t1 + overlap):
        raise AssertionError(f"window [{first}, {last}) lacks context for [{t0}, {t1})")
    size, starts = tile_layout(hi - lo, tile + 2 * overlap, 2 * overlap, align)
    starts = [lo + s for s in starts]
    # Cut between neighbours in the middle of their overlap (≥ 2·overlap): each side
    # keeps at least ``overlap`` px of context.
    cuts = [lo, *((starts[k + 1] + starts[k] + size) // 2 for k in range(len(starts) - 1)), hi]
    keeps = [(max(cuts[k], t0), min(cuts[k + 1], t1)) for k in range(len(starts))]
    return size, starts, keeps


def windows_per_frame(
    shape: tuple[int, int],
    config: ModelConfig,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
) -> int:
    """How many network windows one frame of ``shape`` takes."""
    tile, overlap = resolve_tiling(config, tile, overlap)
    count = 1
    for n in shape:
        before, after = frame_padding(int(n), config.alignment)
        length = int(n) + before + after
        count *= len(
            axis_windows(
                0, length, length, (before, before + int(n)), tile, overlap, config.alignment
            )[1]
        )
    return count


def check_tile(tile: Any) -> int:
    """The tile size as an int: a whole number of at least :data:`MIN_TILE` pixels."""
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < MIN_TILE:
        raise ValueError(f"tile size must be at least {MIN_TILE} pixels, got {tile!r}")
    return int(tile)


def resolve_tiling(config: ModelConfig, tile: Any, overlap: Any) -> tuple[int, int]:
    """Validate the tile and overlap for a network; both rounded up to its alignment."""
    tile = check_tile(tile)
    needed = minimum_overlap(config)
    if overlap is None:
        overlap = needed
    elif isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)):
        raise ValueError(f"overlap must be a whole number of pixels, got {overlap!r}")
    elif overlap < needed:
        raise ValueError(
            f"overlap {overlap} px is too small for this model: it needs at least {needed} px "
            f"(its receptive field reaches {_receptive_reach(config)} px, rounded up to "
            f"multiples of {config.alignment}); leave it out to use that"
        )
    align = config.alignment
    return max(align, -(-tile // align) * align), -(-int(overlap) // align) * align
