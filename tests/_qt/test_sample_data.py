"""The File → Open Sample layers: every layer on the image's Å grid (no unit warning)."""

from __future__ import annotations

import pytest

from napari_pinned import _sample_data


@pytest.mark.parametrize("sample", ["srtio3_001", "si_110_cdn3", "gan_stack"])
def test_sample_layers_share_the_images_units(viewer_model, sample):
    """napari's canvas warns "Inconsistent units across layers" exactly when the layer
    list's extent has no common units, so a common ("Å", "Å") means no warning."""
    layers = getattr(_sample_data, sample)()
    for data, kwargs, kind in layers:
        getattr(viewer_model, f"add_{kind}")(data, **kwargs)
    assert viewer_model.layers.extent.units is not None
    assert tuple(str(u) for u in viewer_model.layers.extent.units)[-2:] == (
        "angstrom",
        "angstrom",
    )
    for layer in viewer_model.layers:
        assert tuple(layer.scale[-2:]) == pytest.approx((0.1, 0.1)), layer.name
        assert [str(u) for u in layer.units[-2:]] == ["angstrom", "angstrom"], layer.name
