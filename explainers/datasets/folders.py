"""Class-per-folder image data (the layout of the CEL cell images) and shared image reading.

Layout, as torchvision's ``ImageFolder``: one sub-directory per class, the class name is the
directory name, images directly inside::

    root/Actinedge/cell_001.png
    root/Hemispherebleb/...
    root/Lamellipodia/...
    root/Smallbleb/...

:func:`load_image_folder` returns paths and labels (no pixels), with classes in sorted order
or in the order of a ``classes`` filter. Hidden entries (names starting with ``.``) are skipped;
files whose extension is not an image extension are ignored (logged). A missing root, no class
directory, a requested class that does not exist, a class without images and (with
``verify=True``, the default) an image PIL cannot read all raise
:class:`explainers.datasets.common.DatasetError` naming the path.

Pixels: :func:`images_array` (uint8 arrays) and :func:`images_tensor` (float
``(N, 3, size, size)``, ImageNet-normalised, for torchvision backbones; optional crop boxes).
Resizing goes straight to ``size x size`` (bilinear, aspect ratio not kept), so coordinates map
linearly (see :func:`explainers.datasets.cub.parts_in_tensor`).

Example::

    >>> ds = load_image_folder("/data/cel", classes=CEL_CLASSES)        # doctest: +SKIP
    >>> ds.class_names, len(ds), ds.labels[:3]                          # doctest: +SKIP
    (('Actinedge', 'Hemispherebleb', 'Lamellipodia', 'Smallbleb'), 200, array([0, 0, 0]))
    >>> x = images_tensor(ds.paths[:8], size=224)                       # (8, 3, 224, 224)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from explainers.datasets.common import IMAGENET_MEAN, IMAGENET_STD, DatasetError

__all__ = [
    "CEL_CLASSES",
    "FolderDataset",
    "IMAGE_EXTENSIONS",
    "crop_region",
    "images_array",
    "images_tensor",
    "load_image_folder",
    "read_image",
]

logger = logging.getLogger(__name__)

#: The four cell morphologies of the XNN study (the paper spells the last one "Smalbleb").
CEL_CLASSES = ("Actinedge", "Hemispherebleb", "Lamellipodia", "Smallbleb")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm")


@dataclass(frozen=True)
class FolderDataset:
    """Paths ``(N,)``, labels int64 ``(N,)`` indexing ``class_names``, and the root."""

    root: Path
    paths: tuple[Path, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, indices: Sequence[int] | np.ndarray) -> FolderDataset:
        idx = np.asarray(indices, dtype=np.int64)
        return replace(self, paths=tuple(self.paths[i] for i in idx), labels=self.labels[idx])


def read_image(path: str | os.PathLike, *, mode: str = "RGB") -> Image.Image:
    """Open and fully decode an image in PIL ``mode``; :class:`DatasetError` if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found")
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert(mode)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from exc


def _verify(path: Path) -> None:
    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from exc


def load_image_folder(
    root: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    verify: bool = True,
) -> FolderDataset:
    """Index a class-per-folder tree (see the module docstring).

    Args:
        classes: class directory names to keep, in this label order (default: all, sorted).
        extensions: file suffixes counted as images (case-insensitive).
        verify: open every image header with PIL and raise on an unreadable one.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    available = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not available:
        raise DatasetError(f"{root}: no class directories (expected one sub-directory per class)")
    if classes is None:
        names = available
    else:
        names = [str(c) for c in classes]
        if not names:
            raise DatasetError(f"{root}: the class filter is empty")
        if len(set(names)) != len(names):
            raise DatasetError(f"{root}: duplicate class names in the filter {names}")
        missing = [c for c in names if c not in available]
        if missing:
            raise DatasetError(f"{root}: no class directory named {missing}; available: {available}")
    suffixes = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        found: list[Path] = []
        ignored: list[Path] = []
        for p in sorted((root / name).iterdir()):
            if p.name.startswith(".") or not p.is_file():
                continue
            (found if p.suffix.lower() in suffixes else ignored).append(p)
        if ignored:
            logger.info("%s: ignored %d non-image files (e.g. %s)", root / name, len(ignored), ignored[0].name)
        if not found:
            raise DatasetError(f"{root / name}: class {name!r} has no images ({', '.join(sorted(suffixes))})")
        if verify:
            for p in found:
                _verify(p)
        paths.extend(found)
        labels.extend([label] * len(found))
    return FolderDataset(root=root, paths=tuple(paths), labels=np.asarray(labels, dtype=np.int64), class_names=tuple(names))


def crop_region(box: Sequence[float] | None, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer ``(left, top, right, bottom)`` actually cropped for ``box = (x, y, w, h)`` in an
    image of ``width x height`` (clipped to the image; the whole image for ``None``)."""
    if box is None:
        return 0, 0, int(width), int(height)
    x, y, w, h = (float(v) for v in box)
    left, top = int(max(0.0, x)), int(max(0.0, y))
    right, bottom = int(round(min(float(width), x + w))), int(round(min(float(height), y + h)))
    if right - left < 1 or bottom - top < 1:
        raise DatasetError(f"crop box {tuple(box)} lies outside the {width}x{height} image")
    return left, top, right, bottom


def _region(img: Image.Image, box: Sequence[float] | None) -> Image.Image:
    if box is None:
        return img
    return img.crop(crop_region(box, img.width, img.height))


def images_array(
    paths: Sequence[str | os.PathLike] | FolderDataset,
    *,
    size: int,
    mode: str = "RGB",
    boxes: Sequence[Sequence[float]] | np.ndarray | None = None,
) -> np.ndarray:
    """uint8 ``(N, size, size, 3)`` (``mode="RGB"``) or ``(N, size, size)`` (``"L"``), each image
    optionally cropped to ``boxes[i] = (x, y, width, height)`` first, then resized bilinearly."""
    items = list(paths.paths if isinstance(paths, FolderDataset) else paths)
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if boxes is not None and len(boxes) != len(items):
        raise ValueError(f"{len(boxes)} boxes for {len(items)} images")
    out = []
    for i, p in enumerate(items):
        img = _region(read_image(p, mode=mode), None if boxes is None else boxes[i])
        out.append(np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8))
    if not out:
        shape = (0, size, size, 3) if mode == "RGB" else (0, size, size)
        return np.zeros(shape, dtype=np.uint8)
    return np.stack(out)


def images_tensor(
    paths: Sequence[str | os.PathLike] | FolderDataset,
    *,
    size: int = 224,
    boxes: Sequence[Sequence[float]] | np.ndarray | None = None,
    normalise: bool = True,
) -> torch.Tensor:
    """float32 ``(N, 3, size, size)``: RGB in [0, 1], ImageNet-normalised if ``normalise``
    (``(x - mean) / std`` per channel with ImageNet's ``IMAGENET_MEAN``, ``IMAGENET_STD`` from
    :mod:`explainers.datasets.common`)."""
    arr = images_array(paths, size=size, mode="RGB", boxes=boxes)
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255.0)
    if normalise:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x.contiguous()
