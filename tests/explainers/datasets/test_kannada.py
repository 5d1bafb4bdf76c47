"""explainers.datasets.kannada: loaders of every official format, their error messages, the checksummed
download (network mocked) and the look-alike stand-in."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from explainers.datasets import kannada
from explainers.datasets.common import DatasetError
from explainers.datasets.kannada import (
    KannadaSplit,
    download_kannada,
    load_dig_mnist,
    load_kannada,
    make_lookalike_kannada,
    read_idx,
    read_kaggle_csv,
)

SHARED_KANNADA = Path(__file__).resolve().parents[4] / "shared" / "data" / "kannada_mnist"


def real_dir() -> Path:
    configured = os.environ.get("KANNADA_MNIST_DIR")
    for candidate in ([Path(configured)] if configured else []) + [SHARED_KANNADA]:
        if (candidate / "X_kannada_MNIST_test.npz").is_file() or (
            candidate / "X_kannada_MNIST_test-idx3-ubyte.gz"
        ).is_file():
            return candidate
    pytest.skip("real Kannada-MNIST files not available (set KANNADA_MNIST_DIR)")


# ---------------------------------------------------------------------------------------------
# writers of tiny files in each official format


def tiny_arrays(n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def write_npz(directory: Path, stem: str, array: np.ndarray, key: str = "arr_0") -> Path:
    path = directory / f"{stem}.npz"
    np.savez(path, **{key: array})
    return path


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(">u1" if code == 0x08 else array.dtype).tobytes()


def write_idx(directory: Path, name: str, array: np.ndarray, *, compress: bool = True) -> Path:
    path = directory / name
    raw = idx_bytes(array)
    if compress:
        with gzip.open(path, "wb") as handle:
            handle.write(raw)
    else:
        path.write_bytes(raw)
    return path


def write_csv(path: Path, images: np.ndarray, first: np.ndarray, first_name: str = "label") -> Path:
    header = ",".join([first_name] + [f"pixel{k}" for k in range(784)])
    rows = [
        ",".join(str(v) for v in [int(f)] + img.reshape(-1).tolist())
        for f, img in zip(first, images, strict=True)
    ]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def write_split(
    directory: Path, split: str, fmt: str, images: np.ndarray, labels: np.ndarray
) -> None:
    if fmt == "npz":
        write_npz(directory, f"X_kannada_MNIST_{split}", images)
        write_npz(directory, f"y_kannada_MNIST_{split}", labels)
    elif fmt == "idx":
        write_idx(directory, f"X_kannada_MNIST_{split}-idx3-ubyte.gz", images)
        write_idx(directory, f"y_kannada_MNIST_{split}-idx1-ubyte.gz", labels)
    else:
        write_csv(directory / f"{split}.csv", images, labels)


# ---------------------------------------------------------------------------------------------
# real data


def test_real_splits_in_both_official_formats_agree():
    directory = real_dir()
    for split, n in (("train", 60000), ("test", 10000)):
        loaded = {fmt: load_kannada(directory, split, format=fmt) for fmt in ("npz", "idx")}
        for fmt, s in loaded.items():
            assert s.source == fmt
            assert s.images.shape == (n, 28, 28) and s.images.dtype == np.uint8
            assert s.labels.shape == (n,) and s.labels.dtype == np.int64
            # documented in PROVENANCE.md: the official labels are not shuffled
            np.testing.assert_array_equal(s.labels, np.arange(n) % 10)
            assert np.bincount(s.labels).tolist() == [n // 10] * 10
            # white symbol on black: corners are background, strokes reach full intensity
            assert s.images[:, 0, 0].max() == 0 and s.images.max() == 255
        np.testing.assert_array_equal(loaded["npz"].images, loaded["idx"].images)
    assert load_kannada(directory, "test").source == "npz"  # auto prefers npz


def test_real_test_idx_checksum_matches_download_constants():
    directory = real_dir()
    for name, expected in kannada.DEFAULT_SHA256.items():
        path = directory / name
        if path.is_file():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == expected, name
    for name in ("X_kannada_MNIST_test-idx3-ubyte.gz", "y_kannada_MNIST_test-idx1-ubyte.gz"):
        path = directory / name
        if path.is_file():
            assert hashlib.md5(path.read_bytes()).hexdigest() == kannada.DEFAULT_MD5[name]  # noqa: S324 - the official files publish md5 sums


# ---------------------------------------------------------------------------------------------
# tiny files of each format


@pytest.mark.parametrize("fmt", ["npz", "idx", "csv"])
def test_each_format_round_trips(tmp_path, fmt):
    images, labels = tiny_arrays(20)
    write_split(tmp_path, "train", fmt, images, labels)
    split = load_kannada(tmp_path, "train")
    assert isinstance(split, KannadaSplit) and split.source == fmt and len(split) == 20
    np.testing.assert_array_equal(split.images, images)
    np.testing.assert_array_equal(split.labels, labels.astype(np.int64))
    assert split.labels.dtype == np.int64


def test_uncompressed_idx_and_test_split(tmp_path):
    images, labels = tiny_arrays(10, seed=3)
    write_idx(tmp_path, "X_kannada_MNIST_test-idx3-ubyte", images, compress=False)
    write_idx(tmp_path, "y_kannada_MNIST_test-idx1-ubyte", labels, compress=False)
    split = load_kannada(tmp_path, "test")
    np.testing.assert_array_equal(split.images, images)


def test_kaggle_layout_in_subfolders_is_found(tmp_path):
    images, labels = tiny_arrays(10)
    nested = tmp_path / "Kannada_MNIST_npz" / "Kannada_MNIST"
    nested.mkdir(parents=True)
    write_split(nested, "test", "npz", images, labels)
    dig = tmp_path / "Kannada_MNIST_npz" / "Dig_MNIST"
    dig.mkdir()
    write_npz(dig, "X_dig_MNIST", images[::-1].copy())
    write_npz(dig, "y_dig_MNIST", labels[::-1].copy())
    np.testing.assert_array_equal(load_kannada(tmp_path, "test").images, images)
    np.testing.assert_array_equal(load_dig_mnist(tmp_path).images, images[::-1])


def test_dig_mnist_idx_and_csv(tmp_path):
    images, labels = tiny_arrays(12, seed=5)
    write_idx(tmp_path, "X_dig_MNIST-idx3-ubyte.gz", images)
    write_idx(tmp_path, "y_dig_MNIST-idx1-ubyte.gz", labels)
    assert load_dig_mnist(tmp_path).source == "idx"
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    write_csv(csv_dir / "Dig-MNIST.csv", images, labels)
    split = load_dig_mnist(csv_dir)
    assert split.source == "csv"
    np.testing.assert_array_equal(split.images, images)


def test_kaggle_test_csv_has_no_labels(tmp_path):
    images, _ = tiny_arrays(5)
    write_csv(tmp_path / "test.csv", images, np.arange(5), first_name="id")
    with pytest.raises(DatasetError, match=r"test\.csv.*no labels"):
        load_kannada(tmp_path, "test")
    unlabelled = read_kaggle_csv(tmp_path / "test.csv")
    assert unlabelled.ids.tolist() == [0, 1, 2, 3, 4]
    assert (unlabelled.labels == -1).all()
    np.testing.assert_array_equal(unlabelled.images, images)


def test_forced_format_only_looks_for_that_format(tmp_path):
    images, labels = tiny_arrays(10)
    write_split(tmp_path, "train", "npz", images, labels)
    with pytest.raises(DatasetError, match=r"X_kannada_MNIST_train-idx3-ubyte\.gz"):
        load_kannada(tmp_path, "train", format="idx")
    with pytest.raises(ValueError, match="split"):
        load_kannada(tmp_path, "validation")


# ---------------------------------------------------------------------------------------------
# errors name the file and the problem


def test_missing_directory_and_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="directory not found"):
        load_kannada(tmp_path / "nope")
    with pytest.raises(
        DatasetError, match=r"no Kannada-MNIST train files found.*X_kannada_MNIST_train\.npz"
    ):
        load_kannada(tmp_path)


def test_images_without_labels_and_labels_without_images(tmp_path):
    images, labels = tiny_arrays(10)
    write_npz(tmp_path, "X_kannada_MNIST_train", images)
    with pytest.raises(
        DatasetError,
        match=r"X_kannada_MNIST_train\.npz: images found but the labels file .*y_kannada_MNIST_train\.npz is missing",
    ):
        load_kannada(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    write_npz(other, "y_kannada_MNIST_train", labels)
    with pytest.raises(
        DatasetError, match=r"y_kannada_MNIST_train\.npz: labels found but the images file"
    ):
        load_kannada(other)


def test_a_half_pair_in_one_format_does_not_hide_a_complete_other_format(tmp_path):
    """The author's repository has y_*.npz next to the IDX files but no X_*.npz."""
    images, labels = tiny_arrays(10)
    write_npz(tmp_path, "y_kannada_MNIST_test", labels)
    write_split(tmp_path, "test", "idx", images, labels)
    split = load_kannada(tmp_path, "test")
    assert split.source == "idx"
    np.testing.assert_array_equal(split.images, images)
    with pytest.raises(DatasetError, match="labels found but the images file"):
        load_kannada(tmp_path, "test", format="npz")


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (
            np.zeros((4, 28, 27), np.uint8),
            np.zeros(4, np.uint8),
            r"X_kannada_MNIST_train\.npz: images must have shape \(N, 28, 28\), got \(4, 28, 27\)",
        ),
        (
            np.zeros((4, 28, 28), np.float32),
            np.zeros(4, np.uint8),
            r"X_kannada_MNIST_train\.npz: images must be uint8, got dtype float32",
        ),
        (
            np.zeros((4, 28, 28), np.uint8),
            np.array([0, 1, 10, 2]),
            r"y_kannada_MNIST_train\.npz: labels must lie in 0\.\.9, found 10 at index 2",
        ),
        (np.zeros((4, 28, 28), np.uint8), np.array([0, -1, 1, 2]), r"found -1 at index 1"),
        (
            np.zeros((4, 28, 28), np.uint8),
            np.zeros(4, np.float64),
            r"y_kannada_MNIST_train\.npz: labels must be integers",
        ),
        (
            np.zeros((4, 28, 28), np.uint8),
            np.zeros((4, 1), np.uint8),
            r"labels must have shape \(N,\)",
        ),
        (
            np.zeros((4, 28, 28), np.uint8),
            np.zeros(3, np.uint8),
            r"X_kannada_MNIST_train\.npz holds 4 images but .*y_kannada_MNIST_train\.npz holds 3 labels",
        ),
        (np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8), r"holds no images"),
    ],
)
def test_malformed_npz_contents(tmp_path, images, labels, message):
    write_npz(tmp_path, "X_kannada_MNIST_train", images)
    write_npz(tmp_path, "y_kannada_MNIST_train", labels)
    with pytest.raises(DatasetError, match=message):
        load_kannada(tmp_path)


