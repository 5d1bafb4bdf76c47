"""studyapp.lib.archives.extract_zip: nothing outside the folder, no links, capped, all or nothing."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from studyapp.lib.archives import ArchiveError, extract_zip


def make_zip(files: dict[str, bytes], *, compression: int = zipfile.ZIP_STORED) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
    buffer.seek(0)
    return buffer


def test_unpacks_and_finds_the_data_root(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    assert extract_zip(make_zip({"a/1.png": b"1", "b/2.png": b"2"}), flat) == flat.resolve()
    assert (flat / "b" / "2.png").read_bytes() == b"2"
    nested = tmp_path / "nested"
    nested.mkdir()
    root = extract_zip(make_zip({"set/a/1.png": b"1", "set/b/2.png": b"2", "__MACOSX/set/._a": b"x"}), nested)
    assert root == (nested / "set").resolve() and not (nested / "__MACOSX").exists()
    split = tmp_path / "split"
    split.mkdir()  # a lone train/ is the data, not a wrapper
    assert extract_zip(make_zip({"train/a/1.png": b"1"}), split) == split.resolve()


@pytest.mark.parametrize(("files", "options", "message"), [
    ({"a/1.png": b"1", "a/2.png": b"2", "b/3.png": b"3"}, {"max_files": 2}, "more than 2 files"),
    ({"a/1.png": b"\0" * (3 << 20)}, {"max_bytes": 2 << 20}, "more than 2 MiB"),
    ({"a/1.png": b"1", "..\\b\\2.png": b"2"}, {}, "points outside"),
    ({"C:/b/2.png": b"2"}, {}, "points outside"),
])
def test_refusals_leave_the_folder_empty(tmp_path, files, options, message):
    target = tmp_path / "t"
    target.mkdir()
    with pytest.raises(ArchiveError, match=message):
        extract_zip(make_zip(files, compression=zipfile.ZIP_DEFLATED), target, **options)
    assert list(target.iterdir()) == []


def test_a_zip_lying_about_its_size_is_refused_and_leaves_nothing(tmp_path):
    buffer = make_zip({"a/big.png": b"\0" * (4 << 20)}, compression=zipfile.ZIP_DEFLATED)
    data = bytearray(buffer.getvalue())
    # Rewrite the declared size (local header and central directory) to 1 KiB: the check before
    # writing passes; zipfile reads no more than the declared size, so the CRC check refuses it.
    real = (4 << 20).to_bytes(4, "little")
    lie = (1024).to_bytes(4, "little")
    assert data.count(real) == 2
    target = tmp_path / "t"
    target.mkdir()
    with pytest.raises(ArchiveError, match="damaged"):
        extract_zip(io.BytesIO(bytes(data).replace(real, lie)), target, max_bytes=2 << 20)
    assert list(target.iterdir()) == []


def test_a_duplicate_member_is_refused(tmp_path):
    target = tmp_path / "t"
    target.mkdir()
    archive = make_zip({"a/1.png": b"1"})
    with zipfile.ZipFile(archive, "a") as bundle, pytest.warns(UserWarning, match="Duplicate name"):
        bundle.writestr("a/1.png", b"2")
    archive.seek(0)
    with pytest.raises(ArchiveError, match="twice"):
        extract_zip(archive, target)
    assert list(Path(target).iterdir()) == []
