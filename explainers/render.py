"""Rendering at the edge: tensors in, PNG / GIF / WebP bytes out (Pillow only).

Everything else in :mod:`explainers` returns tensors; this is the only module that makes
bytes. Images are grey ``(1, H, W)`` (or ``(H, W)``) or colour ``(3, H, W)`` floats in [0, 1];
values outside [0, 1] (CDeepEx frames carry the residual unclamped) are clipped here. Every
function takes ``scale``: nearest-neighbour upscaling so a 28x28 digit stays crisp (default 8,
i.e. 224x224).

Colour conventions follow the CDeepEx figures: the input is shown in grey, **red = add**,
**blue = remove** (:func:`difference_png`); heatmaps use a colour map blended over the image
(:func:`heatmap_overlay_png`): ``"jet"`` (the published figures; the default here) or one of
matplotlib's perceptually ordered maps (:data:`COLORMAPS`: cividis, viridis, ...), which a study
chooses (``config.heatmap_colormap``). :func:`simulate_cvd` shows an image as seen with a
colour-vision deficiency (Machado et al. 2009), for the admin's preview.

Colour morphs (frames ``(T, 3, H, W)``): the study shows them as a lossless animated WebP
written from the unquantised 8-bit frames (``morph_webp(frames, palette=None)``), which decodes
to exactly the frames CDeepEx's 8-bit stopping test judged. A GIF holds at most 256 colours, so a
colour GIF is quantised (Pillow's median cut: a palette per frame, or one shared by all frames,
over all frames alike or with the last frame weighted, with or without Floyd-Steinberg error
diffusion: :data:`COLOUR_OPTIONS`; :func:`quantise_frames` gives its frames without encoding),
and those 256 colours can move a morph's last frame off the decision boundary; ``morph_webp``
with a ``palette`` writes the same quantised frames as the GIF. Grey morphs need no palette:
GIF and WebP are both exact and written as before.

Example::

    gif = morph_gif(result.frames[0])                      # bytes, loops forever
    png = difference_png(images[0], result.difference[0])
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageSequence
from torch import Tensor

# The colour maps and the colour-vision-deficiency simulation are pure numpy (the web side's admin
# preview uses them without torch); re-exported here, where heatmaps are drawn.
from explainers.colour import COLORMAPS, CVD_KINDS, colormap_rgb, jet, simulate_cvd

__all__ = [
    "difference_png",
    "difference_rgb",
    "frames_strip_png",
    "gray_rgb",
    "heatmap_overlay_png",
    "heatmap_rgb",
    "decode_animation_frames",
    "image_png",
    "COLORMAPS",
    "colormap_rgb",
    "CVD_KINDS",
    "jet",
    "simulate_cvd",
    "morph_gif",
    "morph_webp",
    "COLOUR_OPTIONS",
    "quantise_frames",
    "to_pil",
]


def _array(x: Tensor | np.ndarray, name: str) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, float)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"{name} must be (1, H, W) or (H, W), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _colour(x: Tensor | np.ndarray, name: str) -> np.ndarray:
    """``(3, H, W)`` -> ``(H, W, 3)`` floats (unclipped), finite."""
    a = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, float)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a.transpose(1, 2, 0)


def _is_colour(frames: Tensor | np.ndarray | Sequence[Tensor]) -> bool:
    if len(frames) == 0:
        return False
    first = frames[0]
    return first.ndim == 3 and first.shape[0] == 3


def _frames(frames: Tensor | np.ndarray | Sequence[Tensor]) -> list[np.ndarray]:
    """Grey frames as ``(H, W)`` arrays, colour frames ``(T, 3, H, W)`` as ``(H, W, 3)`` arrays."""
    if isinstance(frames, Tensor | np.ndarray):
        if frames.ndim not in (3, 4):
            raise ValueError(
                f"frames must be (T, 1, H, W), (T, 3, H, W) or (T, H, W), got {tuple(frames.shape)}"
            )
        items = list(frames)
    else:
        items = list(frames)
    if not items:
        raise ValueError("frames is empty")
    if _is_colour(items):
        return [_colour(f, "frame") for f in items]
    return [_array(f, "frame") for f in items]


def _u8(a: np.ndarray) -> np.ndarray:
    return np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_pil(rgb_or_grey: np.ndarray, scale: int = 8) -> Image.Image:
    """``(H, W)`` or ``(H, W, 3)`` floats in [0, 1] -> Pillow image, nearest-upscaled."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    img = Image.fromarray(_u8(rgb_or_grey))
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    return img


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def gray_rgb(image: Tensor | np.ndarray) -> np.ndarray:
    """``(1, H, W)`` grey or ``(3, H, W)`` colour in [0, 1] -> ``(H, W, 3)`` RGB floats."""
    if image.ndim == 3 and image.shape[0] == 3:
        a = image.detach().cpu().double().numpy() if isinstance(image, Tensor) else np.asarray(image, float)
        if not np.isfinite(a).all():
            raise ValueError("image contains NaN or infinite values")
        return np.clip(a.transpose(1, 2, 0), 0, 1)
    a = np.clip(_array(image, "image"), 0, 1)
    return np.repeat(a[:, :, None], 3, axis=2)


