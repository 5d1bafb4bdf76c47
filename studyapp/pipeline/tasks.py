"""Celery tasks: thin. Ids in, one service call, and the retry policy."""

from __future__ import annotations

import logging

from celery import shared_task

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
def explain_batch(self, job_id: int, method: str, stimulus_ids: list[int]) -> int:
    from studyapp.pipeline import services

    try:
        assets = services.explanations_compute(stimulus_ids=stimulus_ids, method=method)
    except Exception as exc:
        if self.request.retries >= self.max_retries:
            services.precompute_job_refresh(
                job_id=job_id, failed_batch=f"{method} {stimulus_ids[:3]}…: {type(exc).__name__}: {exc}"
            )
        raise
    services.precompute_job_refresh(job_id=job_id)
    return len(assets)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=1)
def train_model(self, trained_id: int) -> int:
    from studyapp.pipeline import services

    services.model_train(trained_id=trained_id)
    return trained_id
