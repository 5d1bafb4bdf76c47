"""Worker side of the precompute: compute, render, validate and store explanation assets.

:data:`COMPUTE` maps each method to the function that explains a batch of stimuli and returns,
per stimulus, its files (role -> media path) and its :class:`explainers.metrics.Validity`.
:func:`explanations_compute` turns those into :class:`ExplanationAsset` rows and
:func:`precompute_job_refresh` recounts a job's progress from them. Called by the Celery tasks
(``tasks.explain_batch``) and by tests; the web side that plans and queues the work is
:mod:`studyapp.pipeline.precompute`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import partial

import numpy as np
from django.db import transaction

from studyapp.pipeline import loading
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import ExplanationAsset, PrecomputeJob, Stimulus, TrainedModel
from studyapp.pipeline.storage import store_bytes

#: Study B's methods: stimuli are explained per data set, each with its own classifier.
CLUSTERING_METHODS = (
    ExplanationAsset.Method.EXCITATION_BP, ExplanationAsset.Method.DEEPLIFT, ExplanationAsset.Method.XNN,
)

#: One stimulus's output: its files (role -> media path) and its validity.
Output = tuple[dict[str, str], object]
Compute = Callable[[list[Stimulus], dict], list[Output]]


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


def _batch_inputs(stimuli: list[Stimulus]):
    """The classifier of the first stimulus and the images of all, as one tensor."""
    from explainers.datasets.common import to_tensor

    classifier = loading.load_model(stimuli[0].classifier)
    arrays = loading.dataset_arrays(stimuli[0].dataset)
    images = to_tensor(np.stack([arrays[f"x_{s.split}"][s.index] for s in stimuli]))
    return classifier, images


def _study_classes(stimuli: list[Stimulus]) -> tuple[list[int], list[int]]:
    """true = the classifier's prediction, probe = the study's other class (CDeepEx y_true is D's label)."""
    true, probe = [], []
    for s in stimuli:
        a, b = s.study.classes
        t = s.model_prediction
        true.append(t)
        probe.append(b if t == a else a)
    return true, probe


# -- Study A (learning): one classifier per study ------------------------------------------------
def _gradcam_outputs(stimuli: list[Stimulus], params: dict) -> list[Output]:
    import torch

    from explainers import metrics, render
    from explainers.gradcam import GradCAM
    from explainers.targets import ClassTarget

    classifier, images = _batch_inputs(stimuli)
    true, _ = _study_classes(stimuli)
    maps = GradCAM(classifier, classifier.features_layer)(images, ClassTarget(torch.tensor(true)))
    return [
        ({"overlay": store_bytes(render.heatmap_overlay_png(images[i], maps[i]), ext="png")}, validity)
        for i, validity in enumerate(metrics.heatmap_validity(maps))
    ]


def _morph_outputs(stimuli: list[Stimulus], params: dict, *, inequality: bool) -> list[Output]:
    """CDeepEx (``inequality=True``) or its xGEMs ablation: the morph from the image to the probe class."""
    import torch

    from explainers import cdeepex, metrics, render

    classifier, images = _batch_inputs(stimuli)
    true, probe = _study_classes(stimuli)
    generator_row = TrainedModel.objects.get(pk=params["generator_id"])
    generator = loading.load_model(generator_row)
    encoder = generator if generator_row.role == TrainedModel.Role.VAE else None
    decode = generator.decode if encoder is not None else generator  # G maps z to an image
    result = cdeepex.explain(
        classifier, decode, images,
        true_labels=torch.tensor(true), probe_labels=torch.tensor(probe), encoder=encoder,
        inequality=inequality,
        config=cdeepex.CDeepExConfig(**params["cdeepex"]),
        generator_kind="vae" if encoder is not None else "gan",
        seed=params["seed"],
    )
    outputs: list[Output] = []
    for i, validity in enumerate(metrics.cdeepex_validity(result)):
        frames = result.frames[i]
        files = {
            "gif": store_bytes(render.morph_gif(frames), ext="gif"),
            "webp": store_bytes(render.morph_webp(frames), ext="webp"),
            "strip": store_bytes(render.frames_strip_png(frames), ext="png"),
            "difference": store_bytes(render.difference_png(images[i], result.difference[i]), ext="png"),
        }
        outputs.append((files, validity))
    return outputs


# -- Study B (clustering): one classifier per data set -------------------------------------------
def _per_classifier(compute: Compute) -> Compute:
    """Explain stimuli that share a classifier (one data set) in one batch; keep the input order."""

    def grouped(stimuli: list[Stimulus], params: dict) -> list[Output]:
        by_classifier: dict[int, list[int]] = {}
        for k, s in enumerate(stimuli):
            by_classifier.setdefault(s.classifier_id, []).append(k)
        outputs: list[Output | None] = [None] * len(stimuli)
        for positions in by_classifier.values():
            for k, output in zip(positions, compute([stimuli[k] for k in positions], params), strict=True):
                outputs[k] = output
        return outputs  # type: ignore[return-value]

    return grouped


def _display_scale(images) -> int:
    return max(1, round(224 / images.shape[-1]))  # about 224 px on screen, like the stimuli


def _predicted(stimuli: list[Stimulus]):
    import torch

    return torch.tensor([s.model_prediction for s in stimuli])


def _excitation_bp(classifier):
    from explainers.excitation_bp import ExcitationBP

    return ExcitationBP(classifier, None)  # c-MWP, as in the XNN paper


def _deeplift(classifier):
    from explainers.deeplift import DeepLift

    return DeepLift(classifier)


def _heatmap_outputs(stimuli: list[Stimulus], params: dict, *, explainer: Callable) -> list[Output]:
    """The 1-Heatmap from the prediction, by ``explainer(classifier)(images, classes)``."""
    from explainers import metrics, render

    classifier, images = _batch_inputs(stimuli)
    maps = explainer(classifier)(images, _predicted(stimuli))
    scale = _display_scale(images)
    return [
        ({"heatmap": store_bytes(render.heatmap_overlay_png(images[i], maps[i], scale=scale), ext="png")}, validity)
        for i, validity in enumerate(metrics.heatmap_validity(maps))
    ]


def _xnn_outputs(stimuli: list[Stimulus], params: dict) -> list[Output]:
    """The XNN's x-feature heatmaps (ExcitationBP through each x-feature) and their contributions."""
    from explainers import metrics, render

    classifier, images = _batch_inputs(stimuli)
    label = stimuli[0].group
    xnn = loading.load_model(TrainedModel.objects.get(pk=params["models"][label]["xnn_id"]))
    maps = _excitation_bp(classifier).xnn_maps(xnn, images)  # (N, n, H, W)
    explanation = xnn.explain(classifier, images, _predicted(stimuli))
    scale = _display_scale(images)
    outputs: list[Output] = []
    for i in range(len(stimuli)):
        checks = metrics.heatmap_validity(maps[i])
        reasons = [f"x-feature heatmap {j + 1}: {r}" for j, c in enumerate(checks) for r in c.reasons]
        files = {f"x{j}": store_bytes(render.heatmap_overlay_png(images[i], maps[i, j], scale=scale), ext="png") for j in range(maps.shape[1])}
        numbers = {"contributions": [round(float(v), 4) for v in explanation.normalised[i]]}
        outputs.append((files, metrics.Validity(not reasons, reasons, numbers)))
    return outputs


#: method -> the function that explains a batch of its stimuli.
COMPUTE: dict[str, Compute] = {
    ExplanationAsset.Method.GRADCAM: _gradcam_outputs,
    ExplanationAsset.Method.CDEEPEX: partial(_morph_outputs, inequality=True),
    ExplanationAsset.Method.XGEMS: partial(_morph_outputs, inequality=False),
    ExplanationAsset.Method.EXCITATION_BP: _per_classifier(partial(_heatmap_outputs, explainer=_excitation_bp)),
    ExplanationAsset.Method.DEEPLIFT: _per_classifier(partial(_heatmap_outputs, explainer=_deeplift)),
    ExplanationAsset.Method.XNN: _per_classifier(_xnn_outputs),
}


def explanations_compute(*, stimulus_ids: list[int], method: str) -> list[ExplanationAsset]:
    """Compute, render, validate and store one method's explanations for a batch of stimuli.

    Idempotent: stimuli that already have an asset for these parameters are skipped, and files
    are content-addressed, so a retried or re-delivered task produces no duplicate.
    """
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
    compute = COMPUTE.get(method)
    if compute is None:
        raise PipelineError(f"No precompute for method {method!r} in a learning study.")
    outputs = compute(todo, params)
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
