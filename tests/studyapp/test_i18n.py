"""The participant pages in the study's language: nothing the participant reads is hard-coded.

Every participant-visible sentence of the server (states, refusals, the page) and of the script
(static/study/study.js) is a msgid of locale/<lang>/LC_MESSAGES/django.po or djangojs.po; the
German catalogs translate every one (no untranslated, no fuzzy entry; the shipped .mo files are
those .po files compiled); and a German study walked through every step kind, refusals included,
shows none of the English sentences.
"""

from __future__ import annotations

import ast
import gettext as stdlib_gettext
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import translation

from studyapp.studies import i18n, state
from studyapp.studies.models import Study
from tests.studyapp.bots import Bot
from tests.studyapp.factories import clustering_study, learning_study

ROOT = Path(settings.BASE_DIR)
LOCALE = ROOT / "locale"
#: The participant scripts (djangojs.po): study.js and what it loads beside it.
SCRIPTS = sorted((ROOT / "static" / "study").glob("*.js"))
#: The server files whose gettext calls the participant reads (django.po).
SERVER_SOURCES = sorted((ROOT / "studyapp" / "studies").glob("*.py"))
TEMPLATES = sorted((ROOT / "templates" / "studies").glob("*.html"))
LANGUAGES = [code for code, _ in settings.LANGUAGES if code != "en"]


@pytest.fixture(autouse=True)
def _forget_languages():
    i18n._languages.clear()
    yield
    i18n._languages.clear()


