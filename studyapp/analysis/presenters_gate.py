"""Did the validity gates change the stimulus set? (issue 10 item 5)

Each arm's explanation method has its own gate (:mod:`studyapp.pipeline.params`); a stimulus
refused by any method the study shows is not served to anyone. If a gate refuses, say, mostly
model-wrong images of one class, the served set is no longer the balanced design that was
drawn, and the arms' accuracies are measured on a different population than planned. This
presenter counts, for the explanation parameters now in force, how many candidates each
method's gate dropped, by true class and by model correctness, with the reason codes, and what
is left to serve per cell.
"""

from __future__ import annotations

from collections import Counter

from django.db.models import Count, F, Q

from studyapp.pipeline.models import ExplanationAsset, Stimulus
from studyapp.pipeline.params import explanation_params, params_hash
from studyapp.studies import selectors
from studyapp.studies.models import TrialAnswer


def _cell(stimulus: Stimulus) -> tuple[int, str]:
    return stimulus.true_label, "correct" if stimulus.true_label == stimulus.model_prediction else "wrong"


def gate_report(study) -> dict | None:
    """``{"methods": [...], "rows": [...], "served": [...], "changed": bool}`` or ``None`` (no
    stimuli, or a clustering study). ``rows``: one per method and (class, correctness) cell:
    ``candidates``, ``refused``, ``missing`` (not computed yet), ``reasons`` ("code ×n, ...").
    ``served``: per cell, candidates and servable stimuli (valid for every method shown).
    ``changed``: whether the served share differs between cells (the gates were not neutral).
    """
    if study.design != "learning":
        return None
    stimuli = list(Stimulus.objects.filter(study=study).order_by("position", "pk"))
    if not stimuli:
        return None
    shown = list(selectors.study_methods(study=study))
    present = set(ExplanationAsset.objects.filter(stimulus__study=study).values_list("method", flat=True).distinct())
    methods = shown + [m for m in ExplanationAsset.Method.values if m in present and m not in shown]
    cells = sorted({_cell(s) for s in stimuli})
    per_cell = Counter(_cell(s) for s in stimuli)
    by_id = {s.pk: s for s in stimuli}
    rows = []
    for method in methods:
        phash = params_hash(explanation_params(study=study, method=method))
        assets = ExplanationAsset.objects.filter(stimulus__study=study, method=method, params_hash=phash)
        refused: Counter = Counter()
        reasons: dict[tuple[int, str], Counter] = {c: Counter() for c in cells}
        seen: Counter = Counter()
        for stimulus_id, valid, codes in assets.values_list("stimulus_id", "valid", "reason_codes"):
            cell = _cell(by_id[stimulus_id])
            seen[cell] += 1
            if not valid:
                refused[cell] += 1
                reasons[cell].update(sorted(set(codes or [])) or ["other"])
        for cell in cells:
            rows.append({
                "method": method, "shown": method in shown, "true_label": cell[0], "correctness": cell[1],
                "candidates": per_cell[cell], "refused": refused[cell], "missing": per_cell[cell] - seen[cell],
                "reasons": ", ".join(f"{code} ×{n}" for code, n in reasons[cell].most_common()) or "-",
            })
    servable = Counter(_cell(s) for s in selectors.servable_stimuli(study=study))
    served = [
        {"true_label": c[0], "correctness": c[1], "candidates": per_cell[c], "servable": servable[c],
         "share": servable[c] / per_cell[c] if per_cell[c] else 0.0}
        for c in cells
    ]
    shares = {round(row["share"], 6) for row in served}
    return {"methods": methods, "rows": rows, "served": served, "changed": len(shares) > 1}


def stimulus_mix(study, *, include_test: bool = False) -> dict | None:
    """The mix of images each arm saw (issue 23, item 4): per arm, the answered trials whose
    image the model classifies right (prediction = true label) and wrong, and the share wrong.

    ``{"drawn": "at random" | "balanced, wrong_share 0.5", "rows": [{"arm", "right", "wrong",
    "share_wrong"}]}``; ``None`` for a clustering study. Test runs only with ``include_test``.
    """
    if study.design != "learning":
        return None
    answers = TrialAnswer.objects.filter(participant__study=study)
    if not include_test:
        answers = answers.filter(participant__is_test=False)
    counts = (answers.values("participant__arm__name", "participant__arm__position")
              .annotate(right=Count("pk", filter=Q(stimulus__true_label=F("stimulus__model_prediction"))),
                        total=Count("pk"))
              .order_by("participant__arm__position", "participant__arm__name"))
    rows = [{"arm": c["participant__arm__name"], "right": c["right"], "wrong": c["total"] - c["right"],
             "share_wrong": (c["total"] - c["right"]) / c["total"] if c["total"] else 0.0} for c in counts]
    share = study.parsed_config.wrong_share
    drawn = "at random from the two classes' test images" if share is None else f"balanced, wrong_share {share:g}"
    return {"drawn": drawn, "rows": rows}
