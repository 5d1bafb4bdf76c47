"""The analysis page's trial-level and sequential sections (issue 16), as table cells and figures.

- ``trial_model``: the common-start GEE of correct ~ arm × trial (`stats.trial_model`): per-arm
  learning curves with 95% bands (a figure and a table), the planned comparisons as learning-rate
  contrasts with intervals, the equal-start check, and what the model assumes. The GLMM
  (variational Bayes, random participant intercepts and slopes and stimulus effects) takes
  seconds, so it is fitted only when asked (``?glmm=1``).
- ``trial_power``: power by simulation of the Welch test and of the trial model at a chosen n
  per arm, and the n each needs for the target power, at the dissertation's observed effect and
  at an effect the researcher enters (``tp-`` form, computed only when submitted).
- ``sequential``: the pre-registered stopping rule of ``config.sequential``, its boundaries and
  the decision at the last look reached.

Kept apart from `presenters` so that the two files can change independently.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from django import forms
from django.http import HttpRequest
from matplotlib.figure import Figure

from stats import figures, power, trial_model
from stats.analyse import Analysis, hypothesis
from stats.schema import AnalysisInputError
from stats.sequential import SPENDING_LABELS, SequentialPlan, look_from_trials
from stats.synthetic import DISSERTATION_TOTALS, dissertation_curves, rate_for_total
from studyapp.analysis.presenters import cell, count, table
from studyapp.lib.study_config import StudyConfigError, read_config
from studyapp.studies.looks import look_context

ARM_COLOURS = {"Control": "#777777", "GCAM": "#0072B2", "CDeepEx": "#D55E00"}
_OTHER_COLOURS = ("#009E73", "#CC79A7", "#E69F00", "#56B4E9")


def _interval(low: float, high: float, digits: int = 4) -> dict:
    def one(v: float) -> str:
        return "∞" if v == math.inf else "−∞" if v == -math.inf else f"{v:.{digits}f}"

    return {"text": f"[{one(low)}, {one(high)}]", "value": None}


# --------------------------------------------------------------------------- trial model


def curves_figure(fit: trial_model.TrialModelFit) -> Figure:
    """Observed share correct per trial (points) and the fitted curve with its 95% band, per arm."""
    fig = Figure(figsize=(7.2, 3.8), layout="constrained")
    ax = fig.subplots()
    for i, arm in enumerate(fit.arms):
        colour = ARM_COLOURS.get(arm, _OTHER_COLOURS[i % len(_OTHER_COLOURS)])
        c = fit.curves[fit.curves["arm"] == arm]
        ax.fill_between(c["trial"], c["band_low"], c["band_high"], color=colour, alpha=0.18, linewidth=0)
        ax.plot(c["trial"], c["fitted"], color=colour, linewidth=2, label=f"{arm} (fit, 95% band)")
        ax.plot(c["trial"], c["observed"], "o", color=colour, markersize=3.5, alpha=0.8)
    ax.axhline(0.5, color="#bbbbbb", linewidth=0.8, linestyle=":")
    ax.set_xlabel("Trial")
    ax.set_ylabel("P(correct)")
    ax.set_ylim(0, 1)
    ax.set_title("Learning curves: trial-level model (GEE, common start)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right", frameon=False)
    return fig


def _data_uri(fig: Figure) -> str:
    return "data:image/png;base64," + base64.b64encode(figures.figure_png(fig, dpi=110)).decode()


def trial_model_section(result: Analysis, *, glmm: bool = False) -> dict | None:
    """The trial-level section for a learning analysis (None for the clustering design)."""
    if result.learning is None:
        return None
    trials = result.kept.get("trials")
    pairs = [p for p in result.settings.pairs]
    ctx: dict = {"assumptions": trial_model.ASSUMPTIONS, "glmm_requested": glmm}
    if trials is None or not len(trials):
        ctx["error"] = "No answers yet."
        return ctx
    try:
        fit = trial_model.fit_gee(trials, pairs=pairs)
    except (AnalysisInputError, ValueError, np.linalg.LinAlgError) as exc:
        ctx["error"] = f"The trial-level model cannot be fitted yet: {exc}"
        return ctx
    ctx["n"] = {"participants": fit.n_participants, "answers": fit.n_answers, "dependence": fit.dependence}
    ctx["figure"] = _data_uri(curves_figure(fit))
    ctx["rates"] = table(
        ["Arm", "Learning rate (log-odds per trial)", "SE", "95% CI", "Odds × per 10 trials"],
        [[cell(r.arm), cell(r.rate, 4), cell(r.se, 4), _interval(r.ci_low, r.ci_high),
          cell(math.exp(10 * r.rate), 3)] for r in fit.rates.itertuples()],
        name="trial-rates",
    )
    ctx["contrasts"] = table(
        ["H1", "Rate difference", "SE", "z", "p", "95% CI", "Odds ratio per 10 trials [95% CI]"],
        [[cell(c.hypothesis), cell(c.estimate, 4), cell(c.se, 4), cell(c.z), cell(c.p, p=True),
          _interval(c.ci_low, c.ci_high),
          {"text": "{:.3f} [{:.3f}, {:.3f}]".format(*c.odds_ratio_per_10), "value": repr(c.odds_ratio_per_10[0])}]
         for c in fit.contrasts],
        name="trial-contrasts",
    )
    curve_rows = []
    for t in sorted(fit.curves["trial"].unique()):
        row = [count(t)]
        for arm in fit.arms:
            hit = fit.curves[(fit.curves["arm"] == arm) & (fit.curves["trial"] == t)]
            if hit.empty:
                row.append(cell(None))
                continue
            r = hit.iloc[0]
            row.append({"text": f"{r['observed']:.2f} / {r['fitted']:.3f} [{r['band_low']:.3f}, {r['band_high']:.3f}]",
                        "value": repr(float(r["fitted"]))})
        curve_rows.append(row)
    ctx["curves"] = table(["Trial", *fit.arms], curve_rows, name="trial-curves")
    try:
        check = trial_model.start_check(trials)
        ctx["start_check"] = {
            "chi2": check.chi2, "df": check.df, "p": check.p,
            "differences": [f"{a} − {fit.reference}: {d:+.3f} [{lo:.3f}, {hi:.3f}]" for a, (d, lo, hi) in check.differences.items()],
        }
    except (AnalysisInputError, ValueError, np.linalg.LinAlgError):
        ctx["start_check"] = None
    if glmm:
        try:
            g = trial_model.fit_glmm(trials, pairs=pairs)
            ctx["glmm"] = {
                "has_stimulus": g.has_stimulus,
                "contrasts": table(
                    ["Arms", "Rate difference (posterior mean)", "Posterior SD", "95% interval"],
                    [[cell(f"{r.arm1} − {r.arm2}"), cell(r.mean, 4), cell(r.sd, 4), _interval(r.ci_low, r.ci_high)]
                     for r in g.contrasts.itertuples()],
                    name="glmm-contrasts",
                ),
                "components": ", ".join(f"{r.component} SD ≈ {r.sd:.3f}" for r in g.variance_components.itertuples()),
            }
        except (AnalysisInputError, ValueError, np.linalg.LinAlgError) as exc:
            ctx["glmm_error"] = str(exc)
    return ctx


# --------------------------------------------------------------------------- power


class TrialPowerForm(forms.Form):
    n = forms.IntegerField(label="n per arm", min_value=5, max_value=1500, initial=100)
    d = forms.FloatField(label="Your effect (Cohen's d on the totals)", min_value=0.02, max_value=2.0,
                         required=False, help_text="optional")
    alpha = forms.FloatField(label="α (one-sided)", min_value=0.0001, max_value=0.5, initial=0.05)
    sims = forms.IntegerField(label="Simulated studies", min_value=50, max_value=1000, initial=200)


def _curves_for_d(d: float) -> tuple[dict, str] | tuple[None, str]:
    """Dissertation curves with CDeepEx's rate set so that CDeepEx − GCAM is `d` SDs of the totals."""
    base = dissertation_curves()
    rng = np.random.default_rng(0)
    from stats.synthetic import simulate_answers

    sd = float(simulate_answers(base["GCAM"], n_participants=20000, n_trials=20, n_sims=1, rng=rng).sum(axis=2).std(ddof=1))
    target = DISSERTATION_TOTALS["GCAM"] + d * sd
    try:
        rate = rate_for_total(target, start=0.45, ceiling=0.9, rate_sd=0.5)
    except ValueError as exc:
        return None, f"d = {d:g} is not reachable with these curves: {exc}"
    curves = dict(base)
    g = base["GCAM"]
    curves["CDeepEx"] = type(g)(start=g.start, ceiling=g.ceiling, rate=rate, rate_sd=g.rate_sd)
    return curves, f"CDeepEx mean total {target:.2f} vs GCAM {DISSERTATION_TOTALS['GCAM']:.2f} (SD of totals {sd:.2f})"


