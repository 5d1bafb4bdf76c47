"""Colour maps for heatmaps and the simulation of colour-vision deficiency (numpy only).

:func:`colormap_rgb` maps values in [0, 1] to RGB through jet (the published figures) or one of
matplotlib's perceptually ordered maps (:data:`COLORMAPS`); :func:`simulate_cvd` shows an sRGB
image as a person with deuteranopia, protanopia or tritanopia sees it, by the model of Machado,
Oliveira & Fernandes (2009). :mod:`explainers.render` draws heatmaps with them; the admin's
colour-map preview uses them without importing torch.

Example::

    rgb = colormap_rgb(np.linspace(0, 1, 256)[None, :], "cividis")   # (1, 256, 3)
    seen = simulate_cvd(rgb, "deuteranopia")
"""

from __future__ import annotations

import numpy as np

__all__ = ["COLORMAPS", "CVD_KINDS", "colormap_rgb", "jet", "simulate_cvd"]


def jet(x: np.ndarray) -> np.ndarray:
    """The classic jet colormap (as OpenCV's ``COLORMAP_JET``): [0, 1] -> RGB in [0, 1]."""
    x = np.clip(x, 0.0, 1.0)[..., None]
    r = np.clip(1.5 - np.abs(4.0 * x - 3.0), 0, 1)
    g = np.clip(1.5 - np.abs(4.0 * x - 2.0), 0, 1)
    b = np.clip(1.5 - np.abs(4.0 * x - 1.0), 0, 1)
    return np.concatenate([r, g, b], axis=-1)



#: The colour maps a heatmap may be drawn in: jet (not perceptually ordered, hard to read with
#: deuteranopia or protanopia; kept because the published studies showed it) and matplotlib's
#: perceptually uniform sequential maps (cividis is also designed to look nearly the same with
#: red-green colour-vision deficiency: Nunez, Anderton & Renslow 2018, PLoS ONE 13(7)).
COLORMAPS = ("cividis", "viridis", "magma", "inferno", "plasma", "jet")


def colormap_rgb(x: np.ndarray, name: str = "jet") -> np.ndarray:
    """Values in [0, 1] -> RGB in [0, 1] (shape ``x.shape + (3,)``) through the colour map ``name``.

    ``"jet"`` is :func:`jet` (byte-identical to the assets made before colour maps were a
    choice); the others are matplotlib's 256-entry tables, looked up at the nearest entry (as
    matplotlib itself does), imported only when asked for.
    """
    if name not in COLORMAPS:
        raise ValueError(f"unknown colour map {name!r}; expected one of {', '.join(COLORMAPS)}")
    if name == "jet":
        return jet(x)
    from matplotlib import colormaps  # the colour tables only; pyplot is never imported

    table = np.asarray(colormaps[name].resampled(256)(np.linspace(0.0, 1.0, 256)))[:, :3]
    index = np.clip(np.round(np.clip(x, 0.0, 1.0) * 255.0), 0, 255).astype(int)
    return table[index]


#: Machado, Oliveira & Fernandes (2009), "A Physiologically-based Model for Simulation of Color
#: Vision Deficiency", IEEE Transactions on Visualization and Computer Graphics 15(6):1291-1298,
#: the matrices of severity 1.0 (dichromacy) from the authors' published table. They act on
#: linear RGB; each row sums to 1, so greys are unchanged.
_MACHADO_2009 = {
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]]),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]]),
}
CVD_KINDS = tuple(_MACHADO_2009)


def _to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def simulate_cvd(rgb: np.ndarray, kind: str) -> np.ndarray:
    """``(..., 3)`` sRGB in [0, 1] as seen with ``kind`` (deuteranopia, protanopia, tritanopia):
    decoded to linear RGB, multiplied by the Machado et al. (2009) matrix, encoded again."""
    if kind not in _MACHADO_2009:
        raise ValueError(f"unknown colour-vision deficiency {kind!r}; expected one of {', '.join(CVD_KINDS)}")
    a = np.asarray(rgb, float)
    if a.shape[-1] != 3:
        raise ValueError(f"rgb must end in 3 channels, got shape {a.shape}")
    return _to_srgb(_to_linear(np.clip(a, 0.0, 1.0)) @ _MACHADO_2009[kind].T)
