"""The step kinds by name, and what is asked of a whole plan.

The built-in kinds are the modules imported below; a new kind is a module of its own with a class
decorated with `register` (or `register(cls)` called once), listed here. Everything outside the
step classes asks a step what it does through this module (`step_of`, `step_at`, `load_plan`,
...) instead of switching on its ``"kind"``.

A plan is stored as JSON (``Participant.plan``), as it always was; `load_plan` reads it as a typed
list (one pydantic model per kind, discriminated on ``kind``) and `dump_plan` writes it back.

Example::

    >>> from studyapp.studies.steps.trial import Trial
    >>> step_of({"kind": "trial", "trial": 0, "stimulus": 7}) == Trial(trial=0, stimulus=7)
    True
    >>> dump_plan([Trial(trial=0, stimulus=7)])
    [{'kind': 'trial', 'trial': 0, 'stimulus': 7}]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from django.utils import timezone
from django.utils.translation import gettext
from pydantic import Field, TypeAdapter

from studyapp.studies import codebook, facts
from studyapp.studies.errors import WrongStep
from studyapp.studies.models import Participant
from studyapp.studies.steps import (
    bias,
    catch,
    decision,
    done,
    grouping,
    hive,
    instructions,
    questions,
    quiz,
    rating,
    simulation,
    trial,
)
from studyapp.studies.steps.base import (
    ShownTimes,
    Step,
    class_of,
    ends_run,
    kind_of,
    kinds,
    step_of,
)
from studyapp.studies.steps.base import register as _register
from studyapp.studies.steps.base import unregister as _unregister

if TYPE_CHECKING:
    from studyapp.studies.codebook import Column
    from studyapp.studies.models import Arm, Study

__all__ = [
    "BUILT_IN", "ShownTimes", "Step", "class_of", "dump_plan", "ends_run", "kind_of", "kinds", "load_plan",
    "pin_assets", "register", "step_at", "step_histogram", "step_of", "study_entries", "trial_step", "unregister", "wrong_step",
]

#: The kinds every study may use, one module each.
BUILT_IN: tuple[type[Step], ...] = (
    instructions.Instructions, quiz.Quiz, trial.Trial, catch.Catch, questions.Questions, rating.Rating,
    grouping.Grouping, done.Done, simulation.SimulationItem, simulation.LearningItem,
    decision.DecisionAlone, decision.DecisionAssisted,
    bias.BiasMark,  # the bias-discovery design (issue 25, protocol 4)
    hive.AgreementItem, hive.DistinctionItem,
)
for _cls in BUILT_IN:
    _register(_cls)

_adapter: tuple[tuple[type[Step], ...], TypeAdapter] | None = None


def register(cls: type[Step]) -> type[Step]:
    """Register a step kind (a decorator): ``cls`` declares ``kind: Literal["name"] = "name"``."""
    global _adapter
    _register(cls)
    _adapter = None
    return cls


def unregister(kind: str) -> None:
    """Forget a registered kind (a test's own, when the test is over)."""
    global _adapter
    _unregister(kind)
    _adapter = None


def _plan_adapter() -> TypeAdapter:
    """The typed plan: a list of steps discriminated on ``kind`` (rebuilt when a kind is registered)."""
    global _adapter
    classes = tuple(kinds().values())
    if _adapter is None or _adapter[0] != classes:
        item: Any = Annotated[Union[classes], Field(discriminator="kind")] if len(classes) > 1 else classes[0]  # noqa: UP007 - a Union of a runtime tuple
        _adapter = (classes, TypeAdapter(list[item]))
    return _adapter[1]


def load_plan(plan: list[dict]) -> list[Step]:
    """A stored plan as its typed steps (``pydantic.ValidationError`` for a step its class refuses)."""
    return _plan_adapter().validate_python(plan)


def dump_plan(steps: list[Step]) -> list[dict]:
    """Typed steps as the plan is stored (the JSON of each step, ``kind`` first)."""
    return [s.dump() for s in steps]


def step_at(plan: list[dict], index: int) -> Step | None:
    """The step at ``index`` of a stored plan, or None outside it."""
    return step_of(plan[index]) if 0 <= index < len(plan or []) else None


def wrong_step(participant: Participant, index: int) -> WrongStep:
    """The refusal of a request that names a step it cannot act on: not the run's current step, or
    a step of another kind than the request's."""
    if index != participant.step_index:
        return WrongStep(
            gettext("Step %(step)d is not your current step (%(current)d).") % {"step": index, "current": participant.step_index},
            participant=participant,
        )
    return WrongStep(gettext("Step %(step)d is a %(kind)s step.") % {"step": index, "kind": kind_of(participant.current_step)},
                     participant=participant)


def trial_step(plan: list[dict], trial_index: int) -> int | None:
    """The index in ``plan`` of the step of trial ``trial_index`` (None if it has none)."""
    return trial.trial_step(plan, trial_index)


def pin_assets(*, study: Study, arm: Arm, plan: list[dict]) -> list[dict]:
    """The plan with the explanation asset each step will show written into it (``"assets"``:
    method -> asset id on a trial; stimulus id -> asset id on a grouping batch), so that what a
    run is shown is fixed at enrolment: a later precompute (other parameters, new assets) does
    not change a run in progress."""
    for stored in plan:
        assets = step_of(stored).pin_assets(study, arm)
        if assets is not None:
            stored["assets"] = assets
    return plan


def study_entries(study: Study) -> dict[str, Column]:
    """What one study adds to the dictionary (`codebook.study_entries`: its arms), and the export
    columns its participants' steps filled, each with its entry (the first plan's wins)."""
    out = codebook.study_entries(study)
    for plan in Participant.objects.filter(study=study).values_list("plan", flat=True).iterator():
        for stored in plan or []:
            for name, column in step_of(stored).codebook_entries(study).items():
                out.setdefault(name, column)
    return out


def step_histogram(*, study: Study) -> list[dict]:
    """How many unfinished runs are at each step (by its progress label), split into active and
    stale (idle too long)."""
    rows: dict[tuple[int, str], dict] = {}
    for step_index, plan, slot in Participant.objects.filter(
        study=study, status=Participant.Status.ACTIVE
    ).annotate(slot=facts.slot_state(study, timezone.now())).values_list("step_index", "plan", "slot"):
        label = step_of(plan[step_index]).progress_label()
        row = rows.setdefault((step_index, label), {"step": step_index + 1, "label": label, "active": 0, "stale": 0})
        row[slot] += 1
    return [rows[k] for k in sorted(rows)]
