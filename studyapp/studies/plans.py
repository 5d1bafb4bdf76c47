"""Draw a participant's plan: the ordered list of steps they will go through.

A plan is plain JSON stored on the participant, so the drawn order is kept for analysis and
the server alone decides what comes next.
"""

from __future__ import annotations

import random

from django.utils.translation import gettext, gettext_noop

from studyapp.studies.models import Arm, Study


class PlanError(Exception):
    """The study cannot produce a plan (e.g. not enough servable stimuli)."""


def learning_plan(*, study: Study, arm: Arm, stimulus_ids: list[int], seed: str) -> list[dict]:
    """Consent is taken at enrolment; the plan starts at the instructions page."""
    if len(stimulus_ids) < study.n_trials:
        raise PlanError(
            f"Study '{study.slug}' has {len(stimulus_ids)} servable stimuli but needs {study.n_trials}."
        )
    chosen = list(stimulus_ids[: study.n_trials])
    if study.stimulus_order == Study.StimulusOrder.SEEDED:
        random.Random(f"{study.pk}:{seed}").shuffle(chosen)  # noqa: S311 - seeded for reproducible designs, not secrets
    steps: list[dict] = [{"kind": "instructions"}]
    steps += [{"kind": "trial", "trial": i, "stimulus": sid} for i, sid in enumerate(chosen)]
    steps.append({"kind": "rating", "key": "feedback_rating"})
    steps.append({"kind": "done"})
    spare = list(stimulus_ids[study.n_trials:]) or chosen
    return with_checks(study, steps, counted="trial", images=spare)


def trial_step(plan: list[dict], trial: int) -> int | None:
    """The index in ``plan`` of the step of trial ``trial`` (None if it has none)."""
    return next((i for i, s in enumerate(plan or []) if s.get("kind") == "trial" and s.get("trial") == trial), None)


def with_checks(study: Study, steps: list[dict], *, counted: str, images: list[int] | None = None) -> list[dict]:
    """``steps`` with the study's checks put in: the comprehension quiz right after the
    instructions (``config.comprehension``), and each catch item (``config.catch_trials``) after
    its ``after``-th step of kind ``counted`` (a trial, or a grouping batch with the question
    that follows it), the same positions for every arm. A catch item without options shows an
    image: one of ``images`` (the stimuli not used as trials, else the trials'), in turn."""
    config = study.parsed_config
    out: list[dict] = []
    catches = sorted(enumerate(config.catch_trials), key=lambda item: item[1].after)
    seen, pending = 0, list(catches)
    images = list(images or [])

    def catch_step(number: int, item) -> dict:
        step: dict = {"kind": "catch", "catch": number}
        if item.options is None and images:
            step["stimulus"] = images[number % len(images)]
        return step

    def flush(upto: float) -> None:
        while pending and pending[0][1].after <= upto:
            out.append(catch_step(*pending.pop(0)))

    for i, step in enumerate(steps):
        if step["kind"] in ("rating", "done") or step.get("key") == "final":
            flush(float("inf"))  # an item after more steps than there are: before the last questions
        elif step["kind"] == counted:
            flush(seen)
        out.append(step)
        if step["kind"] == "instructions" and config.comprehension is not None:
            out.append({"kind": "quiz"})
        if step["kind"] == counted:
            seen += 1
        # A batch's confidence question belongs to it: an item comes after the question.
        nxt = steps[i + 1] if i + 1 < len(steps) else {}
        if not (step["kind"] == counted == "grouping" and nxt.get("kind") == "questions"):
            flush(seen)
    return out


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


def clustering_plan(
    *,
    study: Study,
    sets: dict[str, dict[int, list[int]]],
    seed: str,
    order: str | None = None,
    n_classes: dict[str, int] | None = None,
) -> list[dict]:
    """Demographics, then three stages of two batches each, a confidence question after each
    batch, and the final questions.

    - NoVis first; the order of XNN and 1-Heatmap and the order of the data sets are the
      counterbalancing cell ``order`` (see `order_cells`; the caller picks the least filled one),
      drawn at random when None.
    - The data sets alternate in that order in every stage (e.g. NoVis-CEL, NoVis-CUB, XNN-CEL,
      XNN-CUB, 1-Heatmap-CEL, 1-Heatmap-CUB).
    - ``sets`` are the pre-drawn sets per data set (5 of 10 images each in the paper). Each
      batch is a set picked at random; a participant never gets the same set twice within a data
      set while there are enough sets (the paper does not say; re-showing images would confound
      the later stages).
    - Each grouping step carries its group rule, ``{"rule": "exactly" | "at_most" | "free", "n": k}``:
      ``config.n_groups``, else the data set's number of classes (``n_classes``), at most the
      batch size and ``config.max_groups``; for "free" (the published design: the number is not
      told) ``n`` is the most the board allows (the batch size, at most ``max_groups``).
    - Confidence is asked after each batch, key ``confidence:<stage>:<dataset>`` (Figure 5a-b
      shows it per data set; the paper asked it per stage).
    """
    rng = random.Random(f"{study.pk}:clustering:{seed}")  # noqa: S311 - seeded for reproducible designs, not secrets
    config = study.parsed_config
    missing = [d for d in config.datasets if len(sets.get(d, {})) == 0]
    if missing:
        raise PlanError(f"Study '{study.slug}' has no servable image sets for {', '.join(missing)}.")
    cells = order_cells(config.datasets)
    if order is None:
        order = rng.choice(cells)
    elif order not in cells:
        raise PlanError(f"Study '{study.slug}' has no order cell {order!r}.")
    later, datasets = order_of_cell(order)
    stages = [STAGE_NOVIS, *later]
    remaining = {d: rng.sample(sorted(sets[d]), len(sets[d])) for d in datasets}
    steps: list[dict] = [
        {"kind": "instructions", "order": order},
        {"kind": "questions", "key": "demographics", "title": gettext("About you"), "questions": demographic_questions(study)},
    ]
    for stage in stages:
        for dataset in datasets:
            pool = remaining[dataset] or rng.sample(sorted(sets[dataset]), len(sets[dataset]))
            set_index = pool.pop()
            remaining[dataset] = pool
            stimuli = list(sets[dataset][set_index])
            if config.group_rule == "free":  # the number is not told: 1 .. as many as the board allows
                k = min(len(stimuli), config.max_groups)
            else:
                k = config.n_groups or (n_classes or {}).get(dataset) or 4
                k = max(1, min(k, len(stimuli), config.max_groups))
            steps.append({"kind": "grouping", "stage": stage, "dataset": dataset, "set_index": set_index,
                          "stimuli": stimuli, "groups": {"rule": config.group_rule, "n": k}})
            key = f"confidence:{stage}:{dataset}"
            steps.append({"kind": "questions", "key": key, "title": gettext("Your confidence"),
                          "questions": [{"key": key, "type": "scale",
                                         "label": gettext(CONFIDENCE_QUESTION),
                                         "options": [gettext(t) for t in CONFIDENCE_SCALE], "first_value": 0}]})
    steps.append({"kind": "questions", "key": "final", "title": gettext("Last questions"), "questions": [
        agent_rating_question(STAGE_HEATMAP), agent_rating_question(STAGE_XNN),
        {"key": "difficulty", "type": "scale", "label": gettext("How difficult was the task? (0 = very easy, 7 = very hard)"),
         "options": [str(i) for i in range(8)], "first_value": 0},
        {"key": "comments", "type": "text", "label": gettext("Any comments? (optional)"), "optional": True},
    ]})
    steps.append({"kind": "done"})
    return with_checks(study, steps, counted="grouping")
