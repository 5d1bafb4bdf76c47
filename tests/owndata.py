"""A researcher's own data, made for the tests: class-per-folder images and small networks.

Nothing is downloaded. The images are scikit-learn's bundled handwritten digits (8x8, 0-16),
scaled up and, for the RGB sets, drawn in a colour on a coloured background with noise, so
that they look like a small photo set rather than Kannada-MNIST. Two look-alike classes by
default (3 and 8, which people and small networks confuse), named by their folders.

Example::

    root = make_image_folders(tmp_path / "shapes", size=32, rgb=True)     # root/<class>/*.png
    message = spoil_image_folders(root, "mixed modes")                   # a regex of the refusal
    split_root = make_image_folders(tmp_path / "s", layout="split")      # root/train|test/<class>
    x, y = digit_arrays(size=32, rgb=True)                               # uint8 (N, 32, 32, 3), int64
    net = train_small_cnn(x, y, epochs=3)                                # [0, 1] (N, 3, 32, 32) -> logits
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

#: The two classes of the default set, and the folder names a researcher might give them.
CLASSES = (3, 8)
CLASS_NAMES = ("curl", "loop")


@lru_cache(maxsize=8)
def digit_arrays(*, size: int = 32, rgb: bool = True, classes: tuple[int, ...] = CLASSES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``(N, size, size, 3)`` (``rgb``) or ``(N, size, size)`` and labels ``0..k-1``
    (in the order of ``classes``), from scikit-learn's bundled digits. Deterministic in ``seed``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.isin(digits.target, classes)
    images = digits.images[keep] / 16.0  # (N, 8, 8) in [0, 1]
    labels = np.array([classes.index(int(t)) for t in digits.target[keep]], dtype=np.int64)
    rng = np.random.default_rng(seed)
    out = []
    for image in images:
        grey = Image.fromarray((image * 255).astype(np.uint8), mode="L").resize((size, size), Image.Resampling.BILINEAR)
        ink = np.asarray(grey, dtype=np.float32) / 255.0
        if not rgb:
            out.append(np.clip(ink * 255 + rng.normal(0, 6, ink.shape), 0, 255).astype(np.uint8))
            continue
        stroke = rng.uniform(0.55, 1.0, 3)  # a light colour for the symbol
        background = rng.uniform(0.0, 0.3, 3)  # a dark one behind it
        pixel = ink[..., None] * stroke + (1 - ink[..., None]) * background
        pixel += rng.normal(0, 0.02, pixel.shape)
        out.append(np.clip(pixel * 255, 0, 255).astype(np.uint8))
    return np.stack(out), labels


def make_image_folders(
    root: Path, *, size: int = 32, rgb: bool = True, layout: str = "flat", names: tuple[str, ...] = CLASS_NAMES,
    classes: tuple[int, ...] = CLASSES, ext: str = "png", limit: int | None = None,
) -> Path:
    """Write the digits as ``root/<name>/<i>.<ext>`` (``layout="flat"``) or
    ``root/train/<name>/...`` and ``root/test/<name>/...`` (``"split"``, every fifth image in
    test). ``limit`` keeps the first images of each class. Returns ``root``."""
    x, y = digit_arrays(size=size, rgb=rgb, classes=classes)
    root = Path(root)
    for k, name in enumerate(names):
        idx = np.flatnonzero(y == k)[:limit]
        for j, i in enumerate(idx):
            folder = root / name if layout == "flat" else root / ("test" if j % 5 == 0 else "train") / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i]).save(folder / f"{name}_{j:04d}.{ext}")
    return root


#: The ways :func:`spoil_image_folders` breaks a tree, one refusal each.
SPOILS = (
    "broken file", "truncated file", "single class", "too few images", "class without images", "mixed modes",
    "16-bit image", "empty tree", "loose images",
)


def spoil_image_folders(root: Path, how: str) -> str:
    """Break a good tree of :func:`make_image_folders` (flat, RGB, classes ``curl`` and ``loop``,
    at least two images each) on purpose, in one of the ways of :data:`SPOILS`; return a regular
    expression the refusal's message must match."""
    if how == "broken file":
        (root / "loop" / "loop_0002.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
        return "loop_0002.png: not a readable image"
    if how == "truncated file":
        path = root / "curl" / "curl_0001.png"
        path.write_bytes(path.read_bytes()[:-40])
        return "curl_0001.png: not a readable image"
    if how == "single class":
        for p in (root / "loop").iterdir():
            p.unlink()
        (root / "loop").rmdir()
        return re.escape("found one class folder ('curl'); a classifier needs at least two classes")
    if how == "too few images":
        for p in sorted((root / "loop").iterdir())[1:]:
            p.unlink()
        return "loop: class 'loop' has 1 image; each class needs at least 2"
    if how == "class without images":
        (root / "empty").mkdir()
        (root / "empty" / "readme.txt").write_text("nothing here")
        return "class 'empty' has no images"
    if how == "mixed modes":
        Image.new("L", (32, 32), 90).save(root / "loop" / "grey_one.png")
        return r"grey and colour images are mixed \(grey: .*grey_one.png; colour: .*curl_0000.png\)"
    if how == "16-bit image":
        Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(root / "curl" / "deep.png")
        return "deep.png: a 'I;16' image .* cannot be stored as 8-bit"
    if how == "empty tree":
        for p in sorted(root.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        return "the folder is empty; expected one sub-folder of images per class"
    if how == "loose images":
        for p in sorted(root.rglob("*.png")):
            p.rename(root / p.name)
        for p in [root / "curl", root / "loop"]:
            p.rmdir()
        return "lie directly in the folder; put them in one sub-folder per class"
    raise AssertionError(how)


class SmallCNN(nn.Module):
    """A lab's own network: two conv blocks and a linear head; [0, 1] ``(N, C, H, W)`` -> logits."""

    def __init__(self, channels: int = 3, num_classes: int = 2, size: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * (size // 4) ** 2, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_small_cnn(x: np.ndarray, y: np.ndarray, *, epochs: int = 4, seed: int = 0) -> SmallCNN:
    """Train :class:`SmallCNN` on uint8 images (as :func:`digit_arrays` gives) in a few seconds."""
    torch.manual_seed(seed)
    images = torch.from_numpy(x).float().div(255)
    images = images.permute(0, 3, 1, 2) if images.ndim == 4 else images[:, None]
    labels = torch.from_numpy(y)
    net = SmallCNN(images.shape[1], int(labels.max()) + 1, images.shape[-1])
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(labels), 32):
            idx = order[start : start + 32]
            loss = nn.functional.cross_entropy(net(images[idx]), labels[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return net.eval()
