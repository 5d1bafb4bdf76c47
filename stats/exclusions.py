"""Participant exclusion rules, configured by a dict, with a report of who was left out and why.

Rules (all optional; unknown keys and wrongly typed values are refused):

- ``"incomplete": true`` excludes participants who did not finish: ``completed`` is False on
  any of their rows (when that column exists) or, with ``"expected_trials": n``, they answered
  fewer than n distinct trials. With neither source of truth the rule is refused.
- ``"min_response_ms": m`` with ``"max_fast_share": s`` excludes participants whose share of
  trials answered in less than m ms is above s (e.g. 300 and 0.5: more than half of the
  answers faster than 0.3 s). The two keys go together. Trials without ``response_ms`` do not
  count either way.
- ``"attention_checks": true`` excludes participants with any failed attention check
  (``attention_check`` is False; missing means no check on that row).
- ``"min_total_seconds": a`` and/or ``"max_total_seconds": b`` (each optional, a <= b)
  exclude participants whose time on the whole study, ``total_seconds`` (one value per
  participant, repeated on their rows), is below a or above b (rule ``"total_duration"``). A
  participant without a duration (NaN: did not finish) is not judged by them.

Researcher rejections are not a configurable rule: a reject is an explicit decision. Rows whose
``rejected_reason`` is a non-empty string exclude their participant, always, under rule
``"rejected"`` with the reason in the report (nothing happens when the column is absent).

A participant failing several rules is listed once per rule. Rules are decided before the data
are seen and stored with the study's configuration; the report goes into the analysis report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from numbers import Real

import pandas as pd

from stats.schema import (
    STUDY_A_ARMS,
    AnalysisInputError,
    ordered_levels,
    require_columns,
)


@dataclass(frozen=True)
class ExclusionRules:
    incomplete: bool = False
    expected_trials: int | None = None
    min_response_ms: float | None = None
    max_fast_share: float | None = None
    attention_checks: bool = False
    min_total_seconds: float | None = None
    max_total_seconds: float | None = None

    @classmethod
    def from_config(cls, config: Mapping) -> ExclusionRules:
        """Validate a rules dict (e.g. from the study's JSON configuration)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown exclusion rule(s) {unknown}; known: {sorted(known)}")
        for key in ("incomplete", "attention_checks"):
            if key in config and not isinstance(config[key], bool):
                raise ValueError(
                    f"exclusion rule {key!r} must be true or false, not {config[key]!r}"
                )
        for key in (
            "min_response_ms", "max_fast_share", "expected_trials", "min_total_seconds",
            "max_total_seconds",
        ):
            value = config.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, Real) or value < 0:
                raise ValueError(f"exclusion rule {key!r} must be a number >= 0, not {value!r}")
        share = config.get("max_fast_share")
        if share is not None and share > 1:
            raise ValueError(f"max_fast_share is a share in [0, 1], not {share!r}")
        expected = config.get("expected_trials")
        if expected is not None and (int(expected) != expected or expected < 1):
            raise ValueError(f"expected_trials must be a whole number >= 1, not {expected!r}")
        if (config.get("min_response_ms") is None) != (config.get("max_fast_share") is None):
            raise ValueError("min_response_ms and max_fast_share must be given together")
        low, high = config.get("min_total_seconds"), config.get("max_total_seconds")
        if low is not None and high is not None and low > high:
            raise ValueError(
                f"min_total_seconds ({low!r}) must be at most max_total_seconds ({high!r})"
            )
        values = dict(config)
        if expected is not None:
            values["expected_trials"] = int(expected)
        return cls(**values)

    def as_dict(self) -> dict:
        """The active rules only (what a report should show)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) not in (None, False)
        }


@dataclass(frozen=True)
class ExclusionReport:
    """Who was excluded and why.

    - ``excluded``: ``participant, arm, rule, reason`` (one row per participant x failed rule);
    - ``counts``: ``arm, n_before, n_excluded, n_kept`` plus a final ``"all"`` row;
    - ``by_rule``: participants failing each active rule (a participant can fail several).
    """

    rules: dict
    excluded: pd.DataFrame
    counts: pd.DataFrame
    by_rule: dict[str, int]

    @property
    def excluded_participants(self) -> frozenset:
        return frozenset(self.excluded["participant"])

    @property
    def n_before(self) -> int:
        return int(self.counts["n_before"].iloc[-1])

    @property
    def n_excluded(self) -> int:
        return int(self.counts["n_excluded"].iloc[-1])

    @property
    def n_kept(self) -> int:
        return int(self.counts["n_kept"].iloc[-1])

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Drop the excluded participants from another frame (e.g. the ratings)."""
        require_columns(frame, ["participant"], name="frame")
        return frame[~frame["participant"].isin(self.excluded_participants)].reset_index(drop=True)

    def to_text(self) -> str:
        lines = [
            f"Exclusion rules: {self.rules or 'none'}",
            f"{self.n_excluded} of {self.n_before} participants excluded, {self.n_kept} kept.",
        ]
        for rule, n in self.by_rule.items():
            lines.append(f"  {rule}: {n}")
        for row in self.counts.itertuples():
            lines.append(f"  arm {row.arm}: {row.n_before} -> {row.n_kept}")
        for row in self.excluded.itertuples():
            lines.append(f"  - {row.participant} ({row.arm}): {row.reason}")
        return "\n".join(lines)


