"""Writes of data sets: import Kannada-MNIST (directory or download) or generate its stand-in,
and import a researcher's own labelled images (class folders, from a folder or an uploaded zip).

All or nothing: a data set is stored as one content-addressed npz and one row, or not at all.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.db import transaction

from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import Dataset
from studyapp.pipeline.storage import store_bytes

log = logging.getLogger(__name__)

KANNADA_CLASS_NAMES = [chr(0x0CE6 + i) for i in range(10)]


def dataset_store(*, name: str, kind: str, source: str, is_standin: bool, class_names: list[str], train, test) -> Dataset:
    """Store two splits (objects with ``images`` and ``labels`` arrays) as one data set.

    The same arrays under the same name return the existing row; a different data set under a
    name that is taken is refused.
    """
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x_train=train.images, y_train=train.labels, x_test=test.images, y_test=test.labels)
    data = buffer.getvalue()
    fingerprint = hashlib.sha256(data).hexdigest()
    existing = Dataset.objects.filter(fingerprint=fingerprint, name=name).first()
    if existing is not None:
        return existing
    if Dataset.objects.filter(name=name).exists():  # refused before a file is written
        raise PipelineError(f"A different data set named '{name}' exists already; choose another name.")
    relative = store_bytes(data, ext="npz", folder="datasets")
    with transaction.atomic():
        if Dataset.objects.filter(name=name).exists():
            raise PipelineError(f"A different data set named '{name}' exists already; choose another name.")
        return Dataset.objects.create(
            name=name,
            kind=kind,
            source=source,
            is_standin=is_standin,
            file=relative,
            fingerprint=fingerprint,
            class_names=class_names,
            n_train=len(train.labels),
            n_test=len(test.labels),
        )


def dataset_import_kannada(*, name: str, directory: str | Path) -> Dataset:
    """Import Kannada-MNIST (npz, IDX or Kaggle CSV) from ``directory``; all or nothing."""
    from explainers.datasets.common import DatasetError
    from explainers.datasets.kannada import load_kannada

    try:
        train = load_kannada(directory, split="train")
        test = load_kannada(directory, split="test")
    except DatasetError as exc:
        raise PipelineError(str(exc)) from exc
    return dataset_store(
        name=name, kind=Dataset.Kind.KANNADA, source=str(directory), is_standin=False,
        class_names=KANNADA_CLASS_NAMES, train=train, test=test,
    )


def dataset_download_kannada(*, name: str, dest: str | Path) -> Dataset:
    from explainers.datasets.kannada import download_kannada

    directory = download_kannada(dest)
    return dataset_import_kannada(name=name, directory=directory)


def dataset_make_lookalike(*, name: str, n_per_class: int = 600, seed: int = 0) -> Dataset:
    """The offline stand-in: Kannada digit glyphs rendered from a font with jitter (labelled so)."""
    from explainers.datasets.kannada import make_lookalike_kannada

    train = make_lookalike_kannada(n_per_class, seed=seed)
    test = make_lookalike_kannada(max(50, n_per_class // 6), seed=seed + 1)
    return dataset_store(
        name=name, kind=Dataset.Kind.LOOKALIKE, source=f"generated offline (seed {seed})", is_standin=True,
        class_names=KANNADA_CLASS_NAMES, train=train, test=test,
    )


def dataset_auto(*, name: str | None = None, echo: Callable[[str], None] = log.info) -> Dataset:
    """KANNADA_MNIST_DIR if set, else the official download, else the offline look-alike stand-in."""
    from django.conf import settings

    if settings.KANNADA_MNIST_DIR:
        echo(f"Importing Kannada-MNIST from {settings.KANNADA_MNIST_DIR}")
        return dataset_import_kannada(name=name or "kannada-mnist", directory=settings.KANNADA_MNIST_DIR)
    try:
        echo("KANNADA_MNIST_DIR is not set: trying the official download")
        return dataset_download_kannada(name=name or "kannada-mnist", dest=settings.VAR_DIR / "downloads" / "kannada")
    except Exception as exc:  # offline machine: fall back, and say so
        echo(f"Download failed ({type(exc).__name__}: {exc}); generating the offline look-alike stand-in")
    return dataset_make_lookalike(name=name or "kannada-lookalike")


def dataset_import_images(
    *, name: str, directory: str | Path, test_fraction: float = 0.2, size: int | None = None, seed: int = 0,
    origin: str | None = None,
) -> Dataset:
    """Import a researcher's own labelled images from ``directory``; all or nothing.

    ``DIR/<class>/*`` (``test_fraction`` of each class held out, drawn with ``seed``) or
    ``DIR/train/<class>/*`` and ``DIR/test/<class>/*``; PNG or JPEG, grey or colour, stored at
    ``size x size`` (default: the images' own size when they all share one square size of at
    most 256 pixels, else 64). See :func:`explainers.datasets.folders.load_labelled_images` for
    every rule. Class names are the folder names. The stored size, grey or colour and the split
    are written in ``source`` (after ``origin``, default the directory), e.g. ``/data/gulls:
    64x64 colour (resized), class folders, 20% of each class held out (seed 0)``.
    """
    from explainers.datasets.common import DatasetError
    from explainers.datasets.folders import load_labelled_images

    name = (name or "").strip()
    if not name or len(name) > 100:
        raise PipelineError(f"Nothing was imported: a data set needs a name of 1 to 100 characters, got {name!r}.")
    try:
        data = load_labelled_images(directory, test_fraction=test_fraction, size=size, seed=seed)
    except DatasetError as exc:
        raise PipelineError(f"Nothing was imported: {exc}.") from exc
    where, how = str(origin or data.root), data.describe()
    room = 500 - len(how) - 2
    source = f"{where if len(where) <= room else '...' + where[-(room - 3):]}: {how}"
    return dataset_store(
        name=name, kind=Dataset.Kind.IMAGES, source=source, is_standin=False,
        class_names=list(data.class_names), train=data.train, test=data.test,
    )