def test_npz_with_wrong_key_or_not_a_zip(tmp_path):
    images, labels = tiny_arrays(4)
    write_npz(tmp_path, "X_kannada_MNIST_train", images, key="images")
    write_npz(tmp_path, "y_kannada_MNIST_train", labels)
    with pytest.raises(
        DatasetError,
        match=r"X_kannada_MNIST_train\.npz: no array under key 'arr_0' \(keys found: \['images'\]\)",
    ):
        load_kannada(tmp_path)
    (tmp_path / "X_kannada_MNIST_train.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DatasetError, match=r"X_kannada_MNIST_train\.npz: not a readable \.npz"):
        load_kannada(tmp_path)


def test_malformed_idx_files(tmp_path):
    images, labels = tiny_arrays(6)
    x_name = "X_kannada_MNIST_train-idx3-ubyte.gz"
    write_idx(tmp_path, "y_kannada_MNIST_train-idx1-ubyte.gz", labels)

    with gzip.open(tmp_path / x_name, "wb") as handle:
        handle.write(b"\x01\x02\x08\x03" + idx_bytes(images)[4:])
    with pytest.raises(
        DatasetError, match=rf"{x_name}: not an IDX file \(bad magic number 01020803\)"
    ):
        load_kannada(tmp_path)

    with gzip.open(tmp_path / x_name, "wb") as handle:
        handle.write(idx_bytes(images)[:-5])
    with pytest.raises(
        DatasetError,
        match=rf"{x_name}: IDX header announces shape \(6, 28, 28\) \(4704 bytes\) but 4699",
    ):
        load_kannada(tmp_path)

    with gzip.open(tmp_path / x_name, "wb") as handle:
        handle.write(bytes([0, 0, 0x42, 3]) + idx_bytes(images)[4:])
    with pytest.raises(DatasetError, match="unknown IDX data type code 0x42"):
        load_kannada(tmp_path)

    (tmp_path / x_name).write_bytes(b"\x1f\x8b garbage that is not gzip")
    with pytest.raises(DatasetError, match=rf"{x_name}: cannot read"):
        load_kannada(tmp_path)

    write_idx(tmp_path, x_name, images[:, :, :20].copy())
    with pytest.raises(
        DatasetError, match=r"images must have shape \(N, 28, 28\), got \(6, 28, 20\)"
    ):
        load_kannada(tmp_path)


def test_idx_reads_other_dtypes_as_stored(tmp_path):
    array = np.arange(6, dtype=">i4").reshape(2, 3)
    path = tmp_path / "ints-idx2"
    path.write_bytes(bytes([0, 0, 0x0C, 2]) + struct.pack(">2I", 2, 3) + array.tobytes())
    out = read_idx(path)
    assert out.dtype == np.int32 and out.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_malformed_csv_files(tmp_path):
    images, labels = tiny_arrays(3)
    path = write_csv(tmp_path / "train.csv", images, labels)
    text = path.read_text()

    path.write_text(text.replace("label,", "digit,", 1))
    with pytest.raises(
        DatasetError, match=r"train\.csv: header must be 'label' or 'id' then pixel0\.\.pixel783"
    ):
        load_kannada(tmp_path)

    path.write_text(text.replace("pixel5,", "pixel05,", 1))
    with pytest.raises(DatasetError, match=r"train\.csv: column 6 is 'pixel05', expected 'pixel5'"):
        load_kannada(tmp_path)

    lines = text.splitlines()
    path.write_text("\n".join([lines[0], lines[1] + ",7", lines[2]]) + "\n")
    with pytest.raises(DatasetError, match=r"train\.csv: cannot parse"):
        load_kannada(tmp_path)

    path.write_text(
        "\n".join([lines[0], lines[1].replace(",", ",300,", 1).rsplit(",", 1)[0]]) + "\n"
    )
    with pytest.raises(DatasetError, match=r"train\.csv: pixel values must lie in 0\.\.255"):
        load_kannada(tmp_path)

    path.write_text("\n".join([lines[0], "11" + lines[1][1:]]) + "\n")
    with pytest.raises(DatasetError, match=r"train\.csv: labels must lie in 0\.\.9, found 11"):
        load_kannada(tmp_path)

    path.write_text("\n".join([lines[0], lines[1].replace(",", ",x,", 1).rsplit(",", 1)[0]]) + "\n")
    with pytest.raises(DatasetError, match=r"train\.csv: cannot parse as CSV of integers"):
        load_kannada(tmp_path)

    path.write_text(lines[0] + "\n")
    with pytest.raises(DatasetError, match=r"train\.csv: holds no rows"):
        load_kannada(tmp_path)


def test_ambiguous_copies_are_refused(tmp_path):
    images, labels = tiny_arrays(4)
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        write_split(tmp_path / sub, "train", "npz", images, labels)
    with pytest.raises(DatasetError, match="several copies of X_kannada_MNIST_train.npz"):
        load_kannada(tmp_path)
    assert len(load_kannada(tmp_path / "a")) == 4


# ---------------------------------------------------------------------------------------------
# download (network mocked)


class FakeNetwork:
    def __init__(self, payloads: dict[str, bytes], fail: set[str] = frozenset()):
        self.payloads, self.fail, self.calls = payloads, set(fail), []

    def __call__(self, url, timeout=None):
        self.calls.append(url)
        if url in self.fail:
            raise urllib.error.URLError("connection refused")
        return io.BytesIO(self.payloads[url])


@pytest.fixture
def no_real_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_download_verifies_and_writes_atomically(tmp_path, monkeypatch):
    payload = gzip.compress(idx_bytes(tiny_arrays(4)[1]))
    url = "https://example.invalid/y.gz"
    fake = FakeNetwork({url: payload})
    monkeypatch.setattr(urllib.request, "urlopen", fake)
    events = []
    out = download_kannada(
        tmp_path / "dl",
        files=["y.gz"],
        urls={"y.gz": url},
        sha256={"y.gz": hashlib.sha256(payload).hexdigest()},
        md5={},
        progress=events.append,
    )
    assert out == tmp_path / "dl"
    assert (out / "y.gz").read_bytes() == payload
    assert (out / "y.gz").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in out.iterdir()) == ["y.gz"]  # no temporary file left
    assert events == [
        {"stage": "download", "step": 1, "total": 1, "file": "y.gz", "bytes": len(payload)}
    ]
    # a second call finds the verified file and does not download again
    download_kannada(
        out,
        files=["y.gz"],
        urls={"y.gz": url},
        sha256={"y.gz": hashlib.sha256(payload).hexdigest()},
        md5={},
    )
    assert fake.calls == [url]


