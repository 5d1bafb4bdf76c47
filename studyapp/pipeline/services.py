"""Writes of the precompute pipeline: import, train, select stimuli, explain.

Each is a plain function called by a management command, an admin action or a thin Celery task.
Each either completes or leaves the database as it was (no half-imported data set, no asset row
without its files).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.db import transaction
from django.utils import timezone

from studyapp.pipeline import loading
from studyapp.pipeline.models import (
    Dataset,
    ExplanationAsset,
    PrecomputeJob,
    Stimulus,
    TrainedModel,
)
from studyapp.pipeline.storage import media_path, store_bytes

log = logging.getLogger(__name__)
STIMULUS_SCALE = 8


class PipelineError(Exception):
    """A pipeline step refused its input; the message says why, nothing was changed."""


# ---------------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------------
def _store_dataset(*, name: str, kind: str, source: str, is_standin: bool, class_names: list[str], train, test) -> Dataset:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x_train=train.images, y_train=train.labels, x_test=test.images, y_test=test.labels)
    data = buffer.getvalue()
    fingerprint = hashlib.sha256(data).hexdigest()
    existing = Dataset.objects.filter(fingerprint=fingerprint, name=name).first()
    if existing is not None:
        return existing
    relative = store_bytes(data, ext="npz", folder="datasets")
    with transaction.atomic():
        if Dataset.objects.filter(name=name).exists():
            raise PipelineError(f"A different data set named '{name}' exists already; choose another name.")
        return Dataset.objects.create(
            name=name,
            kind=kind,
            source=source,
            is_standin=is_standin,
            file=relative,
            fingerprint=fingerprint,
            class_names=class_names,
            n_train=len(train.labels),
            n_test=len(test.labels),
        )


KANNADA_CLASS_NAMES = [chr(0x0CE6 + i) for i in range(10)]


def dataset_import_kannada(*, name: str, directory: str | Path) -> Dataset:
    """Import Kannada-MNIST (npz, IDX or Kaggle CSV) from ``directory``; all or nothing."""
    from explainers.data import DatasetError, load_kannada

    try:
        train = load_kannada(directory, split="train")
        test = load_kannada(directory, split="test")
    except DatasetError as exc:
        raise PipelineError(str(exc)) from exc
    return _store_dataset(
        name=name, kind=Dataset.Kind.KANNADA, source=str(directory), is_standin=False,
        class_names=KANNADA_CLASS_NAMES, train=train, test=test,
    )


def dataset_download_kannada(*, name: str, dest: str | Path) -> Dataset:
    from explainers.data import download_kannada

    directory = download_kannada(dest)
    return dataset_import_kannada(name=name, directory=directory)


def dataset_make_lookalike(*, name: str, n_per_class: int = 600, seed: int = 0) -> Dataset:
    """The offline stand-in: Kannada digit glyphs rendered from a font with jitter (labelled so)."""
    from explainers.data import make_lookalike_kannada

    train = make_lookalike_kannada(n_per_class, seed=seed)
    test = make_lookalike_kannada(max(50, n_per_class // 6), seed=seed + 1)
    return _store_dataset(
        name=name, kind=Dataset.Kind.LOOKALIKE, source=f"generated offline (seed {seed})", is_standin=True,
        class_names=KANNADA_CLASS_NAMES, train=train, test=test,
    )


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
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
    return TrainedModel.objects.create(dataset=dataset, role=role, arch=arch, params=params)


def _progress_writer(trained_id: int, echo: Callable[[dict], None] | None) -> Callable[[dict], None]:
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


def _subset(x: np.ndarray, y: np.ndarray, *, classes: list[int] | None, limit: int | None, seed: int):
    idx = np.arange(len(y))
    if classes:
        idx = idx[np.isin(y, classes)]
    if limit and len(idx) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=limit, replace=False))
    return x[idx], y[idx]


def store_checkpoint(trained: TrainedModel, model, *, arch_kwargs: dict, metadata: dict) -> str:
    """Save ``model`` as a content-addressed checkpoint under MEDIA_ROOT/models; return its path."""
    from explainers import classifiers

    folder = media_path("models")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{trained.pk}-{trained.role}.pt"
    try:
        classifiers.save_checkpoint(tmp, model, arch=trained.arch, arch_kwargs=arch_kwargs, metadata=metadata)
        return store_bytes(tmp.read_bytes(), ext="pt", folder="models")
    finally:
        tmp.unlink(missing_ok=True)


def model_train(*, trained_id: int, echo: Callable[[dict], None] | None = None) -> TrainedModel:
    """Train the network a ``TrainedModel`` row describes, save the checkpoint, mark it ready."""
    import torch

    from explainers import classifiers
    from explainers.data import to_tensor

    trained = TrainedModel.objects.select_related("dataset").get(pk=trained_id)
    if trained.status == TrainedModel.Status.READY:
        return trained
    TrainedModel.objects.filter(pk=trained.pk).update(status=TrainedModel.Status.RUNNING, error="")
    loading.configure_torch()
    params = {"epochs": 2, "seed": 0, "max_train": None, "classes": None, **trained.params}
    arrays = loading.dataset_arrays(trained.dataset)
    x_np, y_np = _subset(arrays["x_train"], arrays["y_train"], classes=params["classes"], limit=params["max_train"], seed=params["seed"])
    x, y = to_tensor(x_np), torch.as_tensor(y_np, dtype=torch.long)
    progress = _progress_writer(trained.pk, echo)
    metadata = {"data_fingerprint": trained.dataset.fingerprint, "dataset": trained.dataset.name, "params": params}
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
            from explainers.vae import VAE, train_vae

            arch_kwargs = {"latent_dim": params.get("latent_dim", 400), "width": params.get("width", 32)}
            model = VAE(**arch_kwargs)
            train_vae(
                model, x, epochs=params["epochs"], seed=params["seed"], progress=progress,
                lr=params.get("lr", 1e-3), batch_size=params.get("batch_size", 128),
            )
            accuracy = None
        elif trained.role == TrainedModel.Role.WGAN:
            from explainers.wgan import DCGANGenerator, WGANCritic, train_wgan

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

    from explainers.classifiers import predict
    from explainers.data import to_tensor

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


# ---------------------------------------------------------------------------------------------
# Stimuli
# ---------------------------------------------------------------------------------------------
def stimuli_select(*, study, classifier: TrainedModel, n: int | None = None, wrong_share: float | None = None, seed: int = 0) -> list[Stimulus]:
    """Pick the study's stimuli from the test split: the same set for all arms.

    Balanced over the study's two classes and over model-correct / model-wrong (``wrong_share``
    of each class's images are ones the model gets wrong; default from the study config, 0.5).
    Only images whose prediction is one of the two classes qualify, so "correct" is always one
    of the two answers a participant can give. A few spares beyond ``n_trials`` absorb
    explanations that fail the validity gate. Refused once participants have answered.
    """
    from explainers.classifiers import predict
    from explainers.data import to_tensor

    if study.participants.exists():
        raise PipelineError("Participants have started this study; its stimuli can no longer change.")
    classes = list(study.classes)
    if len(classes) != 2:
        raise PipelineError("The study needs exactly two classes.")
    config = study.config or {}
    n = n or study.n_trials + int(config.get("spare_stimuli", 4))
    wrong_share = float(config.get("wrong_share", 0.5) if wrong_share is None else wrong_share)
    if not 0 <= wrong_share <= 1:
        raise PipelineError("wrong_share must lie between 0 and 1.")
    arrays = loading.dataset_arrays(classifier.dataset)
    x, y = arrays["x_test"], arrays["y_test"]
    idx = np.flatnonzero(np.isin(y, classes))
    pred, probs = predict(loading.load_model(classifier), to_tensor(x[idx]))
    pred, probs = np.asarray(pred), np.asarray(probs)
    rng = random.Random(seed)
    chosen: list[int] = []
    shortfall = []
    per_class = [n // 2 + (1 if k < n % 2 else 0) for k in range(2)]
    for k, cls in enumerate(classes):
        in_class = y[idx] == cls
        ok = np.isin(pred, classes)
        right = list(np.flatnonzero(in_class & ok & (pred == cls)))
        wrong = list(np.flatnonzero(in_class & ok & (pred != cls)))
        rng.shuffle(right)
        rng.shuffle(wrong)
        n_wrong = min(len(wrong), round(per_class[k] * wrong_share))
        if n_wrong < round(per_class[k] * wrong_share):
            shortfall.append(f"class {cls}: only {len(wrong)} model-wrong images")
        picks = wrong[:n_wrong] + right[: per_class[k] - n_wrong]
        chosen += picks
    if len(chosen) < n:
        raise PipelineError(f"Only {len(chosen)} usable test images for classes {classes}; need {n}.")
    if shortfall:
        log.warning("Stimulus selection short of model-wrong images: %s", "; ".join(shortfall))
    rng.shuffle(chosen)
    with transaction.atomic():
        Stimulus.objects.filter(study=study).delete()
        rows = [
            Stimulus(
                study=study,
                dataset=classifier.dataset,
                split="test",
                index=int(idx[j]),
                position=pos,
                image=store_bytes(loading.png_of(x[idx[j]], scale=STIMULUS_SCALE), ext="png", folder="stimuli"),
                true_label=int(y[idx[j]]),
                model_prediction=int(pred[j]),
                probabilities=[round(float(p), 6) for p in probs[j]],
                classifier=classifier,
            )
            for pos, j in enumerate(chosen)
        ]
        Stimulus.objects.bulk_create(rows)
        study.config = {**config, "classifier_id": classifier.pk, "selection_shortfall": shortfall}
        study.save(update_fields=["config", "updated_at"])
    return list(Stimulus.objects.filter(study=study).order_by("position"))


# ---------------------------------------------------------------------------------------------
# Explanations
# ---------------------------------------------------------------------------------------------
def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def explanation_params(*, study, method: str) -> dict:
    """Everything that determines an explanation; part of the asset's identity."""
    config = study.config or {}
    params: dict = {"method": method, "classifier_id": config.get("classifier_id")}
    if method in (ExplanationAsset.Method.CDEEPEX, ExplanationAsset.Method.XGEMS):
        params["generator_id"] = config.get("generator_id")
        params["seed"] = int(config.get("explain_seed", 0))
        params["cdeepex"] = config.get("cdeepex", {})
    if method == ExplanationAsset.Method.GRADCAM:
        params["target"] = config.get("gradcam_target", "prediction")
    if method in CLUSTERING_METHODS:
        params.pop("classifier_id")
        params["models"] = config.get("models", {})
    return params


