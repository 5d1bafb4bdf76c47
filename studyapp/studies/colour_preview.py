"""The admin's colour-map preview: a study's heatmaps as seen with colour-vision deficiency.

For the study's colour map (``config.heatmap_colormap``) and, beside it, cividis when the study
uses another: the scale (a legend that reads low to high in words and tick marks, not colour
alone) and one heatmap, each as drawn and as simulated for deuteranopia, protanopia and
tritanopia (Machado, Oliveira & Fernandes 2009; :func:`explainers.colour.simulate_cvd`). The
study's heatmap is one of its own valid heatmap assets, the PNG participants get, when it has one
in the study's map; otherwise (and for the comparison map) a drawn stand-in. Reads only; numpy
and Pillow, no torch.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from explainers.colour import CVD_KINDS, colormap_rgb, simulate_cvd
from studyapp.pipeline.models import ExplanationAsset
from studyapp.pipeline.storage import media_path
from studyapp.studies.models import Study

#: The heatmap roles of the assets (Study A overlay, Study B 1-Heatmap, XNN's first x-feature).
_ROLES = ("overlay", "heatmap", "x0")
VISIONS = ("as drawn", *CVD_KINDS)


def _png_uri(rgb: np.ndarray, scale: int = 1) -> str:
    img = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _stand_in(size: int = 64) -> np.ndarray:
    """A smooth blob of relevance (two bumps), values in [0, 1]."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    h = np.exp(-((x - 0.35) ** 2 + (y - 0.4) ** 2) / 0.02) + 0.6 * np.exp(-((x - 0.7) ** 2 + (y - 0.7) ** 2) / 0.01)
    return h / h.max()


def _asset_image(study: Study, colormap: str) -> tuple[np.ndarray | None, str]:
    """One of the study's heatmap assets drawn in ``colormap`` (RGB in [0, 1]), as participants get it."""
    assets = ExplanationAsset.objects.filter(stimulus__study=study, valid=True, params__colormap=colormap).order_by("pk")
    for asset in assets[:50]:
        role = next((r for r in _ROLES if r in (asset.files or {})), None)
        if role is None:
            continue
        try:
            with Image.open(media_path(asset.files[role])) as img:
                rgb = np.asarray(img.convert("RGB"), float) / 255.0
        except OSError:
            continue
        return rgb, f"the study's asset {asset.pk} ({asset.get_method_display()}), as participants get it"
    return None, "a drawn stand-in (the study has no heatmap asset in this map yet)"


def colour_preview(study: Study) -> dict:
    """``{"maps": [{"name", "chosen", "source", "rows": [{"vision", "scale", "heatmap"}]}]}`` (data URIs)."""
    chosen = study.parsed_config.heatmap_colormap
    names = [chosen] + (["cividis"] if chosen != "cividis" else [])
    asset, source = _asset_image(study, chosen)
    gradient = np.repeat(np.linspace(0.0, 1.0, 256)[None, :], 24, axis=0)
    maps = []
    for name in names:
        drawn_map = asset if (asset is not None and name == chosen) else colormap_rgb(_stand_in(), name)
        drawn_scale = colormap_rgb(gradient, name)
        scale = max(1, round(192 / max(drawn_map.shape[:2])))
        rows = []
        for vision in VISIONS:
            if vision == "as drawn":
                s, m = drawn_scale, drawn_map
            else:
                s, m = simulate_cvd(drawn_scale, vision), simulate_cvd(drawn_map, vision)
            rows.append({"vision": vision, "scale": _png_uri(s), "heatmap": _png_uri(m, scale)})
        maps.append({"name": name, "chosen": name == chosen, "rows": rows,
                     "source": source if name == chosen else "a drawn stand-in"})
    return {"maps": maps}
