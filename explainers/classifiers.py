"""Classifiers ``D`` for the explainers: the dissertation's MNIST network, any torchvision model,
seeded training, evaluation and self-describing checkpoints.

Conventions (docs/CONTRACTS.md): images are float32 ``(N, 1, 28, 28)`` in [0, 1], labels int64
``(N,)``, a classifier maps images to logits ``(N, C)``. Progress goes to an optional
``progress(dict)`` callback and to ``logging``.

Example (``x``, ``y``: training images and labels; not run as a doctest)::

    torch.manual_seed(0)
    net = train_classifier(MnistNet(10), x, y, epochs=1, seed=0)
    accuracy = evaluate(net, x_test, y_test)
    save_checkpoint("d.pt", net, arch="MnistNet", arch_kwargs={"num_classes": 10},
                    metadata={"data_fingerprint": fingerprint(x, y), "test_accuracy": accuracy})
    net2, meta = load_checkpoint("d.pt")   # rebuilt MnistNet in eval mode, meta["test_accuracy"]
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

Progress = Callable[[dict], None]

CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint file cannot be understood or rebuilt; the message names the file."""


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


def _build_torchvision(
    name: str, num_classes: int, state: Mapping[str, torch.Tensor] | None = None
) -> nn.Module:
    """torchvision model ``name`` with ``num_classes`` outputs, loading ``state`` if given.

    ``state`` may be for the original 1000-class heads (loaded first, heads replaced after) or
    for ``num_classes`` outputs (heads replaced first, then loaded); both strictly.
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
    model = _build_torchvision(name, num_classes, state)
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

    Input: RGB ``(N, 3, H, W)`` in [0, 1], *not* ImageNet-normalised, so that pixel-level
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
        channels = [m.out_channels for m in features.modules() if isinstance(m, nn.Conv2d)][-1]
        self.name, self.num_classes = name, num_classes
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
    from explainers.folders import IMAGENET_MEAN, IMAGENET_STD

    first = next(m for m in model.features.modules() if isinstance(m, nn.Conv2d))
    _fold_normalisation(first, IMAGENET_MEAN, IMAGENET_STD)
    logger.info("%s: ImageNet features from %s", name, path)
    return model, str(path)


# ----------------------------------------------------------------------------------------------
# Mode handling: never change model.training or requires_grad for the caller


@contextlib.contextmanager
def preserved_mode(model: nn.Module, *, training: bool) -> Iterator[nn.Module]:
    """Put every submodule in train/eval mode for the block, then restore each one's own mode."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.train(training)
        yield model
    finally:
        for module, mode in modes:
            module.training = mode


def _as_images(x: Any) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        from explainers.data import to_tensor

        return to_tensor(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images must be a tensor or uint8 numpy array, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise TypeError(f"image tensors must be floating point in [0, 1], got {x.dtype}")
    return x


def _as_labels(y: Any, n: int) -> torch.Tensor:
    labels = torch.as_tensor(np.asarray(y) if isinstance(y, np.ndarray) else y)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integers, got {labels.dtype}")
    return labels.to(torch.int64)


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


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
        x: float images ``(N, 1, 28, 28)`` in [0, 1] (or uint8 ``(N, 28, 28)`` numpy).
        y: int labels ``(N,)``.
        progress: called after every step with ``{"stage": "train_classifier", "step", "total",
            "epoch", "loss"}`` (``loss`` is that batch's mean cross-entropy).

    Example::

        >>> net = train_classifier(MnistNet(2), x, y, epochs=1, seed=0)   # doctest: +SKIP
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    images = _as_images(x)
    labels = _as_labels(y, images.shape[0])
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameter with requires_grad=True to train")
    device = _device_of(model)
    optimiser = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    steps_per_epoch = (n + batch_size - 1) // batch_size
    total = epochs * steps_per_epoch
    step = 0
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]), preserved_mode(model, training=True):
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
    device = _device_of(model)
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
    images = _as_images(x)
    if images.shape[0] == 0:
        raise ValueError("cannot predict on an empty batch")
    with preserved_mode(model, training=False):
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
    images = _as_images(x)
    labels = _as_labels(y, images.shape[0])
    if labels.numel() == 0:
        raise ValueError("cannot evaluate on an empty set")
    pred, _ = predict(model, images, batch_size=batch_size)
    return float((pred == labels).double().mean())