def test_download_refuses_a_mismatched_checksum(tmp_path, monkeypatch):
    url = "https://example.invalid/x.gz"
    monkeypatch.setattr(urllib.request, "urlopen", FakeNetwork({url: b"tampered bytes"}))
    with pytest.raises(
        DatasetError,
        match=r"x\.gz: downloaded from https://example\.invalid/x\.gz, refused: sha256 .* does not match the expected 0000",
    ):
        download_kannada(
            tmp_path, files=["x.gz"], urls={"x.gz": url}, sha256={"x.gz": "0" * 64}, md5={}
        )
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary copy remains


def test_download_checks_md5_when_no_sha256_is_known(tmp_path, monkeypatch):
    url = "https://example.invalid/x.gz"
    monkeypatch.setattr(urllib.request, "urlopen", FakeNetwork({url: b"payload"}))
    with pytest.raises(DatasetError, match="md5 .* does not match"):
        download_kannada(
            tmp_path, files=["x.gz"], urls={"x.gz": url}, sha256={}, md5={"x.gz": "f" * 32}
        )
    download_kannada(
        tmp_path,
        files=["x.gz"],
        urls={"x.gz": url},
        sha256={},
        md5={"x.gz": hashlib.md5(b"payload").hexdigest()},  # noqa: S324 - the official files publish md5 sums
    )
    assert (tmp_path / "x.gz").read_bytes() == b"payload"


