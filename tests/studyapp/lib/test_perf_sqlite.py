"""studyapp.lib.perf.sqlite: SQLite writers queue on a lock file, and give it back however they end."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time

import pytest
from django.db import OperationalError, connections, transaction

from studyapp.lib.perf.sqlite.base import DatabaseWrapper

ALIAS = "lockcheck"


def wrapper(path, timeout: float = 30) -> DatabaseWrapper:
    settings = {
        **connections.settings["default"], "ENGINE": "studyapp.lib.perf.sqlite", "NAME": str(path),
        "OPTIONS": {"timeout": timeout, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
    }
    return DatabaseWrapper(settings, alias=ALIAS)


def file_locked(path) -> bool:
    """Whether a writer holds the lock file now (tried from a file of our own)."""
    fd = os.open(str(path) + ".writelock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


@pytest.fixture
def db_file(tmp_path, django_db_blocker):
    """A database of the test's own (not Django's test database), opened only through ``wrapper``."""
    path = tmp_path / "t.sqlite3"
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE t (k INTEGER)")
    with django_db_blocker.unblock():
        yield path
    if hasattr(connections._connections, ALIAS):  # set by the test's own thread
        del connections[ALIAS]


def in_thread(path, body, **kw) -> threading.Thread:
    def run():
        connections[ALIAS] = conn = wrapper(path, **kw)
        try:
            body()
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_second_writer_waits_for_the_first_to_commit_and_each_transaction_holds_the_lock(db_file):
    order: list[str] = []
    a_in, a_go = threading.Event(), threading.Event()

    def a():
        with transaction.atomic(using=ALIAS):
            connections[ALIAS].cursor().execute("INSERT INTO t VALUES (1)")
            order.append("a wrote")
            a_in.set()
            assert a_go.wait(10)
            order.append("a commits")

    def b():
        with transaction.atomic(using=ALIAS):
            order.append("b began")
            connections[ALIAS].cursor().execute("INSERT INTO t VALUES (2)")

    ta = in_thread(db_file, a)
    assert a_in.wait(10)
    assert file_locked(db_file)
    tb = in_thread(db_file, b)
    time.sleep(0.3)
    assert order == ["a wrote"]  # b waits while a's transaction is open
    a_go.set()
    ta.join(10)
    tb.join(10)
    assert order == ["a wrote", "a commits", "b began"]
    assert not file_locked(db_file)
    with sqlite3.connect(db_file) as c:
        assert sorted(r[0] for r in c.execute("SELECT k FROM t")) == [1, 2]


def test_threads_of_one_process_wait_in_the_kernel_not_by_polling_the_lock_file(db_file, monkeypatch):
    """The writers of one process queue on an in-process lock: while one holds the lock file, the
    others make no attempt on it (each poll of the file would take the GIL from the holder)."""
    from studyapp.lib.perf.sqlite import base

    assert base.IN_PROCESS_QUEUE
    attempts: list[str] = []
    real_flock = fcntl.flock

    def counted(fd, op):
        attempts.append(threading.current_thread().name)
        return real_flock(fd, op)

    monkeypatch.setattr(base.fcntl, "flock", counted)
    a_in, a_go = threading.Event(), threading.Event()
    done: list[int] = []

    def a():
        with transaction.atomic(using=ALIAS):
            connections[ALIAS].cursor().execute("INSERT INTO t VALUES (1)")
            a_in.set()
            assert a_go.wait(10)

    def writer(k):
        def body():
            with transaction.atomic(using=ALIAS):
                connections[ALIAS].cursor().execute("INSERT INTO t VALUES (%s)", [k])
            done.append(k)
        return body

    ta = in_thread(db_file, a)
    assert a_in.wait(10)
    attempts.clear()
    waiters = [in_thread(db_file, writer(k)) for k in (2, 3)]
    time.sleep(0.3)
    assert attempts == [] and done == []  # both wait, neither polled the file (it would be ~300 polls each)
    a_go.set()
    for t in (ta, *waiters):
        t.join(10)
    assert sorted(done) == [2, 3] and not file_locked(db_file)
    with sqlite3.connect(db_file) as c:
        assert sorted(r[0] for r in c.execute("SELECT k FROM t")) == [1, 2, 3]


def test_the_lock_is_given_back_after_a_rollback_and_when_the_connection_closes(db_file):
    connections[ALIAS] = conn = wrapper(db_file)
    seen: list[bool] = []

    def write_then_fail():
        with transaction.atomic(using=ALIAS):
            conn.cursor().execute("INSERT INTO t VALUES (1)")
            seen.append(file_locked(db_file))
            raise ValueError

    with pytest.raises(ValueError):
        write_then_fail()
    assert seen == [True]
    assert not file_locked(db_file)
    transaction.atomic(using=ALIAS).__enter__()  # a transaction left open...
    assert file_locked(db_file)
    conn.close()  # ...ends with its connection
    assert not file_locked(db_file)
    with sqlite3.connect(db_file) as c:
        assert list(c.execute("SELECT k FROM t")) == []


def test_a_writer_that_ignores_the_lock_file_still_gets_sqlites_own_locking_and_error(db_file):
    holder = os.open(str(db_file) + ".writelock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    other = sqlite3.connect(db_file, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # e.g. the sqlite3 shell, writing
    connections[ALIAS] = conn = wrapper(db_file, timeout=0.2)
    try:
        start = time.monotonic()
        with pytest.raises(OperationalError, match="locked"), transaction.atomic(using=ALIAS):
            conn.cursor().execute("INSERT INTO t VALUES (1)")
        assert time.monotonic() - start >= 0.35  # the file lock's timeout, then SQLite's
        assert conn._write_lock_fd is None
    finally:
        other.rollback()
        other.close()
        os.close(holder)
        conn.close()


def test_an_in_memory_database_takes_no_lock(tmp_path):
    conn = wrapper(":memory:")
    conn._take_write_lock()
    assert conn._write_lock_fd is None and conn._lock_path() is None


def test_a_forked_child_does_not_keep_the_parents_lock(db_file):
    connections[ALIAS] = conn = wrapper(db_file)
    transaction.atomic(using=ALIAS).__enter__()
    conn.cursor().execute("INSERT INTO t VALUES (1)")
    assert file_locked(db_file)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # the child lives on (a pool process) while the parent commits
        os.close(r)
        from studyapp.lib.perf.sqlite import base

        free = base._turn(str(db_file) + ".writelock").acquire(timeout=0.5)  # the parent's turn, held at the fork
        os.write(w, b"1" if conn._write_lock_fd is None and free else b"0")
        time.sleep(2)
        os._exit(0)
    try:
        os.close(w)
        assert os.read(r, 1) == b"1"  # the child's wrapper holds nothing
        transaction.atomic(using=ALIAS).__exit__(None, None, None)
        assert not file_locked(db_file)  # given back although the child still runs
    finally:
        os.close(r)
        os.waitpid(child, 0)
