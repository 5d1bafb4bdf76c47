"""Nothing a participant's browser receives names the data (issue 23, item 1).

Both published studies are taken to the end in Chromium while every response the browser gets
(page, scripts, styles, catalog, API JSON, images) is recorded with its URL and headers. None
may name the script ("kannada", any case), a data set (its name, "CUB", "CEL"), the source
classes (as option values or by their names) or a study's slug. Decoded as the browser gets it.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Error as PlaywrightError

from studyapp.pipeline.models import Dataset
from studyapp.studies.models import Grouping, Participant, TrialAnswer
from tests.browser.test_learning_study import take_study
from tests.studyapp.factories import clustering_study, learning_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def record(context) -> list[dict]:
    """Every response of ``context`` as ``{"url", "status", "headers", "body"}`` (fetched through a route)."""
    seen: list[dict] = []

    def handle(route):
        try:
            response = route.fetch()
        except PlaywrightError:  # the context is closing: a page's last keepalive events (flow.js, on pagehide)
            return
        body = response.body()
        seen.append({"url": route.request.url, "status": response.status, "headers": response.headers, "body": body})
        route.fulfill(response=response, body=body)

    context.route("**/*", handle)
    return seen


def forbidden_words(studies) -> list[re.Pattern]:
    words = {"CUB", "CEL", *(s.slug for s in studies), *Dataset.objects.values_list("name", flat=True)}
    for study in studies:
        config = study.parsed_config
        for name in (config.cub_classes or []) + (config.cel_classes or []):
            words |= {p for p in re.split(r"[^A-Za-z]+", name) if len(p) >= 4}
    patterns = [re.compile(r"kannada", re.IGNORECASE)]
    patterns += [re.compile(rf"(?<![A-Za-z0-9]){re.escape(w)}(?![A-Za-z0-9])") for w in sorted(words)]
    return patterns


def scan(responses: list[dict], patterns: list[re.Pattern]) -> list[str]:
    found = []
    for r in responses:
        text = r["body"].decode("utf-8", errors="replace") if not r["url"].endswith((".png", ".gif", ".webp")) else ""
        places = {"url": r["url"], "headers": json.dumps(r["headers"]), "body": text}
        for where, content in places.items():
            for pattern in patterns:
                if pattern.search(content):
                    found.append(f"{r['url']} {where}: {pattern.pattern}")
    return found


def api_states(responses: list[dict]) -> list[dict]:
    out = []
    for r in responses:
        if "/api/s/" in r["url"] and r["body"].startswith(b"{"):
            data = json.loads(r["body"])
            out += [data] + ([data["state"]] if isinstance(data.get("state"), dict) else [])
    return out


def take_clustering(page, url: str) -> None:
    """Consent, demographics, six batches in two groups each (select, "Move selected here"), the questions."""
    page.goto(url)
    page.check("#agree")
    page.click("#consent-go")
    page.wait_for_selector("#start")
    assert "four" not in page.inner_text("#app").lower()
    page.click("#start")
    while True:
        page.wait_for_selector("#done-grouping, #submit-questions, #completion-code")
        before = page.eval_on_selector("#app", "el => el.dataset.step")
        if page.locator("#completion-code").count():
            return
        if page.locator("#done-grouping").count():
            assert page.locator("#group-rule").count() == 0  # the number of groups is not told
            for group in (0, 1):
                cards = page.locator(".tray .card-img")
                for _ in range(cards.count() // 2 if group == 0 else cards.count()):
                    page.locator(".tray .card-img:not(.selected)").first.click()
                page.locator(f'[data-move="{group}"]').click()
            page.wait_for_selector("#done-grouping:enabled")
            page.click("#done-grouping")
        else:
            for fieldset in page.locator("fieldset.question").all():
                if fieldset.locator("textarea").count():
                    fieldset.locator("textarea").fill("fine")
                else:
                    fieldset.locator("label").first.click()
            page.click("#submit-questions")
        page.wait_for_function(f"document.getElementById('app').dataset.step !== '{before}'")


def test_both_published_studies_taken_to_the_end_never_name_the_data(browser, live_server, shots):
    a, b = learning_study(), clustering_study()
    recorded: list[list[dict]] = []
    errors: list[str] = []
    for study, take in ((a, "learning"), (b, "clustering")):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        recorded.append(seen := record(context))
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        base = f"{live_server.url}/s/{study.public_code}/"
        if take == "learning":
            take_study(page, base, shots, "scan", pid="scan-a")
        else:
            take_clustering(page, base + "?PROLIFIC_PID=scan-b&STUDY_ID=s1&SESSION_ID=x1")
        context.close()
        assert any(r["url"].startswith(base) for r in seen)
    assert not errors, errors
    responses = [r for seen in recorded for r in seen]
    assert Participant.objects.filter(status="completed").count() == 2
    assert TrialAnswer.objects.count() == 20  # the server stored the class ids the options stood for
    assert set(TrialAnswer.objects.values_list("choice", flat=True)) <= set(a.classes)
    assert [len(set(g.assignment.values())) for g in Grouping.objects.order_by("step_index")] == [2] * 6

    kinds = {r["url"].rsplit(".", 1)[-1] for r in responses if "/media/" in r["url"]}
    assert {"png"} <= kinds and len(responses) > 50  # images, scripts, the catalog and the API were recorded
    patterns = forbidden_words([a, b])
    planted = [{"url": "/s/x/", "headers": {}, "body": body} for body in
               (b'{"study":"xnn-clustering"}', b"<h1>Kannada</h1>", b'"group":"CUB"', b"Western gull", b"tiny-CEL")]
    assert len(scan(planted, patterns)) >= len(planted)  # the scan finds what it looks for
    assert scan(responses, patterns) == []
    # The answer options and the feedback carry positions, never the source class ids.
    trials = [s for s in api_states(responses) if s.get("kind") == "trial"]
    assert trials and all([o["value"] for o in s["options"]] == [0, 1] for s in trials)
    feedback = [s["feedback"] for s in trials if s.get("feedback")]
    assert feedback and all(f["choice"] in (0, 1) and f["correct_answer"] in (0, 1) for f in feedback)
    # The question keys are positions (the stored keys name stages and data sets).
    keys = {q["key"] for s in api_states(responses) if s.get("kind") == "questions" for q in s["questions"]}
    assert keys and all(re.fullmatch(r"q\d+", k) for k in keys), keys
    # Every state names the study by its public code only.
    assert {s["study"] for s in api_states(responses) if "study" in s} == {a.public_code, b.public_code}
