"""Browser tests drive Debian's Chromium (never a downloaded browser) through Playwright; the
``browser`` fixture is in tests/conftest.py (the analysis pages use it too)."""

from __future__ import annotations

import shutil
import time
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


def participant_url(live_server, study, query: str = "") -> str:
    """The link a participant is given for ``study`` (the one place browser tests spell it)."""
    return f"{live_server.url}/s/{study.public_code}/" + (f"?{query}" if query else "")


# axe-core 4.14.1 from the npm registry (`npm install axe-core@4.14.1`), vendored with its licence
# (MPL-2.0, tests/browser/vendor/axe-core/LICENSE): CI runs on a fresh clone that may have no npm
# and no network, and one pinned file keeps every run's rules the same. To update: install the new
# version with npm and copy its axe.min.js and LICENSE here.
AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]


def axe_violations(page, *, impacts=("serious", "critical")) -> list[dict]:
    """Run axe-core on the page as it is now (WCAG 2.0/2.1/2.2 A and AA rules) and return the
    violations of the given impacts, each with its rule id, impact, help and offending nodes."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=AXE_JS.read_text(encoding="utf-8"))
    result = page.evaluate(
        "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        AXE_TAGS,
    )
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [n["html"][:160] for n in v["nodes"]][:5]}
        for v in result["violations"] if v["impact"] in impacts
    ]


#: The two window sizes every participant page is checked at: a laptop and a phone (iPhone 12-14).
VIEWPORTS = {"laptop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


def open_page(browser, viewport: dict, **options):
    """A new browser context at ``viewport`` and its page, with the page's uncaught script errors
    collected: ``(context, page, errors)``; a test asserts ``errors == []`` at its end."""
    context = browser.new_context(viewport=viewport, **options)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, errors


def finish_with_rating(page, shots=None, tag: str = "") -> None:
    """Answer the closing rating (its fourth option), submit it and wait for the completion page
    (a screenshot ``<tag>-done`` when ``shots`` is given)."""
    page.locator(".scale label").nth(3).click()
    page.click("#submit-rating")
    page.wait_for_selector("#completion-code")
    if shots is not None:
        shots(page, f"{tag}-done")


@pytest.fixture(autouse=True)
def _late_requests_land(request):
    """After a test with a live server: give a closed page's last requests time to finish before the
    database is emptied. flow.js flushes the page's events on pagehide (a keepalive fetch), so a
    context closed at the end of a test can still be inserting rows; on PostgreSQL the teardown's
    TRUNCATE then deadlocks with that insert. Set up after ``live_server``, so torn down before it."""
    if "live_server" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("live_server")
    yield
    from django.db import connection

    if connection.vendor == "postgresql":
        time.sleep(1.0)
