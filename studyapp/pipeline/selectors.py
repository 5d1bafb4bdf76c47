"""Reads of the pipeline: what is ready, what failed and why, whether the broker answers."""

from __future__ import annotations

from django.db.models import Count, Q

from studyapp.pipeline.models import ExplanationAsset, PrecomputeJob, Stimulus


def explanation_summary(*, study) -> list[dict]:
    rows = (
        ExplanationAsset.objects.filter(stimulus__study=study)
        .values("method")
        .annotate(n_valid=Count("pk", filter=Q(valid=True)), n_invalid=Count("pk", filter=Q(valid=False)))
        .order_by("method")
    )
    total = Stimulus.objects.filter(study=study).count()
    return [{**row, "stimuli": total} for row in rows]


def invalid_explanations(*, study) -> list[ExplanationAsset]:
    return list(
        ExplanationAsset.objects.filter(stimulus__study=study, valid=False).select_related("stimulus").order_by("stimulus__position")
    )


def latest_job(*, study) -> PrecomputeJob | None:
    return PrecomputeJob.objects.filter(study=study).order_by("-created_at").first()


def broker_status(*, timeout: float = 1.0) -> dict:
    """Whether the broker is reachable and a worker answers, for the admin and /health?broker=1."""
    from studyapp.celery import app

    status = {"checked": True, "broker": False, "workers": 0, "detail": ""}
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
        status["broker"] = True
    except Exception as exc:
        status["detail"] = f"Broker unreachable: {type(exc).__name__}: {exc}"
        return status
    try:
        replies = app.control.ping(timeout=timeout) or []
    except Exception as exc:  # the filesystem transport has no broadcast: say so
        status["detail"] = f"Cannot ping workers on this broker ({type(exc).__name__})."
        status["workers"] = None
        return status
    status["workers"] = len(replies)
    if not replies:
        status["detail"] = "No Celery worker answered. Start one: celery -A studyapp worker -Q default,explain"
    return status