CLUSTERING_METHODS = (
    ExplanationAsset.Method.EXCITATION_BP, ExplanationAsset.Method.DEEPLIFT, ExplanationAsset.Method.XNN,
)


def _clustering_outputs(stimuli: list[Stimulus], method: str, params: dict) -> list[tuple[dict, object]]:
    """1-Heatmap (ExcitationBP c-MWP or DeepLIFT from the prediction) or the XNN's x-feature maps.

    Stimuli of one data set share a classifier; they are explained in one batch per data set.
    """
    import torch

    from explainers import metrics, render
    from explainers.data import to_tensor

    by_classifier: dict[int, list[int]] = {}
    for k, s in enumerate(stimuli):
        by_classifier.setdefault(s.classifier_id, []).append(k)
    outputs: list[tuple[dict, object] | None] = [None] * len(stimuli)
    for positions in by_classifier.values():
        group = [stimuli[k] for k in positions]
        classifier = loading.load_model(group[0].classifier)
        arrays = loading.dataset_arrays(group[0].dataset)
        images = to_tensor(np.stack([arrays[f"x_{s.split}"][s.index] for s in group]))
        predicted = torch.tensor([s.model_prediction for s in group])
        scale = max(1, round(224 / images.shape[-1]))  # about 224 px on screen, like the stimuli
        if method == ExplanationAsset.Method.XNN:
            from explainers.excitation_bp import ExcitationBP

            label = group[0].group
            xnn = loading.load_model(TrainedModel.objects.get(pk=params["models"][label]["xnn_id"]))
            maps = ExcitationBP(classifier, None).xnn_maps(xnn, images)  # (N, n, H, W)
            explanation = xnn.explain(classifier, images, predicted)
            for i, k in enumerate(positions):
                checks = metrics.heatmap_validity(maps[i])
                reasons = [f"x-feature heatmap {j + 1}: {r}" for j, c in enumerate(checks) for r in c.reasons]
                files = {f"x{j}": store_bytes(render.heatmap_overlay_png(images[i], maps[i, j], scale=scale), ext="png") for j in range(maps.shape[1])}
                numbers = {"contributions": [round(float(v), 4) for v in explanation.normalised[i]]}
                outputs[k] = (files, _Validity(not reasons, reasons, numbers))
        else:
            if method == ExplanationAsset.Method.DEEPLIFT:
                from explainers.deeplift import DeepLift

                maps = DeepLift(classifier)(images, predicted)
            else:
                from explainers.excitation_bp import ExcitationBP

                maps = ExcitationBP(classifier, None)(images, predicted)
            for i, (k, validity) in enumerate(zip(positions, metrics.heatmap_validity(maps), strict=True)):
                outputs[k] = ({"heatmap": store_bytes(render.heatmap_overlay_png(images[i], maps[i], scale=scale), ext="png")}, validity)
    return outputs  # type: ignore[return-value]


