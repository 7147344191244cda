"""``napari-pinned export`` and ``denoise`` with packages, ONNX files and ``--backend``."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned.cli.entry import main
from napari_pinned.io.images import read_image
from napari_pinned.io.tiff import write_tiff
from napari_pinned.nn.model_files import save_model


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_conditioned):
    """A tiny noise-conditioned model file and a noisy image."""
    folder = tmp_path_factory.mktemp("cli-bmz")
    model = save_model(tiny_conditioned(0, name="tiny", noise="stem"), folder / "m.pt")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:80, 0:96]
    clean = (np.cos(x / 2.0) * np.cos(y / 2.0) + 1.2) * 10
    noisy = folder / "noisy.tif"
    write_tiff(noisy, (rng.poisson(clean) * 2.0 + 50).astype(np.float32))
    reference = folder / "torch.tif"
    assert main(["denoise", str(noisy), "--model", str(model), "-o", str(reference)]) == 0
    return folder, model, noisy, read_image(reference)


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return float(np.max(np.abs(a - b))) <= 1e-3 * float(np.ptp(b))


def test_export_bioimageio_then_denoise_with_the_package(files, capsys):
    pytest.importorskip("bioimageio.spec")
    folder, model, noisy, expected = files
    package = folder / "m.zip"
    assert main(["export", str(model), "-o", str(package), "--author", "Me"]) == 0
    assert "bioimageio test" in capsys.readouterr().out
    out = folder / "from-package.tif"
    assert main(["denoise", str(noisy), "--model", str(package), "-o", str(out)]) == 0
    assert _close(read_image(out), expected)


def test_export_onnx_then_denoise_with_onnx_runtime(files):
    pytest.importorskip("onnxruntime")
    folder, model, noisy, expected = files
    onnx_file = folder / "m.onnx"
    assert main(["export", str(model), "--format", "onnx", "-o", str(onnx_file)]) == 0
    out = folder / "from-onnx.tif"
    assert main(["denoise", str(noisy), "--model", str(onnx_file), "-o", str(out)]) == 0
    assert _close(read_image(out), expected)
    out2 = folder / "backend-onnx.tif"
    assert (
        main(["denoise", str(noisy), "--model", str(model), "--backend", "onnx", "-o", str(out2)])
        == 0
    )
    assert _close(read_image(out2), expected)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "{model}", "-o", "{folder}/x.txt"], "is a .zip file"),
        (["export", "{folder}/missing.pt", "-o", "{folder}/x.zip"], "model file not found"),
        (["export", "{model}", "--format", "onnx", "-o", "{folder}/x.zip"], "is a .onnx file"),
    ],
)
def test_export_mistakes_are_one_line_errors(files, capsys, argv, message):
    folder, model, _, _ = files
    args = [a.format(folder=folder, model=model) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_extras_are_named(files, capsys, monkeypatch):
    import importlib.util

    folder, model, _, _ = files
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith(("bioimageio", "onnx")) else real(name, *a),
    )
    assert main(["export", str(model), "-o", str(folder / "y.zip")]) == 2
    assert "napari-pinned[bioimageio]" in capsys.readouterr().err
    assert main(["export", str(model), "-o", str(folder / "y.onnx")]) == 2
    assert "napari-pinned[onnx]" in capsys.readouterr().err


def test_onnx_model_with_torch_backend_is_refused(files, capsys):
    pytest.importorskip("onnxruntime")
    folder, model, noisy, _ = files
    onnx_file = folder / "m2.onnx"
    assert main(["export", str(model), "-o", str(onnx_file)]) == 0
    args = ["denoise", str(noisy), "--model", str(onnx_file), "--backend", "torch"]
    assert main([*args, "-o", str(folder / "z.tif")]) == 2
    assert "--backend onnx" in capsys.readouterr().err


def test_foreign_code_package_needs_trust_package(
    files, tmp_path, capsys, foreign_package, box_filter
):
    pytest.importorskip("bioimageio.core")
    _, _, noisy, _ = files
    package = foreign_package(tmp_path, weights="torchscript")
    out = tmp_path / "out.tif"
    assert main(["denoise", str(noisy), "--model", str(package), "-o", str(out)]) == 2
    assert "--trust-package" in capsys.readouterr().err and not out.exists()
    args = ["denoise", str(noisy), "--model", str(package), "--trust-package", "-o", str(out)]
    assert main(args) == 0
    np.testing.assert_allclose(
        read_image(out)[1:-1, 1:-1], box_filter(read_image(noisy))[1:-1, 1:-1], rtol=1e-5, atol=1e-4
    )
