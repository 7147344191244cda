"""Tiny microscope files written in the tests, to each format's published layout."""

from __future__ import annotations

import pathlib

import numpy as np


def write_mrc(path: pathlib.Path, data: np.ndarray, pixel_size_angstrom: float) -> pathlib.Path:
    """An MRC2014 file: 1024-byte header (nx, ny, nz, mode 2 = float32, sampling, cell
    lengths in Å, axis order, "MAP " and the little-endian stamp), then the data."""
    data = np.asarray(data, np.float32)
    stack = data[None] if data.ndim == 2 else data
    nz, ny, nx = stack.shape
    header = np.zeros(256, dtype="<i4")
    header[0:3] = (nx, ny, nz)
    header[3] = 2
    header[7:10] = (nx, ny, nz)
    cell = np.array([nx, ny, nz], "<f4") * np.float32(pixel_size_angstrom)
    header[10:13] = cell.view("<i4")
    header[13:16] = np.array([90.0, 90.0, 90.0], "<f4").view("<i4")
    header[16:19] = (1, 2, 3)
    header[52] = np.frombuffer(b"MAP ", "<i4")[0]
    header[53] = np.frombuffer(bytes([0x44, 0x44, 0, 0]), "<i4")[0]
    path.write_bytes(header.tobytes() + stack.astype("<f4").tobytes())
    return path


def write_berkeley_emd(path: pathlib.Path, datasets: dict[str, tuple[np.ndarray, list]]) -> None:
    """A Berkeley EMD file (HDF5): one group per dataset under /data with
    ``emd_group_type = 1``, its array in "data" and one "dimN" vector per axis whose
    attributes give the axis name and units (e.g. "[n_m]")."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        for name, (data, dims) in datasets.items():
            group = f.create_group(f"data/{name}")
            group.attrs["emd_group_type"] = 1
            group.create_dataset("data", data=data)
            for i, (axis_name, step, units) in enumerate(dims, 1):
                vector = group.create_dataset(f"dim{i}", data=np.arange(data.shape[i - 1]) * step)
                vector.attrs["name"] = axis_name
                vector.attrs["units"] = units


def write_ser(path: pathlib.Path, frames: np.ndarray, pixel_size_m: float) -> pathlib.Path:
    """A TIA .ser series (version 0x0210) of 2D float32 images: the series header, one
    dimension record (the frame index), the data and tag offset arrays, then each image
    element (x/y calibration in metres, data type 7 = float32, its size, the pixels stored
    x-fastest from the bottom row up, as TIA does) followed by its time-only tag."""
    import struct

    stack = np.asarray(frames, np.float32)
    stack = stack[None] if stack.ndim == 2 else stack
    n, ny, nx = stack.shape
    header = struct.pack("<HHHIIII", 0x4949, 0x0197, 0x0210, 0x4122, 0x4152, n, n)
    description = b"Number"
    dimension = struct.pack("<IddII", n, 0.0, 1.0, 0, len(description)) + description
    dimension += struct.pack("<I", 0)
    offsets_at = len(header) + 8 + len(dimension)
    first_element = offsets_at + 8 * n
    element_size = 8 + 8 + 4 + 8 + 8 + 4 + 2 + 4 + 4 + 4 * nx * ny + 2 + 2 + 4
    data_offsets = [first_element + i * element_size for i in range(n)]
    tag_offsets = [o + element_size - 8 for o in data_offsets]
    body = header + struct.pack("<II", offsets_at, 1) + dimension
    body += struct.pack(f"<{n}I", *data_offsets) + struct.pack(f"<{n}I", *tag_offsets)
    for frame in stack:
        body += struct.pack("<ddIddIHII", 0.0, pixel_size_m, 0, 0.0, pixel_size_m, 0, 7, nx, ny)
        body += frame[::-1].astype("<f4").tobytes()
        body += struct.pack("<HHI", 0x4152, 0, 0)
    path.write_bytes(body)
    return path
