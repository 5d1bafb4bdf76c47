"""What the designs' plans are drawn from: the clustering design's questions and scales, its
counterbalancing cells, and `PlanError`. The plans themselves are drawn by the designs
(`studyapp.studies.designs.learning`, `...clustering`) from the step classes (`studyapp.studies.steps`),
and stored as JSON on the participant, so the drawn order is kept for analysis and the server alone
decides what comes next.
"""

from __future__ import annotations

from django.utils.translation import gettext, gettext_noop

from studyapp.studies.models import Study


class PlanError(Exception):
    """The study cannot produce a plan (e.g. not enough servable stimuli)."""


# ---------------------------------------------------------------------------------------------
# Clustering design (XNN paper, section 4.1)
# ---------------------------------------------------------------------------------------------
# The scales' labels (answers are stored as numbers): English here, shown in the study's language
# (translated when the plan is drawn, at enrolment, with the study's language active).
#: The XNN paper's words (§4.1, "Confidence Levels" and "Performance Comparison"), in its order.
CONFIDENCE_QUESTION = gettext_noop("What is your confidence level that the answers you picked will group all the samples correctly?")
CONFIDENCE_SCALE = [gettext_noop("Zero"), gettext_noop("Very Low"), gettext_noop("Low"), gettext_noop("Mediocre"),
                    gettext_noop("High"), gettext_noop("Very High"), gettext_noop("100%")]
#: The agent rating's labels, lowest first: stored as codes 1 (Very Poor) .. 7 (Very Good) and
#: shown in the paper's order, 'Very Good' first (``agent_rating_question``).
AGENT_SCALE = [gettext_noop("Very Poor"), gettext_noop("Poor"), gettext_noop("Slightly Poor"), gettext_noop("Neutral or N/A"),
               gettext_noop("Slightly Good"), gettext_noop("Good"), gettext_noop("Very Good")]
#: The paper asked participants "to rate the performance of the 2 different AI agents ... in
#: distinguishing images from each other"; it does not quote its question, so these are worded from it.
AGENT_QUESTIONS = {
    "1-Heatmap": gettext_noop("Rate the performance of the AI agent that showed one heatmap per image in distinguishing images from each other."),
    "XNN": gettext_noop("Rate the performance of the AI agent that showed several heatmaps per image in distinguishing images from each other."),
}
COURSES_PAPER = ["No course", "1 course", "2 courses", "3 courses", "4 courses or more"]
#: The XNN paper's appendix: its age bands and course counts. The paper reports only the answers
#: its 30 participants gave (nobody over 60; "Female", "Male", "Trans Male"), so the last age
#: band, the further gender options and "Prefer not to say" are ours: nobody is made to lie.
XNN_PAPER_DEMOGRAPHICS = [
    {"key": "age_band", "type": "choice", "label": "Your age (in years)", "options": ["18-30", "31-40", "41-50", "51-60", "Over 60", "Prefer not to say"]},
    {"key": "gender", "type": "choice", "label": "Your gender", "options": ["Female", "Male", "Trans Female", "Trans Male", "Non-binary", "Prefer to self-describe", "Prefer not to say"]},
    {"key": "cs_courses", "type": "choice", "label": "How many Computer Science courses have you taken?", "options": COURSES_PAPER},
    {"key": "ai_courses", "type": "choice", "label": "How many Artificial Intelligence courses have you taken?", "options": COURSES_PAPER},
]
#: The questions of the site's first version (census-style age bands, grouped course counts).
AGE_BAND_DEMOGRAPHICS = [
    {"key": "age_band", "type": "choice", "label": "Your age", "options": ["18-24", "25-34", "35-44", "45-54", "55-64", "65+", "Prefer not to say"]},
    {"key": "gender", "type": "choice", "label": "Your gender", "options": ["Female", "Male", "Non-binary", "Prefer to self-describe", "Prefer not to say"]},
    {"key": "cs_courses", "type": "choice", "label": "How many Computer Science courses have you taken?", "options": ["0", "1-2", "3-5", "6 or more"]},
    {"key": "ai_courses", "type": "choice", "label": "How many Artificial Intelligence or Machine Learning courses have you taken?", "options": ["0", "1-2", "3-5", "6 or more"]},
]
#: ``config.demographics`` may name one of these instead of listing its questions.
DEMOGRAPHIC_PRESETS = {"xnn_paper": XNN_PAPER_DEMOGRAPHICS, "age_bands": AGE_BAND_DEMOGRAPHICS}
DEFAULT_DEMOGRAPHICS = AGE_BAND_DEMOGRAPHICS
STAGE_NOVIS, STAGE_HEATMAP, STAGE_XNN = "NoVis", "1-Heatmap", "XNN"
LATER_STAGE_ORDERS = ((STAGE_XNN, STAGE_HEATMAP), (STAGE_HEATMAP, STAGE_XNN))


