"""Analysis results (`stats.analyse.Analysis`) as table cells and figures, for the analysis page
and the HTML report alike.

A table is ``{"headers": [...], "rows": [[cell, ...], ...], "name": ...}`` (the name becomes the
``data-table`` attribute); a cell is ``{"text": shown, "value": exact number as text or None}``
(``data-value``, for machine reading), plus ``is_text`` for labels that read left-aligned. The
templates ``admin/analysis/_table.html`` draw them.

Nothing here reads a request or the database: the callers pass what a section needs (the
levels in order, alpha, a link for a participant).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
from matplotlib.figure import Figure

from stats import figures, power
from stats.analyse import (
    CLUSTERING,
    Analysis,
    ClusteringResult,
    LearningResult,
    PilotPower,
    paired_sample_size,
)
from stats.schema import (
    AGENT_RATING_LABELS,
    CONFIDENCE_LABELS,
    FEEDBACK_RATING_LABELS,
    ordered_levels,
)

#: The figures of an analysis, by the name in their URL.
FIGURES = ("learning-curve", "ratings", "purity", "confidence", "agent-ratings", "power")


# --------------------------------------------------------------------------- cells and tables


def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def cell(x, digits: int = 3, *, p: bool = False) -> dict:
    """A table cell: the text shown and the exact value (``data-value``) for machine reading."""
    if isinstance(x, str):
        # Labels read left-aligned; short verdicts ("yes", "–", "none: ...") stay with the numbers.
        return {"text": x, "value": None, "is_text": not (x in ("–", "yes", "no") or x.startswith("none"))}
    if isinstance(x, bool):
        return {"text": "yes" if x else "no", "value": None}
    if not _finite(x):
        return {"text": "–", "value": None}
    x = float(x)
    if p:
        text = "< 0.0001" if x < 0.0001 else f"{x:.4f}"
    elif x.is_integer() and digits == 0:
        text = f"{int(x)}"
    else:
        text = f"{x:.{digits}f}"
    return {"text": text, "value": repr(x)}


def count(x) -> dict:
    return cell(int(x), 0) if _finite(x) else cell(None)


def table(headers: list[str], rows: list[list[dict]], *, name: str = "") -> dict:
    return {"headers": headers, "rows": rows, "name": name}


def _group_cell(mean: float, sd: float, n: int) -> dict:
    sd_text = f"{sd:.3f}" if _finite(sd) else "–"
    return {"text": f"{mean:.3f} ± {sd_text} ({n})", "value": repr(float(mean))}


# --------------------------------------------------------------------------- sections


def sections(
    result: Analysis, *, levels: Sequence[str], participant_url: Callable[[str], str] | None = None
) -> dict:
    """Every section of an analysis, as the page and the report show them: ``exclusions``,
    ``learning`` or ``clustering`` (by design), and ``pilot`` (the sample sizes from the data)."""
    ctx: dict = {"exclusions": exclusions(result, participant_url=participant_url)}
    if result.learning is not None:
        ctx["learning"] = learning(result.learning, levels=levels, alpha=result.settings.alpha)
    if result.clustering is not None:
        ctx["clustering"] = clustering(result.clustering)
        ctx["has_groupings"] = result.clustering.purities is not None
    ctx["pilot"] = (ctx.get("learning") or ctx.get("clustering") or {}).get("pilot")
    return ctx


def exclusions(result: Analysis, *, participant_url: Callable[[str], str] | None = None) -> dict:
    """The exclusion rules, who was left out and why; `participant_url` links a participant."""
    excl = result.exclusions
    ctx: dict = {"rules": excl.rules, "error": excl.error, "ignored": excl.ignored}
    if excl.report is None:
        return ctx
    rep = excl.report
    ctx["summary"] = (
        f"{rep.n_excluded} of {rep.n_before} participants excluded, {rep.n_kept} analysed."
    )
    ctx["by_rule"] = rep.by_rule
    ctx["counts"] = table(
        ["Arm", "Before", "Excluded", "Analysed"],
        [[cell("Total" if i == len(rep.counts) - 1 else r.arm), count(r.n_before), count(r.n_excluded), count(r.n_kept)]
         for i, r in enumerate(rep.counts.itertuples())],
        name="exclusion-counts",
    )
    ctx["excluded"] = [
        {"participant": r.participant, "arm": r.arm, "rule": r.rule, "reason": r.reason,
         "url": participant_url(r.participant) if participant_url else ""}
        for r in rep.excluded.itertuples()
    ]
    return ctx


def learning(res: LearningResult, *, levels: Sequence[str], alpha: float) -> dict:
    """Study A: the learning curve, Table 5.2, Table 5.3, the ratings and the pilot power."""
    curve = res.curve
    arms = ordered_levels(curve["arm"], levels) if len(curve) else []
    curve_rows = []
    for trial in sorted(curve["trial"].unique()) if len(curve) else []:
        row = [count(trial)]
        for arm in arms:
            hit = curve[(curve["arm"] == arm) & (curve["trial"] == trial)]
            if hit.empty:
                row.append(cell(None))
            else:
                r = hit.iloc[0]
                sd = f"{r['sd']:.3f}" if _finite(r["sd"]) else "–"
                row.append({"text": f"{r['mean']:.3f} ± {sd} ({int(r['n'])})", "value": repr(float(r["mean"]))})
        curve_rows.append(row)
    ctx = {
        "n_trials": res.n_trials,
        "has_trials": len(curve) > 0,
        "curve": table(["Trial", *arms], curve_rows, name="learning-curve"),
        "counts": table(
            ["Arm", "n", "Mean", "SD", "Fewer trials (not counted)"],
            [[cell(r.arm), count(r.n), cell(r.mean), cell(r.sd), count(r.n_short)] for r in res.counts.itertuples()],
            name="final-counts",
        ),
        "skipped": res.skipped,
        "errors": res.errors,
        "alpha": alpha,
    }
    if res.family is not None:
        fam = res.family
        rows = []
        for test, p_adj in zip(fam.tests, fam.p_adjusted, strict=True):
            rows.append([
                cell(test.hypothesis),
                _group_cell(test.mean1, test.sd1, test.n1),
                _group_cell(test.mean2, test.sd2, test.n2),
                cell(test.t), cell(test.df, 2), cell(test.p, p=True), cell(p_adj, p=True),
                cell("yes" if test.p <= fam.alpha else "no"),
                cell(test.hedges_g),
                {"text": f"[{test.g_ci_low:.3f}, {test.g_ci_high:.3f}]" if _finite(test.g_ci_low) else "–", "value": None},
            ])
        sided = all(t.alternative != "two-sided" for t in fam.tests)
        ctx["tests"] = table(
            ["H1", "First: mean ± SD (n)", "Second: mean ± SD (n)", "Welch t", "df",
             "p (one-sided)" if sided else "p", f"p ({fam.adjust_method.capitalize()})", f"p ≤ {fam.alpha:g}",
             "Hedges' g", f"{fam.tests[0].ci_level:.0%} CI of g"],
            rows, name="welch-tests",
        )
        ctx["note"] = fam.note
    if res.rating_dist is not None:
        dist = res.rating_dist
        rarms = list(dict.fromkeys(dist["arm"]))
        rows = []
        for code, label in FEEDBACK_RATING_LABELS.items():
            row = [cell(f"{code}: {label}")]
            for arm in rarms:
                r = dist[(dist["arm"] == arm) & (dist["rating"] == code)].iloc[0]
                share = f" ({r['share']:.0%})" if _finite(r["share"]) else ""
                row.append({"text": f"{int(r['count'])}{share}", "value": repr(int(r["count"]))})
            rows.append(row)
        totals = [cell("n")] + [count(dist.loc[dist["arm"] == a, "count"].sum()) for a in rarms]
        ctx["ratings"] = table(["Rating", *rarms], [*rows, totals], name="ratings")
        ctx["rating_test"] = res.rating_test
    ctx["pilot"] = pilot_table(res.pilot, paired=False)
    return ctx


def pilot_table(rows: list[PilotPower], *, paired: bool) -> dict | None:
    """The sample size each observed effect would need (two-sample, or paired for stages)."""
    if not rows:
        return None
    out = []
    for r in rows:
        row = [cell(r.comparison), cell(r.d)]
        if not paired:
            ci = f"[{r.g_ci[0]:.2f}, {r.g_ci[1]:.2f}]" if r.g_ci and _finite(r.g_ci[0]) else "–"
            row.append({"text": ci, "value": None})
        row.append(count(r.n_per_arm) if r.n_per_arm else cell(r.message or "–"))
        row.append(cell(r.achieved_power) if r.achieved_power is not None else cell("–"))
        out.append(row)
    if paired:
        headers = ["Comparison", "Observed d_z", "Participants needed", "Power at that n"]
    else:
        headers = ["Comparison", "Observed d", "Hedges' g 95% CI", "Participants per arm", "Power at that n"]
    return table(headers, out, name="pilot-power")


def _compact_tests(frame: pd.DataFrame | None, name: str) -> dict | None:
    if frame is None or frame.empty:
        return None
    rows = [
        [cell(r.group or "–"), cell(r.hypothesis), count(r.n_pairs), cell(r.mean1), cell(r.mean2),
         cell(r.cohen_dz), cell(r.t), cell(r.p_t, p=True), cell(r.p_t_adjusted, p=True),
         cell(r.wilcoxon_w, 1), cell(r.p_wilcoxon, p=True), cell(r.p_wilcoxon_adjusted, p=True)]
        for r in frame.itertuples()
    ]
    return table(
        ["Dataset", "H1", "Pairs", "Mean₁", "Mean₂", "Cohen d_z", "Paired t", "p (t)", "p (t, Holm)",
         "Wilcoxon W", "p (W)", "p (W, Holm)"],
        rows, name=name,
    )


def _distribution_table(dist: pd.DataFrame, group: str, value: str, scale: Mapping, name: str) -> dict:
    keys = [c for c in ("dataset",) if c in dist.columns] + [group]
    groups = list(dist[keys].drop_duplicates().itertuples(index=False))
    headers = [" / ".join(str(x) for x in g) for g in groups]
    rows = []
    for code, label in scale.items():
        row = [cell(f"{code}: {label}")]
        for g in groups:
            mask = (dist[value] == code)
            for k, v in zip(keys, g, strict=True):
                mask &= dist[k] == v
            n = int(dist.loc[mask, "count"].sum())
            row.append({"text": str(n), "value": repr(n)})
        rows.append(row)
    return table(["Answer", *headers], rows, name=name)


def clustering(res: ClusteringResult) -> dict:
    """Study B: purity, confidence, agent ratings, their paired tests and the pilot power."""
    ctx: dict = {"errors": res.errors}
    if res.purity_summary is not None:
        nan = float("nan")
        ctx["purity"] = table(
            ["Dataset", "Stage", "n", "Mean", "SD", "Median", "Q1", "Q3", "Groups used (mean)",
             "Chance purity (mean)", "ARI (mean)", "NMI (mean)"],
            [[cell(r.dataset), cell(r.stage), count(r.n), cell(r.mean), cell(r.sd), cell(r.median), cell(r.q1), cell(r.q3),
              cell(getattr(r, "mean_groups", nan), 2), cell(getattr(r, "mean_chance", nan)),
              cell(getattr(r, "mean_ari", nan)), cell(getattr(r, "mean_nmi", nan))]
             for r in res.purity_summary.itertuples()],
            name="purity",
        )
    ctx["purity_tests"] = _compact_tests(res.purity_tests, "purity-tests")
    ctx["ari_tests"] = _compact_tests(res.ari_tests, "ari-tests")
    if res.order_summary is not None:
        summary = res.order_summary
        orders = sorted(summary["order"].unique())
        rows = []
        for (dataset, stage), part in summary.groupby(["dataset", "stage"], sort=False):
            by_order = part.set_index("order")
            rows.append([cell(dataset), cell(stage)] + [
                _group_cell(by_order.loc[o, "mean"], by_order.loc[o, "sd"], int(by_order.loc[o, "n"]))
                if o in by_order.index else cell(None) for o in orders])
        ctx["order"] = table(["Dataset", "Stage", *[f"{o}: mean ± SD (n)" for o in orders]], rows, name="order-summary")
    if res.order_tests is not None and not res.order_tests.empty:
        ctx["order_tests"] = table(
            ["Dataset", "XNN − 1-Heatmap when", "n", "Mean difference", "vs. when", "n", "Mean difference",
             "Welch t", "p (t)", "Mann–Whitney U", "p (U)"],
            [[cell(r.dataset), cell(r.order1), count(r.n1), cell(r.mean_diff1), cell(r.order2), count(r.n2),
              cell(r.mean_diff2), cell(r.t), cell(r.p_t, p=True), cell(r.u, 1), cell(r.p_u, p=True)]
             for r in res.order_tests.itertuples()],
            name="order-tests",
        )
    if res.confidence_dist is not None:
        ctx["confidence"] = _distribution_table(res.confidence_dist, "stage", "confidence", CONFIDENCE_LABELS, "confidence")
    ctx["confidence_tests"] = _compact_tests(res.confidence_tests, "confidence-tests")
    ctx["confidence_paper"] = _paper_confidence_test(res.confidence_tests)
    if res.agent_dist is not None:
        ctx["agents"] = _distribution_table(res.agent_dist, "agent", "rating", AGENT_RATING_LABELS, "agent-ratings")
    pref = res.agent_preference
    if pref is not None:
        ctx["preference"] = table(
            ["Agent vs baseline", "Pairs", "Prefer agent", "Prefer baseline", "Ties", "Median agent",
             "Median baseline", "Wilcoxon W", "p (W)", "p (sign test)"],
            [[cell(f"{pref.agent} vs {pref.baseline}"), count(pref.n_pairs), count(pref.n_prefer_agent),
              count(pref.n_prefer_baseline), count(pref.n_ties), cell(pref.median_agent, 1),
              cell(pref.median_baseline, 1), cell(pref.wilcoxon_w, 1), cell(pref.p_wilcoxon, p=True),
              cell(pref.p_sign, p=True)]],
            name="agent-preference",
        )
    ctx["pilot"] = pilot_table(res.pilot, paired=True)
    return ctx


#: The confidence test the XNN paper reports (section 4.1): CEL, XNN vs 1-Heatmap, p = 0.083.
PAPER_CONFIDENCE_TEST = ("CEL", "XNN", "1-Heatmap", 0.083)


def _paper_confidence_test(frame: pd.DataFrame | None) -> dict | None:
    """The row of the confidence tests that the paper reports, with the paper's p beside it."""
    if frame is None or frame.empty:
        return None
    dataset, stage1, stage2, paper_p = PAPER_CONFIDENCE_TEST
    hit = frame[(frame["group"] == dataset) & (frame["stage1"] == stage1) & (frame["stage2"] == stage2)]
    if hit.empty:
        return None
    r = hit.iloc[0]
    return {"label": f"{dataset}, {stage1} vs {stage2}", "n_pairs": int(r["n_pairs"]),
            "p_wilcoxon": cell(r["p_wilcoxon"], p=True), "p_t": cell(r["p_t"], p=True), "paper_p": paper_p}


