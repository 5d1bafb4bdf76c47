"""Web side of the precompute: plan a study's missing explanations, queue them, resume a job.

The caller says which methods the study shows (``studies.selectors.study_methods``): the
pipeline knows how to compute an explanation, not which arms need one. The work itself runs on
a Celery worker (``tasks.explain_batch`` -> :mod:`studyapp.pipeline.explain`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from studyapp.pipeline import tasks
from studyapp.pipeline.explain import explanation_params, params_hash
from studyapp.pipeline.models import ExplanationAsset, PrecomputeJob, Stimulus

log = logging.getLogger(__name__)


def plan(*, study, methods: Iterable[str]) -> list[tuple[str, list[int]]]:
    """(method, stimulus ids) batches still missing an asset for the current parameters."""
    batch = study.parsed_config.explain_batch
    ids = list(Stimulus.objects.filter(study=study).order_by("position").values_list("pk", flat=True))
    work = []
    for method in methods:
        phash = params_hash(explanation_params(study=study, method=method))
        have = set(
            ExplanationAsset.objects.filter(stimulus__study=study, method=method, params_hash=phash).values_list("stimulus_id", flat=True)
        )
        missing = [i for i in ids if i not in have]
        work += [(method, missing[k : k + batch]) for k in range(0, len(missing), batch)]
    return work


def start(*, study, methods: Iterable[str]) -> PrecomputeJob:
    """Queue the missing explanations of ``methods`` as Celery tasks (after commit).

    Resumable: only what is missing is queued, so running it again is harmless.
    """
    work = plan(study=study, methods=methods)
    job = PrecomputeJob.objects.create(
        study=study, kind=PrecomputeJob.Kind.EXPLAIN, total=sum(len(ids) for _, ids in work),
        plan=[{"method": m, "params_hash": params_hash(explanation_params(study=study, method=m)), "stimuli": ids} for m, ids in work],
        status=PrecomputeJob.Status.QUEUED if work else PrecomputeJob.Status.DONE,
        message="" if work else "Nothing to do: every stimulus has its explanations.",
    )
    for method, ids in work:
        transaction.on_commit(lambda m=method, i=ids: enqueue(job_id=job.pk, method=m, stimulus_ids=i))
    return job


def enqueue(*, job_id: int, method: str, stimulus_ids: list[int]) -> None:
    """Send one batch to the broker; if it is down, say so on the job instead of failing the request.

    Call it after commit (:func:`start` does): the worker must find the job's rows.
    """
    try:
        tasks.explain_batch.apply_async(
            (job_id, method, stimulus_ids), retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2}
        )
    except Exception as exc:
        log.error("Could not queue %s for job %s: %s", method, job_id, exc)
        PrecomputeJob.objects.filter(pk=job_id).update(
            status=PrecomputeJob.Status.FAILED,
            message=f"Could not reach the Celery broker ({type(exc).__name__}: {exc}). Start it and run precompute again: only what is missing is queued.",
        )


def resume(*, job_id: int) -> int:
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
            enqueue(job_id=job.pk, method=batch["method"], stimulus_ids=missing)
            queued += len(missing)
    return queued


def resume_unfinished() -> int:
    """Called when a worker starts (see ``apps.py``): resume jobs that are unfinished and have not
    moved for ``PRECOMPUTE_RESUME_AFTER`` seconds (a fresh job's messages are still in the queue)."""
    stale = timezone.now() - timedelta(seconds=settings.PRECOMPUTE_RESUME_AFTER)
    total = 0
    unfinished = PrecomputeJob.objects.filter(
        status__in=[PrecomputeJob.Status.QUEUED, PrecomputeJob.Status.RUNNING], updated_at__lte=stale
    )
    for job_id in unfinished.values_list("pk", flat=True):
        total += resume(job_id=job_id)
    return total
