"""A pattern the same in every scan line, told apart from noise and from a lattice."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pinned.noise import scanning
from napari_pinned.noise.line_pattern import LINE_PATTERN_BAND, line_interference
from napari_pinned.noise.synthesis import StemRecording, record_stem_image
from napari_pinned.physics.simulate import simulate

SHAPE = 384


def _lattice(rotation: float, pixel_size: float = 0.2, material: str = "SrTiO3") -> np.ndarray:
    return simulate(material, shape=SHAPE, pixel_size=pixel_size, rotation=rotation, seed=1).image


def _recorded(clean: np.ndarray, seed: int, **terms) -> np.ndarray:
    recording = StemRecording(10.0, read_noise=0.5, **terms)
    return record_stem_image(clean, recording, np.random.default_rng(seed))[0]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    "terms",
    [{}, {"afterglow": 2.0, "row_jitter": 0.3}, {"smear": 0.25}, {"resample": (3.0, 0.4, 0.3)}],
    ids=["white", "afterglow+jitter", "smear", "resampled"],
)
def test_noise_and_a_rotated_lattice_hold_no_pattern(seed, terms):
    # Noise alone passes the tests with probability exp(-30) per tone and below 1e-9
    # for a broad pattern: any find here is a false alarm.
    assert line_interference(_recorded(_lattice(23.0), seed, **terms)) is None


@pytest.mark.parametrize("dose", [10.0, 1000.0])
@pytest.mark.parametrize("material", ["SrTiO3", "Si", "MoS2"])
@pytest.mark.parametrize("rotation", [0.0, 45.0])
def test_a_lattice_aligned_with_the_scan_is_not_a_pattern(dose, material, rotation):
    # SrTiO3 at 0.2 Å/px along x: reflections at multiples of 0.051 cycles/px on f_y = 0,
    # five of them beyond the band; at 45° its (1 1) row lies along x.
    clean = _lattice(rotation, material=material)
    noisy = np.random.default_rng(0).poisson(clean / clean.mean() * dose).astype(float)
    assert line_interference(noisy) is None
    assert line_interference(clean) is None  # no noise: nothing to compare with


@pytest.mark.parametrize("dose", [10.0, 100.0])
@pytest.mark.parametrize("rotation", [0.0, 23.0])
def test_a_straight_edge_along_the_lines_is_not_a_pattern(dose, rotation):
    # Crystal on the left, vacuum on the right, a one-pixel step in every line: the same
    # in every line, but in one place (without the halves' check it fired at 10 counts).
    clean = _lattice(rotation, pixel_size=0.1)
    clean = clean * np.where(np.arange(SHAPE) < SHAPE // 2, 1.0, 0.05)[None, :]
    noisy = np.random.default_rng(0).poisson(clean / clean.mean() * dose).astype(float)
    assert line_interference(noisy) is None


@pytest.mark.parametrize("seed", range(3))
def test_tones_the_same_in_every_line_are_found_where_they_are(seed):
    clean = _lattice(23.0)
    noise_rms = np.sqrt(10.0 + 0.25)
    noisy = _recorded(clean, seed, line_pattern=0.15 * noise_rms)
    found = line_interference(noisy)
    assert found is not None
    # The strongest tone, where the line mean has it.
    line = noisy.mean(axis=0) - noisy.mean()
    power = np.abs(np.fft.rfft(line * np.hanning(SHAPE))) ** 2
    fx = np.fft.rfftfreq(SHAPE)
    strongest = fx[np.argmax(np.where(fx >= LINE_PATTERN_BAND, power, 0.0))]
    assert found.covers(0.0, strongest)
    assert found.covers(2.0 / SHAPE, strongest)  # the strip about f_y = 0
    assert not found.covers(0.05, strongest)  # not beyond it
    assert not found.covers(0.0, 0.2)  # not below the band
    mask = found.rfft2_mask()
    assert mask.shape == (SHAPE, SHAPE // 2 + 1)
    assert mask[0, round(strongest * SHAPE)] and not mask[SHAPE // 4].any()


def test_a_broad_pattern_drifting_slowly_between_lines_is_found():
    # Column offsets beyond the band (a converter's fixed pattern), their amplitude
    # drifting over the frame: power within a few bins of f_y = 0 at every frequency.
    rng = np.random.default_rng(4)
    noisy = _recorded(_lattice(23.0), 4)
    offsets = np.fft.irfft(
        np.fft.rfft(rng.standard_normal(SHAPE)) * (np.fft.rfftfreq(SHAPE) >= 0.3), n=SHAPE
    )
    offsets *= 0.3 * np.sqrt(10.25) / np.sqrt(np.mean(offsets**2))
    drift = 1.0 + 0.3 * np.sin(np.linspace(0.0, 2.0 * np.pi, SHAPE))[:, None]
    found = line_interference(noisy + drift * offsets[None, :])
    assert found is not None
    assert found.covers(np.zeros(3), np.array([0.31, 0.4, 0.49])).all()


def test_pattern_frequencies_of_the_forward_model_lie_in_the_band():
    # The forward model's tones (noise.scanning) are the kind this finds.
    assert scanning.LINE_PATTERN_FREQUENCIES[0] >= LINE_PATTERN_BAND


def test_small_frames_and_bad_shapes():
    assert line_interference(np.ones((32, 512))) is None
    with pytest.raises(ValueError, match="2D"):
        line_interference(np.ones((2, 64, 64)))
