"""Reads that cross relations: participant state, readiness, fill, exports."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Exists, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from studyapp.pipeline.models import ExplanationAsset, Stimulus
from studyapp.studies import plans
from studyapp.studies.errors import InvalidInput
from studyapp.studies.models import Arm, Participant, Study

# The explanation method each feedback kind needs precomputed (None: nothing to precompute).
FEEDBACK_METHOD = {
    Arm.Feedback.CONTROL: None,
    Arm.Feedback.GRADCAM: ExplanationAsset.Method.GRADCAM,
    Arm.Feedback.CDEEPEX: ExplanationAsset.Method.CDEEPEX,
    Arm.Feedback.XGEMS: ExplanationAsset.Method.XGEMS,
    Arm.Feedback.WITHIN: None,
}


def media_url(path: str) -> str:
    return reverse("media", kwargs={"path": path})


def study_methods(*, study: Study) -> list[str]:
    methods = {FEEDBACK_METHOD[a.feedback] for a in study.arms.all()}
    return sorted(m for m in methods if m)


def servable_stimuli(*, study: Study):
    """Stimuli with a valid explanation for every method the study's arms show, in order."""
    qs = Stimulus.objects.filter(study=study)
    for method in study_methods(study=study):
        qs = qs.filter(
            Exists(ExplanationAsset.objects.filter(stimulus=OuterRef("pk"), method=method, valid=True))
        )
    return qs.order_by("position")


def study_plan(*, study: Study, arm: Arm, seed: str) -> list[dict]:
    ids = list(servable_stimuli(study=study).values_list("pk", flat=True))
    return plans.learning_plan(study=study, arm=arm, stimulus_ids=ids, seed=seed)


def study_readiness(*, study: Study) -> list[str]:
    """What stops the study from opening, in words a researcher can act on. Empty when ready."""
    problems = []
    arms = list(study.arms.all())
    if not arms:
        problems.append("it has no arms")
    if len(study.classes) != 2 or len(study.class_names) != 2:
        problems.append("a learning study needs exactly two classes and two made-up names")
    if not study.rating_scale:
        problems.append("the rating scale is empty")
    total = Stimulus.objects.filter(study=study).count()
    servable = servable_stimuli(study=study).count()
    if servable < study.n_trials:
        problems.append(
            f"{servable} of {total} stimuli have valid explanations for every arm "
            f"({', '.join(study_methods(study=study)) or 'none needed'}); {study.n_trials} trials need {study.n_trials}"
        )
    return problems


def arm_fill(*, study: Study) -> list[dict]:
    stale_before = timezone.now() - timedelta(minutes=study.dropout_minutes)
    rows = study.arms.annotate(
        completed=Count("participants", filter=Q(participants__status=Participant.Status.COMPLETED)),
        active=Count(
            "participants",
            filter=Q(participants__status=Participant.Status.ACTIVE, participants__last_seen_at__gte=stale_before),
        ),
        stale=Count(
            "participants",
            filter=Q(participants__status=Participant.Status.ACTIVE, participants__last_seen_at__lt=stale_before),
        ),
    )
    return [
        {"arm": a.name, "feedback": a.feedback, "cap": a.cap, "completed": a.completed, "active": a.active, "stale": a.stale}
        for a in rows
    ]


# ---------------------------------------------------------------------------------------------
# What the participant's browser gets. Nothing here may reveal a trial's correct label before
# that trial's answer is saved.
# ---------------------------------------------------------------------------------------------
def _options(study: Study) -> list[dict]:
    return [{"value": c, "label": n} for c, n in zip(study.classes, study.class_names, strict=True)]


def _name_of(study: Study, class_id: int) -> str:
    return dict(zip(study.classes, study.class_names, strict=True)).get(class_id, str(class_id))


def feedback_assets(*, stimulus_id: int, feedback: str) -> dict:
    method = FEEDBACK_METHOD.get(feedback)
    if method is None:
        return {}
    asset = (
        ExplanationAsset.objects.filter(stimulus_id=stimulus_id, method=method, valid=True)
        .order_by("-created_at")
        .first()
    )
    if asset is None:
        return {}
    return {role: media_url(path) for role, path in asset.files.items()}


def participant_state(*, participant: Participant) -> dict:
    p = participant
    study = p.study
    step = p.current_step
    n_trials = sum(1 for s in p.plan if s["kind"] == "trial")
    state: dict = {
        "study": study.slug,
        "participant": p.code,
        "step": p.step_index,
        "n_steps": len(p.plan),
        "kind": step["kind"],
    }
    if step["kind"] == "instructions":
        state.update(
            cover_story=study.cover_story,
            instructions=_instructions(study, p.arm),
            arm_instruction=p.arm.instruction,
            n_trials=n_trials,
        )
    elif step["kind"] == "trial":
        stimulus = Stimulus.objects.only("image").get(pk=step["stimulus"])
        state.update(
            trial=step["trial"],
            n_trials=n_trials,
            stimulus=step["stimulus"],
            image_url=media_url(stimulus.image),
            options=_options(study),
            question="Which symbol is this?",
        )
        answer = p.answers.filter(trial_index=step["trial"]).first()
        state["answered"] = answer is not None
        if answer is not None:
            state["feedback"] = trial_feedback(participant=p, answer=answer)
    elif step["kind"] == "rating":
        state.update(
            key=step["key"],
            question=study.rating_question,
            scale=[{"value": i + 1, "label": label} for i, label in enumerate(study.rating_scale)],
        )
    elif step["kind"] == "done":
        state.update(
            completion_text=study.completion_text,
            completion_code=p.completion_code,
            redirect_url=_redirect(study, p),
        )
    return state


def _instructions(study: Study, arm: Arm) -> list[str]:
    """The numbered steps; the arm's bullet is shown separately, as in the dissertation."""
    return list(study.instructions)


def _redirect(study: Study, p: Participant) -> str:
    url = study.completion_redirect_url
    if url and "{code}" in url:
        url = url.replace("{code}", p.completion_code)
    return url


def trial_feedback(*, participant: Participant, answer) -> dict:
    study = participant.study
    return {
        "choice": answer.choice,
        "choice_label": _name_of(study, answer.choice),
        "correct": answer.correct,
        "correct_answer": answer.correct_label,
        "correct_label": _name_of(study, answer.correct_label),
        "kind": participant.arm.feedback,
        "assets": feedback_assets(stimulus_id=answer.stimulus_id, feedback=participant.arm.feedback),
    }


def validate_questions(*, study: Study, step: dict, answers: object) -> dict:
    if not isinstance(answers, dict):
        raise InvalidInput("Answers must be an object of question -> value.")
    if step["kind"] == "rating":
        value = answers.get(step["key"])
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= len(study.rating_scale):
            raise InvalidInput(f"Pick one of the {len(study.rating_scale)} options.")
        if set(answers) != {step["key"]}:
            raise InvalidInput("Unexpected question in the answers.")
        return {step["key"]: value}
    raise InvalidInput("This step takes no answers.")
