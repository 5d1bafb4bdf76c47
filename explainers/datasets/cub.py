"""CUB-200-2011 (Wah et al. 2011) from its official directory layout; the XNN study's four gulls.

Layout (space-separated text, 1-based ids, no header; see shared/data/README.md)::

    CUB_200_2011/images/<class_dir>/<file>.jpg
    CUB_200_2011/images.txt               <image_id> <image_name>
    CUB_200_2011/classes.txt              <class_id> <class_name>
    CUB_200_2011/image_class_labels.txt   <image_id> <class_id>
    CUB_200_2011/train_test_split.txt     <image_id> <is_training_image>
    CUB_200_2011/bounding_boxes.txt       <image_id> <x> <y> <width> <height>
    CUB_200_2011/parts/parts.txt          <part_id> <part_name>          (names may hold spaces)
    CUB_200_2011/parts/part_locs.txt      <image_id> <part_id> <x> <y> <visible>
    attributes.txt  (next to CUB_200_2011/, or CUB_200_2011/attributes/attributes.txt; optional)

:func:`load_cub` accepts the ``CUB_200_2011`` directory or its parent, selects classes by name
(``"066.Western_Gull"`` or ``"Western_Gull"``, case-insensitive; default :data:`GULLS`, the XNN
study's four) and returns a :class:`CubSubset` in image-id order: paths, labels ``0..K-1`` in
the order of ``classes``, official ids, the train/test flag, boxes and part locations. Every inconsistency
raises :class:`explainers.datasets.common.DatasetError` naming the file (and line): a missing file, a
malformed line, an id listed twice or missing from one of the per-image files, a label that
disagrees with the image's class directory, a part id not in ``parts.txt``, an unknown class,
a missing image file.

Pixels: :func:`images_tensor` gives ImageNet-normalised ``(N, 3, size, size)``, the whole image
or cropped to the bounding box, resized straight to ``size x size``;
:func:`parts_in_tensor` / :func:`boxes_in_tensor` give the annotations in those pixel
coordinates (for :func:`explainers.xnn_metrics.locality`).

Example::

    >>> gulls = load_cub("/data/CUB_200_2011")                           # doctest: +SKIP
    >>> gulls.class_names, len(gulls), gulls.labels[:3]                   # doctest: +SKIP
    (('059.California_Gull', '062.Herring_Gull', '065.Slaty_backed_Gull', '066.Western_Gull'), 240, ...)
    >>> x = images_tensor(gulls.select(range(8)), size=224, crop_to_box=True)   # (8, 3, 224, 224)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from explainers.datasets.common import DatasetError
from explainers.datasets.folders import crop_region
from explainers.datasets.folders import images_tensor as _paths_tensor

__all__ = [
    "CubSubset",
    "GULLS",
    "boxes_in_tensor",
    "find_cub_root",
    "images_tensor",
    "load_cub",
    "parts_in_tensor",
]

#: The XNN human study's four gull classes (class_id 59, 62, 65, 66).
GULLS = ("059.California_Gull", "062.Herring_Gull", "065.Slaty_backed_Gull", "066.Western_Gull")
REQUIRED = (
    "images.txt", "classes.txt", "image_class_labels.txt", "train_test_split.txt",
    "bounding_boxes.txt", "parts/parts.txt", "parts/part_locs.txt",
)
SPLITS = ("all", "train", "test")


@dataclass(frozen=True)
class CubSubset:
    """Selected CUB images, batch first.

    Attributes:
        root: the ``CUB_200_2011`` directory.
        image_ids: official 1-based image ids, int64 ``(N,)``.
        paths: absolute image paths ``(N,)``.
        labels: int64 ``(N,)`` in ``0..K-1``, indexing ``class_names``.
        class_ids: official 1-based class ids ``(N,)``.
        class_names: the ``K`` selected class directory names, in label order.
        is_train: bool ``(N,)`` from ``train_test_split.txt``.
        boxes: float32 ``(N, 4)`` ``(x, y, width, height)`` in original pixels.
        parts: float32 ``(N, P, 2)`` part centres ``(x, y)`` in original pixels (0 if invisible).
        part_visible: bool ``(N, P)``.
        part_names: ``P`` names from ``parts/parts.txt`` (15: back, beak, ...).
        attribute_names: from ``attributes.txt`` if found, else ``None``.
    """

    root: Path
    image_ids: np.ndarray
    paths: tuple[Path, ...]
    labels: np.ndarray
    class_ids: np.ndarray
    class_names: tuple[str, ...]
    is_train: np.ndarray
    boxes: np.ndarray
    parts: np.ndarray
    part_visible: np.ndarray
    part_names: tuple[str, ...]
    attribute_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, indices: Sequence[int] | np.ndarray) -> CubSubset:
        """The subset at ``indices`` (positions, not image ids)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return replace(
            self, image_ids=self.image_ids[idx], paths=tuple(self.paths[i] for i in idx),
            labels=self.labels[idx], class_ids=self.class_ids[idx], is_train=self.is_train[idx],
            boxes=self.boxes[idx], parts=self.parts[idx], part_visible=self.part_visible[idx],
        )


