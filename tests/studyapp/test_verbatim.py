"""Every visible string of the published templates against the source documents (issue 23).

Each text a participant of a published template reads is either the source's own words (found in
the source's passages, ``docs/sources/``, whitespace, quotes and emphasis normalised) or a
departure the study's notes (``config.notes``) declare. The passages themselves are checked
against the source documents (``../shared/seeds/``) where those are on disk.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.utils import translation

from studyapp.lib.study_config import read_config
from studyapp.studies import plans
from studyapp.studies.state import STAGE_TEXT

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "docs" / "sources"
SEEDS = ROOT.parent / "shared" / "seeds"


def normalise(text: str) -> str:
    """Quotes made straight, markdown emphasis dropped, whitespace collapsed."""
    text = re.sub(r"[“”„\"]", '"', text)
    text = re.sub(r"[‘’‚`']", "'", text)
    text = text.replace("**", "").replace("*", "")
    return re.sub(r"\s+", " ", text).strip()


def passages(name: str) -> str:
    lines = (SOURCES / name).read_text(encoding="utf-8").splitlines()
    return normalise(" ".join(line for line in lines if not line.startswith("#")))


def fixture(name: str) -> tuple[dict, list[dict]]:
    rows = json.loads((ROOT / "fixtures" / name).read_text(encoding="utf-8"))
    return rows[0]["fields"], [r["fields"] for r in rows[1:] if r["model"] == "studies.arm"]


def check(texts: list[tuple[str, str]], source: str, declared: dict[str, str], notes: str) -> None:
    """Each ``(where, text)`` is in ``source``, or declared: its notes phrase is in ``notes``."""
    notes = normalise(notes)
    missing = []
    for where, text in texts:
        if normalise(text) in source:
            continue
        phrase = declared.get(text)
        if phrase is None:
            missing.append(f"{where}: {text!r} is not the source's wording and the notes do not declare it")
        elif normalise(phrase) not in notes:
            missing.append(f"{where}: the notes do not say {phrase!r}")
    assert not missing, "\n".join(missing)


def test_the_passages_are_the_source_documents_words():
    if not SEEDS.is_dir():
        pytest.skip("the source documents are not on this machine (../shared/seeds)")
    seeds = normalise(" ".join(p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt"))))
    for name in ("dissertation_ch5.txt", "xnn_section4_1.txt"):
        lines = [normalise(line) for line in (SOURCES / name).read_text(encoding="utf-8").splitlines()
                 if line.strip() and not line.startswith("#")]
        assert [line for line in lines if line not in seeds] == [], name


def test_study_a_shows_the_dissertations_words_or_says_why_not():
    study, arms = fixture("study_a_kannada.json")
    notes = read_config(study["config"]).notes
    script = (ROOT / "static" / "study" / "study.js").read_text(encoding="utf-8")
    shown_by_the_page = ["You will be shown a picture of a symbol and asked what symbol it is.",
                         "We are evaluating this system by measuring how much your performance gets better over the trial.",
                         "Read these instructions before you begin:"]
    assert all(f'gettext("{s}")' in script for s in shown_by_the_page)
    texts = [("title", study["title"]), ("consent", study["consent_text"]), ("cover story", study["cover_story"]),
             ("completion", study["completion_text"]), ("rating question", study["rating_question"])]
    texts += [(f"instruction {i + 1}", t) for i, t in enumerate(study["instructions"])]
    texts += [(f"class name {i + 1}", t) for i, t in enumerate(study["class_names"])]
    texts += [(f"rating option {i + 1}", t) for i, t in enumerate(study["rating_scale"])]
    texts += [(f"arm {a['name']}", a["instruction"]) for a in arms]
    texts += [("page", s) for s in shown_by_the_page]
    declared = {
        study["consent_text"]: "The consent text, the completion text",
        study["completion_text"]: "The consent text, the completion text",
        study["rating_question"]: "the rating question is the site's",
        study["title"]: "The title is the course's name in the cover story",
        "At the end, press the submit button to submit the test.": 'instruction 4 leaves out "on the lower right of the screen"',
        "Do not use the back button on the browser.": 'instructions 4 and 6 add "the"',
    }
    check(texts, passages("dissertation_ch5.txt"), declared, notes)
    assert normalise(study["title"]).lower() in passages("dissertation_ch5.txt").lower()
    # The rating scale in the dissertation's order, lowest first.
    assert normalise(", ".join(study["rating_scale"][:-1]) + ", and, " + study["rating_scale"][-1]) in passages("dissertation_ch5.txt")


def _study_b_questions() -> list[dict]:
    """The questions of a Study B plan as drawn (English): demographics, confidence, final."""
    with translation.override("en"):
        confidence = {"key": "confidence", "type": "scale", "label": str(plans.CONFIDENCE_QUESTION),
                      "options": list(plans.CONFIDENCE_SCALE)}
        final = [plans.agent_rating_question(plans.STAGE_HEATMAP), plans.agent_rating_question(plans.STAGE_XNN)]
    return [*plans.XNN_PAPER_DEMOGRAPHICS, confidence, *final]


def test_study_b_shows_the_papers_words_in_the_papers_order_or_says_why_not():
    study, arms = fixture("study_b_clustering.json")
    config = read_config(study["config"])
    assert config.demographics == plans.XNN_PAPER_DEMOGRAPHICS
    source = passages("xnn_section4_1.txt")
    questions = _study_b_questions()
    texts = [("title", study["title"]), ("consent", study["consent_text"]), ("cover story", study["cover_story"]),
             ("completion", study["completion_text"])]
    texts += [(f"instruction {i + 1}", t) for i, t in enumerate(study["instructions"])]
    texts += [(f"stage text {stage}", str(t)) for stage, t in {**STAGE_TEXT, **config.stage_text}.items()]
    for q in questions:
        texts.append((f"question {q['key']}", q["label"]))
        texts += [(f"{q['key']} option", str(o)) for o in q["options"] if not str(o).isdigit()]
    notes = config.notes
    site = "the title, the consent and completion texts are the site's"
    worded = "Stage texts, cover story and instructions: worded from what the paper says participants were told"
    declared = {study["title"]: site, study["consent_text"]: site, study["completion_text"]: site,
                study["cover_story"]: worded, **{t: worded for t in study["instructions"]},
                **{str(t): worded for t in STAGE_TEXT.values()},
                "Your age (in years)": "Demographics: the paper's age bands and course counts",
                "Your gender": "Demographics: the paper's age bands and course counts",
                "Over 60": "'Over 60', the further gender options and 'Prefer not to say' are the site's",
                "Prefer not to say": "'Over 60', the further gender options and 'Prefer not to say' are the site's",
                **{g: "the further gender options" for g in ("Trans Female", "Non-binary", "Prefer to self-describe")},
                **{str(q["label"]): "the question is worded from that sentence" for q in questions if q["key"].startswith("agent_rating")}}
    demographics = {q["key"]: q for q in plans.XNN_PAPER_DEMOGRAPHICS}
    declared.update({demographics[k]["label"]: "Demographics: the paper's age bands and course counts" for k in ("cs_courses", "ai_courses")})
    # The paper quotes its options one by one: 'Female', '4 courses or more' ...
    texts = [(w, f"'{t}'" if w.endswith("option") else t) for w, t in texts]
    declared.update({f"'{k}'": v for k, v in declared.items()})
    check(texts, source, declared, notes)
    # The scales as the paper lists them, in its order: confidence upward, the agents from 'Very Good' down.
    confidence, heatmap_agent, xnn_agent = questions[-3:]
    for q in (confidence, heatmap_agent, xnn_agent):
        assert "(" + ", ".join(f"'{o}'" for o in q["options"]) + ")" in source, q["key"]
    assert heatmap_agent["options"][0] == "Very Good" and heatmap_agent["values"] == [7, 6, 5, 4, 3, 2, 1]
    assert normalise(confidence["label"]) in source and "Difficulty: the paper reports no difficulty question" in notes
    assert "does not say it told them how many categories" in notes


def test_study_b_questions_keep_the_papers_order_in_german():
    with translation.override("de"):
        agent = plans.agent_rating_question(plans.STAGE_XNN)
        label = translation.gettext(plans.CONFIDENCE_QUESTION)
        scale = [translation.gettext(t) for t in plans.CONFIDENCE_SCALE]
    assert agent["options"][0] == "Sehr gut" and agent["options"][-1] == "Sehr schlecht" and agent["values"][0] == 7
    assert label.startswith("Wie hoch ist Ihr Vertrauen") and scale[0] == "Null" and agent["label"] != str(plans.AGENT_QUESTIONS["XNN"])
