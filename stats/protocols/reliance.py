"""AI-assisted decisions: human alone, AI alone, the team, and how appropriately people rely on the AI.

Papers and measures:

- Nguyen, Kim & Nguyen, "The effectiveness of feature attribution methods and its correlation
  with automatic evaluation scores", NeurIPS 2021: the accuracy of the human-AI team (the
  participant's final answer after seeing the model's answer and the arm's explanation) against
  the AI alone, per explanation arm (their strongest baseline arm shows nearest training
  examples instead of a heatmap).
- Schemmer, Kühl, Benz, Bartos & Satzger, "Appropriate Reliance on AI Advice: Conceptualization
  and the Effect of Explanations", IUI 2023. The participant answers alone, then sees the AI's
  advice and answers again. Appropriateness of reliance is two numbers:

  * **RAIR** (relative AI reliance) = the share of cases in which the participant switched to
    the AI's correct answer, among the cases where the participant's own first answer was
    wrong and the AI was right: #(initial wrong, AI right, final = AI) / #(initial wrong, AI right);
  * **RSR** (relative self-reliance) = the share of cases in which the participant kept their
    own correct answer, among the cases where the participant was right and the AI wrong:
    #(initial right, AI wrong, final = initial) / #(initial right, AI wrong).

  Both are computed per participant over that participant's eligible cases, then averaged over
  the participants of an arm (a participant without eligible cases has no value and is left
  out of that mean; the count used is reported). RAIR lives on model-right items and RSR on
  model-wrong items by construction, which is their split by model correctness.

Also per arm: **over-reliance** = P(final = AI's answer | AI wrong) and **under-reliance** =
P(final ≠ AI's answer | AI right), per participant then averaged; human-alone, AI-alone and team
accuracy, all items and split by whether the model was right. Arms are compared with a
reference arm by Welch's test on participant values. Intervals are t intervals over
participants (deviation: Schemmer et al. test with t-tests/ANOVA; Nguyen et al. report accuracies
with standard deviations).

Input frame (long format, one row per participant × item × phase):

===================  ===========================================================================
column               meaning
===================  ===========================================================================
``participant``      participant id
``arm``              the participant's arm
``item``             item id
``phase``            ``"alone"`` (first answer) or ``"assisted"`` (after the AI's advice)
``truth``            the ground-truth label of the item
``model_answer``     the AI's answer (shown in the assisted phase)
``answer``           the participant's answer in this phase
===================  ===========================================================================

``model_correct`` is derived from ``truth`` and ``model_answer``. Items where only one phase was
answered are left out (and counted in ``ReliancePanel.incomplete``).

Example::

    frame = simulate_participants(ReliancePlan(n_per_arm=100), seed=1)
    r = analyse(frame, reference_arm="Control")
    r.comparisons.query("measure == 'RAIR'")
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
    welch_diff,
)
from stats.protocols.schema import (
    ALL_ITEMS,
    ARM,
    ITEM,
    MODEL_CORRECT,
    MODEL_RIGHT,
    PARTICIPANT,
    PHASE,
    SUBSETS,
    answers_equal,
    require_frame,
    require_values,
    sort_levels,
)
from stats.schema import AnalysisInputError

TRUTH = "truth"
MODEL_ANSWER = "model_answer"
ANSWER = "answer"
ALONE, ASSISTED = "alone", "assisted"
PHASES: tuple[str, ...] = (ALONE, ASSISTED)
COLUMNS: tuple[str, ...] = (PARTICIPANT, ARM, ITEM, PHASE, TRUTH, MODEL_ANSWER, ANSWER)

HUMAN, AI, TEAM = "human alone", "AI alone", "team"
RAIR, RSR = "RAIR", "RSR"
OVER, UNDER = "over-reliance", "under-reliance"
MEASURES: tuple[str, ...] = (HUMAN, AI, TEAM, RAIR, RSR, OVER, UNDER)

#: Schemmer et al. (IUI 2023): 200 participants in two conditions (with and without explanations).
PAPER_N_PER_ARM = 100


@dataclass(frozen=True)
class ReliancePanel:
    """``measures``: per arm × measure × subset, the participant mean with its interval (columns
    ``arm, measure, subset, estimate, ci_low, ci_high, n``; ``n`` = participants with a value).
    ``comparisons``: per arm ≠ reference × measure × subset, the difference to the reference arm
    (Welch; columns ``arm, reference, measure, subset, diff, ci_low, ci_high, p_value``).
    ``per_participant``: the participant-level values the means rest on.
    """

    measures: pd.DataFrame
    comparisons: pd.DataFrame
    per_participant: pd.DataFrame
    reference_arm: str
    incomplete: int

    def measure(self, arm: str, measure: str, subset: str = ALL_ITEMS) -> Estimate:
        r = self.measures[(self.measures[ARM] == arm) & (self.measures["measure"] == measure)
                          & (self.measures["subset"] == subset)]
        if r.empty:
            raise KeyError((arm, measure, subset))
        row = r.iloc[0]
        return Estimate(float(row["estimate"]), float(row["ci_low"]), float(row["ci_high"]), int(row["n"]),
                        "participant mean, t interval")

    def comparison(self, arm: str, measure: str, subset: str = ALL_ITEMS) -> Estimate:
        r = self.comparisons[(self.comparisons[ARM] == arm) & (self.comparisons["measure"] == measure)
                             & (self.comparisons["subset"] == subset)]
        if r.empty:
            raise KeyError((arm, measure, subset))
        row = r.iloc[0]
        return Estimate(float(row["diff"]), float(row["ci_low"]), float(row["ci_high"]), int(row["n"]),
                        "difference of participant means, Welch", float(row["p_value"]))


def decisions(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per participant × item with the two answers side by side and the derived flags
    ``initial_correct, model_correct, final_correct, followed_ai, switched_to_ai, kept_own``;
    and the number of participant × item pairs dropped for missing a phase."""
    require_frame(frame, COLUMNS, name="reliance frame")
    require_values(frame[PHASE], PHASES, name=PHASE)
    if frame[ANSWER].isna().any():
        raise AnalysisInputError("reliance frame has rows without an answer")
    if frame.duplicated([PARTICIPANT, ITEM, PHASE]).any():
        raise AnalysisInputError("reliance frame has duplicated participant × item × phase rows")
    arms = frame.groupby(PARTICIPANT)[ARM].nunique()
    if (arms > 1).any():
        raise AnalysisInputError(f"participant(s) {list(arms[arms > 1].index[:5])} appear in more than one arm")
    keys = [PARTICIPANT, ARM, ITEM]
    alone = frame[frame[PHASE] == ALONE].set_index(keys)
    assisted = frame[frame[PHASE] == ASSISTED].set_index(keys)
    both = alone[[TRUTH, MODEL_ANSWER, ANSWER]].rename(columns={ANSWER: "initial"}).join(
        assisted[[ANSWER]].rename(columns={ANSWER: "final"}), how="inner")
    incomplete = len(alone) + len(assisted) - 2 * len(both)
    d = both.reset_index()
    if d.empty:
        raise AnalysisInputError("no item was answered both alone and assisted")
    d["initial_correct"] = answers_equal(d["initial"], d[TRUTH])
    d[MODEL_CORRECT] = answers_equal(d[MODEL_ANSWER], d[TRUTH])
    d["final_correct"] = answers_equal(d["final"], d[TRUTH])
    d["followed_ai"] = answers_equal(d["final"], d[MODEL_ANSWER])
    d["switched_to_ai"] = d["followed_ai"] & ~answers_equal(d["initial"], d[MODEL_ANSWER])
    d["kept_own"] = answers_equal(d["final"], d["initial"])
    return d, int(incomplete)