def heatmap_rgb(
    image: Tensor | np.ndarray, heatmap: Tensor | np.ndarray, alpha: float = 0.5, *, colormap: str = "jet"
) -> np.ndarray:
    """Heatmap blended over the image (grey or colour): ``(1 - alpha) * image + alpha * cmap(map)``."""
    grey = gray_rgb(image)
    h = _array(heatmap, "heatmap")
    if h.shape != grey.shape[:2]:
        raise ValueError(f"heatmap shape {h.shape} does not match image shape {grey.shape[:2]}")
    return (1.0 - alpha) * grey + alpha * colormap_rgb(h, colormap)


def difference_rgb(
    image: Tensor | np.ndarray,
    difference: Tensor | np.ndarray,
    *,
    normalize: bool = True,
    dim: float = 0.6,
) -> np.ndarray:
    """Grey input with red where ``difference > 0`` (add) and blue where ``< 0`` (remove).

    A colour image is shown as it is (dimmed), and a colour difference ``(3, H, W)`` is reduced
    to its mean over the channels, the change of brightness (red = lighter, blue = darker; not
    in the dissertation, whose images are grey). The colour strength is ``|d| / max|d|`` (``normalize=True``) or ``|d|`` clipped to 1; the
    grey image is dimmed to ``dim`` so that red and blue stand out over white strokes.
    """
    grey = gray_rgb(image) * dim
    if difference.ndim == 3 and difference.shape[0] == 3:
        difference = _colour(difference, "difference").mean(axis=2)
    d = _array(difference, "difference")
    if d.shape != grey.shape[:2]:
        raise ValueError(f"difference shape {d.shape} does not match image shape {grey.shape[:2]}")
    peak = float(np.abs(d).max())
    a = np.abs(d) / peak if (normalize and peak > 0) else np.clip(np.abs(d), 0, 1)
    colour = np.where((d > 0)[..., None], np.array([1.0, 0.1, 0.1]), np.array([0.15, 0.35, 1.0]))
    return (1.0 - a[..., None]) * grey + a[..., None] * colour


def image_png(image: Tensor | np.ndarray, *, scale: int = 8) -> bytes:
    """A grey ``(1, H, W)`` or colour ``(3, H, W)`` image in [0, 1] as PNG."""
    if image.ndim == 3 and image.shape[0] == 3:
        return _png(to_pil(_colour(image, "image"), scale))
    return _png(to_pil(_array(image, "image"), scale))


def heatmap_overlay_png(
    image: Tensor | np.ndarray, heatmap: Tensor | np.ndarray, *, scale: int = 8, alpha: float = 0.5, colormap: str = "jet"
) -> bytes:
    """Grad-CAM style overlay: ``heatmap (H, W)`` in [0, 1] in ``colormap`` over the (grey or colour) image."""
    return _png(to_pil(heatmap_rgb(image, heatmap, alpha, colormap=colormap), scale))


def difference_png(
    image: Tensor | np.ndarray,
    difference: Tensor | np.ndarray,
    *,
    scale: int = 8,
    normalize: bool = True,
) -> bytes:
    """CDeepEx explanation: ``difference = final - input``; red = add, blue = remove."""
    return _png(to_pil(difference_rgb(image, difference, normalize=normalize), scale))


