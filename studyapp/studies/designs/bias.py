"""The bias-discovery design (the dissertation's biased 8, §3.2.2; Sixt et al., ICLR 2022): the
arm's explanations of a few of a biased classifier's predictions (the image, the model's answer
and the arm's explanation, as the simulation design's learning items show them), then "What does
the model rely on?" on ``n_marks`` images: a region marked on each, and on the last a choice among
the study's candidate cues, then a rating of what was shown (``config.bias``, `studyapp.lib.study_config.BiasConfig`); between
subjects (one arm per run).

The explained items are the first ``n_explained`` servable stimuli (every run the same images, so
arms compare on the same predictions), the marked images the next ``n_marks`` (the explained ones
again when the study has no more). Their order within each phase is shuffled per run when the
study's order is seeded; the candidates' order is shuffled per run always (fixed in the plan), so
that the planted cue's place on the page says nothing.
"""

from __future__ import annotations

import random

from stats.analyse import LEARNING
from studyapp.lib.study_config import BiasConfig
from studyapp.studies.designs.base import Design, with_checks
from studyapp.studies.errors import InvalidInput
from studyapp.studies.models import Arm, Study
from studyapp.studies.plans import PlanError
from studyapp.studies.steps.base import Step
from studyapp.studies.steps.bias import BiasMark, bias_config
from studyapp.studies.steps.done import Done
from studyapp.studies.steps.instructions import Instructions
from studyapp.studies.steps.rating import Rating
from studyapp.studies.steps.simulation import LearningItem


def bias_plan(*, study: Study, arm: Arm, stimuli: list[int], size: tuple[int, int], seed: str) -> list[Step]:
    """``stimuli``: the servable stimulus ids in order; ``size``: the images' (width, height)."""
    try:
        config = bias_config(study)
    except InvalidInput as exc:
        raise PlanError(f"Study '{study.slug}': {exc}") from None
    if len(stimuli) < config.n_explained:
        raise PlanError(f"Study '{study.slug}' has {len(stimuli)} servable stimuli but the bias design explains {config.n_explained}.")
    explained = list(stimuli[: config.n_explained])
    rest = list(stimuli[config.n_explained:]) or explained
    marked = [rest[i % len(rest)] for i in range(config.n_marks)]
    if study.stimulus_order == Study.StimulusOrder.SEEDED:
        rng = random.Random(f"{study.pk}:{seed}")  # noqa: S311 - seeded for reproducible designs, not secrets
        rng.shuffle(explained)
        rng.shuffle(marked)
    order = list(range(len(config.candidates)))
    random.Random(f"{study.pk}:{seed}:cues").shuffle(order)  # noqa: S311 - an order per run, not secrets
    units: list[list[Step]] = [[LearningItem(item=i, stimulus=sid)] for i, sid in enumerate(explained)]
    last = len(marked) - 1
    units += [[BiasMark(item=i, stimulus=sid, size=size, cue_order=order if i == last else None)] for i, sid in enumerate(marked)]
    return with_checks(study, intro=[Instructions()], units=units, closing=[Rating(key="feedback_rating"), Done()], images=rest)


def cue_box_of(config: BiasConfig, classifier_metadata: dict | None) -> tuple[int, int, int, int] | None:
    """The planted region scored against: the study's declared ``cue_box``, else the one the
    classifier was trained with (``metadata["planted_cue"]["box"]``, `train_models --plant-cue`)."""
    if config.cue_box is not None:
        return config.cue_box
    box = ((classifier_metadata or {}).get("planted_cue") or {}).get("box")
    return (int(box[0]), int(box[1]), int(box[2]), int(box[3])) if box else None


def check_cue(config: dict, classifier) -> None:
    """``TemplateError`` unless the study knows the cue it scores against: ``config.bias.cue_box``,
    or a classifier trained with a planted cue."""
    from studyapp.studies.designs import TemplateError

    try:
        bias = BiasConfig.model_validate(config.get("bias"))
    except ValueError as exc:
        raise TemplateError(f"config.bias: {exc}") from None
    if cue_box_of(bias, classifier.metadata) is None:
        raise TemplateError(
            f"Classifier #{classifier.pk} was trained without a planted cue: train one with "
            "train_models --plant-cue square:6@0,0 --cue-class 8, or declare your classifier's cue as config.bias.cue_box [x0, y0, x1, y1]."
        )


def image_size(study: Study) -> tuple[int, int]:
    """The images' (width, height): ``config.bias.image_size``, else the study's data set's."""
    from studyapp.pipeline import loading
    from studyapp.pipeline.models import Stimulus

    config = bias_config(study)
    if config.image_size is not None:
        return config.image_size
    stimulus = Stimulus.objects.filter(study=study).select_related("dataset").first()
    if stimulus is None:
        raise PlanError(f"Study '{study.slug}' has no stimuli.")
    _, height, width = loading.dataset_image_shape(stimulus.dataset)
    return (width, height)


def _draw(*, study: Study, arm: Arm, seed: str, order: str | None = None) -> list[Step]:
    from studyapp.studies.selectors import servable_stimuli

    try:
        size = image_size(study)
    except InvalidInput as exc:
        raise PlanError(f"Study '{study.slug}': {exc}") from None
    ids = list(servable_stimuli(study=study).values_list("pk", flat=True))
    return bias_plan(study=study, arm=arm, stimuli=ids, size=size, seed=seed)


DESIGN = Design(name=Study.Design.BIAS, steps=(Instructions, LearningItem, BiasMark, Rating, Done), analysis=LEARNING, draw=_draw)
