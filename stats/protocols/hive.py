"""HIVE agreement and distinction: do explanations let people tell right predictions from wrong ones?

Paper: Kim, Meister, Ramaswamy, Fong & Russakovsky, "HIVE: Evaluating the Human Interpretability
of Visual Explanations", ECCV 2022. Measures as in the paper:

- **Agreement**: one prediction with its explanation, "how confident are you that this
  prediction is correct?" on a 4-point scale (`HIVE_CONFIDENCE`, coded 1-4, higher = more
  confident), for model-correct and model-wrong items. The paper's measure: mean confidence on
  correct and on incorrect predictions, and the difference (an explanation that helps people
  calibrate their trust gives a clearly positive difference). Also the share of answers on the
  confident half of the scale (3-4), per correctness.
- **Distinction**: the explanations of the model's top four classes side by side, "which one is
  the model's prediction?" Accuracy against chance (1/4 with four options), one-sided exact
  binomial test (scipy ``binomtest``, alternative "greater") on all answers of an arm, with a
  Wilson interval.

Deviations and additions: the confidence difference is a paired comparison within participant
(each participant's mean on correct minus mean on wrong items, t interval over participants),
because the paper's participants rated both kinds. The pooled binomial test treats every answer
as independent; with participants who differ in skill that is optimistic, so the participant-
level one-sample t-test against chance is reported beside it (``distinction_by_participant``).

Input frame (long format, one row per participant × item × phase):

===================  ===========================================================================
column               meaning
===================  ===========================================================================
``participant``      participant id
``arm``              the explanation method the participant saw
``item``             item id
``phase``            ``"agreement"`` or ``"distinction"``
``model_correct``    agreement rows: the model's prediction is right (bool)
``confidence``       agreement rows: code 1-4 of `HIVE_CONFIDENCE`
``answer``           distinction rows: the option the participant chose
``model_answer``     distinction rows: the option that is the model's prediction
===================  ===========================================================================

Example::

    r = analyse(simulate_participants(HivePlan(), seed=1))
    r.agreement[["arm", "conf_correct", "conf_wrong", "difference", "difference_low"]]
    r.distinction[["arm", "accuracy", "accuracy_low", "p_binomial"]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from stats.protocols.estimates import Estimate, ProtocolPower, mean_ci, power_by_simulation, wilson
from stats.protocols.schema import (
    ARM,
    ITEM,
    MODEL_CORRECT,
    PARTICIPANT,
    PHASE,
    answers_equal,
    as_bool,
    require_frame,
    require_values,
)
from stats.schema import AnalysisInputError, require_codes

CONFIDENCE = "confidence"
ANSWER = "answer"
MODEL_ANSWER = "model_answer"
AGREEMENT, DISTINCTION = "agreement", "distinction"
PHASES: tuple[str, ...] = (AGREEMENT, DISTINCTION)
COLUMNS: tuple[str, ...] = (PARTICIPANT, ARM, ITEM, PHASE)

#: HIVE's 4-point confidence scale, coded upwards (labels as the study shows them; the
#: researcher may reword them, the analysis reads the codes).
#: HIVE's own wording (princetonvisualai/HIVE, hit_templates/task_protopnet_agreement.html: "What do
#: you think about the model's prediction?"), coded 1-4, higher = more confident it is correct.
HIVE_CONFIDENCE: dict[int, str] = {
    1: "Fairly confident that prediction is incorrect",
    2: "Somewhat confident that prediction is incorrect",
    3: "Somewhat confident that prediction is correct",
    4: "Fairly confident that prediction is correct",
}
CONFIDENT_FROM = 3  # codes >= this are "confident"

#: HIVE recruited roughly 50 participants per method and task (nearly 1,000 participants over
#: four methods and their studies); 50 per arm is what the power is computed at.
PAPER_N_PER_ARM = 50


@dataclass(frozen=True)
class HiveResult:
    """``agreement``: per arm, ``n`` participants, mean confidence on model-correct items
    (``conf_correct``, ``_low``, ``_high``), on model-wrong items (``conf_wrong``...), the paired
    difference (``difference``, ``_low``, ``_high``, ``difference_p``) and the share of confident
    answers per correctness (``confident_correct``, ``confident_wrong``).
    ``distinction``: per arm, ``n_answers``, ``n_correct``, ``accuracy`` with its Wilson interval,
    ``chance``, ``p_binomial`` (one-sided exact binomial test against chance) and the
    participant-level accuracy with its t interval and one-sided t-test (``participant_*``).
    """

    agreement: pd.DataFrame
    distinction: pd.DataFrame

    def difference(self, arm: str) -> Estimate:
        row = self.agreement[self.agreement[ARM] == arm].iloc[0]
        return Estimate(float(row["difference"]), float(row["difference_low"]), float(row["difference_high"]),
                        int(row["n"]), "paired difference of participant means, t interval",
                        float(row["difference_p"]))

    def accuracy(self, arm: str) -> Estimate:
        row = self.distinction[self.distinction[ARM] == arm].iloc[0]
        return Estimate(float(row["accuracy"]), float(row["accuracy_low"]), float(row["accuracy_high"]),
                        int(row["n_answers"]), "Wilson interval; exact binomial test against chance (greater)",
                        float(row["p_binomial"]), null=float(row["chance"]))


def _check(frame: pd.DataFrame) -> None:
    require_frame(frame, COLUMNS, name="HIVE frame")
    require_values(frame[PHASE], PHASES, name=PHASE)
    if frame.duplicated([PARTICIPANT, ITEM, PHASE]).any():
        raise AnalysisInputError("HIVE frame has duplicated participant × item × phase rows")
    arms = frame.groupby(PARTICIPANT)[ARM].nunique()
    if (arms > 1).any():
        raise AnalysisInputError(f"participant(s) {list(arms[arms > 1].index[:5])} appear in more than one arm")


def agreement(frame: pd.DataFrame, *, level: float = 0.95) -> pd.DataFrame:
    """The agreement table of `HiveResult` from the ``agreement`` rows of `frame`."""
    _check(frame)
    rows = frame[frame[PHASE] == AGREEMENT]
    if rows.empty:
        return pd.DataFrame(columns=[ARM, "n"])
    require_frame(rows, [MODEL_CORRECT, CONFIDENCE], name="HIVE agreement rows")
    if rows[CONFIDENCE].isna().any():
        raise AnalysisInputError("agreement rows need a confidence code")
    require_codes(rows[CONFIDENCE], HIVE_CONFIDENCE, name=CONFIDENCE)
    rows = rows.assign(**{MODEL_CORRECT: as_bool(rows[MODEL_CORRECT], name=MODEL_CORRECT),
                          CONFIDENCE: rows[CONFIDENCE].astype(float)})
    per = rows.groupby([PARTICIPANT, ARM, MODEL_CORRECT])[CONFIDENCE].mean().unstack(MODEL_CORRECT)
    per = per.reindex(columns=[True, False])
    out = []
    for arm in sorted(set(rows[ARM]), key=str):
        p = per[per.index.get_level_values(ARM) == arm]
        right, wrong = mean_ci(p[True].to_numpy(), level=level), mean_ci(p[False].to_numpy(), level=level)
        diff = mean_ci((p[True] - p[False]).to_numpy(), level=level)
        a = rows[rows[ARM] == arm]
        confident = a[CONFIDENCE] >= CONFIDENT_FROM
        out.append({ARM: arm, "n": diff.n, "conf_correct": right.estimate, "conf_correct_low": right.ci_low,
                    "conf_correct_high": right.ci_high, "conf_wrong": wrong.estimate, "conf_wrong_low": wrong.ci_low,
                    "conf_wrong_high": wrong.ci_high, "difference": diff.estimate, "difference_low": diff.ci_low,
                    "difference_high": diff.ci_high, "difference_p": diff.p_value,
                    "confident_correct": float(confident[a[MODEL_CORRECT]].mean()),
                    "confident_wrong": float(confident[~a[MODEL_CORRECT]].mean())})
    return pd.DataFrame(out)


def distinction(frame: pd.DataFrame, *, n_options: int = 4, level: float = 0.95) -> pd.DataFrame:
    """The distinction table of `HiveResult` from the ``distinction`` rows of `frame`."""
    if n_options < 2:
        raise ValueError("n_options must be at least 2")
    _check(frame)
    rows = frame[frame[PHASE] == DISTINCTION]
    if rows.empty:
        return pd.DataFrame(columns=[ARM, "n_answers"])
    require_frame(rows, [ANSWER, MODEL_ANSWER], name="HIVE distinction rows")
    if rows[ANSWER].isna().any() or rows[MODEL_ANSWER].isna().any():
        raise AnalysisInputError("distinction rows need the chosen option and the model's option")
    hit = answers_equal(rows[ANSWER], rows[MODEL_ANSWER]).astype(float)
    chance = 1.0 / n_options
    out = []
    for arm in sorted(set(rows[ARM]), key=str):
        sel = rows[ARM] == arm
        k, n = int(hit[sel].sum()), int(sel.sum())
        w = wilson(k, n, level=level)
        p = float(stats.binomtest(k, n, chance, alternative="greater").pvalue)
        per = hit[sel].groupby(rows.loc[sel, PARTICIPANT]).mean().to_numpy()
        t = mean_ci(per, level=level, null=chance, alternative="greater")
        out.append({ARM: arm, "n_answers": n, "n_correct": k, "accuracy": w.estimate, "accuracy_low": w.ci_low,
                    "accuracy_high": w.ci_high, "chance": chance, "p_binomial": p,
                    "n_participants": t.n, "participant_accuracy": t.estimate, "participant_low": t.ci_low,
                    "participant_high": t.ci_high, "participant_p": t.p_value})
    return pd.DataFrame(out)


def analyse(frame: pd.DataFrame, *, n_options: int = 4, level: float = 0.95) -> HiveResult:
    """Agreement by model correctness and distinction accuracy against chance, per arm."""
    return HiveResult(agreement=agreement(frame, level=level),
                      distinction=distinction(frame, n_options=n_options, level=level))


# --------------------------------------------------------------------------- synthetic participants


@dataclass(frozen=True)
class HivePlan:
    """Synthetic HIVE participants with a planted confidence gap and distinction accuracy (one arm).

    Agreement: latent = mu[correct or wrong] + u_i + e, u_i ~ N(0, participant_sd²), e ~ N(0, 1);
    the rating is 1 + the number of thresholds (-1, 0, 1) below the latent value. The planted
    confidence difference is E[rating | correct] - E[rating | wrong] over participants, exactly
    1 + Σ_k Φ((mu - τ_k) / sqrt(1 + participant_sd²)) for each (`planted_difference`).
    Distinction: participant i picks the model's option with probability
    ``accuracy + a_i``, a_i ~ Uniform(-spread, spread), otherwise one of the other options at
    random; the planted accuracy is ``accuracy``.
    """

    n_per_arm: int = PAPER_N_PER_ARM
    arm: str = "GradCAM"
    n_agreement: int = 10  # half model-correct
    n_distinction: int = 10
    mu_correct: float = 0.45
    mu_wrong: float = 0.15
    participant_sd: float = 0.7
    accuracy: float = 0.32
    spread: float = 0.1
    n_options: int = 4
    thresholds: tuple[float, float, float] = (-1.0, 0.0, 1.0)

    def expected_confidence(self, mu: float) -> float:
        scale = float(np.sqrt(1 + self.participant_sd**2))
        return 1.0 + float(sum(stats.norm.cdf((mu - t) / scale) for t in self.thresholds))

    def planted_difference(self) -> float:
        return self.expected_confidence(self.mu_correct) - self.expected_confidence(self.mu_wrong)


def simulate_participants(plan: HivePlan, *, seed: int | np.random.Generator = 0) -> pd.DataFrame:
    """A frame in this module's input format drawn from `plan`."""
    rng = np.random.default_rng(seed)
    if not plan.spread <= plan.accuracy <= 1 - plan.spread:
        raise ValueError("accuracy ± spread leaves [0, 1]")
    n, m, q = plan.n_per_arm, plan.n_agreement, plan.n_distinction
    people = np.array([f"p{i}" for i in range(n)])
    correct = np.arange(m) % 2 == 0
    u = rng.normal(0, plan.participant_sd, (n, 1))
    latent = np.where(correct, plan.mu_correct, plan.mu_wrong)[None, :] + u + rng.normal(size=(n, m))
    rating = 1 + (latent[:, :, None] > np.asarray(plan.thresholds)[None, None, :]).sum(axis=2)
    agree = pd.DataFrame({PARTICIPANT: np.repeat(people, m), ARM: plan.arm, ITEM: np.tile([f"a{k}" for k in range(m)], n),
                          PHASE: AGREEMENT, MODEL_CORRECT: np.tile(correct, n), CONFIDENCE: rating.ravel()})
    p = plan.accuracy + rng.uniform(-plan.spread, plan.spread, (n, 1))
    model_option = rng.integers(0, plan.n_options, (n, q))
    hit = rng.uniform(size=(n, q)) < p
    other = (model_option + rng.integers(1, plan.n_options, (n, q))) % plan.n_options
    chosen = np.where(hit, model_option, other)
    dist = pd.DataFrame({PARTICIPANT: np.repeat(people, q), ARM: plan.arm, ITEM: np.tile([f"d{k}" for k in range(q)], n),
                         PHASE: DISTINCTION, ANSWER: chosen.ravel(), MODEL_ANSWER: model_option.ravel()})
    return pd.concat([agree, dist], ignore_index=True)