def trial_power_section(request: HttpRequest) -> dict:
    """Welch vs trial model power by simulation; simulates only when the ``tp-`` form is sent."""
    submitted = any(k.startswith("tp-") for k in request.GET)
    form = TrialPowerForm(request.GET if submitted else None, prefix="tp",
                          initial={"n": 100, "alpha": 0.05, "sims": 200})
    ctx: dict = {"form": form}
    if not submitted or not form.is_valid():
        return ctx
    c = form.cleaned_data
    rows, notes, assumptions = [], [], None
    cases: list[tuple[str, Mapping | None, str]] = [("dissertation (Table 5.2)", dissertation_curves(), "")]
    if c.get("d"):
        curves, note = _curves_for_d(c["d"])
        cases.append((f"yours, d = {c['d']:g}", curves, note))
    for label, curves, note in cases:
        if curves is None:
            notes.append(note)
            continue
        if note:
            notes.append(f"{label}: {note}.")
        r = power.simulate_power_trial_level(curves, "CDeepEx", "GCAM", c["n"], n_sims=c["sims"], alpha=c["alpha"],
                                             seed=16)
        assumptions = r.assumptions
        rows.append([
            cell(label), cell(r.d), count(r.n_per_arm),
            {"text": f"{r.welch_power:.1%} [{r.welch_ci[0]:.1%}, {r.welch_ci[1]:.1%}]", "value": repr(r.welch_power)},
            {"text": f"{r.trial_power:.1%} [{r.trial_ci[0]:.1%}, {r.trial_ci[1]:.1%}]", "value": repr(r.trial_power)},
            count(math.ceil(r.welch_n80)) if r.welch_n80 else cell(None),
            count(math.ceil(r.trial_n80)) if r.trial_n80 else cell(None),
        ])
    ctx["table"] = table(
        ["Effect (CDeepEx > GCAM)", "Simulated d", "n per arm", "Welch power [95% CI]", "Trial model power [95% CI]",
         "n for 80%: Welch", "n for 80%: trial model"],
        rows, name="trial-power",
    )
    ctx["notes"] = notes
    ctx["assumptions"] = assumptions or ()
    return ctx


