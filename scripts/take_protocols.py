# ruff: noqa: T201, S311 - a one-off script that prints its table; seeded bot answers, not security
"""One-off: take every protocol study that ``manage.py demo_protocols`` built, as bots and in Chromium.

    DJANGO_DEBUG=1 python scripts/take_protocols.py [--bots 10] [--port 8765]

1. ``--bots`` bot participants per study through the real participant API (the synthetic
   participants' HTTP client, in this process, against the configured database), answering every
   step at random, so that each study's analysis page has data.
2. A local server (``manage.py runserver``) and Debian's Chromium (Playwright,
   ``/usr/bin/chromium``): each study taken as a participant at laptop (1280x800) and phone
   (390x844) size, answering everything; a full-page screenshot of every distinct page kind under
   ``var/screenshots/protocols/``, axe-core (tests/browser/vendor) on each, and a check that no page
   names the data set.
3. Each study's analysis page, logged in as a staff user made here, one screenshot per section at
   laptop size.

Prints a table: protocol, viewport, steps taken, completed, axe serious/critical count, leaks.
Not a test (it needs the demo's trained models and a real worker's explanations); tests/browser
has the tests.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyapp.settings")
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # the ORM beside Playwright's sync API, in one thread

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402

from studyapp.analysis.management.commands.synthetic_participants import ApiParticipant  # noqa: E402
from studyapp.pipeline.models import TrainedModel  # noqa: E402
from studyapp.studies.management.commands.demo_protocols import PROTOCOLS  # noqa: E402
from studyapp.studies.models import Participant, Study  # noqa: E402

OUT = ROOT / "var" / "screenshots" / "protocols"
AXE_JS = ROOT / "tests" / "browser" / "vendor" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
VIEWPORTS = {"laptop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
#: Words no participant page may contain (the data set, its source, the study's slugs).
LEAK_WORDS = ("kannada", "mnist", "prabhu", "dig-mnist")


# -- bots through the API -------------------------------------------------------------------------
def bot_answers(state: dict, rng: random.Random) -> dict:
    """The questions of a step of the protocols, answered at random but validly."""
    kind = state["kind"]
    if kind == "hive_agreement":
        return {state["key"]: rng.randint(1, 4)}
    if kind == "hive_distinction":
        return {state["key"]: rng.randrange(len(state["options"]))}
    if kind == "bias_mark":
        w, h = state["image_size"]
        x, y = rng.randrange(0, w - 6), rng.randrange(0, h - 6)
        answers = {state["mark_key"]: [x, y, x + 6, y + 6]}
        if "cues" in state:
            answers[state["cue_key"]] = rng.choice([c["value"] for c in state["cues"]])
        return answers
    if "scale" in state:  # the rating
        return {state["key"]: rng.choice([o["value"] if isinstance(o, dict) else i + 1 for i, o in enumerate(state["scale"])])}
    raise RuntimeError(f"no answer for a {kind!r} step: {sorted(state)}")


def run_bot(study: Study, i: int, rng: random.Random) -> str:
    bot = ApiParticipant(study.public_code, address=f"198.19.{i // 250}.{i % 250 + 1}")
    state = bot.send(bot.api.state())
    if state.get("kind") == "consent":
        pid = f"protocol-bot-{study.slug}-{i}"
        state = bot.send(bot.api.enter(consent=True, prolific_pid=pid, session_id=pid))
    for _ in range(1000):
        kind = state.get("kind")
        if kind in ("done", "exit", "unavailable"):
            return kind
        if kind in ("instructions", "simulation_learn"):
            state = bot.send(bot.api.continue_(state["step"]))
        elif kind in ("simulation_test", "decision_alone", "decision_assisted", "trial"):
            if state.get("answered"):
                state = bot.send(bot.api.continue_(state["step"]))
                continue
            choice = rng.choice([o["value"] for o in state["options"]])
            state = bot.send(bot.api.answer(state["step"], stimulus=state["stimulus"], choice=choice))
        else:
            state = bot.send(bot.api.questions(state["step"], bot_answers(state, rng)))
    return "stuck"


# -- Chromium -------------------------------------------------------------------------------------
def axe(page) -> list[dict]:
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=AXE_JS.read_text(encoding="utf-8"))
    result = page.evaluate(
        "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})", AXE_TAGS,
    )
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["html"][:120] for n in v["nodes"]][:3]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def images_loaded(page) -> None:
    page.wait_for_function("[...document.images].every((i) => i.complete && i.naturalWidth > 0)", timeout=15000)


def moved_on(page, step: str | None, kind: str | None) -> None:
    page.wait_for_function(
        "([s, k]) => { const a = document.querySelector('#app'); return a && (a.dataset.step !== s || a.dataset.kind !== k); }",
        arg=[step or "", kind or ""], timeout=15000,
    )


def take(page, study: Study, protocol: str, viewport: str, leak_words: tuple[str, ...]) -> dict:
    pid = f"chromium-{viewport}-{secrets.token_hex(3)}"
    page.goto(f"{BASE}/s/{study.public_code}/?PROLIFIC_PID={pid}&STUDY_ID=s1&SESSION_ID=x1")
    seen: dict = {"steps": 0, "kinds": [], "axe": {}, "leaks": [], "completed": False, "overflow": [], "arm": "-"}
    for _ in range(200):
        page.wait_for_selector("#app[data-kind]", timeout=15000)
        page.wait_for_timeout(150)
        kind = page.locator("#app").get_attribute("data-kind")
        step = page.locator("#app").get_attribute("data-step")
        if seen["arm"] == "-":
            seen["arm"] = Participant.objects.filter(study=study, prolific_pid=pid).values_list("arm__name", flat=True).first() or "-"
        if kind == "bias_mark" and page.locator("#cue-q").count():
            kind = "bias_mark_cue"  # the last mark, with the question of the cue: a page kind of its own
        if kind not in seen["kinds"]:
            seen["kinds"].append(kind)
            try:
                images_loaded(page)
            except Exception:  # noqa: BLE001 - a broken image is shown in the screenshot and reported
                seen["axe"][f"{kind}:images"] = [{"id": "image-not-loaded", "impact": "serious", "nodes": []}]
            page.screenshot(path=str(OUT / f"{protocol}-{viewport}-{seen['arm']}-{len(seen['kinds']):02d}-{kind}.png"), full_page=True)
            seen["axe"][kind] = axe(page)
            text = page.content().lower()
            seen["leaks"] += [f"{kind}:{w}" for w in leak_words if w in text]
            wide = page.evaluate("() => document.documentElement.scrollWidth > window.innerWidth + 1")
            if wide:
                seen["overflow"].append(kind)
        if kind in ("done", "exit"):
            seen["completed"] = kind == "done" and page.locator("#completion-code").count() > 0
            return seen
        seen["steps"] += 1
        if kind == "consent":
            page.check("#agree")
            page.click("#consent-go")
        elif kind == "instructions":
            page.click("#start")
        elif kind == "simulation_test":
            page.locator(".options label").nth(seen["steps"] % 2).click()
            page.click("#sim-answer")
        elif kind == "simulation_learn":
            page.click("#next")
        elif kind in ("decision_alone", "decision_assisted"):
            page.locator(".options label").nth(seen["steps"] % 2).click()
            page.click("#decide")
        elif kind == "hive_agreement":
            page.locator(".scale label").nth(seen["steps"] % 4).click()
            page.click("#hive-answer")
        elif kind == "hive_distinction":
            page.locator(".hive-grid label").nth(seen["steps"] % 4).click()
            page.click("#hive-answer")
        elif kind in ("bias_mark", "bias_mark_cue"):
            page.locator("#mark-grid button").first.click()
            if page.locator("#cue-q").count():
                page.locator(".options label").first.click()
            page.click("#bias-next")
        elif page.locator("#submit-rating").count():
            page.locator(".scale label").nth(3).click()
            page.click("#submit-rating")
            page.wait_for_selector("#completion-code", timeout=15000)
            continue
        else:
            seen["kinds"].append(f"UNKNOWN:{kind}")
            return seen
        moved_on(page, step, kind)
    return seen


def analysis_shots(browser, study: Study, protocol: str, username: str, password: str) -> list[str]:
    context = browser.new_context(viewport=VIEWPORTS["laptop"])
    page = context.new_page()
    page.goto(f"{BASE}/admin/login/?next=/admin/analysis/study/{study.pk}/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("section#overview", timeout=120000)
    page.screenshot(path=str(OUT / f"analysis-{protocol}-00-page.png"), full_page=True)
    names = []
    sections = page.locator("section[id]")
    for i in range(sections.count()):
        section = sections.nth(i)
        name = section.get_attribute("id")
        if not section.is_visible():
            continue
        section.screenshot(path=str(OUT / f"analysis-{protocol}-{i + 1:02d}-{name}.png"))
        names.append(name)
    context.close()
    return names


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    global BASE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=10)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-bots", action="store_true", help="Skip the bots (e.g. on a second run).")
    parser.add_argument("--only", default="", help="Comma-separated templates (default: all).")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    studies = {t: Study.objects.filter(slug=slug).first() for t, slug in PROTOCOLS if not args.only or t in args.only.split(",")}
    missing = [t for t, s in studies.items() if s is None or s.status != Study.Status.OPEN]
    if missing:
        print(f"Not built or not open: {', '.join(missing)}. Run `python manage.py demo_protocols` first.", file=sys.stderr)
        return 2
    datasets = {m.dataset.name.lower() for m in TrainedModel.objects.filter(
        pk__in=[s.parsed_config.classifier_id for s in studies.values()]).select_related("dataset")}
    leak_words = tuple({*LEAK_WORDS, *datasets, *(s.slug for s in studies.values())})

    rng = random.Random(0)
    for protocol, study in studies.items():
        already = Participant.objects.filter(study=study, prolific_pid__startswith="protocol-bot-").count()
        ends = [run_bot(study, i, rng) for i in range(already, 0 if args.no_bots else args.bots)]
        print(f"bots {protocol}: {len(ends)} new ({already} before): {', '.join(sorted(set(ends))) or '-'}")

    port = args.port or free_port()
    BASE = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=open(ROOT / "var" / "take_protocols_server.log", "w"),  # noqa: SIM115
    )
    rows = []
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{BASE}/admin/login/", timeout=2)  # noqa: S310 - our local server
                break
            except OSError:
                time.sleep(0.5)
        username, password = "protocol-shots", secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            for protocol, study in studies.items():
                arms = set(study.arms.values_list("name", flat=True))
                runs = [(viewport, size) for viewport, size in VIEWPORTS.items() for _ in range(3 * len(arms))]
                covered: set[tuple[str, str]] = set()
                for viewport, size in runs:
                    if {a for v, a in covered if v == viewport} >= arms:
                        continue  # every arm taken at this size
                    context = browser.new_context(viewport=size)
                    page = context.new_page()
                    errors: list[str] = []
                    page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
                    try:
                        seen = take(page, study, protocol, viewport, leak_words)
                    except Exception as exc:  # noqa: BLE001 - a one-off: report and go on to the next
                        page.screenshot(path=str(OUT / f"{protocol}-{viewport}-FAILED.png"), full_page=True)
                        seen = {"steps": "?", "completed": False, "arm": "?", "axe": {}, "leaks": [], "kinds": [], "overflow": [],
                                "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                    context.close()
                    if (viewport, seen.get("arm", "-")) in covered:
                        continue  # an arm already taken at this size: only its screenshots are new
                    covered.add((viewport, seen.get("arm", "-")))
                    rows.append((protocol, viewport, seen, errors))
                try:
                    sections = analysis_shots(browser, study, protocol, username, password)
                    print(f"analysis {protocol}: {len(sections)} sections: {', '.join(sections)}")
                except Exception as exc:  # noqa: BLE001
                    print(f"analysis {protocol}: FAILED {type(exc).__name__}: {str(exc)[:200]}")
            browser.close()
        user.delete()
    finally:
        server.terminate()
        server.wait(timeout=30)

    print()
    print(f"{'protocol':<11} {'viewport':<8} {'arm':<8} {'steps':>5} {'completed':<9} {'axe s/c':>7}  {'leaks':<6} {'overflow':<9} page kinds")
    for protocol, viewport, seen, errors in rows:
        n_axe = sum(len(v) for v in seen["axe"].values())
        print(f"{protocol:<11} {viewport:<8} {seen['arm']:<8} {seen['steps']!s:>5} {'yes' if seen['completed'] else 'NO':<9} {n_axe:>7}  "
              f"{len(seen['leaks']):<6} {','.join(seen['overflow']) or '-':<9} {' > '.join(seen['kinds'])}")
        for kind, violations in seen["axe"].items():
            for v in violations:
                print(f"    axe {kind}: {v['impact']} {v['id']} {v['nodes'][:1]}")
        for leak in seen["leaks"]:
            print(f"    leak {leak}")
        for e in errors + ([seen["error"]] if "error" in seen else []):
            print(f"    error {e}")
    return 0 if all(seen["completed"] and not seen["leaks"] for _, _, seen, _ in rows) else 1


BASE = ""

if __name__ == "__main__":
    sys.exit(main())
