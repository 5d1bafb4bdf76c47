"""The forward-simulation section of a study's analysis page (`studyapp.analysis.simulation`'s
results as tables): simulation accuracy pre, post and the change per arm, the explanation effect
and Colin's utility, each for all test items and split by whether the model was right; the
counterfactual items (when the study has them) in rows of their own."""

from __future__ import annotations

from stats.schema import AnalysisInputError
from studyapp.analysis.presenters import cell, count, table
from studyapp.analysis.simulation import simulation_results
from studyapp.studies.models import Study


def _interval(row, name: str) -> dict:
    text = cell(row[name])["text"]
    low, high = cell(row[f"{name}_low"])["text"], cell(row[f"{name}_high"])["text"]
    return {"text": f"{text} [{low}, {high}]", "value": cell(row[name])["value"]}


def _items(row) -> dict:
    """The subset of test items a row is about; counterfactual items (a morph's last frame) say so."""
    return cell(row["subset"] if row["item_kind"] == "forward" else f"counterfactual: {row['subset']}")


def simulation_section(study: Study, *, include_test: bool = False) -> dict:
    """``{"error": sentence}`` when there is nothing to analyse yet, else the three tables."""
    control = next((a.name for a in study.arms.order_by("position", "pk") if a.feedback == "control"), "Control")
    try:
        res = simulation_results(study, control_arm=control, include_test=include_test)
    except AnalysisInputError as exc:
        return {"error": str(exc)}
    accuracy = table(
        ["Items", "Arm", "n", "Pre [95% CI]", "Post [95% CI]", "Change [95% CI]"],
        [[_items(r), cell(r["arm"]), count(r["n"]), _interval(r, "pre"), _interval(r, "post"), _interval(r, "change")]
         for _, r in res.accuracy.iterrows()], name="simulation-accuracy",
    )
    eff = res.effects
    effects = table(
        ["Items", "Arm", "Effect (change − control's) [95% CI]", "p", "Utility (post ÷ control's) [95% CI]", "Post gain [95% CI]"],
        [[_items(r), cell(r["arm"]), _interval(r, "effect"), cell(r["effect_p"], p=True), _interval(r, "utility"),
          _interval(r, "post_gain")] for _, r in eff.iterrows()], name="simulation-effects",
    )
    balance = table(
        ["Phase", "Answers", "Share on model-correct items"],
        [[cell(r["phase"] if r.get("item_kind", "forward") == "forward" else f"{r['phase']} (counterfactual)"), count(r["n_answers"]), cell(r["share_model_correct"])] for _, r in res.balance.iterrows()],
        name="simulation-balance",
    )
    return {"error": None, "control": control, "n": res.n_participants, "accuracy": accuracy, "effects": effects, "balance": balance}
