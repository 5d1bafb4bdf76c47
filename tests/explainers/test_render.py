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
