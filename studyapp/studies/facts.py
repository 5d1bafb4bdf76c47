"""Facts about a run, defined once (reads only).

The exports (`studyapp.studies.exports`), the analysis frames (`studyapp.analysis.frames`), the
status page (`studyapp.studies.selectors`) and the arm assignment (`studyapp.studies.services`)
all read these; none of them computes its own.

- **Reached the end** (`reached_end`): the run's step is the plan's ``done`` step, i.e. it
  completed, or it was rejected by the researcher after it completed (a rejection keeps the data).
- **Total time** (`total_seconds`): ``finished_at - started_at`` of a run that reached the end,
  blank (None) for any other. A rejection after completing does not change the time the run
  took: whether a rejected run is analysed is the exclusion report's decision, not this fact's.
  A run that ended otherwise (failed checks, timed out, rejected part-way) has no total time.
- **Attention check** (`check_verdicts`, `attention_check`): each catch item is one check (its
  ``passed``). Each comprehension quiz is one check: passed when a try passed; failed when the
  last allowed try failed, or when the run is no longer active without a pass; *not judged*
  while the run is active and has tries left (the participant may still pass). A run's
  ``attention_check`` is True when every judged check passed, False when one failed, None when
  none is judged. The tries allowed are those of the run's own version (`quiz_attempts`).
- **Holding a slot** (`stale_before`, `holding_slot`, `slot_state`): a run holds its arm or
  order-cell slot while it is completed, or active and seen within the study's
  ``dropout_minutes``; an active run idle for longer is *stale* and gives its place back; a run
  that ended otherwise (failed checks, timed out, rejected) holds none; test runs never hold one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import lru_cache

from django.db.models import Case, CharField, Q, Value, When

from studyapp.lib.study_config import StudyConfigError, read_config
from studyapp.studies.models import CheckAnswer, Participant, Study, StudyVersion

Status = Participant.Status


# Reached the end, and the time it took -------------------------------------------------------
def reached_end(status: str, plan, step_index: int) -> bool:
    """Whether the run reached the end of its plan (completed, or rejected there). Every plan ends
    with the one step that completes the run (``designs.flows.draw_plan`` checks it), so a run at
    the plan's last step has reached it."""
    if status == Status.COMPLETED:
        return True
    if status != Status.REJECTED or not isinstance(plan, list) or not plan:
        return False
    return step_index >= len(plan) - 1


def total_seconds(
    *, status: str, plan, step_index: int, started_at: datetime | None, finished_at: datetime | None
) -> float | None:
    """From enrolment to the end of a run that reached it (see the module docstring), else None."""
    if not (started_at and finished_at and reached_end(status, plan, step_index)):
        return None
    return round((finished_at - started_at).total_seconds(), 3)


# Attention checks ----------------------------------------------------------------------------
def _attempts_of(config: dict | None) -> int | None:
    try:
        quiz = read_config(config).comprehension
    except StudyConfigError:
        return None
    return quiz.attempts if quiz is not None else None


def attempts_of_quiz(study: Study, quiz: dict | None) -> int | None:
    """The quiz tries allowed by a version's ``config.comprehension`` (`quiz`, as stored); the
    live study's when the version names no quiz (a run older than versions, or one whose quiz
    was added without a new version)."""
    found = _quiz_attempts(json.dumps(quiz, sort_keys=True)) if quiz else None
    return found if found is not None else _attempts_of(study.config)


@lru_cache(maxsize=64)
def _quiz_attempts(quiz: str) -> int | None:
    """Parsed once per process and quiz (the frames ask once per participant)."""
    return _attempts_of({"comprehension": json.loads(quiz)})


#: The path of a version's quiz from a participant, for ``values_list`` (one JOIN, no extra query).
VERSION_QUIZ = "version__design__config__comprehension"


def quiz_attempts(*, study: Study) -> dict[int | None, int | None]:
    """The quiz tries allowed, by version id (``None``: runs without a version), in one query
    (`attempts_of_quiz` for each)."""
    out: dict[int | None, int | None] = {None: attempts_of_quiz(study, None)}
    for pk, design in StudyVersion.objects.filter(study=study).values_list("pk", "design"):
        out[pk] = attempts_of_quiz(study, ((design or {}).get("config") or {}).get("comprehension"))
    return out


def check_verdicts(
    checks: Iterable[tuple[str, int, int, bool]], *, status: str, attempts: int | None
) -> list[bool]:
    """The judged attention checks of one run, from its ``(kind, step_index, attempt, passed)``
    rows: one per catch item and one per judged quiz (see the module docstring). `attempts` are
    the quiz tries the run's version allows (`attempts_of_quiz`)."""
    verdicts: list[bool] = []
    quizzes: dict[int, list[bool]] = {}
    for kind, step, _, passed in sorted(checks, key=lambda c: (c[1], c[2])):
        if kind == CheckAnswer.Kind.QUIZ:
            quizzes.setdefault(step, []).append(bool(passed))
        else:
            verdicts.append(bool(passed))
    for tries in quizzes.values():
        if any(tries):
            verdicts.append(True)
        elif status != Status.ACTIVE or attempts is None or len(tries) >= attempts:
            verdicts.append(False)
    return verdicts


def quiz_verdict(
    checks: Iterable[tuple[str, int, int, bool]], *, status: str, attempts: int | None
) -> bool | None:
    """Whether the run's quiz passed (None: no quiz, or not judged yet)."""
    quiz = [c for c in checks if c[0] == CheckAnswer.Kind.QUIZ]
    verdicts = check_verdicts(quiz, status=status, attempts=attempts)
    return all(verdicts) if verdicts else None


def attention_check(verdicts: list[bool]) -> bool | None:
    """A run's attention check: every judged check passed (True), one failed (False), none judged (None)."""
    return all(verdicts) if verdicts else None


# Holding a slot ------------------------------------------------------------------------------
def stale_before(study: Study, now: datetime) -> datetime:
    """An active run last seen before this time is stale (it no longer holds its slot)."""
    return now - timedelta(minutes=study.dropout_minutes)


def holding_slot(study: Study, now: datetime, *, prefix: str = "") -> Q:
    """The runs that hold an arm or order-cell slot: completed, or active and not stale; never a
    test run. ``prefix`` is the path to the participant (e.g. ``"participants__"`` from an arm)."""
    active = Q(**{f"{prefix}status": Status.ACTIVE, f"{prefix}last_seen_at__gte": stale_before(study, now)})
    return (Q(**{f"{prefix}status": Status.COMPLETED}) | active) & Q(**{f"{prefix}is_test": False})


def stale(study: Study, now: datetime, *, prefix: str = "") -> Q:
    """Active runs idle for longer than the study's ``dropout_minutes``."""
    return Q(**{f"{prefix}status": Status.ACTIVE, f"{prefix}last_seen_at__lt": stale_before(study, now)})


#: The values of `slot_state`.
SLOT_STATES = ("completed", "active", "stale", "ended")


def slot_state(study: Study, now: datetime) -> Case:
    """A participant's place in the bookkeeping, as a query expression: ``completed``,
    ``active`` (holds its slot), ``stale`` (active but idle too long: gives it back) or
    ``ended`` (failed checks, timed out or rejected). Test runs get their status's state too;
    that they hold no slot is `holding_slot`'s."""
    return Case(
        When(status=Status.COMPLETED, then=Value("completed")),
        When(stale(study, now), then=Value("stale")),
        When(status=Status.ACTIVE, then=Value("active")),
        default=Value("ended"),
        output_field=CharField(),
    )
