"""A self-contained HTML report of a whole analysis (no external files, scripts or fonts).

Figures are embedded as base64 ``data:`` URIs (PNG, or SVG with ``image_format="svg"``; a
data URI rather than inline ``<svg>`` keeps matplotlib's element ids of different figures from
clashing). Tables are pandas ``to_html`` with escaping on. Every string that comes from outside
(configuration hash, version, arm and participant names) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
import platform
from collections.abc import Sequence
from datetime import UTC, datetime

import matplotlib
import numpy as np
import pandas as pd
import scipy
import statsmodels

from studyapp.analysis import clustering, figures, learning, power
from studyapp.analysis.exclusions import ExclusionReport
from studyapp.analysis.schema import FEEDBACK_RATING_LABELS

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 72rem;
       margin: 2rem auto; padding: 0 1rem; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.3rem; border-bottom: 1px solid #ccc; margin-top: 2.2rem; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.88rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td { white-space: nowrap; } .scroll { overflow-x: auto; max-width: 100%; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; }
figcaption, .note { font-size: 0.9rem; color: #444; }
.meta td { text-align: left; } code { font-size: 0.9em; }
"""


def _fmt(x) -> str:
    if isinstance(x, float | np.floating):
        if np.isnan(x):
            return "–"
        return f"{x:.4g}"
    return str(x)


def _table(frame: pd.DataFrame) -> str:
    table = frame.to_html(
        index=False, border=0, escape=True, na_rep="–", float_format=lambda x: f"{x:.4g}"
    )
    return f'<div class="scroll">{table}</div>'


def _figure(fig, *, alt: str, caption: str, image_format: str) -> str:
    if image_format == "svg":
        data, mime = figures.figure_svg(fig), "image/svg+xml"
    else:
        data, mime = figures.figure_png(fig), "image/png"
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:{mime};base64,{encoded}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _compact(comparisons: pd.DataFrame) -> pd.DataFrame:
    """The columns of `clustering.compare_stages` worth reading, with readable names."""
    out = pd.DataFrame(
        {
            "dataset": comparisons["group"],
            "hypothesis (H1)": comparisons["hypothesis"],
            "pairs": comparisons["n_pairs"],
            "mean 1": comparisons["mean1"],
            "mean 2": comparisons["mean2"],
            "Cohen dz": comparisons["cohen_dz"],
            "paired t": comparisons["t"],
            "p (t)": comparisons["p_t"],
            "p (t, Holm)": comparisons["p_t_adjusted"],
            "Wilcoxon W": comparisons["wilcoxon_w"],
            "p (W)": comparisons["p_wilcoxon"],
            "p (W, Holm)": comparisons["p_wilcoxon_adjusted"],
            "W null": comparisons["wilcoxon_method"],
        }
    )
    return out.dropna(axis=1, how="all")


