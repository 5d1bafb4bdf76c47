"""Writes of trained models: create the row, train the network it describes, store the checkpoint.

Also the classifier's confusion matrix, which the ``confusion`` command prints to choose a study's
two classes.
"""

from __future__ import annotations

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


def model_create(*, dataset: Dataset, role: str, params: dict | None = None) -> TrainedModel:
    if role not in ROLE_ARCH:
        raise PipelineError(f"Unknown model role {role!r}; expected one of {sorted(ROLE_ARCH)}.")
    params = params or {}
    arch = "BackboneClassifier" if role == TrainedModel.Role.CLASSIFIER and params.get("backbone") else ROLE_ARCH[role]
    if arch == "BackboneClassifier":
        _check_backbone(dataset, params)
    return TrainedModel.objects.create(dataset=dataset, role=role, arch=arch, params=params)


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


def generator_params(*, study_config, study_classes, **overrides) -> dict:
    """The ``TrainedModel.params`` of a study's generator: :data:`GENERATOR_DEFAULTS` with
    ``overrides``; ``classes`` is set (to the study's two classes) only when the study's
    ``generator_classes`` is ``"study"``, else the generator is trained on every class.

    ``study_config`` is a :class:`studyapp.lib.study_config.StudyConfig` (``study.parsed_config``).
    """
    params = {**GENERATOR_DEFAULTS, **overrides}
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
    params = {"epochs": 2, "seed": 0, "max_train": None, "classes": None, **trained.params}
    arrays = loading.dataset_arrays(trained.dataset)
    x_np, y_np = training_subset(arrays["x_train"], arrays["y_train"], classes=params["classes"], limit=params["max_train"], seed=params["seed"])
    x, y = to_tensor(x_np), torch.as_tensor(y_np, dtype=torch.long)
    progress = progress_writer(trained.pk, echo)
    metadata = {
        "data_fingerprint": trained.dataset.fingerprint, "dataset": trained.dataset.name, "params": params,
        # what the network saw: the classes present in its training rows, and how many rows
        "train_classes": sorted(int(c) for c in np.unique(y_np)), "n_train_images": int(len(y_np)),
    }
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
            else:
                arch_kwargs = {"num_classes": n_classes}
                model = classifiers.MnistNet(**arch_kwargs)
            classifiers.train_classifier(
                model, x, y, epochs=params["epochs"], seed=params["seed"], progress=progress,
                lr=params.get("lr", 1e-3), batch_size=params.get("batch_size", 128),
            )
            x_test = to_tensor(arrays["x_test"])
            accuracy = classifiers.evaluate(model, x_test, torch.as_tensor(arrays["y_test"], dtype=torch.long))
        elif trained.role == TrainedModel.Role.VAE:
            from explainers.nets.vae import VAE, train_vae

            arch_kwargs = {"latent_dim": params.get("latent_dim", 400), "width": params.get("width", 32)}
            model = VAE(**arch_kwargs)
            train_vae(
                model, x, epochs=params["epochs"], seed=params["seed"], progress=progress,
                lr=params.get("lr", 1e-3), batch_size=params.get("batch_size", 128),
            )
            accuracy = None
        elif trained.role == TrainedModel.Role.WGAN:
            from explainers.nets.wgan import DCGANGenerator, WGANCritic, train_wgan

            arch_kwargs = {"z_dim": params.get("z_dim", 100)}
            model = DCGANGenerator(**arch_kwargs)
            train_wgan(model, WGANCritic(), x, epochs=params["epochs"], seed=params["seed"], progress=progress)
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
