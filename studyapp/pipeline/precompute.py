"""Web side of the precompute: plan a study's missing explanations, queue them, resume a job.

The caller says which methods the study shows (``studies.selectors.study_methods``): the
pipeline knows how to compute an explanation, not which arms need one. The parameters of each
method are computed here, once, when the job is planned (:mod:`studyapp.pipeline.params`, no
torch) and kept in the job's plan with their hash; each Celery task carries the hash and the
worker (``tasks.explain_batch`` -> :mod:`studyapp.pipeline.explain`) computes with the job's
parameters, so a configuration changed mid-job does not leave the job short.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from studyapp.pipeline import selectors, tasks
from studyapp.pipeline.models import PrecomputeJob, Stimulus
from studyapp.pipeline.params import explanation_params, params_hash, target_ranks

log = logging.getLogger(__name__)


def _work(*, study, methods: Iterable[str]) -> list[dict]:
    """The plan's batches: ``{"method", "params_hash", "params", "stimuli"}`` for the stimuli still
    missing an asset for the method's current parameters, ``explain_batch`` at a time."""
    batch = study.parsed_config.explain_batch
    ids = list(Stimulus.objects.filter(study=study).order_by("position", "pk").values_list("pk", flat=True))
    work = []
    for method in methods:
        for rank in target_ranks(study=study, method=method):  # a HIVE study: the top four classes' maps
            params = explanation_params(study=study, method=method, target_rank=rank)
            phash = params_hash(params)
            have = selectors.stimuli_with_asset(study=study, method=method, params_hash=phash)
            missing = [i for i in ids if i not in have]
            work += [
                {"method": method, "params_hash": phash, "params": params, "stimuli": missing[k : k + batch]}
                for k in range(0, len(missing), batch)
            ]
    return work


def plan(*, study, methods: Iterable[str]) -> list[tuple[str, list[int]]]:
    """(method, stimulus ids) batches still missing an asset for the current parameters."""
    return [(b["method"], b["stimuli"]) for b in _work(study=study, methods=methods)]


def start(*, study, methods: Iterable[str]) -> PrecomputeJob:
    """Queue the missing explanations of ``methods`` as Celery tasks (after commit).

    Resumable: only what is missing is queued, so running it again is harmless. The job keeps
    each batch's parameters and their hash; the tasks carry the hash.
    """
    work = _work(study=study, methods=methods)
    job = PrecomputeJob.objects.create(
        study=study, kind=PrecomputeJob.Kind.EXPLAIN, total=sum(len(b["stimuli"]) for b in work),
        plan=work,
        status=PrecomputeJob.Status.QUEUED if work else PrecomputeJob.Status.DONE,
        message="" if work else "Nothing to do: every stimulus has its explanations.",
    )
    for b in work:
        transaction.on_commit(
            lambda m=b["method"], i=b["stimuli"], h=b["params_hash"]: enqueue(job_id=job.pk, method=m, stimulus_ids=i, params_hash=h)
        )
    return job


def enqueue(*, job_id: int, method: str, stimulus_ids: list[int], params_hash: str) -> None:
    """Send one batch, with the hash of the job's parameters, to the broker; if it is down, say so
    on the job instead of failing the request.

    Call it after commit (:func:`start` does): the worker must find the job's rows.
    """
    try:
        tasks.explain_batch.apply_async(
            (job_id, method, stimulus_ids, params_hash), retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2}
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
        have = selectors.stimuli_with_asset(method=batch["method"], params_hash=batch["params_hash"], stimulus_ids=batch["stimuli"])
        missing = [i for i in batch["stimuli"] if i not in have]
        if missing:
            enqueue(job_id=job.pk, method=batch["method"], stimulus_ids=missing, params_hash=batch["params_hash"])
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
