"""A design: a composition of step classes, a way to draw a participant's plan from them, and the
analysis of its results (`stats.analyse`'s design)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from studyapp.studies.models import Study
from studyapp.studies.steps.base import Step
from studyapp.studies.steps.catch import Catch
from studyapp.studies.steps.quiz import Quiz


@dataclass(frozen=True)
class Design:
    #: ``Study.design``
    name: str
    #: the step classes its plans are made of, in their order (checks are put in by `with_checks`)
    steps: tuple[type[Step], ...]
    #: the design `stats.analyse` runs on its results
    analysis: str
    #: ``draw(study=, arm=, seed=, order=) -> list[Step]``: a new participant's plan
    draw: Callable[..., list[Step]]


def with_checks(
    study: Study, *, intro: list[Step], units: list[list[Step]], closing: list[Step], images: list[int] | None = None
) -> list[Step]:
    """The plan ``intro + units + closing`` with the study's checks put in: the comprehension quiz
    right after the instructions (``intro[0]``; ``config.comprehension``), and each catch item
    (``config.catch_trials``) after its ``after``-th unit (a trial, or a grouping batch with the
    question that follows it), the same positions for every arm; an item after more units than
    there are comes before the closing steps. A catch item without options shows an image: one of
    ``images`` (the stimuli not used as trials, else the trials'), in turn."""
    config = study.parsed_config
    pending = sorted(enumerate(config.catch_trials), key=lambda item: item[1].after)
    images = list(images or [])
    out: list[Step] = []

    def flush(upto: float) -> None:
        while pending and pending[0][1].after <= upto:
            number, item = pending.pop(0)
            step = Catch(catch=number, stimulus=images[number % len(images)]) if item.options is None and images else Catch(catch=number)
            out.append(step)

    out.append(intro[0])
    if config.comprehension is not None:
        out.append(Quiz())
    flush(0)
    out.extend(intro[1:])
    for seen, unit in enumerate(units, start=1):
        out.extend(unit)
        flush(seen)
    flush(float("inf"))
    out.extend(closing)
    return out