def _p(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{html.escape(text)}</p>'


def _exclusion_section(report: ExclusionReport) -> str:
    rules = json.dumps(report.rules) if report.rules else "none"
    parts = ["<h2>Exclusions</h2>", _p(f"Rules: {rules}.")]
    parts.append(
        _p(
            f"{report.n_excluded} of {report.n_before} participants excluded, "
            f"{report.n_kept} analysed. Participants failing each rule: "
            + (", ".join(f"{k} {v}" for k, v in report.by_rule.items()) or "no rules active")
            + "."
        )
    )
    parts.append(_table(report.counts))
    if len(report.excluded):
        parts.append(_table(report.excluded))
    return "\n".join(parts)


def _welch_table(family: learning.PairwiseComparison) -> pd.DataFrame:
    """Table 5.3 in a readable form: one row per test, groups as "mean ± SD (n)"."""
    rows = []
    for test, p_adj in zip(family.tests, family.p_adjusted, strict=True):
        rows.append(
            {
                "hypothesis (H1)": test.hypothesis,
                "group 1: mean ± SD (n)": f"{test.mean1:.3f} ± {test.sd1:.3f} ({test.n1})",
                "group 2: mean ± SD (n)": f"{test.mean2:.3f} ± {test.sd2:.3f} ({test.n2})",
                "Welch t": test.t,
                "df": test.df,
                "p": test.p,
                f"p ({family.adjust_method})": p_adj,
                f"Hedges' g [{test.ci_level:.0%} CI]": (
                    f"{test.hedges_g:.3f} [{test.g_ci_low:.3f}, {test.g_ci_high:.3f}]"
                ),
            }
        )
    return pd.DataFrame(rows)


def _sample_size_rows(
    totals: pd.DataFrame, pairs: Sequence, *, alpha: float, power_target: float
) -> pd.DataFrame:
    rows = []
    for arm1, arm2, alternative in pairs:
        eff = power.pilot_effect(totals, arm1, arm2)
        # A "less" test is a "greater" test with the arms swapped: plan with |d|.
        sided = "two-sided" if alternative == "two-sided" else "greater"
        row = {
            "comparison": f"{arm1} vs {arm2}",
            "test": "two-sided" if sided == "two-sided" else "one-sided",
            "observed d": eff.d,
        }
        for target in (power_target, 0.5):
            try:
                n = power.sample_size(
                    abs(eff.d), alpha=alpha, power=target, alternative=sided
                ).n_per_arm
            except ValueError:  # d = 0 (or undefined): no finite n
                n = None
            row[f"n per arm, power {target:g}"] = n
        rows.append(row)
    return pd.DataFrame(rows)


def _study_a_section(
    trials: pd.DataFrame,
    ratings: pd.DataFrame | None,
    *,
    pairs: Sequence,
    alpha: float,
    power_target: float,
    image_format: str,
) -> str:
    parts = ["<h2>Study A: learning to predict the classifier</h2>"]
    curve = learning.learning_curve(trials)
    parts.append(
        _figure(
            figures.learning_curve_figure(curve),
            alt="Cumulative correct answers per trial, mean and SD per arm",
            caption="Cumulative correct answers at each trial, mean ± 1 SD per arm "
            "(dissertation Figure 5.8). The dotted line is guessing.",
            image_format=image_format,
        )
    )
    parts.append("<details><summary>Learning-curve table</summary>" + _table(curve) + "</details>")
    n_trials = int(trials["trial_index"].max()) + 1
    parts.append(f"<h3>Correct answers after {n_trials} trials (Table 5.2)</h3>")
    counts = learning.final_counts(trials, n_trials=n_trials)
    parts.append(_table(counts))
    if counts["n_short"].sum():
        parts.append(_p("n_short: participants with fewer trials, not counted in mean and SD."))

    totals = learning.participant_totals(trials, n_trials=n_trials)
    totals = totals[totals["n_trials"] == n_trials]
    present = set(totals["arm"])
    usable = [
        p
        for p in pairs
        if p[0] in present
        and p[1] in present
        and (totals["arm"] == p[0]).sum() >= 2
        and (totals["arm"] == p[1]).sum() >= 2
    ]
    if usable:
        family = learning.pairwise_welch(totals, usable, alpha=alpha)
        parts.append("<h3>Pairwise Welch t-tests (Table 5.3)</h3>")
        parts.append(_table(_welch_table(family)))
        parts.append(_p(family.note))
        parts.append(
            _p(
                "Hedges' g: standardised difference with pooled SD and small-sample correction; "
                f"its {family.tests[0].ci_level:.0%} interval is two-sided "
                f"({family.tests[0].ci_method.replace('_', ' ')} method)."
            )
        )
        parts.append("<h3>Sample size for a conclusive comparison</h3>")
        parts.append(
            _table(_sample_size_rows(totals, usable, alpha=alpha, power_target=power_target))
        )
        parts.append(
            _p(
                f"statsmodels TTestIndPower at alpha = {alpha:g}, treating each observed d as the "
                "true effect (a small study's d is very uncertain: see the intervals of g above). "
                "Power 0.5 is about the n at which the same means and SDs would just reach "
                "p = alpha."
            )
        )
    else:
        parts.append(_p("Too few participants per arm for the pairwise tests."))

    if ratings is not None and len(ratings):
        parts.append("<h3>How participants rated the feedback (Figure 5.9)</h3>")
        dist = learning.rating_distribution(ratings)
        parts.append(
            _figure(
                figures.rating_distribution_figure(dist),
                alt="Feedback rating distribution per arm",
                caption="Share of each 5-level feedback rating per arm (dissertation Figure 5.9).",
                image_format=image_format,
            )
        )
        arms = list(dict.fromkeys(dist["arm"]))  # already in Control, GCAM, CDeepEx order
        wide = dist.pivot(index="label", columns="arm", values="count")
        wide = wide.reindex(index=list(FEEDBACK_RATING_LABELS.values()), columns=arms)
        wide.columns.name = None
        parts.append(_table(wide.rename_axis("rating").reset_index()))
        cmp = learning.rating_comparison(ratings)
        parts.append(
            _p(
                f"{cmp['test']}: H = {_fmt(cmp['H'])}, p = {_fmt(cmp['p'])}; "
                f"medians {cmp['median_per_arm']}."
            )
        )
    return "\n".join(parts)


def _study_b_section(
    groupings: pd.DataFrame | None,
    confidence: pd.DataFrame | None,
    agent_ratings: pd.DataFrame | None,
    *,
    stage_pairs: Sequence,
    image_format: str,
) -> str:
    parts = ["<h2>Study B: grouping images with explanations</h2>"]
    if groupings is not None and len(groupings):
        purities = clustering.purity_table(groupings)
        parts.append(
            _figure(
                figures.purity_boxplot_figure(purities),
                alt="Box plots of clustering purity per stage and dataset",
                caption="Purity of each participant's grouping with respect to the CNN's "
                "predictions (XNN paper Figure 4).",
                image_format=image_format,
            )
        )
        parts.append(_table(clustering.purity_summary(purities)))
        parts.append("<h3>Purity: within-participant comparisons</h3>")
        parts.append(
            _table(_compact(clustering.compare_stages(purities, value="purity", pairs=stage_pairs)))
        )
        parts.append(
            _p(
                "Paired t-test and Wilcoxon signed-rank test per dataset; "
                "p-values Holm-adjusted within each dataset and test."
            )
        )
    if confidence is not None and len(confidence):
        parts.append("<h3>Confidence per stage</h3>")
        parts.append(
            _figure(
                figures.confidence_figure(clustering.confidence_distribution(confidence)),
                alt="Confidence level distribution per stage",
                caption="Confidence that the grouping is correct, per stage (XNN paper Figure 5a-b).",
                image_format=image_format,
            )
        )
        parts.append(_table(_compact(clustering.compare_confidence(confidence, pairs=stage_pairs))))
        parts.append(
            _p(
                "Confidence coded 0 (Zero) to 6 (100%); the Wilcoxon test is the "
                "primary one for this ordinal scale."
            )
        )
    if agent_ratings is not None and len(agent_ratings):
        parts.append("<h3>Agent ratings</h3>")
        parts.append(
            _figure(
                figures.agent_rating_figure(clustering.agent_rating_distribution(agent_ratings)),
                alt="Agent rating distribution",
                caption="Rating of each AI agent, Very Poor (1) to Very Good (7) (XNN paper Figure 5c).",
                image_format=image_format,
            )
        )
        agents = set(agent_ratings["agent"])
        if {"XNN", "1-Heatmap"} <= agents:
            pref = clustering.agent_preference(agent_ratings)
            parts.append(_table(pd.DataFrame([pref.as_dict()])))
            parts.append(
                _p(
                    "Wilcoxon signed-rank on the paired ratings and exact sign test on "
                    "who preferred which agent (ties dropped)."
                )
            )
    return "\n".join(parts)


def render_report(
    *,
    config_hash: str,
    software_version: str,
    exclusion_report: ExclusionReport | None = None,
    trials: pd.DataFrame | None = None,
    ratings: pd.DataFrame | None = None,
    groupings: pd.DataFrame | None = None,
    confidence: pd.DataFrame | None = None,
    agent_ratings: pd.DataFrame | None = None,
    pairs: Sequence = learning.DISSERTATION_PAIRS,
    stage_pairs: Sequence = clustering.DEFAULT_STAGE_PAIRS,
    alpha: float = 0.05,
    power_target: float = 0.8,
    title: str = "Analysis report",
    generated_at: datetime | None = None,
    image_format: str = "png",
) -> str:
    """The whole analysis as one HTML document (a ``str``).

    Study A sections appear when `trials` is given (tidy trials after exclusions, see
    `learning`), Study B sections for whichever of `groupings`, `confidence`, `agent_ratings`
    is given (see `clustering`). `alpha` is the significance level of the tests and the power
    table (the dissertation used 0.1). `generated_at` must be timezone-aware; default now (UTC).
    """
    if image_format not in ("png", "svg"):
        raise ValueError("image_format must be 'png' or 'svg'")
    generated_at = generated_at or datetime.now(UTC)
    if generated_at.tzinfo is None:
        raise ValueError("generated_at must be timezone-aware")
    versions = (
        f"Python {platform.python_version()}, pandas {pd.__version__}, scipy {scipy.__version__}, "
        f"statsmodels {statsmodels.__version__}, matplotlib {matplotlib.__version__}"
    )
    meta = pd.DataFrame(
        {
            "": ["Configuration hash", "Software version", "Generated", "Libraries", "Alpha"],
            " ": [
                config_hash,
                software_version,
                generated_at.isoformat(timespec="seconds"),
                versions,
                f"{alpha:g}",
            ],
        }
    )
    body = [
        f"<h1>{html.escape(title)}</h1>",
        meta.to_html(index=False, header=False, border=0, classes="meta"),
    ]
    if exclusion_report is not None:
        body.append(_exclusion_section(exclusion_report))
    if trials is not None and len(trials):
        body.append(
            _study_a_section(
                trials,
                ratings,
                pairs=pairs,
                alpha=alpha,
                power_target=power_target,
                image_format=image_format,
            )
        )
    if any(x is not None and len(x) for x in (groupings, confidence, agent_ratings)):
        body.append(
            _study_b_section(
                groupings,
                confidence,
                agent_ratings,
                stage_pairs=stage_pairs,
                image_format=image_format,
            )
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
