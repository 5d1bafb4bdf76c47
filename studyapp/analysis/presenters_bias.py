"""The bias-discovery section of a study's analysis page (`studyapp.analysis.bias`'s results as
tables): the share who found the planted cue per arm and against the reference arm, and the
localisation error of the regions marked (centre distance and IoU)."""

from __future__ import annotations

from stats.schema import AnalysisInputError
from studyapp.analysis.bias import bias_results, planted
from studyapp.analysis.presenters import cell, count, table
from studyapp.studies.models import Study


def _interval(row, name: str, low: str | None = None, high: str | None = None) -> dict:
    text = cell(row[name])["text"]
    lo, hi = cell(row[low or f"{name}_low"])["text"], cell(row[high or f"{name}_high"])["text"]
    return {"text": f"{text} [{lo}, {hi}]", "value": cell(row[name])["value"]}


def bias_section(study: Study, *, include_test: bool = False) -> dict:
    """``{"error": sentence}`` when there is nothing to analyse yet, else the four tables."""
    reference = next((a.name for a in study.arms.order_by("position", "pk") if a.feedback == "control"), "Control")
    try:
        config, box = planted(study)
        res = bias_results(study, reference_arm=reference, include_test=include_test)
    except AnalysisInputError as exc:
        return {"error": str(exc)}
    discovery = table(
        ["Arm", "n", "Found the cue", "Share [95% CI]"],
        [[cell(r["arm"]), count(r["n"]), count(r["found"]), _interval(r, "share")] for _, r in res.discovery.iterrows()],
        name="bias-discovery",
    )
    found_cmp = table(
        ["Arm", "Reference", "Difference in share [95% CI]", "p"],
        [[cell(r["arm"]), cell(r["reference"]), _interval(r, "diff", "ci_low", "ci_high"), cell(r["p_value"], p=True)]
         for _, r in res.discovery_comparisons.iterrows()], name="bias-discovery-comparisons",
    )
    localisation = table(
        ["Arm", "Participants", "Marks", "Centre distance, px [95% CI]", "IoU [95% CI]"],
        [[cell(r["arm"]), count(r["n_participants"]), count(r["n_marks"]), _interval(r, "distance"), _interval(r, "iou")]
         for _, r in res.localisation.iterrows()], name="bias-localisation",
    )
    loc_cmp = table(
        ["Arm", "Reference", "Difference in centre distance, px [95% CI]", "p"],
        [[cell(r["arm"]), cell(r["reference"]), _interval(r, "diff", "ci_low", "ci_high"), cell(r["p_value"], p=True)]
         for _, r in res.localisation_comparisons.iterrows()], name="bias-localisation-comparisons",
    )
    return {"error": None, "reference": res.reference_arm, "planted_cue": config.planted_cue, "box": list(box),
            "unanswered": res.unanswered, "unmarked": res.unmarked, "discovery": discovery, "discovery_comparisons": found_cmp,
            "localisation": localisation, "localisation_comparisons": loc_cmp}
