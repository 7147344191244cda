"""PINNED network, configuration, normalisation, devices and model files."""

from __future__ import annotations

import itertools
import json
import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import napari_pinned.nn.model_files as model_files
import napari_pinned.nn.network as model_module
from napari_pinned._util.devices import resolve_device
from napari_pinned.nn.model_files import (
    FORMAT_VERSION,
    ModelFileError,
    default_model_path,
    save_model,
)
from napari_pinned.nn.network import (
    ModelBundle,
    PinnedNetwork,
    build_model,
    count_parameters,
    receptive_field,
)
from napari_pinned.nn.resolve import load_model
from napari_pinned.settings import ModelConfig

TINY = ModelConfig.preset("tiny")
TINY_PAPER = ModelConfig.preset("paper", width=4, depth=2)


def _bundle(config: ModelConfig = TINY, seed: int = 0, **metadata) -> ModelBundle:
    torch.manual_seed(seed)
    return ModelBundle(model=build_model(config).eval(), config=config, metadata=dict(metadata))


# -- configuration ---------------------------------------------------------------------


def test_presets_match_their_descriptions():
    paper, unet, tiny = (ModelConfig.preset(n) for n in ("paper", "unet", "tiny"))
    assert (paper.skip_connections, paper.residual) == (False, False)
    assert (unet.skip_connections, unet.residual) == (True, True)
    assert (tiny.width, tiny.depth) == (4, 2)
    assert ModelConfig.preset("paper", width=8).width == 8
    assert ModelConfig() == unet


@pytest.mark.parametrize(
    "call",
    [
        lambda: ModelConfig.preset("resnet"),
        lambda: ModelConfig.preset("paper", widht=8),
        lambda: ModelConfig(depth=0),
        lambda: ModelConfig(width=-1),
        lambda: ModelConfig(width=4.5),
        lambda: ModelConfig(negative_slope=1.5),
        lambda: ModelConfig(normalization="zscore"),
        lambda: ModelConfig(architecture="transformer"),
        lambda: ModelConfig(skip_connections="yes"),
        lambda: ModelConfig.from_dict({"depth": 2, "colour": "red"}),
        lambda: ModelConfig.from_dict(["depth", 2]),
    ],
)
def test_invalid_configs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_config_dict_round_trip_is_json_able():
    config = ModelConfig.preset("paper", width=6, depth=4, normalization="percentile")
    restored = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config


# -- network ---------------------------------------------------------------------------


@pytest.mark.parametrize("config", [TINY, TINY_PAPER], ids=["unet", "paper"])
@pytest.mark.parametrize("shape", [(37, 53), (5, 5), (1, 1), (2, 9), (16, 8)])
def test_output_shape_matches_any_input_shape(config, shape):
    net = build_model(config).eval()
    x = torch.rand(2, 1, *shape)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_image_smaller_than_the_pad_is_replicate_padded():
    # Depth 4 pads 5×5 to 16×16: 11 pixels, more than reflection can supply.
    config = ModelConfig.preset("unet", width=4, depth=4)
    assert build_model(config)(torch.rand(1, 1, 5, 5)).shape == (1, 1, 5, 5)
    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    padded = model_module._pad_to_multiple(x, 16)
    assert padded.shape == (1, 1, 16, 16)
    assert torch.equal(padded[..., :5, :5], x)
    assert torch.equal(padded[0, 0, 15, :5], x[0, 0, 4])  # bottom rows repeat the last row
    assert torch.equal(padded[0, 0, :5, 15], x[0, 0, :, 4])


def test_large_enough_images_are_reflect_padded_after_the_image():
    x = torch.arange(35.0).reshape(1, 1, 5, 7)
    padded = model_module._pad_to_multiple(x, 4)
    assert padded.shape == (1, 1, 8, 8)
    assert torch.equal(padded[..., :5, :7], x)
    # Reflection without repeating the edge: rows 5, 6, 7 are rows 3, 2, 1.
    assert torch.equal(padded[0, 0, 5:, :7], x[0, 0, [3, 2, 1]])
    assert torch.equal(padded[0, 0, :5, 7], x[0, 0, :, 5])


