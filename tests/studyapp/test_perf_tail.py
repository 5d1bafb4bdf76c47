"""The causes of the latency tail that were fixed (issue 28), each checked without a clock:

- a WAL checkpoint never runs inside a request's commit in a gunicorn worker (it runs in a thread
  of its own: studyapp/lib/perf/sqlite/checkpoint.py);
- every launcher starts gunicorn with the one config (gunicorn.conf.py), and that config loads the
  application once in the master (preload), which is safe: the import opens no connection and no
  thread.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from studyapp.lib.perf.sqlite import checkpoint
from studyapp.lib.perf.sqlite.base import DatabaseWrapper

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "gunicorn.conf.py"
PAGES = 3000  # well past SQLite's automatic checkpoint at 1000 pages


def _wrapper(path: Path) -> DatabaseWrapper:
    return DatabaseWrapper({**django_settings.DATABASES["default"], "ENGINE": "studyapp.lib.perf.sqlite", "NAME": str(path), "OPTIONS": dict(django_settings.SQLITE_OPTIONS)},
                           alias=f"tail-{path.name}")


def _write_pages(db: DatabaseWrapper, pages: int) -> None:
    """``pages`` pages of 4 kB, in transactions as a request makes them (lock file, BEGIN IMMEDIATE, COMMIT)."""
    db.ensure_connection()
    with db.cursor() as c:
        c.execute("CREATE TABLE IF NOT EXISTS t (b BLOB)")
    for _ in range(pages // 100):
        db.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
        with db.cursor() as c:
            c.executemany("INSERT INTO t VALUES (?)", [(os.urandom(3900),)] * 100)
        db.commit()
        db.set_autocommit(True)


@pytest.fixture
def no_checkpointer(django_db_blocker):
    """No checkpoint thread before or after; the test's own database files (not the test database) open."""
    checkpoint.stop()
    with django_db_blocker.unblock():
        yield
    checkpoint.stop()


def test_a_commit_checkpoints_by_itself_outside_gunicorn(tmp_path, no_checkpointer):
    """The control: SQLite's automatic checkpoint (manage.py, Celery) keeps the WAL short."""
    db = _wrapper(tmp_path / "plain.sqlite3")
    _write_pages(db, PAGES)
    busy, frames, _ = checkpoint.checkpoint(tmp_path / "plain.sqlite3")
    db.close()
    assert busy == 0 and frames < 1500  # the commits checkpointed and the WAL started over


def test_a_commit_never_checkpoints_in_a_web_worker(tmp_path, no_checkpointer, monkeypatch):
    monkeypatch.setattr(checkpoint, "OFF_REQUEST", True)  # as after checkpoint.start() in a worker
    db = _wrapper(tmp_path / "web.sqlite3")
    _write_pages(db, PAGES)
    with db.cursor() as c:
        c.execute("PRAGMA wal_autocheckpoint")
        assert c.fetchone()[0] == 0
    busy, frames, copied = checkpoint.checkpoint(tmp_path / "web.sqlite3")
    db.close()
    # No commit copied a page back: every frame written is still in the WAL, for the thread to copy.
    assert busy == 0 and frames >= PAGES and copied == frames


def test_the_worker_thread_checkpoints(tmp_path, no_checkpointer, settings):
    path = tmp_path / "threaded.sqlite3"
    settings.DATABASES = {"default": {**settings.DATABASES["default"], "ENGINE": "studyapp.lib.perf.sqlite", "NAME": str(path), "OPTIONS": dict(django_settings.SQLITE_OPTIONS)}}
    assert checkpoint.start(every=0.05)
    assert checkpoint.OFF_REQUEST
    db = _wrapper(path)
    _write_pages(db, 1200)
    for _ in range(200):  # bounded: 10 s
        busy, frames, copied = checkpoint.checkpoint(path)
        if frames == 0 or (frames == copied and frames < 1200):  # copied, and the WAL started over
            break
        _write_pages(db, 100)  # the next writer restarts the WAL once the thread copied it all
        time.sleep(0.05)
    db.close()
    assert frames < 1200, (busy, frames, copied)
    checkpoint.stop()
    assert not checkpoint.OFF_REQUEST


def test_no_checkpointer_for_postgresql(settings, no_checkpointer):
    settings.DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "study"}}
    assert not checkpoint.start()
    assert not checkpoint.OFF_REQUEST


