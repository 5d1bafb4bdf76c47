"""The HIVE section of a study's analysis page (`studyapp.analysis.hive`'s results as tables):
agreement (confidence on the model's right and wrong answers, and the paired difference) and
distinction (accuracy against chance 1/4, exact binomial test), per arm."""

from __future__ import annotations

from stats.schema import AnalysisInputError
from studyapp.analysis.hive import hive_results
from studyapp.analysis.presenters import cell, count, table
from studyapp.studies.models import Study


def _interval(row, name: str, low: str | None = None, high: str | None = None) -> dict:
    text = cell(row[name])["text"]
    lo, hi = cell(row[low or f"{name}_low"])["text"], cell(row[high or f"{name}_high"])["text"]
    return {"text": f"{text} [{lo}, {hi}]", "value": cell(row[name])["value"]}


def hive_section(study: Study, *, include_test: bool = False) -> dict:
    """``{"error": sentence}`` when there is nothing to analyse yet, else the two tables."""
    try:
        res = hive_results(study, include_test=include_test)
    except AnalysisInputError as exc:
        return {"error": str(exc)}
    if res.agreement.empty and res.distinction.empty:
        return {"error": "no HIVE answers yet."}
    agreement = table(
        ["Arm", "n", "Confidence, model right [95% CI]", "Confidence, model wrong [95% CI]", "Difference [95% CI]", "p",
         "Confident (3-4), right", "Confident (3-4), wrong"],
        [[cell(r["arm"]), count(r["n"]), _interval(r, "conf_correct"), _interval(r, "conf_wrong"), _interval(r, "difference"),
          cell(r["difference_p"], p=True), cell(r["confident_correct"]), cell(r["confident_wrong"])]
         for _, r in res.agreement.iterrows()], name="hive-agreement",
    )
    distinction = table(
        ["Arm", "Answers", "Correct", "Accuracy [95% Wilson]", "Chance", "p (binomial, >)", "Per participant [95% CI]", "p (t, >)"],
        [[cell(r["arm"]), count(r["n_answers"]), count(r["n_correct"]), _interval(r, "accuracy"), cell(r["chance"]),
          cell(r["p_binomial"], p=True), _interval(r, "participant_accuracy", "participant_low", "participant_high"),
          cell(r["participant_p"], p=True)]
         for _, r in res.distinction.iterrows()], name="hive-distinction",
    )
    return {"error": None, "agreement": agreement, "distinction": distinction}
