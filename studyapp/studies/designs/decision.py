"""The AI-assisted decision design (Nguyen et al., NeurIPS 2021; Schemmer et al., IUI 2023): per
item the participant answers alone, then sees the model's answer with the arm's explanation and
answers again; then a rating of what was shown; between subjects (one arm per run).

``Study.n_trials`` is the number of items (n). The items are drawn balanced on model correctness
as the simulation design draws its test items (`designs.simulation.balanced`: half on which the
model is wrong, as far as the study's stimuli allow), the same items for every run so that arms
compare on the same images; their order is shuffled per run when the study's order is seeded.
Item k's answers are trials ``2k`` (alone) and ``2k + 1`` (final), `steps.decision.trial_of`.
"""

from __future__ import annotations

import random

from stats.analyse import LEARNING
from studyapp.studies.designs.base import Design, with_checks
from studyapp.studies.designs.simulation import balanced
from studyapp.studies.models import Arm, Study
from studyapp.studies.plans import PlanError
from studyapp.studies.steps.base import Step
from studyapp.studies.steps.decision import (
    ALONE,
    ASSISTED,
    DecisionAlone,
    DecisionAssisted,
    trial_of,
)
from studyapp.studies.steps.done import Done
from studyapp.studies.steps.instructions import Instructions
from studyapp.studies.steps.rating import Rating


def decision_plan(*, study: Study, arm: Arm, stimuli: list[tuple[int, bool]], seed: str) -> list[Step]:
    """``stimuli``: (id, model correct) of the servable stimuli, in order."""
    n = study.n_trials
    if len(stimuli) < n:
        raise PlanError(f"Study '{study.slug}' has {len(stimuli)} servable stimuli but the decision design needs {n} items.")
    right = [pk for pk, ok in stimuli if ok]
    wrong = [pk for pk, ok in stimuli if not ok]
    items = balanced(right, wrong, n)
    random.Random(f"{study.pk}:items").shuffle(items)  # noqa: S311 - mixes right and wrong items, not secrets
    if study.stimulus_order == Study.StimulusOrder.SEEDED:
        random.Random(f"{study.pk}:{seed}").shuffle(items)  # noqa: S311 - seeded for reproducible designs, not secrets
    units: list[list[Step]] = [
        [DecisionAlone(trial=trial_of(k, ALONE), item=k, stimulus=sid), DecisionAssisted(trial=trial_of(k, ASSISTED), item=k, stimulus=sid)]
        for k, sid in enumerate(items)
    ]
    spare = [pk for pk, _ in stimuli if pk not in set(items)] or items
    return with_checks(study, intro=[Instructions()], units=units, closing=[Rating(key="feedback_rating"), Done()], images=spare)


def _draw(*, study: Study, arm: Arm, seed: str, order: str | None = None) -> list[Step]:
    from studyapp.studies.selectors import servable_stimuli

    rows = servable_stimuli(study=study).values_list("pk", "model_prediction", "true_label")
    return decision_plan(study=study, arm=arm, stimuli=[(pk, pred == true) for pk, pred, true in rows], seed=seed)


# ``analysis``: the generic page reads its answers as learning trials (accuracy per arm over both
# halves); the protocol's own analysis is the section of studyapp.analysis.decision.
DESIGN = Design(name=Study.Design.DECISION, steps=(Instructions, DecisionAlone, DecisionAssisted, Rating, Done), analysis=LEARNING, draw=_draw)
