"""The module paths of 0.1 keep working for one release, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import re
import sys

import pytest

from napari_pinned import _moved

#: Names the 0.1 documentation, README and benchmarks imported from module paths that
#: moved, with where each lives now.
DOCUMENTED = [
    ("napari_pinned.inference", "iter_denoise", "napari_pinned.denoising.denoiser"),
    ("napari_pinned.inference", "denoise", "napari_pinned.denoising.denoiser"),
    ("napari_pinned.inference", "Denoiser", "napari_pinned.denoising.engine"),
    ("napari_pinned.inference", "CONTEXT", "napari_pinned.denoising.tiling"),
    ("napari_pinned.inference", "ModelSpec", "napari_pinned.denoising.model_spec"),
    ("napari_pinned.frames", "register_frames", "napari_pinned.denoising.registration"),
    ("napari_pinned.frames", "align_frames", "napari_pinned.denoising.registration"),
    ("napari_pinned.jobs", "run_job", "napari_pinned._util.jobs"),
    ("napari_pinned.memory", "check_memory", "napari_pinned._util.memory"),
    ("napari_pinned.intensity", "infer_data_range", "napari_pinned._util.intensity"),
    ("napari_pinned.atomic", "atomic_write", "napari_pinned.io.safe_write"),
    ("napari_pinned.simulate", "simulate", "napari_pinned.physics.simulate"),
    ("napari_pinned.simulate", "AberratedProbe", "napari_pinned.physics.probe"),
    ("napari_pinned.simulate", "random_specimen", "napari_pinned.physics.simulate"),
    ("napari_pinned.crystal", "read_cif", "napari_pinned.physics.cif"),
    ("napari_pinned.crystal", "project", "napari_pinned.physics.projection"),
    ("napari_pinned.crystal", "list_materials", "napari_pinned.physics.materials"),
    ("napari_pinned.specimens", "random_structure", "napari_pinned.physics.specimens"),
    ("napari_pinned.specimens", "structure_pool", "napari_pinned.physics.specimens"),
    ("napari_pinned.noise_level", "estimate_noise", "napari_pinned.noise.estimate"),
    ("napari_pinned.metrics", "compute_metrics", "napari_pinned.quality.metrics"),
    ("napari_pinned.metrics", "compute_metrics_stack", "napari_pinned.quality.metrics"),
    ("napari_pinned.metrics", "column_accuracy", "napari_pinned.quality.columns"),
    ("napari_pinned.metrics", "faithfulness", "napari_pinned.quality.faithfulness"),
    ("napari_pinned.faithfulness", "faithfulness", "napari_pinned.quality.faithfulness"),
    ("napari_pinned.lattice_guard", "keep_lattice", "napari_pinned.quality.lattice_guard"),
    ("napari_pinned.model", "build_model", "napari_pinned.nn.network"),
    ("napari_pinned.model", "ModelConfig", "napari_pinned.settings"),
    ("napari_pinned.losses", "LossWeights", "napari_pinned.settings"),
    ("napari_pinned.model_files", "load_model", "napari_pinned.nn.resolve"),
    ("napari_pinned.model_files", "save_model", "napari_pinned.nn.model_files"),
    ("napari_pinned.conditioning", "prepare", "napari_pinned.nn.conditioning"),
    ("napari_pinned.backends", "export_onnx", "napari_pinned.share.onnx_export"),
    ("napari_pinned.backends", "load_onnx_model", "napari_pinned.nn.onnx_files"),
    ("napari_pinned.bmz", "export_bioimageio", "napari_pinned.share.bmz_export"),
    ("napari_pinned.bmz", "load_package", "napari_pinned.nn.resolve"),
    ("napari_pinned.adapt", "adapt", "napari_pinned.training.adapt"),
    ("napari_pinned.adapt", "AdaptSettings", "napari_pinned.settings"),
    ("napari_pinned.training_data", "prepare_pairs", "napari_pinned.training.data"),
    ("napari_pinned.scale", "iter_denoise_file", "napari_pinned.denoising.files"),
    ("napari_pinned.config", "config_from_dict", "napari_pinned.settings"),
]
#: Old module paths that are packages now, offering the names their modules were used for.
PACKAGES = [
    ("napari_pinned.io", "read_image", "napari_pinned.io.images"),
    ("napari_pinned.io", "open_frames", "napari_pinned.io.images"),
    ("napari_pinned.noise", "add_dose_noise", "napari_pinned.noise.synthesis"),
    ("napari_pinned.noise", "record_stem_image", "napari_pinned.noise.synthesis"),
    ("napari_pinned.noise", "draw_recording", "napari_pinned.noise.synthesis"),
    ("napari_pinned.training", "train", "napari_pinned.training.run"),
    ("napari_pinned.training", "TrainConfig", "napari_pinned.settings"),
    ("napari_pinned.cli", "main", "napari_pinned.cli.entry"),
]


def _fresh(monkeypatch: pytest.MonkeyPatch, old: str) -> None:
    """Forget an earlier import of the old path, so that importing it warns again."""
    monkeypatch.delitem(sys.modules, old, raising=False)


@pytest.mark.parametrize(("old", "name", "new"), DOCUMENTED)
def test_an_old_path_gives_the_same_object_and_says_where_it_went(monkeypatch, old, name, new):
    _fresh(monkeypatch, old)
    with pytest.warns(DeprecationWarning, match=rf"{re.escape(old)} moved to .*{re.escape(new)}"):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


@pytest.mark.parametrize(("package", "name", "home"), PACKAGES)
def test_a_package_offers_the_names_of_its_old_module(package, name, home):
    assert getattr(importlib.import_module(package), name) is getattr(
        importlib.import_module(home), name
    )


def test_a_module_moved_whole_is_the_same_module(monkeypatch):
    _fresh(monkeypatch, "napari_pinned.jobs")
    with pytest.warns(DeprecationWarning):
        old = importlib.import_module("napari_pinned.jobs")
    assert old is importlib.import_module("napari_pinned._util.jobs")


def test_a_name_no_new_module_has_is_an_attribute_error(monkeypatch):
    _fresh(monkeypatch, "napari_pinned.inference")
    with pytest.warns(DeprecationWarning):
        old = importlib.import_module("napari_pinned.inference")
    with pytest.raises(AttributeError, match=r"napari_pinned\.inference"):
        old.no_such_name  # noqa: B018


def test_every_old_path_points_at_modules_that_exist():
    for sources in _moved.MOVED.values():
        for source in sources:
            importlib.import_module(source)


def test_an_old_path_does_not_shadow_the_api(monkeypatch):
    # The 0.1 module napari_pinned.simulate shares its name with the function.
    import napari_pinned

    _fresh(monkeypatch, "napari_pinned.simulate")
    with pytest.warns(DeprecationWarning):
        importlib.import_module("napari_pinned.simulate")
    assert callable(napari_pinned.simulate)
    from napari_pinned import simulate

    assert simulate is importlib.import_module("napari_pinned.physics.simulate").simulate