@pytest.mark.parametrize("config", [TINY, TINY_PAPER], ids=["unet", "paper"])
def test_aligned_crops_match_the_whole_image_away_from_their_edges(config):
    """Shifts by multiples of 2**depth commute with the network (what tiling relies on)."""
    torch.manual_seed(0)
    net = build_model(config).eval()
    image = torch.rand(1, 1, 152, 168)
    margin = receptive_field(config) // 2 + 4
    top, left = 3 * config.alignment, 5 * config.alignment
    crop = image[..., top : top + 101, left : left + 117]  # odd sizes: padded, cropped back
    with torch.no_grad():
        whole = net(image)[..., top : top + 101, left : left + 117]
        part = net(crop)
    inner = np.s_[..., margin:-margin, margin:-margin]
    torch.testing.assert_close(part[inner], whole[inner], atol=1e-5, rtol=1e-5)


def test_residual_output_adds_the_input():
    plain_config = ModelConfig.preset("tiny", residual=False)
    residual_net = build_model(TINY).eval()
    plain_net = build_model(plain_config).eval()
    plain_net.load_state_dict(residual_net.state_dict())  # same layers, same names
    x = torch.rand(2, 1, 19, 23)
    with torch.no_grad():
        difference = residual_net(x) - plain_net(x)
    torch.testing.assert_close(difference, x, atol=1e-6, rtol=0)


