"""Bias discovery: do explanations let people find a cue that was planted in the classifier?

Papers: the dissertation's biased 8 (§3.2.2: a Kannada-MNIST classifier trained with a 6×6 grey
square in the top-left corner of every "8", `benchmarks/bias_eight.py`), and Sixt, Schuessler,
Popescu, Weiß & Landgraf, "Do Users Benefit From Interpretable Vision? A User Study, Baseline, And
Dataset", ICLR 2022 (N = 240 over three conditions), where participants judged which attributes
the model relies on and were scored against the biases planted in the data.

Measures:

- **Share who found the cue** per arm: the share of participants whose choice among the
  candidate cues is the planted one, with a Wilson interval; each arm against a reference arm as
  a difference of proportions with Newcombe's interval and the score test.
- **Localisation error** of the region a participant marks on an image against the planted
  cue's box on that image. The primary measure is the **distance between the centres** of the
  two boxes, in pixels: it is defined (and graded) also when the boxes do not overlap, where IoU
  is 0 whatever the miss. The **IoU** (intersection over union) is reported beside it.
  Per participant the mean over their marks, then the arm mean with a t interval; arms compared
  with Welch's test.

Input frame (long format, one row per participant × item × phase):

===================  ===========================================================================
column               meaning
===================  ===========================================================================
``participant``      participant id
``arm``              the participant's arm
``item``             item id (the image, or the cue question's id)
``phase``            ``"cue"`` (the choice among candidate cues, one row per participant) or
                     ``"mark"`` (a region marked on an image)
``chosen_cue``       cue rows: the candidate the participant chose (text)
``mark_x0`` ...      mark rows: ``mark_x0, mark_y0, mark_x1, mark_y1``, the marked box in image
                     pixels (x right, y down, x1 and y1 exclusive); missing = nothing marked
``cue_x0`` ...       mark rows: ``cue_x0, cue_y0, cue_x1, cue_y1``, the planted cue's box on that
                     image (the biased 8's square is (0, 0, 6, 6))
===================  ===========================================================================

Example::

    frame = simulate_participants(BiasPlan(), seed=1)
    r = analyse(frame, planted_cue=BiasPlan().planted_cue, reference_arm="Control")
    r.discovery, r.discovery_comparisons, r.localisation
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from stats.protocols.estimates import (
    Estimate,
    ProtocolPower,
    mean_ci,
    power_by_simulation,
    proportion_diff,
    welch_diff,
    wilson,
)
from stats.protocols.schema import (
    ARM,
    ITEM,
    PARTICIPANT,
    PHASE,
    require_frame,
    require_values,
    sort_levels,
)
from stats.schema import AnalysisInputError

CHOSEN_CUE = "chosen_cue"
MARK_BOX: tuple[str, str, str, str] = ("mark_x0", "mark_y0", "mark_x1", "mark_y1")
CUE_BOX: tuple[str, str, str, str] = ("cue_x0", "cue_y0", "cue_x1", "cue_y1")
CUE, MARK = "cue", "mark"
PHASES: tuple[str, ...] = (CUE, MARK)
COLUMNS: tuple[str, ...] = (PARTICIPANT, ARM, ITEM, PHASE)

#: Sixt et al. (ICLR 2022): N = 240 over three conditions.
PAPER_N_PER_ARM = 80


@dataclass(frozen=True)
class BiasResult:
    """``discovery``: per arm ``n`` (participants who answered the cue question), ``found``,
    ``share`` with ``share_low``/``share_high`` (Wilson).
    ``discovery_comparisons``: per arm ≠ reference, ``diff`` of shares with Newcombe's interval
    and the score test's ``p_value``. ``localisation``: per arm ``n_participants``, ``n_marks``, ``distance``
    (mean centre distance, pixels) and ``iou`` with t intervals. ``localisation_comparisons``:
    per arm ≠ reference, the Welch difference of mean centre distances.
    ``unanswered``: participants without a cue answer; ``unmarked``: mark rows without a box.
    """

    discovery: pd.DataFrame
    discovery_comparisons: pd.DataFrame
    localisation: pd.DataFrame
    localisation_comparisons: pd.DataFrame
    reference_arm: str
    unanswered: int
    unmarked: int

    def found_difference(self, arm: str) -> Estimate:
        row = self.discovery_comparisons[self.discovery_comparisons[ARM] == arm].iloc[0]
        return Estimate(float(row["diff"]), float(row["ci_low"]), float(row["ci_high"]), int(row["n"]),
                        "difference of proportions, Newcombe interval, score test", float(row["p_value"]))

    def distance_difference(self, arm: str) -> Estimate:
        row = self.localisation_comparisons[self.localisation_comparisons[ARM] == arm].iloc[0]
        return Estimate(float(row["diff"]), float(row["ci_low"]), float(row["ci_high"]), int(row["n"]),
                        "difference of mean centre distances, Welch", float(row["p_value"]))


def box_centre_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between the centres of boxes (N, 4) ``x0, y0, x1, y1``, row by row."""
    ca = np.column_stack([(a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2])
    cb = np.column_stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2])
    return np.hypot(*(ca - cb).T)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes (N, 4) ``x0, y0, x1, y1`` (exclusive ends), row by row."""
    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = w * h
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=float), where=union > 0)


def _normalise(cue: object) -> str:
    return " ".join(str(cue).casefold().split())


def _check(frame: pd.DataFrame) -> None:
    require_frame(frame, COLUMNS, name="bias frame")
    require_values(frame[PHASE], PHASES, name=PHASE)
    arms = frame.groupby(PARTICIPANT)[ARM].nunique()
    if (arms > 1).any():
        raise AnalysisInputError(f"participant(s) {list(arms[arms > 1].index[:5])} appear in more than one arm")
    if frame.duplicated([PARTICIPANT, ITEM, PHASE]).any():
        raise AnalysisInputError("bias frame has duplicated participant × item × phase rows")


def found_cue(frame: pd.DataFrame, planted_cue: str) -> pd.Series:
    """Per participant (index participant, arm): whether their cue choice is `planted_cue`
    (case- and space-insensitive). Participants without a cue row are absent."""
    _check(frame)
    rows = frame[frame[PHASE] == CUE]
    if rows.empty:
        return pd.Series(dtype=bool)
    require_frame(rows, [CHOSEN_CUE], name="bias cue rows")
    counts = rows.groupby(PARTICIPANT).size()
    if (counts > 1).any():
        raise AnalysisInputError(f"participant(s) {list(counts[counts > 1].index[:5])} have more than one cue answer")
    answered = rows.dropna(subset=[CHOSEN_CUE])
    target = _normalise(planted_cue)
    return answered.set_index([PARTICIPANT, ARM])[CHOSEN_CUE].map(lambda c: _normalise(c) == target).astype(bool)


def mark_errors(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per marked region: participant, arm, item, ``distance`` (centre to centre, pixels)
    and ``iou``. Mark rows without a box are dropped (see `BiasResult.unmarked`)."""
    _check(frame)
    rows = frame[frame[PHASE] == MARK]
    if rows.empty:
        return pd.DataFrame(columns=[PARTICIPANT, ARM, ITEM, "distance", "iou"])
    require_frame(rows, [*MARK_BOX, *CUE_BOX], name="bias mark rows")
    marked = rows.dropna(subset=list(MARK_BOX))
    if marked[list(CUE_BOX)].isna().any().any():
        raise AnalysisInputError("every marked image needs the planted cue's box")
    a = marked[list(MARK_BOX)].to_numpy(dtype=float)
    b = marked[list(CUE_BOX)].to_numpy(dtype=float)
    if (a[:, 2] <= a[:, 0]).any() or (a[:, 3] <= a[:, 1]).any() or (b[:, 2] <= b[:, 0]).any() or (b[:, 3] <= b[:, 1]).any():
        raise AnalysisInputError("a box has x1 <= x0 or y1 <= y0")
    out = marked[[PARTICIPANT, ARM, ITEM]].copy()
    out["distance"] = box_centre_distance(a, b)
    out["iou"] = box_iou(a, b)
    return out.reset_index(drop=True)


