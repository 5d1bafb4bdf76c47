"""The forward-simulation design (Hase & Bansal, ACL 2020; Colin et al., NeurIPS 2022): a pre-test
(predict the model's answer, no explanation), a learning phase (the image, the model's answer and
the arm's explanation), a post-test on other images, then a rating of what was shown while learning; between subjects
(one arm per run).

``Study.n_trials`` is the number of test items per phase (n); the learning phase has as many items
(m = n). The test items are drawn balanced on model correctness (half on which the model is right,
half wrong, as far as the study's stimuli allow: the shortfall is taken from the other kind) and
never overlap the learning items; pre and post test items are different images. Test items are
trials ``0 .. n-1`` (pre) and ``n .. 2n-1`` (post) of the run's answers.
"""

from __future__ import annotations

import random

from stats.analyse import LEARNING
from studyapp.studies.designs.base import Design, with_checks
from studyapp.studies.models import Arm, Study
from studyapp.studies.plans import PlanError
from studyapp.studies.steps.base import Step
from studyapp.studies.steps.done import Done
from studyapp.studies.steps.instructions import Instructions
from studyapp.studies.steps.rating import Rating
from studyapp.studies.steps.simulation import LearningItem, SimulationItem


def balanced(right: list[int], wrong: list[int], n: int) -> list[int]:
    """``n`` ids, half from ``wrong`` (the model's errors, rounded down) and the rest from
    ``right``; where one kind runs short the other makes up the number. Takes them from the lists."""
    n_wrong = min(n // 2, len(wrong))
    n_right = min(n - n_wrong, len(right))
    n_wrong = min(n - n_right, len(wrong))
    chosen = [wrong.pop(0) for _ in range(n_wrong)] + [right.pop(0) for _ in range(n_right)]
    return chosen


def simulation_plan(*, study: Study, arm: Arm, stimuli: list[tuple[int, bool]], seed: str) -> list[Step]:
    """``stimuli``: (id, model correct) of the servable stimuli, in order. Every run gets the same
    items (the design's test sets are fixed, so arms compare on the same images); their order
    within each phase is shuffled per run when the study's order is seeded."""
    n = study.n_trials
    if len(stimuli) < 3 * n:
        raise PlanError(f"Study '{study.slug}' has {len(stimuli)} servable stimuli but the simulation design needs {3 * n} (n = {n} pre, learning and post items).")
    right = [pk for pk, ok in stimuli if ok]
    wrong = [pk for pk, ok in stimuli if not ok]
    pre, post = balanced(right, wrong, n), balanced(right, wrong, n)
    learn = (wrong + right)[:n]
    random.Random(f"{study.pk}:learn").shuffle(learn)  # noqa: S311 - a fixed mix of right and wrong, not secrets
    if study.stimulus_order == Study.StimulusOrder.SEEDED:
        rng = random.Random(f"{study.pk}:{seed}")  # noqa: S311 - seeded for reproducible designs, not secrets
        for phase in (pre, learn, post):
            rng.shuffle(phase)
    units: list[list[Step]] = [[SimulationItem(trial=i, stimulus=sid, phase="pre")] for i, sid in enumerate(pre)]
    units += [[LearningItem(item=i, stimulus=sid)] for i, sid in enumerate(learn)]
    units += [[SimulationItem(trial=n + i, stimulus=sid, phase="post")] for i, sid in enumerate(post)]
    used = set(pre) | set(post) | set(learn)
    spare = [pk for pk, _ in stimuli if pk not in used] or pre
    return with_checks(study, intro=[Instructions()], units=units, closing=[Rating(key="feedback_rating"), Done()], images=spare)


def _draw(*, study: Study, arm: Arm, seed: str, order: str | None = None) -> list[Step]:
    from studyapp.studies.selectors import servable_stimuli

    rows = servable_stimuli(study=study).values_list("pk", "model_prediction", "true_label")
    return simulation_plan(study=study, arm=arm, stimuli=[(pk, pred == true) for pk, pred, true in rows], seed=seed)


DESIGN = Design(name=Study.Design.SIMULATION, steps=(Instructions, SimulationItem, LearningItem, Rating, Done), analysis=LEARNING, draw=_draw)
