"""What the participant's browser gets: the participant state, a batch's grouping state, feedback.

The server is the source of truth for where a participant is: every API response, an error's
included, carries ``participant_state`` (the API's exception handler builds it for the errors).
Nothing here may reveal a trial's correct label before that trial's answer is saved, nor a
grouping image's class.
"""

from __future__ import annotations

import random

from studyapp.pipeline.models import ExplanationAsset, Stimulus
from studyapp.pipeline.storage import media_url
from studyapp.studies.models import Arm, Participant, Study
from studyapp.studies.selectors import FEEDBACK_METHOD, heatmap_method


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
        "assets": feedback_assets(stimulus_id=answer.stimulus_id, feedback=participant.arm.feedback),
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
    stimuli = {s.pk: s for s in Stimulus.objects.filter(pk__in=step["stimuli"]).only("pk", "image")}
    order = list(step["stimuli"])
    random.Random(f"{participant.code}:{participant.step_index}").shuffle(order)
    method = {"1-Heatmap": heatmap_method(study), "XNN": ExplanationAsset.Method.XNN}.get(stage)
    assets = {}
    if method:
        for a in ExplanationAsset.objects.filter(stimulus_id__in=order, method=method, valid=True).order_by("created_at"):
            assets[a.stimulus_id] = a
    images = []
    for pk in order:
        item = {"id": pk, "url": media_url(stimuli[pk].image)}
        asset = assets.get(pk)
        if stage == "1-Heatmap" and asset:
            item["heatmap"] = media_url(asset.files["heatmap"])
        elif stage == "XNN" and asset:
            n = len(asset.metrics.get("contributions", []))
            item["xfeatures"] = [
                {"index": i, "url": media_url(asset.files[f"x{i}"]), "contribution": round(asset.metrics["contributions"][i], 3)}
                for i in range(n)
            ]
        images.append(item)
    return {
        "stage": stage,
        "dataset_position": sum(1 for s in participant.plan[: participant.step_index] if s["kind"] == "grouping") + 1,
        "n_batches": sum(1 for s in participant.plan if s["kind"] == "grouping"),
        "instruction": study.parsed_config.stage_text.get(stage, STAGE_TEXT[stage]),
        "images": images,
        "max_groups": study.parsed_config.max_groups,
    }
