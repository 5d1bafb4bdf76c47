"""The "Do the automatic metrics predict people?" section of a study's analysis page and report
(`studyapp.analysis.metrics_people`'s results as tables and sentences): per explanation method,
each metric's coefficient on the outcome with its interval, the participants and items it rests
on, and a plain sentence."""

from __future__ import annotations

import math

from stats.schema import AnalysisInputError
from studyapp.analysis.metrics_people import (
    MetricsPeople,
    metric_label,
    metrics_people_results,
    source_of,
)
from studyapp.analysis.presenters import cell, count, table
from studyapp.pipeline.models import ExplanationAsset
from studyapp.studies.models import Study

#: Fewer participants or items than this: cluster-robust intervals are too narrow
#: (`stats.protocols.metrics_people`'s caveat), and the page says so.
FEW_CLUSTERS = 20

OUTCOME_WORDS = {"correct": ("P(correct)", "percentage points of accuracy"), "rating": ("rating", "rating points")}


def _sentence(metric: str, row, outcome: str, level: float) -> str:
    """E.g. "One SD of APEM score (12.3) more goes with +8.1 percentage points of accuracy [2.0, 14.2]; 95% interval excludes 0."""
    name = metric_label(metric)
    scale = 100 if outcome == "correct" else 1
    unit = OUTCOME_WORDS.get(outcome, (outcome, f"{outcome} units"))[1]
    est, low, high = (row[k] * scale for k in ("per_sd", "per_sd_low", "per_sd_high"))
    if not (math.isfinite(low) and math.isfinite(high)):
        return (f"{name}: no interval could be estimated (too few participants or items, or the metric does not vary "
                "within them); no conclusion.")
    verdict = ("the interval excludes 0: people did better with higher values" if low > 0 else
               "the interval excludes 0: people did worse with higher values" if high < 0 else
               "the interval includes 0: no evidence that it predicts people")
    return (f"One standard deviation more of {name} ({row['sd']:.3g}) goes with {est:+.1f} {unit} "
            f"[{low:+.1f}, {high:+.1f}] ({level:.0%} interval); {verdict}.")


def _method_label(method: str) -> str:
    try:
        return str(ExplanationAsset.Method(method).label)
    except ValueError:
        return method


def present(result: MetricsPeople) -> dict:
    """The section's context from already computed results (the page and the report share it)."""
    label, _ = OUTCOME_WORDS.get(result.outcome, (result.outcome, ""))
    methods = []
    for m in result.methods:
        rows, sentences = [], []
        for _, r in m.coefficients.iterrows():
            rows.append([
                cell(metric_label(r["metric"])),
                {"text": f"{r['coef']:.4g} [{r['ci_low']:.4g}, {r['ci_high']:.4g}]", "value": repr(float(r["coef"]))},
                {"text": f"{r['per_sd']:.3f} [{r['per_sd_low']:.3f}, {r['per_sd_high']:.3f}]", "value": repr(float(r["per_sd"]))},
                cell(r["p_value"], p=True), cell(r["p_holm"], p=True), count(r["n_participants"]), count(r["n_items"]),
            ])
            sentences.append(_sentence(r["metric"], r, result.outcome, result.level))
        if min(m.n_participants, m.n_items) < FEW_CLUSTERS:
            sentences.insert(0, f"Only {m.n_participants} participants and {m.n_items} items: with fewer than {FEW_CLUSTERS} of "
                                "either, cluster-robust intervals come out too narrow and p-values too small; read these "
                                "as provisional.")
        methods.append({
            "method": m.method, "label": _method_label(m.method), "arms": ", ".join(m.arms), "n_answers": m.n_answers,
            "n_participants": m.n_participants, "n_items": m.n_items, "dropped": m.dropped, "sentences": sentences,
            "table": table([
                "Metric", f"Change in {label} per unit [{result.level:.0%} CI]", f"Per SD of the metric [{result.level:.0%} CI]",
                "p", "p (Holm)", "Participants", "Items"], rows, name=f"metrics-people-{m.method}"),
        })
    return {"error": None, "outcome": label, "methods": methods, "n_unexplained": result.n_unexplained,
            "level": f"{result.level:.0%}"}


def metrics_people_section(study: Study, *, include_test: bool = False) -> dict | None:
    """None for a design that declares no outcomes; ``{"error": sentence}`` when there is nothing
    to fit yet; else the tables per method."""
    if source_of(study.design) is None:
        return None
    try:
        return present(metrics_people_results(study, include_test=include_test))
    except AnalysisInputError as exc:
        return {"error": str(exc)}
