"""Classifiers ``D`` for the explainers: the dissertation's MNIST network, any torchvision model,
seeded training and evaluation (checkpoints: :mod:`explainers.nets.checkpoints`).

Conventions (docs/CONTRACTS.md): images are float32 ``(N, 1, 28, 28)`` in [0, 1], labels int64
``(N,)``, a classifier maps images to logits ``(N, C)``. Progress goes to an optional
``progress(dict)`` callback and to ``logging``.

Example (``x``, ``y``: training images and labels; not run as a doctest)::

    torch.manual_seed(0)
    net = train_classifier(MnistNet(10), x, y, epochs=1, seed=0)
    accuracy = evaluate(net, x_test, y_test)
    pred, probs = predict(net, x_test)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from explainers.datasets.common import IMAGENET_MEAN, IMAGENET_STD
from explainers.hooks import Progress, as_images, check_labels, model_device, model_guard

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Models


class MnistNet(nn.Module):
    """The MNIST classifier of the CDeepEx dissertation (section 3.2.1).

    "Two sets of Conv/MaxPool/ReLU layers followed by two fully connected layers. The input is
    resized to 64x64. The kernel size for each convolution layer is 5x5 and the first fully
    connected layer is 3380x50." The channel counts (10, 20) are not printed; they are those
    of the PyTorch MNIST example and the only ones that give 3380 = 20 * 13 * 13 inputs to the
    first FC layer at 64x64 (64 -conv5-> 60 -pool-> 30 -conv5-> 26 -pool-> 13).

    Deviation: the PyTorch example's dropout layers are left out (the dissertation does not
    mention them, and a dropout-free net gives deterministic gradients for the explainers).

    Shapes: ``(N, 1, H, W)`` float in [0, 1] (any H, W; resized bilinearly to 64x64 inside)
    -> logits ``(N, num_classes)``.

    ``features_layer`` is the last conv module (``conv2``, output ``(N, 20, 26, 26)``), the
    layer Grad-CAM hooks; ``features_layer_name`` is its attribute name.

    Example::

        >>> MnistNet(2)(torch.zeros(3, 1, 28, 28)).shape
        torch.Size([3, 2])
    """

    input_size = 64
    features_layer_name = "conv2"

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.pool1 = nn.MaxPool2d(2)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.pool2 = nn.MaxPool2d(2)
        self.relu2 = nn.ReLU()
        self.fc1 = nn.Linear(3380, 50)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(50, num_classes)

    @property
    def features_layer(self) -> nn.Module:
        return self.conv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"MnistNet expects (N, 1, H, W) images, got shape {tuple(x.shape)}")
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False
            )
        x = self.relu1(self.pool1(self.conv1(x)))
        x = self.relu2(self.pool2(self.conv2(x)))
        x = self.relu3(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class ConvNet(nn.Module):
    """A small classifier for grey or colour images of any square size (the platform's default
    for data sets that are not 28x28 grey, which :class:`MnistNet`'s single channel does not fit).

    Not from the dissertation; it follows MnistNet's pattern at the image's own size: three
    Conv/MaxPool/ReLU blocks (C->16, 16->32, 32->32, all 3x3 with "same" padding, each pool
    halves the side; 3x3 rather than MnistNet's 5x5 to train in about a minute at 64x64 on 2 cores) and two fully connected layers (32 * (S/8)^2 -> 64 -> num_classes). No
    dropout or BatchNorm, so its gradients are deterministic per image for the explainers.

    Shapes: ``(N, channels, size, size)`` float in [0, 1] -> logits ``(N, num_classes)``;
    ``size`` at least 16 (any other shape is refused with a sentence). ``features_layer`` is
    ``conv3`` (output ``(N, 32, S/4, S/4)``), the layer Grad-CAM hooks.

    Example::

        >>> ConvNet(2, channels=3, size=64)(torch.zeros(3, 3, 64, 64)).shape
        torch.Size([3, 2])
    """

    features_layer_name = "conv3"

    def __init__(self, num_classes: int = 2, channels: int = 3, size: int = 32) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if channels not in (1, 3) or size < 16:
            raise ValueError(
                f"ConvNet takes grey or colour images of at least 16x16 pixels, got {channels} channels at {size}x{size}"
            )
        self.num_classes, self.channels, self.size = num_classes, channels, size
        self.conv1 = nn.Conv2d(channels, 16, kernel_size=3, padding=1)
        self.pool1 = nn.MaxPool2d(2)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.pool2 = nn.MaxPool2d(2)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(32, 32, kernel_size=3, padding=1)
        self.pool3 = nn.MaxPool2d(2)
        self.relu3 = nn.ReLU()
        side = size // 2 // 2 // 2
        self.fc1 = nn.Linear(32 * side * side, 64)
        self.relu4 = nn.ReLU()
        self.fc2 = nn.Linear(64, num_classes)

    @property
    def features_layer(self) -> nn.Module:
        return self.conv3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.channels, self.size, self.size):
            raise ValueError(
                f"ConvNet expects (N, {self.channels}, {self.size}, {self.size}) images, got shape {tuple(x.shape)}"
            )
        x = self.relu1(self.pool1(self.conv1(x)))
        x = self.relu2(self.pool2(self.conv2(x)))
        x = self.relu3(self.pool3(self.conv3(x)))
        x = self.relu4(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def _replace_heads(model: nn.Module, old_classes: int, num_classes: int) -> list[str]:
    """Swap every classification head (Linear with ``old_classes`` outputs, or a 1x1 Conv2d as in
    SqueezeNet) for a freshly initialised one with ``num_classes`` outputs."""
    replaced: list[str] = []
    for name, module in list(model.named_modules()):
        new: nn.Module | None = None
        if isinstance(module, nn.Linear) and module.out_features == old_classes:
            new = nn.Linear(module.in_features, num_classes, bias=module.bias is not None)
        elif (
            isinstance(module, nn.Conv2d)
            and module.out_channels == old_classes
            and module.kernel_size == (1, 1)
        ):
            new = nn.Conv2d(
                module.in_channels, num_classes, kernel_size=1, bias=module.bias is not None
            )
        if new is None:
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, new)
        replaced.append(name)
    if not replaced:
        raise ValueError(f"no classification head with {old_classes} outputs found to replace")
    return replaced


def _torchvision_cached_weights(name: str) -> Path | None:
    """The file torchvision would download for ``name``'s default weights, if already cached."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None
    filename = os.path.basename(urlparse(weights.url).path)
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    return path if path.is_file() else None


def _torchvision_builder(name: str) -> Callable[..., nn.Module]:
    import torchvision

    try:
        return torchvision.models.get_model_builder(name)
    except ValueError as exc:
        raise ValueError(f"unknown torchvision model {name!r}") from exc


def _load_state_file(path: Path) -> Mapping[str, torch.Tensor]:
    """A state dict saved by ``torch.save`` (bare, or under ``"state_dict"``); no pickled code runs."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return state


def build_torchvision(
    name: str, num_classes: int, state: Mapping[str, torch.Tensor] | None = None
) -> nn.Module:
    """torchvision model ``name`` with ``num_classes`` outputs, loading ``state`` if given.

    ``state`` may be for the original 1000-class heads (loaded first, heads replaced after) or
    for ``num_classes`` outputs (heads replaced first, then loaded); both strictly. Without
    ``state`` the weights are random (the checkpoint registry builds ``arch="torchvision"``
    this way and loads the saved weights next).
    """
    model = _torchvision_builder(name)(weights=None)
    old_classes = 1000
    if state is None:
        if num_classes != old_classes:
            _replace_heads(model, old_classes, num_classes)
        return model
    own = model.state_dict()
    if any(k in own and own[k].shape != v.shape for k, v in state.items()):
        _replace_heads(model, old_classes, num_classes)  # saved for num_classes outputs
        model.load_state_dict(state, strict=True)
    else:
        model.load_state_dict(state, strict=True)
        if num_classes != old_classes:
            _replace_heads(model, old_classes, num_classes)
    return model


def torchvision_classifier(
    name: str,
    num_classes: int,
    *,
    weights_path: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> nn.Module:
    """Any torchvision classification model by name, with ``num_classes`` outputs. Never downloads.

    Weights, in this order: the state dict in ``weights_path`` (either for the original 1000-class
    head, which is then replaced, or for ``num_classes`` outputs); else torchvision's default
    weights if they already sit in torchvision's cache (``torch.hub.get_dir()/checkpoints``) and
    ``use_cache``; else random initialisation (logged as a warning).

    Every classification head is replaced (the final Linear, a SqueezeNet 1x1 conv, and the
    auxiliary heads of Inception/GoogLeNet), freshly initialised unless ``weights_path`` holds
    weights for ``num_classes`` outputs.

    Shapes: ImageNet-normalised ``(N, 3, H, W)`` -> logits ``(N, num_classes)``.

    Example::

        >>> torchvision_classifier("resnet18", 4, use_cache=False)(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 4])
    """
    state: Mapping[str, torch.Tensor] | None = None
    source = "random initialisation"
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: weights file not found")
        state = _load_state_file(path)
        source = str(path)
    elif use_cache:
        cached = _torchvision_cached_weights(name)
        if cached is not None:
            state = _load_state_file(cached)
            source = f"torchvision cache {cached}"
    model = build_torchvision(name, num_classes, state)
    if state is None:
        logger.warning("%s: no weights file given or cached; random initialisation", name)
    else:
        logger.info("%s: weights from %s", name, source)
    return model


class BackboneClassifier(nn.Module):
    """A torchvision backbone's convolutional ``features`` + a compact fully connected head.

    For Study B (XNN paper §4.1): the XNN attaches to a fully connected layer ``Z`` (here
    ``head.1``, ``hidden`` units after a ReLU) and ExcitationBP walks the whole network, so the
    backbone must be a plain chain (VGG, AlexNet: ``model.features``); residual nets are refused by
    ExcitationBP. The head replaces VGG's 2 x 4096 units, which would not train on 2 CPU cores:
    ``features -> AdaptiveAvgPool2d(1) -> Flatten -> Linear(C, hidden) -> ReLU -> Linear(hidden, n)``.

    Input: RGB ``(N, 3, H, W)`` in [0, 1] (grey ``(N, 1, H, W)`` is repeated to three channels), *not* ImageNet-normalised, so that pixel-level
    ExcitationBP (which needs non-negative inputs) applies. When ImageNet weights are loaded
    (:func:`backbone_classifier`), the normalisation is folded into the first convolution
    (``w' = w / σ_c``, ``b' = b - Σ w μ_c / σ_c``); this is exact away from the border, where
    zero padding now stands for black instead of the mean colour.

    Example::

        >>> net = BackboneClassifier("vgg11", 4)
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 4])
    """

    def __init__(self, name: str, num_classes: int, hidden: int = 256) -> None:
        super().__init__()
        features = getattr(_torchvision_builder(name)(weights=None), "features", None)
        if not isinstance(features, nn.Sequential):
            raise ValueError(f"{name}: no `features` chain (take a VGG or AlexNet backbone)")
        convs = [m for m in features.modules() if isinstance(m, nn.Conv2d)]
        channels = convs[-1].out_channels
        self.name, self.num_classes = name, num_classes
        self.in_channels = convs[0].in_channels
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1 and self.in_channels == 3:  # a grey image: the same grey in R, G and B
            x = x.expand(-1, 3, -1, -1)
        return self.head(self.pool(self.features(x)))


def _fold_normalisation(conv: nn.Conv2d, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """Make ``conv`` take [0, 1] pixels where it took ``(x - mean) / std`` (in place)."""
    with torch.no_grad():
        m = torch.tensor(mean).view(1, -1, 1, 1)
        s = torch.tensor(std).view(1, -1, 1, 1)
        shift = (conv.weight * (m / s)).sum(dim=(1, 2, 3))
        conv.weight.div_(s)
        if conv.bias is None:
            conv.bias = nn.Parameter(-shift)
        else:
            conv.bias.sub_(shift)


def backbone_classifier(
    name: str,
    num_classes: int,
    *,
    hidden: int = 256,
    weights_path: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> tuple[BackboneClassifier, str]:
    """A :class:`BackboneClassifier`, its features from ImageNet weights when the user has them.

    Weights, in this order: the torchvision state dict in ``weights_path``; torchvision's cache
    (``torch.hub.get_dir()/checkpoints``) if ``use_cache``; else random initialisation. Never
    downloads. Returns the model and where its features came from (for the checkpoint metadata).
    """
    model = BackboneClassifier(name, num_classes, hidden)
    path: Path | None = None
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: weights file not found")
    elif use_cache:
        path = _torchvision_cached_weights(name)
    if path is None:
        logger.warning("%s: no ImageNet weights given or cached; features start from random weights", name)
        return model, "random initialisation"
    state = _load_state_file(path)
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    try:
        model.features.load_state_dict(features, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: not {name} weights ({exc})") from exc
    first = next(m for m in model.features.modules() if isinstance(m, nn.Conv2d))
    _fold_normalisation(first, IMAGENET_MEAN, IMAGENET_STD)
    logger.info("%s: ImageNet features from %s", name, path)
    return model, str(path)


# ----------------------------------------------------------------------------------------------
# Training and evaluation


def train_classifier(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    weight_decay: float = 0.0,
    progress: Progress | None = None,
) -> nn.Module:
    """Train ``model`` in place with Adam and cross-entropy; return it.

    Deterministic: with the same initial weights, data and ``seed`` the result is the same
    (the shuffling uses its own ``torch.Generator``, and any dropout draws from the global RNG
    inside ``torch.random.fork_rng`` seeded with ``seed``, so the caller's RNG state is left as
    it was). Only parameters with ``requires_grad`` are trained; the model's train/eval mode
    is restored afterwards.

    Args:
        x: float images ``(N, C, H, W)`` in [0, 1] (or uint8 ``(N, H, W)`` / ``(N, H, W, 3)`` numpy).
        y: int labels ``(N,)``.
        progress: called after every step with ``{"stage": "train_classifier", "step", "total",
            "epoch", "loss"}`` (``loss`` is that batch's mean cross-entropy).

    Example::

        >>> net = train_classifier(MnistNet(2), x, y, epochs=1, seed=0)   # doctest: +SKIP
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    images = as_images(x)
    labels = check_labels(y, images.shape[0], name="labels")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameter with requires_grad=True to train")
    device = model_device(model)
    optimiser = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    steps_per_epoch = (n + batch_size - 1) // batch_size
    total = epochs * steps_per_epoch
    step = 0
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]), model_guard(model, training=True, freeze=False):
        torch.manual_seed(seed)
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator)
            running = 0.0
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                batch = images[idx].to(device)
                target = labels[idx].to(device)
                loss = F.cross_entropy(model(batch), target)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                step += 1
                value = float(loss.detach())
                running += value * idx.numel()
                if progress is not None:
                    progress(
                        {
                            "stage": "train_classifier",
                            "step": step,
                            "total": total,
                            "epoch": epoch,
                            "loss": value,
                        }
                    )
            logger.info(
                "train_classifier epoch %d/%d: mean loss %.4f (%.1f s)",
                epoch + 1,
                epochs,
                running / n,
                time.perf_counter() - started,
            )
    return model


@torch.no_grad()
def _logits(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    device = model_device(model)
    outs = [
        model(images[i : i + batch_size].to(device)).cpu()
        for i in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(outs) if outs else torch.empty(0)


def predict(
    model: nn.Module, x: torch.Tensor | np.ndarray, *, batch_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes int64 ``(N,)`` and softmax probabilities ``(N, C)``.

    Runs in eval mode under ``torch.no_grad``; the model's modes (and ``requires_grad`` flags,
    which are never touched) are as before afterwards.
    """
    images = as_images(x)
    with model_guard(model, freeze=False):
        probs = torch.softmax(_logits(model, images, batch_size), dim=1)
    return probs.argmax(dim=1), probs


def evaluate(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    batch_size: int = 512,
) -> float:
    """Accuracy of ``model`` on ``(x, y)`` in [0, 1]; modes are restored as in :func:`predict`."""
    images = as_images(x)
    labels = check_labels(y, images.shape[0], name="labels")
    pred, _ = predict(model, images, batch_size=batch_size)
    return float((pred == labels).double().mean())