# ----------------------------------------------------------------------------------------------
# Checkpoints

#: arch name -> "module:callable" building the model from ``arch_kwargs``.
_ARCHITECTURES: dict[str, str | Callable[..., nn.Module]] = {
    "MnistNet": "explainers.classifiers:MnistNet",
    "torchvision": "explainers.classifiers:_torchvision_from_checkpoint",
    "BackboneClassifier": "explainers.classifiers:BackboneClassifier",
    "VAE": "explainers.vae:VAE",
    "DCGANGenerator": "explainers.wgan:DCGANGenerator",
    "WGANCritic": "explainers.wgan:WGANCritic",
}


def _torchvision_from_checkpoint(name: str, num_classes: int) -> nn.Module:
    return _build_torchvision(name, num_classes)  # the checkpoint's weights are loaded next


def register_architecture(name: str, factory: str | Callable[..., nn.Module]) -> None:
    """Make ``load_checkpoint`` able to rebuild ``arch=name`` (factory or ``"module:attr"``)."""
    _ARCHITECTURES[name] = factory


def build_model(arch: str, arch_kwargs: Mapping[str, Any]) -> nn.Module:
    """Instantiate a registered architecture, e.g. ``build_model("MnistNet", {"num_classes": 2})``."""
    if arch not in _ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {arch!r}; known: {sorted(_ARCHITECTURES)}")
    factory = _ARCHITECTURES[arch]
    if isinstance(factory, str):
        module_name, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
    return factory(**dict(arch_kwargs))


def fingerprint(array: np.ndarray | torch.Tensor, *more: np.ndarray | torch.Tensor) -> str:
    """sha256 hex digest of one or more arrays (dtype, shape and bytes in C order).

    Example::

        >>> fingerprint(np.zeros(3, np.uint8)) == fingerprint(torch.zeros(3, dtype=torch.uint8))
        True
    """
    digest = hashlib.sha256()
    for item in (array, *more):
        a = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else np.asarray(item)
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str,
    arch_kwargs: Mapping[str, Any],
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Save the state dict with what is needed to rebuild and judge the model.

    The metadata stored (and returned by :func:`load_checkpoint`) always has ``arch``,
    ``arch_kwargs``, ``data_fingerprint``, ``test_accuracy`` (``None`` if not given),
    ``torch_version``, ``created_at`` (UTC ISO 8601) and ``format``, plus the caller's keys.
    ``arch_kwargs`` and ``metadata`` must be JSON-serialisable. The file is written to a
    temporary name and renamed, so readers never see half a checkpoint.
    """
    if arch not in _ARCHITECTURES:
        raise CheckpointError(
            f"unknown architecture {arch!r}; register it with register_architecture()"
        )
    meta: dict[str, Any] = {"data_fingerprint": None, "test_accuracy": None}
    meta.update(dict(metadata or {}))
    meta.update(
        arch=arch,
        arch_kwargs=dict(arch_kwargs),
        torch_version=torch.__version__,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        format=CHECKPOINT_FORMAT,
    )
    try:
        meta_json = json.dumps(meta, sort_keys=True)
    except TypeError as exc:
        raise TypeError(f"checkpoint metadata must be JSON-serialisable ({exc})") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a checkpoint is an ordinary readable file
        with os.fdopen(fd, "wb") as handle:
            torch.save(
                {"format": CHECKPOINT_FORMAT, "metadata_json": meta_json, "state_dict": state},
                handle,
            )
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    logger.info("saved %s checkpoint to %s", arch, path)
    return path


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the model saved by :func:`save_checkpoint`; return ``(model, metadata)``.

    The model comes back in eval mode (a checkpoint is loaded to be used, not trained further;
    call ``.train()`` to continue training). Loading uses ``weights_only=True``: no pickled code
    runs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(blob, dict) or "metadata_json" not in blob or "state_dict" not in blob:
        raise CheckpointError(f"{path}: not a checkpoint written by save_checkpoint")
    if blob.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {blob.get('format')!r} is not {CHECKPOINT_FORMAT}"
        )
    meta = json.loads(blob["metadata_json"])
    model = build_model(meta["arch"], meta["arch_kwargs"])
    try:
        model.load_state_dict(blob["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not fit {meta['arch']}({meta['arch_kwargs']}) ({exc})"
        ) from exc
    model.to(map_location).eval()
    return model, meta
