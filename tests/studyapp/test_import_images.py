"""A researcher's own labelled images: `manage.py import_images`, the admin's upload and server
folder, all or nothing (each refusal says what is wrong, and no row and no file is left)."""

from __future__ import annotations

import io
import re
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from studyapp.pipeline import datasets, loading
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import Dataset
from tests.owndata import SPOILS, make_image_folders, spoil_image_folders
from tests.studyapp.admin_forms import superuser_client

pytestmark = pytest.mark.django_db
IMPORT_URL = "/admin/pipeline/dataset/import/"


def stored_files() -> list[Path]:
    return sorted(p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file())


def assert_nothing_stored() -> None:
    assert Dataset.objects.count() == 0
    assert stored_files() == []


def run_import(*args: str) -> str:
    out = io.StringIO()
    call_command("import_images", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def owner() -> Client:
    return superuser_client()


# --- the command -------------------------------------------------------------------------------

def test_command_imports_class_folders_with_their_own_names_and_says_what_it_stored(tmp_path):
    root = make_image_folders(tmp_path / "own", size=32, rgb=True, limit=20)
    out = run_import(str(root), "--name", "curls-and-loops")
    dataset = Dataset.objects.get()
    assert dataset.name == "curls-and-loops" and dataset.kind == Dataset.Kind.IMAGES and not dataset.is_standin
    assert dataset.class_names == ["curl", "loop"]  # the folders' names, no Kannada digits
    assert (dataset.n_train, dataset.n_test) == (32, 8)
    assert dataset.source == f"{root}: 32x32 colour, class folders, 20% of each class held out (seed 0)"
    arrays = loading.dataset_arrays(dataset)
    assert arrays["x_train"].shape == (32, 32, 32, 3) and arrays["x_test"].dtype == np.uint8
    assert np.bincount(arrays["y_test"]).tolist() == [4, 4]
    assert "Data set 'curls-and-loops': 32 train / 8 test images, 32x32 colour" in out
    assert re.search(r"class\s+train\s+test\n\s+curl\s+16\s+4\n\s+loop\s+16\s+4", out), out


def test_command_on_a_train_test_tree_of_grey_jpegs_with_a_chosen_size(tmp_path):
    root = make_image_folders(tmp_path / "split", size=32, rgb=False, layout="split", ext="jpg", limit=10)
    out = run_import(str(root), "--name", "grey", "--size", "16")
    dataset = Dataset.objects.get(name="grey")
    arrays = loading.dataset_arrays(dataset)
    assert arrays["x_train"].shape == (16, 16, 16) and arrays["x_test"].shape == (4, 16, 16)
    assert "16x16 grey (resized), train/ and test/ folders (their own split)" in dataset.source
    assert "16 train / 4 test images, 16x16 grey" in out


def test_the_held_out_split_follows_the_seed(tmp_path):
    root = make_image_folders(tmp_path / "own", size=16, rgb=True, limit=12)
    first = loading.dataset_arrays(datasets.dataset_import_images(name="a", directory=root, seed=3))
    again = datasets.dataset_import_images(name="a", directory=root, seed=3)
    assert Dataset.objects.count() == 1 and again.name == "a"  # the same import twice is one data set
    other = loading.dataset_arrays(datasets.dataset_import_images(name="b", directory=root, seed=4, test_fraction=0.25))
    assert not np.array_equal(first["x_test"], other["x_test"])
    assert np.bincount(other["y_test"]).tolist() == [3, 3]


def test_a_taken_name_is_refused_before_anything_is_written(tmp_path):
    datasets.dataset_import_images(name="mine", directory=make_image_folders(tmp_path / "a", size=16, limit=4))
    before = stored_files()
    with pytest.raises(CommandError, match="A different data set named 'mine' exists already"):
        run_import(str(make_image_folders(tmp_path / "b", size=16, limit=6)), "--name", "mine")
    assert Dataset.objects.count() == 1 and stored_files() == before


@pytest.mark.parametrize("how", SPOILS)
def test_each_refusal_of_the_command_is_a_sentence_and_stores_nothing(tmp_path, how):
    root = make_image_folders(tmp_path / "own", size=32, rgb=True, limit=4)
    expected = spoil_image_folders(root, how)
    with pytest.raises(CommandError, match=f"^Nothing was imported: .*{expected}") as refused:
        run_import(str(root), "--name", "spoilt")
    assert str(refused.value).endswith(".")
    assert_nothing_stored()


def test_split_trees_with_different_class_folders_and_bad_options_are_refused(tmp_path):
    root = make_image_folders(tmp_path / "split", size=16, layout="split", limit=10)
    (root / "test" / "loop").rename(root / "test" / "hoop")
    with pytest.raises(CommandError, match=r"train/ and test/ must hold the same class folders \(only in train/: loop; only in test/: hoop\)"):
        run_import(str(root), "--name", "x")
    with pytest.raises(CommandError, match="test fraction must lie between 0 and 1"):
        run_import(str(make_image_folders(tmp_path / "flat", size=16, limit=4)), "--name", "x", "--test-fraction", "1")
    with pytest.raises(CommandError, match="not a folder"):
        run_import(str(tmp_path / "nowhere"), "--name", "x")
    with pytest.raises(PipelineError, match="needs a name"):
        datasets.dataset_import_images(name=" ", directory=tmp_path / "flat")
    assert_nothing_stored()


# --- the admin ----------------------------------------------------------------------------------

def zip_of(root: Path, *, top: str = "", extra: dict[str, bytes] | None = None, link: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                bundle.write(path, str(Path(top) / path.relative_to(root)))
        for name, data in (extra or {}).items():
            bundle.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            bundle.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def post_images(client: Client, **fields) -> object:
    data = {"images-name": "own", "images-test_fraction": "0.2", "images-seed": "0", "images-size": "", "images-directory": ""}
    data.update({f"images-{key}": value for key, value in fields.items()})
    return client.post(IMPORT_URL, data)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_the_import_page_offers_both_imports(owner):
    html = owner.get(IMPORT_URL).content.decode()
    assert 'enctype="multipart/form-data"' in html and 'name="images-archive"' in html and 'name="images-directory"' in html
    assert 'name="source"' in html  # Kannada-MNIST stays


@pytest.mark.parametrize("top", ["", "curls-and-loops"])
def test_admin_upload_of_a_zip_imports_it(tmp_path, owner, top):
    root = make_image_folders(tmp_path / "own", size=32, rgb=True, limit=10)
    upload = SimpleUploadedFile("own.zip", zip_of(root, top=top, extra={"__MACOSX/._x.png": b"junk"}), "application/zip")
    response = post_images(owner, archive=upload, size="24")
    assert response.status_code == 302, messages_of(response)
    dataset = Dataset.objects.get(name="own")
    assert dataset.class_names == ["curl", "loop"] and (dataset.n_train, dataset.n_test) == (16, 4)
    assert dataset.source == "uploaded own.zip: 24x24 colour (resized), class folders, 20% of each class held out (seed 0)"
    assert loading.dataset_arrays(dataset)["x_train"].shape == (16, 24, 24, 3)
    page = owner.get(response.url)
    assert "Imported &#x27;own&#x27;: 24x24 colour; curl 8 train / 2 test, loop 8 train / 2 test." in page.content.decode()


def test_admin_import_from_a_folder_on_the_server(tmp_path, owner):
    root = make_image_folders(tmp_path / "split", size=16, rgb=False, layout="split", limit=10)
    response = post_images(owner, directory=str(root))
    assert response.status_code == 302
    assert Dataset.objects.get(name="own").source.startswith(f"{root}: 16x16 grey, train/ and test/")


def test_admin_refuses_a_broken_upload_naming_the_file_inside_the_zip(tmp_path, owner):
    root = make_image_folders(tmp_path / "own", size=32, rgb=True, limit=4)
    spoil_image_folders(root, "broken file")
    response = post_images(owner, archive=SimpleUploadedFile("own.zip", zip_of(root, top="own")))
    assert response.status_code == 200
    (message,) = messages_of(response)
    assert message.startswith("Nothing was imported: own/loop/loop_0002.png: not a readable image"), message
    assert "xai-import" not in message  # the temporary folder is not shown
    assert_nothing_stored()


@pytest.mark.parametrize(("build", "expected"), [
    (lambda root: b"not a zip at all", "the uploaded file is not a zip archive"),
    (lambda root: zip_of(root, extra={"../../escape.png": b"x"}), "'../../escape.png' points outside the folder"),
    (lambda root: zip_of(root, extra={"/etc/cron.d/x.png": b"x"}), "'/etc/cron.d/x.png' points outside the folder"),
    (lambda root: zip_of(root, link="curl/link.png"), "'curl/link.png' is a link or a special file"),
    (lambda root: zip_of(root / "curl", top="curl"), re.escape("the zip: found one class folder ('curl')")),
])
def test_admin_refuses_unsafe_or_bad_zips_and_stores_nothing(tmp_path, owner, build, expected):
    root = make_image_folders(tmp_path / "own", size=16, rgb=True, limit=3)
    response = post_images(owner, archive=SimpleUploadedFile("bad.zip", build(root)))
    assert response.status_code == 200
    (message,) = messages_of(response)
    assert re.search(expected, message), message
    assert_nothing_stored()
    assert not (tmp_path / "escape.png").exists()


def test_admin_form_errors_and_a_missing_folder(tmp_path, owner):
    response = post_images(owner)  # neither a zip nor a folder
    assert "Give either a zip to upload or a folder on the server" in response.content.decode()
    response = post_images(owner, directory=str(tmp_path / "nowhere"))
    (message,) = messages_of(response)
    assert message.startswith(f"Nothing was imported: {tmp_path / 'nowhere'}: not a folder")
    root = make_image_folders(tmp_path / "mixed", size=16, rgb=True, limit=3)
    spoil_image_folders(root, "mixed modes")
    (message,) = messages_of(post_images(owner, directory=str(root)))
    assert "grey and colour images are mixed (grey: " in message and "grey_one.png" in message
    assert_nothing_stored()
