"""The clustering design (XNN paper, section 4.1): demographics, three stages of two batches
each (NoVis, then 1-Heatmap and XNN in a counterbalanced order), a confidence question after each
batch, the last questions; within subjects."""

from __future__ import annotations

import random

from django.utils.translation import gettext

from stats.analyse import CLUSTERING
from studyapp.studies.designs.base import Design, with_checks
from studyapp.studies.models import Arm, Study
from studyapp.studies.plans import (
    CONFIDENCE_QUESTION,
    CONFIDENCE_SCALE,
    STAGE_HEATMAP,
    STAGE_NOVIS,
    STAGE_XNN,
    PlanError,
    agent_rating_question,
    demographic_questions,
    order_cells,
    order_of_cell,
)
from studyapp.studies.steps.base import Step
from studyapp.studies.steps.done import Done
from studyapp.studies.steps.grouping import Grouping
from studyapp.studies.steps.instructions import Instructions
from studyapp.studies.steps.questions import Questions


def clustering_plan(
    *,
    study: Study,
    sets: dict[str, dict[int, list[int]]],
    seed: str,
    order: str | None = None,
    n_classes: dict[str, int] | None = None,
) -> list[Step]:
    """Demographics, then three stages of two batches each, a confidence question after each
    batch, and the final questions.

    - NoVis first; the order of XNN and 1-Heatmap and the order of the data sets are the
      counterbalancing cell ``order`` (see `order_cells`; the caller picks the least filled one),
      drawn at random when None.
    - The data sets alternate in that order in every stage (e.g. NoVis-CEL, NoVis-CUB, XNN-CEL,
      XNN-CUB, 1-Heatmap-CEL, 1-Heatmap-CUB).
    - ``sets`` are the pre-drawn sets per data set (5 of 10 images each in the paper). Each
      batch is a set picked at random; a participant never gets the same set twice within a data
      set while there are enough sets (the paper does not say; re-showing images would confound
      the later stages).
    - Each grouping step carries its group rule, ``{"rule": "exactly" | "at_most" | "free", "n": k}``:
      ``config.n_groups``, else the data set's number of classes (``n_classes``), at most the
      batch size and ``config.max_groups``; for "free" (the published design: the number is not
      told) ``n`` is the most the board allows (the batch size, at most ``max_groups``).
    - Confidence is asked after each batch, key ``confidence:<stage>:<dataset>`` (Figure 5a-b
      shows it per data set; the paper asked it per stage).
    """
    rng = random.Random(f"{study.pk}:clustering:{seed}")  # noqa: S311 - seeded for reproducible designs, not secrets
    config = study.parsed_config
    missing = [d for d in config.datasets if len(sets.get(d, {})) == 0]
    if missing:
        raise PlanError(f"Study '{study.slug}' has no servable image sets for {', '.join(missing)}.")
    cells = order_cells(config.datasets)
    if order is None:
        order = rng.choice(cells)
    elif order not in cells:
        raise PlanError(f"Study '{study.slug}' has no order cell {order!r}.")
    later, datasets = order_of_cell(order)
    stages = [STAGE_NOVIS, *later]
    remaining = {d: rng.sample(sorted(sets[d]), len(sets[d])) for d in datasets}
    intro: list[Step] = [
        Instructions(order=order),
        Questions(key="demographics", title=gettext("About you"), questions=demographic_questions(study)),
    ]
    units: list[list[Step]] = []
    for stage in stages:
        for dataset in datasets:
            pool = remaining[dataset] or rng.sample(sorted(sets[dataset]), len(sets[dataset]))
            set_index = pool.pop()
            remaining[dataset] = pool
            stimuli = list(sets[dataset][set_index])
            if config.group_rule == "free":  # the number is not told: 1 .. as many as the board allows
                k = min(len(stimuli), config.max_groups)
            else:
                k = config.n_groups or (n_classes or {}).get(dataset) or 4
                k = max(1, min(k, len(stimuli), config.max_groups))
            key = f"confidence:{stage}:{dataset}"
            units.append([
                Grouping(stage=stage, dataset=dataset, set_index=set_index, stimuli=stimuli,
                         groups={"rule": config.group_rule, "n": k}),
                Questions(key=key, title=gettext("Your confidence"),
                          questions=[{"key": key, "type": "scale", "label": gettext(CONFIDENCE_QUESTION),
                                      "options": [gettext(t) for t in CONFIDENCE_SCALE], "first_value": 0}]),
            ])
    final = Questions(key="final", title=gettext("Last questions"), questions=[
        agent_rating_question(STAGE_HEATMAP), agent_rating_question(STAGE_XNN),
        {"key": "difficulty", "type": "scale", "label": gettext("How difficult was the task? (0 = very easy, 7 = very hard)"),
         "options": [str(i) for i in range(8)], "first_value": 0},
        {"key": "comments", "type": "text", "label": gettext("Any comments? (optional)"), "optional": True},
    ])
    return with_checks(study, intro=intro, units=units, closing=[final, Done()])


def _draw(*, study: Study, arm: Arm, seed: str, order: str | None = None) -> list[Step]:
    from studyapp.studies.selectors import dataset_class_counts, servable_sets

    n_classes = {} if study.parsed_config.n_groups else dataset_class_counts(study=study)
    return clustering_plan(study=study, sets=servable_sets(study=study), seed=seed, order=order, n_classes=n_classes)


DESIGN = Design(
    name=Study.Design.CLUSTERING, steps=(Instructions, Questions, Grouping, Done), analysis=CLUSTERING, draw=_draw,
)
