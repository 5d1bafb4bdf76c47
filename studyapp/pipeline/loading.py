"""Turn rows into tensors and models: the adapter between the database and explainers/.

Models are loaded lazily inside the process that needs them (a Celery worker, a management
command) and cached per checkpoint, never in a forking parent.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from pathlib import Path

import numpy as np

from studyapp.lib.perf.caches import ProcessCache, memoize
from studyapp.pipeline.models import Dataset, TrainedModel
from studyapp.pipeline.storage import media_path

log = logging.getLogger(__name__)
_lock = threading.Lock()


def configure_torch() -> None:
    import torch
    from django.conf import settings

    if settings.TORCH_THREADS:
        torch.set_num_threads(settings.TORCH_THREADS)


@memoize(ProcessCache("data set arrays", maxsize=8))
def _dataset_arrays(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def dataset_arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    """``x_train, y_train, x_test, y_test`` as uint8 / int64 numpy arrays."""
    return _dataset_arrays(str(media_path(dataset.file)))


def dataset_image_shape(dataset: Dataset) -> tuple[int, int, int]:
    """``(channels, height, width)`` of a data set's images (grey ``(N, H, W)`` or colour ``(N, H, W, 3)``)."""
    x = dataset_arrays(dataset)["x_train"]
    if x.ndim == 4 and x.shape[-1] == 3:
        return (3, int(x.shape[1]), int(x.shape[2]))
    return (1, int(x.shape[1]), int(x.shape[2]))


def display_scale(size: int) -> int:
    """Nearest-neighbour upscaling that shows an image of ``size`` pixels at about 224 px (28 -> 8)."""
    return max(1, round(224 / size))


@memoize(ProcessCache("checkpoints", maxsize=16))
def _load_checkpoint(path: str):
    import explainers.xnn  # noqa: F401  (importing it registers the "XNN" architecture)
    from explainers.nets.checkpoints import load_checkpoint

    model, metadata = load_checkpoint(path, map_location="cpu")
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, metadata


@memoize(ProcessCache("registered models", maxsize=8))
def _load_registered(path: str, role: str, settings: str, layer: str | None, dataset_file: str):
    """A registered file behind its adapter (:mod:`explainers.nets.external`), with the settings
    its registration stored (``settings``: their JSON, so that the cache key is hashable)."""
    from explainers.datasets.common import to_tensor
    from explainers.nets import external

    meta = json.loads(settings)
    if role == TrainedModel.Role.GENERATOR:
        net, fmt = external.load_network(path)
        return external.ExternalGenerator(net, latent_dim=int(meta["latent_dim"]), fmt=fmt)
    arch = meta.get("torchvision_arch")
    net, fmt = external.load_network(path, arch=arch, num_classes=len(meta["confusion"]))
    sample = to_tensor(_dataset_arrays(dataset_file)["x_test"][:REGISTERED_SAMPLE])
    return external.ExternalClassifier(
        net, fmt=fmt, channels=int(meta["channels"]), input_size=tuple(meta["input_size"]),
        mean=meta["mean"], std=meta["std"], sample=sample, layer=layer,
        program=Path(path).read_bytes() if fmt == "export" else None,
    )


#: Test images a registered classifier's adapter is built with (Grad-CAM layer, TorchScript chain);
#: the same at registration (studyapp.pipeline.registry) and at load.
REGISTERED_SAMPLE = 64


def load_model(trained: TrainedModel):
    """The trained network in eval mode (cached per checkpoint path).

    A registered model (``metadata["registered"]``, see :mod:`studyapp.pipeline.registry`) comes
    behind its adapter: an ``ExternalClassifier`` taking the data set's images, or an
    ``ExternalGenerator``.
    """
    if trained.status != TrainedModel.Status.READY or not trained.checkpoint:
        raise ValueError(f"{trained} is not ready (status {trained.status}).")
    with _lock:
        configure_torch()
        path = str(media_path(trained.checkpoint))
        meta = trained.metadata or {}
        if meta.get("registered"):
            layer = meta.get("gradcam_layer") or (trained.params or {}).get("layer")
            settings = json.dumps({k: meta.get(k) for k in REGISTERED_KEYS}, sort_keys=True)
            return _load_registered(path, trained.role, settings, layer, str(media_path(trained.dataset.file)))
        return _load_checkpoint(path)[0]


#: What a registered model's adapter is rebuilt from (its ``metadata``).
REGISTERED_KEYS = ("torchvision_arch", "channels", "input_size", "mean", "std", "confusion", "latent_dim")


def png_of(image_uint8: np.ndarray, scale: int = 1) -> bytes:
    from PIL import Image

    array = image_uint8.astype(np.uint8)
    img = Image.fromarray(array, mode="RGB" if array.ndim == 3 else "L")  # (H, W, 3) colour or (H, W) grey
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