class _Validity:
    def __init__(self, ok: bool, reasons: list[str], numbers: dict):
        self.ok, self.reasons, self.numbers = ok, reasons, numbers


def _study_classes(stimuli: list[Stimulus]) -> tuple[list[int], list[int]]:
    """true = the classifier's prediction, probe = the study's other class (CDeepEx y_true is D's label)."""
    true, probe = [], []
    for s in stimuli:
        a, b = s.study.classes
        t = s.model_prediction
        true.append(t)
        probe.append(b if t == a else a)
    return true, probe


def explanations_compute(*, stimulus_ids: list[int], method: str) -> list[ExplanationAsset]:
    """Compute, render, validate and store one method's explanations for a batch of stimuli.

    Idempotent: stimuli that already have an asset for these parameters are skipped, and files
    are content-addressed, so a retried or re-delivered task produces no duplicate.
    """
    import torch

    from explainers import metrics, render
    from explainers.data import to_tensor

    stimuli = list(Stimulus.objects.filter(pk__in=stimulus_ids).select_related("study", "classifier", "dataset").order_by("position"))
    if not stimuli:
        return []
    study = stimuli[0].study
    params = explanation_params(study=study, method=method)
    phash = params_hash(params)
    done = set(
        ExplanationAsset.objects.filter(stimulus__in=stimuli, method=method, params_hash=phash).values_list("stimulus_id", flat=True)
    )
    todo = [s for s in stimuli if s.pk not in done]
    if not todo:
        return list(ExplanationAsset.objects.filter(stimulus__in=stimuli, method=method, params_hash=phash))
    outputs: list[tuple[dict, object]] = []
    if method in CLUSTERING_METHODS:
        outputs = _clustering_outputs(todo, method, params)
    else:
        classifier = loading.load_model(todo[0].classifier)
        arrays = loading.dataset_arrays(todo[0].dataset)
        images = to_tensor(np.stack([arrays[f"x_{s.split}"][s.index] for s in todo]))
        true, probe = _study_classes(todo)
        true_t, probe_t = torch.tensor(true), torch.tensor(probe)
    if method in CLUSTERING_METHODS:
        pass
    elif method == ExplanationAsset.Method.GRADCAM:
        from explainers.gradcam import GradCAM
        from explainers.targets import ClassTarget

        maps = GradCAM(classifier, classifier.features_layer)(images, ClassTarget(true_t))
        for i, validity in enumerate(metrics.heatmap_validity(maps)):
            files = {
                "overlay": store_bytes(render.heatmap_overlay_png(images[i], maps[i]), ext="png"),
            }
            outputs.append((files, validity))
    elif method in (ExplanationAsset.Method.CDEEPEX, ExplanationAsset.Method.XGEMS):
        from explainers import cdeepex

        generator_row = TrainedModel.objects.get(pk=params["generator_id"])
        generator = loading.load_model(generator_row)
        encoder = generator if generator_row.role == TrainedModel.Role.VAE else None
        decode = generator.decode if encoder is not None else generator  # G maps z to an image
        result = cdeepex.explain(
            classifier, decode, images,
            true_labels=true_t, probe_labels=probe_t, encoder=encoder,
            inequality=method == ExplanationAsset.Method.CDEEPEX,
            config=cdeepex.CDeepExConfig(**params["cdeepex"]),
            generator_kind="vae" if encoder is not None else "gan",
            seed=params["seed"],
        )
        for i, validity in enumerate(metrics.cdeepex_validity(result)):
            frames = result.frames[i]
            files = {
                "gif": store_bytes(render.morph_gif(frames), ext="gif"),
                "webp": store_bytes(render.morph_webp(frames), ext="webp"),
                "strip": store_bytes(render.frames_strip_png(frames), ext="png"),
                "difference": store_bytes(render.difference_png(images[i], result.difference[i]), ext="png"),
            }
            outputs.append((files, validity))
    else:
        raise PipelineError(f"No precompute for method {method!r} in a learning study.")
    created = []
    with transaction.atomic():
        for stimulus, (files, validity) in zip(todo, outputs, strict=True):
            asset, _ = ExplanationAsset.objects.get_or_create(
                stimulus=stimulus, method=method, params_hash=phash,
                defaults={
                    "params": params, "files": files, "valid": bool(validity.ok),
                    "reasons": list(validity.reasons),
                    "metrics": {k: (v if isinstance(v, list) else float(v)) for k, v in validity.numbers.items()},
                },
            )
            created.append(asset)
    return created


