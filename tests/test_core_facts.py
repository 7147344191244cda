"""The job protocol (napari_pinned._util.jobs) and the facts kept once in the core."""

from __future__ import annotations

import pytest

from napari_pinned._util.jobs import run_job
from napari_pinned._util.units import angstrom_per
from napari_pinned.physics.zones import parse_zone
from napari_pinned.training.data import check_pairs


def _job(n: int):
    for i in range(n):
        yield i + 1
    return "result"


def test_run_job_hands_every_record_and_returns_the_result():
    seen: list[int] = []
    assert run_job(_job(3), seen.append) == "result"
    assert seen == [1, 2, 3]
    assert run_job(_job(0)) == "result"


def test_one_unit_table():
    assert angstrom_per("nm") == angstrom_per("nanometer") == 10.0
    assert angstrom_per("µm") == angstrom_per("μm") == angstrom_per("um") == 1e4
    assert angstrom_per(" Å ") == 1.0 and angstrom_per("pm") == 0.01
    assert angstrom_per("m") == 1e10
    assert angstrom_per("pixel") is None and angstrom_per("") is None


def test_parse_zone_lives_in_the_core():
    assert parse_zone("[11-20]") == (1, 1, -2, 0)
    assert parse_zone("1, 1, 0") == (1, 1, 0)
    with pytest.raises(ValueError):
        parse_zone("1 x 0")


def test_pairing_rule_names_the_pair():
    check_pairs([(8, 8), (4, 4)], [(8, 8), (4, 4)])
    with pytest.raises(ValueError, match="2 noisy images for 1 clean images"):
        check_pairs([(8, 8)], [(8, 8), (8, 8)])
    with pytest.raises(ValueError, match=r"a\.tif has shape .* partner b\.tif .* must match"):
        check_pairs([(8, 8)], [(8, 9)], ["a.tif"], ["b.tif"])


def test_one_ground_truth_marker_style():
    from napari_pinned._sample_data import _columns_layer
    from napari_pinned.physics.simulate import COLUMN_MARKER_SIZE, column_points, simulate

    result = simulate("SrTiO3", shape=64, pixel_size=0.1, seed=0)
    positions, kwargs = column_points(result, "cols")
    assert positions.shape == (len(result.columns.weights), 2)
    assert kwargs["size"] == pytest.approx(COLUMN_MARKER_SIZE / 0.1)
    assert kwargs["units"] == ("Å", "Å") and kwargs["scale"] == (0.1, 0.1)
    _, sample, kind = _columns_layer(result)
    assert kind == "points" and sample["size"] == kwargs["size"] and not sample["visible"]