def analyse(frame: pd.DataFrame, *, planted_cue: str, reference_arm: str | None = None,
            level: float = 0.95) -> BiasResult:
    """Share who found `planted_cue` and localisation error per arm, each arm against the
    reference arm (default: the first in sorted order)."""
    _check(frame)
    found = found_cue(frame, planted_cue)
    errors = mark_errors(frame)
    arms = sorted(set(frame[ARM]), key=str)
    reference = reference_arm if reference_arm is not None else arms[0]
    if reference not in arms:
        raise AnalysisInputError(f"reference arm {reference!r} not in the data; arms: {arms}")
    arms = [reference, *[a for a in arms if a != reference]]
    found_arm = found.index.get_level_values(ARM) if len(found) else pd.Index([])
    counts = {arm: (int(found[found_arm == arm].sum()), int((found_arm == arm).sum())) for arm in arms}
    disc, disc_cmp = [], []
    for arm in arms:
        k, n = counts[arm]
        w = wilson(k, n, level=level)
        disc.append({ARM: arm, "n": n, "found": k, "share": w.estimate, "share_low": w.ci_low,
                     "share_high": w.ci_high})
        if arm != reference:
            d = proportion_diff(k, n, *counts[reference], level=level)
            disc_cmp.append({ARM: arm, "reference": reference, "diff": d.estimate, "ci_low": d.ci_low,
                             "ci_high": d.ci_high, "p_value": d.p_value, "n": d.n})
    per = errors.groupby([PARTICIPANT, ARM])[["distance", "iou"]].mean() if len(errors) else None
    loc, loc_cmp = [], []
    for arm in arms:
        sel = per.index.get_level_values(ARM) == arm if per is not None else np.zeros(0, dtype=bool)
        dist = mean_ci(per.loc[sel, "distance"].to_numpy() if per is not None else [], level=level)
        iou = mean_ci(per.loc[sel, "iou"].to_numpy() if per is not None else [], level=level)
        loc.append({ARM: arm, "n_participants": dist.n, "n_marks": int((errors[ARM] == arm).sum()),
                    "distance": dist.estimate, "distance_low": dist.ci_low, "distance_high": dist.ci_high,
                    "iou": iou.estimate, "iou_low": iou.ci_low, "iou_high": iou.ci_high})
        if arm != reference and per is not None:
            ref = per.index.get_level_values(ARM) == reference
            d = welch_diff(per.loc[sel, "distance"].to_numpy(), per.loc[ref, "distance"].to_numpy(), level=level)
            loc_cmp.append({ARM: arm, "reference": reference, "diff": d.estimate, "ci_low": d.ci_low,
                            "ci_high": d.ci_high, "p_value": d.p_value, "n": d.n})
    order = {ARM: arms}
    cmp_cols = [ARM, "reference", "diff", "ci_low", "ci_high", "p_value", "n"]
    mark_rows = frame[frame[PHASE] == MARK]
    unmarked = int(mark_rows[list(MARK_BOX)].isna().any(axis=1).sum()) if set(MARK_BOX) <= set(mark_rows) else 0
    return BiasResult(
        discovery=sort_levels(pd.DataFrame(disc), order),
        discovery_comparisons=pd.DataFrame(disc_cmp, columns=cmp_cols),
        localisation=sort_levels(pd.DataFrame(loc), order),
        localisation_comparisons=pd.DataFrame(loc_cmp, columns=cmp_cols),
        reference_arm=reference,
        unanswered=int(frame[PARTICIPANT].nunique() - len(found)),
        unmarked=unmarked,
    )


