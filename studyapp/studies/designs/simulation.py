"""The forward-simulation design (Hase & Bansal, ACL 2020; Colin et al., NeurIPS 2022): a pre-test
(predict the model's answer, no explanation), a learning phase (the image, the model's answer and
the arm's explanation), a post-test on other images, then a rating of what was shown while learning; between subjects
(one arm per run).

``Study.n_trials`` is the number of test items per phase (n); the learning phase has as many items
(m = n). The test items are drawn balanced on model correctness (half on which the model is right,
half wrong, as far as the study's stimuli allow: the shortfall is taken from the other kind) and
never overlap the learning items; pre and post test items are different images. Test items are
trials ``0 .. n-1`` (pre) and ``n .. 2n-1`` (post) of the run's answers.

Counterfactual items (Hase & Bansal's counterfactual simulation): with ``config.counterfactual_items = c``
each test phase has ``c`` more items (trials ``0 .. n+c-1`` pre, ``n+c .. 2(n+c)-1`` post), each the
last frame of a morph (a valid CDeepEx or xGEMs asset) of a stimulus used nowhere else in the plan,
as the page displays it, with the classifier's answer on that frame as the model's answer (the
worker's gate ran the classifier on the decoded displayed frames; the asset's ``top1``). Only
morphs whose answer is one of the study's classes are used. The study needs a morph arm (whose
precompute makes the morphs) and ``3n + 2c`` servable stimuli (``spare_stimuli``).
"""

from __future__ import annotations

import random

from PIL import Image, ImageSequence

from stats.analyse import LEARNING
from studyapp.pipeline.models import ExplanationAsset
from studyapp.pipeline.storage import media_path, store_bytes
from studyapp.studies.designs.base import Design, with_checks
from studyapp.studies.models import Arm, Study
from studyapp.studies.plans import PlanError
from studyapp.studies.steps.base import Step
from studyapp.studies.steps.done import Done
from studyapp.studies.steps.instructions import Instructions
from studyapp.studies.steps.rating import Rating
from studyapp.studies.steps.simulation import LearningItem, SimulationItem


