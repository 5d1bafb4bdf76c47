"""Kannada-MNIST: loaders for the official file formats, a checksummed download and an offline
look-alike stand-in.

Data set: Prabhu, V. U. "Kannada-MNIST: A new handwritten digits dataset for the Kannada
language", arXiv:1908.01242 (2019); the user study of the CDeepEx dissertation (chapter 5) uses
it. Images are 28x28 uint8, a white (255) symbol on a black (0) background; classes 0-9 are the
Kannada digits U+0CE6..U+0CEF. In the official files the labels are NOT shuffled
(``labels[k] == k % 10``): shuffle before training or sampling.

Formats understood by :func:`load_kannada` / :func:`load_dig_mnist` (searched in ``directory``
first, then in its sub-directories, e.g. the Kaggle layout ``Kannada_MNIST_npz/Kannada_MNIST/``):

- ``npz``: ``X_kannada_MNIST_{split}.npz`` + ``y_kannada_MNIST_{split}.npz`` (one array each, key
  ``arr_0``, as written by ``np.savez(path, array)``); Dig-MNIST: ``X_dig_MNIST.npz`` +
  ``y_dig_MNIST.npz``.
- ``idx``: ``X_kannada_MNIST_{split}-idx3-ubyte.gz`` + ``y_kannada_MNIST_{split}-idx1-ubyte.gz``
  (MNIST IDX layout; uncompressed files without ``.gz`` are accepted too); Dig-MNIST:
  ``X_dig_MNIST-idx3-ubyte.gz`` + ``y_dig_MNIST-idx1-ubyte.gz``.
- ``csv`` (Kaggle competition 2019): ``train.csv`` (``label,pixel0..pixel783``), ``test.csv``
  (``id,pixel0..pixel783``, *unlabelled*), ``Dig-MNIST.csv`` (``label,pixel0..``), pixel
  ``k = row * 28 + col``.

Every malformed input (missing file, wrong shape or dtype, label outside 0-9, images and labels
of different lengths, bad IDX header, bad CSV header) raises
:class:`~explainers.datasets.common.DatasetError` whose message names the file and the problem.

Example::

    >>> split = load_kannada("/work/shared/data/kannada_mnist", "test")   # doctest: +SKIP
    >>> split.images.shape, split.labels[:3], split.source                 # doctest: +SKIP
    ((10000, 28, 28), array([0, 1, 2]), 'npz')
    >>> from explainers.datasets.common import to_tensor                   # doctest: +SKIP
    >>> x = to_tensor(split.images[:8])                                    # doctest: +SKIP
    >>> x.shape, x.dtype                                                   # doctest: +SKIP
    (torch.Size([8, 1, 28, 28]), torch.float32)
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import logging
import math
import os
import tempfile
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from explainers.datasets.common import DatasetError

logger = logging.getLogger(__name__)

IMAGE_SIZE = 28
NUM_CLASSES = 10
SPLITS = ("train", "test")
FORMATS = ("npz", "idx", "csv")

#: Kannada digits zero..nine, the class names of Kannada-MNIST.
KANNADA_DIGITS = tuple(chr(0x0CE6 + k) for k in range(NUM_CLASSES))


@dataclass(frozen=True)
class KannadaSplit:
    """One split of Kannada-MNIST (or of a stand-in).

    Attributes:
        images: uint8 ``(N, 28, 28)``, white symbol on black.
        labels: int64 ``(N,)`` in ``0..9``. Only an unlabelled Kaggle ``test.csv`` read with
            :func:`read_kaggle_csv` has ``-1`` here, and then ``ids`` is set.
        source: ``"npz"``, ``"idx"``, ``"csv"`` or ``"lookalike"``.
        ids: the Kaggle ``id`` column of an unlabelled CSV, else ``None``.
    """

    images: np.ndarray
    labels: np.ndarray
    source: str
    ids: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


# ----------------------------------------------------------------------------------------------
# Validation helpers


def _check_images(images: np.ndarray, path: Path | str) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise DatasetError(f"{path}: expected a numpy array of images, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise DatasetError(f"{path}: images must be uint8, got dtype {images.dtype}")
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DatasetError(
            f"{path}: images must have shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}), got {images.shape}"
        )
    if images.shape[0] == 0:
        raise DatasetError(f"{path}: holds no images")
    return images


def _check_labels(labels: np.ndarray, path: Path | str) -> np.ndarray:
    if not isinstance(labels, np.ndarray):
        raise DatasetError(f"{path}: expected a numpy array of labels, got {type(labels).__name__}")
    if labels.ndim != 1:
        raise DatasetError(f"{path}: labels must have shape (N,), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{path}: labels must be integers, got dtype {labels.dtype}")
    if labels.size == 0:
        raise DatasetError(f"{path}: holds no labels")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= NUM_CLASSES:
        bad = int(np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))[0])
        raise DatasetError(
            f"{path}: labels must lie in 0..{NUM_CLASSES - 1}, found {int(labels[bad])} at index {bad}"
        )
    return labels.astype(np.int64, copy=False)


def _pair(
    images: np.ndarray, labels: np.ndarray, x_path: Path, y_path: Path, source: str
) -> KannadaSplit:
    images = _check_images(images, x_path)
    labels = _check_labels(labels, y_path)
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{x_path} holds {images.shape[0]} images but {y_path} holds {labels.shape[0]} labels"
        )
    return KannadaSplit(np.ascontiguousarray(images), np.ascontiguousarray(labels), source)


# ----------------------------------------------------------------------------------------------
# Readers of single files


def read_npz(path: str | os.PathLike) -> np.ndarray:
    """Return the array stored under ``arr_0`` in ``path`` (no pickles are allowed)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "arr_0" not in archive.files:
                raise DatasetError(
                    f"{path}: no array under key 'arr_0' (keys found: {sorted(archive.files)})"
                )
            return archive["arr_0"]
    except DatasetError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from exc


