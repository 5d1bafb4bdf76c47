"""Start a real Celery worker process against the test database, media and broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    db = connection.settings_dict
    if connection.vendor == "sqlite":  # Django's backend or studyapp.lib.perf.sqlite
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        env["DATABASE_URL"] = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"
    env["MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    env["CELERY_QUEUE_DIR"] = str(settings.CELERY_QUEUE_DIR)
    env["DJANGO_SECRET_KEY"] = "test-worker-key"
    env["TORCH_THREADS"] = env.get("TORCH_THREADS", "2")
    env.pop("PYTEST_VERSION", None)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


@contextmanager
def celery_worker(*, concurrency: int = 1, name: str = "test"):
    log = open(Path(settings.CELERY_QUEUE_DIR) / f"worker-{name}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "studyapp", "worker", "-Q", f"default,{settings.CELERY_EXPLAIN_QUEUE}",
         "-c", str(concurrency), "--loglevel", "INFO", "-n", f"{name}-{os.getpid()}@%h", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=worker_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def wait_for(predicate, *, timeout: float, proc=None, what: str = "condition", log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode} while waiting for {what}")
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