def test_download_replaces_a_corrupt_existing_file(tmp_path, monkeypatch):
    url = "https://example.invalid/x.gz"
    fake = FakeNetwork({url: b"good"})
    monkeypatch.setattr(urllib.request, "urlopen", fake)
    (tmp_path / "x.gz").write_bytes(b"bad")
    download_kannada(
        tmp_path,
        files=["x.gz"],
        urls={"x.gz": url},
        sha256={"x.gz": hashlib.sha256(b"good").hexdigest()},
        md5={},
    )
    assert (tmp_path / "x.gz").read_bytes() == b"good" and fake.calls == [url]


def test_download_network_error_and_unknown_checksum(tmp_path, monkeypatch):
    url = "https://example.invalid/x.gz"
    monkeypatch.setattr(urllib.request, "urlopen", FakeNetwork({}, fail={url}))
    with pytest.raises(DatasetError, match=r"x\.gz: download from .* failed .*connection refused"):
        download_kannada(
            tmp_path, files=["x.gz"], urls={"x.gz": url}, sha256={"x.gz": "0" * 64}, md5={}
        )
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DatasetError, match=r"x\.gz: no checksum known"):
        download_kannada(tmp_path, files=["x.gz"], urls={"x.gz": url}, sha256={}, md5={})
    with pytest.raises(DatasetError, match=r"nope\.gz: no URL known"):
        download_kannada(tmp_path, files=["nope.gz"])
    monkeypatch.setattr(urllib.request, "urlopen", FakeNetwork({url: b"anything"}))
    download_kannada(
        tmp_path, files=["x.gz"], urls={"x.gz": url}, sha256={}, md5={}, allow_unverified=True
    )
    assert (tmp_path / "x.gz").read_bytes() == b"anything"


