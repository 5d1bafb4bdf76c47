"""Study B (XNN paper §4.1) on the shared pipeline: data sets, 4-class classifiers, XNNs, the
pre-drawn image sets. Explanations are computed by the same Celery task as Study A
(``explanations_compute`` with methods ``excitation_bp`` / ``deeplift`` / ``xnn``).

Without real CUB/CEL data, each of the two data sets is a *stand-in* built from four classes of
the available digit data; it is labelled so in the admin (``Dataset.is_standin``) and never in
the participant's view, where images are identified by id only.
"""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Callable

import numpy as np
from django.db import transaction

from studyapp.pipeline import loading, services
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
        parts[split] = (x[idx], np.array([remap[int(v)] for v in y[idx]], dtype=np.int64))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x_train=parts["train"][0], y_train=parts["train"][1], x_test=parts["test"][0], y_test=parts["test"][1])
    data = buffer.getvalue()
    import hashlib

    return Dataset.objects.create(
        name=name, kind=Dataset.Kind.DIGIT_STANDIN, source=f"{base.name} classes {classes}", is_standin=True,
        file=store_bytes(data, ext="npz", folder="datasets"), fingerprint=hashlib.sha256(data).hexdigest(),
        class_names=[f"stand-in {label} class {k + 1} (digit {c})" for k, c in enumerate(classes)],
        n_train=len(parts["train"][1]), n_test=len(parts["test"][1]),
    )


def xnn_train(*, trained_id: int, echo: Callable[[dict], None] | None = None) -> TrainedModel:
    """Train the XNN of a ``TrainedModel(role=xnn)`` row on its classifier's training images."""
    import torch

    from explainers.data import to_tensor
    from explainers.xnn import penultimate_layer, train_xnn

    trained = TrainedModel.objects.select_related("dataset").get(pk=trained_id)
    if trained.status == TrainedModel.Status.READY:
        return trained
    params = {"n_features": 7, "epochs": 300, "seed": 0, "max_train": 600, **trained.params}
    classifier = loading.load_model(TrainedModel.objects.get(pk=params["classifier_id"]))
    params.setdefault("layer", penultimate_layer(classifier))  # Z: the FC layer feeding the logits
    arrays = loading.dataset_arrays(trained.dataset)
    x_np, _ = services._subset(arrays["x_train"], arrays["y_train"], classes=None, limit=params["max_train"], seed=params["seed"])
    TrainedModel.objects.filter(pk=trained.pk).update(status=TrainedModel.Status.RUNNING, error="")
    try:
        torch.manual_seed(params["seed"])
        xnn = train_xnn(
            classifier, params["layer"], to_tensor(x_np), n_features=params["n_features"], epochs=params["epochs"],
            seed=params["seed"], progress=services._progress_writer(trained.pk, echo),
        )
        relative = services.store_checkpoint(trained, xnn, arch_kwargs=xnn.arch_kwargs, metadata={"params": params})
    except Exception as exc:
        TrainedModel.objects.filter(pk=trained.pk).update(status=TrainedModel.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    trained.checkpoint, trained.metadata, trained.status = relative, {"params": params}, TrainedModel.Status.READY
    trained.save(update_fields=["checkpoint", "metadata", "status", "updated_at"])
    return trained


def sets_draw(*, study, label: str, classifier: TrainedModel, seed: int = 0) -> list[Stimulus]:
    """Draw the study's images for one data set: ``images_per_class`` per class (50 in the paper),
    then ``n_sets`` sets of ``set_size`` (5 x 10) at random from them, up front."""
    from explainers.classifiers import predict
    from explainers.data import to_tensor

    if study.participants.exists():
        raise services.PipelineError("Participants have started this study; its images can no longer change.")
    config = study.config or {}
    per_class, n_sets, set_size = int(config.get("images_per_class", 50)), int(config.get("n_sets", 5)), int(config.get("set_size", 10))
    arrays = loading.dataset_arrays(classifier.dataset)
    x, y = arrays["x_test"], arrays["y_test"]
    rng = random.Random(f"{seed}:{label}")
    pool: list[int] = []
    for c in sorted(set(y.tolist())):
        idx = np.flatnonzero(y == c).tolist()
        if len(idx) < per_class:
            raise services.PipelineError(f"{label}: class {c} has {len(idx)} test images; {per_class} needed.")
        pool += rng.sample(idx, per_class)
    if n_sets * set_size > len(pool):
        raise services.PipelineError(f"{label}: {n_sets} sets of {set_size} need more than {len(pool)} images.")
    drawn = rng.sample(pool, n_sets * set_size)
    pred, probs = predict(loading.load_model(classifier), to_tensor(x[drawn]))
    pred, probs = np.asarray(pred), np.asarray(probs)
    with transaction.atomic():
        Stimulus.objects.filter(study=study, group=label).delete()
        start = (Stimulus.objects.filter(study=study).order_by("-position").values_list("position", flat=True).first() or -1) + 1
        Stimulus.objects.bulk_create([
            Stimulus(
                study=study, dataset=classifier.dataset, split="test", index=int(i), position=start + k,
                group=label, set_index=k // set_size,
                image=store_bytes(loading.png_of(x[i], scale=services.STIMULUS_SCALE), ext="png", folder="stimuli"),
                true_label=int(y[i]), model_prediction=int(pred[k]),
                probabilities=[round(float(p), 6) for p in probs[k]], classifier=classifier,
            )
            for k, i in enumerate(drawn)
        ])
    return list(Stimulus.objects.filter(study=study, group=label).order_by("position"))


def clustering_build_standin(*, study, base: Dataset, echo: Callable[[str], None] = log.info, classifier_epochs: int = 2, xnn_epochs: int = 300) -> None:
    """Data sets, classifiers, XNNs and image sets for Study B from four digit classes per data set."""
    config = dict(study.config or {})
    ids: dict[str, dict] = {}
    for label in config.get("datasets", ["CUB", "CEL"]):
        dataset = dataset_make_digit_standin(base=base, label=label, classes=STANDIN_CLASSES[label])
        echo(f"{label}: stand-in data set '{dataset.name}' ({dataset.n_train} train / {dataset.n_test} test)")
        classifier = TrainedModel.objects.filter(dataset=dataset, role="classifier", status="ready").first()
        if classifier is None:
            row = services.model_create(dataset=dataset, role="classifier", params={"epochs": classifier_epochs, "seed": 0, "lr": 2e-3})
            classifier = services.model_train(trained_id=row.pk)
        echo(f"{label}: classifier #{classifier.pk}, test accuracy {classifier.test_accuracy:.3f}")
        xnn = TrainedModel.objects.filter(dataset=dataset, role="xnn", status="ready", params__classifier_id=classifier.pk).first()
        if xnn is None:
            row = TrainedModel.objects.create(
                dataset=dataset, role=TrainedModel.Role.XNN, arch="XNN",
                params={"classifier_id": classifier.pk, "n_features": int(config.get("n_xfeatures", 7)), "epochs": xnn_epochs},
            )
            xnn = xnn_train(trained_id=row.pk)
        echo(f"{label}: XNN #{xnn.pk} with {int(config.get('n_xfeatures', 7))} x-features")
        if not Stimulus.objects.filter(study=study, group=label).exists():
            sets_draw(study=study, label=label, classifier=classifier)
        ids[label] = {"classifier_id": classifier.pk, "xnn_id": xnn.pk}
    study.config = {**config, "models": ids}
    study.save(update_fields=["config", "updated_at"])
