"""Small BioImage Model Zoo packages 'from another tool' for the import tests: a 3×3
mean filter as ONNX, TorchScript or (unrunnable) Keras weights, with a chosen number of
channels and axes."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import torch
import yaml


def onnx_box_filter(channels: int = 1) -> bytes:
    """A 3×3 mean filter (zero padding) as an ONNX graph: a stand-in foreign model."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.full((1, channels, 3, 3), 1 / 9, np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node],
        "box",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", channels, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 1, "h", "w"])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def box_filter(x: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.uniform_filter(x.astype(np.float64), 3, mode="constant").astype(np.float32)


def foreign_package(tmp_path, *, weights="onnx", channels=1, space=("y", "x"), name="box.zip"):
    """A minimal package from 'another tool': rdf.yaml + weights + test tensors."""
    rng = np.random.default_rng(0)
    x = rng.random((1, channels, 64, 64)).astype(np.float32) * 100
    files = {"test_input.npy": x, "test_output.npy": box_filter(x[0, 0])[None, None]}
    size = {"min": 16, "step": 1}
    axes = [
        {"type": "batch"},
        {"type": "channel", "channel_names": [f"c{i}" for i in range(channels)]},
    ]
    axes += [{"type": "space", "id": a, "size": size} for a in space]
    out_axes = [{"type": "batch"}, {"type": "channel", "channel_names": ["c0"]}]
    out_axes += [
        {"type": "space", "id": a, "size": {"tensor_id": "raw", "axis_id": a}, "halo": 1}
        for a in space
    ]
    entries = {}
    if weights == "onnx":
        entries["onnx"] = {"source": "box.onnx", "opset_version": 17}
        blobs = {"box.onnx": onnx_box_filter(channels)}
    elif weights == "torchscript":

        class Box(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                k = torch.full((1, x.shape[1], 3, 3), 1.0 / 9.0)
                return torch.nn.functional.conv2d(x, k, padding=1)

        buffer = io.BytesIO()
        torch.jit.save(torch.jit.script(Box()), buffer)
        entries["torchscript"] = {"source": "box.pt", "pytorch_version": "2.0"}
        blobs = {"box.pt": buffer.getvalue()}
    else:
        entries["keras_hdf5"] = {"source": "box.h5", "tensorflow_version": "2.10"}
        blobs = {"box.h5": b"not really keras"}
    rdf = {
        "type": "model",
        "format_version": "0.5.4",
        "name": "box filter test",
        "description": "a 3x3 mean filter",
        "authors": [{"name": "someone else"}],
        "cite": [{"text": "none", "doi": "10.1000/xyz"}],
        "license": "MIT",
        "inputs": [
            {
                "id": "raw",
                "axes": axes,
                "test_tensor": {"source": "test_input.npy"},
                "data": {"type": "float32"},
            }
        ],
        "outputs": [
            {
                "id": "out",
                "axes": out_axes,
                "test_tensor": {"source": "test_output.npy"},
                "data": {"type": "float32"},
            }
        ],
        "weights": entries,
    }
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("rdf.yaml", yaml.safe_dump(rdf))
        for fname, array in files.items():
            buffer = io.BytesIO()
            np.save(buffer, array)
            archive.writestr(fname, buffer.getvalue())
        for fname, blob in blobs.items():
            archive.writestr(fname, blob)
    return path
