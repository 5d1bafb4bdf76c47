"""Writes of registered models: a classifier or a generator trained elsewhere, checked and stored.

:func:`model_register` takes a whole-model file (a ``torch.export`` program or a TorchScript file)
or a torchvision architecture's state dict, runs it on the data set's test split and stores the
file content-addressed under ``MEDIA_ROOT/models`` with a ready :class:`TrainedModel` row whose
``metadata`` holds what it was checked against (see :func:`model_register`). All or nothing: a file
the platform cannot use is refused with a sentence (a :class:`PipelineError`) saying what was
expected and what was found, and neither a row nor a file is left behind.

:func:`studyapp.pipeline.loading.load_model` loads a registered file back through the same
adapter (:mod:`explainers.nets.external`) with the settings stored here.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path

import numpy as np
from django.db import transaction

from studyapp.pipeline import loading
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import Dataset, TrainedModel
from studyapp.pipeline.storage import media_path, store_bytes

#: Stored file extension per format.
EXTENSIONS = {"export": "pt2", "torchscript": "ts", "torchvision": "pt"}
#: Test images used to find the Grad-CAM layer (and to check a TorchScript chain), as at load.
SAMPLE_SIZE = loading.REGISTERED_SAMPLE
#: Test images per forward pass while evaluating.
BATCH = 256


def parse_floats(text: str | None, *, what: str) -> list[float] | None:
    """``"0.5,0.4,0.3"`` -> floats; None or blank -> None. A sentence for anything else."""
    if text is None or not str(text).strip():
        return None
    values = []
    for part in str(text).split(","):
        try:
            value = float(part)
        except ValueError:
            raise PipelineError(f"Expected {what} as numbers separated by commas (e.g. 0.485,0.456,0.406), but found {text!r}.") from None
        if not math.isfinite(value):
            raise PipelineError(f"Expected finite numbers for {what}, but found {text!r}.")
        values.append(value)
    return values


def _test_images(dataset: Dataset):
    import torch

    from explainers.datasets.common import to_tensor

    arrays = loading.dataset_arrays(dataset)
    return to_tensor(arrays["x_test"]), torch.as_tensor(arrays["y_test"], dtype=torch.long)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def model_register(
    *,
    dataset: Dataset,
    data: bytes,
    filename: str,
    role: str = TrainedModel.Role.CLASSIFIER,
    arch: str | None = None,
    input_size: int | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    layer: str | None = None,
    latent_dim: int | None = None,
) -> TrainedModel:
    """Check a model file against ``dataset`` and store it as a ready ``TrainedModel``.

    A classifier (``role="classifier"``): a ``.pt2`` program or TorchScript file, or with ``arch``
    (a torchvision model name) a state dict; it must take the data set's channels and return one
    logit per class. ``input_size`` (square, pixels) is what the network expects (default: the
    program's own when it was exported for a fixed size, else the data set's stored size);
    ``mean``/``std`` (one value or one per channel) its input normalisation; ``layer`` the
    Grad-CAM layer (default: the last convolution). Stored: accuracy and confusion matrix on the
    test split, sha256 of the file, format, input size, mean/std, the Grad-CAM layer (or why
    Grad-CAM cannot read one).

    A generator (``role="generator"``): a ``.pt2`` or TorchScript decoder ``z (N, latent_dim) ->
    images (N, C, H, W)`` in [0, 1] with the data set's image shape; CDeepEx uses it as a
    generator without encoder.
    """
    from explainers.nets import external

    if role not in (TrainedModel.Role.CLASSIFIER, TrainedModel.Role.GENERATOR):
        raise PipelineError(f"Expected the role 'classifier' or 'generator', but found {role!r}.")
    if not data:
        raise PipelineError(f"Expected a model file, but {filename} is empty.")
    if input_size is not None and input_size < 1:
        raise PipelineError(f"Expected --input-size to be a positive number of pixels, but found {input_size}.")
    sha256 = hashlib.sha256(data).hexdigest()
    loading.configure_torch()
    with tempfile.TemporaryDirectory(prefix="register-") as folder:
        path = Path(folder) / (Path(filename).name or "model")
        path.write_bytes(data)
        try:
            if role == TrainedModel.Role.GENERATOR:
                fmt, metadata = _check_generator(dataset, path, arch=arch, latent_dim=latent_dim)
            else:
                fmt, metadata = _check_classifier(
                    dataset, path, arch=arch, input_size=input_size, mean=mean, std=std, layer=layer
                )
        except external.ExternalModelError as exc:
            raise PipelineError(str(exc)) from None
    metadata |= {
        "registered": True, "format": fmt, "file_name": Path(filename).name, "sha256": sha256,
        "dataset": dataset.name, "data_fingerprint": dataset.fingerprint,
    }
    params = {
        "registered": True, "format": fmt, "arch": arch, "input_size": input_size, "mean": mean, "std": std,
        "layer": layer, "latent_dim": latent_dim,
    }
    ext = EXTENSIONS[fmt]
    target = media_path(f"models/{sha256[:2]}/{sha256}.{ext}")
    existed = target.exists()
    relative = store_bytes(data, ext=ext, folder="models")
    try:
        with transaction.atomic():
            return TrainedModel.objects.create(
                dataset=dataset, role=role, arch=arch or fmt, params=params, checkpoint=relative, metadata=metadata,
                test_accuracy=metadata.get("test_accuracy"), status=TrainedModel.Status.READY,
            )
    except BaseException:
        if not existed:
            target.unlink(missing_ok=True)
        raise


def _check_classifier(dataset, path: Path, *, arch, input_size, mean, std, layer) -> tuple[str, dict]:
    import torch

    from explainers.nets import external

    n_classes = len(dataset.class_names)
    x_test, y_test = _test_images(dataset)
    channels, stored = int(x_test.shape[1]), tuple(int(s) for s in x_test.shape[-2:])
    net, fmt = external.load_network(path, arch=arch, num_classes=n_classes)
    size = (input_size, input_size) if input_size is not None else None
    exported = external.export_input_shape(net) if fmt == "export" else None
    if exported is not None:
        if exported[0] != channels:
            raise external.ExternalModelError(
                f"Expected a network that takes images with {channels} channel(s) like data set {dataset.name}, "
                f"but {path.name} was exported for {exported[0]}-channel images of shape {exported}."
            )
        if size is None:
            size = (exported[1], exported[2])
        elif size != exported[1:]:
            raise external.ExternalModelError(
                f"Expected --input-size to match the size {path.name} was exported for ({exported[1]}x{exported[2]}), but found {input_size}."
            )
    try:
        adapter = _adapter(net, fmt, channels=channels, size=size, mean=mean, std=std, sample=x_test[:SAMPLE_SIZE], layer=layer)
    except external.ExternalModelError:
        raise
    except Exception as exc:
        raise external.ExternalModelError(_input_mismatch(dataset, path, x_test, size, exc)) from None
    logits = []
    with torch.no_grad():
        for start in range(0, len(x_test), BATCH):
            try:
                out = adapter(x_test[start : start + BATCH])
            except external.ExternalModelError:
                raise
            except Exception as exc:
                raise external.ExternalModelError(_input_mismatch(dataset, path, x_test, size, exc)) from None
            if out.shape[1] != n_classes:
                raise external.ExternalModelError(
                    f"Expected {n_classes} outputs, one per class of data set {dataset.name} ({', '.join(map(str, dataset.class_names))}), "
                    f"but {path.name} returns {out.shape[1]}."
                )
            if not bool(torch.isfinite(out).all()):
                raise external.ExternalModelError(f"Expected finite logits, but {path.name} returns NaN or infinite values on the test images.")
            logits.append(out)
    pred = torch.cat(logits).argmax(1).numpy()
    truth = y_test.numpy()
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (truth, pred), 1)
    metadata = {
        "test_accuracy": float((pred == truth).mean()), "confusion": confusion.tolist(), "n_test": int(len(truth)),
        "torchvision_arch": arch, "channels": channels, "stored_size": list(stored),
        "input_size": list(size) if size is not None else list(stored),
        "mean": adapter.mean.flatten().tolist(), "std": adapter.std.flatten().tolist(),
        "gradcam_layer": adapter.gradcam_layer_name, "gradcam_refusal": adapter.gradcam_refusal,
        "torchscript_chain": [u.name for u in adapter._chain] if adapter._chain is not None else None,
    }
    return fmt, metadata


def _input_mismatch(dataset, path: Path, x_test, size, exc: Exception) -> str:
    shape = (1, int(x_test.shape[1]), *(size or tuple(int(s) for s in x_test.shape[-2:])))
    return (
        f"Expected a network that takes images shaped like data set {dataset.name}'s, (N, {shape[1]}, {shape[2]}, {shape[3]}) "
        f"after resizing to the input size, but {path.name} failed on them: {_first_line(exc)}."
    )


def _adapter(net, fmt: str, *, channels: int, size, mean, std, sample, layer):
    from explainers.nets.external import ExternalClassifier

    return ExternalClassifier(net, fmt=fmt, channels=channels, input_size=size, mean=mean, std=std, sample=sample, layer=layer)


def _check_generator(dataset, path: Path, *, arch, latent_dim) -> tuple[str, dict]:
    import torch

    from explainers.nets import external

    if arch is not None:
        raise external.ExternalModelError("Expected a whole-model generator file (.pt2 or TorchScript), but found --arch; torchvision has no generators.")
    if latent_dim is None or latent_dim < 1:
        raise external.ExternalModelError(f"Expected --latent, the generator's latent size (a positive number), but found {latent_dim}.")
    x_test, _ = _test_images(dataset)
    expected = tuple(int(s) for s in x_test.shape[1:])
    net, fmt = external.load_network(path)
    generator = external.ExternalGenerator(net, latent_dim=latent_dim, fmt=fmt)
    z = torch.randn(4, latent_dim, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            images = generator(z)
    except Exception as exc:
        raise external.ExternalModelError(
            f"Expected a decoder that takes latent vectors of shape (N, {latent_dim}), but {path.name} failed on them: {_first_line(exc)}."
        ) from None
    if not isinstance(images, torch.Tensor) or tuple(images.shape[1:]) != expected or images.shape[0] != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise external.ExternalModelError(
            f"Expected the generator to return images of shape (N, {expected[0]}, {expected[1]}, {expected[2]}) like data set "
            f"{dataset.name}'s, but {path.name} returns {got}."
        )
    low, high = float(images.min()), float(images.max())
    if not (math.isfinite(low) and math.isfinite(high)) or low < -1e-4 or high > 1 + 1e-4:
        raise external.ExternalModelError(
            f"Expected the generator's images in [0, 1] (end the decoder with a sigmoid), but {path.name} returns values from {low:.3g} to {high:.3g}."
        )
    return fmt, {"latent_dim": int(latent_dim), "output_shape": list(expected), "test_accuracy": None}
