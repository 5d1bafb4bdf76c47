"""Content-addressed files under MEDIA_ROOT, written atomically.

A file is written to a temporary name and renamed into place, so a worker killed mid-write
leaves no half-written asset behind under a real name; the same bytes always get the same
name, so a retried task produces no duplicate. :func:`media_url` is where a stored file is
served (the ``media`` URL, which checks who may see it).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.urls import reverse
from PIL import Image, ImageSequence


def media_path(relative: str) -> Path:
    return Path(settings.MEDIA_ROOT) / relative


def media_url(path: str) -> str:
    """The URL of a stored file (a path relative to MEDIA_ROOT)."""
    return reverse("media", kwargs={"path": path})


def store_bytes(data: bytes, *, ext: str, folder: str = "assets") -> str:
    """Store ``data`` as ``<folder>/<h[:2]>/<sha256>.<ext>``; return that relative path."""
    digest = hashlib.sha256(data).hexdigest()
    relative = f"{folder}/{digest[:2]}/{digest}.{ext}"
    target = media_path(relative)
    if target.exists() and target.stat().st_size == len(data):
        return relative
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=f".{ext}")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return relative


@functools.lru_cache(maxsize=4096)
def animation_ms(url: str) -> int | None:
    """One loop of a stored animation (GIF or WebP), in ms: the sum of its frames' durations, read
    once per process (stored files are named by their content, so the answer never changes).
    ``url`` is a `media_url`; None when it names no readable animation."""
    prefix = reverse("media", kwargs={"path": "x"})[:-1]
    if not url.startswith(prefix):
        return None
    try:
        with Image.open(media_path(url[len(prefix):])) as image:
            total = 0
            for frame in ImageSequence.Iterator(image):
                frame.load()  # a WebP frame's duration is read when the frame is decoded (a GIF's on seek)
                total += frame.info.get("duration", 0)
            return int(total)
    except (OSError, ValueError):
        return None