# -- the catalogs ------------------------------------------------------------------------------
def po_entries(path: Path) -> list[dict]:
    """The entries of a .po file (msgid, msgid_plural, msgstr list, flags), read the way msgfmt
    reads them: quoted strings concatenated, C escapes undone."""
    entries, entry, field = [], None, None

    def unquote(text: str) -> str:
        return ast.literal_eval(text)

    for raw in path.read_text(encoding="utf-8").splitlines() + [""]:
        line = raw.strip()
        if not line:
            if entry is not None:
                entries.append(entry)
            entry, field = None, None
            continue
        if entry is None:
            entry = {"msgid": "", "plural": None, "msgstr": {}, "flags": set()}
        if line.startswith("#,"):
            entry["flags"] |= {f.strip() for f in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif line.startswith("msgid_plural "):
            field, entry["plural"] = "plural", unquote(line[len("msgid_plural "):])
        elif line.startswith("msgid "):
            field, entry["msgid"] = "msgid", unquote(line[len("msgid "):])
        elif line.startswith("msgstr"):
            index = int(line[7]) if line.startswith("msgstr[") else 0
            field = ("msgstr", index)
            entry["msgstr"][index] = unquote(line.split(" ", 1)[1])
        elif line.startswith('"'):
            if isinstance(field, tuple):
                entry["msgstr"][field[1]] += unquote(line)
            else:
                entry[field] += unquote(line)
    return [e for e in entries if e["msgid"]]


def catalog(language: str, domain: str) -> Path:
    return LOCALE / language / "LC_MESSAGES" / f"{domain}.po"


@pytest.mark.parametrize("domain", ["django", "djangojs"])
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_entry_is_translated_and_none_is_fuzzy(language, domain):
    po = catalog(language, domain)
    assert po.exists(), f"{po} is missing: run makemessages (README 'Languages')"
    entries = po_entries(po)
    assert entries
    assert [e["msgid"] for e in entries if "fuzzy" in e["flags"]] == []
    assert [e["msgid"] for e in entries if not all(e["msgstr"].values()) or not e["msgstr"]] == []
    if shutil.which("msgfmt"):  # gettext's own count agrees: "N translated messages." and nothing else
        out = subprocess.run(["msgfmt", "--check", "--statistics", "-o", "/dev/null", str(po)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert re.fullmatch(r"\d+ translated messages?\.", out.stderr.strip()), out.stderr


@pytest.mark.parametrize("domain", ["django", "djangojs"])
@pytest.mark.parametrize("language", LANGUAGES)
def test_the_shipped_mo_files_are_the_po_files_compiled(language, domain):
    """A clean clone works without a compile step: the .mo is in the tree and up to date."""
    po = catalog(language, domain)
    mo = po.with_suffix(".mo")
    assert mo.exists(), f"{mo} is missing: compile it (msgfmt -o {mo.name} {po.name}) and commit it"
    with mo.open("rb") as handle:
        shipped = stdlib_gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
    expected = {}
    for e in po_entries(po):
        if e["plural"] is None:
            expected[e["msgid"]] = e["msgstr"][0]
        else:
            for index, text in e["msgstr"].items():
                expected[(e["msgid"], index)] = text
    assert {k: v for k, v in shipped.items() if k != ""} == expected
    assert not subprocess.run(["git", "check-ignore", "-q", str(mo)], cwd=ROOT, timeout=30).returncode == 0, "ignored by git"


def python_msgids(path: Path) -> set[str]:
    """The literal msgids of gettext(), gettext_lazy() (as ``_``) and ngettext() calls in ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
            "gettext", "_", "gettext_lazy", "gettext_noop", "ngettext", "ngettext_lazy"
        ):
            found |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return found


JS_STRING = r'"((?:[^"\\]|\\.)*)"'
JS_CALL = re.compile(r"\b(n?gettext)\(\s*" + JS_STRING + r"(?:\s*,\s*" + JS_STRING + r")?")


def script_msgids() -> set[str]:
    found = set()
    for script in SCRIPTS:
        for _, one, many in JS_CALL.findall(script.read_text(encoding="utf-8")):
            found |= {one} | ({many} if many else set())
    return found


def test_the_catalogs_hold_every_msgid_of_the_sources():
    """A new sentence wrapped in gettext but not extracted (makemessages not run) fails here."""
    for language in LANGUAGES:
        server = {e["msgid"] for e in po_entries(catalog(language, "django"))} | {
            e["plural"] for e in po_entries(catalog(language, "django")) if e["plural"]}
        wanted = set().union(*(python_msgids(p) for p in SERVER_SOURCES))
        for template in TEMPLATES:
            wanted |= set(re.findall(r'{%\s*translate\s+"([^"]+)"', template.read_text(encoding="utf-8")))
        assert wanted - server == set()
        script = {e["msgid"] for e in po_entries(catalog(language, "djangojs"))} | {
            e["plural"] for e in po_entries(catalog(language, "djangojs")) if e["plural"]}
        assert script_msgids() - script == set()


#: String literals of study.js that are not words a participant reads.
NOT_UI = {"Accept", "Content-Type", "X-CSRFToken", "Enter", "NoVis", "XNN", "GET", "POST"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_script_has_no_hard_coded_sentence(script):
    """Every capitalised string literal of the participant scripts (a button, a prompt, a caption)
    goes through gettext(); what is left are header names and keys."""
    assert SCRIPTS
    source = script.read_text(encoding="utf-8")
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    source = re.sub(r"(?m)//.*$", "", source)
    source = JS_CALL.sub("", source)
    # The script writes its strings in double quotes; a match with a quote inside is the gap
    # between two of a single-quoted selector's.
    literals = {t for t in re.findall(JS_STRING, source) if "'" not in t}
    prose = {t for t in literals if re.search(r"[A-Za-z]{2}", t) and (re.match(r"\s*[A-Z]", t) or " " in t.strip())}
    prose = {t for t in prose if not re.fullmatch(r"[a-z0-9 _.#:\-\[\]=\"'(),]*", t)}  # CSS classes, selectors
    assert prose - NOT_UI == set()


def test_no_template_text_is_left_untranslated():
    for template in TEMPLATES:
        text = template.read_text(encoding="utf-8")
        text = re.sub(r"{%.*?%}|{{.*?}}|{#.*?#}", "", text, flags=re.S)
        text = re.sub(r"<script\b.*?</script>", "", text, flags=re.S)
        words = [w for w in re.sub(r"<[^>]+>", " ", text).split() if re.search(r"[A-Za-z]", w)]
        assert words == [], template.name


# -- a German study, walked --------------------------------------------------------------------
def english_sentences(language: str) -> list[tuple[str, re.Pattern]]:
    """The catalogs' English sentences (two words or more) whose translation differs, as patterns
    that match them formatted (a placeholder matches any text)."""
    out = []
    for domain in ("django", "djangojs"):
        for e in po_entries(catalog(language, domain)):
            for index, english in enumerate([e["msgid"]] + ([e["plural"]] if e["plural"] else [])):
                translated = e["msgstr"].get(index, e["msgstr"].get(0))
                if english == translated or len(re.findall(r"[A-Za-z]+", re.sub(r"%\(\w+\)\w", "", english))) < 2:
                    continue
                parts = re.split(r"%\(\w+\)[sdr]", english)
                out.append((english, re.compile(r".{1,80}?".join(re.escape(p) for p in parts))))
    return out


def assert_no_english(texts: list[tuple[str, str]], language: str = "de") -> None:
    patterns = english_sentences(language)
    assert len(patterns) > 40
    found = [(label, english) for label, body in texts for english, pattern in patterns if pattern.search(body)]
    assert found == []


def german(study: Study) -> Study:
    """The study in German, its own texts too (the demo's, fixtures/study_texts_de.json)."""
    own = json.loads((ROOT / "fixtures" / "study_texts_de.json").read_text(encoding="utf-8"))[study.slug]
    for field in ("title", "consent_text", "cover_story", "instructions", "completion_text", "rating_question", "rating_scale"):
        if field in own:
            setattr(study, field, own[field])
    study.language = "de"
    study.save()
    for arm in study.arms.all():
        arm.instruction = own["arms"][arm.name]
        arm.save()
    return study


@pytest.mark.django_db
def test_a_german_learning_study_speaks_german_at_every_step_and_refusal():
    study = german(learning_study())
    bot = Bot(study.public_code)
    page = bot.client.get(f"/s/{study.public_code}/", HTTP_ACCEPT_LANGUAGE="en")
    html = page.content.decode()
    assert '<html lang="de">' in html and "/jsi18n/de/?v=" in html and "Wird geladen" in html
    bot.open_link()
    assert bot.enter()[0] == 201 and bot.state["kind"] == "instructions"
    assert bot.continue_()[0] == 200 and bot.state["kind"] == "trial"
    assert bot.state["question"] == "Welches Symbol ist das?"
    # Refusals: a step that is not the current one, a stimulus of another trial, a body DRF refuses.
    status, data = bot.post(f"steps/{bot.state['step'] + 5}/continue", {})
    assert status == 409 and data["detail"].startswith("Schritt "), data
    status, data = bot.post(f"steps/{bot.state['step']}/answer", {"stimulus": 10**6, "choice": 0})
    assert status == 400, data
    status, data = bot.post(f"steps/{bot.state['step']}/answer", {"choice": "x"})
    assert status == 400 and "Dieses Feld ist zwingend erforderlich." in data["stimulus"], data
    status, data = bot.post(f"steps/{bot.state['step']}/continue", {})
    assert status == 400 and data["detail"] == "Bitte beantworten Sie diese Aufgabe, bevor Sie weitergehen."
    final = bot.walk()
    assert final["kind"] == "done"
    status, data = bot.post("withdraw", {"confirm": False})
    assert status == 400 and data["detail"].startswith("Bitte bestätigen Sie")
    stranger = Bot(study.public_code)
    assert stranger.open_link()["kind"] == "consent"
    status, data = stranger.post("steps/0/continue", {})
    assert status == 403 and data["detail"].startswith("In diesem Browser"), data
    reply = bot.client.get(f"/api/s/{study.public_code}/state")
    assert reply["Content-Language"] == "de"
    assert_no_english([("PAGE", html)] + [(label, body) for label, _, body in bot.responses + stranger.responses])


@pytest.mark.django_db
def test_a_german_clustering_study_speaks_german_in_its_groupings_and_refusals():
    study = german(clustering_study(n_sets=3, set_size=8, group_rule="exactly"))  # a rule that is told
    bot = Bot(study.public_code)
    bot.open_link()
    bot.enter()
    while bot.state["kind"] != "grouping":
        if bot.state["kind"] == "questions":
            assert bot.questions(bot.default_answers(bot.state, bot.rng))[0] == 200
        else:
            assert bot.continue_()[0] == 200
    assert bot.state["group_rule"] == "Bilden Sie genau 4 Gruppen."
    one_group = {str(img["id"]): 0 for img in bot.state["images"]}
    status, data = bot.post(f"steps/{bot.state['step']}/grouping", {"assignment": one_group})
    assert status == 400 and data["detail"] == "Bilden Sie genau 4 Gruppen. Diese Bilder sind in 1 Gruppe.", data
    status, data = bot.post(f"steps/{bot.state['step']}/grouping", {"assignment": dict(list(one_group.items())[:-1])})
    assert status == 400 and data["detail"].startswith("1 Bild ist noch in keiner Gruppe."), data
    bot.walk_clustering()
    groupings = [body for _, _, body in bot.responses if '"kind":"grouping"' in body]
    assert groupings and all("Bilden Sie " in body for body in groupings)
    assert any("Der KI-Agent" in body for _, _, body in bot.responses)  # a stage's default text
    assert_no_english([(label, body) for label, _, body in bot.responses])


@pytest.mark.django_db
def test_the_study_decides_not_the_browser():
    study = learning_study()  # English
    bot = Bot(study.public_code, client=Client(enforce_csrf_checks=True, HTTP_ACCEPT_LANGUAGE="de"))
    bot.open_link()
    bot.enter()
    bot.continue_()
    assert bot.state["question"] == "Which symbol is this?"
    html = bot.client.get(f"/s/{study.public_code}/").content.decode()
    assert '<html lang="en">' in html and "/jsi18n/en/" in html and "Loading" in html
    with translation.override("de"):  # the default texts are lazy: the active language at use
        assert str(state.STAGE_TEXT["NoVis"]).startswith("Ordnen Sie")


@pytest.mark.django_db
def test_a_language_change_is_seen_by_the_api_of_this_process():
    study = learning_study()
    bot = Bot(study.public_code)
    bot.open_link()
    bot.enter()
    bot.continue_()
    assert bot.state["question"] == "Which symbol is this?"
    Study.objects.get(pk=study.pk).save()  # a save keeps the language it has
    german(Study.objects.get(pk=study.pk))
    assert bot.refresh()["question"] == "Welches Symbol ist das?"


def test_the_javascript_catalog_is_the_languages_and_cacheable():
    client = Client()
    reply = client.get("/jsi18n/de/", HTTP_ACCEPT_LANGUAGE="en")
    assert reply.status_code == 200 and reply["Content-Type"].startswith("text/javascript")
    body = reply.content.decode()
    assert "Sofort antworten" in body and "Noch nicht gruppiert" in body
    assert "public" in reply["Cache-Control"] and "max-age=86400" in reply["Cache-Control"]
    again = client.get("/jsi18n/de/", HTTP_IF_NONE_MATCH=reply["ETag"])
    assert again.status_code == 304
    english = client.get("/jsi18n/en/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert "Sofort antworten" not in english and "gettext" in english
    assert client.get("/jsi18n/xx/").status_code == 404


@pytest.mark.django_db
def test_the_admin_offers_only_the_configured_languages(admin_client):
    study = learning_study(open_it=False)
    page = admin_client.get(f"/admin/studies/study/{study.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert '<select name="language"' in html and '<option value="de">Deutsch</option>' in html
    form = page.context["adminform"].form
    data = {**form.initial, "language": "xx"}
    bound = type(form)(data=data, instance=study)
    assert not bound.is_valid() and "language" in bound.errors
