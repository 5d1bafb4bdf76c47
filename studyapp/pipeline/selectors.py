"""Reads of the pipeline: what is ready, what failed and why, whether the broker answers."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from django.db.models import Count, Q

from studyapp.pipeline import loading
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import ExplanationAsset, PrecomputeJob, Stimulus
from studyapp.pipeline.params import params_hash as hash_of


def stimuli_with_asset(*, method: str, params_hash: str, study=None, stimulus_ids: Iterable[int] | None = None) -> set[int]:
    """The ids of the stimuli (of ``study``, or among ``stimulus_ids``) that already have an
    asset for ``(method, params_hash)``, valid or refused: the one question of planning a job,
    resuming it, skipping done work in the worker and counting a job's progress."""
    if (study is None) == (stimulus_ids is None):
        raise TypeError("stimuli_with_asset takes either a study or stimulus ids")
    assets = ExplanationAsset.objects.filter(method=method, params_hash=params_hash)
    assets = assets.filter(stimulus__study=study) if study is not None else assets.filter(stimulus_id__in=list(stimulus_ids or ()))
    return set(assets.values_list("stimulus_id", flat=True))


def job_done(*, plan: list[dict]) -> int:
    """How many of a job's planned explanations exist: one query per (method, parameters)."""
    planned: dict[tuple[str, str], set[int]] = {}
    for batch in plan:
        planned.setdefault((batch["method"], batch["params_hash"]), set()).update(batch["stimuli"])
    return sum(
        len(stimuli_with_asset(method=method, params_hash=phash, stimulus_ids=ids)) for (method, phash), ids in planned.items()
    )


def job_params(*, job_id: int, method: str, params_hash: str | None) -> dict | None:
    """The parameters job ``job_id`` planned for ``method`` under ``params_hash`` (what its worker
    computes with). None for a message without a hash or a job planned before plans kept their
    parameters: the worker then takes the study's current ones, as it did."""
    if params_hash is None:
        return None
    plan = PrecomputeJob.objects.filter(pk=job_id).values_list("plan", flat=True).first()
    if plan is None:
        raise PipelineError(f"Precompute job {job_id} does not exist.")
    for batch in plan:
        if batch["method"] == method and batch["params_hash"] == params_hash and "params" in batch:
            if hash_of(batch["params"]) != params_hash:
                raise PipelineError(f"Precompute job {job_id}: the parameters stored for {method} do not match their hash.")
            return batch["params"]
    return None


def explanation_summary(*, study) -> list[dict]:
    rows = (
        ExplanationAsset.objects.filter(stimulus__study=study)
        .values("method")
        .annotate(n_valid=Count("pk", filter=Q(valid=True)), n_invalid=Count("pk", filter=Q(valid=False)))
        .order_by("method")
    )
    total = Stimulus.objects.filter(study=study).count()
    return [{**row, "stimuli": total, **_apem_summary(study=study, method=row["method"])} for row in rows]


def _apem_summary(*, study, method: str) -> dict:
    """Mean and median APEM, eps- and eps+ of a method's valid heatmap assets (all x-features
    for XNN), and how many maps reached the perturbation budget's ceiling (the classifier never
    flipped, so their APEM of 0 says nothing); empty strings where none has APEM numbers."""
    import numpy as np

    values: dict[str, list[float]] = {"apem": [], "eps_minus": [], "eps_plus": [], "apem_at_ceiling": []}
    for numbers in ExplanationAsset.objects.filter(stimulus__study=study, method=method, valid=True).values_list("metrics", flat=True):
        for key, bucket in values.items():
            value = (numbers or {}).get(key)
            if value is not None:
                bucket.extend(value if isinstance(value, list) else [value])
    if not values["apem"]:
        return {"apem_mean": "", "apem_median": "", "eps_minus_mean": "", "eps_plus_mean": "", "apem_at_ceiling": "", "apem_maps": ""}
    return {
        "apem_at_ceiling": int(sum(1 for v in values["apem_at_ceiling"] if v)), "apem_maps": len(values["apem"]),
        "apem_mean": round(float(np.mean(values["apem"])), 1), "apem_median": round(float(np.median(values["apem"])), 1),
        "eps_minus_mean": round(float(np.mean(values["eps_minus"])), 1), "eps_plus_mean": round(float(np.mean(values["eps_plus"])), 1),
    }


