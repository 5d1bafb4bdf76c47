"""The AI-assisted decision section of a study's analysis page (`studyapp.analysis.decision`'s
results as tables): per arm, human alone, AI alone and team accuracy, over- and under-reliance,
RAIR and RSR (Schemmer et al., IUI 2023), each for all items and split by whether the model was
right; and each arm against the reference arm."""

from __future__ import annotations

from stats.schema import AnalysisInputError
from studyapp.analysis.decision import decision_results
from studyapp.analysis.presenters import cell, count, table
from studyapp.studies.models import Study


def _interval(estimate, low, high) -> dict:
    return {"text": f"{cell(estimate)['text']} [{cell(low)['text']}, {cell(high)['text']}]", "value": cell(estimate)["value"]}


def decision_section(study: Study, *, include_test: bool = False) -> dict:
    """``{"error": sentence}`` when there is nothing to analyse yet, else the two tables."""
    reference = next((a.name for a in study.arms.order_by("position", "pk") if a.feedback == "control"), None)
    try:
        res = decision_results(study, reference_arm=reference, include_test=include_test)  # type: ignore[arg-type]
    except AnalysisInputError as exc:
        return {"error": str(exc)}
    measures = table(
        ["Items", "Arm", "Measure", "n", "Estimate [95% CI]"],
        [[cell(r["subset"]), cell(r["arm"]), cell(r["measure"]), count(r["n"]), _interval(r["estimate"], r["ci_low"], r["ci_high"])]
         for _, r in res.measures.iterrows()], name="decision-measures",
    )
    comparisons = table(
        ["Items", "Arm", "Measure", "Difference to the reference [95% CI]", "p"],
        [[cell(r["subset"]), cell(r["arm"]), cell(r["measure"]), _interval(r["diff"], r["ci_low"], r["ci_high"]), cell(r["p_value"], p=True)]
         for _, r in res.comparisons.iterrows()], name="decision-comparisons",
    )
    n = int(res.per_participant["participant"].nunique())
    return {"error": None, "reference": res.reference_arm, "n": n, "incomplete": res.incomplete,
            "measures": measures, "comparisons": comparisons}
