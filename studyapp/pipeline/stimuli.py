"""Writes of a learning study's stimuli: the fixed image sequence every arm shows."""

from __future__ import annotations

import logging
import random

import numpy as np
from django.db import transaction

from studyapp.pipeline import loading
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import Stimulus, TrainedModel
from studyapp.pipeline.storage import store_bytes

log = logging.getLogger(__name__)
#: Nearest-neighbour upscaling of a 28x28 stimulus (224 px on screen); other sizes follow
#: :func:`studyapp.pipeline.loading.display_scale` (about 224 px).
STIMULUS_SCALE = 8


def draw_indices(
    *, labels: np.ndarray, predictions: np.ndarray, classes: list[int], n: int, wrong_share: float | None, seed: int = 0,
) -> tuple[list[int], list[str]]:
    """Positions in ``labels`` of the ``n`` drawn images, in the order shown, and the shortfalls.

    Half of ``n`` from each class (the first class gets the odd one), among the images predicted
    as one of ``classes``. ``wrong_share`` None: drawn at random, whatever the model made of
    them (the mix its accuracy gives); a number: that share of each class's images are ones the
    model gets wrong (a shortfall is named when there are too few).
    """
    rng = random.Random(seed)  # noqa: S311 - seeded for reproducible designs, not secrets
    chosen: list[int] = []
    shortfall = []
    per_class = [n // 2 + (1 if k < n % 2 else 0) for k in range(2)]
    ok = np.isin(predictions, classes)
    for k, cls in enumerate(classes):
        in_class = labels == cls
        right = [int(i) for i in np.flatnonzero(in_class & ok & (predictions == cls))]
        wrong = [int(i) for i in np.flatnonzero(in_class & ok & (predictions != cls))]
        if wrong_share is None:  # at random: the mix the model's accuracy gives
            pool = sorted(right + wrong)
            rng.shuffle(pool)
            chosen += pool[: per_class[k]]
            continue
        rng.shuffle(right)
        rng.shuffle(wrong)
        n_wrong = min(len(wrong), round(per_class[k] * wrong_share))
        if n_wrong < round(per_class[k] * wrong_share):
            shortfall.append(f"class {cls}: only {len(wrong)} model-wrong images")
        chosen += wrong[:n_wrong] + right[: per_class[k] - n_wrong]
    rng.shuffle(chosen)
    return chosen, shortfall


def stimuli_select(*, study, classifier: TrainedModel, n: int | None = None, wrong_share: float | None = None, seed: int = 0) -> list[Stimulus]:
    """Pick the study's stimuli from the test split: the same set for all arms.

    Half from each of the study's two classes. Within a class, drawn at random from its test
    images (``wrong_share`` None, the default and the published design: the model's accuracy
    gives the right/wrong mix), or balanced (``wrong_share`` of each class's images are ones the
    model gets wrong; from the argument, else the study config). Only images whose prediction
    is one of the two classes qualify, so "correct" is always one of the two answers a
    participant can give (see `draw_indices`). A few spares beyond ``n_trials`` absorb
    explanations that fail the validity gate. Refused once participants have answered.
    """
    from explainers.datasets.common import to_tensor
    from explainers.nets.classifiers import predict

    if study.participants.exists():
        raise PipelineError("Participants have started this study; its stimuli can no longer change.")
    classes = list(study.classes)
    if len(classes) != 2:
        raise PipelineError("The study needs exactly two classes.")
    config = study.parsed_config
    n = n or study.n_trials + config.spare_stimuli
    if wrong_share is None:
        wrong_share = config.wrong_share
    if wrong_share is not None and not 0 <= wrong_share <= 1:
        raise PipelineError("wrong_share must lie between 0 and 1.")
    arrays = loading.dataset_arrays(classifier.dataset)
    x, y = arrays["x_test"], arrays["y_test"]
    scale = loading.display_scale(int(x.shape[1]))  # STIMULUS_SCALE at 28 px
    idx = np.flatnonzero(np.isin(y, classes))
    pred, probs = predict(loading.load_model(classifier), to_tensor(x[idx]))
    pred, probs = np.asarray(pred), np.asarray(probs)
    chosen, shortfall = draw_indices(labels=y[idx], predictions=pred, classes=classes, n=n, wrong_share=wrong_share, seed=seed)
    if len(chosen) < n:
        raise PipelineError(f"Only {len(chosen)} usable test images for classes {classes}; need {n}.")
    if shortfall:
        log.warning("Stimulus selection short of model-wrong images: %s", "; ".join(shortfall))
    with transaction.atomic():
        Stimulus.objects.filter(study=study).delete()
        rows = [
            Stimulus(
                study=study,
                dataset=classifier.dataset,
                split="test",
                index=int(idx[j]),
                position=pos,
                image=store_bytes(loading.png_of(x[idx[j]], scale=scale), ext="png", folder="stimuli"),
                true_label=int(y[idx[j]]),
                model_prediction=int(pred[j]),
                probabilities=[round(float(p), 6) for p in probs[j]],
                classifier=classifier,
            )
            for pos, j in enumerate(chosen)
        ]
        Stimulus.objects.bulk_create(rows)
        study.config = {**(study.config or {}), "classifier_id": classifier.pk, "selection_shortfall": shortfall}
        study.save(update_fields=["config", "updated_at"])
    return list(Stimulus.objects.filter(study=study).order_by("position"))