def participants(
    frame: pd.DataFrame | None, *, levels: Sequence[str], design: str, config_hash: str
) -> dict | None:
    """Who enrolled, per arm, and the configuration hashes their data ran under."""
    if frame is None:
        return None
    arms = ordered_levels(frame["arm"], levels) if len(frame) else []
    nothing = "No grouping saved" if design == CLUSTERING else "No trial answered"
    rows = []
    for arm in arms:
        mine = frame[frame["arm"] == arm]
        rows.append([cell(arm), count(len(mine)), count(int(mine["completed"].sum())),
                     count(int((~mine["completed"]).sum())), count(int((mine["n_answers"] == 0).sum()))])
    hashes = frame["config_hash"].value_counts().to_dict() if len(frame) else {}
    return {
        "n": len(frame),
        "table": table(["Arm", "Enrolled", "Completed", "Not finished", nothing], rows, name="participants"),
        "hashes": [{"hash": h, "n": n, "current": h == config_hash} for h, n in hashes.items()],
        "mixed": len(hashes) > 1 or bool(hashes and config_hash not in hashes),
    }


def config_hash_line(current: str, data_hashes: Mapping[str, int]) -> str:
    """The configuration hash for the report: the current one, and any others the data ran under."""
    shown = current or "(none recorded)"
    if not any(h != current for h in data_hashes):
        return shown
    listed = ", ".join(f"{h} ({n} participants)" for h, n in data_hashes.items())
    return f"{shown}; the data ran under {listed}"


