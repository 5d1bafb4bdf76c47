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
    load_labelled_images,
    read_image,
)
from tests.owndata import SPOILS, make_image_folders, spoil_image_folders


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


# --- a researcher's own labelled set: load_labelled_images -----------------------------------

def _pixels(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert(mode))


def test_class_folders_rgb_png_keep_their_size_and_hold_out_a_stratified_test_split(tmp_path):
    root = make_image_folders(tmp_path / "own", size=32, rgb=True, limit=20)
    data = load_labelled_images(root)
    assert data.class_names == ("curl", "loop") and data.layout == "folders" and data.colour
    assert data.size == 32 and not data.resized and data.test_fraction == 0.2
    assert data.train.images.shape == (32, 32, 32, 3) and data.test.images.shape == (8, 32, 32, 3)
    assert data.train.images.dtype == np.uint8 and data.train.labels.dtype == np.int64
    assert np.bincount(data.train.labels).tolist() == [16, 16] and np.bincount(data.test.labels).tolist() == [4, 4]
    # Every file is in exactly one split, pixel for pixel, with its folder's label.
    files = {(p.parent.name, _pixels(p, "RGB").tobytes()) for p in sorted(root.glob("*/*.png"))}
    stored = {
        (data.class_names[label], image.tobytes())
        for split in (data.train, data.test) for image, label in zip(split.images, split.labels, strict=True)
    }
    assert stored == files and len(files) == 40
    assert data.describe() == "32x32 colour, class folders, 20% of each class held out (seed 0)"


@pytest.mark.parametrize(("rgb", "shape"), [(False, (24, 24)), (True, (24, 24, 3))])
def test_jpeg_grey_or_colour(tmp_path, rgb, shape):
    root = make_image_folders(tmp_path / "jpeg", size=24, rgb=rgb, ext="jpg", limit=10)
    data = load_labelled_images(root, test_fraction=0.3)
    assert data.colour == rgb and data.train.images.shape == (14, *shape) and data.test.images.shape == (6, *shape)
    first = sorted((root / "curl").glob("*.jpg"))[0]
    every = np.concatenate([data.train.images, data.test.images])
    assert any(np.array_equal(image, _pixels(first, "RGB" if rgb else "L")) for image in every)
    assert "30% of each class held out" in data.describe()


def test_grey_palette_and_grey_with_alpha_count_as_grey(tmp_path):
    root = make_image_folders(tmp_path / "grey", size=16, rgb=False, limit=3)
    Image.new("LA", (16, 16), (70, 128)).save(root / "curl" / "alpha.png")
    Image.new("L", (16, 16), 200).convert("P").save(root / "loop" / "palette.png")
    data = load_labelled_images(root)
    assert not data.colour and data.train.images.ndim == 3
    every = np.concatenate([data.train.images, data.test.images])
    assert any((image == 70).all() for image in every) and any((image == 200).all() for image in every)
    Image.new("P", (16, 16), 0).save(root / "loop" / "red.png")  # the default palette's 0 is black, so recolour it
    with Image.open(root / "loop" / "red.png") as img:
        img.putpalette([255, 0, 0] * 256)
        img.save(root / "loop" / "red.png")
    with pytest.raises(DatasetError, match="grey and colour images are mixed .*colour: .*red.png"):
        load_labelled_images(root)


def test_train_test_layout_keeps_the_trees_own_split(tmp_path):
    root = make_image_folders(tmp_path / "split", size=32, rgb=True, layout="split", limit=15)
    data = load_labelled_images(root, test_fraction=0.5)  # not used: the tree has its own split
    assert data.layout == "train/test" and data.test_fraction is None
    assert np.bincount(data.train.labels).tolist() == [12, 12] and np.bincount(data.test.labels).tolist() == [3, 3]
    test_file = sorted((root / "test" / "loop").glob("*.png"))[0]
    assert np.array_equal(data.test.images[3], _pixels(test_file, "RGB"))
    assert "train/ and test/ folders" in data.describe()


