"""Colour morphs as the study shows them: a lossless animated WebP of the unquantised 8-bit frames
(``render.morph_webp(frames, palette=None)``), decoded back exactly; a GIF refuses to be written
without a palette rather than let Pillow pick one."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from explainers import render


@pytest.fixture
def noisy_colour_morph() -> torch.Tensor:
    """12 frames of 3x20x20 noise, values a little outside [0, 1] (CDeepEx frames are unclamped)."""
    g = torch.Generator().manual_seed(3)
    return torch.rand(12, 3, 20, 20, generator=g) * 1.2 - 0.1


def test_the_unquantised_webp_decodes_to_the_8bit_frames_exactly(noisy_colour_morph):
    webp = render.morph_webp(noisy_colour_morph, scale=3, palette=None)
    decoded = render.decode_animation_frames(webp, scale=3, channels=3)
    expected = np.round(np.clip(noisy_colour_morph.double().numpy(), 0, 1) * 255) / 255
    assert decoded.shape == (12, 3, 20, 20)
    assert np.abs(decoded - expected).max() < 1e-6  # every pixel of every frame, as 8 bits
    colours = np.unique(decoded.transpose(0, 2, 3, 1).reshape(-1, 3), axis=0)
    assert len(colours) > 256  # no palette in between
    with Image.open(io.BytesIO(webp)) as img:
        assert img.format == "WEBP" and img.n_frames == 12
        durations = []
        for k in (0, 1, 11):
            img.seek(k)
            img.load()  # Pillow reads a WebP frame's duration when it decodes the frame
            durations.append(img.info["duration"])
        assert durations == [700, 120, 1200]  # the first and last frames held, as in the GIF


def test_a_palette_makes_the_colour_webp_the_gifs_frames_and_loses_colours(noisy_colour_morph):
    exact = render.decode_animation_frames(render.morph_webp(noisy_colour_morph, scale=2, palette=None), scale=2)
    on_palette = render.decode_animation_frames(render.morph_webp(noisy_colour_morph, scale=2), scale=2)
    from_gif = render.decode_animation_frames(render.morph_gif(noisy_colour_morph, scale=2), scale=2)
    assert np.array_equal(on_palette, from_gif)
    assert np.abs(on_palette - exact).max() > 0  # 256 colours cannot hold this morph


def test_grey_frames_are_the_same_with_or_without_a_palette():
    g = torch.Generator().manual_seed(4)
    grey = torch.rand(5, 1, 8, 8, generator=g)
    assert render.morph_webp(grey, scale=2, palette=None) == render.morph_webp(grey, scale=2)


def test_a_colour_gif_without_a_palette_is_refused(noisy_colour_morph):
    with pytest.raises(ValueError, match="256 colours"):
        render.morph_gif(noisy_colour_morph, palette=None)  # type: ignore[arg-type]