# --------------------------------------------------------------------------- power


def sample_size(*, design: str, d: float, alpha: float, target: float, alternative: str) -> dict:
    """The generic power calculation of the page: participants needed and the assumptions."""
    if design == CLUSTERING:
        n, achieved = paired_sample_size(d, alpha=alpha, power_target=target, alternative=alternative)
        return {
            "result": {"n": n, "unit": "participants (each takes every stage)", "achieved": achieved},
            "assumptions": [
                "paired t-test on the within-participant difference between two stages (statsmodels TTestPower)",
                f"true standardised mean difference d_z = {d:g} (mean difference over the SD of the differences)",
                f"{'two-sided' if alternative == 'two-sided' else 'one-sided'} test at α = {alpha:g}, target power {target:g}",
                "no multiplicity adjustment and no attrition; the Wilcoxon test needs about 5% more",
            ],
        }
    size = power.sample_size(d, alpha=alpha, power=target, alternative=alternative)
    return {
        "result": {"n": size.n_per_arm, "unit": "participants per arm", "achieved": size.achieved_power,
                   "exact": size.n_exact},
        "assumptions": list(size.assumptions),
    }


def power_figure(*, d: float, alpha: float, target: float, alternative: str) -> Figure:
    """Power of the two-sample t-test against participants per arm, up to 1.5 times the n needed."""
    n = power.sample_size(d, alpha=alpha, power=target, alternative=alternative).n_per_arm
    top = max(20, int(n * 1.5))
    step = max(1, top // 60)
    curve = power.power_curve(d, list(range(2, top + 1, step)), alpha=alpha, alternative=alternative)
    return figures.power_curve_figure(
        curve, target=target, title=f"Power for d = {d:g} at α = {alpha:g} ({n} per arm needed)"
    )


# --------------------------------------------------------------------------- figures


def figure(result: Analysis, name: str) -> Figure:
    """The figure `name` (one of `FIGURES` but ``power``) of an analysis, or one that says there
    is nothing to draw yet."""
    lres = result.learning
    cres = result.clustering or ClusteringResult()
    if name == "learning-curve":
        if lres is None or lres.curve.empty:
            return figures.no_data_figure("No trials answered yet")
        return figures.learning_curve_figure(lres.curve)
    if name == "ratings":
        if lres is None or lres.rating_dist is None:
            return figures.no_data_figure("No ratings yet")
        return figures.legend_clear_of_bars(figures.rating_distribution_figure(lres.rating_dist))
    if name == "purity":
        if cres.purities is None:
            return figures.no_data_figure("No groupings yet")
        return figures.purity_boxplot_figure(cres.purities)
    if name == "confidence":
        if cres.confidence_dist is None:
            return figures.no_data_figure("No confidence answers yet")
        return figures.legend_clear_of_bars(figures.confidence_figure(cres.confidence_dist))
    if name == "agent-ratings":
        if cres.agent_dist is None:
            return figures.no_data_figure("No agent ratings yet")
        return figures.legend_clear_of_bars(figures.agent_rating_figure(cres.agent_dist))
    raise ValueError(f"no figure {name!r} in an analysis; figures: {', '.join(FIGURES[:-1])}")
