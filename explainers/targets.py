"""Explanation targets: callables ``logits (N, C) -> scores (N,)``, one score per image.

As in pytorch-grad-cam, a target says *what* to explain, so "explain class c" and "explain
true versus probe" run through the same code path (:class:`~explainers.gradcam.GradCAM`
back-propagates ``target(logits).sum()``; each score depends on its own row only, so images in
a batch never mix).

Example::

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0]])
    >>> ClassTarget(torch.tensor([0, 2]))(logits)
    tensor([2., 1.])
    >>> ContrastTarget(torch.tensor([0, 1]), torch.tensor([1, 2]))(logits)
    tensor([1.5000, 2.0000])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from explainers.hooks import ExplainerInputError, check_labels

__all__ = ["ClassTarget", "ContrastTarget", "LogProbTarget", "Target", "as_target"]

Target = Callable[[Tensor], Tensor]


def _labels(labels: Tensor | int | list[int]) -> Tensor:
    t = torch.as_tensor(labels).reshape(-1)
    return check_labels(t, t.numel(), name="labels")


def _pick(logits: Tensor, labels: Tensor) -> Tensor:
    if logits.dim() != 2:
        raise ExplainerInputError(f"target expects logits of shape (N, C), got {tuple(logits.shape)}")
    n, num_classes = logits.shape
    one = labels.reshape(()) if labels.numel() == 1 else labels  # one label for every image
    labels = check_labels(one, n, num_classes, name="labels").to(logits.device)
    return logits.gather(1, labels[:, None])[:, 0]


def as_target(targets: Target | Tensor | Sequence[int] | int, n: int) -> Target:
    """A target callable as it is; integer labels (one per image, or one for all ``n``) as
    :class:`ClassTarget`, checked against the batch size ``n``."""
    if callable(targets):
        return targets
    return ClassTarget(check_labels(targets, n, name="targets"))


class ClassTarget:
    """Score = logit of ``labels[i]`` for image ``i`` (Grad-CAM's ``y^c``, before softmax)."""

    def __init__(self, labels: Tensor | int | list[int]) -> None:
        self.labels = _labels(labels)

    def __call__(self, logits: Tensor) -> Tensor:
        return _pick(logits, self.labels)

    def __repr__(self) -> str:
        return f"ClassTarget({self.labels.tolist()})"


class ContrastTarget:
    """Score = ``logit[true] - logit[probe]`` per image: evidence for true *over* probe."""

    def __init__(self, true: Tensor | int | list[int], probe: Tensor | int | list[int]) -> None:
        self.true, self.probe = _labels(true), _labels(probe)

    def __call__(self, logits: Tensor) -> Tensor:
        return _pick(logits, self.true) - _pick(logits, self.probe)

    def __repr__(self) -> str:
        return f"ContrastTarget({self.true.tolist()}, {self.probe.tolist()})"


class LogProbTarget:
    """Score = ``log_softmax(logits)[labels[i]]`` (the llh used by CDeepEx)."""

    def __init__(self, labels: Tensor | int | list[int]) -> None:
        self.labels = _labels(labels)

    def __call__(self, logits: Tensor) -> Tensor:
        return _pick(torch.log_softmax(logits, dim=1), self.labels)

    def __repr__(self) -> str:
        return f"LogProbTarget({self.labels.tolist()})"
