"""The ONNX Runtime backend: exported ONNX files equal torch, load without torch, and
are refused when they are not napari-pinned's, altered, or read other files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import onnx

from napari_pinned.denoising.denoiser import denoise
from napari_pinned.nn import runners as backends
from napari_pinned.nn.network import ModelBundle, build_model
from napari_pinned.nn.onnx_files import load_onnx_model
from napari_pinned.nn.runners import make_runner
from napari_pinned.settings import ModelConfig
from napari_pinned.share.onnx_export import export_onnx


def _bundle(**overrides) -> ModelBundle:
    torch.manual_seed(0)
    config = ModelConfig.preset("tiny", **overrides)
    net = build_model(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return ModelBundle(net.eval(), config, {"name": "tiny"})


def _counts(shape=(90, 100), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (rng.poisson((np.cos(x / 2.0) * np.cos(y / 2.0) + 1.2) * 10) * 2.0 + 50).astype(
        np.float32
    )


@pytest.fixture(scope="module", params=["noise-map", "noise-map+lattice"])
def conditioned(tmp_path_factory, request):
    bundle = _bundle(conditioning=request.param, normalization="robust")
    return bundle, export_onnx(bundle, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.mark.parametrize(
    "overrides",
    [{"conditioning": "noise-map"}, {"conditioning": "noise-map+lattice"}, {"residual": False}],
)
def test_onnx_runner_equals_torch_on_any_tile_shape(overrides):
    bundle = _bundle(**overrides)
    channels = bundle.config.input_channels
    batch = np.random.default_rng(0).random((3, channels, 36, 50)).astype(np.float32) + 0.01
    torch_out = make_runner(bundle, backend="torch", device="cpu")(batch)
    onnx_out = make_runner(bundle, backend="onnx", device="cpu")(batch)
    assert onnx_out.shape == (3, 1, 36, 50)  # 36, 50: not multiples of 4, padded inside
    assert np.max(np.abs(onnx_out - torch_out)) <= 1e-5 * float(np.ptp(torch_out))


def test_onnx_file_denoises_like_torch(conditioned):
    bundle, path = conditioned
    model = load_onnx_model(path)
    assert model.config.to_dict() == bundle.config.to_dict()
    assert model.metadata == {"name": "tiny"}
    image = np.stack([_counts(), _counts(seed=1)])
    expected = denoise(image, bundle, device="cpu")
    span = float(np.ptp(expected))
    for got in (
        denoise(image, str(path)),
        denoise(image, model),
        denoise(image, bundle, backend="onnx", device="cpu"),
    ):
        assert np.max(np.abs(got - expected)) <= 1e-3 * span
    assert np.max(np.abs(expected - image)) > 1e-2 * span  # the network does something


def test_onnx_files_run_without_torch(conditioned, tmp_path):
    # What an acquisition PC needs (docs/model.md): numpy, scipy, tifffile, onnx and
    # onnxruntime; not torch, scikit-image, gemmi or napari.
    _, path = conditioned
    noisy, out = tmp_path / "noisy.tif", tmp_path / "out.tif"
    code = f"""
import sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "skimage", "gemmi", "napari", "qtpy", "magicgui"):
            raise ImportError(name + " is not installed here")

sys.meta_path.insert(0, NotInstalled())
import numpy as np
from napari_pinned import denoise
from napari_pinned.cli.entry import main
from napari_pinned.io.tiff import write_tiff
image = np.random.default_rng(0).poisson(5.0, (80, 90)).astype(np.float32)
out = denoise(image, {str(path)!r})
assert out.shape == image.shape and np.isfinite(out).all()
write_tiff({str(noisy)!r}, image)
assert main(["denoise", {str(noisy)!r}, "--model", {str(path)!r}, "-o", {str(out)!r}]) == 0
print("torch" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"
    assert out.is_file()


def test_altered_foreign_and_external_onnx_files_are_refused(
    conditioned, tmp_path, onnx_box_filter
):
    _, path = conditioned
    proto = onnx.load(path)
    weights = proto.graph.initializer[0]
    weights.raw_data = bytes(len(weights.raw_data))
    onnx.save(proto, tmp_path / "altered.onnx")
    with pytest.raises(ValueError, match="corrupted"):
        load_onnx_model(tmp_path / "altered.onnx")

    (tmp_path / "box.onnx").write_bytes(onnx_box_filter())
    with pytest.raises(ValueError, match="not a napari-pinned ONNX model"):
        load_onnx_model(tmp_path / "box.onnx")

    proto = onnx.load(path)
    tensor = proto.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    onnx.save(proto, tmp_path / "external.onnx")
    with pytest.raises(ValueError, match="external files"):
        load_onnx_model(tmp_path / "external.onnx")

    (tmp_path / "junk.onnx").write_bytes(b"\x00not onnx")
    with pytest.raises(ValueError, match=r"junk\.onnx"):
        load_onnx_model(tmp_path / "junk.onnx")


def test_missing_onnxruntime_says_how_to_install(monkeypatch, conditioned):
    bundle, path = conditioned
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ValueError, match=r"napari-pinned\[onnx\]"):
        denoise(_counts(), bundle, backend="onnx", device="cpu")
    with pytest.raises(ValueError, match=r"napari-pinned\[onnx\]"):
        denoise(_counts(), str(path))


def test_backend_choices_are_checked(conditioned):
    bundle, path = conditioned
    with pytest.raises(ValueError, match="backend must be one of"):
        denoise(_counts(), bundle, backend="tensorflow")
    with pytest.raises(ValueError, match="onnx backend"):
        denoise(_counts(), str(path), backend="torch")
    with pytest.raises(ValueError, match="optimization"):
        backends.set_onnx_options(optimization="fast")
