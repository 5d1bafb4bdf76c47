"""A learning trial: one image, the answer options (the study's made-up names), then the feedback
of the run's arm. Nothing a trial's state holds reveals its correct label before its answer is saved."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from django.utils.translation import gettext

from studyapp.lib.perf.prepared import insert_one
from studyapp.pipeline.storage import animation_ms
from studyapp.studies import versions
from studyapp.studies.errors import AlreadyAnswered, InvalidInput
from studyapp.studies.models import Study, TrialAnswer
from studyapp.studies.selectors import FEEDBACK_METHOD, stimulus_facts, trial_answer, valid_asset
from studyapp.studies.steps.base import (
    UNKNOWN,
    Flow,
    Seen,
    ShownTimes,
    Step,
    Submitted,
    kind_of,
    kinds,
    register,
)

if TYPE_CHECKING:
    from datetime import datetime

    from studyapp.studies.models import Arm, Participant


@register
class Trial(Step):
    kind: Literal["trial"] = "trial"
    trial: int
    stimulus: int
    #: the explanation asset the trial's feedback shows, pinned at enrolment: method -> asset id
    assets: dict[str, int] | None = None

    actions = ("answer", "continue")

    def answer_facts(self) -> tuple[str, str, bool]:
        """(phase, item kind, whether an explanation went with the answer) for the exports' ``phase``
        and ``item_kind`` columns and their asset columns: a learning trial's answer is followed by
        the arm's feedback."""
        return "learn", "", True

    def browser_state(self, seen: Seen) -> dict:
        p, study = seen.participant, seen.study
        state = {
            "trial": self.trial,
            "n_trials": Trial.count_in(p.plan),
            "stimulus": self.stimulus,
            "image_url": stimulus_facts(study=study, stimulus_id=self.stimulus).image_url,
            "options": answer_options(study),
            "question": study.parsed_config.trial_question or gettext("Which symbol is this?"),
        }
        answer = seen.answer
        if answer is UNKNOWN or (answer is not None and answer.trial_index != self.trial):
            answer = trial_answer(participant_id=p.pk, trial_index=self.trial)
        state["answered"] = answer is not None
        if answer is not None:
            state["feedback"] = trial_feedback(participant=p, answer=answer, pinned=self.assets)
        return state

    def submit(self, flow: Flow, action: str, payload: dict) -> Submitted:
        if action == "continue":
            return self._leave(flow)
        return self._answer(flow, payload)

    def _leave(self, flow: Flow) -> Submitted:
        """Leave the trial's feedback: only if its answer is saved (the update that moves on tests
        that itself); a repeat of the request that left it changes nothing."""
        if flow.just_left:
            return Submitted(flow.participant, answer=UNKNOWN)
        flow.require_current()
        if not flow.advance(answered_trial=self.trial):
            raise InvalidInput(gettext("Answer this trial before moving on."))
        return Submitted(flow.participant, answer=None)

    def _answer(self, flow: Flow, payload: dict) -> Submitted:
        """Save the answer; the feedback (and correct label) is revealed only after this commits.

        An identical repeat of a saved answer returns the saved answer; a different second answer,
        an answer to another step, or a tampered stimulus id is refused and changes nothing. Stored
        exactly once: the participant's lock serialises a run's requests, and the unique constraint
        on (participant, trial) refuses a second row, so an answer to the current trial is inserted
        without looking first (a repeat fails the insert: `repeated`).

        ``choice`` is an option's position in the study's class list (0, 1...; the browser never
        sees a class id, see `answer_options`); the answer stores the class id.
        """
        p = flow.participant
        study = versions.study_of(p)
        class_id = _class_of(study, payload.get("choice"))
        stimulus_id = payload.get("stimulus")
        if not flow.is_current or stimulus_id != self.stimulus:
            existing = trial_answer(participant_id=p.pk, trial_index=self.trial)
            if existing is None:
                flow.require_current()
                raise InvalidInput(gettext("The image does not match the current trial."))
            return _repeated_or_refused(p, existing, stimulus_id=stimulus_id, choice=class_id)
        correct_label = self.correct_label_of(study)
        now = flow.now
        shown_at = p.step_shown_at or now
        answer = insert_one(TrialAnswer(
            participant=p,
            trial_index=self.trial,
            stimulus_id=self.stimulus,
            choice=class_id,
            correct_label=correct_label,
            correct=class_id == correct_label,
            shown_at=shown_at,
            answered_at=now,
            response_ms=max(0, int((now - shown_at).total_seconds() * 1000)),
            client_response_ms=_client_ms(payload.get("client_ms")),
        ))
        flow.touch()
        return _saved(answer)

    def correct_label_of(self, study: Study) -> int:
        """The class counted as correct for this trial's answer, by the study's correct mode (a
        subclass may know better: a simulation's counterfactual item scores against the model's
        answer on its changed input)."""
        stimulus = stimulus_facts(study=study, stimulus_id=self.stimulus)
        return stimulus.model_prediction if study.correct_mode == Study.CorrectMode.PREDICTION else stimulus.true_label

    def repeated(self, flow: Flow, action: str, payload: dict) -> Submitted | None:
        """The trial has an answer already: this repeats it (the saved answer), or is refused."""
        p = flow.participant
        existing = trial_answer(participant_id=p.pk, trial_index=self.trial)
        if existing is None:
            return None
        return _repeated_or_refused(p, existing, stimulus_id=payload.get("stimulus"),
                                    choice=_class_of(versions.study_of(p), payload.get("choice")))

    def pin_assets(self, study: Study, arm: Arm) -> dict | None:
        method = FEEDBACK_METHOD.get(arm.feedback)
        asset = valid_asset(study=study, stimulus_id=self.stimulus, method=method) if method else None
        return {method: asset.pk} if asset is not None and method else None

    def shown_at(self, times: ShownTimes, participant: Participant, index: int) -> datetime | None:
        return times.trial.get((participant.pk, self.trial))

    def progress_label(self) -> str:
        return f"{self.kind} {self.trial + 1}"


