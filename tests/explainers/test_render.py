"""Rendering: formats, sizes, nearest-neighbour scaling, colours, looping animations."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from explainers import render


def open_png(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(data))


@pytest.fixture
def digit() -> torch.Tensor:
    x = torch.zeros(1, 28, 28)
    x[0, 6:22, 12:16] = 1.0  # a vertical white bar
    return x


def test_image_png_is_nearest_upscaled_and_crisp(digit):
    img = open_png(render.image_png(digit))
    assert img.size == (224, 224) and img.mode == "L"
    a = np.asarray(img)
    assert set(np.unique(a).tolist()) == {0, 255}  # no interpolated greys
    assert (a[6 * 8 : 22 * 8, 12 * 8 : 16 * 8] == 255).all()
    assert open_png(render.image_png(digit, scale=1)).size == (28, 28)


def test_values_outside_unit_range_are_clipped_not_wrapped():
    x = torch.tensor([[[-0.5, 1.7]]])
    a = np.asarray(open_png(render.image_png(x, scale=1)))
    assert a.tolist() == [[0, 255]]


def test_difference_png_red_adds_blue_removes(digit):
    diff = torch.zeros(1, 28, 28)
    diff[0, 2, 2] = 0.8  # add ink here
    diff[0, 10, 13] = -0.8  # remove ink here
    a = np.asarray(open_png(render.difference_png(digit, diff, scale=1)).convert("RGB")).astype(int)
    r, g, b = a[2, 2]
    assert r > 200 and r > g + 100 and r > b + 100
    r, g, b = a[10, 13]
    assert b > 200 and b > r + 100
    r, g, b = a[20, 2]  # untouched background stays black, untouched stroke stays grey
    assert r == g == b == 0
    r, g, b = a[20, 13]
    assert r == g == b > 100


def test_heatmap_overlay_uses_jet_over_grey(digit):
    heat = torch.zeros(28, 28)
    heat[:, :14] = 1.0
    img = open_png(render.heatmap_overlay_png(digit, heat, scale=2)).convert("RGB")
    assert img.size == (56, 56)
    a = np.asarray(img).astype(int)
    hot, cold = a[0, 0], a[0, 55]  # hot = red end of jet, cold = blue end
    assert hot[0] > hot[2] and cold[2] > cold[0]
    np.testing.assert_allclose(render.jet(np.array([0.0, 1.0])), [[0, 0, 0.5], [0.5, 0, 0]])


def test_strip_has_one_tile_per_frame(digit):
    frames = torch.stack([digit * k / 4 for k in range(5)])  # (5, 1, 28, 28)
    img = open_png(render.frames_strip_png(frames, scale=2, gap=1))
    assert img.size == ((5 * 28 + 4) * 2, 56)


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_morphs_are_looping_animations(digit, fmt):
    frames = torch.stack([digit * k / 5 for k in range(6)])
    data = (render.morph_gif if fmt == "gif" else render.morph_webp)(frames, scale=4)
    img = Image.open(io.BytesIO(data))
    assert img.format == fmt.upper() and img.is_animated
    assert img.info.get("loop") == 0
    assert img.size == (112, 112)
    tiles = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(img)]
    assert len(tiles) == 6
    assert tiles[0].max() == 0 and tiles[-1].max() == 255  # first frame = first input frame


def test_bad_shapes_are_rejected(digit):
    with pytest.raises(ValueError, match="shape"):
        render.image_png(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match="does not match"):
        render.difference_png(digit, torch.zeros(27, 28))
    with pytest.raises(ValueError, match="empty"):
        render.morph_gif([])
    with pytest.raises(ValueError, match="NaN"):
        render.image_png(torch.full((1, 28, 28), float("nan")))
    with pytest.raises(ValueError, match="scale"):
        render.image_png(digit, scale=0)


def test_grey_output_is_byte_identical_to_before_colour_existed():
    """sha256 prefixes of the bytes the grey-only renderer wrote (commit 4a5531f), same input."""
    import hashlib

    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 28, 28, generator=g)
    frames = torch.stack([base * (1 - k / 7) + k / 7 * torch.rand(1, 28, 28, generator=g) for k in range(8)])
    frames[3] += 0.2  # outside [0, 1]: clipped

    def h(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()[:16]

    assert h(render.morph_gif(frames)) == "42adec77260c97a2"
    assert h(render.morph_webp(frames)) == "fe92eeab83943db6"
    assert h(render.frames_strip_png(frames)) == "95bbc2349e28f3fc"
    assert h(render.difference_png(frames[0], frames[-1] - frames[0])) == "9de8a054131717f9"
    assert h(render.image_png(frames[0])) == "7db6b1834e78a2ea"
    decoded = render.decode_animation_frames(render.morph_gif(frames))
    assert decoded.shape == (8, 1, 28, 28)  # grey morphs decode grey


@pytest.fixture
def colour_morph() -> torch.Tensor:
    """12 frames (T, 3, 32, 32): a coloured noisy image fading into another, one frame past [0, 1]."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 32, 32, generator=g), torch.rand(3, 32, 32, generator=g)
    frames = torch.stack([a * (1 - k / 11) + b * k / 11 for k in range(12)])
    frames[5] += 0.3
    return frames