def apply_exclusions(
    trials: pd.DataFrame, rules: Mapping | ExclusionRules
) -> tuple[pd.DataFrame, ExclusionReport]:
    """Apply `rules` to tidy per-trial data; return ``(kept rows, report)``.

    `trials` needs ``participant`` (and ``arm`` for per-arm counts) plus the columns the active
    rules read: ``completed`` / ``trial_index``, ``response_ms``, ``attention_check``,
    ``total_seconds``; ``rejected_reason`` when present.
    """
    rules = rules if isinstance(rules, ExclusionRules) else ExclusionRules.from_config(rules)
    require_columns(trials, ["participant"], name="trials")
    frame = trials if "arm" in trials.columns else trials.assign(arm="(none)")
    arm_of = frame.groupby("participant", sort=False)["arm"].first()
    found: list[tuple[str, str, str]] = []
    by_rule: dict[str, int] = {}

    if rules.incomplete:
        has_completed = "completed" in frame.columns
        if not has_completed and rules.expected_trials is None:
            raise AnalysisInputError(
                "rule 'incomplete' needs a 'completed' column or 'expected_trials'"
            )
        hits = set()
        if has_completed:
            done = frame.groupby("participant", sort=False)["completed"].agg(
                lambda s: bool(s.fillna(False).astype(bool).all())
            )
            for participant in done[~done].index:
                found.append((participant, "incomplete", "did not complete the study"))
                hits.add(participant)
        if rules.expected_trials is not None:
            require_columns(frame, ["trial_index"], name="trials")
            answered = frame.groupby("participant", sort=False)["trial_index"].nunique()
            for participant, n in answered[answered < rules.expected_trials].items():
                found.append(
                    (participant, "incomplete", f"answered {n} of {rules.expected_trials} trials")
                )
                hits.add(participant)
        by_rule["incomplete"] = len(hits)

    if rules.min_response_ms is not None:
        require_columns(frame, ["response_ms"], name="trials")
        timed = frame.dropna(subset=["response_ms"])
        fast = (timed["response_ms"] < rules.min_response_ms).groupby(
            timed["participant"], sort=False
        )
        share, n_fast, n_timed = fast.mean(), fast.sum(), fast.size()
        too_fast = share[share > rules.max_fast_share].index
        for participant in too_fast:
            found.append(
                (
                    participant,
                    "too_fast",
                    f"{int(n_fast[participant])} of {int(n_timed[participant])} answers "
                    f"({share[participant]:.0%}) faster than {rules.min_response_ms:g} ms; "
                    f"limit {rules.max_fast_share:.0%}",
                )
            )
        by_rule["too_fast"] = len(too_fast)

    if rules.attention_checks:
        require_columns(frame, ["attention_check"], name="trials")
        checks = frame.dropna(subset=["attention_check"])
        failed = (~checks["attention_check"].astype(bool)).groupby(
            checks["participant"], sort=False
        )
        n_failed, n_checks = failed.sum(), failed.size()
        bad = n_failed[n_failed > 0].index
        for participant in bad:
            found.append(
                (
                    participant,
                    "attention_check",
                    f"failed {int(n_failed[participant])} of {int(n_checks[participant])} "
                    f"attention check(s)",
                )
            )
        by_rule["attention_check"] = len(bad)

    if rules.min_total_seconds is not None or rules.max_total_seconds is not None:
        require_columns(frame, ["total_seconds"], name="trials")
        seconds = pd.to_numeric(frame["total_seconds"], errors="coerce")
        total = seconds.groupby(frame["participant"], sort=False).first().dropna()
        hits = set()
        for participant, value in total.items():
            if rules.min_total_seconds is not None and value < rules.min_total_seconds:
                reason = f"took {value:.0f} s in all; minimum {rules.min_total_seconds:g} s"
            elif rules.max_total_seconds is not None and value > rules.max_total_seconds:
                reason = f"took {value:.0f} s in all; maximum {rules.max_total_seconds:g} s"
            else:
                continue
            found.append((participant, "total_duration", reason))
            hits.add(participant)
        by_rule["total_duration"] = len(hits)

    if "rejected_reason" in frame.columns:
        reasons = frame["rejected_reason"].where(
            frame["rejected_reason"].map(lambda v: isinstance(v, str) and v.strip() != "")
        )
        given = reasons.groupby(frame["participant"], sort=False).first().dropna()
        for participant, reason in given.items():
            found.append((participant, "rejected", f"rejected by the researcher: {reason.strip()}"))
        if len(given):
            by_rule["rejected"] = len(given)

    excluded = pd.DataFrame(found, columns=["participant", "rule", "reason"])
    excluded.insert(1, "arm", excluded["participant"].map(arm_of))
    excluded = excluded.sort_values(["participant", "rule"], kind="stable").reset_index(drop=True)
    dropped = set(excluded["participant"])

    arms = ordered_levels(arm_of.dropna(), STUDY_A_ARMS)
    before = arm_of.value_counts().reindex(arms, fill_value=0)
    out = arm_of[arm_of.index.isin(dropped)].value_counts().reindex(arms, fill_value=0)
    # The "all" row is built in, not appended with .loc: appending to the empty frame of a study
    # without arms is a setitem of incompatible dtype, which pandas 4 will refuse.
    counts = pd.DataFrame(
        {
            "arm": pd.Series([*arms, "all"], dtype=object),
            "n_before": [*before.to_numpy().tolist(), int(before.sum())],
            "n_excluded": [*out.to_numpy().tolist(), int(out.sum())],
        }
    )
    counts["n_kept"] = counts["n_before"] - counts["n_excluded"]
    counts[["n_before", "n_excluded", "n_kept"]] = counts[
        ["n_before", "n_excluded", "n_kept"]
    ].astype(int)

    kept = trials[~trials["participant"].isin(dropped)].reset_index(drop=True)
    report = ExclusionReport(
        rules=rules.as_dict(), excluded=excluded, counts=counts, by_rule=by_rule
    )
    return kept, report
