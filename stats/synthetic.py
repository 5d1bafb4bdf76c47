"""Synthetic participants with a planted per-arm learning effect (seeded, reproducible).

Study A: a participant of arm a answers trial t (0-based) correctly with probability

    p_a(t) = ceiling - (ceiling - start) · exp(-rate_i · t),

an exponential approach from `start` (0.5 = guessing between two classes) towards `ceiling`.
Each participant's rate is the arm's rate times exp(N(0, rate_sd²)), so people differ in how
fast they learn; with ``rate_sd = 0`` all participants of an arm share one curve. A wrong
answer is drawn uniformly from the other options.

- `choose_answer` is the per-trial decision the Django bots use through the real API;
  `SyntheticParticipant` holds one participant's seeded random stream and rate.
- `generate_study_a` / `generate_study_b` make whole tidy DataFrames for tests, figures and
  power simulations, with the same model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from stats.schema import STUDY_A_ARMS, STUDY_B_DATASETS, STUDY_B_STAGES


@dataclass(frozen=True)
class LearningCurve:
    """Probability of a correct answer as a function of the 0-based trial index."""

    start: float = 0.5
    ceiling: float = 0.9
    rate: float = 0.1
    rate_sd: float = 0.0

    def __post_init__(self) -> None:
        if not (0 <= self.start <= 1 and 0 <= self.ceiling <= 1):
            raise ValueError("start and ceiling must be probabilities")
        if self.rate < 0 or self.rate_sd < 0:
            raise ValueError("rate and rate_sd must be >= 0")

    def probability(self, trial_index, *, rate: float | np.ndarray | None = None) -> np.ndarray:
        """p(t) for scalar or array `trial_index` (broadcasts against an array `rate`)."""
        r = self.rate if rate is None else rate
        t = np.asarray(trial_index, dtype=float)
        return self.ceiling - (self.ceiling - self.start) * np.exp(-np.asarray(r) * t)

    def participant_rates(self, rng: np.random.Generator, size) -> np.ndarray:
        """Draw participant-specific rates: rate · exp(N(0, rate_sd²))."""
        if self.rate_sd == 0:
            return np.full(size, float(self.rate))
        return self.rate * np.exp(rng.normal(0.0, self.rate_sd, size))

    def expected_total(self, n_trials: int) -> float:
        """Expected correct answers over trials 0..n_trials-1 (at the arm's mean rate)."""
        return float(self.probability(np.arange(n_trials)).sum())


#: A clear planted effect for tests and demos: Control barely learns, CDeepEx learns fastest.
PLANTED_CURVES: dict[str, LearningCurve] = {
    "Control": LearningCurve(start=0.5, ceiling=0.9, rate=0.02),
    "GCAM": LearningCurve(start=0.5, ceiling=0.9, rate=0.06),
    "CDeepEx": LearningCurve(start=0.5, ceiling=0.9, rate=0.12),
}

#: The same for every arm: no effect (for false-positive checks).
NULL_CURVES: dict[str, LearningCurve] = {arm: LearningCurve(rate=0.05) for arm in STUDY_A_ARMS}


def seed_for(*parts: object) -> int:
    """A stable 63-bit seed from any parts, e.g. ``seed_for(study_seed, participant_code)``."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def choose_answer(
    *,
    arm: str,
    trial_index: int,
    correct_answer,
    options: Sequence,
    rng: np.random.Generator,
    curves: Mapping[str, LearningCurve] = PLANTED_CURVES,
    rate: float | None = None,
):
    """The synthetic participant's answer to one trial.

    Correct with probability ``curves[arm].probability(trial_index, rate=rate)``; otherwise a
    uniformly drawn other option. `correct_answer` is whatever the study scores against (the
    true label or the model's prediction). Uses exactly two draws from `rng` per call when
    wrong and one when right.
    """
    if arm not in curves:
        raise KeyError(f"no learning curve for arm {arm!r}; have {sorted(curves)}")
    options = list(options)
    if correct_answer not in options:
        raise ValueError(f"correct answer {correct_answer!r} is not among the options {options}")
    if trial_index < 0:
        raise ValueError("trial_index is 0-based and must be >= 0")
    p = float(curves[arm].probability(trial_index, rate=rate))
    if rng.random() < p:
        return correct_answer
    others = [o for o in options if o != correct_answer]
    if not others:
        return correct_answer
    return others[int(rng.integers(len(others)))]


@dataclass
class SyntheticParticipant:
    """One seeded synthetic participant of Study A, for bots that walk the real API.

    >>> bot = SyntheticParticipant("CDeepEx", seed=seed_for(1, "P001"))
    >>> bot.choose(0, "Peat", ["Ternal", "Peat"]) in ("Ternal", "Peat")
    True
    """

    arm: str
    seed: int
    curves: Mapping[str, LearningCurve] = field(default_factory=lambda: dict(PLANTED_CURVES))
    rating_probs: Sequence[float] = (0.1, 0.15, 0.3, 0.3, 0.15)
    median_response_ms: float = 2500.0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.rate = float(self.curves[self.arm].participant_rates(self.rng, 1)[0])

    def choose(self, trial_index: int, correct_answer, options: Sequence):
        """The answer to trial `trial_index` (see `choose_answer`)."""
        return choose_answer(
            arm=self.arm,
            trial_index=trial_index,
            correct_answer=correct_answer,
            options=options,
            rng=self.rng,
            curves=self.curves,
            rate=self.rate,
        )

    def response_ms(self) -> int:
        """A log-normal response time around `median_response_ms` (sigma 0.4)."""
        return int(round(self.median_response_ms * np.exp(self.rng.normal(0.0, 0.4))))

    def feedback_rating(self) -> int:
        """The end-of-study 1..5 feedback rating, drawn from `rating_probs`."""
        return int(self.rng.choice(np.arange(1, 6), p=np.asarray(self.rating_probs)))


def simulate_totals(
    curve: LearningCurve,
    *,
    n_participants: int,
    n_trials: int,
    n_sims: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Correct-answer totals of `n_participants` over `n_trials`, for `n_sims` replications.

    Returns an int array of shape ``(n_sims, n_participants)``.
    """
    rates = curve.participant_rates(rng, (n_sims, n_participants, 1))
    p = curve.probability(np.arange(n_trials)[None, None, :], rate=rates)
    p = np.broadcast_to(p, (n_sims, n_participants, n_trials))
    return (rng.random(p.shape) < p).sum(axis=2)


#: Table 5.2's mean correct answers after 20 trials (dissertation ch. 5).
DISSERTATION_TOTALS: dict[str, float] = {"Control": 9.714286, "GCAM": 10.333333, "CDeepEx": 10.666667}


def _mean_total(start: float, ceiling: float, rate: float, rate_sd: float, n_trials: int) -> float:
    """Mean of the expected total over participants' rates rate · exp(N(0, rate_sd²))."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    rates = rate * np.exp(rate_sd * nodes)
    t = np.arange(n_trials)
    totals = (ceiling - (ceiling - start) * np.exp(-rates[:, None] * t[None, :])).sum(axis=1)
    return float(weights @ totals / weights.sum())


def rate_for_total(
    target_total: float, *, start: float = 0.45, ceiling: float = 0.9, rate_sd: float = 0.0, n_trials: int = 20
) -> float:
    """The arm rate whose participants answer `target_total` of `n_trials` correctly on average."""
    from scipy import optimize

    low, high = start * n_trials, ceiling * n_trials
    if not low < target_total < high:
        raise ValueError(f"a mean total of {target_total} needs start·n < total < ceiling·n ({low:g}..{high:g})")
    return float(optimize.brentq(
        lambda r: _mean_total(start, ceiling, r, rate_sd, n_trials) - target_total, 1e-9, 50.0, xtol=1e-12
    ))


def dissertation_curves(
    *, start: float = 0.45, ceiling: float = 0.9, rate_sd: float = 0.5, n_trials: int = 20,
    totals: Mapping[str, float] = DISSERTATION_TOTALS,
) -> dict[str, LearningCurve]:
    """Learning curves whose mean totals after `n_trials` are Table 5.2's (a learning rate per arm).

    Control's 9.71 is below chance (10 of 20), so the curves start below 0.5 (default 0.45) and
    differ only in their rates. Independent trials cannot reproduce Table 5.2's SDs (1.6 to 1.8,
    below the binomial SD of about 2.2 of 20 near-coin flips), so the simulated studies are
    noisier than the published one: the same mean difference is a smaller standardised effect.
    """
    return {
        arm: LearningCurve(
            start=start, ceiling=ceiling, rate_sd=rate_sd,
            rate=rate_for_total(total, start=start, ceiling=ceiling, rate_sd=rate_sd, n_trials=n_trials),
        )
        for arm, total in totals.items()
    }


def simulate_answers(
    curve: LearningCurve,
    *,
    n_participants: int,
    n_trials: int,
    n_sims: int,
    rng: np.random.Generator,
    stimulus_effects: np.ndarray | None = None,
) -> np.ndarray:
    """Every answer (bool, shape ``(n_sims, n_participants, n_trials)``) of simulated studies.

    The trial-level version of `simulate_totals`: participant rates as in `LearningCurve`, and
    optionally a difficulty per stimulus, ``stimulus_effects`` of shape ``(n_sims, n_trials)``
    on the log-odds scale, shared by every arm of a replication (the same stimuli for all arms)
    and met in a per-participant shuffled order.
    """
    rates = curve.participant_rates(rng, (n_sims, n_participants, 1))
    p = np.broadcast_to(
        curve.probability(np.arange(n_trials)[None, None, :], rate=rates), (n_sims, n_participants, n_trials)
    )
    if stimulus_effects is not None:
        order = np.argsort(rng.random((n_sims, n_participants, n_trials)), axis=2)
        shift = np.take_along_axis(
            np.broadcast_to(stimulus_effects[:, None, :], order.shape), order, axis=2
        )
        q = np.clip(p, 1e-9, 1 - 1e-9)
        p = 1.0 / (1.0 + np.exp(-(np.log(q / (1 - q)) + shift)))
    return rng.random(p.shape) < p


def generate_study_a(
    n_per_arm: int | Mapping[str, int],
    *,
    curves: Mapping[str, LearningCurve] = PLANTED_CURVES,
    n_trials: int = 20,
    seed: int = 0,
    labels: tuple[str, str] = ("Ternal", "Peat"),
    model_error: float = 0.1,
    reference: str = "model_prediction",
    rating_probs: Mapping[str, Sequence[float]] | None = None,
    speeder_share: float = 0.0,
    dropout_share: float = 0.0,
    attention_fail_share: float = 0.0,
    attention_trial: int | None = None,
    stimulus_sd: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy Study A data from synthetic participants: ``(trials, ratings)``.

    - trials: ``participant, arm, trial_index, correct, response_ms, choice, true_label,
      model_prediction, attention_check, completed``. The model's prediction differs from the
      true label with probability `model_error`; ``correct`` and the learning curve refer to
      `reference` (``"model_prediction"`` as in the dissertation, or ``"true_label"``).
    - ratings: ``participant, arm, rating`` (1..5) for participants who completed.

    Misbehaviour to exercise exclusions (shares of participants, drawn independently):
    `speeder_share` answer every trial in about 150 ms; `dropout_share` stop after a random
    trial (``completed`` False, no rating); `attention_fail_share` fail the attention check
    recorded on trial `attention_trial` (``attention_check`` is True/False there and missing
    elsewhere; the column is all missing when `attention_trial` is None).

    `stimulus_sd` (None: off) adds a ``stimulus`` column: each participant meets stimuli
    ``S01..S<n_trials>`` in a shuffled order, and stimulus s shifts the log-odds of a correct
    answer by δ_s ~ N(0, stimulus_sd²), the same in every arm. Its draws come from a separate
    stream, so the other columns are those of the same seed without it when stimulus_sd is 0.
    """
    if reference not in ("model_prediction", "true_label"):
        raise ValueError("reference must be 'model_prediction' or 'true_label'")
    rng = np.random.default_rng(seed)
    sizes = n_per_arm if isinstance(n_per_arm, Mapping) else dict.fromkeys(curves, n_per_arm)
    arms = np.concatenate([[arm] * int(n) for arm, n in sizes.items()]).astype(object)
    rng.shuffle(arms)  # random order of enrolment
    n = len(arms)
    participants = np.array([f"P{i + 1:05d}" for i in range(n)], dtype=object)

    rates = np.empty(n)
    for arm in sizes:
        mask = arms == arm
        rates[mask] = curves[arm].participant_rates(rng, int(mask.sum()))
    t = np.arange(n_trials)
    p_correct = np.vstack(
        [curves[a].probability(t, rate=r) for a, r in zip(arms, rates, strict=True)]
    )
    stimulus_idx = None
    if stimulus_sd is not None:
        stim_rng = np.random.default_rng(seed_for(seed, "stimuli"))
        effects = stim_rng.normal(0.0, stimulus_sd, n_trials)
        stimulus_idx = np.argsort(stim_rng.random((n, n_trials)), axis=1)
        q = np.clip(p_correct, 1e-9, 1 - 1e-9)
        p_correct = 1.0 / (1.0 + np.exp(-(np.log(q / (1 - q)) + effects[stimulus_idx])))
    correct = rng.random((n, n_trials)) < p_correct

    label_arr = np.asarray(labels, dtype=object)
    true_idx = rng.integers(0, 2, (n, n_trials))
    model_wrong = rng.random((n, n_trials)) < model_error
    pred_idx = np.where(model_wrong, 1 - true_idx, true_idx)
    target_idx = pred_idx if reference == "model_prediction" else true_idx
    choice_idx = np.where(correct, target_idx, 1 - target_idx)

    response = np.rint(2500.0 * np.exp(rng.normal(0.0, 0.4, (n, n_trials)))).astype(int)
    speeder = rng.random(n) < speeder_share
    response[speeder] = rng.integers(100, 200, (int(speeder.sum()), n_trials))

    dropout = rng.random(n) < dropout_share
    last_trial = np.where(dropout, rng.integers(1, max(n_trials - 1, 2), n), n_trials)
    attention_failed = rng.random(n) < attention_fail_share

    trials = pd.DataFrame(
        {
            "participant": np.repeat(participants, n_trials),
            "arm": np.repeat(arms, n_trials),
            "trial_index": np.tile(t, n),
            "correct": correct.ravel(),
            "response_ms": response.ravel(),
            "choice": label_arr[choice_idx.ravel()],
            "true_label": label_arr[true_idx.ravel()],
            "model_prediction": label_arr[pred_idx.ravel()],
            "completed": np.repeat(~dropout, n_trials),
        }
    )
    if stimulus_idx is not None:
        trials["stimulus"] = np.asarray([f"S{i + 1:02d}" for i in range(n_trials)], dtype=object)[stimulus_idx.ravel()]
    attention = pd.Series(pd.NA, index=trials.index, dtype="boolean")
    if attention_trial is not None:
        on_check = trials["trial_index"] == attention_trial
        attention[on_check] = ~np.repeat(attention_failed, n_trials)[on_check.to_numpy()]
    trials["attention_check"] = attention
    trials = trials[trials["trial_index"] < np.repeat(last_trial, n_trials)].reset_index(drop=True)

    default_probs = (0.1, 0.15, 0.3, 0.3, 0.15)
    ratings = []
    for participant, arm, done in zip(participants, arms, ~dropout, strict=True):
        if done:
            probs = (rating_probs or {}).get(arm, default_probs)
            ratings.append(
                (participant, arm, int(rng.choice(np.arange(1, 6), p=np.asarray(probs))))
            )
    ratings_df = pd.DataFrame(ratings, columns=["participant", "arm", "rating"])
    return trials, ratings_df


#: Share of images a synthetic participant places with the others of its predicted class, per
#: dataset and stage (the rest go to a random cluster). Chosen so that mean purities land near
#: the paper's (CUB: NoVis 56%, 1-Heatmap 62%, XNN 72%; CEL: 75%, 69.6%, 79%). A purely random
#: split of 10 images into 4 clusters already has a mean purity of about 0.59, so CUB NoVis
#: cannot go below that here (accuracy 0 gives about 0.59).
PAPER_LIKE_ACCURACY: dict[str, dict[str, float]] = {
    "CUB": {"NoVis": 0.0, "1-Heatmap": 0.22, "XNN": 0.55},
    "CEL": {"NoVis": 0.60, "1-Heatmap": 0.47, "XNN": 0.67},
}


def generate_study_b(
    n_participants: int,
    *,
    accuracy: Mapping[str, Mapping[str, float]] = PAPER_LIKE_ACCURACY,
    n_images: int = 10,
    n_classes: int = 4,
    seed: int = 0,
    confidence_means: Mapping[str, float] | None = None,
    agent_means: Mapping[str, float] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Synthetic Study B data: ``(groupings, confidence, agent_ratings)``.

    - groupings: ``participant, stage, dataset, image_id, cluster, predicted_class``, one batch
      of `n_images` per participant x stage x dataset. With probability
      ``accuracy[dataset][stage]`` an image goes to the participant's cluster for its predicted
      class (a random relabelling per batch), otherwise to a uniformly random cluster.
    - confidence: ``participant, dataset, stage, confidence`` (0..6), rounded normal draws
      (SD 1.2) around `confidence_means` per stage.
    - agent_ratings: ``participant, agent, rating`` (1..7) around `agent_means`.
    """
    rng = np.random.default_rng(seed)
    confidence_means = confidence_means or {"NoVis": 2.0, "1-Heatmap": 3.0, "XNN": 3.4}
    agent_means = agent_means or {"1-Heatmap": 4.2, "XNN": 5.3}
    rows, conf_rows, agent_rows = [], [], []
    for i in range(n_participants):
        participant = f"B{i + 1:04d}"
        for dataset in STUDY_B_DATASETS:
            for stage in STUDY_B_STAGES:
                q = accuracy[dataset][stage]
                predicted = rng.integers(0, n_classes, n_images)
                relabel = rng.permutation(n_classes)
                random_cluster = rng.integers(0, n_classes, n_images)
                follows = rng.random(n_images) < q
                clusters = np.where(follows, relabel[predicted], random_cluster)
                for k in range(n_images):
                    rows.append(
                        (
                            participant,
                            stage,
                            dataset,
                            f"{dataset}-{stage}-{i}-{k}",
                            int(clusters[k]),
                            f"class{predicted[k]}",
                        )
                    )
                level = int(np.clip(np.rint(rng.normal(confidence_means[stage], 1.2)), 0, 6))
                conf_rows.append((participant, dataset, stage, level))
        for agent, mean in agent_means.items():
            agent_rows.append(
                (participant, agent, int(np.clip(np.rint(rng.normal(mean, 1.2)), 1, 7)))
            )
    groupings = pd.DataFrame(
        rows, columns=["participant", "stage", "dataset", "image_id", "cluster", "predicted_class"]
    )
    confidence = pd.DataFrame(conf_rows, columns=["participant", "dataset", "stage", "confidence"])
    agents = pd.DataFrame(agent_rows, columns=["participant", "agent", "rating"])
    return groupings, confidence, agents
