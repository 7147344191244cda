from __future__ import annotations

import numpy as np
import pytest

from napari_pinned._util.intensity import (
    PAPER_RANGE,
    check_image,
    from_paper_scale,
    infer_data_range,
    to_paper_scale,
)


def test_uint8_and_paper_scale_floats_use_paper_range():
    assert infer_data_range(np.array([[3, 7]], np.uint8)) == PAPER_RANGE
    assert infer_data_range(np.array([[10.5, 200.0]], np.float32)) == PAPER_RANGE


def test_unit_float_images_use_unit_range():
    assert infer_data_range(np.array([[0.1, 0.9]], np.float32)) == (0.0, 1.0)
    # an integer image with values 0/1 is still on the 8-bit scale
    assert infer_data_range(np.array([[0, 1]], np.uint16)) == PAPER_RANGE


def test_other_ranges_use_min_max():
    img = np.array([[100, 4000]], np.uint16)
    assert infer_data_range(img) == (100.0, 4000.0)
    assert infer_data_range(np.array([[-1.0, 0.5]])) == (-1.0, 0.5)


def test_constant_image_gets_non_degenerate_range():
    lo, hi = infer_data_range(np.full((4, 4), 1000.0))
    assert hi > lo


def test_round_trip_through_paper_scale():
    rng = np.random.default_rng(0)
    img = rng.uniform(300, 9000, (8, 8))
    rng_ = infer_data_range(img)
    paper = to_paper_scale(img, rng_)
    assert paper.min() == pytest.approx(0.0, abs=1e-3)
    assert paper.max() == pytest.approx(255.0, abs=1e-3)
    np.testing.assert_allclose(from_paper_scale(paper, rng_), img, rtol=1e-5)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((16, 16, 3)), "RGB"),
        (np.zeros(5), "2D or 3D"),
        (np.array([[np.nan, 1.0]]), "NaN"),
        (np.zeros((0, 4)), "empty"),
        (np.zeros((4, 4), bool), "dtype"),
    ],
)
def test_check_image_rejects_bad_input(image, message):
    with pytest.raises(ValueError, match=message):
        check_image(image, name="layer 'x'")