def _rate(flags: pd.Series, eligible: pd.Series, people: pd.Series) -> pd.Series:
    """Per participant: the share of `flags` among the rows where `eligible` (NaN without any)."""
    return flags[eligible].groupby(people[eligible]).mean().reindex(people.unique())


def participant_measures(d: pd.DataFrame) -> pd.DataFrame:
    """Per participant × subset, every measure of `MEASURES` (long: participant, arm, subset,
    measure, value). RAIR/RSR/over/under-reliance are only defined on their eligible cases."""
    out = []
    for subset in SUBSETS:
        rows = d if subset == ALL_ITEMS else d[d[MODEL_CORRECT] == (subset == MODEL_RIGHT)]
        if rows.empty:
            continue
        people = rows[PARTICIPANT]
        ones = pd.Series(True, index=rows.index)
        values = {
            HUMAN: _rate(rows["initial_correct"], ones, people),
            AI: _rate(rows[MODEL_CORRECT], ones, people),
            TEAM: _rate(rows["final_correct"], ones, people),
            RAIR: _rate(rows["switched_to_ai"], ~rows["initial_correct"] & rows[MODEL_CORRECT], people),
            RSR: _rate(rows["kept_own"], rows["initial_correct"] & ~rows[MODEL_CORRECT], people),
            OVER: _rate(rows["followed_ai"], ~rows[MODEL_CORRECT], people),
            UNDER: _rate(~rows["followed_ai"], rows[MODEL_CORRECT], people),
        }
        arm_of = rows.groupby(PARTICIPANT)[ARM].first()
        for name, series in values.items():
            out.append(pd.DataFrame({PARTICIPANT: series.index, ARM: arm_of.reindex(series.index).to_numpy(),
                                     "subset": subset, "measure": name, "value": series.to_numpy(dtype=float)}))
    return pd.concat(out, ignore_index=True)


