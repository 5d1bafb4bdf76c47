"""Model hygiene shared by every explainer and trainer: layer capture, state guards, input checks.

Every method in :mod:`explainers` must leave the caller's model exactly as it found it
(captum's rule, and the opposite of pytorch-grad-cam's habit of calling ``model.eval()`` for
you). The helpers here make that a one-liner::

    with model_guard(D, G):            # eval mode, frozen parameters, restored in `finally`
        with LayerCapture(D, D.conv2) as cap:
            logits = D(images)          # cap.activation is a leaf that requires grad

* :func:`model_guard` puts the models in eval mode (so BatchNorm / Dropout cannot couple the
  images of a batch or add noise) and sets ``requires_grad=False`` on their parameters (so
  backward passes compute only the gradients the explainer needs). On exit, also after an
  exception, every submodule's ``training`` flag and every parameter's ``requires_grad`` are
  restored to what they were. The trainers use the same guard in train mode without freezing
  (``model_guard(net, training=True, freeze=False)``).
* :class:`LayerCapture` registers one forward hook and removes it in ``finally``.
* ``check_*`` (and :func:`as_images`, which also takes uint8 numpy arrays) raise
  :class:`ExplainerInputError` (a ``ValueError``) with a message that names the argument and
  what was wrong. :func:`model_device` is where inputs are moved to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from explainers.datasets.common import to_tensor

__all__ = [
    "ExplainerInputError",
    "LayerCapture",
    "Progress",
    "as_images",
    "check_images",
    "check_labels",
    "check_scores",
    "model_device",
    "model_dtype",
    "model_guard",
    "resolve_layer",
]

#: Progress callback: called with ``{"stage", "step", "total", ...}`` (docs/CONTRACTS.md).
Progress = Callable[[dict], None]


class ExplainerInputError(ValueError):
    """Bad input to an explainer (shape, range, non-finite values, impossible labels)."""


@contextlib.contextmanager
def model_guard(
    *models: nn.Module | Callable[..., Any] | None, training: bool = False, freeze: bool = True
) -> Iterator[None]:
    """Eval mode and frozen parameters inside the block; the caller's state restored after.

    Accepts modules, ``None`` (ignored) and bound methods of modules (``vae.encode``: the
    owning module is guarded). Restores the ``training`` flag of every submodule and the
    ``requires_grad`` flag of every parameter, in ``finally``.

    Args:
        training: the mode inside the block (``True`` for the trainers).
        freeze: set ``requires_grad=False`` on every parameter inside the block.
    """
    modules: list[nn.Module] = []
    for m in models:
        owner = m if isinstance(m, nn.Module) else getattr(m, "__self__", None)
        if isinstance(owner, nn.Module) and all(owner is not x for x in modules):
            modules.append(owner)
    modes = [(sub, sub.training) for m in modules for sub in m.modules()]
    flags = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    try:
        for m in modules:
            m.train(training)
        if freeze:
            for p, _ in flags:
                p.requires_grad_(False)
        yield
    finally:
        for sub, mode in modes:
            sub.training = mode
        for p, requires_grad in flags:
            p.requires_grad_(requires_grad)


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """Return ``layer`` itself, or the submodule of ``model`` with that dotted name."""
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError as exc:
            raise ExplainerInputError(f"model has no submodule named {layer!r}") from exc
    if not isinstance(layer, nn.Module):
        raise TypeError(f"layer must be an nn.Module or a submodule name, got {type(layer)!r}")
    if all(layer is not m for m in model.modules()):
        raise ExplainerInputError("layer is not a submodule of model")
    return layer


class LayerCapture:
    """Capture one layer's output as a gradient-carrying leaf; the hook is removed on exit.

    The forward hook replaces the layer's output ``A`` by ``leaf.clone()`` where
    ``leaf = A.detach().requires_grad_()``. Downstream computation is unchanged (values are
    identical), but ``torch.autograd.grad(score, cap.activation)`` then only back-propagates
    from the output to this layer, never into earlier layers or parameters. The clone keeps
    in-place operations after the layer (``ReLU(inplace=True)``) legal and leaves the captured
    values untouched. If the layer runs several times per forward pass, the last call wins.
    """

    def __init__(self, model: nn.Module, layer: nn.Module | str) -> None:
        self.layer = resolve_layer(model, layer)
        self.activation: Tensor | None = None
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> Tensor:
        if not isinstance(output, Tensor):
            raise TypeError(f"captured layer must return a tensor, got {type(output)!r}")
        leaf = output.detach().requires_grad_(True)
        self.activation = leaf
        return leaf.clone()

    def __enter__(self) -> LayerCapture:
        self._handle = self.layer.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def model_dtype(model: nn.Module, default: torch.dtype = torch.float32) -> torch.dtype:
    """Floating dtype of the first floating parameter or buffer of ``model``."""
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point():
            return t.dtype
    return default


def model_device(model: nn.Module) -> torch.device:
    """Device of the first parameter or buffer of ``model`` (CPU for a model without either)."""
    for t in [*model.parameters(), *model.buffers()]:
        return t.device
    return torch.device("cpu")


def check_images(images: Any, *, name: str = "images", channels: int | None = None) -> Tensor:
    """Validate a batch of images ``(N, C, H, W)``: a floating tensor, N >= 1, all finite."""
    if not isinstance(images, Tensor):
        raise ExplainerInputError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ExplainerInputError(
            f"{name} must have shape (N, C, H, W), got {tuple(images.shape)}"
            + (" (add a batch dimension with images[None])" if images.dim() == 3 else "")
        )
    if images.shape[0] == 0:
        raise ExplainerInputError(f"{name} is an empty batch")
    if channels is not None and images.shape[1] != channels:
        raise ExplainerInputError(
            f"{name} must have {channels} channel(s), got shape {tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise ExplainerInputError(f"{name} must be a floating tensor, got {images.dtype}")
    if not bool(torch.isfinite(images).all()):
        bad = (~torch.isfinite(images)).flatten(1).any(1).nonzero().flatten().tolist()
        raise ExplainerInputError(f"{name} contain NaN or infinite values (images {bad[:10]})")
    return images


def as_images(images: Any, *, name: str = "images") -> Tensor:
    """:func:`check_images` for a tensor; uint8 numpy images are converted first
    (:func:`~explainers.datasets.common.to_tensor`, which refuses other dtypes)."""
    if isinstance(images, np.ndarray):
        images = to_tensor(images)
    return check_images(images, name=name)


def check_labels(labels: Any, n: int, num_classes: int | None = None, *, name: str) -> Tensor:
    """Validate labels: int64 tensor of shape ``(n,)`` with values in [0, C).

    Accepts a tensor, a numpy array or a sequence; a single integer (or 0-d tensor) means the
    same label for all ``n`` images. ``num_classes=None`` skips the range check (for callers
    that do not know C yet).
    """
    labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise ExplainerInputError(f"{name} must be integer class indices, got {labels.dtype}")
    if labels.dim() == 0:
        labels = labels.expand(n).clone()
    if labels.shape != (n,):
        raise ExplainerInputError(f"{name} must have shape ({n},), got {tuple(labels.shape)}")
    labels = labels.to(torch.int64)
    if num_classes is not None:
        bad = (labels < 0) | (labels >= num_classes)
        if bool(bad.any()):
            raise ExplainerInputError(
                f"{name} out of range [0, {num_classes}): {labels[bad][:10].tolist()}"
            )
    return labels


def check_scores(scores: Any, n: int) -> Tensor:
    """A target's output must be one score per image, shape ``(n,)``."""
    if not isinstance(scores, Tensor) or scores.shape != (n,):
        got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ExplainerInputError(f"target must return scores of shape ({n},), got {got}")
    return scores
