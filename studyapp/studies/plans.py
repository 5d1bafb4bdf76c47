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
