"""SQLite's WAL checkpoints off the request path, in a thread of the web process.

By default SQLite checkpoints the WAL (copies its pages back into the database file and fsyncs
it) inside the ``COMMIT`` that takes the WAL past 1000 pages (``wal_autocheckpoint``): that
request waits for the copy and the fsync, and, since the lock file (:mod:`.base`) is given back
only when the commit returns, so does every writer queued behind it. Under a launch that is one
request in every few hundred writes, with all the others' lock waits on top: a stall of the tail,
not of the median.

:func:`start` (gunicorn's ``post_worker_init``, ``gunicorn.conf.py``) turns the automatic
checkpoint off for the connections this process opens from then on (``PRAGMA
wal_autocheckpoint=0`` in :class:`.base.DatabaseWrapper`) and runs a ``PASSIVE`` checkpoint every
:data:`EVERY_SECONDS` in a daemon thread of its own connection instead. A passive checkpoint takes
no lock that a reader or writer waits for: it copies what no reader still needs, and the WAL is
reused from its start by the next writer once all of it has been copied. Processes that never
call :func:`start` (``manage.py``, Celery, the tests) keep SQLite's automatic checkpoint, so the
WAL never grows without bound.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

#: Seconds between two checkpoints (a launch writes a few hundred pages a second at most).
EVERY_SECONDS = 1.0

#: True once :func:`start` ran in this process: its new connections do not checkpoint on commit.
OFF_REQUEST = False

_thread: threading.Thread | None = None
_stop = threading.Event()


def checkpoint(path: str | Path) -> tuple[int, int, int]:
    """One passive checkpoint of the database at ``path``: (busy, frames in the WAL, frames copied)."""
    con = sqlite3.connect(str(path), timeout=0, isolation_level=None)
    try:
        row = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        con.close()
    return int(row[0]), int(row[1]), int(row[2])


def _loop(path: str, every: float) -> None:
    while not _stop.wait(every):
        try:
            checkpoint(path)
        except sqlite3.Error as exc:  # busy, or the file is gone: the next round tries again
            log.debug("checkpoint of %s: %s", path, exc)


def start(every: float = EVERY_SECONDS) -> bool:
    """In a web process: checkpoint the default SQLite database (a file) in a thread of its own, not
    in the requests' commits. False (nothing started) for PostgreSQL or an in-memory database."""
    global OFF_REQUEST, _thread
    from django.conf import settings

    db = settings.DATABASES["default"]
    name = str(db.get("NAME") or "")
    if db["ENGINE"] != "studyapp.lib.perf.sqlite" or not name or name == ":memory:" or name.startswith("file:"):
        return False
    if _thread is not None and _thread.is_alive():
        return True
    OFF_REQUEST = True
    _stop.clear()
    _thread = threading.Thread(target=_loop, args=(name, every), name="sqlite checkpoint", daemon=True)
    _thread.start()
    return True


def stop() -> None:
    """Stop the thread (tests); connections opened from now on checkpoint on commit again."""
    global OFF_REQUEST, _thread
    OFF_REQUEST = False
    _stop.set()
    if _thread is not None:
        _thread.join(timeout=10)
    _thread = None
