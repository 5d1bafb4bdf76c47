"""What the participant's browser gets: the participant state, a batch's grouping state, feedback.

The server is the source of truth for where a participant is: every API response, an error's
included, carries ``participant_state`` (the API's exception handler builds it for the errors).
Nothing here may reveal a trial's correct label before that trial's answer is saved, nor a
grouping image's class.
"""

from __future__ import annotations

import random

from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from studyapp.pipeline.models import ExplanationAsset
from studyapp.pipeline.storage import animation_ms
from studyapp.studies import endings, plans, validation
from studyapp.studies.models import Arm, Participant, Study, TrialAnswer
from studyapp.studies.selectors import (
    FEEDBACK_METHOD,
    heatmap_method,
    stimulus_facts,
    trial_answer,
    valid_asset,
)
from studyapp.studies.validation import group_rule, group_rule_text
from studyapp.studies.versions import arm_of, config_of, study_of


def answer_options(study: Study) -> list[dict]:
    """A trial's answer options as the browser gets them: the made-up name and, as the value, the
    option's position in the study's class list (0, 1, ...), never the data set's class id
    (``services.trial_submit_answer`` maps the position back; the stored answer has the id).
    The position is the same for every run, so the options' order on the page is the study's."""
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


#: ``participant_state(answer=UNKNOWN)``: the current trial's answer is read from the database.
UNKNOWN = object()


def participant_state(*, participant: Participant, answer: TrialAnswer | None | object = UNKNOWN) -> dict:
    """The state of ``participant`` (as read or locked, with its study and arm).

    ``answer``: the current trial's saved answer when the caller's write knows it (the answer it
    has just saved, or ``None`` for a step just moved onto); otherwise it is read.
    """
    p = participant
    study, arm = study_of(p), arm_of(p)
    step = p.current_step
    n_trials = sum(1 for s in p.plan if s["kind"] == "trial")
    state: dict = {
        "study": study.public_code,
        "participant": p.code,
        "step": p.step_index,
        "n_steps": len(p.plan),
        "kind": step["kind"],
        "design": study.design,
        "progress": {"done": p.step_index, "total": len(p.plan) - 1},
    }
    if p.is_test:
        state["test_run"] = True
    if p.status in Participant.ENDED:
        return {**state, **ended_state(p)}
    if p.status == Participant.Status.ACTIVE and step["kind"] != "done":
        limit = endings.deadline(p)
        if limit is not None:
            state["time_limit"] = {
                "deadline": limit[0].isoformat(), "scope": limit[1],
                "seconds_left": max(0, round((limit[0] - timezone.now()).total_seconds())),
                "warn_seconds": config_of(p).time_limits.warn_seconds,  # type: ignore[union-attr]
                # WCAG 2.2.1: the warning offers more time while the limit allows another extension.
                "extensions_left": endings.extensions_left(p, limit[1]),
            }
    if step["kind"] == "instructions":
        state.update(
            cover_story=study.cover_story,
            instructions=_instructions(study, arm),
            # A within-subject study's one "arm" describes the design (stages, counterbalancing):
            # only a learning study's arm bullet is for participants.
            arm_instruction=arm.instruction if study.design == Study.Design.LEARNING else "",
            n_trials=n_trials,
        )
    elif step["kind"] == "trial":
        state.update(
            trial=step["trial"],
            n_trials=n_trials,
            stimulus=step["stimulus"],
            image_url=stimulus_facts(study=study, stimulus_id=step["stimulus"]).image_url,
            options=answer_options(study),
            question=study.parsed_config.trial_question or gettext("Which symbol is this?"),
        )
        if answer is UNKNOWN or (answer is not None and answer.trial_index != step["trial"]):
            answer = trial_answer(participant_id=p.pk, trial_index=step["trial"])
        state["answered"] = answer is not None
        if answer is not None:
            state["feedback"] = trial_feedback(participant=p, answer=answer)
    elif step["kind"] == "quiz":
        state.update(quiz_state(p, study))
    elif step["kind"] == "catch":
        state.update(catch_state(p, study, step))
    elif step["kind"] == "questions":
        state.update(key="questions", title=step.get("title", ""), questions=browser_questions(step["questions"]))
    elif step["kind"] == "grouping":
        state.update(grouping_state(participant=p, step=step))
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
            exit=endings.exit_info(study, "completed", code=p.completion_code),
        )
    return state


def browser_questions(questions: list[dict]) -> list[dict]:
    """A questions step as the browser gets it: each question's key is its position (``q0``,
    ``q1``...), since the stored keys name the design (``confidence:XNN:CUB`` names a stage and a
    data set); ``validation.validate_questions`` maps the positions back."""
    return [{**q, "key": validation.browser_key(i)} for i, q in enumerate(questions)]


def ended_state(p: Participant) -> dict:
    """A run that ended without completing: the exit of its outcome (a rejected run is told
    only that it has ended)."""
    study = study_of(p)
    if p.status == Participant.Status.REJECTED:
        return {"kind": "exit", "exit": {"outcome": "ended", "code": "", "redirect_url": "", "text": ""}}
    outcome = {Participant.Status.FAILED_CHECKS: "failed_checks", Participant.Status.TIMED_OUT: "timed_out"}[p.status]
    return {"kind": "exit", "exit": endings.exit_info(study, outcome, code=p.completion_code)}


def exit_state(study: Study, outcome: str) -> dict:
    """The state of an exit without a run (did not consent, study full, withdrew)."""
    return {"study": study.public_code, "kind": "exit", "exit": endings.exit_info(study, outcome)}