def test_forward_rejects_multichannel_input():
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        build_model(TINY)(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        build_model(TINY_CONDITIONED)(torch.rand(1, 1, 16, 16))


TINY_CONDITIONED = ModelConfig.preset("tiny", normalization="robust", conditioning="noise-map")


def test_a_conditioned_network_is_the_identity_without_noise():
    torch.manual_seed(3)
    net = build_model(TINY_CONDITIONED).eval()
    # Trained-looking weights everywhere, head included: the identity must come from
    # the σ factor, not from a zero initialisation.
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    image = torch.rand(2, 1, 21, 18)
    x = torch.cat([image, torch.zeros_like(image)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(net(x), image, atol=0, rtol=0)
        noisy = torch.cat([image, torch.full_like(image, 0.2)], dim=1)
        correction = net(noisy) - image
        # The correction is σ times the network's output: doubling σ changes it.
        double = torch.cat([image, torch.full_like(image, 0.4)], dim=1)
        assert correction.abs().max() > 0
        assert not torch.allclose(net(double) - image, correction)


def test_a_fresh_conditioned_network_starts_as_the_identity():
    net = build_model(TINY_CONDITIONED).eval()
    x = torch.rand(1, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), x[:, :1], atol=0, rtol=0)


def test_old_model_configs_are_unconditioned():
    legacy = {k: v for k, v in TINY.to_dict().items() if k != "conditioning"}
    config = ModelConfig.from_dict(legacy)
    assert config.conditioning == "none" and config.input_channels == 1
    assert TINY_CONDITIONED.input_channels == 2
    with pytest.raises(ValueError, match="conditioning"):
        ModelConfig.preset("tiny", conditioning="yes")


def _expected_parameters(config: ModelConfig) -> int:
    """Count from the architecture's description: 3 convs per block, 2×2 up-convs, 1×1 head."""

    def block(cin: int, cout: int) -> int:
        return (9 * cin * cout + cout) + 2 * (9 * cout * cout + cout)

    ch = [min(config.width * 2**k, 8 * config.width) for k in range(config.depth + 1)]
    first = 3 if config.conditioned else 1  # image, σ and log σ
    total = sum(block(first if k == 0 else ch[k - 1], ch[k]) for k in range(config.depth))
    total += block(ch[-2], ch[-1])
    factor = 2 if config.skip_connections else 1
    for k in range(config.depth):
        total += 4 * ch[k + 1] * ch[k] + ch[k]  # transposed convolution
        total += block(factor * ch[k], ch[k])
    return total + ch[0] + 1  # 1×1 output convolution


@pytest.mark.parametrize(
    "config",
    [
        TINY,
        TINY_PAPER,
        ModelConfig.preset("paper"),
        ModelConfig.preset("unet"),
        ModelConfig.preset("unet", width=4, depth=5),
        ModelConfig.preset("unet", width=8, conditioning="noise-map"),
    ],  # depth 5 hits the 8× width cap
)
def test_parameter_count_follows_the_architecture(config):
    assert count_parameters(build_model(config)) == _expected_parameters(config)


def test_parameter_count_grows_with_width_and_skips():
    counts = [count_parameters(build_model(ModelConfig.preset("paper", width=w))) for w in (4, 8)]
    assert counts[1] > 3 * counts[0]  # convolutions scale with width²
    skips = count_parameters(build_model(ModelConfig.preset("unet", width=8)))
    assert skips > counts[1]


def test_receptive_field_grows_with_depth():
    fields = [receptive_field(ModelConfig(depth=d)) for d in range(1, 6)]
    assert all(b > 2 * a for a, b in itertools.pairwise(fields))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_receptive_field_equals_measured_influence(depth):
    """Gradient support of one output pixel, over every alignment with the pooling grid.

    Average pooling has the same footprint as max pooling but passes gradient to every
    pixel, so the support is the full structural receptive field.
    """
    config = ModelConfig.preset("tiny", width=2, depth=depth)
    torch.manual_seed(depth)
    net = build_model(config).double()
    net.pool = nn.AvgPool2d(2, stride=2)
    field = receptive_field(config)
    period = 2**depth
    size = period * (field // period + 3)
    x = torch.rand(period, 1, size, size, dtype=torch.float64, requires_grad=True)
    centre = size // 2
    out = net._core(x)
    # Image b's gradient comes from output column centre + b only (the batch is independent).
    out[torch.arange(period), 0, centre, centre + torch.arange(period)].sum().backward()
    extents = []
    for b in range(period):
        cols = torch.nonzero(x.grad[b, 0].abs().sum(dim=0)).flatten()
        rows = torch.nonzero(x.grad[b, 0].abs().sum(dim=1)).flatten()
        extents += [int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
    assert max(extents) == field


# -- devices ---------------------------------------------------------------------------


def test_auto_device_is_the_best_available():
    if torch.cuda.is_available():
        expected = "cuda"
    elif torch.backends.mps.is_available():
        expected = "mps"
    else:
        expected = "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_unavailable_or_unknown_devices_raise_clearly():
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(ValueError):
        resolve_device(3)


# -- model files -----------------------------------------------------------------------


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    metadata = {
        "name": "t",
        "steps": 12,
        "val_psnr": 21.5,
        "noise_levels": [1.0, 5.0],
        "loss_weights": {"tv": 0.01},
        "init_model": None,
        "ok": True,
        "numpy_float": np.float32(0.5),
    }
    bundle = _bundle(ModelConfig.preset("tiny", normalization="percentile"), **metadata)
    path = save_model(bundle, tmp_path / "m.pt")
    assert path == tmp_path / "m.pt" and sorted(os.listdir(tmp_path)) == ["m.pt"]
    loaded = load_model(path)
    assert loaded.config == bundle.config
    assert loaded.metadata == {**metadata, "numpy_float": 0.5}
    assert loaded.source == str(path)
    assert not loaded.model.training
    x = torch.rand(2, 1, 29, 31)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), bundle.model(x))


def test_save_rejects_bad_targets_and_metadata(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        save_model(_bundle(), tmp_path / "missing" / "m.pt")
    with pytest.raises(ValueError, match="folder"):
        save_model(_bundle(), tmp_path)
    with pytest.raises(ValueError, match="JSON"):
        save_model(_bundle(thing=object()), tmp_path / "m.pt")
    with pytest.raises(ValueError, match="config"):
        save_model(ModelBundle(build_model(TINY), TINY_PAPER, {}), tmp_path / "m.pt")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, error):
    path = save_model(_bundle(seed=1), tmp_path / "m.pt")
    original = path.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial archive")
        f.flush()
        raise error

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(type(error)):
        save_model(_bundle(seed=2), path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["m.pt"]


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: it would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _valid_payload() -> dict:
    return model_files.file_payload(_bundle())


def _write_tampered(kind: str, path, tmp_path) -> None:
    good = tmp_path / "good.pt"
    save_model(_bundle(), good)
    raw = good.read_bytes()
    if kind == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind.startswith("flipped byte"):
        # Anywhere in the archive: the pickled header, the weights, the zip directory.
        data = bytearray(raw)
        data[int(len(data) * float(kind.split()[-1]))] ^= 0x01
        path.write_bytes(bytes(data))
    elif kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "text":
        path.write_text("this is not a model\n")
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "bare state dict":
        torch.save(build_model(TINY).state_dict(), path)
    elif kind == "edited metadata":  # checksum left as it was
        payload = _valid_payload()
        payload["metadata_json"] = json.dumps({"name": "edited"})
        torch.save(payload, path)
    else:
        # Well-formed files with a matching checksum whose content is wrong.
        payload = _valid_payload()
        if kind in ("old version", "future version"):
            payload["format_version"] = 0 if kind == "old version" else FORMAT_VERSION + 1
        elif kind == "unknown config key":
            payload["config"]["colour"] = "red"
        elif kind == "weights of another shape":
            payload["state_dict"] = build_model(ModelConfig.preset("tiny", width=5)).state_dict()
        elif kind == "NaN weights":
            payload["state_dict"]["head.bias"] = torch.tensor([float("nan")])
        elif kind == "bad metadata":
            payload["metadata_json"] = "{not json"
        else:
            raise AssertionError(kind)
        payload["sha256"] = model_files.checksum(
            payload["config"], payload["metadata_json"], payload["state_dict"]
        )
        torch.save(payload, path)
    good.unlink()


TAMPERED = [
    "truncated",
    "empty",
    "random bytes",
    "text",
    "tensor",
    "bare state dict",
    "edited metadata",
    "old version",
    "future version",
    "unknown config key",
    "weights of another shape",
    "NaN weights",
    "bad metadata",
    *(f"flipped byte at {f}" for f in (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99)),
]


@pytest.mark.parametrize("kind", TAMPERED)
def test_tampered_files_raise_model_file_error_naming_the_file(kind, tmp_path):
    path = tmp_path / f"{kind.replace(' ', '_')}.pt"
    _write_tampered(kind, path, tmp_path)
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    if "version" in kind:
        assert "format version" in str(info.value)
    if kind == "edited metadata":
        assert "corrupted" in str(info.value)


@pytest.mark.parametrize(
    "container", ["pickle protocol 2", "pickle default protocol", "torch.save"]
)
def test_malicious_pickle_is_refused_without_running(container, tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    payload = {
        "format": "napari-pinned-model",
        "format_version": FORMAT_VERSION,
        "evil": _Payload(marker),
    }
    if container == "torch.save":
        torch.save(payload, path)
    else:
        protocol = 2 if container == "pickle protocol 2" else pickle.DEFAULT_PROTOCOL
        path.write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(path) in str(info.value)
    assert not marker.exists()

    # Control: the payload is live, so the check above can fail.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(control))).close()
    assert control.exists()


def test_missing_file_and_folders_raise_model_file_error(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nothing.pt")
    with pytest.raises(ModelFileError, match="not a file"):
        load_model(tmp_path)


def test_default_model_missing_says_how_to_train_one(tmp_path, monkeypatch):
    assert default_model_path().name == "default.pt"
    monkeypatch.setattr(model_files, "default_model_path", lambda: tmp_path / "default.pt")
    with pytest.raises(ModelFileError, match=r"'default' model is missing.*napari-pinned train"):
        load_model("default")
    with pytest.raises(ModelFileError):
        load_model()


def test_default_model_is_loaded_when_present(tmp_path, monkeypatch):
    path = save_model(_bundle(name="shipped"), tmp_path / "default.pt")
    monkeypatch.setattr(model_files, "default_model_path", lambda: path)
    assert load_model("default").metadata == {"name": "shipped"}


def test_load_model_passes_bundles_through():
    bundle = _bundle()
    assert load_model(bundle, device="cpu") is bundle
    assert isinstance(bundle.model, PinnedNetwork)
    with pytest.raises(ValueError):
        load_model(42)