# ----------------------------------------------------------------------------------------------
# Reading the text files


def _rows(path: Path, n_fields: int, *, rest: bool = False) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of a space-separated file; ``rest=True`` joins the tail."""
    if not path.is_file():
        raise DatasetError(f"{path}: required CUB file not found")
    out = []
    with open(path, encoding="utf-8") as handle:
        for no, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            fields = line.split(maxsplit=n_fields - 1) if rest else line.split()
            if len(fields) != n_fields:
                raise DatasetError(f"{path}:{no}: expected {n_fields} fields, got {len(fields)}: {line[:80]!r}")
            out.append((no, fields))
    if not out:
        raise DatasetError(f"{path}: file is empty")
    return out


def _num(path: Path, no: int, value: str, kind: Callable[[str], float | int]) -> float | int:
    try:
        return kind(value)
    except ValueError:
        raise DatasetError(f"{path}:{no}: {value!r} is not a valid {kind.__name__}") from None


def _by_id(path: Path, n_fields: int, *, rest: bool = False) -> dict[int, tuple[int, list[str]]]:
    table: dict[int, tuple[int, list[str]]] = {}
    for no, fields in _rows(path, n_fields, rest=rest):
        key = int(_num(path, no, fields[0], int))
        if key in table:
            raise DatasetError(f"{path}:{no}: id {key} listed twice (first on line {table[key][0]})")
        table[key] = (no, fields[1:])
    return table


def find_cub_root(path: str | os.PathLike) -> Path:
    """The directory holding ``images.txt``: ``path`` itself or ``path/CUB_200_2011``."""
    path = Path(path)
    for candidate in (path, path / "CUB_200_2011"):
        if (candidate / "images.txt").is_file():
            return candidate
    if not path.is_dir():
        raise DatasetError(f"{path}: CUB directory not found")
    raise DatasetError(f"{path}: not a CUB-200-2011 directory (no images.txt here or in CUB_200_2011/)")


def _attribute_names(root: Path) -> tuple[str, ...] | None:
    for candidate in (root.parent / "attributes.txt", root / "attributes" / "attributes.txt", root / "attributes.txt"):
        if candidate.is_file():
            table = _by_id(candidate, 2, rest=True)
            return tuple(table[k][1][0] for k in sorted(table))
    return None


def _match_classes(classes_path: Path, table: dict[int, tuple[int, list[str]]], wanted: Sequence[str]) -> list[int]:
    names = {cid: fields[0] for cid, (_, fields) in table.items()}
    lookup: dict[str, int] = {}
    for cid, name in names.items():
        lookup[name.lower()] = cid
        lookup[name.split(".", 1)[-1].lower()] = cid
    ids = []
    for w in wanted:
        found = lookup.get(str(w).lower())
        if found is None:
            close = [n for n in names.values() if str(w).lower().split(".")[-1].split("_")[-1] in n.lower()][:8]
            raise DatasetError(f"{classes_path}: no class named {w!r}" + (f"; similar: {close}" if close else ""))
        if found in ids:
            raise DatasetError(f"class {w!r} selected twice")
        ids.append(found)
    return ids


def load_cub(
    root: str | os.PathLike,
    classes: Sequence[str] | None = GULLS,
    *,
    split: str = "all",
    check_images: bool = True,
) -> CubSubset:
    """Load the annotations of ``classes`` (``None``: all 200) and check the tree.

    Args:
        root: ``CUB_200_2011`` or its parent.
        classes: class names (see the module docstring); labels follow this order.
        split: ``"all"``, ``"train"`` or ``"test"`` (``train_test_split.txt``).
        check_images: raise if a selected image file is missing.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = find_cub_root(root)
    for name in REQUIRED:
        if not (root / name).is_file():
            raise DatasetError(f"{root / name}: required CUB file not found")
    images = _by_id(root / "images.txt", 2)
    class_table = _by_id(root / "classes.txt", 2)
    labels = _by_id(root / "image_class_labels.txt", 2)
    splits = _by_id(root / "train_test_split.txt", 2)
    boxes = _by_id(root / "bounding_boxes.txt", 5)
    part_table = _by_id(root / "parts" / "parts.txt", 2, rest=True)

    ids = set(images)
    for path, table in (
        (root / "image_class_labels.txt", labels),
        (root / "train_test_split.txt", splits),
        (root / "bounding_boxes.txt", boxes),
    ):
        if set(table) != ids:
            missing, extra = sorted(ids - set(table)), sorted(set(table) - ids)
            raise DatasetError(
                f"{path}: image ids do not match images.txt"
                + (f"; missing {missing[:5]}" if missing else "")
                + (f"; not in images.txt {extra[:5]}" if extra else "")
            )

    part_ids = sorted(part_table)
    if part_ids != list(range(1, len(part_ids) + 1)):
        raise DatasetError(f"{root / 'parts' / 'parts.txt'}: part ids must be 1..{len(part_ids)}, got {part_ids[:20]}")
    part_names = tuple(part_table[k][1][0] for k in part_ids)

    wanted = list(class_table) if classes is None else _match_classes(root / "classes.txt", class_table, classes)
    if not wanted:
        raise DatasetError("no classes selected")
    class_dirs = {cid: class_table[cid][1][0] for cid in class_table}

    selected: list[int] = []
    for image_id in sorted(images):
        no, (cid_text,) = labels[image_id]
        cid = int(_num(root / "image_class_labels.txt", no, cid_text, int))
        if cid not in class_table:
            raise DatasetError(f"{root / 'image_class_labels.txt'}:{no}: class id {cid} is not in classes.txt")
        name_no, (image_name,) = images[image_id]
        directory = image_name.split("/", 1)[0] if "/" in image_name else None
        if directory is not None and directory != class_dirs[cid]:
            raise DatasetError(
                f"{root / 'image_class_labels.txt'}:{no}: image {image_id} ({image_name}) is labelled "
                f"{class_dirs[cid]!r} but sits in {directory!r}"
            )
        if cid not in wanted:
            continue
        s_no, (flag,) = splits[image_id]
        if flag not in ("0", "1"):
            raise DatasetError(f"{root / 'train_test_split.txt'}:{s_no}: is_training_image must be 0 or 1, got {flag!r}")
        if split == "all" or (flag == "1") == (split == "train"):
            selected.append(image_id)
    if not selected:
        raise DatasetError(f"{root}: no {split} images in classes {[class_dirs[c] for c in wanted]}")

    position = {image_id: i for i, image_id in enumerate(selected)}
    n, n_parts = len(selected), len(part_names)
    paths, label_arr, class_arr = [], np.zeros(n, np.int64), np.zeros(n, np.int64)
    train_arr, box_arr = np.zeros(n, bool), np.zeros((n, 4), np.float32)
    for i, image_id in enumerate(selected):
        image_name = images[image_id][1][0]
        path = root / "images" / image_name
        if check_images and not path.is_file():
            raise DatasetError(f"{path}: image {image_id} listed in images.txt is missing")
        paths.append(path)
        cid = int(labels[image_id][1][0])
        class_arr[i], label_arr[i] = cid, wanted.index(cid)
        train_arr[i] = splits[image_id][1][0] == "1"
        b_no, fields = boxes[image_id]
        box = [float(_num(root / "bounding_boxes.txt", b_no, f, float)) for f in fields]
        if box[2] <= 0 or box[3] <= 0:
            raise DatasetError(f"{root / 'bounding_boxes.txt'}:{b_no}: width and height must be positive, got {box}")
        box_arr[i] = box

    part_xy = np.zeros((n, n_parts, 2), np.float32)
    part_vis = np.zeros((n, n_parts), bool)
    seen = np.zeros((n, n_parts), bool)
    locs_path = root / "parts" / "part_locs.txt"
    for no, fields in _rows(locs_path, 5):
        image_id, part_id = int(_num(locs_path, no, fields[0], int)), int(_num(locs_path, no, fields[1], int))
        if image_id not in images:
            raise DatasetError(f"{locs_path}:{no}: image id {image_id} is not in images.txt")
        if not 1 <= part_id <= n_parts:
            raise DatasetError(f"{locs_path}:{no}: part id {part_id} is not in parts.txt (1..{n_parts})")
        row = position.get(image_id)
        if row is None:
            continue
        if seen[row, part_id - 1]:
            raise DatasetError(f"{locs_path}:{no}: part {part_id} of image {image_id} listed twice")
        seen[row, part_id - 1] = True
        x, y = (float(_num(locs_path, no, v, float)) for v in fields[2:4])
        if fields[4] not in ("0", "1"):
            raise DatasetError(f"{locs_path}:{no}: visible must be 0 or 1, got {fields[4]!r}")
        part_xy[row, part_id - 1] = (x, y)
        part_vis[row, part_id - 1] = fields[4] == "1"

    return CubSubset(
        root=root, image_ids=np.asarray(selected, np.int64), paths=tuple(paths), labels=label_arr,
        class_ids=class_arr, class_names=tuple(class_dirs[c] for c in wanted), is_train=train_arr,
        boxes=box_arr, parts=part_xy, part_visible=part_vis, part_names=part_names,
        attribute_names=_attribute_names(root),
    )


