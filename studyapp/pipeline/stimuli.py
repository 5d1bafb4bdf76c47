"""Writes of a learning study's stimuli: the fixed image sequence every arm shows."""

from __future__ import annotations

import logging
import math
import random
from typing import TYPE_CHECKING

import numpy as np
from django.db import transaction

from studyapp.pipeline import loading
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import Stimulus, TrainedModel
from studyapp.pipeline.storage import store_bytes

if TYPE_CHECKING:
    import torch

    from explainers.datasets.cue import PlantedCue

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


def study_cue(*, study, classifier: TrainedModel) -> PlantedCue | None:
    """The planted cue a bias study's cued stimuli carry (``config.bias.cued_share`` > 0), else None.

    The study's declared ``config.bias.cue_box`` (a square, drawn in ``config.bias.cue_grey``),
    else the cue the classifier was trained with (``metadata["planted_cue"]``, `train_models
    --plant-cue`), drawn as at training (`explainers.datasets.cue.PlantedCue`).
    """
    from explainers.datasets.cue import PlantedCue

    bias = study.parsed_config.bias
    if bias is None or bias.cued_share <= 0:
        return None
    stored = dict((classifier.metadata or {}).get("planted_cue") or {})
    # the class is only what training planted on; drawing the cue (PlantedCue.add) ignores it
    cue_class = int(stored.get("cue_class", max(study.classes)))
    try:
        if bias.cue_box is not None:
            return PlantedCue.from_box(bias.cue_box, cue_class=cue_class, value=bias.cue_grey)
        if "cue_class" in stored:
            return PlantedCue.from_dict(stored)
        if stored.get("box"):  # a box without its shape: a square of the study's grey
            return PlantedCue.from_box(stored["box"], cue_class=cue_class, value=bias.cue_grey)
    except (ValueError, TypeError) as exc:
        raise PipelineError(f"config.bias.cued_share: the cue cannot be drawn: {exc}") from None
    raise PipelineError(
        f"config.bias.cued_share: classifier #{classifier.pk} has no planted cue and config.bias.cue_box is not set: nothing to draw."
    )


def cued_positions(n: int, share: float) -> set[int]:
    """The positions among ``n`` that carry the cue: ``round(n * share)`` of them spread evenly,
    so that every run of consecutive positions (the explained items, the marked ones) gets about
    ``share`` of them: position ``p`` is cued when ``floor((p + 1) * share)`` steps up.

    Example::

        >>> sorted(cued_positions(6, 0.5)), sorted(cued_positions(4, 1.0)), cued_positions(4, 0.0)
        ([1, 3, 5], [0, 1, 2, 3], set())
    """
    return {p for p in range(n) if math.floor((p + 1) * share + 1e-9) > math.floor(p * share + 1e-9)}


def shown_images(stimuli: list[Stimulus], arrays: dict) -> torch.Tensor:
    """The stimuli's images as float ``(N, C, H, W)`` as their classifier saw them when they were
    selected: with the study's planted cue drawn (exactly as at training) on the cued ones. What
    the precompute explains (`studyapp.pipeline.explain`)."""
    from explainers.datasets.common import to_tensor

    images = to_tensor(np.stack([arrays[f"x_{s.split}"][s.index] for s in stimuli]))
    rows = [i for i, s in enumerate(stimuli) if s.cued]
    if rows:
        cue = study_cue(study=stimuli[rows[0]].study, classifier=stimuli[rows[0]].classifier)
        if cue is None:
            raise PipelineError("Stimuli carry the planted cue but the study no longer says which (config.bias.cued_share is 0).")
        images[rows] = cue.add(images[rows])
    return images


def stimuli_select(*, study, classifier: TrainedModel, n: int | None = None, wrong_share: float | None = None, seed: int = 0) -> list[Stimulus]:
    """Pick the study's stimuli from the test split: the same set for all arms.

    Half from each of the study's two classes. Within a class, drawn at random from its test
    images (``wrong_share`` None, the default and the published design: the model's accuracy
    gives the right/wrong mix), or balanced (``wrong_share`` of each class's images are ones the
    model gets wrong; from the argument, else the study config). Only images whose prediction
    is one of the two classes qualify, so "correct" is always one of the two answers a
    participant can give (see `draw_indices`). A few spares beyond ``n_trials`` absorb
    explanations that fail the validity gate. Refused once participants have answered.

    A bias study's ``config.bias.cued_share`` of the stimuli (`cued_positions`) carry its planted
    cue (`study_cue`): the stored PNG is the cued image, the prediction and probabilities are the
    model's on it (a non-cue-class image with the cue is usually called the cue's class), the
    precompute explains it (`shown_images`), and ``Stimulus.cued`` records it. Only images whose
    clean and cued predictions are both one of the two classes qualify; ``wrong_share`` balances
    on the clean predictions.
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
    model = loading.load_model(classifier)
    images = to_tensor(x[idx])
    pred, probs = predict(model, images)
    pred, probs = np.asarray(pred), np.asarray(probs)
    cue = study_cue(study=study, classifier=classifier)
    qualifying = pred
    if cue is not None:
        try:
            cue.check_fits(int(images.shape[-2]), int(images.shape[-1]))
        except ValueError as exc:
            raise PipelineError(f"config.bias.cued_share: {exc}") from None
        cued_pred, cued_probs = predict(model, cue.add(images))
        cued_pred, cued_probs = np.asarray(cued_pred), np.asarray(cued_probs)
        qualifying = np.where(np.isin(cued_pred, classes), pred, -1)  # -1: not one of the classes, never drawn
    chosen, shortfall = draw_indices(labels=y[idx], predictions=qualifying, classes=classes, n=n, wrong_share=wrong_share, seed=seed)
    if len(chosen) < n:
        raise PipelineError(f"Only {len(chosen)} usable test images for classes {classes}; need {n}.")
    if shortfall:
        log.warning("Stimulus selection short of model-wrong images: %s", "; ".join(shortfall))
    cued = cued_positions(len(chosen), study.parsed_config.bias.cued_share) if cue is not None else set()

    def shown(pos: int, j: int) -> tuple[np.ndarray, int, np.ndarray]:
        if pos in cued:
            return cue.add_stored(x[idx[j]]), int(cued_pred[j]), cued_probs[j]  # type: ignore[union-attr]
        return x[idx[j]], int(pred[j]), probs[j]

    with transaction.atomic():
        Stimulus.objects.filter(study=study).delete()
        rows = []
        for pos, j in enumerate(chosen):
            image, prediction, probabilities = shown(pos, j)
            rows.append(Stimulus(
                study=study,
                dataset=classifier.dataset,
                split="test",
                index=int(idx[j]),
                position=pos,
                image=store_bytes(loading.png_of(image, scale=scale), ext="png", folder="stimuli"),
                true_label=int(y[idx[j]]),
                model_prediction=prediction,
                probabilities=[round(float(p), 6) for p in probabilities],
                classifier=classifier,
                cued=pos in cued,
            ))
        Stimulus.objects.bulk_create(rows)
        study.config = {**(study.config or {}), "classifier_id": classifier.pk, "selection_shortfall": shortfall}
        study.save(update_fields=["config", "updated_at"])
    return list(Stimulus.objects.filter(study=study).order_by("position", "pk"))
