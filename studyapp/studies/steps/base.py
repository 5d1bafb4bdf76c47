"""A step of a participant's plan, one class per kind, in the manner of oTree's page classes.

A participant's plan (``Participant.plan``) is a list of steps, stored as JSON objects with a
``"kind"``. Each kind is a pydantic model (its fields are the step's JSON, read and written as
stored; keys it does not declare are kept) that also owns what the kind does:

- ``browser_state(seen)``: what the browser gets on this step (merged into the participant state);
- ``actions`` and ``submit(flow, action, payload)``: which API actions answer it, how an answer is
  validated and stored, and, for a step already left, its replay rule (a repeat of the request
  that left it is harmless; anything else is refused);
- ``repeated(flow, action, payload)``: what a write refused by a unique constraint means (a
  concurrent repeat of a saved answer, or a second, different one);
- ``codebook_entries(study)``: the export columns its answers fill, with their dictionary entries;
- ``shown_at(times, participant, index)``: when the step was shown, as its answer rows recorded it
  (the exports' feedback time of the step before);
- ``progress_label()``: how the status page names the step.

The kinds are registered by name (`register`; the built-in ones in `registry`), so that a stored
step finds its class (`step_of`). Nothing outside the step classes and their registry switches on
a step's kind: it asks the step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from django.utils.translation import gettext
from pydantic import BaseModel, ConfigDict

from studyapp.studies.errors import InvalidInput, WrongStep

if TYPE_CHECKING:
    from datetime import datetime

    from studyapp.studies.codebook import Column
    from studyapp.studies.models import Arm, Participant, Study

#: ``Seen.answer``: the current trial's answer is not known to the caller and is read.
UNKNOWN: Any = object()


@dataclass
class Seen:
    """What a step's browser state is built from: the run (as read or locked, with its study and
    arm: `versions.study_of`), and the trial answer the caller's write knows (`UNKNOWN`: read it)."""

    participant: Participant
    study: Study
    arm: Arm
    answer: Any = UNKNOWN


@dataclass
class Submitted:
    """What a step's answer left: the run as the write left it, the trial answer the response may
    show (`UNKNOWN`: read it), and what the response adds to the state (e.g. ``saved``)."""

    participant: Participant
    answer: Any = UNKNOWN
    extra: dict = field(default_factory=dict)


@dataclass
class Flow:
    """A write on one run, inside the transaction that locked it (``services.step_submit``): the
    run, the step index the request named, the time, and the writes of the flow that every kind
    shares (given by the services, so that a step never imports them back)."""

    participant: Participant
    step_index: int
    now: datetime
    #: ``advance(answered_trial=None) -> bool``: move the run on in one UPDATE (only if that trial
    #: is answered, when given); whether it moved
    advance: Callable[..., bool]
    #: ``end(status) -> bool``: end the run without completing it (failed checks)
    end: Callable[[str], bool]
    #: ``touch()``: note that the participant was seen (written at most every few seconds)
    touch: Callable[[], None]

    @property
    def is_current(self) -> bool:
        return self.step_index == self.participant.step_index

    @property
    def just_left(self) -> bool:
        """The request names the step the run has just left (a replay of what moved it on)."""
        return self.step_index == self.participant.step_index - 1

    def require_current(self) -> None:
        """``WrongStep`` unless the request names the run's current step."""
        if not self.is_current:
            raise WrongStep(
                gettext("Step %(step)d is not your current step (%(current)d).")
                % {"step": self.step_index, "current": self.participant.step_index},
                participant=self.participant,
            )


