"""The WSGI module a gunicorn worker imports: ready to serve when the import returns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc, json, sys
import studyapp.wsgi
print(json.dumps({"frozen": gc.get_freeze_count(), "views": "studyapp.studies.api" in sys.modules}))
"""


def test_the_worker_imports_the_views_at_boot_and_freezes_what_the_boot_made(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))}
    env.update(DJANGO_DEBUG="0", DJANGO_SECRET_KEY="wsgi-test-key-" + "x" * 40, STUDY_VAR_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["views"]  # the URLconf (and its views) are imported before the first request
    assert probe["frozen"] > 100_000  # the boot's objects are out of the collector's full passes
