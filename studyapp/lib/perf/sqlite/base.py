"""Django's SQLite backend, with write transactions queued on a lock file instead of SQLite's busy loop.

SQLite lets one connection write at a time. Django opens every transaction with ``BEGIN
IMMEDIATE`` (``transaction_mode``), so a second writer waits in SQLite's busy handler, which
polls by sleeping 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 and then 100 ms at a time: the lock is
often free while every waiter still sleeps. Under a study launch (many gunicorn threads and
processes answering at once) that wait, not the work, set the latency tail: 0.5-1 s at the 99th
percentile where the median was 12 ms (``benchmarks/load_participants.py``).

Here a connection first takes an exclusive ``flock`` on ``<database>.writelock`` (a file beside
the database), then runs ``BEGIN IMMEDIATE``, and gives the lock back when the transaction
commits, rolls back or the connection closes. Waiters are woken when the lock is released rather
than at the next step of the backoff, across threads and processes alike (web workers, Celery
workers), because ``flock`` locks belong to each connection's own open file. A waiter polls the
lock every 0.2-1 ms and gives up after the connection's ``timeout`` (30 s in the settings); it
then runs ``BEGIN IMMEDIATE`` anyway, so a writer that does not take the file lock (the
``sqlite3`` shell, another program) still gets SQLite's own locking and its "database is locked"
error after the same timeout, as with Django's backend.

A forked child (a Celery prefork pool process, a DataLoader worker) inherits the parent's open
file and with it a share of any lock held at the fork; the child closes its copies at once
(``os.register_at_fork``), so the lock is given back when the parent's transaction ends.

Nothing else changes: reads need no lock (WAL), autocommit writes outside a transaction go
straight to SQLite, and an in-memory database has no file to lock.

In a gunicorn worker the WAL is checkpointed by a thread of its own, not by the commit that
crosses SQLite's 1000 pages while the lock is held (:mod:`.checkpoint`).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import weakref

from django.db.backends.sqlite3 import base

from studyapp.lib.perf import switches, timing
from studyapp.lib.perf.sqlite import checkpoint

#: Threads of one process queue on an in-process lock before the lock file (``switches.SQLITE_TURNS``).
IN_PROCESS_QUEUE = switches.SQLITE_TURNS

_holders: weakref.WeakSet[DatabaseWrapper] = weakref.WeakSet()
#: lock file path -> the lock this process's threads queue on before the lock file (see _take_write_lock)
_turns: dict[str, threading.Lock] = {}
_turns_guard = threading.Lock()


def _turn(path: str) -> threading.Lock:
    with _turns_guard:
        return _turns.setdefault(path, threading.Lock())


def _drop_inherited_locks() -> None:
    """In a forked child: close the lock files inherited from the parent (the parent still holds them),
    and start with fresh in-process locks (one the parent held at the fork would never be released)."""
    global _turns_guard
    for holder in list(_holders):
        fd, holder._write_lock_fd = holder._write_lock_fd, None
        holder._turn = None
        if fd is not None:
            os.close(fd)
    _holders.clear()
    _turns.clear()
    _turns_guard = threading.Lock()


os.register_at_fork(after_in_child=_drop_inherited_locks)


class DatabaseWrapper(base.DatabaseWrapper):
    _write_lock_fd: int | None = None
    _turn: threading.Lock | None = None
    _held_since = 0.0

    def get_new_connection(self, conn_params):
        conn = super().get_new_connection(conn_params)
        if checkpoint.OFF_REQUEST:  # a thread of this process checkpoints (checkpoint.start)
            conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    def _lock_path(self) -> str | None:
        name = str(self.settings_dict["NAME"])
        if self.is_in_memory_db() or not name:
            return None
        return name + ".writelock"

    def _take_write_lock(self) -> None:
        path = self._lock_path()
        if path is None or self._write_lock_fd is not None:
            return
        deadline = time.monotonic() + float(self.settings_dict.get("OPTIONS", {}).get("timeout", 5))
        turn = _turn(path) if IN_PROCESS_QUEUE else None
        # The threads of this process queue on a lock of the process first: they sleep in the kernel
        # until the holder lets go, instead of each polling the lock file (a poller's every wake-up
        # takes the GIL from the thread that holds the lock file, and the polls' CPU is the holder's
        # on 2 cores). Only one thread per process then polls the file.
        if turn is not None and not turn.acquire(timeout=max(deadline - time.monotonic(), 0)):
            return  # leave it to SQLite's own lock and its error
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        pause = 0.0002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:  # leave it to SQLite's own lock and its error
                    os.close(fd)
                    if turn is not None:
                        turn.release()
                    return
                time.sleep(pause)
                pause = min(pause * 1.5, 0.001)
        self._write_lock_fd, self._turn = fd, turn
        self._held_since = time.perf_counter()
        _holders.add(self)

    def _release_write_lock(self) -> None:
        fd, self._write_lock_fd = self._write_lock_fd, None
        turn, self._turn = self._turn, None
        _holders.discard(self)
        if fd is not None:
            os.close(fd)  # closing the file releases its flock
            timing.note("held", time.perf_counter() - self._held_since)
        if turn is not None:
            turn.release()

    def _start_transaction_under_autocommit(self):
        with timing.stage("lock"):
            self._take_write_lock()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_write_lock()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._release_write_lock()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._release_write_lock()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._release_write_lock()
