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

A researcher's own labelled set: :func:`load_labelled_images` reads a whole tree in either layout,
``root/<class>/*`` (a seeded, stratified test split is held out) or ``root/train/<class>/*`` with
``root/test/<class>/*`` (the tree's own split), and returns both splits as uint8 arrays, all or
nothing (see its docstring for the rules and every refusal).

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
    "DEFAULT_SIZE",
    "FolderDataset",
    "IMAGE_EXTENSIONS",
    "ImageSplit",
    "LabelledImages",
    "crop_region",
    "images_array",
    "images_tensor",
    "load_image_folder",
    "load_labelled_images",
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


# --------------------------------------------------------------------------------------------
# A researcher's own labelled image set

#: Stored size when the images do not all share one square size of at most ``KEEP_MAX`` pixels
#: (and none was asked for): small enough for the generators and for 2-core training.
DEFAULT_SIZE = 64
KEEP_MAX = 256
#: The sizes a researcher may ask for (smaller is no image, larger does not fit the pipeline's memory).
MIN_SIZE, MAX_SIZE = 8, 1024
#: PIL modes read as grey and as colour; any other (16-bit, 32-bit, float) is refused.
GREY_MODES = frozenset({"1", "L", "LA", "La"})
COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})
SPLIT_FOLDERS = ("train", "test")


@dataclass(frozen=True)
class ImageSplit:
    """uint8 images ``(N, S, S)`` (grey) or ``(N, S, S, 3)`` (colour) and int64 labels ``(N,)``."""

    images: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class LabelledImages:
    """Both splits of a labelled image tree and how they were made.

    ``layout`` is ``"folders"`` (``root/<class>``, ``test_fraction`` of each class held out with
    ``seed``) or ``"train/test"`` (the tree's own split; ``test_fraction`` is None).
    ``resized`` is False when every image already had the stored ``size x size``.
    """

    root: Path
    train: ImageSplit
    test: ImageSplit
    class_names: tuple[str, ...]
    size: int
    colour: bool
    layout: str
    test_fraction: float | None
    seed: int
    resized: bool

    def describe(self) -> str:
        """One line for people, e.g. ``32x32 colour, class folders, 20% of each class held out (seed 0)``."""
        how = (
            "train/ and test/ folders (their own split)" if self.layout == "train/test"
            else f"class folders, {100 * (self.test_fraction or 0):g}% of each class held out (seed {self.seed})"
        )
        return f"{self.size}x{self.size} {'colour' if self.colour else 'grey'}{' (resized)' if self.resized else ''}, {how}"


def _visible_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path, extensions: Sequence[str]) -> list[Path]:
    suffixes = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes)


def _class_folders(root: Path, extensions: Sequence[str]) -> list[str]:
    """The class folder names of ``root``, with the refusals of an empty or one-class tree."""
    names = _visible_dirs(root)
    if not names:
        loose = _image_files(root, extensions)
        if loose:
            raise DatasetError(
                f"{root}: the images (e.g. {loose[0].name}) lie directly in the folder; put them in one "
                "sub-folder per class (the folder name is the class name)"
            )
        raise DatasetError(f"{root}: the folder is empty; expected one sub-folder of images per class")
    if len(names) == 1:
        raise DatasetError(
            f"{root}: found one class folder ({names[0]!r}); a classifier needs at least two classes, "
            "one sub-folder each"
        )
    return names


def _image_kind(path: Path) -> tuple[bool, tuple[int, int]]:
    """(colour?, (width, height)) from the file's header; DatasetError if it is not a readable
    8-bit grey or colour image."""
    try:
        with Image.open(path) as img:
            mode, size = img.mode, img.size
            palette = img.getpalette() if mode in ("P", "PA") else None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from exc
    if palette is not None:  # a palette image is grey when every palette entry is
        return any(len({*palette[i : i + 3]}) > 1 for i in range(0, len(palette), 3)), size
    if mode in GREY_MODES:
        return False, size
    if mode in COLOUR_MODES:
        return True, size
    raise DatasetError(
        f"{path}: a {mode!r} image (16-bit, 32-bit or floating point) cannot be stored as 8-bit; "
        "save it as an 8-bit grey or colour PNG or JPEG"
    )


def _held_out(labels: np.ndarray, class_names: Sequence[str], root: Path, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the test images: in each class ``round(n * test_fraction)`` images drawn
    with ``seed``, at least one and at most ``n - 1`` (so both splits hold every class).

    Hand-written rather than scikit-learn's ``train_test_split(stratify=...)``: explainers/
    depends on torch, numpy and Pillow only, and that function neither guarantees every class in
    both splits nor names the class that is too small."""
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    for c, name in enumerate(class_names):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            raise DatasetError(
                f"{root / name}: class {name!r} has {len(idx)} image; each class needs at least 2 so that "
                "both the training and the test split get one"
            )
        n_test = min(max(1, round(len(idx) * test_fraction)), len(idx) - 1)
        is_test[rng.choice(idx, size=n_test, replace=False)] = True
    return is_test


def load_labelled_images(
    root: str | os.PathLike,
    *,
    test_fraction: float = 0.2,
    size: int | None = None,
    seed: int = 0,
    colour: bool | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> LabelledImages:
    """Read a researcher's labelled image tree into a training and a test split, all or nothing.

    Layouts (class names are the folder names, labels follow their sorted order):

    - ``root/<class>/*``: ``test_fraction`` of each class (``round(n * f)``, at least one image
      and at least one left for training) is held out as the test split, drawn with ``seed``.
    - ``root/train/<class>/*`` and ``root/test/<class>/*``: the tree's own split; both must hold
      the same class folders. ``test_fraction`` is not used.

    Files with an image extension (``IMAGE_EXTENSIONS``: PNG, JPEG and the other formats Pillow
    reads) count; hidden files and other files are skipped. Every image must be 8-bit grey
    (``L``, ``1``, ``LA``, a grey palette) or every image colour (``RGB``, ``RGBA``, ``CMYK``,
    a colour palette); an alpha channel is dropped. ``colour=True`` (or ``False``) converts
    every image to colour (grey) instead, for a caller whose network takes only that (the CEL
    import). Images are resized (bilinear, aspect ratio
    not kept) to ``size x size``; ``size=None`` keeps the images' own size when they all share
    one square size of at most 256 pixels (``KEEP_MAX``), else :data:`DEFAULT_SIZE` (64).

    Returns grey ``(N, S, S)`` or colour ``(N, S, S, 3)`` uint8 arrays and int64 labels.

    Refused with :class:`DatasetError`, the sentence naming the file or folder: a missing or
    empty tree, images outside class folders, a single class, a class without images or (class
    folders) with fewer than two, a ``train/`` without a ``test/`` (or the reverse) or other
    folders beside them, train/test class folders that differ, an unreadable or broken image,
    a 16-bit or floating-point image, grey and colour images mixed, a ``test_fraction`` outside
    (0, 1) and a ``size`` outside [8, 1024].

    Example::

        >>> data = load_labelled_images("/data/gulls", size=64)         # doctest: +SKIP
        >>> data.class_names, data.train.images.shape, data.describe()   # doctest: +SKIP
        (('herring', 'slaty'), (160, 64, 64, 3), '64x64 colour (resized), class folders, ...')
    """
    root = Path(root)
    if not 0.0 < float(test_fraction) < 1.0:
        raise DatasetError(f"the test fraction must lie between 0 and 1 (e.g. 0.2), got {test_fraction}")
    if size is not None and not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise DatasetError(f"the image size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {size}")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (expected one sub-folder of images per class, or train/ and test/ folders)")

    top = _visible_dirs(root)
    present = [name for name in SPLIT_FOLDERS if name in top]
    if len(present) == 1:
        other = "test" if present[0] == "train" else "train"
        raise DatasetError(
            f"{root}: found a {present[0]}/ folder but no {other}/ folder; use either one folder per class, "
            "or train/ and test/ folders holding the same class folders"
        )
    if present:
        layout = "train/test"
        extra = [name for name in top if name not in SPLIT_FOLDERS]
        if extra:
            raise DatasetError(
                f"{root}: besides train/ and test/ there is a folder {extra[0]!r}; a split tree holds only "
                "train/ and test/, each with the same class folders"
            )
        train_names, test_names = (_class_folders(root / name, extensions) for name in SPLIT_FOLDERS)
        if train_names != test_names:
            only_train = sorted(set(train_names) - set(test_names))
            only_test = sorted(set(test_names) - set(train_names))
            parts = ([f"only in train/: {', '.join(only_train)}"] if only_train else []) + (
                [f"only in test/: {', '.join(only_test)}"] if only_test else [])
            raise DatasetError(
                f"{root}: train/ and test/ must hold the same class folders ({'; '.join(parts)})"
            )
        sources = [load_image_folder(root / name, extensions=extensions, verify=False) for name in SPLIT_FOLDERS]
    else:
        layout = "folders"
        _class_folders(root, extensions)
        sources = [load_image_folder(root, extensions=extensions, verify=False)]

    paths = [p for source in sources for p in source.paths]
    kinds = [_image_kind(p) for p in paths]
    in_colour = [p for p, (is_colour, _) in zip(paths, kinds, strict=True) if is_colour]
    if colour is None and in_colour and len(in_colour) < len(paths):
        grey = next(p for p, (is_colour, _) in zip(paths, kinds, strict=True) if not is_colour)
        raise DatasetError(
            f"{root}: grey and colour images are mixed (grey: {grey}; colour: {in_colour[0]}); "
            "save them all as grey or all as colour"
        )
    stored_colour = bool(in_colour) if colour is None else bool(colour)
    sizes = {wh for _, wh in kinds}
    if size is None:
        shared = next(iter(sizes)) if len(sizes) == 1 else (0, 1)
        size = shared[0] if shared[0] == shared[1] and MIN_SIZE <= shared[0] <= KEEP_MAX else DEFAULT_SIZE
    size, mode = int(size), ("RGB" if stored_colour else "L")

    if layout == "train/test":
        train_set, test_set = sources
        train = ImageSplit(images_array(train_set, size=size, mode=mode), train_set.labels)
        test = ImageSplit(images_array(test_set, size=size, mode=mode), test_set.labels)
        fraction: float | None = None
    else:
        (source,) = sources
        is_test = _held_out(source.labels, source.class_names, root, float(test_fraction), seed)
        images = images_array(source, size=size, mode=mode)
        train = ImageSplit(images[~is_test], source.labels[~is_test])
        test = ImageSplit(images[is_test], source.labels[is_test])
        fraction = float(test_fraction)
    return LabelledImages(
        root=root, train=train, test=test, class_names=sources[0].class_names, size=size, colour=stored_colour,
        layout=layout, test_fraction=fraction, seed=int(seed), resized=sizes != {(size, size)},
    )
