"""Celery tasks: thin. Ids in, one call into :mod:`explain` or :mod:`training`, and the retry policy.

They are queued after commit by :mod:`studyapp.pipeline.precompute` (explanations) and the
pipeline admin (training); this module imports neither.
"""

from __future__ import annotations

import logging

from celery import shared_task

from studyapp.pipeline import explain, selectors, training

log = logging.getLogger(__name__)


@shared_task(
    bind=True,
    autoretry_for=(Exception,),
    retry_backoff=5,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=3,
    acks_late=True,
    reject_on_worker_lost=True,
)
def explain_batch(self, job_id: int, method: str, stimulus_ids: list[int], params_hash: str | None = None) -> int:
    """One batch of a precompute job, under the parameters the job planned for ``params_hash``
    (a message queued before tasks carried the hash: the study's current parameters)."""
    try:
        params = selectors.job_params(job_id=job_id, method=method, params_hash=params_hash)
        assets = explain.explanations_compute(stimulus_ids=stimulus_ids, method=method, params=params)
    except Exception as exc:
        if self.request.retries >= self.max_retries:
            explain.precompute_job_refresh(
                job_id=job_id, failed_batch=f"{method} {stimulus_ids[:3]}…: {type(exc).__name__}: {exc}"
            )
        raise
    explain.precompute_job_refresh(job_id=job_id)
    return len(assets)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=1)
def train_model(self, trained_id: int) -> int:
    training.model_train(trained_id=trained_id)
    return trained_id


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=1)
def prepare_clustering(self, study_id: int) -> int:
    """A clustering study's XNNs and image sets (``clustering.clustering_prepare``)."""
    from django.apps import apps

    from studyapp.pipeline import clustering

    study = apps.get_model("studies", "Study").objects.get(pk=study_id)  # by name: pipeline sits below studies
    clustering.clustering_prepare(study=study)
    return study_id