def test_size_is_the_researchers_choice_else_the_shared_square_size_else_64(tmp_path):
    root = make_image_folders(tmp_path / "s", size=32, rgb=True, limit=5)
    small = load_labelled_images(root, size=16)
    assert small.size == 16 and small.resized and small.train.images.shape[1:] == (16, 16, 3)
    Image.new("RGB", (40, 30), (10, 200, 10)).save(root / "curl" / "wide.png")  # a second size
    mixed = load_labelled_images(root)
    assert mixed.size == 64 and mixed.train.images.shape[1:] == (64, 64, 3)
    flat = np.concatenate([mixed.train.images, mixed.test.images])
    assert any((image == (10, 200, 10)).all() for image in flat)  # resized to 64x64, aspect ratio not kept


def test_the_split_is_determined_by_the_seed(tmp_path):
    root = make_image_folders(tmp_path / "d", size=16, rgb=False, limit=30)
    first, again, other = (load_labelled_images(root, seed=s) for s in (0, 0, 1))
    assert np.array_equal(first.test.images, again.test.images) and np.array_equal(first.train.labels, again.train.labels)
    assert not np.array_equal(first.test.images, other.test.images)
    assert np.bincount(other.test.labels).tolist() == [6, 6]


@pytest.mark.parametrize("how", SPOILS)
def test_each_refusal_names_the_file_or_folder(tmp_path, how):
    root = make_image_folders(tmp_path / "own", size=32, rgb=True, limit=4)
    expected = spoil_image_folders(root, how)
    with pytest.raises(DatasetError, match=expected):
        load_labelled_images(root)


def test_split_layout_refusals(tmp_path):
    root = make_image_folders(tmp_path / "split", size=16, rgb=True, layout="split", limit=10)
    (root / "test" / "loop").rename(root / "test" / "hoop")
    with pytest.raises(DatasetError, match=r"same class folders \(only in train/: loop; only in test/: hoop\)"):
        load_labelled_images(root)
    (root / "test" / "hoop").rename(root / "test" / "loop")
    for path in (root / "test" / "loop").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match="test/loop: class 'loop' has no images"):
        load_labelled_images(root)
    make_image_folders(tmp_path / "split", size=16, rgb=True, layout="split", limit=10)
    (root / "val").mkdir()
    with pytest.raises(DatasetError, match="besides train/ and test/ there is a folder 'val'"):
        load_labelled_images(root)
    (root / "val").rmdir()
    (root / "test").rename(root / "held")
    with pytest.raises(DatasetError, match="found a train/ folder but no test/ folder"):
        load_labelled_images(root)
    with pytest.raises(DatasetError, match="not a folder"):
        load_labelled_images(tmp_path / "missing")


@pytest.mark.parametrize(("options", "message"), [
    ({"test_fraction": 0.0}, "test fraction must lie between 0 and 1"),
    ({"test_fraction": 1.5}, "test fraction must lie between 0 and 1"),
    ({"size": 4}, "size must be between 8 and 1024 pixels, got 4"),
])
def test_bad_options_are_refused(tmp_path, options, message):
    with pytest.raises(DatasetError, match=message):
        load_labelled_images(make_image_folders(tmp_path / "o", size=16, limit=3), **options)


def test_colour_true_converts_every_image_as_the_cel_import_needs(tmp_path):
    root = make_image_folders(tmp_path / "mixed", size=16, rgb=True, limit=3)
    Image.new("L", (16, 16), 90).save(root / "loop" / "grey_one.png")  # refused without colour=True
    data = load_labelled_images(root, colour=True, test_fraction=0.5)
    assert data.colour and data.train.images.shape[1:] == (16, 16, 3)
    every = np.concatenate([data.train.images, data.test.images])
    assert any((image == 90).all() for image in every)
    assert load_labelled_images(root, colour=False).train.images.ndim == 3
