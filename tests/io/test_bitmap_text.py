"""The figure font: every glyph is distinct, text is laid out glyph by glyph, and a
character without a glyph is a clear error."""

from __future__ import annotations

import string

import numpy as np
import pytest

from napari_pinned.io.bitmap_text import GLYPH_HEIGHT, GLYPH_WIDTH, render_text, text_width


def test_every_letter_and_digit_has_its_own_glyph():
    glyphs = {c: render_text(c) for c in string.ascii_uppercase + string.digits}
    assert all(g.shape == (GLYPH_HEIGHT, GLYPH_WIDTH) and g.any() for g in glyphs.values())
    assert len({g.tobytes() for g in glyphs.values()}) == len(glyphs)


def test_text_is_its_glyphs_side_by_side_scaled_by_whole_pixels():
    text = render_text("Ab 1", scale=3)
    assert text.shape == (7 * 3, text_width("Ab 1", 3)) == (21, (4 * 6 - 1) * 3)
    step = (GLYPH_WIDTH + 1) * 3
    for i, char in enumerate("AB 1"):
        glyph = np.kron(render_text(char), np.ones((3, 3), bool)).astype(bool)
        np.testing.assert_array_equal(text[:, i * step : i * step + GLYPH_WIDTH * 3], glyph)
        assert not text[:, i * step + GLYPH_WIDTH * 3 : (i + 1) * step].any()  # the gap
    assert render_text("").shape == (7, 0)


@pytest.mark.parametrize(("text", "scale"), [("µm", 1), ("A", 0)])
def test_an_unknown_character_or_a_bad_scale_is_refused(text, scale):
    with pytest.raises(ValueError, match=r"µ|scale"):
        render_text(text, scale)
