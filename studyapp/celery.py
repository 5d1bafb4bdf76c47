"""The Celery application.

With no ``CELERY_BROKER_URL`` it uses kombu's filesystem transport under ``var/celery/``: no
server to install, and a real ``celery worker`` process consumes from it. With
``CELERY_BROKER_URL=redis://...`` it uses Redis (production: several workers on several
machines, see docker-compose.yml). Explanation work goes to its own queue so GPU machines
can serve it.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyapp.settings")

app = Celery("studyapp")


def _configure(app: Celery) -> None:
    from django.conf import settings

    broker = settings.CELERY_BROKER_URL
    options: dict = {}
    if not broker:
        queue_dir = settings.CELERY_QUEUE_DIR
        for sub in ("queue", "processed"):
            (queue_dir / sub).mkdir(parents=True, exist_ok=True)
        broker = "filesystem://"
        options = {
            "data_folder_in": str(queue_dir / "queue"),
            "data_folder_out": str(queue_dir / "queue"),
            "processed_folder": str(queue_dir / "processed"),
            "store_processed": False,
        }
    app.conf.update(
        broker_url=broker,
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        task_ignore_result=True,
        result_backend=None,
        task_always_eager=settings.CELERY_TASK_ALWAYS_EAGER,
        task_eager_propagates=True,
        # A task killed mid-way (SIGKILL, machine lost) is delivered again; work is idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="default",
        task_queues=[Queue("default"), Queue(settings.CELERY_EXPLAIN_QUEUE)],
        task_routes={
            "studyapp.pipeline.tasks.*": {"queue": settings.CELERY_EXPLAIN_QUEUE},
        },
        worker_hijack_root_logger=False,
        timezone="UTC",
    )


app.config_from_object({})
app.on_configure.connect(lambda sender, **_: _configure(sender), weak=False)
app.autodiscover_tasks(["studyapp.pipeline"])
