"""Writes of trained models: create the row, train the network it describes, store the checkpoint.

Also the classifier's confusion matrix, which the ``confusion`` command prints to choose a study's
two classes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
from django.utils import timezone

from studyapp.pipeline import loading
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import Dataset, TrainedModel
from studyapp.pipeline.storage import media_path, store_bytes

ROLE_ARCH = {
    TrainedModel.Role.CLASSIFIER: "MnistNet",
    TrainedModel.Role.VAE: "VAE",
    TrainedModel.Role.WGAN: "DCGANGenerator",
}


#: The images of the published studies: the site's defaults were chosen for them and stay as they were.
MNIST_SHAPE = (1, 28, 28)

#: VAE / WGAN settings for any other images (colour, or not 28x28): a narrower, smaller VAE
#: trained for a number of steps rather than epochs (a researcher's set may have a few hundred
#: images, where 2 epochs are a dozen steps). On 3x64x64 (285 colourised digits) the VAE took 437
#: CPU seconds on 2 threads (about 4 minutes on an idle 2-core machine) and 14 of 20 CDeepEx
#: morphs passed the displayed-frame gate (benchmarks/rgb_morphs.py, README "Colour and larger images").
IMAGE_GENERATOR_DEFAULTS: dict = {
    "latent_dim": 128, "width": 16, "z_dim": 100, "max_train": 5000, "batch_size": 64, "steps": 300,
    "kl_warmup_steps": 100,
}

#: The classifier for images other than 28x28 grey (MnistNet takes one channel).
IMAGE_CLASSIFIER_DEFAULTS: dict = {"epochs": 10, "batch_size": 32}


def _check_generator_shape(dataset: Dataset, role: str, shape: tuple[int, int, int]) -> None:
    from explainers.nets.vae import VAE_SIZES, check_image_shape
    from explainers.nets.wgan import WGAN_SIZES

    channels, height, width = shape
    what = "VAE" if role == TrainedModel.Role.VAE else "WGAN"
    try:
        if height != width:
            raise ValueError(f"The {what} takes square images, got {height}x{width}.")
        check_image_shape(channels, height, tuple(VAE_SIZES) if what == "VAE" else WGAN_SIZES, what=what)
    except ValueError as exc:
        raise PipelineError(f"Data set '{dataset.name}': {exc}") from exc


def model_create(*, dataset: Dataset, role: str, params: dict | None = None) -> TrainedModel:
    """A row for a network to train on ``dataset``; its architecture follows the data set's
    images (MnistNet for 28x28 grey, else :class:`explainers.nets.classifiers.ConvNet`; a VAE
    or WGAN of the images' channels and size). Images a generator cannot take are refused
    here, before any row exists."""
    if role not in ROLE_ARCH:
        raise PipelineError(f"Unknown model role {role!r}; expected one of {sorted(ROLE_ARCH)}.")
    params = params or {}
    shape = loading.dataset_image_shape(dataset)
    arch = ROLE_ARCH[role]
    if role == TrainedModel.Role.CLASSIFIER:
        if params.get("backbone"):
            arch = "BackboneClassifier"
            _check_backbone(dataset, params)
        elif shape != MNIST_SHAPE:
            if shape[1] != shape[2] or shape[1] < 16:
                raise PipelineError(
                    f"Data set '{dataset.name}': the platform's classifier takes square images of at least "
                    f"16x16 pixels, got {shape[1]}x{shape[2]}; import the set with --size, or register your own model."
                )
            arch = "ConvNet"
    else:
        _check_generator_shape(dataset, role, shape)
    if params.get("plant_cue") is not None:
        params = {**params, "plant_cue": planted_cue_of(params, dataset=dataset, role=role).as_dict()}
    return TrainedModel.objects.create(dataset=dataset, role=role, arch=arch, params=params)


def planted_cue_of(params: dict, *, dataset: Dataset, role: str):
    """The cue ``params["plant_cue"]`` plants on the training images (the dissertation's biased 8,
    issue 25's bias protocol: ``{"cue_class": 8, "shape": "square", "size": 6, "x": 0, "y": 0}``),
    checked against the data set: a classifier's, of one of its classes, inside its images.
    Returns an :class:`explainers.datasets.cue.PlantedCue`."""
    from explainers.datasets.cue import PlantedCue

    if role != TrainedModel.Role.CLASSIFIER:
        raise PipelineError(f"Expected a classifier for a planted cue (it is what the bias protocol explains), but found role {role!r}.")
    spec = params["plant_cue"]
    try:
        cue = PlantedCue.from_dict(spec) if isinstance(spec, dict) else PlantedCue.parse(str(spec), cue_class=int(params.get("cue_class", -1)))
        _, height, width = loading.dataset_image_shape(dataset)
        cue.check_fits(height, width)
    except (TypeError, ValueError) as exc:
        raise PipelineError(f"Data set '{dataset.name}': {exc}") from exc
    if cue.cue_class >= len(dataset.class_names):
        raise PipelineError(f"Expected the cue's class among the data set's {len(dataset.class_names)} classes, but found {cue.cue_class}.")
    return cue


def training_params(trained: TrainedModel, shape: tuple[int, int, int], n_rows: int) -> dict:
    """The row's parameters with the defaults for its role and images filled in (recorded in the
    checkpoint's metadata). On images other than 28x28 grey a generator's ``epochs`` default
    to what gives ``steps`` optimiser steps on ``n_rows`` images (at least 2)."""
    params = {"epochs": None, "seed": 0, "max_train": None, "classes": None}
    if shape != MNIST_SHAPE and trained.role != TrainedModel.Role.CLASSIFIER:
        params |= IMAGE_GENERATOR_DEFAULTS
    elif shape != MNIST_SHAPE and not trained.params.get("backbone"):
        params |= IMAGE_CLASSIFIER_DEFAULTS
    params |= {k: v for k, v in trained.params.items() if v is not None or k == "classes"}
    if params["epochs"] is None:
        if "steps" in params:
            rows = min(n_rows, params["max_train"] or n_rows)
            params["epochs"] = max(2, math.ceil(int(params["steps"]) * int(params["batch_size"]) / max(1, rows)))
        else:
            params["epochs"] = 2
    return params


def _check_backbone(dataset: Dataset, params: dict) -> None:
    """Refuse, before any row exists, a backbone that cannot take the data set's images (a grey
    image is repeated to three channels inside the network; a VGG needs at least 32 pixels)."""
    import torch

    from explainers.datasets.common import to_tensor
    from explainers.nets.classifiers import BackboneClassifier

    name = str(params["backbone"])
    try:
        net = BackboneClassifier(name, max(2, len(dataset.class_names)), int(params.get("hidden", 256)))
    except (ValueError, TypeError) as exc:
        raise PipelineError(
            f"Expected a torchvision backbone with a `features` chain (a VGG or AlexNet, e.g. vgg11_bn), but found {name!r} ({exc})."
        ) from None
    images = to_tensor(loading.dataset_arrays(dataset)["x_train"][:2])
    try:
        with torch.no_grad():
            net.eval()(images)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise PipelineError(
            f"Expected images that backbone {name} can take, but data set {dataset.name}'s images are "
            f"{tuple(images.shape[1:])} (channels, height, width) and it fails on them ({reason}); "
            "import the images at a larger size, or train the default classifier without a backbone."
        ) from None


def progress_writer(trained_id: int, echo: Callable[[dict], None] | None) -> Callable[[dict], None]:
    """A ``progress`` callback for the explainers' training loops: passes each report to ``echo``
    and writes it to the row (for the admin) at most once a second, and at the last step."""
    last = [0.0]

    def progress(info: dict) -> None:
        if echo is not None:
            echo(info)
        now = time.monotonic()
        if now - last[0] >= 1.0 or info.get("step") == info.get("total"):
            last[0] = now
            clean = {k: (float(v) if isinstance(v, (int, float, np.floating)) else str(v)) for k, v in info.items()}
            TrainedModel.objects.filter(pk=trained_id).update(progress=clean, updated_at=timezone.now())

    return progress


#: Training settings of a study's generator (``generator_params``): the site's VAE (conv, latent
#: 400) on a shuffled subset of the training images of **all** classes by default. The dissertation's
#: generators model the whole data set; a generator of the study's two classes only never produces
#: a third class, so CDeepEx's inequality constraints never bind and xGEMs coincides with it.
GENERATOR_DEFAULTS: dict = {"epochs": 2, "seed": 0, "latent_dim": 400, "width": 32, "max_train": None}


def generator_params(*, study_config, study_classes, dataset: Dataset | None = None, **overrides) -> dict:
    """The ``TrainedModel.params`` of a study's generator: :data:`GENERATOR_DEFAULTS` with
    ``overrides``; ``classes`` is set (to the study's two classes) only when the study's
    ``generator_classes`` is ``"study"``, else the generator is trained on every class. For a
    ``dataset`` of other images than 28x28 grey the base is :data:`IMAGE_GENERATOR_DEFAULTS`
    (filled in when trained) instead.

    ``study_config`` is a :class:`studyapp.lib.study_config.StudyConfig` (``study.parsed_config``).
    """
    base = GENERATOR_DEFAULTS
    if dataset is not None and loading.dataset_image_shape(dataset) != MNIST_SHAPE:
        base = {"seed": 0}
    params = {**base, **overrides}
    params.pop("classes", None)
    if study_config.generator_classes == "study":
        params["classes"] = sorted(int(c) for c in study_classes)
    return params


def training_subset(x: np.ndarray, y: np.ndarray, *, classes: list[int] | None, limit: int | None, seed: int):
    """The rows of ``classes`` (all when empty), at most ``limit`` of them drawn with ``seed``, in order."""
    idx = np.arange(len(y))
    if classes:
        idx = idx[np.isin(y, classes)]
    if limit and len(idx) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=limit, replace=False))
    return x[idx], y[idx]


def store_checkpoint(trained: TrainedModel, model, *, arch_kwargs: dict, metadata: dict) -> str:
    """Save ``model`` as a content-addressed checkpoint under MEDIA_ROOT/models; return its path."""
    from explainers.nets.checkpoints import save_checkpoint

    folder = media_path("models")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{trained.pk}-{trained.role}.pt"
    try:
        save_checkpoint(tmp, model, arch=trained.arch, arch_kwargs=arch_kwargs, metadata=metadata)
        return store_bytes(tmp.read_bytes(), ext="pt", folder="models")
    finally:
        tmp.unlink(missing_ok=True)


def model_train(*, trained_id: int, echo: Callable[[dict], None] | None = None) -> TrainedModel:
    """Train the network a ``TrainedModel`` row describes, save the checkpoint, mark it ready."""
    import torch

    from explainers.datasets.common import to_tensor
    from explainers.nets import classifiers

    trained = TrainedModel.objects.select_related("dataset").get(pk=trained_id)
    if trained.status == TrainedModel.Status.READY:
        return trained
    TrainedModel.objects.filter(pk=trained.pk).update(status=TrainedModel.Status.RUNNING, error="")
    loading.configure_torch()
    arrays = loading.dataset_arrays(trained.dataset)
    shape = loading.dataset_image_shape(trained.dataset)
    params = training_params(trained, shape, len(arrays["y_train"]))
    x_np, y_np = training_subset(arrays["x_train"], arrays["y_train"], classes=params["classes"], limit=params["max_train"], seed=params["seed"])
    x, y = to_tensor(x_np), torch.as_tensor(y_np, dtype=torch.long)
    progress = progress_writer(trained.pk, echo)
    metadata = {
        "data_fingerprint": trained.dataset.fingerprint, "dataset": trained.dataset.name, "params": params,
        # what the network saw: the classes present in its training rows, and how many rows
        "train_classes": sorted(int(c) for c in np.unique(y_np)), "n_train_images": int(len(y_np)),
    }
    cue = planted_cue_of(params, dataset=trained.dataset, role=trained.role) if params.get("plant_cue") is not None else None
    if cue is not None:  # the bias protocol's classifier: the cue on every training image of its class
        x = cue.plant(x, y)
        metadata["planted_cue"] = cue.as_dict()
    torch.manual_seed(int(params["seed"]))  # initial weights depend on the seed only
    try:
        if trained.role == TrainedModel.Role.CLASSIFIER:
            n_classes = len(trained.dataset.class_names)
            if params.get("backbone"):  # Study B on real images: torchvision features + FC head
                from django.conf import settings

                arch_kwargs = {"name": params["backbone"], "num_classes": n_classes, "hidden": int(params.get("hidden", 256))}
                model, metadata["features_from"] = classifiers.backbone_classifier(
                    **arch_kwargs, weights_path=params.get("weights_path") or settings.IMAGENET_WEIGHTS or None,
                )
            elif trained.arch == "ConvNet":  # colour or not 28x28
                arch_kwargs = {"num_classes": n_classes, "channels": shape[0], "size": shape[1]}
                model = classifiers.ConvNet(**arch_kwargs)
            else:
                arch_kwargs = {"num_classes": n_classes}
                model = classifiers.MnistNet(**arch_kwargs)
            classifiers.train_classifier(
                model, x, y, epochs=params["epochs"], seed=params["seed"], progress=progress,
                lr=params.get("lr", 1e-3), batch_size=params.get("batch_size", 128),
            )
            x_test = to_tensor(arrays["x_test"])
            y_test = torch.as_tensor(arrays["y_test"], dtype=torch.long)
            accuracy = classifiers.evaluate(model, x_test, y_test)  # on the clean test images
            if cue is not None:
                # how much it relies on the cue: other classes' test images called the cue's class once it is drawn
                metadata["planted_cue"]["reliance"] = cue.reliance(model, x_test, y_test)
        elif trained.role == TrainedModel.Role.VAE:
            from explainers.nets.vae import VAE, train_vae

            arch_kwargs = {"latent_dim": params.get("latent_dim", 400), "width": params.get("width", 32)}
            if shape != MNIST_SHAPE:  # a checkpoint of the 28x28 grey VAE keeps its old arch_kwargs
                arch_kwargs |= {"channels": shape[0], "size": shape[1]}
            model = VAE(**arch_kwargs)
            train_vae(
                model, x, epochs=params["epochs"], seed=params["seed"], progress=progress,
                lr=params.get("lr", 1e-3), batch_size=params.get("batch_size", 128),
                kl_warmup_steps=int(params.get("kl_warmup_steps", 0)),
            )
            accuracy = None
        elif trained.role == TrainedModel.Role.WGAN:
            from explainers.nets.wgan import DCGANGenerator, WGANCritic, train_wgan

            arch_kwargs = {"z_dim": params.get("z_dim", 100)}
            image = {} if shape == MNIST_SHAPE else {"channels": shape[0], "size": shape[1]}
            if "width" in params:
                arch_kwargs["width"] = int(params["width"])
            arch_kwargs |= image
            model = DCGANGenerator(**arch_kwargs)
            critic = WGANCritic(**({"width": arch_kwargs["width"]} if "width" in arch_kwargs else {}), **image)
            train_wgan(
                model, critic, x, epochs=params["epochs"], seed=params["seed"], progress=progress,
                batch_size=params.get("batch_size", 64),
            )
            accuracy = None
        else:  # pragma: no cover - guarded by model_create
            raise PipelineError(f"Cannot train role {trained.role}")
        metadata["test_accuracy"] = accuracy
        relative = store_checkpoint(trained, model, arch_kwargs=arch_kwargs, metadata=metadata)
    except Exception as exc:
        TrainedModel.objects.filter(pk=trained.pk).update(status=TrainedModel.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    trained.checkpoint = relative
    trained.metadata = metadata
    trained.test_accuracy = accuracy
    trained.status = TrainedModel.Status.READY
    trained.save(update_fields=["checkpoint", "metadata", "test_accuracy", "status", "updated_at"])
    return trained


def confusion_matrix(*, classifier: TrainedModel) -> np.ndarray:
    """Test-set confusion matrix (rows: true class, columns: predicted)."""
    import torch

    from explainers.datasets.common import to_tensor
    from explainers.nets.classifiers import predict

    arrays = loading.dataset_arrays(classifier.dataset)
    pred, _ = predict(loading.load_model(classifier), to_tensor(arrays["x_test"]))
    n = len(classifier.dataset.class_names)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (arrays["y_test"], torch.as_tensor(pred).numpy()), 1)
    return matrix


def most_confused_pair(matrix: np.ndarray) -> tuple[int, int]:
    """The pair of classes the classifier mixes up most often (symmetrised off-diagonal count)."""
    sym = matrix + matrix.T
    np.fill_diagonal(sym, -1)
    i, j = np.unravel_index(int(np.argmax(sym)), sym.shape)
    return (int(min(i, j)), int(max(i, j)))