# --------------------------------------------------------------------------- synthetic participants


@dataclass(frozen=True)
class BiasPlan:
    """Synthetic bias-discovery participants with a planted discovery rate and marking precision.

    Participant in arm a picks the planted cue with probability ``found[a]`` (else one of the
    other candidates at random). On each of ``n_marks`` images they mark a box of the cue's size
    whose centre is the cue's centre plus N(0, ``mark_sd[a]``²) in x and in y. The boxes are not
    clipped to the image (the analysis does not need them inside), so the centre distance is
    Rayleigh-distributed with mean ``mark_sd[a]`` · sqrt(π/2) (`planted_distance`).
    Planted effects: ``found[a] - found[ref]`` and the difference of the Rayleigh means.
    """

    n_per_arm: int = PAPER_N_PER_ARM
    found: dict[str, float] = field(default_factory=lambda: {"Control": 0.30, "Explained": 0.50})
    mark_sd: dict[str, float] = field(default_factory=lambda: {"Control": 5.0, "Explained": 3.5})
    n_marks: int = 3
    cue_box: tuple[float, float, float, float] = (0.0, 0.0, 6.0, 6.0)  # the biased 8's square
    planted_cue: str = "grey square, top left"
    other_cues: tuple[str, ...] = ("stroke thickness", "loop at the bottom", "slant")

    def planted_found_difference(self, arm: str, reference: str) -> float:
        return self.found[arm] - self.found[reference]

    def planted_distance(self, arm: str) -> float:
        return self.mark_sd[arm] * float(np.sqrt(np.pi / 2))


