"""What the participant's browser gets: the participant state, a batch's grouping state, feedback.

The server is the source of truth for where a participant is: every API response, an error's
included, carries ``participant_state`` (the API's exception handler builds it for the errors).
Nothing here may reveal a trial's correct label before that trial's answer is saved, nor a
grouping image's class.
"""

from __future__ import annotations

import random

from studyapp.pipeline.models import ExplanationAsset
from studyapp.studies.models import Arm, Participant, Study, TrialAnswer
from studyapp.studies.selectors import (
    FEEDBACK_METHOD,
    heatmap_method,
    stimulus_facts,
    trial_answer,
    valid_asset,
)
from studyapp.studies.validation import group_rule, group_rule_text


def _options(study: Study) -> list[dict]:
    return [{"value": c, "label": n} for c, n in zip(study.classes, study.class_names, strict=True)]


def _name_of(study: Study, class_id: int) -> str:
    return dict(zip(study.classes, study.class_names, strict=True)).get(class_id, str(class_id))


def feedback_assets(*, study: Study, stimulus_id: int, feedback: str) -> dict:
    method = FEEDBACK_METHOD.get(feedback)
    asset = valid_asset(study=study, stimulus_id=stimulus_id, method=method) if method else None
    return dict(asset.urls) if asset else {}


#: ``participant_state(answer=UNKNOWN)``: the current trial's answer is read from the database.
UNKNOWN = object()


def participant_state(*, participant: Participant, answer: TrialAnswer | None | object = UNKNOWN) -> dict:
    """The state of ``participant`` (as read or locked, with its study and arm).

    ``answer``: the current trial's saved answer when the caller's write knows it (the answer it
    has just saved, or ``None`` for a step just moved onto); otherwise it is read.
    """
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
        "design": study.design,
    }
    if step["kind"] == "instructions":
        state.update(
            cover_story=study.cover_story,
            instructions=_instructions(study, p.arm),
            arm_instruction=p.arm.instruction,
            n_trials=n_trials,
        )
    elif step["kind"] == "trial":
        state.update(
            trial=step["trial"],
            n_trials=n_trials,
            stimulus=step["stimulus"],
            image_url=stimulus_facts(study=study, stimulus_id=step["stimulus"]).image_url,
            options=_options(study),
            question="Which symbol is this?",
        )
        if answer is UNKNOWN or (answer is not None and answer.trial_index != step["trial"]):
            answer = trial_answer(participant_id=p.pk, trial_index=step["trial"])
        state["answered"] = answer is not None
        if answer is not None:
            state["feedback"] = trial_feedback(participant=p, answer=answer)
    elif step["kind"] == "questions":
        state.update(key=step["key"], title=step.get("title", ""), questions=step["questions"])
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
        "assets": feedback_assets(study=study, stimulus_id=answer.stimulus_id, feedback=participant.arm.feedback),
    }


STAGE_TEXT = {
    "NoVis": "Group these images into groups of images that you think belong together.",
    "1-Heatmap": "The AI agent uses the heatmap of each image to make its decision. Hover over an image "
    "(or use the button) to see its heatmap, then group the images the way you think the agent would.",
    "XNN": "The AI agent uses a combination of these heatmaps to make its decision. The number above each "
    "heatmap is how much it counts for the decision (red: for, blue: against). Group the images the way you "
    "think the agent would.",
}


def grouping_state(*, participant: Participant, step: dict) -> dict:
    """Images of a batch, in a per-participant shuffled order, with the stage's heatmaps.

    Nothing here reveals a class: images are identified by stimulus id only.
    """
    stage = step["stage"]
    study = participant.study
    order = list(step["stimuli"])
    random.Random(f"{participant.code}:{participant.step_index}").shuffle(order)  # noqa: S311 - seeded for reproducible designs, not secrets
    method = {"1-Heatmap": heatmap_method(study), "XNN": ExplanationAsset.Method.XNN}.get(stage)
    images = []
    for pk in order:
        item = {"id": pk, "url": stimulus_facts(study=study, stimulus_id=pk).image_url}
        asset = valid_asset(study=study, stimulus_id=pk, method=method) if method else None
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
        "instruction": study.parsed_config.stage_text.get(stage, STAGE_TEXT[stage]),
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
