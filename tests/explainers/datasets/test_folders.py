"""explainers.datasets.folders: class-per-folder loading (the CEL layout) and image tensors, on tiny trees
of generated images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explainers.datasets.common import DatasetError
from explainers.datasets.folders import (
    CEL_CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    crop_region,
    images_array,
    images_tensor,
    load_image_folder,
    read_image,
)


def write_image(path: Path, colour=(200, 30, 60), size=(12, 10), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


@pytest.fixture
def cel(tmp_path):
    root = tmp_path / "cel"
    for k, name in enumerate(CEL_CLASSES):
        for i in range(3):
            write_image(root / name / f"cell_{i:03d}.png", colour=(40 * k, 10 * i, 100))
    (root / "Actinedge" / "notes.txt").write_text("not an image")
    write_image(root / "Actinedge" / ".hidden.png")
    (root / ".git").mkdir()
    return root


def test_loads_classes_in_sorted_order(cel):
    ds = load_image_folder(cel)
    assert ds.class_names == CEL_CLASSES  # already sorted
    assert len(ds) == 12 and ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert ds.paths[0].name == "cell_000.png" and ds.paths[3].parent.name == "Hemispherebleb"
    assert all(p.suffix == ".png" for p in ds.paths)  # notes.txt and hidden files skipped


def test_class_filter_sets_label_order(cel):
    ds = load_image_folder(cel, classes=["Smallbleb", "Actinedge"])
    assert ds.class_names == ("Smallbleb", "Actinedge")
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.paths[0].parent.name == "Smallbleb"
    sub = ds.select([5, 0])
    assert sub.labels.tolist() == [1, 0] and sub.paths[0] == ds.paths[5]


def test_errors(tmp_path, cel):
    with pytest.raises(DatasetError, match="not a directory"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "empty_root").mkdir()
    with pytest.raises(DatasetError, match="no class directories"):
        load_image_folder(tmp_path / "empty_root")
    with pytest.raises(DatasetError, match="Filopodia"):
        load_image_folder(cel, classes=["Filopodia"])
    with pytest.raises(DatasetError, match="duplicate"):
        load_image_folder(cel, classes=["Actinedge", "Actinedge"])
    (cel / "Filopodia").mkdir()
    (cel / "Filopodia" / "readme.md").write_text("x")
    with pytest.raises(DatasetError, match="Filopodia.*no images"):
        load_image_folder(cel)
    assert len(load_image_folder(cel, classes=CEL_CLASSES)) == 12


def test_unreadable_image(cel):
    bad = cel / "Lamellipodia" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DatasetError, match="broken.png"):
        load_image_folder(cel)
    ds = load_image_folder(cel, verify=False)  # indexing alone does not open files
    with pytest.raises(DatasetError, match="broken.png"):
        images_array([p for p in ds.paths if p.name == "broken.png"], size=4)
    with pytest.raises(DatasetError, match="not found"):
        read_image(cel / "missing.png")


def test_images_array_and_tensor(tmp_path):
    red = write_image(tmp_path / "a" / "red.jpg", colour=(255, 0, 0), size=(30, 20))
    grey = write_image(tmp_path / "b" / "grey.png", colour=(128, 128, 128), size=(5, 7))
    arr = images_array([red, grey], size=8)
    assert arr.shape == (2, 8, 8, 3) and arr.dtype == np.uint8
    assert images_array([red], size=6, mode="L").shape == (1, 6, 6)
    x = images_tensor([red, grey], size=8)
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32
    expected = (torch.tensor([128 / 255] * 3) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(x[1, :, 4, 4], expected, atol=1e-6, rtol=0)
    raw = images_tensor([grey], size=8, normalise=False)
    torch.testing.assert_close(raw, torch.full((1, 3, 8, 8), 128 / 255))
    assert images_array([], size=4).shape == (0, 4, 4, 3)


def test_crop_boxes(tmp_path):
    img = Image.new("RGB", (20, 20), (0, 0, 255))
    img.paste((0, 255, 0), (5, 5, 15, 15))
    path = tmp_path / "c" / "box.png"
    path.parent.mkdir()
    img.save(path)
    x = images_tensor([path], size=10, boxes=[(5, 5, 10, 10)], normalise=False)
    torch.testing.assert_close(x[0, 1], torch.ones(10, 10))  # all green
    assert crop_region((5.4, 5.6, 10.2, 100.0), 20, 20) == (5, 5, 16, 20)
    with pytest.raises(DatasetError, match="outside"):
        images_tensor([path], size=4, boxes=[(30, 30, 5, 5)])
    with pytest.raises(ValueError, match="boxes"):
        images_array([path, path], size=4, boxes=[(0, 0, 5, 5)])
