"""The status page's look decision: the study's pre-registered sequential rule on its answers.

A selector (reads only). It builds the tidy trials of completed participants, applies the
study's exclusion rules (``stats.exclusions``), and asks ``stats.sequential`` what the rule says
now. The analysis page shows the same decision from its own frames; this module exists because
the studies app sits below the analysis app and cannot use its frames or presenters.
"""

from __future__ import annotations

import math

import pandas as pd

from stats.exclusions import apply_exclusions
from stats.schema import AnalysisInputError
from stats.sequential import LookReport, SequentialPlan, look_from_trials
from studyapp.lib.study_config import StudyConfigError
from studyapp.studies.models import Participant, Study, TrialAnswer

COLUMNS = ["participant", "arm", "trial_index", "correct", "response_ms", "completed"]


def _trials(study: Study) -> pd.DataFrame:
    rows = (
        TrialAnswer.objects.filter(participant__study=study)
        .order_by("participant__started_at", "participant_id", "trial_index")
        .values_list("participant__code", "participant__arm__name", "trial_index", "correct", "response_ms",
                     "participant__status")
    )
    frame = pd.DataFrame(
        [(*r[:-1], r[-1] == Participant.Status.COMPLETED) for r in rows.iterator(chunk_size=5000)], columns=COLUMNS
    )
    frame["correct"] = frame["correct"].astype(bool)
    frame["completed"] = frame["completed"].astype(bool)
    return frame


def study_look(*, study: Study) -> dict | None:
    """``None`` for a study without a plan; else the plan, the decision or the problem.

    Keys: ``plan`` (`stats.sequential.SequentialPlan`), ``report`` (`LookReport` or None),
    ``problem`` (text or None), ``excluded`` (participants left out by the exclusion rules).
    """
    if study.design != Study.Design.LEARNING:
        return None
    try:
        config = study.parsed_config
    except StudyConfigError as exc:
        return {"plan": None, "report": None, "problem": f"The configuration does not parse: {exc}", "excluded": 0}
    if config.sequential is None:
        return None
    try:
        plan = SequentialPlan.from_config(config.sequential.model_dump())
    except (ValueError, KeyError) as exc:
        return {"plan": None, "report": None, "problem": f"config.sequential: {exc}", "excluded": 0}
    arms = set(study.arms.values_list("name", flat=True))
    missing = [a for a in plan.comparison[:2] if a not in arms]
    if missing:
        return {"plan": plan, "report": None, "excluded": 0,
                "problem": f"The plan names arm(s) {', '.join(missing)}, which the study does not have."}
    trials = _trials(study)
    excluded = 0
    rules = config.exclusions if isinstance(config.exclusions, dict) else {}
    if len(trials) and rules:
        try:
            trials, report = apply_exclusions(trials, rules)
            excluded = report.n_excluded
        except (ValueError, AnalysisInputError) as exc:
            return {"plan": plan, "report": None, "excluded": 0, "problem": f"The exclusion rules cannot be applied: {exc}"}
    try:
        look = look_from_trials(plan, trials, n_trials=study.n_trials)
    except (ValueError, AnalysisInputError) as exc:
        return {"plan": plan, "report": None, "excluded": excluded, "problem": f"The look cannot be computed: {exc}"}
    return {"plan": plan, "report": look, "problem": None, "excluded": excluded}


# --------------------------------------------------------------------------- presentation


def _cell(x, digits: int = 3, *, p: bool = False) -> dict:
    """A table cell as ``admin/analysis/_table.html`` draws it (text shown, exact value)."""
    if isinstance(x, str):
        return {"text": x, "value": None}
    if x is None or not math.isfinite(float(x)):
        return {"text": "–", "value": None}
    x = float(x)
    text = ("< 0.0001" if x < 0.0001 else f"{x:.4f}") if p else f"{x:.{digits}f}"
    return {"text": text, "value": repr(x)}


def _count(x) -> dict:
    return {"text": f"{int(x)}", "value": repr(float(x))}


def _table(headers: list[str], rows: list[list[dict]], *, name: str) -> dict:
    return {"headers": headers, "rows": rows, "name": name}


def _interval_text(low: float, high: float, digits: int = 4) -> str:
    def one(v: float) -> str:
        return "∞" if v == math.inf else "−∞" if v == -math.inf else f"{v:.{digits}f}"

    return f"[{one(low)}, {one(high)}]"


def look_context(report: LookReport) -> dict:
    """The decision and the boundary table of a `LookReport` (also used by the status page)."""
    d = report.decision
    reached = d.look if d else 0
    rows = []
    for b in report.boundaries:
        rows.append([
            _count(b["look"]), _count(b["n_per_arm"]), _cell(b["fraction"], 2), _cell(b["efficacy_z"]),
            _cell(b["nominal_p"], p=True), _cell(b["alpha_spent"], 4),
            _cell(b["futility_z"], 2) if b["futility_z"] is not None else _cell("–"),
            _cell("← now" if b["look"] == reached else ""),
        ])
    decision = None
    if d is not None:
        decision = {
            "code": d.decision, "text": d.decision_text, "look": d.look, "n_looks": d.n_looks, "n_per_arm": d.n_per_arm,
            "z": d.z, "efficacy_z": d.efficacy_z, "futility_z": d.futility_z, "adjusted_p": d.adjusted_p,
            "estimate": d.estimate,
            "rci": _interval_text(*d.rci) if d.rci else None,
            "notes": d.notes,
        }
    return {
        "decision": decision,
        "verdict": d.decision if d else "continue",
        "message": report.message,
        "counts": report.counts,
        "next_look": report.next_look,
        "boundaries": _table(
            ["Look", "n per arm", "Information", "Efficacy z ≥", "Nominal p", "α spent (cumulative)",
             "Futility: z <", ""],
            rows, name="sequential-boundaries",
        ),
    }


def dashboard_context(*, study: Study) -> dict | None:
    """What the status page shows of the plan: ``None`` without a plan."""
    from stats.sequential import SPENDING_LABELS

    found = study_look(study=study)
    if found is None:
        return None
    plan = found["plan"]
    ctx: dict = {"plan": plan, "problem": found["problem"], "excluded": found["excluded"], "look": None}
    if plan is not None:
        a1, a2, alt = plan.comparison
        ctx["comparison"] = f"{a1} {({'greater': '>', 'less': '<'}).get(alt, '≠')} {a2}"
        ctx["spending"] = SPENDING_LABELS[plan.spending]
    if found["report"] is not None:
        ctx["look"] = look_context(found["report"])
    return ctx
