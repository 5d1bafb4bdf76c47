"""The HIVE design (Kim et al., "HIVE: Evaluating the Human Interpretability of Visual
Explanations", ECCV 2022): agreement items, then distinction items, then a rating; between
subjects (one arm per run).

``Study.n_trials`` is the number of items per task (n). Agreement items are drawn balanced on
model correctness (`designs.simulation.balanced`: half model-wrong as far as the stimuli allow);
distinction items are n other images (also balanced), each with the maps of the model's four most
probable classes (`studyapp.pipeline.params.target_ranks`: a HIVE study's precompute makes
them), shown in an order drawn per run and item (always at random, whatever the study's
``stimulus_order``: a fixed order would put the prediction at a fixed letter). Every run gets the
same images (the arms compare on the same items); their order within each task is shuffled per
run when the study's order is seeded.

Arms: Grad-CAM (the one method that explains any class: ``params.TARGETED_METHODS``) or control.
A control arm takes the agreement items with the model's answer and no explanation (the baseline
the paper's confidence is read against, an addition to HIVE) and no distinction items (there is
nothing to tell apart). Morph arms (CDeepEx, xGEMs) explain "why not the other class" of a pair,
and GAD the pair's difference: neither is a map of class k, so a HIVE study refuses them, with
the reason, when a run is drawn (and `hive_problems` says so beforehand).
"""

from __future__ import annotations

import random

from stats.analyse import LEARNING
from studyapp.pipeline.models import ExplanationAsset, Stimulus
from studyapp.pipeline.params import HIVE_RANKS, TARGETED_METHODS, explanation_params, params_hash
from studyapp.studies.designs.base import Design, with_checks
from studyapp.studies.designs.simulation import balanced
from studyapp.studies.models import Arm, Study
from studyapp.studies.plans import PlanError
from studyapp.studies.selectors import FEEDBACK_METHOD
from studyapp.studies.steps.base import Step
from studyapp.studies.steps.done import Done
from studyapp.studies.steps.hive import AgreementItem, DistinctionItem
from studyapp.studies.steps.instructions import Instructions
from studyapp.studies.steps.rating import Rating

#: The arms a HIVE study may have: a map of any class (Grad-CAM), or no explanation (control).
HIVE_FEEDBACK = (Arm.Feedback.CONTROL, Arm.Feedback.GRADCAM)


def hive_problems(*, study: Study, arms: list[Arm] | None = None) -> list[str]:
    """What stops ``study`` from drawing HIVE runs, in words a researcher can act on."""
    problems = []
    for arm in arms if arms is not None else list(study.arms.all()):
        if arm.feedback not in HIVE_FEEDBACK:
            problems.append(
                f"arm '{arm.name}' shows {arm.get_feedback_display()}; a HIVE study's arms show Grad-CAM (the maps of the "
                f"model's top four classes) or nothing (control): morphs and GAD explain a pair, not one class"
            )
    probabilities = Stimulus.objects.filter(study=study).values_list("probabilities", flat=True).first()
    if probabilities is not None and len(probabilities) < HIVE_RANKS:
        problems.append(
            f"the classifier has {len(probabilities)} classes; HIVE's distinction task shows the maps of the model's "
            f"top {HIVE_RANKS} classes, so it needs a classifier of at least {HIVE_RANKS} classes"
        )
    return problems


def ranked_assets(*, study: Study, method: str) -> dict[int, dict[str, int]]:
    """stimulus id -> {rank: the newest valid asset of that rank's current parameters} (rank as a
    string, as the plan stores it); two queries plus the parameters' own."""
    hashes = {params_hash(explanation_params(study=study, method=method, target_rank=k)): k for k in range(HIVE_RANKS)}
    out: dict[int, dict[str, int]] = {}
    rows = ExplanationAsset.objects.filter(
        stimulus__study=study, method=method, valid=True, params_hash__in=list(hashes),
    ).order_by("created_at", "pk").values_list("stimulus_id", "params_hash", "pk")
    for stimulus_id, phash, pk in rows:
        out.setdefault(stimulus_id, {})[str(hashes[phash])] = pk  # the newest wins
    return out