def analyse(frame: pd.DataFrame, *, reference_arm: str | None = None, level: float = 0.95) -> ReliancePanel:
    """Every measure per arm with its interval, and each arm against `reference_arm` (default:
    the first arm in sorted order). Raises `AnalysisInputError` on a malformed frame."""
    d, incomplete = decisions(frame)
    arms = sorted(set(d[ARM]), key=str)
    reference = reference_arm if reference_arm is not None else arms[0]
    if reference not in arms:
        raise AnalysisInputError(f"reference arm {reference!r} not in the data; arms: {arms}")
    arms = [reference, *[a for a in arms if a != reference]]
    pm = participant_measures(d)
    m_rows, c_rows = [], []
    for (measure, subset), g in pm.groupby(["measure", "subset"], sort=False):
        if g["value"].notna().sum() == 0:  # undefined on this subset by construction (RAIR on model-wrong items)
            continue
        by_arm = {arm: g.loc[g[ARM] == arm, "value"].to_numpy(dtype=float) for arm in arms}
        for arm in arms:
            e = mean_ci(by_arm[arm], level=level)
            m_rows.append({ARM: arm, "measure": measure, "subset": subset, "estimate": e.estimate,
                           "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n})
            if arm != reference:
                c = welch_diff(by_arm[arm], by_arm[reference], level=level)
                c_rows.append({ARM: arm, "reference": reference, "measure": measure, "subset": subset,
                               "diff": c.estimate, "ci_low": c.ci_low, "ci_high": c.ci_high, "p_value": c.p_value,
                               "n": c.n})
    orders = {ARM: arms, "measure": list(MEASURES), "subset": list(SUBSETS)}
    measures = sort_levels(pd.DataFrame(m_rows), orders)
    comparisons = pd.DataFrame(c_rows, columns=[ARM, "reference", "measure", "subset", "diff", "ci_low", "ci_high",
                                                "p_value", "n"])
    if not comparisons.empty:
        comparisons = sort_levels(comparisons, orders)
    return ReliancePanel(measures=measures, comparisons=comparisons, per_participant=pm, reference_arm=reference,
                         incomplete=incomplete)


def rair_difference(frame: pd.DataFrame, arm: str, reference_arm: str, *, level: float = 0.95) -> Estimate:
    """RAIR(arm) - RAIR(reference), Welch on participant values: the quantity power is simulated for."""
    d, _ = decisions(frame)
    eligible = ~d["initial_correct"] & d[MODEL_CORRECT]
    per = d[eligible].groupby([PARTICIPANT, ARM])["switched_to_ai"].mean()
    arm_of = per.index.get_level_values(ARM)
    return welch_diff(per[arm_of == arm].to_numpy(dtype=float), per[arm_of == reference_arm].to_numpy(dtype=float),
                      level=level)


# --------------------------------------------------------------------------- synthetic participants


@dataclass(frozen=True)
class ReliancePlan:
    """Synthetic AI-assisted decisions with planted reliance per arm (binary task).

    Items: ``n_items`` per participant, the AI right on a share ``ai_accuracy`` of them (fixed per
    item, the same items for everyone). Participant i answers alone correctly with probability
    ``human_accuracy + a_i``, a_i ~ Uniform(-spread, spread). After the advice:

    - agreeing with the AI: the participant keeps the answer;
    - own answer wrong, AI right: switches to the AI with probability ``rair[arm] + b_i``;
    - own answer right, AI wrong: keeps the own answer with probability ``rsr[arm] + c_i``;

    b_i, c_i ~ Uniform(-spread, spread). A participant's RAIR estimates rair[arm] + b_i without
    bias, so the arm's mean RAIR is exactly ``rair[arm]`` in expectation (likewise RSR): the
    planted RAIR difference is ``rair[arm] - rair[reference]`` (`planted_rair_difference`).
    """

    n_per_arm: int = PAPER_N_PER_ARM
    n_items: int = 20
    ai_accuracy: float = 0.75
    human_accuracy: float = 0.6
    rair: dict[str, float] = field(default_factory=lambda: {"Control": 0.45, "Explained": 0.60})
    rsr: dict[str, float] = field(default_factory=lambda: {"Control": 0.55, "Explained": 0.55})
    spread: float = 0.15

    def planted_rair_difference(self, arm: str, reference: str) -> float:
        return self.rair[arm] - self.rair[reference]

    def planted_rsr_difference(self, arm: str, reference: str) -> float:
        return self.rsr[arm] - self.rsr[reference]


def simulate_participants(plan: ReliancePlan, *, seed: int | np.random.Generator = 0) -> pd.DataFrame:
    """A frame in this module's input format drawn from `plan` (labels 0/1)."""
    rng = np.random.default_rng(seed)
    if set(plan.rair) != set(plan.rsr):
        raise ValueError("plan.rair and plan.rsr must name the same arms")
    for p in (*plan.rair.values(), *plan.rsr.values(), plan.human_accuracy):
        if not plan.spread <= p <= 1 - plan.spread:
            raise ValueError("a planted probability ± spread leaves [0, 1]")
    arms = list(plan.rair)
    n = plan.n_per_arm * len(arms)
    m = plan.n_items
    truth = rng.integers(0, 2, m)
    n_right = int(round(plan.ai_accuracy * m))
    ai_right = np.zeros(m, dtype=bool)
    ai_right[rng.permutation(m)[:n_right]] = True
    ai = np.where(ai_right, truth, 1 - truth)
    arm = np.repeat(arms, plan.n_per_arm)
    a, b, c = (rng.uniform(-plan.spread, plan.spread, (n, 1)) for _ in range(3))
    initial_right = rng.uniform(size=(n, m)) < plan.human_accuracy + a
    initial = np.where(initial_right, truth, 1 - truth)
    rair = np.array([plan.rair[x] for x in arm])[:, None] + b
    rsr = np.array([plan.rsr[x] for x in arm])[:, None] + c
    u = rng.uniform(size=(n, m))
    switch = (~initial_right & ai_right & (u < rair)) | (initial_right & ~ai_right & (u >= rsr))
    final = np.where(switch, ai, initial)  # agreeing cases: initial == ai, final unchanged
    people = np.array([f"p{i}" for i in range(n)])
    base = {PARTICIPANT: np.repeat(people, m), ARM: np.repeat(arm, m), ITEM: np.tile(np.arange(m), n),
            TRUTH: np.tile(truth, n), MODEL_ANSWER: np.tile(ai, n)}
    alone = pd.DataFrame({**base, PHASE: ALONE, ANSWER: initial.ravel()})
    assisted = pd.DataFrame({**base, PHASE: ASSISTED, ANSWER: final.ravel()})
    return pd.concat([alone, assisted], ignore_index=True)[list(COLUMNS)]


def power_at_paper_n(*, arm: str = "Explained", reference: str = "Control", plan: ReliancePlan | None = None,
                     n_sims: int = 300, alpha: float = 0.05, seed: int = 0) -> ProtocolPower:
    """Power of the RAIR difference (Welch, two-sided) at Schemmer et al.'s 100 per arm (or `plan`'s n)."""
    plan = plan or ReliancePlan()

    def one(rng: np.random.Generator) -> Estimate:
        return rair_difference(simulate_participants(plan, seed=rng), arm, reference)

    return power_by_simulation(one, planted=plan.planted_rair_difference(arm, reference), protocol="reliance",
                               measure=f"RAIR {arm} - {reference}",
                               design=f"{plan.n_per_arm} per arm, {plan.n_items} items, AI accuracy {plan.ai_accuracy:g}",
                               n_sims=n_sims, alpha=alpha, seed=seed)