_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (MNIST layout), gzip-compressed when its name ends in ``.gz``.

    Header: two zero bytes, a type code (0x08 = uint8), the number of dimensions, then one
    big-endian uint32 per dimension; the data follows in C order.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise DatasetError(f"{path}: unknown IDX data type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetError(
            f"{path}: IDX header announces shape {shape} ({expected} bytes) but {len(raw) - header} "
            "bytes of data follow"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def read_kaggle_csv(path: str | os.PathLike) -> KannadaSplit:
    """Read a Kaggle Kannada-MNIST CSV (``train.csv``, ``test.csv`` or ``Dig-MNIST.csv``).

    The header must be ``label`` or ``id`` followed by ``pixel0..pixel783``. A file with an
    ``id`` column (Kaggle's unlabelled ``test.csv``) gives ``labels`` filled with ``-1`` and
    ``ids`` set; a file with ``label`` is validated like any other split.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            header = handle.readline().strip().lstrip("\ufeff")
            columns = [c.strip().strip('"') for c in header.split(",")]
            expected = [f"pixel{k}" for k in range(IMAGE_SIZE * IMAGE_SIZE)]
            if len(columns) != 1 + len(expected) or columns[0] not in ("label", "id"):
                raise DatasetError(
                    f"{path}: header must be 'label' or 'id' then pixel0..pixel783 "
                    f"({1 + len(expected)} columns), got {len(columns)} columns starting "
                    f"{columns[:2]}"
                )
            if columns[1:] != expected:
                bad = next(
                    i for i, (a, b) in enumerate(zip(columns[1:], expected, strict=True)) if a != b
                )
                raise DatasetError(
                    f"{path}: column {bad + 1} is {columns[bad + 1]!r}, expected {expected[bad]!r}"
                )
            with warnings.catch_warnings():
                # "input contained no data" is checked below with a clearer message
                warnings.simplefilter("ignore", UserWarning)
                table = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path}: cannot parse as CSV of integers ({exc})") from exc
    if table.shape[0] == 0:
        raise DatasetError(f"{path}: holds no rows")
    if table.shape[1] != 1 + IMAGE_SIZE * IMAGE_SIZE:
        raise DatasetError(f"{path}: rows have {table.shape[1]} values, expected 785")
    pixels = table[:, 1:]
    if pixels.min() < 0 or pixels.max() > 255:
        raise DatasetError(
            f"{path}: pixel values must lie in 0..255, found {pixels.min()}..{pixels.max()}"
        )
    images = pixels.astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    if columns[0] == "id":
        return KannadaSplit(
            images, np.full(images.shape[0], -1, dtype=np.int64), "csv", ids=table[:, 0].copy()
        )
    return KannadaSplit(images, _check_labels(table[:, 0].copy(), path), "csv")


# ----------------------------------------------------------------------------------------------
# Directory loaders


def _file_names(stem_x: str, stem_y: str) -> dict[str, tuple[str, ...]]:
    return {
        "npz": (f"{stem_x}.npz", f"{stem_y}.npz"),
        "idx": (f"{stem_x}-idx3-ubyte.gz", f"{stem_y}-idx1-ubyte.gz"),
        "idx-raw": (f"{stem_x}-idx3-ubyte", f"{stem_y}-idx1-ubyte"),
    }


def _locate(directory: Path, name: str) -> Path | None:
    """``directory/name`` if present, else the single match in the sub-tree (ambiguity is an error)."""
    direct = directory / name
    if direct.is_file():
        return direct
    matches = sorted(p for p in directory.rglob(name) if p.is_file())
    if len(matches) > 1:
        listed = ", ".join(str(m) for m in matches)
        raise DatasetError(
            f"{directory}: several copies of {name} found ({listed}); pass the folder that holds one"
        )
    return matches[0] if matches else None


def _load_pair(
    directory: Path,
    stem_x: str,
    stem_y: str,
    fmt: str,
    csv_name: str | None,
    problems: list[str],
) -> KannadaSplit | None:
    """Try one format: the split, or ``None`` when its files are absent or only half there (the
    reason is appended to ``problems``). Malformed files raise DatasetError at once."""
    if fmt == "csv":
        path = _locate(directory, csv_name) if csv_name else None
        if path is None:
            return None
        split = read_kaggle_csv(path)
        if split.ids is not None:
            problems.append(
                f"{path}: has an 'id' column and no labels (Kaggle's competition test set); "
                "use read_kaggle_csv() for unlabelled images"
            )
            return None
        return split
    names = _file_names(stem_x, stem_y)
    for variant in ["npz"] if fmt == "npz" else ["idx", "idx-raw"]:
        x_name, y_name = names[variant]
        x_path = _locate(directory, x_name)
        if x_path is None:
            y_alone = _locate(directory, y_name)
            if y_alone is not None:
                problems.append(f"{y_alone}: labels found but the images file {x_name} is missing")
            continue
        y_path = x_path.parent / y_name
        if not y_path.is_file():
            problems.append(f"{x_path}: images found but the labels file {y_path} is missing")
            continue
        reader = read_npz if variant == "npz" else read_idx
        source = "npz" if variant == "npz" else "idx"
        split = _pair(reader(x_path), reader(y_path), x_path, y_path, source)
        logger.info("loaded %d images from %s (%s)", len(split), x_path, source)
        return split
    return None


def _load(
    directory: str | os.PathLike,
    stem_x: str,
    stem_y: str,
    csv_name: str | None,
    fmt: str,
    what: str,
) -> KannadaSplit:
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: directory not found")
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"format must be 'auto' or one of {FORMATS}, got {fmt!r}")
    problems: list[str] = []
    for candidate in FORMATS if fmt == "auto" else (fmt,):
        split = _load_pair(directory, stem_x, stem_y, candidate, csv_name, problems)
        if split is not None:
            return split
    if problems:
        raise DatasetError("; ".join(problems))
    names = _file_names(stem_x, stem_y)
    looked = {
        "npz": list(names["npz"]),
        "idx": list(names["idx"]),
        "csv": [csv_name] if csv_name else [],
    }
    wanted = [n for f in (FORMATS if fmt == "auto" else (fmt,)) for n in looked[f]]
    raise DatasetError(f"{directory}: no {what} files found (looked for {', '.join(wanted)})")


def load_kannada(
    directory: str | os.PathLike, split: str = "train", *, format: str = "auto"
) -> KannadaSplit:
    """Load the Kannada-MNIST ``train`` or ``test`` split from ``directory``.

    Args:
        directory: folder with the official files (npz, IDX) or Kaggle's CSVs, possibly in
            sub-folders.
        split: ``"train"`` (60000 images) or ``"test"`` (10000).
        format: ``"auto"`` tries npz, then IDX, then CSV; or force one of them.

    Returns:
        :class:`KannadaSplit` with images uint8 ``(N, 28, 28)`` and labels int64 ``(N,)``.

    Raises:
        DatasetError: files missing or malformed. Kaggle's ``test.csv`` has no labels, so it is
            refused here (read it with :func:`read_kaggle_csv`).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    csv_name = "train.csv" if split == "train" else "test.csv"
    return _load(
        directory,
        f"X_kannada_MNIST_{split}",
        f"y_kannada_MNIST_{split}",
        csv_name,
        format,
        f"Kannada-MNIST {split}",
    )


def load_dig_mnist(directory: str | os.PathLike, *, format: str = "auto") -> KannadaSplit:
    """Load Dig-MNIST, the out-of-domain set of 10240 images (Prabhu 2019, section 3).

    Files: ``X_dig_MNIST.npz``/``y_dig_MNIST.npz``, ``X_dig_MNIST-idx3-ubyte.gz``/
    ``y_dig_MNIST-idx1-ubyte.gz`` or Kaggle's ``Dig-MNIST.csv``.
    """
    return _load(directory, "X_dig_MNIST", "y_dig_MNIST", "Dig-MNIST.csv", format, "Dig-MNIST")


# ----------------------------------------------------------------------------------------------
# Download

#: Raw files of the author's repository, pinned to the commit the data files come from (see
#: shared/data/kannada_mnist/PROVENANCE.md).
KANNADA_BASE_URL = (
    "https://raw.githubusercontent.com/vinayprabhu/Kannada_MNIST/"
    "07904d4e56fb3af46310e9a3eec3ddc8ba976fa4/data/output_tensors/MNIST_format/"
)

#: The IDX files, the canonical MNIST format; enough for :func:`load_kannada` (both splits).
DEFAULT_FILES = (
    "X_kannada_MNIST_train-idx3-ubyte.gz",
    "y_kannada_MNIST_train-idx1-ubyte.gz",
    "X_kannada_MNIST_test-idx3-ubyte.gz",
    "y_kannada_MNIST_test-idx1-ubyte.gz",
)

DEFAULT_URLS: Mapping[str, str] = {
    name: KANNADA_BASE_URL + name
    for name in (
        *DEFAULT_FILES,
        "y_kannada_MNIST_train.npz",
        "y_kannada_MNIST_test.npz",
        "X_dig_MNIST-idx3-ubyte.gz",
        "y_dig_MNIST-idx1-ubyte.gz",
    )
}

#: sha256 of the original files, computed from byte-identical copies of the originals
#: (PROVENANCE.md). The original training images are not among those copies, so their sha256 is
#: unknown; they are verified by the md5 below instead.
DEFAULT_SHA256: Mapping[str, str] = {
    "X_kannada_MNIST_test-idx3-ubyte.gz": "4628f3fa7b1d32137449dd356be4601da0c28c420b79f1b745a5134504ca35ca",
    "y_kannada_MNIST_test-idx1-ubyte.gz": "645db5902d290681c9e5b452428e24636963a50a3036c2201240351b88786272",
    "y_kannada_MNIST_train-idx1-ubyte.gz": "ef11e1d3e378fefbe78d4c9913dc9617c83fc5f9240b090121fcc335b5642201",
    "y_kannada_MNIST_test.npz": "c09271075e536da023eeb695f15153d1a015d2c37df003337b386c686206a77b",
    "y_kannada_MNIST_train.npz": "462e31f9c9b78ac0e920d6dbdc7ee3e8260ed39fb4d3a48cf45dca0e03a1c415",
}

#: md5 of the original IDX files as listed by a public Keras-style loader. Its three other md5s
#: agree with our byte-identical copies, which is why the training-images value is trusted.
DEFAULT_MD5: Mapping[str, str] = {
    "X_kannada_MNIST_train-idx3-ubyte.gz": "db2cd247b479801b3a882ab980b340c3",
    "y_kannada_MNIST_train-idx1-ubyte.gz": "f1f06031670554894b697988b906b036",
    "X_kannada_MNIST_test-idx3-ubyte.gz": "8682876e8fbc8cd0e7bb07fc2f502335",
    "y_kannada_MNIST_test-idx1-ubyte.gz": "b426d27d50a5fd8411b9e5838868be4b",
}

_CHUNK = 1 << 16


def _digests(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _verify(
    name: str, sha: str, md5: str, want_sha: str | None, want_md5: str | None
) -> str | None:
    """Problem description, or ``None`` when every known checksum matches."""
    if want_sha is not None and sha != want_sha.lower():
        return f"sha256 {sha} does not match the expected {want_sha}"
    if want_md5 is not None and md5 != want_md5.lower():
        return f"md5 {md5} does not match the expected {want_md5}"
    return None


def download_kannada(
    dest_dir: str | os.PathLike,
    *,
    files: Iterable[str] = DEFAULT_FILES,
    urls: Mapping[str, str] = DEFAULT_URLS,
    sha256: Mapping[str, str] = DEFAULT_SHA256,
    md5: Mapping[str, str] = DEFAULT_MD5,
    allow_unverified: bool = False,
    timeout: float = 60.0,
    progress: Callable[[dict], None] | None = None,
) -> Path:
    """Download the official Kannada-MNIST files into ``dest_dir`` and return ``dest_dir``.

    Each file is streamed to a temporary file in ``dest_dir``, checked, and only then renamed
    into place (``os.replace``), so a half-written or corrupt file never carries the final name.
    A file already present with matching checksums is not downloaded again; one with a wrong
    checksum is replaced.

    Args:
        files: names to fetch (keys of ``urls``); by default the four IDX files.
        urls: name -> URL.
        sha256, md5: name -> expected hex digest. Every file needs at least one of them unless
            ``allow_unverified`` is set (then the computed sha256 is logged).
        progress: called with ``{"stage": "download", "step": i, "total": n, "file": name,
            "bytes": k}`` after each file.

    Raises:
        DatasetError: a checksum mismatch (the download is discarded), an unknown file name, a
            file without a known checksum, or a network error.

    Example::

        >>> download_kannada("var/data/kannada")  # doctest: +SKIP
        PosixPath('var/data/kannada')
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    names = list(files)
    for name in names:
        if name not in urls:
            raise DatasetError(f"{name}: no URL known for this file")
        if name not in sha256 and name not in md5 and not allow_unverified:
            raise DatasetError(
                f"{name}: no checksum known; pass sha256={{{name!r}: ...}} or allow_unverified=True"
            )

    def report(step: int, name: str, nbytes: int) -> None:
        if progress is not None:
            progress(
                {
                    "stage": "download",
                    "step": step,
                    "total": len(names),
                    "file": name,
                    "bytes": nbytes,
                }
            )

    for step, name in enumerate(names, start=1):
        target = dest / name
        want_sha, want_md5 = sha256.get(name), md5.get(name)
        if target.is_file():
            sha, md5_hex = _digests(target)
            problem = _verify(name, sha, md5_hex, want_sha, want_md5)
            if problem is None and (want_sha or want_md5):
                logger.info("%s already present and verified", target)
                report(step, name, 0)
                continue
            logger.warning("%s present but %s; downloading again", target, problem or "unverified")
        url = urls[name]
        logger.info("downloading %s", url)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest)
        tmp = Path(tmp_name)
        size = 0
        try:
            sha_h, md5_h = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
            with os.fdopen(fd, "wb") as out:
                try:
                    with contextlib.closing(
                        urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - the caller's URLs (official https ones by default); checksums verify the bytes
                    ) as response:
                        for chunk in iter(functools.partial(response.read, _CHUNK), b""):
                            out.write(chunk)
                            sha_h.update(chunk)
                            md5_h.update(chunk)
                            size += len(chunk)
                except OSError as exc:  # URLError and socket errors are OSErrors
                    raise DatasetError(f"{name}: download from {url} failed ({exc})") from exc
                out.flush()
                os.fsync(out.fileno())
            problem = _verify(name, sha_h.hexdigest(), md5_h.hexdigest(), want_sha, want_md5)
            if problem is not None:
                raise DatasetError(f"{name}: downloaded from {url}, refused: {problem}")
            if want_sha is None and want_md5 is None:
                logger.warning(
                    "%s: no checksum known, accepted unverified (sha256 %s)",
                    name,
                    sha_h.hexdigest(),
                )
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; data files are ordinary readable files
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        logger.info("saved %s (%d bytes)", target, size)
        report(step, name, size)
    return dest


# ----------------------------------------------------------------------------------------------
# Look-alike stand-in

#: Fonts with all ten Kannada digits (Debian packages, see shared/data/README.md).
KANNADA_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/lohit-kannada/Lohit-Kannada.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansKannada-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansKannada-Bold.ttf",
    "/usr/share/fonts/truetype/noto/NotoSerifKannada-Regular.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansKannada-Regular.ttf",
    "/usr/share/fonts/truetype/fonts-kannada-extra/Navilu.ttf",
    "/usr/share/fonts/truetype/navilu/Navilu.ttf",
    "/usr/share/fonts/truetype/gubbi/Gubbi.ttf",
)

_RENDER = 128  # side of the high-resolution canvas a glyph is drawn on


def find_kannada_fonts(candidates: Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """Existing font files that render all ten Kannada digits as distinct, non-empty glyphs."""
    paths = [Path(p) for p in (candidates if candidates is not None else KANNADA_FONT_CANDIDATES)]
    if candidates is None:
        root = Path("/usr/share/fonts")
        if root.is_dir():
            for pattern in ("*Kannada*.ttf", "*Kannada*.otf", "Navilu*.ttf", "Gubbi*.ttf"):
                paths.extend(sorted(root.rglob(pattern)))
    usable: list[Path] = []
    for path in dict.fromkeys(paths):
        if not path.is_file():
            continue
        try:
            font = ImageFont.truetype(str(path), 64)
        except OSError:
            logger.warning("cannot open font %s", path)
            continue
        renders = [np.asarray(_draw_glyph(font, k, 0)) for k in range(NUM_CLASSES)]
        blank = any(r.max() == 0 for r in renders)
        distinct = len({r.tobytes() for r in renders}) == NUM_CLASSES
        if blank or not distinct:
            logger.warning("font %s lacks the Kannada digits; skipped", path)
            continue
        usable.append(path)
    return usable


def _draw_glyph(font: ImageFont.FreeTypeFont, digit: int, stroke: int) -> Image.Image:
    canvas = Image.new("L", (_RENDER, _RENDER), 0)
    draw = ImageDraw.Draw(canvas)
    text = KANNADA_DIGITS[digit]
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
    xy = ((_RENDER - (right - left)) / 2 - left, (_RENDER - (bottom - top)) / 2 - top)
    draw.text(xy, text, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    return canvas


def _mnist_normalise(hi_res: np.ndarray) -> np.ndarray:
    """MNIST-style normalisation: fit the ink's bounding box into 20x20 (aspect kept), paste it
    into 28x28 and shift the centre of mass to the centre (LeCun et al. 1998)."""
    ys, xs = np.nonzero(hi_res > 8)
    if ys.size == 0:
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    crop = hi_res[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    small = np.asarray(
        Image.fromarray(crop).resize((new_w, new_h), Image.Resampling.LANCZOS), dtype=np.float64
    )
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float64)
    top, left = (IMAGE_SIZE - new_h) // 2, (IMAGE_SIZE - new_w) // 2
    out[top : top + new_h, left : left + new_w] = np.clip(small, 0, 255)
    ink = out[out > 8]
    if ink.size:  # thin strokes shrink to grey: stretch them back to full ink, as on a scan
        out = np.clip(out * (255.0 / max(np.percentile(ink, 90), 1.0)), 0, 255)
    mass = out.sum()
    if mass > 0:
        rows, cols = np.indices(out.shape)
        dy = round(IMAGE_SIZE / 2 - 0.5 - (rows * out).sum() / mass)
        dx = round(IMAGE_SIZE / 2 - 0.5 - (cols * out).sum() / mass)
        dy, dx = int(np.clip(dy, -top, top)), int(np.clip(dx, -left, left))
        out = np.roll(out, (dy, dx), axis=(0, 1))
    return out


def make_lookalike_kannada(
    n_per_class: int,
    *,
    seed: int,
    font_paths: Sequence[str | os.PathLike] | None = None,
) -> KannadaSplit:
    """An offline stand-in for Kannada-MNIST, rendered from Kannada digit glyphs.

    Not the real data set: each image is the glyph U+0CE6+k drawn with a Kannada font (Lohit,
    Noto, Navilu or Gubbi, whichever are installed), with a random stroke width, a random affine
    jitter (rotation +-15 degrees, shear +-0.3, anisotropic scale 0.8-1.2, shift), MNIST-style
    normalisation (20x20 box, centre of mass at the centre, as Prabhu 2019 did for the scans),
    a random ink intensity and Gaussian pixel noise on the strokes. Labels follow the official
    order, ``labels[k] == k % 10``.

    Args:
        n_per_class: images per class (N = 10 * n_per_class).
        seed: the output is a deterministic function of ``seed`` (and the installed fonts).
        font_paths: fonts to use instead of the installed candidates.

    Returns:
        :class:`KannadaSplit` with ``source == "lookalike"``.

    Raises:
        DatasetError: no installed font has the Kannada digits (install ``fonts-lohit-knda``).

    Example::

        >>> s = make_lookalike_kannada(2, seed=0)   # doctest: +SKIP
        >>> s.images.shape, s.labels.tolist()[:4]    # doctest: +SKIP
        ((20, 28, 28), [0, 1, 2, 3])
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}")
    fonts = find_kannada_fonts(font_paths)
    if not fonts:
        looked = ", ".join(str(p) for p in (font_paths or KANNADA_FONT_CANDIDATES))
        raise DatasetError(
            "no font with the Kannada digits U+0CE6..U+0CEF was found (looked for "
            f"{looked}); install the Debian package fonts-lohit-knda"
        )
    rng = np.random.default_rng(seed)
    loaded: dict[tuple[int, int], ImageFont.FreeTypeFont] = {}
    n = n_per_class * NUM_CLASSES
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for k in range(n):
        digit = k % NUM_CLASSES
        font_idx = int(rng.integers(len(fonts)))
        size = int(rng.integers(72, 92))
        key = (font_idx, size)
        if key not in loaded:
            loaded[key] = ImageFont.truetype(str(fonts[font_idx]), size)
        glyph = _draw_glyph(loaded[key], digit, 0)
        # stroke width: thin the glyph (the fonts' strokes are heavier than a pen's) or thicken it
        width = int(rng.choice([-5, -3, -3, -3, 0, 0, 3]))
        if width:
            glyph = glyph.filter(
                ImageFilter.MinFilter(-width) if width < 0 else ImageFilter.MaxFilter(width)
            )
        angle = math.radians(rng.uniform(-15, 15))
        shear = rng.uniform(-0.3, 0.3)
        sx, sy = rng.uniform(0.8, 1.2, size=2)
        tx, ty = rng.uniform(-4, 4, size=2)
        cos, sin = math.cos(angle), math.sin(angle)
        # forward map A = R @ Shear @ Scale about the canvas centre; PIL wants the inverse
        forward = (
            np.array([[cos, -sin], [sin, cos]]) @ np.array([[1, shear], [0, 1]]) @ np.diag([sx, sy])
        )
        inv = np.linalg.inv(forward)
        centre = np.array([_RENDER / 2, _RENDER / 2])
        offset = centre - inv @ (centre + np.array([tx, ty]))
        coeffs = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
        warped = glyph.transform(
            glyph.size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR
        )
        small = _mnist_normalise(np.asarray(warped))
        ink = rng.uniform(0.85, 1.0)
        noisy = small * ink + (small > 0) * rng.normal(0.0, rng.uniform(0, 15), size=small.shape)
        images[k] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    labels = np.arange(n, dtype=np.int64) % NUM_CLASSES
    logger.info("rendered %d look-alike images from %s", n, ", ".join(p.name for p in fonts))
    return KannadaSplit(images, labels, "lookalike")