def agent_rating_question(stage: str) -> dict:
    """The rating of a stage's AI agent: the paper's seven labels in the paper's order ('Very Good'
    first), each with its code (``values``: 7 .. 1, so that codes go up with the rating)."""
    return {"key": f"agent_rating:{stage}", "type": "scale", "label": gettext(AGENT_QUESTIONS[stage]),
            "options": [gettext(t) for t in reversed(AGENT_SCALE)],
            "values": list(range(len(AGENT_SCALE), 0, -1)), "first_value": 1}


def demographic_questions(study: Study) -> list[dict]:
    chosen = study.parsed_config.demographics
    if chosen is None:
        return DEFAULT_DEMOGRAPHICS
    return DEMOGRAPHIC_PRESETS[chosen] if isinstance(chosen, str) else chosen


def balanced_latin_square(n: int) -> list[list[int]]:
    """Williams' balanced Latin square of ``n`` treatments: every treatment once in each row and
    column, and (for even ``n``) every ordered pair of neighbours exactly once; for odd ``n`` the
    square is followed by its mirror image, so that this holds over the ``2n`` rows.

    >>> balanced_latin_square(2), balanced_latin_square(4)[1]
    ([[0, 1], [1, 0]], [1, 2, 0, 3])
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    first = [0] + [(k + 1) // 2 if k % 2 else n - k // 2 for k in range(1, n)]
    rows = [[(x + r) % n for x in first] for r in range(n)]
    return rows + [row[::-1] for row in rows] if n % 2 else rows


def order_cells(datasets: list[str] | tuple[str, ...]) -> list[str]:
    """The counterbalancing cells of Study B, in the order that fills them evenly.

    A cell is the order of the two stages after NoVis crossed with a row of the balanced Latin
    square of the data sets (their order in every stage). The sequence alternates the stage
    order and walks the data-set rows so that any first ``2k`` cells are balanced on both factors
    (for two data sets: XNN second & CUB first, 1-Heatmap second & CEL first, XNN second & CEL
    first, 1-Heatmap second & CUB first). A cell is written ``"XNN,1-Heatmap|CUB,CEL"``.
    """
    rows = [[datasets[i] for i in row] for row in balanced_latin_square(len(datasets))]
    cells = []
    for j in range(len(rows)):
        for s, stages in enumerate(LATER_STAGE_ORDERS):
            cells.append(",".join(stages) + "|" + ",".join(rows[(j + s) % len(rows)]))
    return cells


def order_of_cell(cell: str) -> tuple[list[str], list[str]]:
    """``(the two stages after NoVis, the data sets in order)`` of a cell of `order_cells`."""
    stages, _, datasets = cell.partition("|")
    return stages.split(","), datasets.split(",")


def order_label(cell: str) -> str:
    """``"NoVis → XNN → 1-Heatmap; CUB first"`` (the status page's row)."""
    stages, datasets = order_of_cell(cell)
    return " → ".join([STAGE_NOVIS, *stages]) + "; " + " then ".join(datasets)