class Step(BaseModel):
    """One step of a plan. Subclasses declare ``kind: Literal["<name>"] = "<name>"`` and their fields."""

    model_config = ConfigDict(extra="allow")

    kind: str

    #: the kind's name (set from the ``kind`` field's default)
    KIND: ClassVar[str] = ""
    #: the API actions that answer this step (``continue``, ``answer``, ``questions``, ``grouping``, ``check``)
    actions: ClassVar[tuple[str, ...]] = ()
    #: reaching this step completes the run
    completes_run: ClassVar[bool] = False

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        default = cls.model_fields["kind"].default
        if isinstance(default, str):
            cls.KIND = default

    @classmethod
    def count_in(cls, plan: list[dict]) -> int:
        """How many steps of this kind ``plan`` has."""
        return sum(1 for s in plan if kind_of(s) == cls.KIND)

    @classmethod
    def positions_in(cls, plan: list[dict]) -> list[int]:
        """The indices of the steps of this kind in ``plan``."""
        return [i for i, s in enumerate(plan or []) if kind_of(s) == cls.KIND]

    # -- stored form -------------------------------------------------------------------------
    def dump(self) -> dict:
        """The step as stored: ``kind`` first, then what was set (unset defaults are not written)."""
        return {"kind": self.kind, **self.model_dump(exclude_unset=True, exclude={"kind"})}

    # -- what it does ------------------------------------------------------------------------
    def browser_state(self, seen: Seen) -> dict:
        """What the browser gets on this step, besides the state every step has."""
        return {}

    def submit(self, flow: Flow, action: str, payload: dict) -> Submitted:
        """Validate and store an answer to this step (``flow.step_index`` names it; it may be a
        step already left: the replay rule) and move on. Raises a ``FlowError`` having changed nothing."""
        raise InvalidInput(gettext("This step takes no answers."))

    def repeated(self, flow: Flow, action: str, payload: dict) -> Submitted | None:
        """An answer refused by a unique constraint (the transaction has rolled back): the response
        to a repeat of the saved answer, or a ``FlowError``; None: not a repeat (the error stands)."""
        return None

    def pin_assets(self, study: Study, arm: Arm) -> dict | None:
        """The explanation assets this step will show, fixed at enrolment (stored as ``assets``);
        None: it shows none."""
        return None

    def codebook_entries(self, study: Study) -> dict[str, Column]:
        """The columns this step's answers fill in the exports, with their dictionary entries."""
        return {}

    def shown_at(self, times: ShownTimes, participant: Participant, index: int) -> datetime | None:
        """When this step (at ``index`` of the run's plan) was shown, as its answer rows recorded it."""
        return times.step.get((participant.pk, index))

    def progress_label(self) -> str:
        return self.kind


@dataclass
class ShownTimes:
    """When each answered step was shown, as the answer rows recorded it (read by the exports)."""

    trial: dict = field(default_factory=dict)  # (participant id, trial index) -> shown_at
    step: dict = field(default_factory=dict)  # (participant id, step index) -> shown_at
    question: dict = field(default_factory=dict)  # (participant id, question key) -> shown_at


# -- the kinds by name ---------------------------------------------------------------------------
_KINDS: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    """Make ``cls`` the class of the steps of its kind (a decorator; registering again replaces it)."""
    if not cls.KIND:
        raise TypeError(f"{cls.__name__} declares no kind (kind: Literal['name'] = 'name').")
    _KINDS[cls.KIND] = cls
    return cls


def unregister(kind: str) -> None:
    _KINDS.pop(kind, None)


def kinds() -> dict[str, type[Step]]:
    return dict(_KINDS)


def kind_of(step: object) -> str:
    """The kind's name of a stored step (``""`` for what is not a step)."""
    kind = step.get("kind") if isinstance(step, dict) else None
    return kind if isinstance(kind, str) else ""


def class_of(kind: str) -> type[Step]:
    """The class of the steps of ``kind`` (``KeyError`` naming it when none is registered)."""
    try:
        return _KINDS[kind]
    except KeyError:
        raise KeyError(f"No step kind {kind!r} is registered (studies.steps.registry).") from None


def step_of(step: dict) -> Step:
    """A stored step as its class."""
    return class_of(kind_of(step)).model_validate(step)


def ends_run(step: object) -> bool:
    """Whether a stored step is the end of its plan (a step whose kind completes the run)."""
    cls = _KINDS.get(kind_of(step))
    return cls is not None and cls.completes_run
