"""The learning design (the CDeepEx dissertation's chapter 5): instructions, the trials with the
arm's feedback, the feedback rating; between subjects (one arm per run)."""

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
from studyapp.studies.steps.trial import Trial


def learning_plan(*, study: Study, arm: Arm, stimulus_ids: list[int], seed: str) -> list[Step]:
    """Consent is taken at enrolment; the plan starts at the instructions page. The first
    ``n_trials`` servable stimuli, shuffled per run when the study's order is seeded."""
    if len(stimulus_ids) < study.n_trials:
        raise PlanError(
            f"Study '{study.slug}' has {len(stimulus_ids)} servable stimuli but needs {study.n_trials}."
        )
    chosen = list(stimulus_ids[: study.n_trials])
    if study.stimulus_order == Study.StimulusOrder.SEEDED:
        random.Random(f"{study.pk}:{seed}").shuffle(chosen)  # noqa: S311 - seeded for reproducible designs, not secrets
    spare = list(stimulus_ids[study.n_trials:]) or chosen
    return with_checks(
        study,
        intro=[Instructions()],
        units=[[Trial(trial=i, stimulus=sid)] for i, sid in enumerate(chosen)],
        closing=[Rating(key="feedback_rating"), Done()],
        images=spare,
    )


def _draw(*, study: Study, arm: Arm, seed: str, order: str | None = None) -> list[Step]:
    from studyapp.studies.selectors import servable_stimuli

    ids = list(servable_stimuli(study=study).values_list("pk", flat=True))
    return learning_plan(study=study, arm=arm, stimulus_ids=ids, seed=seed)


DESIGN = Design(name=Study.Design.LEARNING, steps=(Instructions, Trial, Rating, Done), analysis=LEARNING, draw=_draw)