def invalid_explanations(*, study) -> list[ExplanationAsset]:
    return list(
        ExplanationAsset.objects.filter(stimulus__study=study, valid=False).select_related("stimulus").order_by("stimulus__position")
    )


def latest_job(*, study) -> PrecomputeJob | None:
    return PrecomputeJob.objects.filter(study=study).order_by("-created_at").first()


def broker_status(*, timeout: float = 1.0) -> dict:
    """Whether the broker is reachable and a worker is alive, for the admin and /health?broker=1."""
    import time

    from django.conf import settings

    from studyapp.celery import HEARTBEAT_SECONDS, app, heartbeat_dir

    status = {"checked": True, "broker": False, "workers": 0, "detail": ""}
    if not settings.CELERY_BROKER_URL and not app.conf.broker_url.startswith("redis"):
        queue = settings.CELERY_QUEUE_DIR / "queue"
        status["broker"] = queue.is_dir()
        if not status["broker"]:
            status["detail"] = f"The embedded broker's folder {queue} is missing."
            return status
        now = time.time()
        beats = [p for p in heartbeat_dir().glob("*") if now - p.stat().st_mtime < 3 * HEARTBEAT_SECONDS] if heartbeat_dir().is_dir() else []
        status["workers"] = len(beats)
    else:
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=timeout)
            status["broker"] = True
        except Exception as exc:
            status["detail"] = f"The Celery broker is unreachable ({type(exc).__name__}: {exc}). Explanations cannot be precomputed until it is back; participants are not affected."
            return status
        try:
            status["workers"] = len(app.control.ping(timeout=timeout) or [])
        except Exception as exc:  # pragma: no cover - reported, not raised
            status["detail"] = f"Cannot ping workers ({type(exc).__name__})."
            return status
    if not status["workers"]:
        status["detail"] = "No Celery worker is running: queued explanations wait until one starts (celery -A studyapp worker -Q default,explain). Participants are not affected."
    return status


def study_datasets(study) -> list:
    """The data sets a study's stimuli come from, in stimulus order (for the admin and the demo)."""
    from studyapp.pipeline.models import Dataset

    ids = list(dict.fromkeys(Stimulus.objects.filter(study=study).order_by("position", "pk").values_list("dataset_id", flat=True)))
    by_id = Dataset.objects.in_bulk(ids)
    return [by_id[i] for i in ids]


def dataset_contents(dataset) -> dict:
    """What a stored data set holds, for the import command and the admin's message:
    ``{"size": (H, W), "colour": bool, "classes": [(name, n_train, n_test), ...]}``."""
    arrays = loading.dataset_arrays(dataset)
    k = len(dataset.class_names)
    train = np.bincount(arrays["y_train"], minlength=k)
    test = np.bincount(arrays["y_test"], minlength=k)
    images = arrays["x_train"]
    return {
        "size": tuple(int(v) for v in images.shape[1:3]),
        "colour": images.ndim == 4 and images.shape[-1] == 3,
        "classes": [(str(name), int(train[c]), int(test[c])) for c, name in enumerate(dataset.class_names)],
    }


def dataset_contents_text(dataset) -> str:
    """One line: ``32x32 colour; curl 146 train / 37 test, loop 139 train / 35 test``."""
    contents = dataset_contents(dataset)
    height, width = contents["size"]
    classes = ", ".join(f"{name} {n_train} train / {n_test} test" for name, n_train, n_test in contents["classes"])
    return f"{height}x{width} {'colour' if contents['colour'] else 'grey'}; {classes}"
