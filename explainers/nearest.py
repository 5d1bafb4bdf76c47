"""Nearest training examples of the predicted class: Nguyen et al.'s strongest baseline.

Nguyen, Kim & Nguyen, "The effectiveness of feature attribution methods and its correlation with
automatic evaluation scores" (NeurIPS 2021): instead of a heatmap, the person sees the training
images of the class the model predicted that are nearest to the image in the classifier's own
feature space; in their AI-assisted decision study this example-based explanation helped people
more than the attribution maps did.

For an image ``x`` with predicted class ``c``, features ``f(x)`` (the input of the classifier's last
``nn.Linear``, its penultimate representation, flattened) and a bank of training images ``b_j``
with labels ``y_j``::

    d(x, b_j) = || f(x) - f(b_j) ||_2            (metric="euclidean")
              = 1 - cos(f(x), f(b_j))            (metric="cosine")
    nearest   = the k indices j with y_j = c and the smallest d, nearest first

Deviations: the paper used an ImageNet ResNet's final-layer features; here the features are the
input of the last linear layer of whatever classifier is given (or of ``layer``), so the method
runs on the platform's small classifiers too. Ties are broken by bank order (a stable sort), so
the result is deterministic. Fewer than ``k`` bank images of a predicted class is an error.

Shapes: images ``(N, C, H, W)`` float, predicted ``(N,)`` int, bank ``(M, C, H, W)`` float,
bank labels ``(M,)`` int -> :class:`NearestExamples` result: ``indices (N, k)`` into the bank,
``distances (N, k)``.

Example::

    explainer = NearestExamples(net, k=3)
    result = explainer.explain(images, predicted, train_images, train_labels)
    strip = train_images[result.indices[0]]        # (3, C, H, W): the first image's examples
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from explainers.hooks import (
    ExplainerInputError,
    check_images,
    check_labels,
    model_device,
    model_guard,
    resolve_layer,
)

__all__ = ["NearestExamples", "NearestResult", "last_linear", "nearest_of_class", "penultimate_features"]

Metric = Literal["euclidean", "cosine"]


@dataclass(frozen=True)
class NearestResult:
    """``indices (N, k)``: rows of the bank, nearest first; ``distances (N, k)``: their distances."""

    indices: Tensor
    distances: Tensor


def last_linear(model: nn.Module) -> nn.Module:
    """The last ``nn.Linear`` registered in ``model`` (its classification head, for the usual nets)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ExplainerInputError("model has no nn.Linear layer: name the layer whose input is the feature vector")
    return linears[-1]


def penultimate_features(model: nn.Module, images: Tensor, *, layer: nn.Module | str | None = None,
                         batch_size: int = 256) -> Tensor:
    """``(N, D)``: the input of ``layer`` (default `last_linear`) for each image, flattened, in
    batches of ``batch_size``, with the model in eval mode (the caller's mode restored after)."""
    images = check_images(images)
    head = last_linear(model) if layer is None else resolve_layer(model, layer)
    captured: list[Tensor] = []

    def hook(module: nn.Module, inputs: tuple) -> None:
        captured.append(inputs[0].detach().flatten(1))

    handle = head.register_forward_pre_hook(hook)
    try:
        with model_guard(model), torch.no_grad():
            device = model_device(model)
            out = []
            for start in range(0, images.shape[0], batch_size):
                captured.clear()
                model(images[start:start + batch_size].to(device))
                if not captured:
                    raise ExplainerInputError("the feature layer did not run in the model's forward pass")
                out.append(captured[-1].float().cpu())
    finally:
        handle.remove()
    return torch.cat(out)


def nearest_of_class(query: Tensor, bank: Tensor, bank_labels: Tensor, classes: Tensor, *, k: int,
                     metric: Metric = "euclidean") -> NearestResult:
    """The pure kernel: for each query row ``i`` the ``k`` bank rows of label ``classes[i]`` nearest
    to it (the module docstring's distance), nearest first, ties by bank order.

    ``query (N, D)``, ``bank (M, D)``, ``bank_labels (M,)``, ``classes (N,)``."""
    if query.ndim != 2 or bank.ndim != 2 or query.shape[1] != bank.shape[1]:
        raise ExplainerInputError(f"query (N, D) and bank (M, D) must share D, got {tuple(query.shape)} and {tuple(bank.shape)}")
    if k < 1:
        raise ExplainerInputError(f"k must be at least 1, got {k}")
    bank_labels = check_labels(bank_labels, bank.shape[0], name="bank_labels")
    classes = check_labels(classes, query.shape[0], name="predicted")
    short = [int(c) for c in classes.unique() if int((bank_labels == c).sum()) < k]
    if short:
        raise ExplainerInputError(f"the bank has fewer than k={k} images of class(es) {short}")
    q, b = query.double(), bank.double()
    if metric == "euclidean":
        d = torch.cdist(q, b)
    elif metric == "cosine":
        d = 1 - torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    else:
        raise ExplainerInputError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    d = d.masked_fill(bank_labels[None, :] != classes[:, None], float("inf"))
    order = torch.sort(d, dim=1, stable=True).indices[:, :k]
    return NearestResult(indices=order, distances=torch.gather(d, 1, order).float())


class NearestExamples:
    """Configuration in the constructor, data in `explain` (captum's manner)."""

    def __init__(self, model: nn.Module, *, k: int = 3, layer: nn.Module | str | None = None,
                 metric: Metric = "euclidean", batch_size: int = 256) -> None:
        self.model, self.k, self.layer, self.metric, self.batch_size = model, k, layer, metric, batch_size

    def features(self, images: Tensor) -> Tensor:
        return penultimate_features(self.model, images, layer=self.layer, batch_size=self.batch_size)

    def explain(self, images: Tensor, predicted: Tensor, bank_images: Tensor, bank_labels: Tensor) -> NearestResult:
        """The ``k`` bank images of each image's ``predicted`` class nearest to it."""
        return nearest_of_class(self.features(images), self.features(bank_images), torch.as_tensor(bank_labels),
                                torch.as_tensor(predicted), k=self.k, metric=self.metric)