def precompute_plan(*, study) -> list[tuple[str, list[int]]]:
    """(method, stimulus ids) batches still missing an asset for the current parameters."""
    from studyapp.studies.selectors import study_methods

    batch = int((study.config or {}).get("explain_batch", 16))
    ids = list(Stimulus.objects.filter(study=study).order_by("position").values_list("pk", flat=True))
    work = []
    for method in study_methods(study=study):
        phash = params_hash(explanation_params(study=study, method=method))
        have = set(
            ExplanationAsset.objects.filter(stimulus__study=study, method=method, params_hash=phash).values_list("stimulus_id", flat=True)
        )
        missing = [i for i in ids if i not in have]
        work += [(method, missing[k : k + batch]) for k in range(0, len(missing), batch)]
    return work


def precompute_start(*, study) -> PrecomputeJob:
    """Queue the missing explanations as Celery tasks (after commit). Resumable: only what is missing."""
    work = precompute_plan(study=study)
    job = PrecomputeJob.objects.create(
        study=study, kind=PrecomputeJob.Kind.EXPLAIN, total=sum(len(ids) for _, ids in work),
        plan=[{"method": m, "params_hash": params_hash(explanation_params(study=study, method=m)), "stimuli": ids} for m, ids in work],
        status=PrecomputeJob.Status.QUEUED if work else PrecomputeJob.Status.DONE,
        message="" if work else "Nothing to do: every stimulus has its explanations.",
    )
    for method, ids in work:
        transaction.on_commit(lambda m=method, i=ids: _enqueue(job.pk, m, i))
    return job


