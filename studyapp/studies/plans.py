"""Draw a participant's plan: the ordered list of steps they will go through.

A plan is plain JSON stored on the participant, so the drawn order is kept for analysis and
the server alone decides what comes next.
"""

from __future__ import annotations

import random

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
        random.Random(f"{study.pk}:{seed}").shuffle(chosen)
    steps: list[dict] = [{"kind": "instructions"}]
    steps += [{"kind": "trial", "trial": i, "stimulus": sid} for i, sid in enumerate(chosen)]
    steps.append({"kind": "rating", "key": "feedback_rating"})
    steps.append({"kind": "done"})
    return steps


# ---------------------------------------------------------------------------------------------
# Clustering design (XNN paper, section 4.1)
# ---------------------------------------------------------------------------------------------
CONFIDENCE_SCALE = ["Zero", "Very Low", "Low", "Mediocre", "High", "Very High", "100%"]
AGENT_SCALE = ["Very Poor", "Poor", "Slightly Poor", "Neutral or N/A", "Slightly Good", "Good", "Very Good"]
DEFAULT_DEMOGRAPHICS = [
    {"key": "age_band", "type": "choice", "label": "Your age", "options": ["18-24", "25-34", "35-44", "45-54", "55-64", "65+", "Prefer not to say"]},
    {"key": "gender", "type": "choice", "label": "Your gender", "options": ["Female", "Male", "Non-binary", "Prefer to self-describe", "Prefer not to say"]},
    {"key": "cs_courses", "type": "choice", "label": "How many Computer Science courses have you taken?", "options": ["0", "1-2", "3-5", "6 or more"]},
    {"key": "ai_courses", "type": "choice", "label": "How many Artificial Intelligence or Machine Learning courses have you taken?", "options": ["0", "1-2", "3-5", "6 or more"]},
]
STAGE_NOVIS, STAGE_HEATMAP, STAGE_XNN = "NoVis", "1-Heatmap", "XNN"


def clustering_plan(*, study: Study, sets: dict[str, dict[int, list[int]]], seed: str) -> list[dict]:
    """Demographics, then three stages of two batches each, a confidence question after each stage,
    and the final questions.

    - NoVis first; XNN and 1-Heatmap in random order.
    - The first data set is random; the data sets then alternate (e.g. NoVis-CEL, NoVis-CUB,
      XNN-CEL, XNN-CUB, 1-Heatmap-CEL, 1-Heatmap-CUB).
    - ``sets`` are the pre-drawn sets per data set (5 of 10 images each in the paper). Each
      batch is a set picked at random; a participant never gets the same set twice within a data
      set while there are enough sets (the paper does not say; re-showing images would confound
      the later stages).
    """
    rng = random.Random(f"{study.pk}:clustering:{seed}")
    config = study.parsed_config
    datasets = list(config.datasets)
    missing = [d for d in datasets if len(sets.get(d, {})) == 0]
    if missing:
        raise PlanError(f"Study '{study.slug}' has no servable image sets for {', '.join(missing)}.")
    rng.shuffle(datasets)
    later = [STAGE_XNN, STAGE_HEATMAP]
    rng.shuffle(later)
    stages = [STAGE_NOVIS, *later]
    remaining = {d: rng.sample(sorted(sets[d]), len(sets[d])) for d in datasets}
    steps: list[dict] = [
        {"kind": "instructions"},
        {"kind": "questions", "key": "demographics", "title": "About you",
         "questions": config.demographics or DEFAULT_DEMOGRAPHICS},
    ]
    for stage in stages:
        for dataset in datasets:
            pool = remaining[dataset] or rng.sample(sorted(sets[dataset]), len(sets[dataset]))
            set_index = pool.pop()
            remaining[dataset] = pool
            steps.append({"kind": "grouping", "stage": stage, "dataset": dataset, "set_index": set_index,
                          "stimuli": list(sets[dataset][set_index])})
        steps.append({"kind": "questions", "key": f"confidence:{stage}", "title": "Your confidence",
                      "questions": [{"key": f"confidence:{stage}", "type": "scale",
                                     "label": "How confident are you in the groups you made in this part?",
                                     "options": CONFIDENCE_SCALE, "first_value": 0}]})
    steps.append({"kind": "questions", "key": "final", "title": "Last questions", "questions": [
        {"key": f"agent_rating:{STAGE_HEATMAP}", "type": "scale", "label": "How would you rate the AI agent that showed one heatmap per image?",
         "options": AGENT_SCALE, "first_value": 1},
        {"key": f"agent_rating:{STAGE_XNN}", "type": "scale", "label": "How would you rate the AI agent that showed several heatmaps per image?",
         "options": AGENT_SCALE, "first_value": 1},
        {"key": "difficulty", "type": "scale", "label": "How difficult was the task? (0 = very easy, 7 = very hard)",
         "options": [str(i) for i in range(8)], "first_value": 0},
        {"key": "comments", "type": "text", "label": "Any comments? (optional)", "optional": True},
    ]})
    steps.append({"kind": "done"})
    return steps
