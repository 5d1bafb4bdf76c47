"""Study B (XNN paper §4.1) on the shared pipeline: data sets, 4-class classifiers, XNNs, the
pre-drawn image sets. Explanations are computed by the same Celery task as Study A
(``explain.explanations_compute`` with methods ``excitation_bp`` / ``deeplift`` / ``xnn``).

Real data: :func:`dataset_import_cub` (the four gulls from the official CUB-200-2011 layout,
cropped to their bounding boxes) and :func:`dataset_import_cel` (class per folder) store RGB
images at ``STUDY_B_IMAGE_SIZE`` pixels; their classifier is a torchvision backbone
(``STUDY_B_BACKBONE``, ImageNet weights from ``IMAGENET_WEIGHTS`` or torchvision's cache when
present) with a compact FC head (:class:`explainers.nets.classifiers.BackboneClassifier`).

Without real CUB/CEL data, each of the two data sets is a *stand-in* built from four classes of
the available digit data; it is labelled so in the admin (``Dataset.is_standin``) and never in
the participant's view, where images are identified by id only.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from django.db import transaction

from studyapp.pipeline import loading, training
from studyapp.pipeline.datasets import dataset_store
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import Dataset, Stimulus, TrainedModel
from studyapp.pipeline.storage import store_bytes

log = logging.getLogger(__name__)

# Four digit classes per stand-in; disjoint, so the two "data sets" look different.
STANDIN_CLASSES = {"CUB": [0, 1, 3, 7], "CEL": [2, 4, 5, 6]}


def dataset_make_digit_standin(*, base: Dataset, label: str, classes: list[int], per_class_train: int = 1200) -> Dataset:
    """A 4-class data set cut from ``base`` (labels remapped to 0..3), marked as a stand-in."""
    name = f"{label.lower()}-standin-from-{base.name}"
    existing = Dataset.objects.filter(name=name).first()
    if existing is not None:
        return existing
    arrays = loading.dataset_arrays(base)
    rng = np.random.default_rng(0)
    parts = {}
    for split, limit in (("train", per_class_train), ("test", None)):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        keep = []
        for c in classes:
            idx = np.flatnonzero(y == c)
            if limit and len(idx) > limit:
                idx = np.sort(rng.choice(idx, size=limit, replace=False))
            keep.append(idx)
        idx = np.concatenate(keep)
        remap = {c: k for k, c in enumerate(classes)}
        parts[split] = SimpleNamespace(images=x[idx], labels=np.array([remap[int(v)] for v in y[idx]], dtype=np.int64))
    return dataset_store(
        name=name, kind=Dataset.Kind.DIGIT_STANDIN, source=f"{base.name} classes {classes}", is_standin=True,
        class_names=[f"stand-in {label} class {k + 1} (digit {c})" for k, c in enumerate(classes)],
        train=parts["train"], test=parts["test"],
    )


def _split_arrays(images: np.ndarray, labels: np.ndarray, is_train: np.ndarray) -> tuple[SimpleNamespace, SimpleNamespace]:
    return (
        SimpleNamespace(images=images[is_train], labels=labels[is_train].astype(np.int64)),
        SimpleNamespace(images=images[~is_train], labels=labels[~is_train].astype(np.int64)),
    )


def dataset_import_cub(*, name: str, directory: str | Path, size: int = 64) -> Dataset:
    """The XNN study's four gulls from a CUB-200-2011 tree, cropped to their boxes, ``size``² RGB.

    The official train/test split is kept. Nothing is stored unless every image reads.
    """
    from explainers.datasets.common import DatasetError
    from explainers.datasets.cub import load_cub
    from explainers.datasets.folders import images_array

    try:
        gulls = load_cub(directory)
        if len(gulls) == 0:
            raise DatasetError(f"{directory}: no images of the four gull classes")
        images = images_array(gulls.paths, size=size, boxes=gulls.boxes)
    except (DatasetError, OSError) as exc:
        raise PipelineError(f"CUB import failed, nothing was stored: {exc}") from exc
    train, test = _split_arrays(images, gulls.labels, np.asarray(gulls.is_train, bool))
    return dataset_store(
        name=name, kind=Dataset.Kind.CUB, source=str(gulls.root), is_standin=False,
        class_names=[c.split(".", 1)[-1].replace("_", " ") for c in gulls.class_names], train=train, test=test,
    )


def dataset_import_cel(*, name: str, directory: str | Path, size: int = 64, test_share: float = 0.5, seed: int = 0) -> Dataset:
    """CEL cells from a class-per-folder tree (one folder per morphology), ``size``² RGB.

    CEL has no official split: ``test_share`` of each class (seeded) is held out as the test
    split, which the study's image sets are drawn from (as for any image folders:
    :func:`explainers.datasets.folders.load_labelled_images`, in colour for the RGB backbone).
    Nothing is stored unless every image reads.
    """
    from explainers.datasets.common import DatasetError
    from explainers.datasets.folders import load_labelled_images

    try:
        cells = load_labelled_images(directory, test_fraction=test_share, size=size, seed=seed, colour=True)
    except (DatasetError, OSError) as exc:
        raise PipelineError(f"CEL import failed, nothing was stored: {exc}") from exc
    return dataset_store(
        name=name, kind=Dataset.Kind.CEL, source=str(cells.root), is_standin=False,
        class_names=list(cells.class_names), train=cells.train, test=cells.test,
    )


def xnn_train(*, trained_id: int, echo: Callable[[dict], None] | None = None) -> TrainedModel:
    """Train the XNN of a ``TrainedModel(role=xnn)`` row on its classifier's training images."""
    import torch

    from explainers.datasets.common import to_tensor
    from explainers.xnn import XNNConfig, penultimate_layer, train_xnn

    trained = TrainedModel.objects.select_related("dataset").get(pk=trained_id)
    if trained.status == TrainedModel.Status.READY:
        return trained
    params = {"n_features": 7, "epochs": 300, "seed": 0, "max_train": 600, **trained.params}
    classifier = loading.load_model(TrainedModel.objects.get(pk=params["classifier_id"]))
    params.setdefault("layer", penultimate_layer(classifier))  # Z: the FC layer feeding the logits
    arrays = loading.dataset_arrays(trained.dataset)
    x_np, _ = training.training_subset(arrays["x_train"], arrays["y_train"], classes=None, limit=params["max_train"], seed=params["seed"])
    TrainedModel.objects.filter(pk=trained.pk).update(status=TrainedModel.Status.RUNNING, error="")
    try:
        torch.manual_seed(params["seed"])
        xnn = train_xnn(
            classifier, params["layer"], to_tensor(x_np),
            config=XNNConfig(n_features=params["n_features"], epochs=params["epochs"], seed=params["seed"]),
            progress=training.progress_writer(trained.pk, echo),
        )
        relative = training.store_checkpoint(trained, xnn, arch_kwargs=xnn.arch_kwargs, metadata={"params": params})
    except Exception as exc:
        TrainedModel.objects.filter(pk=trained.pk).update(status=TrainedModel.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    trained.checkpoint, trained.metadata, trained.status = relative, {"params": params}, TrainedModel.Status.READY
    trained.save(update_fields=["checkpoint", "metadata", "status", "updated_at"])
    return trained


def sets_draw(*, study, label: str, classifier: TrainedModel, seed: int = 0) -> list[Stimulus]:
    """Draw the study's images for one data set: ``images_per_class`` per class (50 in the paper),
    then ``n_sets`` sets of ``set_size`` (5 x 10) at random from them, up front."""
    from explainers.datasets.common import to_tensor
    from explainers.nets.classifiers import predict

    if study.participants.exists():
        raise PipelineError("Participants have started this study; its images can no longer change.")
    config = study.parsed_config
    per_class, n_sets, set_size = config.images_per_class, config.n_sets, config.set_size
    arrays = loading.dataset_arrays(classifier.dataset)
    rng = random.Random(f"{seed}:{label}")  # noqa: S311 - seeded for reproducible designs, not secrets
    pool: list[tuple[str, int]] = []  # (split, index)
    for c in sorted(set(arrays["y_test"].tolist()) | set(arrays["y_train"].tolist())):
        # Test images first; a class with fewer (CUB has about 30 test gulls per class) is topped
        # up with training images, as the paper's 50 per class require.
        chosen = [("test", i) for i in np.flatnonzero(arrays["y_test"] == c).tolist()]
        chosen = rng.sample(chosen, min(per_class, len(chosen)))
        if len(chosen) < per_class:
            train = [("train", i) for i in np.flatnonzero(arrays["y_train"] == c).tolist()]
            chosen += rng.sample(train, min(per_class - len(chosen), len(train)))
        if len(chosen) < per_class:
            raise PipelineError(f"{label}: class {c} has {len(chosen)} images; {per_class} needed.")
        pool += chosen
    if n_sets * set_size > len(pool):
        raise PipelineError(f"{label}: {n_sets} sets of {set_size} need more than {len(pool)} images.")
    drawn = rng.sample(pool, n_sets * set_size)
    pixels = np.stack([arrays[f"x_{split}"][i] for split, i in drawn])
    truth = [int(arrays[f"y_{split}"][i]) for split, i in drawn]
    pred, probs = predict(loading.load_model(classifier), to_tensor(pixels))
    pred, probs = np.asarray(pred), np.asarray(probs)
    scale = max(1, round(224 / pixels.shape[2]))
    with transaction.atomic():
        Stimulus.objects.filter(study=study, group=label).delete()
        start = (Stimulus.objects.filter(study=study).order_by("-position").values_list("position", flat=True).first() or -1) + 1
        Stimulus.objects.bulk_create([
            Stimulus(
                study=study, dataset=classifier.dataset, split=split, index=int(i), position=start + k,
                group=label, set_index=k // set_size,
                image=store_bytes(loading.png_of(pixels[k], scale=scale), ext="png", folder="stimuli"),
                true_label=truth[k], model_prediction=int(pred[k]),
                probabilities=[round(float(p), 6) for p in probs[k]], classifier=classifier,
            )
            for k, (split, i) in enumerate(drawn)
        ])
    return list(Stimulus.objects.filter(study=study, group=label).order_by("position", "pk"))


def classifier_params(dataset: Dataset, *, standin_epochs: int = 2, backbone: str = "vgg11_bn", backbone_epochs: int = 12) -> dict:
    """Training parameters of a Study B classifier: MnistNet on digit stand-ins, a torchvision
    backbone with an FC head on real images (see :func:`training.model_train`)."""
    if dataset.is_standin:
        return {"epochs": standin_epochs, "seed": 0, "lr": 2e-3}
    return {"backbone": backbone, "epochs": backbone_epochs, "seed": 0, "lr": 5e-4, "batch_size": 32, "hidden": 256}


def clustering_build(
    *, study, datasets: dict[str, Dataset], echo: Callable[[str], None] = log.info,
    classifier_options: dict | None = None, overrides: dict[str, dict] | None = None, xnn_epochs: int = 300,
) -> None:
    """Classifiers, XNNs and image sets for Study B, one per labelled data set (``CUB``, ``CEL``).

    Models already trained on a data set are reused. A new classifier is trained with
    :func:`classifier_params` (``classifier_options`` are its keyword arguments), updated with
    ``overrides[label]``.
    """
    ids: dict[str, dict] = {}
    n_x = study.parsed_config.n_xfeatures
    for label, dataset in datasets.items():
        kind = "stand-in" if dataset.is_standin else "real"
        echo(f"{label}: {kind} data set '{dataset.name}' ({dataset.n_train} train / {dataset.n_test} test)")
        params = {**classifier_params(dataset, **(classifier_options or {})), **(overrides or {}).get(label, {})}
        classifier = TrainedModel.objects.filter(dataset=dataset, role="classifier", status="ready").order_by("-pk").first()
        if classifier is None:
            classifier = training.model_train(trained_id=training.model_create(dataset=dataset, role="classifier", params=params).pk)
        echo(f"{label}: classifier #{classifier.pk} ({classifier.arch}), test accuracy {classifier.test_accuracy:.3f}")
        ids[label] = _xnn_and_sets(study=study, label=label, classifier=classifier, n_x=n_x, xnn_epochs=xnn_epochs, echo=echo)
    study.config = {**(study.config or {}), "models": ids}
    study.save(update_fields=["config", "updated_at"])


def _xnn_and_sets(*, study, label: str, classifier: TrainedModel, n_x: int, xnn_epochs: int, echo: Callable[[str], None]) -> dict:
    """The XNN of ``classifier`` (trained unless one exists) and the data set's image sets
    (drawn unless the study has them); returns the ``config.models`` entry of ``label``."""
    xnn = TrainedModel.objects.filter(
        dataset=classifier.dataset, role="xnn", status="ready", params__classifier_id=classifier.pk, params__n_features=n_x,
    ).first()
    if xnn is None:
        row = TrainedModel.objects.create(
            dataset=classifier.dataset, role=TrainedModel.Role.XNN, arch="XNN",
            params={"classifier_id": classifier.pk, "n_features": n_x, "epochs": xnn_epochs},
        )
        echo(f"{label}: training the XNN ({n_x} x-features, {xnn_epochs} epochs)")
        xnn = xnn_train(trained_id=row.pk)
    echo(f"{label}: XNN #{xnn.pk} with {n_x} x-features")
    if not Stimulus.objects.filter(study=study, group=label).exists():
        sets_draw(study=study, label=label, classifier=classifier)
        echo(f"{label}: drew the image sets")
    return {"classifier_id": classifier.pk, "xnn_id": xnn.pk}


def clustering_prepare(*, study, echo: Callable[[str], None] = log.info, xnn_epochs: int = 300) -> None:
    """For a study made from the clustering template on chosen data sets and classifiers
    (``config.models[label].classifier_id``): each classifier's XNN and the image sets."""
    config = study.parsed_config
    models = dict(config.models)
    for label in config.datasets:
        entry = models.get(label) or {}
        classifier = TrainedModel.objects.filter(
            pk=entry.get("classifier_id"), role=TrainedModel.Role.CLASSIFIER, status=TrainedModel.Status.READY,
        ).select_related("dataset").first()
        if classifier is None:
            raise PipelineError(f"{label}: no ready classifier chosen (config.models.{label}.classifier_id).")
        models[label] = _xnn_and_sets(study=study, label=label, classifier=classifier, n_x=config.n_xfeatures, xnn_epochs=xnn_epochs, echo=echo)
    study.config = {**(study.config or {}), "models": models}
    study.save(update_fields=["config", "updated_at"])


def clustering_datasets(*, study, base: Dataset | None, cub_dir: str = "", cel_dir: str = "", size: int = 64) -> dict[str, Dataset]:
    """The study's data sets: real CUB/CEL where a directory is given, else digit stand-ins."""
    out: dict[str, Dataset] = {}
    for label in study.parsed_config.datasets:
        directory = {"CUB": cub_dir, "CEL": cel_dir}.get(label, "")
        if directory:
            importer = dataset_import_cub if label == "CUB" else dataset_import_cel
            name = f"{label.lower()}-{size}px"
            out[label] = Dataset.objects.filter(name=name).first() or importer(name=name, directory=directory, size=size)
        elif base is not None:
            out[label] = dataset_make_digit_standin(base=base, label=label, classes=STANDIN_CLASSES[label])
        else:
            raise PipelineError(f"{label}: no directory configured and no digit data for a stand-in.")
    return out


def clustering_build_standin(*, study, base: Dataset, echo: Callable[[str], None] = log.info, classifier_epochs: int = 2, xnn_epochs: int = 300) -> None:
    """Data sets, classifiers, XNNs and image sets for Study B from four digit classes per data set."""
    clustering_build(
        study=study, datasets=clustering_datasets(study=study, base=base), echo=echo, xnn_epochs=xnn_epochs,
        classifier_options={"standin_epochs": classifier_epochs},
    )