class SilentTrial(Trial):
    """A trial whose answer moves the run on in the same request and is never followed by feedback
    (a simulation test item, either half of a decision item): the trial's storage and replay rule,
    and the response is the next step's state."""

    actions = ("answer",)

    def submit(self, flow: Flow, action: str, payload: dict) -> Submitted:
        """Store the answer (the trial's rules: once; an identical repeat is answered with the
        saved answer; anything else refused) and move on; never any feedback."""
        if action != "answer":
            raise InvalidInput(gettext("Answer this item to move on."))
        was_current = flow.is_current
        saved = self._answer(flow, payload)
        if was_current and not flow.advance(answered_trial=self.trial):  # pragma: no cover - the insert above commits first
            raise InvalidInput(gettext("Answer this item before moving on."))
        # ``answer=None``: the response is the next step's state, never this answer's feedback.
        return Submitted(flow.participant, answer=None, extra=saved.extra)

    def repeated(self, flow: Flow, action: str, payload: dict) -> Submitted | None:
        out = super().repeated(flow, action, payload)
        return None if out is None else Submitted(out.participant, answer=None, extra=out.extra)


def trial_step(plan: list[dict], trial: int) -> int | None:
    """The index in ``plan`` of the step of trial ``trial`` (None if it has none): a step of a
    kind whose class is a `Trial` (e.g. the simulation design's test items)."""
    trial_kinds = {name for name, cls in kinds().items() if issubclass(cls, Trial)}
    return next((i for i, s in enumerate(plan or []) if kind_of(s) in trial_kinds and s.get("trial") == trial), None)


def _class_of(study: Study, choice: object) -> int:
    if not isinstance(choice, int) or isinstance(choice, bool) or not 0 <= choice < len(study.classes):
        raise InvalidInput(gettext("Choose one of the answers."))
    return int(study.classes[choice])


def _saved(answer: TrialAnswer) -> Submitted:
    """The response to a saved answer: its feedback, built after the transaction commits."""
    return Submitted(answer.participant, answer=answer,
                     extra={"saved": {"trial": answer.trial_index, "answered_at": answer.answered_at}})


def _repeated_or_refused(p: Participant, existing: TrialAnswer, *, stimulus_id: object, choice: int) -> Submitted:
    """The saved answer if this one repeats it exactly (a double click, a retry), else refused
    (``choice``: the class id the browser's option stands for)."""
    if existing.choice == choice and existing.stimulus_id == stimulus_id:
        existing.participant = p
        return _saved(existing)
    raise AlreadyAnswered(gettext("This trial is already answered."), participant=p)


def _client_ms(value: object) -> int | None:
    """The browser's response time as reported (an int of ms, at most a day), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 86_400_000:
        return value
    return None


# -- the feedback --------------------------------------------------------------------------------
def answer_options(study: Study) -> list[dict]:
    """A trial's answer options as the browser gets them: the made-up name and, as the value, the
    option's position in the study's class list (0, 1, ...), never the data set's class id
    (`Trial.submit` maps the position back; the stored answer has the id). The position is the same
    for every run, so the options' order on the page is the study's."""
    return [{"value": i, "label": n} for i, n in enumerate(study.class_names)]


def option_of(study: Study, class_id: int) -> int | None:
    """The browser's option value (position) of a data-set class id; None for a class outside the study."""
    return study.classes.index(class_id) if class_id in study.classes else None


def _name_of(study: Study, class_id: int) -> str:
    return dict(zip(study.classes, study.class_names, strict=True)).get(class_id, "")


def feedback_assets(*, study: Study, stimulus_id: int, feedback: str, pinned: dict | None = None) -> dict:
    """The files of the explanation a trial's feedback shows: the asset the run's plan pinned
    (``pinned``: method -> asset id), else the newest valid one."""
    method = FEEDBACK_METHOD.get(feedback)
    asset = valid_asset(study=study, stimulus_id=stimulus_id, method=method, pinned=(pinned or {}).get(method)) if method else None
    return dict(asset.urls) if asset else {}


#: The arms whose feedback is a heatmap (its colour scale is shown beside it, with words at both ends).
HEATMAP_FEEDBACK = ("gradcam", "gad")


def legend_url(colormap: str) -> str:
    """The colour scale of ``colormap``, low to high (static/study/legends/, made by explainers.colour)."""
    from django.templatetags.static import static

    return static(f"study/legends/{colormap}.png")


def trial_feedback(*, participant: Participant, answer: TrialAnswer, pinned: dict | None) -> dict:
    study, arm = versions.study_of(participant), versions.arm_of(participant)
    assets = feedback_assets(study=study, stimulus_id=answer.stimulus_id, feedback=arm.feedback, pinned=pinned)
    return {
        "choice": option_of(study, answer.choice),
        "choice_label": _name_of(study, answer.choice),
        "correct": answer.correct,
        "correct_answer": option_of(study, answer.correct_label),
        "correct_label": _name_of(study, answer.correct_label),
        "kind": arm.feedback,
        "assets": assets,
        **({"legend": legend_url(versions.config_of(participant).heatmap_colormap)} if arm.feedback in HEATMAP_FEEDBACK and assets else {}),
        **({"animation_ms": animation_ms(assets.get("gif") or assets.get("webp", ""))} if "gif" in assets or "webp" in assets else {}),
    }