# --------------------------------------------------------------------------- sequential


def plan_from_config(config: Mapping | None) -> tuple[SequentialPlan | None, str | None]:
    """The study's pre-registered plan, or ``(None, problem)`` when none or malformed."""
    try:
        parsed = read_config(config or {}).sequential
    except StudyConfigError as exc:
        return None, f"The configuration does not parse: {exc}"
    if parsed is None:
        return None, None
    try:
        return SequentialPlan.from_config(parsed.model_dump()), None
    except (ValueError, KeyError) as exc:
        return None, f"config.sequential: {exc}"


def sequential_section(plan: SequentialPlan | None, trials: pd.DataFrame | None, *, levels: Sequence[str],
                       n_trials: int | None = None, problem: str | None = None) -> dict:
    """The plan, its boundaries and the decision now (`stats.sequential.look_from_trials`)."""
    if plan is None:
        return {"plan": None, "problem": problem}
    a1, a2, alt = plan.comparison
    missing = [a for a in (a1, a2) if levels and a not in levels]
    ctx: dict = {
        "plan": plan,
        "comparison": hypothesis(plan.comparison),
        "spending": SPENDING_LABELS[plan.spending],
        "statistic": "Welch test on the totals" if plan.statistic == "welch" else "trial-level model (GEE rate contrast)",
        "sides": "one-sided" if plan.sides == 1 else "two-sided",
        "problem": problem or (f"The plan names arm(s) {', '.join(missing)}, which the study does not have." if missing else None),
    }
    if ctx["problem"]:
        return ctx
    frame = trials if trials is not None else pd.DataFrame(columns=["participant", "arm", "trial_index", "correct"])
    try:
        report = look_from_trials(plan, frame, n_trials=n_trials)
    except (AnalysisInputError, ValueError, np.linalg.LinAlgError) as exc:
        ctx["problem"] = f"The look cannot be computed: {exc}"
        return ctx
    ctx.update(look_context(report))
    return ctx


def page_context(request: HttpRequest, source, result: Analysis) -> dict:
    """Everything this module adds to the analysis page."""
    if result.learning is None:
        return {}
    # A study's Source carries only the analysis keys; the plan is read from the whole config.
    plan, problem = plan_from_config(source.obj.config if source.kind == "study" else source.config)
    return {
        "trial_model": trial_model_section(result, glmm=request.GET.get("glmm") == "1"),
        "trial_power": trial_power_section(request),
        "sequential": sequential_section(plan, result.kept.get("trials"), levels=source.levels,
                                         n_trials=result.learning.n_trials, problem=problem),
    }
