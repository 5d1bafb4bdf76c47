import logging

from django.apps import AppConfig

log = logging.getLogger(__name__)


def resume_on_worker_start(sender=None, **_) -> None:
    """A worker that (re)starts picks up jobs a killed worker left unfinished."""
    from studyapp.pipeline import precompute

    try:
        queued = precompute.resume_unfinished()
        if queued:
            log.warning("Resumed %d unfinished explanation(s)", queued)
    except Exception:  # never keep a worker from starting
        log.exception("Could not resume unfinished precompute jobs")


class PipelineConfig(AppConfig):
    name = "studyapp.pipeline"
    label = "pipeline"
    verbose_name = "Precompute pipeline (data, models, stimuli, explanations)"

    def ready(self) -> None:
        from celery.signals import worker_ready

        # Connected here, not in studyapp/celery.py, so that the Celery configuration knows
        # nothing of the pipeline; the signal fires only in a worker process.
        worker_ready.connect(resume_on_worker_start, weak=False, dispatch_uid="pipeline.resume_on_worker_start")