def simulate_participants(plan: BiasPlan, *, seed: int | np.random.Generator = 0) -> pd.DataFrame:
    """A frame in this module's input format drawn from `plan`."""
    rng = np.random.default_rng(seed)
    if set(plan.found) != set(plan.mark_sd):
        raise ValueError("plan.found and plan.mark_sd must name the same arms")
    arms = list(plan.found)
    n = plan.n_per_arm * len(arms)
    people = np.array([f"p{i}" for i in range(n)])
    arm = np.repeat(arms, plan.n_per_arm)
    hit = rng.uniform(size=n) < np.array([plan.found[a] for a in arm])
    others = np.asarray(plan.other_cues)
    chosen = np.where(hit, plan.planted_cue, others[rng.integers(0, len(others), n)])
    cue = pd.DataFrame({PARTICIPANT: people, ARM: arm, ITEM: "cue-question", PHASE: CUE, CHOSEN_CUE: chosen})
    x0, y0, x1, y1 = plan.cue_box
    cx, cy, half_w, half_h = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    sd = np.repeat([plan.mark_sd[a] for a in arm], plan.n_marks)
    mx = cx + rng.normal(size=n * plan.n_marks) * sd
    my = cy + rng.normal(size=n * plan.n_marks) * sd
    marks = pd.DataFrame({PARTICIPANT: np.repeat(people, plan.n_marks), ARM: np.repeat(arm, plan.n_marks),
                          ITEM: np.tile([f"img{k}" for k in range(plan.n_marks)], n), PHASE: MARK,
                          "mark_x0": mx - half_w, "mark_y0": my - half_h, "mark_x1": mx + half_w,
                          "mark_y1": my + half_h, "cue_x0": x0, "cue_y0": y0, "cue_x1": x1, "cue_y1": y1})
    return pd.concat([cue, marks], ignore_index=True)


def power_at_paper_n(*, arm: str = "Explained", reference: str = "Control", plan: BiasPlan | None = None,
                     n_sims: int = 300, alpha: float = 0.05, seed: int = 0) -> ProtocolPower:
    """Power of the difference in the share who found the cue (score test, two-sided) at Sixt et
    al.'s 80 per arm (or `plan`'s n)."""
    plan = plan or BiasPlan()

    def one(rng: np.random.Generator) -> Estimate:
        f = simulate_participants(plan, seed=rng)
        found = found_cue(f, plan.planted_cue)
        arm_of = found.index.get_level_values(ARM)
        a, r = found[arm_of == arm], found[arm_of == reference]
        return proportion_diff(int(a.sum()), len(a), int(r.sum()), len(r))

    return power_by_simulation(one, planted=plan.planted_found_difference(arm, reference), protocol="bias",
                               measure=f"share who found the cue, {arm} - {reference}",
                               design=f"{plan.n_per_arm} per arm", n_sims=n_sims, alpha=alpha, seed=seed)
