"""studyapp/lib/perf/worker.py: a gunicorn worker whose threads are all busy takes no new connection.

A real gunicorn with two workers of one thread each serves a tiny WSGI application: ``/hold`` keeps
its thread until the test lets it go, ``/pid`` answers at once. While one worker holds a request,
every new connection must be answered by the other worker, at once. gunicorn's own gthread worker
takes about half of them into the busy worker's queue, where they wait for the held request
(checked below with the switch off).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

APP = '''
import os, time
from pathlib import Path

DIR = Path(os.environ["HOLD_DIR"])


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/hold/"):
        name = path.rsplit("/", 1)[1]
        (DIR / (name + ".held")).write_text(str(os.getpid()))
        deadline = time.monotonic() + 20
        while not (DIR / (name + ".go")).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path, request):
    free_thread_accept = request.param
    (tmp_path / "holdapp.py").write_text(APP)
    port = _free_port()
    env = {**os.environ, "HOLD_DIR": str(tmp_path), "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
           "STUDY_PERF_FREE_THREAD_ACCEPT": "1" if free_thread_accept else "0"}
    empty = tmp_path / "gunicorn.conf.py"
    empty.write_text("")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", str(empty), "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--threads", "1", "--keep-alive", "0", "--worker-class",
         "studyapp.lib.perf.worker.FreeThreadWorker", "--no-control-socket", "holdapp:app"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    pids: set[str] = set()
    deadline = time.monotonic() + 30
    while len(pids) < 2 and time.monotonic() < deadline:  # both workers up: each has answered once
        try:
            pids.add(httpx.get(base + "/pid", timeout=2).text)
        except httpx.TransportError:
            time.sleep(0.05)
    try:
        assert len(pids) == 2, proc.stderr.read1().decode() if proc.poll() is not None else "workers did not start"
        yield base, tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _rounds(base: str, folder: Path, rounds: int, wait: float) -> list[bool]:
    """For each round: was a new connection answered within ``wait`` s by the other worker while one
    held a request?"""
    answered = []
    for n in range(rounds):
        held = threading.Thread(target=httpx.get, args=(f"{base}/hold/{n}",), kwargs={"timeout": 30})
        held.start()
        marker = folder / f"{n}.held"
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        busy = marker.read_text()
        try:
            other = httpx.get(base + "/pid", timeout=wait).text  # a new connection (no client keeps one)
            answered.append(other != busy)
        except httpx.TimeoutException:
            answered.append(False)  # it waits behind the held request, in the busy worker
        finally:
            (folder / f"{n}.go").touch()
            held.join(timeout=30)
    return answered


@pytest.mark.parametrize("server", [True], indirect=True)
def test_a_busy_worker_takes_no_new_connection(server):
    assert all(_rounds(*server, rounds=8, wait=5.0))


@pytest.mark.parametrize("server", [False], indirect=True)
def test_gunicorns_own_worker_does(server):
    """The test above can fail: with the switch off (gunicorn's gthread), some new connections go to
    the busy worker."""
    answered = _rounds(*server, rounds=20, wait=0.5)  # all 20 by chance: about 1 time in a million
    assert not all(answered), answered