def frames_strip_png(
    frames: Tensor | np.ndarray | Sequence[Tensor], *, scale: int = 8, gap: int = 1
) -> bytes:
    """Frames ``(T, 1, H, W)`` or ``(T, 3, H, W)`` side by side (left to right) with ``gap``
    grey pixels between."""
    arrays = _frames(frames)
    h, w = arrays[0].shape[:2]
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError("all frames must have the same shape")
    strip = np.full((h, len(arrays) * (w + gap) - gap, *arrays[0].shape[2:]), 0.35)
    for k, a in enumerate(arrays):
        strip[:, k * (w + gap) : k * (w + gap) + w] = a
    return _png(to_pil(strip, scale))


def _animation(
    frames: Tensor | np.ndarray | Sequence[Tensor],
    fmt: str,
    *,
    scale: int,
    duration_ms: int,
    hold_first_ms: int,
    hold_last_ms: int,
    palette: str | None = "shared",
    dither: bool = False,
    **kwargs: object,
) -> bytes:
    if _is_colour(frames) and palette is not None:
        images = _colour_frames(frames, scale, palette, dither)
    else:  # grey, or colour written as 8-bit RGB without a palette (lossless WebP only)
        if fmt == "GIF" and _is_colour(frames):
            raise ValueError("a GIF holds at most 256 colours: colour frames need a palette (see COLOUR_OPTIONS)")
        images = [to_pil(a, scale) for a in _frames(frames)]
    durations = [duration_ms] * len(images)
    durations[0] = max(duration_ms, hold_first_ms)
    durations[-1] = max(duration_ms, hold_last_ms)
    buf = io.BytesIO()
    images[0].save(
        buf,
        format=fmt,
        save_all=True,
        append_images=images[1:],
        duration=durations if len(images) > 1 else durations[0],
        loop=0,
        **kwargs,
    )
    return buf.getvalue()


#: The ways a colour morph's GIF may be put on 256 colours (the study shows colour morphs as
#: lossless WebP without a palette, ``morph_webp(palette=None)``): the palette by median cut over all frames alike;
#: over all frames with the last frame weighted as much as all the others together (refined by 3
#: k-means passes), so the frame that ends on the decision boundary keeps its colours best; and
#: both with Floyd-Steinberg error diffusion, which keeps each region's mean colour at the price
#: of a fine, frame-varying grain.
#: First of all, ``"frame"``: each frame on a 256-colour palette of its own (a GIF's local colour
#: table), which keeps every frame, the last one on the boundary included, closest to the morph
#: the optimiser made.
COLOUR_OPTIONS: tuple[tuple[str, bool], ...] = (
    ("frame", False), ("shared", False), ("last", False), ("shared", True), ("last", True),
)


