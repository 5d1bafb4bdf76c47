"""gunicorn's settings: the one place for them. Every launcher uses this file: the Dockerfile and
docker-compose's web service (``gunicorn -c gunicorn.conf.py``), ``manage.py demo`` and
``benchmarks/load_participants.py`` (``--config`` with this path); tests/studyapp/test_perf_tail.py
checks that they do. Numbers are for the small server the study runs on (2 cores); the README's
performance section says what was measured.

Environment: ``WEB_CONCURRENCY`` (processes, default 4), ``WEB_THREADS`` (threads per process,
default 4), ``WEB_TIMEOUT`` (seconds before a silent worker is killed, default 60). With PostgreSQL
each process keeps a pool of ``DATABASE_POOL_MAX_SIZE`` connections: make it ``WEB_THREADS``.
"""

from __future__ import annotations

import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {raw!r}") from None
    if value < 1:
        raise SystemExit(f"{name} must be at least 1, not {value}")
    return value


wsgi_app = "studyapp.wsgi:application"

# Processes x threads. Python runs one thread of a process at a time (the GIL), so on 2 cores
# several processes use both cores, and a few threads each let one request's waits (the database,
# the lock file, the cache's files) overlap with another's work.
workers = _int("WEB_CONCURRENCY", 4)
threads = _int("WEB_THREADS", 4)
# gunicorn's gthread worker, listening only while one of its threads is free, so that a new
# connection waits in the kernel's one queue for whichever worker is free first rather than in a
# busy worker's own (studyapp/lib/perf/worker.py).
worker_class = "studyapp.lib.perf.worker.FreeThreadWorker"

# Load the application (Django, DRF, the URLconf, matplotlib: ~1.5 s of CPU) once in the master and
# fork the workers from it: a worker that gunicorn starts again (killed, timed out) serves at
# once instead of booting for a second or more on the cores its siblings need, and the frozen
# boot objects (studyapp/wsgi.py, gc.freeze) are shared copy-on-write. Nothing in the import opens
# a database connection or a thread (the SQLite lock file's descriptors are dropped in a forked
# child anyway: studyapp/lib/perf/sqlite/base.py).
preload_app = True

# No recycling (gunicorn's default, written down): a restart costs a fork and the worker's caches
# (studyapp/lib/perf/caches.py); nothing here leaks enough to need it.
max_requests = 0

# Pending connections the kernel keeps while every thread is busy (gunicorn's default; the kernel
# caps it at net.core.somaxconn). A launch has a few hundred participants at once.
backlog = 2048

# A worker silent for this long is killed and started again.
timeout = _int("WEB_TIMEOUT", 60)
graceful_timeout = 30
# Browsers keep the connection for the next request of the run.
keepalive = 5


def _switch_interval_ms() -> float:
    raw = os.environ.get("WEB_SWITCH_INTERVAL_MS", "")
    try:
        value = float(raw) if raw else 5.0
    except ValueError:
        raise SystemExit(f"WEB_SWITCH_INTERVAL_MS must be a number, not {raw!r}") from None
    if not 0.05 <= value <= 100:
        raise SystemExit(f"WEB_SWITCH_INTERVAL_MS must be between 0.05 and 100, not {value}")
    return value


#: How long (ms) a thread of a worker may keep Python's GIL while another thread asks for it
#: (``sys.setswitchinterval``; Python's default is 5). ``WEB_SWITCH_INTERVAL_MS``.
switch_interval_ms = _switch_interval_ms()


def post_worker_init(worker) -> None:
    """In each worker, once the application is loaded: the GIL's switch interval, and SQLite's WAL
    checkpoints in a thread of their own rather than inside the commit of a request
    (studyapp/lib/perf/sqlite/checkpoint.py)."""
    import sys

    from studyapp.lib.perf.sqlite import checkpoint

    sys.setswitchinterval(switch_interval_ms / 1000)
    checkpoint.start()


# gunicorn 27's control socket (``gunicornc``) sits at one fixed path per user
# (~/.gunicorn/gunicorn.ctl): two servers on one machine (the demo beside a benchmark, CI's live
# servers) would take each other's. Nothing here uses it.
control_socket_disable = True
