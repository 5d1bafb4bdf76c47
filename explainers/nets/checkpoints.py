"""Self-describing checkpoints of every network: an architecture registry, save and load.

A checkpoint stores the state dict with the architecture's registered name and constructor
arguments, so :func:`load_checkpoint` rebuilds the model without pickled code
(``weights_only=True``). The registry maps a name to a factory, given as ``"module:attr"``
(imported when first needed) or as a callable; :mod:`explainers.xnn` registers ``"XNN"`` when
it is imported.

Example (``net``, ``x``, ``y``: a trained MnistNet and its data; not run as a doctest)::

    save_checkpoint("d.pt", net, arch="MnistNet", arch_kwargs={"num_classes": 10},
                    metadata={"data_fingerprint": fingerprint(x, y), "test_accuracy": 0.97})
    net2, meta = load_checkpoint("d.pt")   # rebuilt MnistNet in eval mode, meta["test_accuracy"]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "build_model",
    "fingerprint",
    "load_checkpoint",
    "register_architecture",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint file cannot be understood or rebuilt; the message names the file."""


#: arch name -> "module:callable" building the model from ``arch_kwargs``.
_ARCHITECTURES: dict[str, str | Callable[..., nn.Module]] = {
    "MnistNet": "explainers.nets.classifiers:MnistNet",
    "ConvNet": "explainers.nets.classifiers:ConvNet",
    "torchvision": "explainers.nets.classifiers:build_torchvision",
    "BackboneClassifier": "explainers.nets.classifiers:BackboneClassifier",
    "VAE": "explainers.nets.vae:VAE",
    "DCGANGenerator": "explainers.nets.wgan:DCGANGenerator",
    "WGANCritic": "explainers.nets.wgan:WGANCritic",
}

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