def test_default_download_covers_both_splits_with_checksums(no_real_network):
    for name in kannada.DEFAULT_FILES:
        assert kannada.DEFAULT_URLS[name].startswith(
            "https://raw.githubusercontent.com/vinayprabhu/Kannada_MNIST/"
        )
        assert name in kannada.DEFAULT_SHA256 or name in kannada.DEFAULT_MD5
    assert {n.split("_")[-1].split("-")[0] for n in kannada.DEFAULT_FILES} == {"train", "test"}


def test_default_download_then_load_with_fake_network(tmp_path, monkeypatch):
    images, labels = tiny_arrays(10)
    payloads = {
        "X_kannada_MNIST_train-idx3-ubyte.gz": gzip.compress(idx_bytes(images)),
        "y_kannada_MNIST_train-idx1-ubyte.gz": gzip.compress(idx_bytes(labels)),
    }
    urls = {name: f"https://example.invalid/{name}" for name in payloads}
    monkeypatch.setattr(
        urllib.request, "urlopen", FakeNetwork({urls[n]: p for n, p in payloads.items()})
    )
    download_kannada(
        tmp_path,
        files=list(payloads),
        urls=urls,
        sha256={n: hashlib.sha256(p).hexdigest() for n, p in payloads.items()},
        md5={},
    )
    np.testing.assert_array_equal(load_kannada(tmp_path, "train").images, images)


