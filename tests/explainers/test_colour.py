"""Colour maps and the colour-vision-deficiency simulation (explainers.colour), computed by hand."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from explainers import colour, render
from studyapp.lib.study_config import HEATMAP_COLORMAPS


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Relative luminance (WCAG / sRGB), the lightness order a map should keep."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return linear @ np.array([0.2126, 0.7152, 0.0722])


def test_the_study_configuration_offers_the_maps_render_draws():
    assert HEATMAP_COLORMAPS == colour.COLORMAPS == render.COLORMAPS


def test_machado_matrices_keep_greys_and_name_their_source():
    for kind in colour.CVD_KINDS:
        grey = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]])
        np.testing.assert_allclose(colour.simulate_cvd(grey, kind), grey, atol=2e-5)
    assert "Machado" in colour.__doc__ and "2009" in colour.__doc__
    # Deuteranopia: pure red and pure green become nearly the same hue (yellowish), blue stays blue.
    red, green = colour.simulate_cvd(np.array([[1.0, 0, 0], [0, 1.0, 0]]), "deuteranopia")
    assert red[0] > red[2] and green[0] > green[2] and abs(red[0] - red[1]) < 0.25
    with pytest.raises(ValueError, match="expected one of"):
        colour.simulate_cvd(np.zeros((1, 3)), "achromatopsia")


@pytest.mark.parametrize("kind", [None, *colour.CVD_KINDS])
def test_cividis_stays_ordered_in_lightness_for_every_vision_jet_does_not(kind):
    x = np.linspace(0.0, 1.0, 64)
    for name, ordered in (("cividis", True), ("viridis", True), ("jet", False)):
        rgb = colour.colormap_rgb(x, name)
        seen = rgb if kind is None else colour.simulate_cvd(rgb, kind)
        increasing = bool(np.all(np.diff(luminance(seen)) > 0))
        assert increasing == ordered, (name, kind)


def test_jet_is_unchanged_and_a_study_map_is_drawn_in_the_overlay():
    np.testing.assert_allclose(colour.colormap_rgb(np.array([0.0, 1.0]), "jet"), [[0, 0, 0.5], [0.5, 0, 0]])
    image = torch.zeros(1, 8, 8)
    heat = torch.zeros(8, 8)
    heat[:, 4:] = 1.0
    png = render.heatmap_overlay_png(image, heat, scale=1, alpha=1.0, colormap="cividis")
    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float) / 255
    np.testing.assert_allclose(a[0, 0], colour.colormap_rgb(np.array(0.0), "cividis"), atol=1 / 255)
    np.testing.assert_allclose(a[0, 7], colour.colormap_rgb(np.array(1.0), "cividis"), atol=1 / 255)
    assert render.heatmap_overlay_png(image, heat, scale=1) != png  # the default is still jet
    with pytest.raises(ValueError, match="unknown colour map"):
        colour.colormap_rgb(np.zeros(2), "rainbow")