# ----------------------------------------------------------------------------------------------
# Pixels and coordinates


def images_tensor(
    subset: CubSubset,
    indices: Sequence[int] | np.ndarray | None = None,
    *,
    size: int = 224,
    crop_to_box: bool = False,
    normalise: bool = True,
) -> torch.Tensor:
    """float32 ``(N, 3, size, size)`` ImageNet-normalised (see :mod:`explainers.datasets.folders`),
    optionally cropped to each bounding box first."""
    sub = subset if indices is None else subset.select(indices)
    return _paths_tensor(sub.paths, size=size, boxes=sub.boxes if crop_to_box else None, normalise=normalise)


def _regions(sub: CubSubset, crop_to_box: bool) -> np.ndarray:
    out = np.zeros((len(sub), 4), np.float64)
    for i, path in enumerate(sub.paths):
        with Image.open(path) as img:  # reads the header only
            width, height = img.size
        out[i] = crop_region(sub.boxes[i] if crop_to_box else None, width, height)
    return out


def parts_in_tensor(
    subset: CubSubset,
    indices: Sequence[int] | np.ndarray | None = None,
    *,
    size: int = 224,
    crop_to_box: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Part centres in the pixel coordinates of :func:`images_tensor` with the same arguments:
    ``(xy (N, P, 2) float32, visible (N, P) bool)``; parts outside the crop become invisible.

    Pixel centres map as ``x' = (x + 0.5 - left) * size / (right - left) - 0.5`` (same for y)."""
    sub = subset if indices is None else subset.select(indices)
    reg = _regions(sub, crop_to_box)
    left, top = reg[:, 0, None], reg[:, 1, None]
    sx = size / (reg[:, 2, None] - left)
    sy = size / (reg[:, 3, None] - top)
    xy = np.empty_like(sub.parts, dtype=np.float32)
    xy[..., 0] = (sub.parts[..., 0] + 0.5 - left) * sx - 0.5
    xy[..., 1] = (sub.parts[..., 1] + 0.5 - top) * sy - 0.5
    inside = (xy[..., 0] >= -0.5) & (xy[..., 0] <= size - 0.5) & (xy[..., 1] >= -0.5) & (xy[..., 1] <= size - 0.5)
    return xy, sub.part_visible & inside


def boxes_in_tensor(
    subset: CubSubset,
    indices: Sequence[int] | np.ndarray | None = None,
    *,
    size: int = 224,
    crop_to_box: bool = False,
) -> np.ndarray:
    """Bounding boxes ``(N, 4)`` ``(x, y, width, height)`` in the pixel coordinates of
    :func:`images_tensor` (with ``crop_to_box`` the box is the whole tensor, up to rounding)."""
    sub = subset if indices is None else subset.select(indices)
    reg = _regions(sub, crop_to_box)
    sx = size / (reg[:, 2] - reg[:, 0])
    sy = size / (reg[:, 3] - reg[:, 1])
    out = np.empty((len(sub), 4), np.float32)
    out[:, 0] = (sub.boxes[:, 0] - reg[:, 0]) * sx
    out[:, 1] = (sub.boxes[:, 1] - reg[:, 1]) * sy
    out[:, 2] = sub.boxes[:, 2] * sx
    out[:, 3] = sub.boxes[:, 3] * sy
    return out
