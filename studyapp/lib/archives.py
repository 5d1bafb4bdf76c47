"""Unpacking an uploaded zip safely (framework-free): nothing outside the target folder, no links,
a cap on the number of files and on their total uncompressed size.

Python's ``zipfile.extractall`` already strips ``..`` and absolute paths, but it silently rewrites
such names instead of refusing them, writes a link as a small file holding its target, and has no
cap (a zip bomb fills the disk). :func:`extract_zip` checks every member first, refuses the whole
archive with a sentence naming the member, and only then writes, counting the bytes as they come.

Example::

    >>> with tempfile.TemporaryDirectory() as tmp:                      # doctest: +SKIP
    ...     root = extract_zip(upload, Path(tmp))                      # tmp, or its single top folder
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

#: Defaults for an upload through the admin; a larger set is imported from a folder on the server.
MAX_FILES = 20_000
MAX_BYTES = 512 * 1024 * 1024
#: Folders that archivers add and that are no part of the data (macOS resource forks).
IGNORED_TOP = ("__MACOSX",)


class ArchiveError(ValueError):
    """The archive was refused; the message says why and names the member. Nothing was written."""


def _member_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise ArchiveError(f"the zip member {info.filename!r} points outside the folder it is unpacked into; nothing was unpacked")
    return tuple(part for part in path.parts if part not in ("", "."))


def extract_zip(archive: str | Path | IO[bytes], target: Path, *, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES) -> Path:
    """Unpack ``archive`` into the existing, empty folder ``target``; return the data's root.

    The root is ``target``, or its only folder when the archive holds a single top folder that
    itself holds folders (``birds.zip`` -> ``birds/<class>/...``). ``__MACOSX/`` is skipped.
    Refused with :class:`ArchiveError` (nothing left in ``target``): not a zip, an encrypted
    member, a member whose path leaves ``target``, a link, more than ``max_files`` files or more
    than ``max_bytes`` uncompressed.
    """
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"the uploaded file is not a zip archive ({exc})") from exc
    with bundle:
        members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
        total = 0
        for info in bundle.infolist():
            parts = _member_parts(info)
            if not parts or parts[0] in IGNORED_TOP:
                continue
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise ArchiveError(f"the zip member {info.filename!r} is a link or a special file; only folders and files are accepted")
            if info.flag_bits & 0x1:
                raise ArchiveError(f"the zip member {info.filename!r} is encrypted; upload an archive without a password")
            if info.is_dir():
                continue
            members.append((info, parts))
            total += info.file_size
            if len(members) > max_files:
                raise ArchiveError(f"the zip holds more than {max_files} files; import a set this large from a folder on the server")
            if total > max_bytes:
                raise ArchiveError(
                    f"the zip unpacks to more than {max_bytes // 2**20} MiB; import a set this large from a folder on the server"
                )
        root = target.resolve()
        written = 0
        try:
            for info, parts in members:
                path = root.joinpath(*parts)
                if not path.resolve().is_relative_to(root):  # belt and braces after _member_parts
                    raise ArchiveError(f"the zip member {info.filename!r} points outside the folder it is unpacked into")
                path.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(info) as source, path.open("xb") as sink:
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:
                            raise ArchiveError(f"the zip unpacks to more than {max_bytes // 2**20} MiB; nothing was unpacked")
                        sink.write(chunk)
        except FileExistsError as exc:
            _empty(root)
            raise ArchiveError(f"the zip holds {exc.filename} twice; nothing was unpacked") from exc
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # a corrupt member (CRC, truncated)
            _empty(root)
            raise ArchiveError(f"the zip archive is damaged ({exc}); nothing was unpacked") from exc
        except ArchiveError:
            _empty(root)
            raise
    return _data_root(root)


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def _data_root(root: Path) -> Path:
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and entries[0].name not in ("train", "test"):
        inner = entries[0]
        if any(p.is_dir() and not p.name.startswith(".") for p in inner.iterdir()):
            return inner
    return root
