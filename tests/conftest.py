"""Shared test set-up: every test gets its own MEDIA_ROOT and Celery queue directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
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
    return


@pytest.fixture(autouse=True)
def _isolated_media(tmp_path_factory, settings):
    settings.MEDIA_ROOT = tmp_path_factory.mktemp("media")
    settings.CELERY_QUEUE_DIR = tmp_path_factory.mktemp("celery")
    # Production's manifest storage needs collectstatic; tests find static files where they are.
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # Many bots share 127.0.0.1 here; the rate-limit test sets its own low rate.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"entry": "10000/minute", "participant": "10000/minute"}}
    from django.core.cache import cache

    from studyapp.lib.perf import caches

    cache.clear()
    # A rolled-back test database reuses primary keys and a fixture's study keeps its updated_at:
    # what one test's process caches read of "study 1" must not serve the next test's study 1.
    caches.clear_all()
    _celery_follow_settings()
    return


def _celery_follow_settings() -> None:
    """Point this process's Celery app at the current settings (this test's queue folder, or the
    Redis of run 2) and drop pooled connections, so that a test that broke the broker on purpose,
    or an earlier test's folder, never leaks into the next test's publishing."""
    from kombu import pools

    from studyapp.celery import _configuration, app

    app.conf.update(_configuration())
    pools.reset()  # kombu keeps pools in a global registry keyed by connection: close and forget them
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture(scope="module")
def browser():
    # Module scope: Playwright's event loop must not outlive the browser tests, or the Django
    # tests that run after them in the same process can hang.
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: scripts/install.sh --dev installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    # Playwright's sync API runs an event loop in this thread; the ORM calls made by the test
    # itself (not by the server under test) are safe here.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield from _launch()
    finally:  # never leak into later tests (manage.py check --deploy refuses the variable)
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _launch():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        original = b.new_context

        def new_context(*args, **kwargs):
            # A loaded CI machine can take longer than Playwright's 30 s default for a step.
            context = original(*args, **kwargs)
            context.set_default_timeout(120_000)
            return context

        b.new_context = new_context
        yield b
        b.close()