def power_at_paper_n(*, task: str = DISTINCTION, plan: HivePlan | None = None, n_sims: int = 300,
                     alpha: float = 0.05, seed: int = 0) -> ProtocolPower:
    """Power at HIVE's 50 participants per method (or `plan`'s n): for ``task="distinction"`` of
    the one-sided binomial test of accuracy > chance; for ``"agreement"`` of the two-sided paired
    test of the confidence difference."""
    plan = plan or HivePlan()
    if task == DISTINCTION:
        def one(rng: np.random.Generator) -> Estimate:
            f = simulate_participants(plan, seed=rng)
            return HiveResult(pd.DataFrame(), distinction(f, n_options=plan.n_options)).accuracy(plan.arm)
        planted, measure = plan.accuracy, f"distinction accuracy vs chance {1 / plan.n_options:g}"
        design = f"{plan.n_per_arm} participants, {plan.n_distinction} distinction items each"
    elif task == AGREEMENT:
        def one(rng: np.random.Generator) -> Estimate:
            f = simulate_participants(plan, seed=rng)
            return HiveResult(agreement(f), pd.DataFrame()).difference(plan.arm)
        planted, measure = plan.planted_difference(), "confidence correct - wrong (1-4 scale)"
        design = f"{plan.n_per_arm} participants, {plan.n_agreement} agreement items each"
    else:
        raise ValueError(f"task must be {AGREEMENT!r} or {DISTINCTION!r}")
    return power_by_simulation(one, planted=planted, protocol="hive", measure=measure, design=design,
                               n_sims=n_sims, alpha=alpha, seed=seed)