# -- one gunicorn config for every launcher ----------------------------------------------------

def _conf_args(command: list[str]) -> list[str]:
    return command[command.index("--config") + 1:command.index("--config") + 2] if "--config" in command else []


def test_every_launcher_uses_gunicorn_conf(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the benchmark imports chaos.py beside it
    from studyapp.studies.management.commands.demo import Command

    spec = importlib.util.spec_from_file_location("load_participants", ROOT / "benchmarks" / "load_participants.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    class Args:
        port, workers, threads = 8765, None, None

    demo = Command.gunicorn_command("127.0.0.1", 8000)
    benchmark = bench.gunicorn_command(Args)
    # the web service's command, a flow sequence of double-quoted strings (valid JSON; no YAML parser in the dependencies)
    web = re.search(r"^  web:\n(?:    .*\n)*?    command: (\[.*\])$", (ROOT / "docker-compose.yml").read_text(), re.M)
    compose = json.loads(web.group(1))
    cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M)
    docker = json.loads(cmd.group(1))
    for name, command in {"demo": demo, "benchmark": benchmark, "compose": compose, "Dockerfile": docker}.items():
        (conf,) = _conf_args(command)
        assert (ROOT / conf).resolve() == CONF, name  # compose and the image run in the repository's root (WORKDIR)
        # Nothing the config decides is decided again on the command line.
        assert not {"--workers", "-w", "--threads", "--worker-class", "-k", "--timeout", "--preload",
                    "studyapp.wsgi", "studyapp.wsgi:application"} & set(command), (name, command)


def _gunicorn_config(env: dict[str, str]):
    from gunicorn.config import Config

    scope: dict = {}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        exec(compile(CONF.read_text(), str(CONF), "exec"), scope)  # noqa: S102 - the repository's config
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    config = Config()
    for key, value in scope.items():
        if key in config.settings:
            config.set(key, value)
    return config, scope


def test_the_config_is_what_the_readme_says():
    config, scope = _gunicorn_config({"WEB_CONCURRENCY": "3", "WEB_THREADS": "2"})
    assert (config.workers, config.threads, config.worker_class_str) == (3, 2, "studyapp.lib.perf.worker.FreeThreadWorker")
    assert config.preload_app and config.max_requests == 0 and config.wsgi_app == "studyapp.wsgi:application"
    assert callable(scope["post_worker_init"])
    assert config.control_socket_disable  # one fixed path per user: servers side by side would share it
    with pytest.raises(SystemExit):
        _gunicorn_config({"WEB_THREADS": "0"})
    assert scope["switch_interval_ms"] == 5.0  # Python's own default unless WEB_SWITCH_INTERVAL_MS says otherwise
    assert _gunicorn_config({"WEB_SWITCH_INTERVAL_MS": "0.5"})[1]["switch_interval_ms"] == 0.5
    for bad in ("0", "fast"):
        with pytest.raises(SystemExit):
            _gunicorn_config({"WEB_SWITCH_INTERVAL_MS": bad})


PROBE = """
import json, threading
import studyapp.wsgi
from django.db import connections
print(json.dumps({"threads": threading.active_count(), "connected": connections["default"].connection is not None}))
"""


def test_the_preloaded_import_opens_no_connection_and_no_thread(tmp_path):
    """gunicorn forks its workers after importing studyapp.wsgi in the master (preload_app): a database
    connection or a thread made by the import would be shared by, or missing from, every worker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))}
    env.update(DJANGO_DEBUG="0", DJANGO_SECRET_KEY="tail-test-key-" + "x" * 40, STUDY_VAR_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe == {"threads": 1, "connected": False}


def test_the_postgresql_pool_follows_the_threads_per_process():
    """One connection per gunicorn thread: the pool's size follows gunicorn.conf.py's WEB_THREADS unless set."""
    from tests.studyapp.test_settings_pool import _databases

    assert _databases(DATABASE_URL="postgresql://u@h/study", WEB_THREADS="6")["OPTIONS"]["pool"]["max_size"] == 6
    sized = _databases(DATABASE_URL="postgresql://u@h/study", WEB_THREADS="6", DATABASE_POOL_MAX_SIZE="2")
    assert sized["OPTIONS"]["pool"]["max_size"] == 2
