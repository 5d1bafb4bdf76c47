"""Settings refuse malformed values at start-up with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from studyapp.lib import env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("yes", True), ("off", False), ("0", False), ("", False)])
def test_env_bool_reads_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("X_FLAG", raw)
    assert env.env_bool("X_FLAG", not expected) is expected


def test_env_bool_refuses_anything_else(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG='maybe' is not a boolean"):
        env.env_bool("X_FLAG", False)


def test_env_int_refuses_text_and_out_of_range(monkeypatch):
    monkeypatch.setenv("X_N", "ten")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        env.env_int("X_N", 1)
    monkeypatch.setenv("X_N", "-1")
    with pytest.raises(ImproperlyConfigured, match="at least 0"):
        env.env_int("X_N", 1, minimum=0)


def _check(**overrides: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    environ.update({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 50})
    environ.update(overrides)
    environ = {k: v for k, v in environ.items() if v is not None}
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)


def test_start_up_stops_on_a_malformed_value():
    result = _check(DJANGO_DEBUG="sometimes")
    assert result.returncode != 0 and "DJANGO_DEBUG='sometimes' is not a boolean" in result.stderr
    result = _check(DATABASE_URL="mysql://u@h/db")
    assert result.returncode != 0 and "DATABASE_URL has scheme 'mysql'" in result.stderr
    result = _check(CELERY_BROKER_URL="amqp://guest@localhost//")
    assert result.returncode != 0 and "CELERY_BROKER_URL" in result.stderr


def test_secret_key_is_required_when_debug_is_off():
    result = _check(DJANGO_SECRET_KEY="")
    assert result.returncode != 0 and "DJANGO_SECRET_KEY is required" in result.stderr
    assert _check().returncode == 0


def test_deploy_checks_are_clean_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "d8Fq-2nV_x7pLm3Rz9KwY4tBc6HjN1sQe5UoA0iGvXyTbZr-w2Lk9PqR4s",
             "DJANGO_SSL_REDIRECT": "1", "DJANGO_HSTS_SECONDS": "31536000", "DJANGO_SECURE_COOKIES": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