def quiz_state(p: Participant, study: Study) -> dict:
    """The comprehension questions (never their answers), the instructions to read again, and
    how many tries are left; ``retry`` after a wrong try."""
    quiz = config_of(p).comprehension
    if quiz is None:
        return {"questions": [], "attempts_left": 0}
    tries = p.checks.filter(step_index=p.step_index).count()
    return {
        "title": gettext("Check your understanding"),
        "questions": [{"key": q.key, "label": q.label, "options": list(q.options)} for q in quiz.questions],
        "instructions": list(study.instructions),
        "attempts_left": max(0, quiz.attempts - tries),
        "retry": tries > 0,
    }


def catch_state(p: Participant, study: Study, step: dict) -> dict:
    """A catch item: its prompt and options (with an image of the study for a Study A item)."""
    item = config_of(p).catch_trials[step["catch"]]
    options = list(item.options) if item.options is not None else list(study.class_names)
    prompt = item.prompt or gettext("Attention check: please choose “{answer}”.")
    state: dict = {
        "prompt": prompt.replace("{answer}", options[item.answer]),
        "options": [{"value": i, "label": label} for i, label in enumerate(options)],
    }
    if step.get("stimulus") is not None:
        state["image_url"] = stimulus_facts(study=study, stimulus_id=step["stimulus"]).image_url
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
    study, arm = study_of(participant), arm_of(participant)
    index = plans.trial_step(participant.plan, answer.trial_index)
    step = participant.plan[index] if index is not None else {}
    assets = feedback_assets(study=study, stimulus_id=answer.stimulus_id, feedback=arm.feedback, pinned=step.get("assets"))
    return {
        "choice": option_of(study, answer.choice),
        "choice_label": _name_of(study, answer.choice),
        "correct": answer.correct,
        "correct_answer": option_of(study, answer.correct_label),
        "correct_label": _name_of(study, answer.correct_label),
        "kind": arm.feedback,
        "assets": assets,
        **({"legend": legend_url(config_of(participant).heatmap_colormap)} if arm.feedback in HEATMAP_FEEDBACK and assets else {}),
        **({"animation_ms": animation_ms(assets.get("gif") or assets.get("webp", ""))} if "gif" in assets or "webp" in assets else {}),
    }


#: The arms whose feedback is a heatmap (its colour scale is shown beside it, with words at both ends).
HEATMAP_FEEDBACK = ("gradcam", "gad")


def legend_url(colormap: str) -> str:
    """The colour scale of ``colormap``, low to high (static/study/legends/, made by explainers.colour)."""
    from django.templatetags.static import static

    return static(f"study/legends/{colormap}.png")


#: The stages' default texts, in the study's language (a study's ``stage_text`` replaces them).
STAGE_TEXT = {
    "NoVis": _("Group these images into groups of images that you think belong together."),
    "1-Heatmap": _("The AI agent uses the heatmap of each image to make its decision. Hover over an image "
    "(or use the button) to see its heatmap, then group the images the way you think the agent would."),
    "XNN": _("The AI agent uses a combination of these heatmaps to make its decision. The number above each "
    "heatmap is how much it counts for the decision (red: for, blue: against). Group the images the way you "
    "think the agent would."),
}


def grouping_state(*, participant: Participant, step: dict) -> dict:
    """Images of a batch, in a per-participant shuffled order, with the stage's heatmaps.

    Nothing here reveals a class: images are identified by stimulus id only.
    """
    stage = step["stage"]
    study = study_of(participant)
    pinned = step.get("assets", {})
    order = list(step["stimuli"])
    random.Random(f"{participant.code}:{participant.step_index}").shuffle(order)  # noqa: S311 - seeded for reproducible designs, not secrets
    method = {"1-Heatmap": heatmap_method(study), "XNN": ExplanationAsset.Method.XNN}.get(stage)
    images = []
    for pk in order:
        item = {"id": pk, "url": stimulus_facts(study=study, stimulus_id=pk).image_url}
        asset = valid_asset(study=study, stimulus_id=pk, method=method, pinned=pinned.get(str(pk))) if method else None
        if stage == "1-Heatmap" and asset:
            item["heatmap"] = asset.urls["heatmap"]
        elif stage == "XNN" and asset:
            n = len(asset.metrics.get("contributions", []))
            item["xfeatures"] = [
                {"index": i, "url": asset.urls[f"x{i}"], "contribution": round(asset.metrics["contributions"][i], 3)}
                for i in range(n)
            ]
        images.append(item)
    return {
        "stage": stage,
        "dataset_position": sum(1 for s in participant.plan[: participant.step_index] if s["kind"] == "grouping") + 1,
        "n_batches": sum(1 for s in participant.plan if s["kind"] == "grouping"),
        "instruction": str(study.parsed_config.stage_text.get(stage, STAGE_TEXT[stage])),
        **({"legend": legend_url(config_of(participant).heatmap_colormap)} if method else {}),
        "images": images,
        **_group_limits(study, step),
    }


def _group_limits(study: Study, step: dict) -> dict:
    """How many groups the board offers and accepts: ``min_groups``, ``max_groups`` and the rule
    in words (``group_rule``; empty for a plan drawn before the rule existed)."""
    rule = group_rule(step)
    if rule is None:
        return {"min_groups": 1, "max_groups": study.parsed_config.max_groups, "group_rule": ""}
    return {"min_groups": rule["n"] if rule["rule"] == "exactly" else 1, "max_groups": rule["n"],
            "group_rule": group_rule_text(rule)}
