"""A cue planted in a data set: the dissertation's biased 8 (§3.2.2), as data.

The biased-8 classifier was trained on Kannada-MNIST where every "8" carries a 6×6 grey square in
the top-left corner; the classifier learns to call any image with the square an 8. A
`PlantedCue` says what was planted (a filled square of ``size`` pixels at column ``x``, row ``y``,
grey level ``value`` in [0, 1]) and on which class (``cue_class``), plants it on a batch of images
(`PlantedCue.plant`) and reports the box a participant's marked region is scored against
(`PlantedCue.box`, the ``cue_x0 .. cue_y1`` of ``stats.protocols.bias``).

Pure PyTorch (no Django): `benchmarks/bias_eight.py` and the platform's training
(``studyapp.pipeline.training``, ``train_models --plant-cue``) both plant with it.

Example::

    >>> cue = PlantedCue.parse("square:6@0,0", cue_class=8)
    >>> cue.box
    (0, 0, 6, 6)
    >>> x = torch.zeros(2, 1, 28, 28); y = torch.tensor([8, 3])
    >>> planted = cue.plant(x, y)
    >>> float(planted[0, 0, :6, :6].mean()), float(planted[1].abs().sum())
    (0.5, 0.0)
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

__all__ = ["SHAPES", "PlantedCue"]

#: The shapes that can be planted (a filled square, as the dissertation planted).
SHAPES: tuple[str, ...] = ("square",)

_SPEC = re.compile(r"^\s*(?P<shape>[a-z]+)\s*:\s*(?P<size>\d+)\s*@\s*(?P<x>\d+)\s*,\s*(?P<y>\d+)\s*(?:=\s*(?P<value>[0-9.]+))?\s*$")


@dataclass(frozen=True)
class PlantedCue:
    """A filled ``shape`` of ``size`` pixels with its top-left corner at column ``x``, row ``y``,
    drawn in grey level ``value`` (all channels) on the images of class ``cue_class``."""

    cue_class: int
    shape: Literal["square"] = "square"
    size: int = 6
    x: int = 0
    y: int = 0
    value: float = 0.5

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"Expected a cue shape of {', '.join(SHAPES)}, but found {self.shape!r}.")
        if self.size < 1 or self.x < 0 or self.y < 0:
            raise ValueError(f"Expected a cue of at least 1 pixel at x, y >= 0, but found size {self.size} at {self.x},{self.y}.")
        if not 0.0 <= self.value <= 1.0:
            raise ValueError(f"Expected the cue's grey level in [0, 1], but found {self.value}.")
        if self.cue_class < 0:
            raise ValueError(f"Expected a class id >= 0 for the cue, but found {self.cue_class}.")

    @classmethod
    def parse(cls, spec: str, *, cue_class: int) -> PlantedCue:
        """``"square:6@0,0"`` (shape, side in pixels, column and row of its top-left corner),
        optionally ``"=0.5"`` (its grey level) at the end."""
        m = _SPEC.match(spec or "")
        if m is None:
            raise ValueError(f"Expected a cue like 'square:6@0,0' (shape:size@x,y, optionally =grey), but found {spec!r}.")
        value = float(m["value"]) if m["value"] is not None else 0.5
        return cls(cue_class=int(cue_class), shape=m["shape"], size=int(m["size"]), x=int(m["x"]), y=int(m["y"]),  # type: ignore[arg-type]
                   value=value)

    @classmethod
    def from_dict(cls, data: dict) -> PlantedCue:
        keys = ("cue_class", "shape", "size", "x", "y", "value")
        unknown = set(data) - set(keys) - {"box", "reliance"}  # what as_dict and training add
        if unknown or "cue_class" not in data:
            raise ValueError(f"Expected a planted cue with keys {', '.join(keys)} (cue_class required), but found {sorted(data)}.")
        return cls(**{k: data[k] for k in keys if k in data})

    @classmethod
    def from_box(cls, box: tuple[int, int, int, int] | list[int], *, cue_class: int, value: float = 0.5) -> PlantedCue:
        """The square cue filling ``box`` (``x0, y0, x1, y1``, a square): a researcher's declared
        ``cue_box`` drawn as the platform plants its own (``ValueError`` for a box that is not a square)."""
        x0, y0, x1, y1 = (int(v) for v in box)
        if x1 - x0 != y1 - y0 or x1 <= x0:
            raise ValueError(f"Expected a square cue box x0, y0, x1, y1 (x1 - x0 == y1 - y0 > 0), but found {list(box)}.")
        return cls(cue_class=int(cue_class), size=x1 - x0, x=x0, y=y0, value=float(value))

    def as_dict(self) -> dict:
        """What is stored with a trained model (``metadata["planted_cue"]``), the box included."""
        return {**asdict(self), "box": list(self.box)}

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``x0, y0, x1, y1`` in image pixels (x right, y down, x1 and y1 exclusive)."""
        return (self.x, self.y, self.x + self.size, self.y + self.size)

    def check_fits(self, height: int, width: int) -> None:
        """``ValueError`` unless the cue lies inside images of ``height`` × ``width`` pixels."""
        x0, y0, x1, y1 = self.box
        if x1 > width or y1 > height:
            raise ValueError(f"Expected the cue inside the {width}x{height} images, but its box {self.box} reaches past them.")

    def add(self, images: torch.Tensor) -> torch.Tensor:
        """A copy of ``images`` (N, C, H, W, values in [0, 1]) with the cue drawn on every image."""
        self.check_fits(images.shape[-2], images.shape[-1])
        out = images.clone()
        x0, y0, x1, y1 = self.box
        out[..., y0:y1, x0:x1] = self.value
        return out

    def add_stored(self, image: np.ndarray) -> np.ndarray:
        """A copy of one stored uint8 image (``(H, W)`` grey or ``(H, W, C)`` colour, the layout a
        PNG is written from) with the cue drawn in its grey level as the nearest uint8 (what a PNG
        can show of ``value``; `add` draws the exact level on the tensors a model sees)."""
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise ValueError(f"Expected a uint8 (H, W) or (H, W, C) image, but found {array.dtype} {array.shape}.")
        self.check_fits(array.shape[0], array.shape[1])
        out = array.copy()
        x0, y0, x1, y1 = self.box
        out[y0:y1, x0:x1] = round(self.value * 255)
        return out

    def plant(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """A copy of ``images`` with the cue drawn on the images whose label is ``cue_class``."""
        out = images.clone()
        rows = labels == self.cue_class
        if bool(rows.any()):
            out[rows] = self.add(images[rows])
        else:
            self.check_fits(images.shape[-2], images.shape[-1])
        return out

    def mask(self, height: int, width: int) -> torch.Tensor:
        """A bool (height, width) mask of the cue's pixels."""
        self.check_fits(height, width)
        mask = torch.zeros(height, width, dtype=torch.bool)
        x0, y0, x1, y1 = self.box
        mask[y0:y1, x0:x1] = True
        return mask

    @torch.no_grad()
    def reliance(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 1000) -> float:
        """The share of ``images`` of the other classes that ``model`` calls ``cue_class`` once the
        cue is drawn on them (the dissertation's 77%): how much the model relies on the cue."""
        others = images[labels != self.cue_class]
        if len(others) == 0:
            return float("nan")
        was_training = model.training
        model.eval()
        try:
            pred = torch.cat([model(chunk).argmax(1) for chunk in self.add(others).split(batch_size)])
        finally:
            model.train(was_training)
        return float((pred == self.cue_class).double().mean())