def _enqueue(job_id: int, method: str, ids: list[int]) -> None:
    """Send one batch to the broker; if it is down, say so on the job instead of failing the request."""
    from studyapp.pipeline import tasks

    try:
        tasks.explain_batch.apply_async((job_id, method, ids), retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2})
    except Exception as exc:
        log.error("Could not queue %s for job %s: %s", method, job_id, exc)
        PrecomputeJob.objects.filter(pk=job_id).update(
            status=PrecomputeJob.Status.FAILED,
            message=f"Could not reach the Celery broker ({type(exc).__name__}: {exc}). Start it and run precompute again: only what is missing is queued.",
        )


def precompute_resume(*, job_id: int) -> int:
    """Queue again what an unfinished job still misses (after a worker was killed, say).

    Harmless when the original messages still arrive: computing is idempotent and files are
    content-addressed. Returns the number of explanations queued.
    """
    job = PrecomputeJob.objects.get(pk=job_id)
    if job.status == PrecomputeJob.Status.DONE:
        return 0
    queued = 0
    for batch in job.plan:
        have = set(
            ExplanationAsset.objects.filter(
                stimulus_id__in=batch["stimuli"], method=batch["method"], params_hash=batch["params_hash"]
            ).values_list("stimulus_id", flat=True)
        )
        missing = [i for i in batch["stimuli"] if i not in have]
        if missing:
            _enqueue(job.pk, batch["method"], missing)
            queued += len(missing)
    return queued