def hive_plan(*, study: Study, arm: Arm, stimuli: list[tuple[int, bool]], assets: dict[int, dict[str, int]] | None,
              seed: str) -> list[Step]:
    """``stimuli``: (id, model correct) of the servable stimuli, in order; ``assets``: stimulus id
    -> rank -> asset id (None: the arm shows no explanation, the control arm)."""
    problems = hive_problems(study=study, arms=[arm])
    if problems:
        raise PlanError(f"Study '{study.slug}' cannot draw a HIVE run: " + "; ".join(problems) + ".")
    n = study.n_trials
    explained = assets is not None
    maps = assets or {}
    if explained:  # agreement needs the prediction's map; distinction all four
        stimuli = [(pk, ok) for pk, ok in stimuli if "0" in maps.get(pk, {})]
    complete = {pk for pk, _ in stimuli if len(maps.get(pk, {})) == HIVE_RANKS}
    if len(stimuli) < 2 * n or (explained and len(complete) < n):
        raise PlanError(
            f"Study '{study.slug}' has {len(stimuli)} servable stimuli ({len(complete)} with the maps of the top {HIVE_RANKS} classes) "
            f"but the HIVE design needs {2 * n} ({n} agreement and {n} distinction items with all {HIVE_RANKS} maps): run the precompute."
        )
    # Distinction first from the stimuli that have all four maps, so that agreement takes the rest.
    right = [pk for pk, ok in stimuli if ok and pk in complete]
    wrong = [pk for pk, ok in stimuli if not ok and pk in complete]
    distinct = balanced(right, wrong, n) if explained else []
    taken = set(distinct)
    right = [pk for pk, ok in stimuli if ok and pk not in taken]
    wrong = [pk for pk, ok in stimuli if not ok and pk not in taken]
    agree = balanced(right, wrong, n)
    if study.stimulus_order == Study.StimulusOrder.SEEDED:
        rng = random.Random(f"{study.pk}:{seed}")  # noqa: S311 - seeded for reproducible designs, not secrets
        rng.shuffle(agree)
        rng.shuffle(distinct)
    # The positions of the four maps: always drawn per run (a fixed order would give the answer away).
    positions = random.Random(f"{study.pk}:{seed}:positions")  # noqa: S311 - seeded per run, not secrets
    units: list[list[Step]] = [
        [AgreementItem(item=i, stimulus=sid, **({"assets": {"0": maps[sid]["0"]}} if explained else {}))]
        for i, sid in enumerate(agree)
    ]
    for i, sid in enumerate(distinct):
        order = positions.sample(range(HIVE_RANKS), HIVE_RANKS)
        units.append([DistinctionItem(item=i, stimulus=sid, order=order, assets=dict(maps[sid]))])
    used = set(agree) | set(distinct)
    spare = [pk for pk, _ in stimuli if pk not in used] or agree
    return with_checks(study, intro=[Instructions()], units=units, closing=[Rating(key="feedback_rating"), Done()], images=spare)


def _draw(*, study: Study, arm: Arm, seed: str, order: str | None = None) -> list[Step]:
    from studyapp.studies.selectors import servable_stimuli

    rows = servable_stimuli(study=study).values_list("pk", "model_prediction", "true_label")
    method = FEEDBACK_METHOD.get(arm.feedback)
    assets = ranked_assets(study=study, method=method) if method in TARGETED_METHODS else None
    return hive_plan(study=study, arm=arm, stimuli=[(pk, pred == true) for pk, pred, true in rows], assets=assets, seed=seed)


DESIGN = Design(name=Study.Design.HIVE, steps=(Instructions, AgreementItem, DistinctionItem, Rating, Done), analysis=LEARNING, draw=_draw)
