"""What a test run needs from the environment, set before pytest-django loads the settings.

Loaded as a plugin (``-p tests.environment`` in pyproject's pytest options), because the settings
are read while pytest loads its plugins, before any ``conftest.py``. The settings themselves
never ask whether they run under pytest: a server without ``DJANGO_SECRET_KEY`` refuses to start,
and the test run supplies one here. Subprocesses started by tests inherit it; the settings tests
set their own.
"""

from __future__ import annotations

import os

if not os.environ.get("DJANGO_SECRET_KEY"):
    os.environ["DJANGO_SECRET_KEY"] = "test-run-key-not-secret-" + "x" * 32