def precompute_resume_unfinished() -> int:
    """Called when a worker starts: resume jobs that are unfinished and have not moved for
    ``PRECOMPUTE_RESUME_AFTER`` seconds (a fresh job's messages are still in the queue)."""
    from datetime import timedelta

    from django.conf import settings

    stale = timezone.now() - timedelta(seconds=settings.PRECOMPUTE_RESUME_AFTER)
    total = 0
    unfinished = PrecomputeJob.objects.filter(
        status__in=[PrecomputeJob.Status.QUEUED, PrecomputeJob.Status.RUNNING], updated_at__lte=stale
    )
    for job_id in unfinished.values_list("pk", flat=True):
        total += precompute_resume(job_id=job_id)
    return total


def precompute_job_refresh(*, job_id: int, failed_batch: str = "") -> PrecomputeJob:
    """Recount a job's progress from the assets that exist (so a re-delivered task never double-counts)."""
    with transaction.atomic():
        job = PrecomputeJob.objects.select_for_update().get(pk=job_id)
        done = 0
        for batch in job.plan:
            done += ExplanationAsset.objects.filter(
                stimulus_id__in=batch["stimuli"], method=batch["method"], params_hash=batch["params_hash"]
            ).count()
        job.done = done
        if failed_batch and failed_batch not in job.message:
            job.failed += 1
            job.message = (job.message + "\n" + failed_batch).strip()[:4000]
        if job.done >= job.total:
            job.status = PrecomputeJob.Status.DONE
        elif job.failed:
            job.status = PrecomputeJob.Status.FAILED
        else:
            job.status = PrecomputeJob.Status.RUNNING
        job.save(update_fields=["done", "failed", "message", "status", "updated_at"])
        return job


def dataset_auto(*, name: str | None = None, echo: Callable[[str], None] = log.info) -> Dataset:
    """KANNADA_MNIST_DIR if set, else the official download, else the offline look-alike stand-in."""
    from django.conf import settings

    if settings.KANNADA_MNIST_DIR:
        echo(f"Importing Kannada-MNIST from {settings.KANNADA_MNIST_DIR}")
        return dataset_import_kannada(name=name or "kannada-mnist", directory=settings.KANNADA_MNIST_DIR)
    try:
        echo("KANNADA_MNIST_DIR is not set: trying the official download")
        return dataset_download_kannada(name=name or "kannada-mnist", dest=settings.VAR_DIR / "downloads" / "kannada")
    except Exception as exc:  # offline machine: fall back, and say so
        echo(f"Download failed ({type(exc).__name__}: {exc}); generating the offline look-alike stand-in")
    return dataset_make_lookalike(name=name or "kannada-lookalike")
