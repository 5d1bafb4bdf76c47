"""PostgreSQL goes through Django's psycopg pool, sized from the environment (studyapp/settings.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def _databases(**overrides: str | None) -> dict:
    """settings.DATABASES["default"] as a fresh process builds it from ``overrides``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DATABASE_"))}
    environ.update({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 50})
    environ.update({k: v for k, v in overrides.items() if v is not None})
    code = "import json; from studyapp import settings; print(json.dumps(settings.DATABASES['default'], default=str))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_postgres_url_gets_the_pool_with_health_checks():
    db = _databases(DATABASE_URL="postgres://u:p@db.example:6543/study")
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["HOST"], db["PORT"], db["NAME"]) == ("db.example", 6543, "study")
    assert db["OPTIONS"]["pool"] == {"min_size": 2, "max_size": 4, "timeout": 10}
    # Django refuses a pool with persistent connections; the health check makes the pool test a
    # connection before handing it out (a restarted database).
    assert db["CONN_MAX_AGE"] == 0 and db["CONN_HEALTH_CHECKS"] is True


def test_the_pool_is_sized_from_the_environment():
    db = _databases(DATABASE_URL="postgresql://u@h/study", DATABASE_POOL_MIN_SIZE="8", DATABASE_POOL_MAX_SIZE="16",
                    DATABASE_POOL_TIMEOUT="3")
    assert db["OPTIONS"]["pool"] == {"min_size": 8, "max_size": 16, "timeout": 3}
    # min_size never above max_size
    db = _databases(DATABASE_URL="postgresql://u@h/study", DATABASE_POOL_MIN_SIZE="8", DATABASE_POOL_MAX_SIZE="1")
    assert db["OPTIONS"]["pool"]["min_size"] == 1 and db["OPTIONS"]["pool"]["max_size"] == 1


def test_the_pool_can_be_turned_off_and_sqlite_never_gets_one():
    db = _databases(DATABASE_URL="postgres://u@h/study", DATABASE_POOL="0")
    assert "pool" not in db.get("OPTIONS", {}) and db["CONN_MAX_AGE"] == 60
    db = _databases(DATABASE_URL="sqlite:////tmp/x.sqlite3")
    assert "pool" not in db["OPTIONS"] and db["ENGINE"].endswith("sqlite")
    assert "pool" not in _databases(DATABASE_URL=None).get("OPTIONS", {})


@pytest.mark.parametrize(("name", "value"), [("DATABASE_POOL_MAX_SIZE", "0"), ("DATABASE_POOL_TIMEOUT", "soon"), ("DATABASE_POOL", "maybe")])
def test_a_malformed_pool_setting_stops_start_up(name, value):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DATABASE_"))}
    environ.update({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 50, "DATABASE_URL": "postgres://u@h/study", name: value})
    result = subprocess.run([sys.executable, "-c", "import studyapp.settings"], cwd=ROOT, env=environ, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and name in result.stderr


@pytest.mark.django_db
def test_on_postgresql_the_requests_really_go_through_the_pool():
    """CI's second run (PostgreSQL): the connection in use comes from the pool."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only (CI's second run)")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    assert connection.pool is not None
    assert connection.connection._pool is connection.pool
    assert connection.pool.max_size == connection.settings_dict["OPTIONS"]["pool"]["max_size"]
