"""Browser tests drive Debian's Chromium (never a downloaded browser) through Playwright; the
``browser`` fixture is in tests/conftest.py (the analysis pages use it too)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@pytest.fixture
def shots(request):
    folder = SCREENSHOTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1000))

    def take(page, name: str) -> Path:
        path = folder / f"{next(counter):02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