def test_colour_gif_and_webp_decode_to_the_same_pixels_from_one_shared_palette(colour_morph):
    gif, webp = render.morph_gif(colour_morph, scale=3), render.morph_webp(colour_morph, scale=3)
    from_gif = render.decode_animation_frames(gif, scale=3)
    from_webp = render.decode_animation_frames(webp, scale=3)
    assert from_gif.shape == (12, 3, 32, 32)  # colour morphs decode in colour
    assert np.array_equal(from_gif, from_webp)
    assert np.array_equal(from_gif, render.quantise_frames(colour_morph))  # what the gate may compute without encoding
    shown = np.concatenate([f.reshape(3, -1).T for f in from_gif])
    assert len(np.unique(shown, axis=0)) <= 256  # one palette over all frames, not 256 per frame
    exact = np.round(colour_morph.clamp(0, 1).numpy() * 255) / 255
    assert np.abs(from_gif - exact).mean() < 16 / 255  # near the 8-bit frames even on uniform random colours
    with Image.open(io.BytesIO(webp)) as img:
        assert img.format == "WEBP" and img.is_animated and img.info.get("loop") == 0


@pytest.mark.parametrize(("palette", "dither"), render.COLOUR_OPTIONS)
def test_every_palette_option_shows_the_same_pixels_in_gif_and_webp(colour_morph, palette, dither):
    how = {"palette": palette, "dither": dither}
    from_gif = render.decode_animation_frames(render.morph_gif(colour_morph, scale=2, **how), scale=2)
    from_webp = render.decode_animation_frames(render.morph_webp(colour_morph, scale=2, **how), scale=2)
    assert np.array_equal(from_gif, from_webp)
    assert np.array_equal(from_gif, render.quantise_frames(colour_morph, **how))
    exact = np.round(colour_morph.clamp(0, 1).numpy() * 255) / 255
    error = np.abs(from_gif - exact).mean(axis=(1, 2, 3))
    if palette == "last" and not dither:  # the last frame's colours are kept best
        plain = np.abs(render.quantise_frames(colour_morph) - exact).mean(axis=(1, 2, 3))
        assert error[-1] < plain[-1]


def test_colour_strip_difference_and_image_pngs(colour_morph):
    strip = open_png(render.frames_strip_png(colour_morph, scale=2, gap=1))
    assert strip.size == ((12 * 32 + 11) * 2, 64) and strip.mode == "RGB"
    brighter = torch.zeros(3, 32, 32)
    brighter[:, 2, 2] = 0.8
    brighter[:, 5, 5] = -0.8
    a = np.asarray(open_png(render.difference_png(colour_morph[0], brighter, scale=1)).convert("RGB")).astype(int)
    assert a[2, 2, 0] > 200 and a[5, 5, 2] > 200  # lighter = red (add), darker = blue (remove)
    img = open_png(render.image_png(colour_morph[0], scale=7))
    assert img.size == (224, 224) and img.mode == "RGB"