def _quantised(
    frames: Tensor | np.ndarray | Sequence[Tensor], palette: str = "shared", dither: bool = False
) -> list[Image.Image]:
    """Colour frames as palette images at the model's size: each on its own palette (``"frame"``)
    or all on one shared palette."""
    if palette not in ("frame", "shared", "last"):
        raise ValueError(f"palette must be 'frame', 'shared' or 'last', got {palette!r}")
    arrays = [_u8(a) for a in _frames(frames)]
    if palette == "frame":
        mode = Image.Dither.FLOYDSTEINBERG if dither else Image.Dither.NONE
        return [Image.fromarray(a, mode="RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=mode, kmeans=2)
                for a in arrays]
    h, w = arrays[0].shape[:2]
    weighted = arrays + [arrays[-1]] * (len(arrays) - 1) if palette == "last" else arrays
    mosaic = Image.fromarray(np.concatenate(weighted, axis=0), mode="RGB")  # frames stacked vertically
    shared = mosaic.quantize(
        colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE, kmeans=3 if palette == "last" else 0
    )
    if palette == "shared" and not dither:
        return [shared.crop((0, k * h, w, (k + 1) * h)) for k in range(len(arrays))]
    mode = Image.Dither.FLOYDSTEINBERG if dither else Image.Dither.NONE
    return [Image.fromarray(a, mode="RGB").quantize(palette=shared, dither=mode) for a in arrays]


def _colour_frames(
    frames: Tensor | np.ndarray | Sequence[Tensor], scale: int, palette: str = "shared", dither: bool = False
) -> list[Image.Image]:
    """The quantised colour frames as RGB, nearest-upscaled (both GIF and WebP are written from these)."""
    out = []
    for img in _quantised(frames, palette, dither):
        rgb = img.convert("RGB")
        out.append(rgb.resize((rgb.width * scale, rgb.height * scale), Image.Resampling.NEAREST) if scale != 1 else rgb)
    return out


def quantise_frames(
    frames: Tensor | np.ndarray | Sequence[Tensor], *, palette: str = "shared", dither: bool = False
) -> np.ndarray:
    """Colour frames ``(T, 3, H, W)`` as the morph's GIF (and a WebP with a ``palette``) shows them: quantised to one
    shared 256-colour palette (see :data:`COLOUR_OPTIONS`), as float32 ``(T, 3, H, W)``
    multiples of 1/255."""
    return np.stack(
        [np.asarray(img.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) for img in _quantised(frames, palette, dither)]
    ) / np.float32(255.0)


def morph_gif(
    frames: Tensor | np.ndarray | Sequence[Tensor],
    *,
    scale: int = 8,
    duration_ms: int = 120,
    hold_first_ms: int = 700,
    hold_last_ms: int = 1200,
    palette: str = "shared",
    dither: bool = False,
) -> bytes:
    """Looping animated GIF of a morph ``(T, 1, H, W)`` or ``(T, 3, H, W)`` (one shared palette,
    see the module docstring; ``palette`` and ``dither``: :data:`COLOUR_OPTIONS`, ignored for
    grey frames); the first and last frames are held."""
    return _animation(
        frames,
        "GIF",
        scale=scale,
        duration_ms=duration_ms,
        hold_first_ms=hold_first_ms,
        hold_last_ms=hold_last_ms,
        palette=palette,
        dither=dither,
        disposal=1,
    )


def morph_webp(
    frames: Tensor | np.ndarray | Sequence[Tensor],
    *,
    scale: int = 8,
    duration_ms: int = 120,
    hold_first_ms: int = 700,
    hold_last_ms: int = 1200,
    palette: str | None = "shared",
    dither: bool = False,
) -> bytes:
    """Looping animated lossless WebP of a morph ``(T, 1, H, W)`` or ``(T, 3, H, W)``.

    Colour frames: ``palette=None`` writes the unquantised 8-bit frames (what a study shows:
    :func:`decode_animation_frames` gives back exactly ``round(255 * clip(frame, 0, 1)) / 255``);
    a ``palette`` (with ``dither``, :data:`COLOUR_OPTIONS`) writes the same palette-quantised
    frames as :func:`morph_gif`. Grey frames are exact either way.
    """
    return _animation(
        frames,
        "WEBP",
        scale=scale,
        duration_ms=duration_ms,
        hold_first_ms=hold_first_ms,
        hold_last_ms=hold_last_ms,
        palette=palette,
        dither=dither,
        lossless=True,
    )


def decode_animation_frames(data: bytes, *, scale: int = 8, channels: int | None = None) -> np.ndarray:
    """The frames of an animated GIF / WebP as a browser shows them, back at the model's size.

    Pillow decodes every frame (composited with the previous ones, as a browser does), each is
    converted to grey ("L") or kept in colour ("RGB") and downsampled by ``scale``: the mean of
    each ``scale x scale`` block, the inverse of :func:`to_pil`'s nearest upscaling (exact for a
    morph rendered here). ``channels`` 1 or 3 chooses; ``None`` decides from the pixels (colour
    as soon as one pixel of one frame is not grey). Returns ``(T, C, H, W)`` float32 in [0, 1]
    (``k / 255``). Consecutive identical frames may have been merged by the encoder, so ``T``
    can be smaller than the number of frames rendered.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels}")
    decoded = []
    with Image.open(io.BytesIO(data)) as img:
        for frame in ImageSequence.Iterator(img):
            decoded.append(np.asarray(frame.convert("RGB"), dtype=np.float64))
    if not decoded:
        raise ValueError("no frames in the animation")
    if channels is None:
        channels = 3 if any((a != a[..., :1]).any() for a in decoded) else 1
    frames = []
    for rgb in decoded:
        h, w = rgb.shape[:2]
        if h % scale or w % scale:
            raise ValueError(f"frame size {w}x{h} is not a multiple of scale {scale}")
        a = rgb if channels == 3 else np.asarray(Image.fromarray(rgb.astype(np.uint8), "RGB").convert("L"), dtype=np.float64)[..., None]
        blocks = a.reshape(h // scale, scale, w // scale, scale, channels).mean(axis=(1, 3))
        frames.append((np.round(blocks).astype(np.float32) / np.float32(255.0)).transpose(2, 0, 1))
    return np.stack(frames)