def balanced(right: list[int], wrong: list[int], n: int) -> list[int]:
    """``n`` ids, half from ``wrong`` (the model's errors, rounded down) and the rest from
    ``right``; where one kind runs short the other makes up the number. Takes them from the lists."""
    n_wrong = min(n // 2, len(wrong))
    n_right = min(n - n_wrong, len(right))
    n_wrong = min(n - n_right, len(wrong))
    chosen = [wrong.pop(0) for _ in range(n_wrong)] + [right.pop(0) for _ in range(n_right)]
    return chosen


MORPH_METHODS = (ExplanationAsset.Method.CDEEPEX, ExplanationAsset.Method.XGEMS)


def n_counterfactual(study: Study) -> int:
    """``config.counterfactual_items`` (0 when absent); `PlanError` for anything but a whole number >= 0."""
    value = study.parsed_config.counterfactual_items
    if value < 0:
        raise PlanError(f"Study '{study.slug}': counterfactual_items must be a whole number of 0 or more, not {value!r}.")
    return value


def last_frame_png(animation: bytes) -> bytes:
    """The last frame of a GIF/WebP animation as a browser shows it (each frame composited on the
    ones before, as Pillow decodes them, like `explainers.render.decode_animation_frames`), as a PNG
    of the displayed size: grey stays grey."""
    import io

    with Image.open(io.BytesIO(animation)) as img:
        frame = None
        for frame in ImageSequence.Iterator(img):
            rgb = frame.convert("RGB")
        if frame is None:
            raise ValueError("no frames in the animation")
    r, g, b = rgb.split()
    grey = r.tobytes() == g.tobytes() == b.tobytes()
    out = io.BytesIO()
    (rgb.convert("L") if grey else rgb).save(out, format="PNG")
    return out.getvalue()


def counterfactual_items(study: Study, n: int, *, exclude: set[int]) -> list[tuple[int, int, str, int]]:
    """``n`` counterfactual inputs: (stimulus id, morph asset pk, stored PNG of its last displayed
    frame, the model's answer on it), from stimuli not in ``exclude``, in stimulus order. The PNG is
    made once per asset (stored under the asset's ``files["counterfactual"]``; files are named by
    their content, so two enrolments that make it at once write the same file). `PlanError` when
    the study's morphs cannot give ``n``."""
    if n == 0:
        return []
    chosen: list[tuple[int, int, str, int]] = []
    seen: set[int] = set()
    assets = (ExplanationAsset.objects.filter(stimulus__study=study, method__in=MORPH_METHODS, valid=True)
              .exclude(stimulus_id__in=exclude).order_by("stimulus__position", "-created_at", "-pk"))
    for asset in assets:
        top1 = (asset.metrics or {}).get("top1")
        animation = asset.files.get("gif") or asset.files.get("webp")
        if asset.stimulus_id in seen or not isinstance(top1, int | float) or int(top1) not in study.classes or not animation:
            continue
        image = asset.files.get("counterfactual")
        if not image:
            image = store_bytes(last_frame_png(media_path(animation).read_bytes()), ext="png")  # "assets/": the URL says nothing of the item
            ExplanationAsset.objects.filter(pk=asset.pk).update(files={**asset.files, "counterfactual": image})
        seen.add(asset.stimulus_id)
        chosen.append((asset.stimulus_id, asset.pk, image, int(top1)))
        if len(chosen) == n:
            return chosen
    raise PlanError(
        f"Study '{study.slug}' asks for {n} counterfactual items per test phase but has {len(chosen)} stimuli outside "
        "the test and learning items with a valid morph (CDeepEx or xGEMs) whose answer is one of the study's classes: "
        "add a morph arm or spare stimuli (config.spare_stimuli), or ask for fewer."
    )


def simulation_plan(*, study: Study, arm: Arm, stimuli: list[tuple[int, bool]], seed: str) -> list[Step]:
    """``stimuli``: (id, model correct) of the servable stimuli, in order. Every run gets the same
    items (the design's test sets are fixed, so arms compare on the same images); their order
    within each phase is shuffled per run when the study's order is seeded."""
    n = study.n_trials
    if len(stimuli) < 3 * n:  # counterfactual items need more: `counterfactual_items` says so
        raise PlanError(f"Study '{study.slug}' has {len(stimuli)} servable stimuli but the simulation design needs {3 * n} (n = {n} pre, learning and post items).")
    right = [pk for pk, ok in stimuli if ok]
    wrong = [pk for pk, ok in stimuli if not ok]
    pre, post = balanced(right, wrong, n), balanced(right, wrong, n)
    learn = (wrong + right)[:n]
    random.Random(f"{study.pk}:learn").shuffle(learn)  # noqa: S311 - a fixed mix of right and wrong, not secrets
    if study.stimulus_order == Study.StimulusOrder.SEEDED:
        rng = random.Random(f"{study.pk}:{seed}")  # noqa: S311 - seeded for reproducible designs, not secrets
        for phase in (pre, learn, post):
            rng.shuffle(phase)
    c = n_counterfactual(study)
    used = set(pre) | set(post) | set(learn)
    changed = counterfactual_items(study, 2 * c, exclude=used)
    pre_items: list[SimulationItem] = [SimulationItem(trial=0, stimulus=sid, phase="pre") for sid in pre]
    post_items: list[SimulationItem] = [SimulationItem(trial=0, stimulus=sid, phase="post") for sid in post]
    for k, (sid, asset, image, answer) in enumerate(changed):
        (pre_items if k < c else post_items).append(SimulationItem(
            trial=0, stimulus=sid, phase="pre" if k < c else "post", item_kind="counterfactual", asset=asset, image=image,
            model_answer=answer))
    if changed and study.stimulus_order == Study.StimulusOrder.SEEDED:  # else: after each phase's forward items
        rng = random.Random(f"{study.pk}:{seed}:cf")  # noqa: S311 - seeded for reproducible designs, not secrets
        rng.shuffle(pre_items)
        rng.shuffle(post_items)
    units: list[list[Step]] = [[item.model_copy(update={"trial": i})] for i, item in enumerate(pre_items)]
    units += [[LearningItem(item=i, stimulus=sid)] for i, sid in enumerate(learn)]
    units += [[item.model_copy(update={"trial": len(pre_items) + i})] for i, item in enumerate(post_items)]
    used |= {sid for sid, *_ in changed}
    spare = [pk for pk, _ in stimuli if pk not in used] or pre
    return with_checks(study, intro=[Instructions()], units=units, closing=[Rating(key="feedback_rating"), Done()], images=spare)


def _draw(*, study: Study, arm: Arm, seed: str, order: str | None = None) -> list[Step]:
    from studyapp.studies.selectors import servable_stimuli

    rows = servable_stimuli(study=study).values_list("pk", "model_prediction", "true_label")
    return simulation_plan(study=study, arm=arm, stimuli=[(pk, pred == true) for pk, pred, true in rows], seed=seed)


DESIGN = Design(name=Study.Design.SIMULATION, steps=(Instructions, SimulationItem, LearningItem, Rating, Done), analysis=LEARNING, draw=_draw)
