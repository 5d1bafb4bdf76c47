"""explainers.datasets.cub: CUB-200-2011 from a tiny fake tree in exactly the official layout (a few
generated JPEGs), class selection, annotations, pixel tensors and the errors of a broken tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explainers.datasets.common import DatasetError
from explainers.datasets.cub import (
    GULLS,
    boxes_in_tensor,
    find_cub_root,
    images_tensor,
    load_cub,
    parts_in_tensor,
)

PARTS = (
    "back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing",
    "nape", "right eye", "right leg", "right wing", "tail", "throat",
)
# (class_id, directory, file-name species prefix); files use a different case, as in CUB
CLASSES = (
    (1, "001.Black_footed_Albatross", "Black_Footed_Albatross"),
    (59, "059.California_Gull", "California_Gull"),
    (60, "060.Glaucous_winged_Gull", "Glaucous_Winged_Gull"),
    (62, "062.Herring_Gull", "Herring_Gull"),
    (65, "065.Slaty_backed_Gull", "Slaty_Backed_Gull"),
    (66, "066.Western_Gull", "Western_Gull"),
)
PER_CLASS = 3
W, H = 40, 30


def build_cub(base: Path, *, attributes_at: str | None = "top", per_class: int = PER_CLASS, painter=None) -> Path:
    """Write ``base/CUB_200_2011`` with ``per_class`` images per class (ids 1.., alternately
    train/test).

    Each image is grey with a white bounding box at (10, 5, 20, 15) (or what
    ``painter(class_position, j)`` returns); part k of image i sits at (10 + k, 5 + k) and is
    visible unless k == 14 (throat)."""
    root = base / "CUB_200_2011"
    (root / "parts").mkdir(parents=True)
    images, labels, split, boxes, locs = [], [], [], [], []
    classes = [f"{cid} {name}" for cid, name, _ in CLASSES]
    image_id = 0
    for position, (cid, name, prefix) in enumerate(CLASSES):
        for j in range(per_class):
            image_id += 1
            rel = f"{name}/{prefix}_{j + 1:04d}_{7000 + image_id}.jpg"
            path = root / "images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if painter is None:
                img = Image.new("RGB", (W, H), (90, 90, 90))
                img.paste((255, 255, 255), (10, 5, 30, 20))
            else:
                img = painter(position, j)
            img.save(path, quality=95)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {cid}")
            split.append(f"{image_id} {image_id % 2}")
            boxes.append(f"{image_id} 10.0 5.0 20.0 15.0")
            for k in range(1, 16):
                vis = 0 if k == 15 else 1
                x, y = (10.0 + k - 1, 5.0 + k - 1) if vis else (0.0, 0.0)
                locs.append(f"{image_id} {k} {x} {y} {vis}")
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (root / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (root / "bounding_boxes.txt").write_text("\n".join(boxes) + "\n")
    (root / "parts" / "parts.txt").write_text("\n".join(f"{k + 1} {n}" for k, n in enumerate(PARTS)) + "\n")
    (root / "parts" / "part_locs.txt").write_text("\n".join(locs) + "\n")
    attrs = "1 has_bill_shape::curved_(up_or_down)\n2 has_bill_shape::dagger\n"
    if attributes_at == "top":
        (base / "attributes.txt").write_text(attrs)
    elif attributes_at == "inside":
        (root / "attributes").mkdir()
        (root / "attributes" / "attributes.txt").write_text(attrs)
    return root


@pytest.fixture
def cub(tmp_path):
    return build_cub(tmp_path)


def edit(path: Path, fn) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(fn(lines)) + "\n")


# ----------------------------------------------------------------------------------------------
# Loading


def test_default_selects_the_four_gulls(cub):
    gulls = load_cub(cub)
    assert gulls.class_names == GULLS
    assert len(gulls) == 4 * PER_CLASS
    assert gulls.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert gulls.class_ids.tolist() == [59] * 3 + [62] * 3 + [65] * 3 + [66] * 3
    assert gulls.image_ids.tolist() == [4, 5, 6, 10, 11, 12, 13, 14, 15, 16, 17, 18]
    assert gulls.paths[6].name == "Slaty_Backed_Gull_0001_7013.jpg" and gulls.paths[6].is_file()
    assert gulls.is_train.tolist() == [i % 2 == 1 for i in gulls.image_ids]
    np.testing.assert_array_equal(gulls.boxes[0], [10, 5, 20, 15])
    assert gulls.parts.shape == (12, 15, 2) and gulls.part_names[6] == "left eye"
    np.testing.assert_array_equal(gulls.parts[0, 2], [12, 7])
    assert gulls.part_visible[:, :14].all() and not gulls.part_visible[:, 14].any()
    assert gulls.attribute_names == ("has_bill_shape::curved_(up_or_down)", "has_bill_shape::dagger")


def test_parent_directory_and_attributes_inside(tmp_path):
    root = build_cub(tmp_path, attributes_at="inside")
    assert find_cub_root(tmp_path) == root
    assert load_cub(tmp_path).attribute_names[1] == "has_bill_shape::dagger"
    assert load_cub(root).root == root
    other = build_cub(tmp_path / "x", attributes_at=None)
    assert load_cub(other).attribute_names is None


def test_class_selection_by_short_or_full_name(cub):
    two = load_cub(cub, ["western_gull", "059.California_Gull"])
    assert two.class_names == ("066.Western_Gull", "059.California_Gull")
    # images keep the official (image id) order; labels follow the order of the names
    assert two.labels.tolist() == [1, 1, 1, 0, 0, 0] and two.class_ids.tolist() == [59] * 3 + [66] * 3
    assert len(load_cub(cub, None)) == len(CLASSES) * PER_CLASS
    with pytest.raises(DatasetError, match="Ivory"):
        load_cub(cub, ["Ivory_Gull"])
    with pytest.raises(DatasetError, match="twice"):
        load_cub(cub, ["Western_Gull", "066.Western_Gull"])


def test_split_filter_and_select(cub):
    train, test = load_cub(cub, split="train"), load_cub(cub, split="test")
    assert train.is_train.all() and not test.is_train.any()
    assert len(train) + len(test) == 12
    sub = load_cub(cub).select([3, 0])
    assert sub.image_ids.tolist() == [10, 4] and sub.labels.tolist() == [1, 0] and sub.parts.shape == (2, 15, 2)
    with pytest.raises(ValueError, match="split"):
        load_cub(cub, split="val")


# ----------------------------------------------------------------------------------------------
# A broken tree


@pytest.mark.parametrize(
    "name", ["images.txt", "classes.txt", "image_class_labels.txt", "train_test_split.txt",
             "bounding_boxes.txt", "parts/parts.txt", "parts/part_locs.txt"],
)
def test_missing_file(cub, name):
    (cub / name).unlink()
    with pytest.raises(DatasetError, match=name.split("/")[-1]):
        load_cub(cub)


def test_not_a_cub_directory(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_cub(tmp_path / "nope")
    with pytest.raises(DatasetError, match="images.txt"):
        load_cub(tmp_path)


def test_id_missing_from_a_per_image_file(cub):
    edit(cub / "bounding_boxes.txt", lambda lines: [ln for ln in lines if not ln.startswith("5 ")])
    with pytest.raises(DatasetError, match=r"bounding_boxes.txt: image ids do not match.*missing \[5\]"):
        load_cub(cub)


def test_extra_id(cub):
    edit(cub / "train_test_split.txt", lambda lines: [*lines, "99 1"])
    with pytest.raises(DatasetError, match=r"not in images.txt \[99\]"):
        load_cub(cub)


def test_duplicate_id(cub):
    edit(cub / "images.txt", lambda lines: [*lines, lines[0]])
    with pytest.raises(DatasetError, match="images.txt:19: id 1 listed twice"):
        load_cub(cub)


def test_label_disagrees_with_directory(cub):
    edit(cub / "image_class_labels.txt", lambda lines: ["4 62" if ln == "4 59" else ln for ln in lines])
    with pytest.raises(DatasetError, match="labelled '062.Herring_Gull' but sits in '059.California_Gull'"):
        load_cub(cub)


def test_malformed_lines(cub):
    edit(cub / "bounding_boxes.txt", lambda lines: ["4 10.0 5.0 abc 15.0" if ln.startswith("4 ") else ln for ln in lines])
    with pytest.raises(DatasetError, match=r"bounding_boxes.txt:4: 'abc' is not a valid float"):
        load_cub(cub)


def test_short_line(cub):
    edit(cub / "train_test_split.txt", lambda lines: ["3" if ln.startswith("3 ") else ln for ln in lines])
    with pytest.raises(DatasetError, match="train_test_split.txt:3: expected 2 fields"):
        load_cub(cub)


def test_bad_part_id(cub):
    edit(cub / "parts" / "part_locs.txt", lambda lines: [*lines, "4 16 1.0 1.0 1"])
    with pytest.raises(DatasetError, match="part id 16"):
        load_cub(cub)


def test_part_listed_twice(cub):
    edit(cub / "parts" / "part_locs.txt", lambda lines: [*lines, "4 1 1.0 1.0 1"])
    with pytest.raises(DatasetError, match="part 1 of image 4 listed twice"):
        load_cub(cub)


def test_missing_image(cub):
    next((cub / "images" / "066.Western_Gull").glob("*.jpg")).unlink()
    with pytest.raises(DatasetError, match="Western_Gull.*missing"):
        load_cub(cub)
    assert len(load_cub(cub, check_images=False)) == 12
    (cub / "images" / "001.Black_footed_Albatross" / "Black_Footed_Albatross_0001_7001.jpg").unlink()
    assert len(load_cub(cub, ["Western_Gull"], check_images=False)) == 3  # other classes unchecked


# ----------------------------------------------------------------------------------------------
# Pixels and coordinates


def test_images_tensor_whole_and_cropped(cub):
    gulls = load_cub(cub)
    x = images_tensor(gulls, [0, 1], size=16)
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    white = (1.0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    crop = images_tensor(gulls, [0], size=16, crop_to_box=True)
    torch.testing.assert_close(crop[0].mean((1, 2)), white, atol=0.05, rtol=0)  # box is white
    raw = images_tensor(gulls, [0], size=16, normalise=False)
    assert abs(float(raw[0, 0, 0, 0]) - 90 / 255) < 0.03  # grey outside the box


def test_parts_and_boxes_in_tensor_coordinates(cub):
    gulls = load_cub(cub)
    xy, vis = parts_in_tensor(gulls, [0], size=80)  # 40x30 image -> 80x80: sx = 2, sy = 8/3
    np.testing.assert_allclose(xy[0, 0], [(10 + 0.5) * 2 - 0.5, (5 + 0.5) * 80 / 30 - 0.5], rtol=1e-6)
    assert vis[0, :14].all() and not vis[0, 14]
    xy_c, vis_c = parts_in_tensor(gulls, [0], size=20, crop_to_box=True)  # box 20x15 -> 20x20
    np.testing.assert_allclose(xy_c[0, 0], [0.0, (0.5) * 20 / 15 - 0.5], atol=1e-6)
    np.testing.assert_allclose(boxes_in_tensor(gulls, [0], size=80)[0], [20, 5 * 80 / 30, 40, 15 * 80 / 30], rtol=1e-6)
    np.testing.assert_allclose(boxes_in_tensor(gulls, [0], size=20, crop_to_box=True)[0], [0, 0, 20, 20], atol=1e-5)
