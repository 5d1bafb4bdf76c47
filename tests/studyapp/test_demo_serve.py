"""The demo serves with a Celery worker beside it, and stopping the demo stops both."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.first_run_only]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the demo exited ({proc.returncode}) waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def test_the_demo_serves_with_a_worker_and_ctrl_c_stops_both(tmp_path):
    """(SIGTERM takes the same path: `demo.serve` turns both into KeyboardInterrupt.)"""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "CELERY_BROKER"))}
    env.update(
        # As the demo runs (DEBUG off): pages need the static manifest that collectstatic writes.
        DJANGO_DEBUG="0", DJANGO_SECRET_KEY="demo-serve-test-key-" + "x" * 40, DJANGO_SECURE_COOKIES="0",
        STATIC_ROOT=str(tmp_path / "static"), STUDY_VAR_DIR=str(tmp_path), DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        CELERY_QUEUE_DIR=str(tmp_path / "celery"), MEDIA_ROOT=str(tmp_path / "media"), WEB_CONCURRENCY="1",
    )
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--serve-only", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            def healthy() -> bool:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:  # noqa: S310 - our own local server
                        return reply.status == 200
                except OSError:
                    return False

            heartbeats = tmp_path / "celery" / "heartbeats"
            _wait(healthy, 120, "gunicorn to answer /health", demo, log)
            _wait(lambda: heartbeats.exists() and any(heartbeats.iterdir()), 120, "the worker's heartbeat", demo, log)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=10) as reply:  # noqa: S310
                page = reply.read().decode()
            assert reply.status == 200 and "/static/admin/css/" in page  # a page with its static files, not a 500
            children = _children(demo.pid)
            assert len(children) == 2, children  # gunicorn's master and the Celery worker
            os.kill(demo.pid, signal.SIGINT)  # Ctrl-C, to the demo alone: it must stop its children itself
            assert demo.wait(timeout=90) == 0, log.read_text()[-3000:]
        finally:
            if demo.poll() is None:
                os.killpg(demo.pid, signal.SIGKILL)
                demo.wait()
    assert not any(_alive(pid) for pid in children), "a child of the demo outlived it"
    assert not healthy()
    assert not any(heartbeats.iterdir()), "the worker did not shut down cleanly (its heartbeat is left)"
    assert "Stopping the web server and the worker" in log.read_text()
