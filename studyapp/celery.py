"""The Celery application.

With no ``CELERY_BROKER_URL`` it uses kombu's filesystem transport under ``var/celery/``: no
server to install, and a real ``celery worker`` process consumes from it. With
``CELERY_BROKER_URL=redis://...`` it uses Redis (production: several workers on several
machines, see docker-compose.yml). Explanation work goes to its own queue so GPU machines
can serve it.

Configuration only: what a worker does when it starts that concerns the pipeline (resume
unfinished precompute jobs) is connected by ``studyapp/pipeline/apps.py``.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyapp.settings")

app = Celery("studyapp")


def _configuration() -> dict:
    """The Celery settings, read from Django's settings when Celery first needs its configuration
    (``app.add_defaults`` with a callable: the app stays lazy, and nothing reads ``app.conf``
    while it is being loaded, which would recurse)."""
    from django.conf import settings

    broker = settings.CELERY_BROKER_URL
    options: dict = {}
    if not broker:
        queue_dir = settings.CELERY_QUEUE_DIR
        for sub in ("queue", "processed", "control"):
            (queue_dir / sub).mkdir(parents=True, exist_ok=True)
        broker = "filesystem://"
        options = {
            "data_folder_in": str(queue_dir / "queue"),
            "data_folder_out": str(queue_dir / "queue"),
            "processed_folder": str(queue_dir / "processed"),
            "control_folder": str(queue_dir / "control"),
            "store_processed": False,
        }
    return dict(
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


HEARTBEAT_SECONDS = 10


def heartbeat_dir():
    from django.conf import settings

    return settings.CELERY_QUEUE_DIR / "heartbeats"


@worker_ready.connect
def _start_heartbeat(sender=None, **_):
    """The filesystem broker cannot broadcast a ping, so workers leave a heartbeat file beside it."""
    from django.conf import settings

    if settings.CELERY_BROKER_URL:
        return
    folder = heartbeat_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{socket.gethostname()}-{os.getpid()}"

    def beat() -> None:
        while True:
            path.write_text(str(time.time()))
            time.sleep(HEARTBEAT_SECONDS)

    threading.Thread(target=beat, name="celery-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _stop_heartbeat(sender=None, **_):
    from django.conf import settings

    if not settings.CELERY_BROKER_URL:
        (heartbeat_dir() / f"{socket.gethostname()}-{os.getpid()}").unlink(missing_ok=True)


app.config_from_object({})
app.add_defaults(_configuration)
app.autodiscover_tasks(["studyapp.pipeline"])
