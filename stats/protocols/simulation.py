"""Forward and counterfactual simulation: can people predict the model's answer, and do explanations help?

Papers and measures:

- Hase & Bansal, "Evaluating Explainable AI: Which Algorithmic Explanations Help Users Predict
  Model Behavior?", ACL 2020. A pre-test (predict the model's answer, no explanation), a
  learning phase (inputs, the model's answers and the arm's explanations), a post-test on other
  inputs, test items balanced on model correctness. *Simulation accuracy* is the share of test
  items on which the participant's guess equals the model's answer; the *explanation effect* is
  the post - pre change of an explanation arm minus the change of the control arm (which sees
  the model's answers without explanations in the learning phase). Counterfactual simulation:
  a changed input whose model answer the participant predicts; scored separately.
- Colin, Fel, Cadène & Serre, "What I Cannot Predict, I Do Not Understand: A Human-Centered
  Evaluation Framework for Explainability Methods", NeurIPS 2022. *Utility* of an explanation
  method: its test accuracy relative to the no-explanation baseline arm. We read it as the
  ratio post-accuracy(arm) / post-accuracy(control) (1 = no gain) and give the difference
  alongside, so that either reading is at hand.

Deviations: the papers' intervals are bootstrap intervals; here every interval is a t interval
over participants (per-participant accuracies first: a person's answers are not independent),
Welch's for differences between arms, the delta method for Colin's ratio. Everything is given
for all test items and split by whether the model was right (``stats.protocols.schema.SUBSETS``).

Input frame (long format, one row per participant × item × phase):

===================  ===========================================================================
column               meaning
===================  ===========================================================================
``participant``      participant id
``arm``              the participant's arm (``control_arm`` names the no-explanation arm)
``item``             item id; an item a participant saw while learning may not test them
``phase``            ``"pre"``, ``"learn"`` or ``"post"``; ``"learn"`` rows are not scored
``item_kind``        ``"forward"`` or ``"counterfactual"``
``model_correct``    bool: the model's answer on this input equals the ground truth
``model_answer``     the model's answer on this input
``answer``           the participant's guess of the model's answer (missing on ``learn`` rows)
===================  ===========================================================================

Example::

    frame = simulate_participants(SimulationPlan(n_per_arm=40), seed=1)
    result = analyse(frame)
    result.effects.query("item_kind == 'forward' and subset == 'all'")[["arm", "effect", "effect_low"]]
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from stats.protocols.estimates import (
    Estimate,
    ProtocolPower,
    mean_ci,
    power_by_simulation,
    ratio_of_means,
    welch_diff,
)
from stats.protocols.schema import (
    ALL_ITEMS,
    ARM,
    ITEM,
    MODEL_CORRECT,
    PARTICIPANT,
    PHASE,
    SUBSETS,
    answers_equal,
    as_bool,
    model_subsets,
    require_frame,
    require_values,
    sort_levels,
)
from stats.schema import AnalysisInputError

ITEM_KIND = "item_kind"
MODEL_ANSWER = "model_answer"
ANSWER = "answer"

PRE, LEARN, POST = "pre", "learn", "post"
PHASES: tuple[str, ...] = (PRE, LEARN, POST)
FORWARD, COUNTERFACTUAL = "forward", "counterfactual"
ITEM_KINDS: tuple[str, ...] = (FORWARD, COUNTERFACTUAL)
COLUMNS: tuple[str, ...] = (PARTICIPANT, ARM, ITEM, PHASE, ITEM_KIND, MODEL_CORRECT, MODEL_ANSWER, ANSWER)

#: The n per arm we plan with as "the paper's n". Colin et al. report n = 1,150 participants over
#: three scenarios and several conditions each, i.e. some tens per condition; Hase & Bansal's
#: tests were smaller. 50 per arm is the order of Colin et al.'s per-condition n, not a figure
#: quoted from either paper.
PAPER_N_PER_ARM = 50


@dataclass(frozen=True)
class SimulationResult:
    """``accuracy``: per item kind × subset × arm, simulation accuracy pre and post and the change,
    each with its interval (columns ``item_kind, subset, arm, n, pre, pre_low, pre_high, post,
    post_low, post_high, change, change_low, change_high``).
    ``effects``: per item kind × subset × explanation arm, the explanation effect (change minus
    the control's change, Welch) and Colin's utility (post ratio and post difference to control)
    (columns ``item_kind, subset, arm, effect, effect_low, effect_high, effect_p, utility,
    utility_low, utility_high, utility_p, post_gain, post_gain_low, post_gain_high``).
    ``balance``: per item kind and test phase, the number of answers and the share on
    model-correct items (the papers balance it at 0.5; reported, not enforced).
    """

    accuracy: pd.DataFrame
    effects: pd.DataFrame
    control_arm: str
    n_participants: int
    balance: pd.DataFrame

    def effect(self, arm: str, *, item_kind: str = FORWARD, subset: str = ALL_ITEMS) -> Estimate:
        """The explanation effect of `arm` as an `Estimate` (the protocol's main number)."""
        row = self.effects[(self.effects[ITEM_KIND] == item_kind) & (self.effects["subset"] == subset)
                           & (self.effects[ARM] == arm)]
        if row.empty:
            raise KeyError(f"no effect for arm {arm!r}, {item_kind}, {subset}")
        r = row.iloc[0]
        return Estimate(float(r["effect"]), float(r["effect_low"]), float(r["effect_high"]), int(r["n"]),
                        "change minus control's change, Welch", float(r["effect_p"]))


def _scored(frame: pd.DataFrame) -> pd.DataFrame:
    require_frame(frame, COLUMNS, name="simulation frame")
    require_values(frame[PHASE], PHASES, name=PHASE)
    require_values(frame[ITEM_KIND], ITEM_KINDS, name=ITEM_KIND)
    arms_per_person = frame.groupby(PARTICIPANT)[ARM].nunique()
    if (arms_per_person > 1).any():
        raise AnalysisInputError(f"participant(s) {list(arms_per_person[arms_per_person > 1].index[:5])} "
                                 "appear in more than one arm")
    test = frame[frame[PHASE] != LEARN].copy()
    learned = set(zip(frame.loc[frame[PHASE] == LEARN, PARTICIPANT], frame.loc[frame[PHASE] == LEARN, ITEM],
                      strict=True))
    overlap = sorted({str(i) for p, i in zip(test[PARTICIPANT], test[ITEM], strict=True) if (p, i) in learned})
    if overlap:  # Hase & Bansal's first design rule: a participant's explained instances are never tested
        raise AnalysisInputError(f"item(s) {overlap[:5]} appear both in the learning phase and as test items")
    if test[ANSWER].isna().any() or test[MODEL_ANSWER].isna().any():
        raise AnalysisInputError("pre/post rows need both an answer and the model's answer")
    dup = test.duplicated([PARTICIPANT, ITEM, PHASE])
    if dup.any():
        raise AnalysisInputError(f"{int(dup.sum())} duplicated participant × item × phase row(s)")
    test[MODEL_CORRECT] = as_bool(test[MODEL_CORRECT], name=MODEL_CORRECT)
    test["hit"] = answers_equal(test[ANSWER], test[MODEL_ANSWER]).astype(float)
    return test


def _per_participant(test: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per participant and phase: index (participant, arm), columns pre, post (NaN where
    the participant has no items of the phase)."""
    acc = test.groupby([PARTICIPANT, ARM, PHASE])["hit"].mean().unstack(PHASE)
    return acc.reindex(columns=[PRE, POST])


def analyse(frame: pd.DataFrame, *, control_arm: str = "Control", level: float = 0.95) -> SimulationResult:
    """Simulation accuracy pre/post/change per arm, the explanation effect and Colin's utility.

    Raises `AnalysisInputError` on a malformed frame or a missing control arm.
    """
    test = _scored(frame)
    if control_arm not in set(test[ARM]):
        raise AnalysisInputError(f"control arm {control_arm!r} not in the data; arms: {sorted(set(test[ARM]))}")
    arms = [control_arm, *sorted(a for a in set(test[ARM]) if a != control_arm)]
    acc_rows, eff_rows = [], []
    for kind in ITEM_KINDS:
        kind_rows = test[test[ITEM_KIND] == kind]
        if kind_rows.empty:
            continue
        for subset, rows in model_subsets(kind_rows).items():
            pp = _per_participant(rows) if not rows.empty else pd.DataFrame(columns=[PRE, POST])
            change = pp[POST] - pp[PRE]
            by_arm: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for arm in arms:
                sel = pp.index.get_level_values(ARM) == arm if len(pp) else np.zeros(0, dtype=bool)
                pre_e = mean_ci(pp.loc[sel, PRE].to_numpy(), level=level)
                post_e = mean_ci(pp.loc[sel, POST].to_numpy(), level=level)
                ch = change[sel].to_numpy()
                ch_e = mean_ci(ch, level=level)
                by_arm[arm] = (ch, pp.loc[sel, POST].to_numpy())
                acc_rows.append({ITEM_KIND: kind, "subset": subset, ARM: arm, "n": int(sel.sum()),
                                 "pre": pre_e.estimate, "pre_low": pre_e.ci_low, "pre_high": pre_e.ci_high,
                                 "post": post_e.estimate, "post_low": post_e.ci_low, "post_high": post_e.ci_high,
                                 "change": ch_e.estimate, "change_low": ch_e.ci_low, "change_high": ch_e.ci_high})
            c_change, c_post = by_arm[control_arm]
            for arm in arms[1:]:
                a_change, a_post = by_arm[arm]
                eff = welch_diff(a_change, c_change, level=level)
                util = ratio_of_means(a_post, c_post, level=level)
                gain = welch_diff(a_post, c_post, level=level)
                eff_rows.append({ITEM_KIND: kind, "subset": subset, ARM: arm, "n": eff.n,
                                 "effect": eff.estimate, "effect_low": eff.ci_low, "effect_high": eff.ci_high,
                                 "effect_p": eff.p_value, "utility": util.estimate, "utility_low": util.ci_low,
                                 "utility_high": util.ci_high, "utility_p": util.p_value,
                                 "post_gain": gain.estimate, "post_gain_low": gain.ci_low,
                                 "post_gain_high": gain.ci_high})
    accuracy = pd.DataFrame(acc_rows)
    effects = pd.DataFrame(eff_rows, columns=[ITEM_KIND, "subset", ARM, "n", "effect", "effect_low", "effect_high",
                                              "effect_p", "utility", "utility_low", "utility_high", "utility_p",
                                              "post_gain", "post_gain_low", "post_gain_high"])
    accuracy = sort_levels(accuracy, {ITEM_KIND: list(ITEM_KINDS), "subset": list(SUBSETS), ARM: arms})
    balance = (test.groupby([ITEM_KIND, PHASE])[MODEL_CORRECT].agg(["size", "mean"])
               .rename(columns={"size": "n_answers", "mean": "share_model_correct"}).reset_index())
    return SimulationResult(accuracy=accuracy, effects=effects, control_arm=control_arm,
                            n_participants=int(test[PARTICIPANT].nunique()), balance=balance)


def explanation_effect(frame: pd.DataFrame, arm: str, *, control_arm: str = "Control", item_kind: str = FORWARD,
                       subset: str = ALL_ITEMS, level: float = 0.95) -> Estimate:
    """Only the explanation effect of `arm` (what `analyse` reports in ``effects``), computed
    without the rest of the tables: the quantity power is simulated for."""
    test = _scored(frame)
    rows = model_subsets(test[test[ITEM_KIND] == item_kind])[subset]
    pp = _per_participant(rows)
    change = pp[POST] - pp[PRE]
    arm_of = pp.index.get_level_values(ARM)
    eff = welch_diff(change[arm_of == arm].to_numpy(), change[arm_of == control_arm].to_numpy(), level=level)
    return eff


# --------------------------------------------------------------------------- synthetic participants


@dataclass(frozen=True)
class SimulationPlan:
    """A synthetic forward/counterfactual simulation study with a planted explanation effect.

    Participant i in arm a guesses the model's answer on a test item correctly with probability

        base[model correct or wrong] + skill_i + (phase is post) · gain[a]   (+ cf_offset on counterfactual items)

    with skill_i ~ Uniform(-skill_spread, skill_spread). All terms are on the probability scale
    and the defaults keep it inside (0, 1), so nothing is clipped and the expected change of arm
    a is exactly ``gain[a]``: the planted explanation effect of arm a is
    ``gain[a] - gain[control]`` (`planted_effect`), on every subset and item kind.
    Items are balanced on model correctness; the model's answers are binary.
    """

    n_per_arm: int = PAPER_N_PER_ARM
    gains: dict[str, float] = field(default_factory=lambda: {"Control": 0.04, "Explained": 0.12})
    control_arm: str = "Control"
    n_items: int = 16  # per phase and item kind, half of them model-correct
    n_learn: int = 10
    base_correct: float = 0.70
    base_wrong: float = 0.40
    cf_offset: float = -0.05
    skill_spread: float = 0.1
    counterfactual: bool = True

    def planted_effect(self, arm: str) -> float:
        return self.gains[arm] - self.gains[self.control_arm]


def simulate_participants(plan: SimulationPlan, *, seed: int | np.random.Generator = 0) -> pd.DataFrame:
    """A frame in this module's input format drawn from `plan` (see `SimulationPlan`)."""
    rng = np.random.default_rng(seed)
    if plan.control_arm not in plan.gains:
        raise ValueError("plan.gains must include the control arm")
    worst = max(plan.base_correct, plan.base_wrong) + plan.skill_spread + max(plan.gains.values())
    best = min(plan.base_correct, plan.base_wrong) - plan.skill_spread + min(0.0, *plan.gains.values()) + min(0.0, plan.cf_offset)
    if worst > 1 or best < 0:
        raise ValueError("the plan's probabilities leave [0, 1]; lower the gains or the skill spread")
    kinds = ITEM_KINDS if plan.counterfactual else (FORWARD,)
    # item bank: per kind and test phase n_items items, half model-correct; the model's binary answer
    items = []
    for kind in kinds:
        for phase in (PRE, POST):
            for k in range(plan.n_items):
                items.append((f"{kind[:2]}-{phase}-{k}", phase, kind, k % 2 == 0))
    learn = [(f"learn-{k}", LEARN, FORWARD, k % 2 == 0) for k in range(plan.n_learn)]
    item_frame = pd.DataFrame(items + learn, columns=[ITEM, PHASE, ITEM_KIND, MODEL_CORRECT])
    item_frame[MODEL_ANSWER] = rng.integers(0, 2, len(item_frame))
    arms = list(plan.gains)
    n = plan.n_per_arm * len(arms)
    people = pd.DataFrame({PARTICIPANT: [f"p{i}" for i in range(n)], ARM: np.repeat(arms, plan.n_per_arm),
                           "skill": rng.uniform(-plan.skill_spread, plan.skill_spread, n)})
    rows = people.merge(item_frame, how="cross")
    p = (np.where(rows[MODEL_CORRECT], plan.base_correct, plan.base_wrong) + rows["skill"]
         + (rows[PHASE] == POST) * rows[ARM].map(plan.gains) + (rows[ITEM_KIND] == COUNTERFACTUAL) * plan.cf_offset)
    hit = rng.uniform(size=len(rows)) < p
    answer = np.where(hit, rows[MODEL_ANSWER], 1 - rows[MODEL_ANSWER])
    rows[ANSWER] = pd.Series(answer, index=rows.index, dtype="Int64").where(rows[PHASE] != LEARN)
    return rows[list(COLUMNS)]


def power_at_paper_n(
    *, arm: str = "Explained", plan: SimulationPlan | None = None, n_sims: int = 300, alpha: float = 0.05,
    seed: int = 0,
) -> ProtocolPower:
    """Power of the explanation effect (forward items, all items, Welch, two-sided) at
    `PAPER_N_PER_ARM` per arm (or `plan`'s n), by simulating `plan` `n_sims` times."""
    plan = plan or SimulationPlan()
    simulated_plan = replace(plan, counterfactual=False)  # the forward test is what is powered

    def one(rng: np.random.Generator) -> Estimate:
        frame = simulate_participants(simulated_plan, seed=rng)
        return explanation_effect(frame, arm, control_arm=plan.control_arm)

    return power_by_simulation(
        one, planted=plan.planted_effect(arm), protocol="simulation", measure=f"explanation effect of {arm} (forward)",
        design=f"{plan.n_per_arm} per arm, {plan.n_items} forward items pre and post", n_sims=n_sims, alpha=alpha,
        seed=seed,
    )
