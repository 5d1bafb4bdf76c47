"""Shared test set-up: every test gets its own MEDIA_ROOT and Celery queue directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_KANNADA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kannada_mnist"


def kannada_dir() -> Path | None:
    configured = os.environ.get("KANNADA_MNIST_DIR")
    for candidate in ([Path(configured)] if configured else []) + [SHARED_KANNADA]:
        if candidate.is_dir() and any(candidate.iterdir()):
            return candidate
    return None


@pytest.fixture(scope="session", autouse=True)
def _empty_shared_broker():
    """A shared broker (Redis) may hold messages from an earlier run: drop them once per session."""
    if os.environ.get("CELERY_BROKER_URL", "").startswith("redis"):
        from studyapp.celery import app

        app.control.purge()
    yield


@pytest.fixture(autouse=True)
def _isolated_media(tmp_path_factory, settings):
    settings.MEDIA_ROOT = tmp_path_factory.mktemp("media")
    settings.CELERY_QUEUE_DIR = tmp_path_factory.mktemp("celery")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # Many bots share 127.0.0.1 here; the rate-limit test sets its own low rate.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"entry": "10000/minute", "participant": "10000/minute"}}
    from django.core.cache import cache

    cache.clear()
    yield