# ---------------------------------------------------------------------------------------------
# look-alike stand-in


def test_lookalike_shape_labels_and_determinism():
    a = make_lookalike_kannada(6, seed=1)
    assert a.source == "lookalike"
    assert a.images.shape == (60, 28, 28) and a.images.dtype == np.uint8
    np.testing.assert_array_equal(a.labels, np.arange(60) % 10)
    np.testing.assert_array_equal(make_lookalike_kannada(6, seed=1).images, a.images)
    assert not np.array_equal(make_lookalike_kannada(6, seed=2).images, a.images)
    # white on black, like the real data: dark border, bright strokes, a minority of ink pixels
    assert a.images[:, 0, :].max() < 60 and a.images[:, :, 0].max() < 60
    assert (a.images.reshape(60, -1).max(axis=1) > 200).all()
    ink = (a.images > 64).mean()
    assert 0.05 < ink < 0.4
    # jitter: no two images of a class are identical
    for digit in range(10):
        same = a.images[a.labels == digit].reshape(6, -1)
        assert len({row.tobytes() for row in same}) == 6


def test_lookalike_classes_are_separable():
    """Nearest class mean on held-out renders: the ten glyphs must stay distinguishable."""
    train = make_lookalike_kannada(30, seed=0)
    test = make_lookalike_kannada(10, seed=99)

    def feats(split: KannadaSplit) -> np.ndarray:
        return split.images.reshape(len(split), -1).astype(np.float64) / 255

    means = np.stack([feats(train)[train.labels == c].mean(0) for c in range(10)])
    dist = ((feats(test)[:, None, :] - means[None]) ** 2).sum(-1)
    accuracy = (dist.argmin(1) == test.labels).mean()
    assert accuracy > 0.7, accuracy


def test_lookalike_without_a_font_is_a_clear_error(tmp_path):
    not_a_font = tmp_path / "fake.ttf"
    not_a_font.write_bytes(b"nope")
    with pytest.raises(DatasetError, match=r"no font with the Kannada digits .*fonts-lohit-knda"):
        make_lookalike_kannada(1, seed=0, font_paths=[tmp_path / "missing.ttf", not_a_font])


def test_lookalike_rejects_a_font_without_kannada_glyphs():
    latin = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not latin.is_file():
        pytest.skip("DejaVu Sans not installed")
    assert kannada.find_kannada_fonts([latin]) == []
