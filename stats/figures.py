"""Figures of both studies as matplotlib ``Figure`` objects, plus PNG/SVG bytes.

Figures are built on ``matplotlib.figure.Figure`` directly, never through pyplot, so there is
no global figure state (safe in a web or Celery worker) and nothing has to be closed.
Rendering uses the Agg (PNG) and SVG backends.

Colours are from the Okabe-Ito palette, which stays distinguishable under the common colour
vision deficiencies; lines and bars also differ in line style, marker or hatch, so the
figures survive greyscale printing.

Every function takes the table made by the matching analysis function:

- `learning_curve_figure`: `learning.learning_curve` (Figure 5.8);
- `rating_distribution_figure`: `learning.rating_distribution` (Figure 5.9);
- `purity_boxplot_figure`: `clustering.purity_table` (XNN paper, Figure 4);
- `study_comparison_figure`: `clustering.purity_table` of several studies stacked (Figure 4 across studies);
- `confidence_figure`: `clustering.confidence_distribution` (Figure 5a-b);
- `agent_rating_figure`: `clustering.agent_rating_distribution` (Figure 5c);
- `power_curve_figure`: `power.power_curve`.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterable, Mapping

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from stats import clustering
from stats.schema import (
    AGENT_RATING_LABELS,
    CONFIDENCE_LABELS,
    FEEDBACK_RATING_LABELS,
    STUDY_A_ARMS,
    STUDY_B_AGENTS,
    STUDY_B_DATASETS,
    STUDY_B_STAGES,
    ordered_levels,
    require_columns,
)

OKABE_ITO = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "black": "#000000",
    "grey": "#999999",
}
_SPARE = [OKABE_ITO[k] for k in ("vermillion", "sky_blue", "yellow", "black", "grey")]

ARM_COLOURS = {
    "Control": OKABE_ITO["orange"],
    "GCAM": OKABE_ITO["blue"],
    "CDeepEx": OKABE_ITO["green"],
}
# The paper draws 1-Heatmap in blue and XNN in purple (Figure 5c); we keep that.
STAGE_COLOURS = {
    "NoVis": OKABE_ITO["orange"],
    "1-Heatmap": OKABE_ITO["blue"],
    "XNN": OKABE_ITO["purple"],
}
DATASET_NAMES = {"CUB": "CUB (gulls)", "CEL": "CEL (cancer cells)"}

_LINESTYLES = ["-", "--", "-.", ":"]
_MARKERS = ["o", "s", "^", "D", "v"]
_HATCHES = ["", "//", "..", "xx", "\\\\"]


def _colours(levels: list[str], known: Mapping[str, str]) -> dict[str, str]:
    spare = iter(_SPARE * 3)
    return {lvl: known.get(lvl) or next(spare) for lvl in levels}


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _empty(fig: Figure, message: str) -> Figure:
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12)
    ax.set_axis_off()
    return fig


# --------------------------------------------------------------------------- Study A


def learning_curve_figure(
    curve: pd.DataFrame,
    *,
    layout: str = "panels",
    chance: float | None = 0.5,
    title: str = "Cumulative correct answers per trial",
) -> Figure:
    """Figure 5.8: mean cumulative correct answers per arm over trials, with a ±1 SD band.

    `curve` has columns ``arm, trial, n, mean, sd`` (`learning.learning_curve`). ``layout``
    "panels" draws one panel per arm on a shared y axis, as in the dissertation; "overlay"
    draws all arms in one panel. `chance` adds the line expected from guessing (trial ·
    chance); None leaves it out.
    """
    require_columns(curve, ["arm", "trial", "n", "mean", "sd"], name="curve")
    arms = ordered_levels(curve["arm"], STUDY_A_ARMS)
    if layout not in ("panels", "overlay"):
        raise ValueError("layout must be 'panels' or 'overlay'")
    n_panels = len(arms) if layout == "panels" else 1
    fig = _new_figure(3.6 * n_panels + 0.6 if layout == "panels" else 7.0, 4.4)
    if not arms:
        return _empty(fig, "No trials to show")
    axes = fig.subplots(1, n_panels, sharey=True, squeeze=False)[0]
    colours = _colours(arms, ARM_COLOURS)
    max_trial = int(curve["trial"].max())
    for i, arm in enumerate(arms):
        ax = axes[i if layout == "panels" else 0]
        part = curve[curve["arm"] == arm].sort_values("trial")
        n_final = int(part["n"].iloc[-1])
        sd = part["sd"].fillna(0.0)
        ax.fill_between(
            part["trial"],
            part["mean"] - sd,
            part["mean"] + sd,
            color=colours[arm],
            alpha=0.2,
            linewidth=0,
        )
        ax.plot(
            part["trial"],
            part["mean"],
            color=colours[arm],
            linestyle=_LINESTYLES[i % 4],
            marker=_MARKERS[i % 5],
            markersize=4,
            linewidth=2,
            label=f"{arm} (n = {n_final})",
        )
        if layout == "panels":
            ax.set_title(f"{arm} (n = {n_final})")
    trials = np.arange(0, max_trial + 1)
    for j, ax in enumerate(axes):
        if chance is not None:
            ax.plot(
                trials,
                trials * chance,
                color=OKABE_ITO["grey"],
                linestyle=":",
                linewidth=1.5,
                label=f"guessing ({chance:.0%} per trial)",
            )
        ax.set_xlim(0.5, max_trial + 0.5)
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=10))
        ax.set_xlabel("Trial")
        ax.grid(True, alpha=0.3)
        if j == 0:
            ax.set_ylabel("Cumulative correct answers")
    if layout == "panels":
        axes[0].legend(handles=axes[0].get_lines()[-1:], loc="upper left", frameon=False)
    else:
        axes[0].legend(loc="upper left", frameon=False)
    fig.suptitle(f"{title}: mean (line) ± 1 SD (band)")
    return fig


def _grouped_bars(
    ax,
    dist: pd.DataFrame,
    *,
    group: str,
    value: str,
    scale: Mapping[int, str],
    groups: list[str],
    colours: Mapping[str, str],
    wrap: int = 12,
) -> None:
    codes = list(scale)
    x = np.arange(len(codes))
    width = 0.8 / max(len(groups), 1)
    for i, g in enumerate(groups):
        part = dist[dist[group] == g].set_index(value).reindex(codes)
        n = int(part["count"].sum())
        shares = part["share"].fillna(0.0).to_numpy()
        ax.bar(
            x - 0.4 + width * (i + 0.5),
            shares,
            width,
            color=colours[g],
            edgecolor="black",
            linewidth=0.6,
            hatch=_HATCHES[i % 5],
            label=f"{g} (n = {n})",
        )
    ax.set_xticks(x, [textwrap.fill(scale[c], wrap) for c in codes])
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylabel("Share of participants")
    # Headroom above the tallest bar for the legend (drawn inside, upper left).
    top = max(0.05, float(dist["share"].max(skipna=True) or 0)) * 1.45
    ax.set_ylim(0, top)
    ax.set_yticks([t for t in ax.get_yticks() if 0 <= t <= min(1.0, top)])  # headroom, but no "120 %" tick
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def rating_distribution_figure(
    dist: pd.DataFrame, *, title: str = "How helpful was the feedback? (rating per arm)"
) -> Figure:
    """Figure 5.9: share of each 5-level feedback rating per arm (`learning.rating_distribution`)."""
    return _rating_bars_figure(
        dist,
        group="arm",
        order=STUDY_A_ARMS,
        height=4.6,
        empty="No ratings to show",
        scale=FEEDBACK_RATING_LABELS,
        palette=ARM_COLOURS,
        wrap=14,
        legend="Arm",
        title=title,
    )


def _rating_bars_figure(
    dist: pd.DataFrame,
    *,
    group: str,
    order: Iterable[str],
    height: float,
    empty: str,
    scale: Mapping[int, str],
    palette: Mapping[str, str],
    wrap: int,
    legend: str,
    title: str,
) -> Figure:
    """Grouped bars of the share of each rating per ``group`` level (a rating distribution)."""
    require_columns(dist, [group, "rating", "count", "share"], name="dist")
    levels = ordered_levels(dist[group], order)
    fig = _new_figure(8.5, height)
    if not levels or dist["count"].sum() == 0:
        return _empty(fig, empty)
    ax = fig.add_subplot()
    _grouped_bars(
        ax,
        dist,
        group=group,
        value="rating",
        scale=scale,
        groups=levels,
        colours=_colours(levels, palette),
        wrap=wrap,
    )
    ax.set_xlabel("Rating")
    ax.legend(title=legend, frameon=False, loc="upper left")
    ax.set_title(title)
    return fig


# --------------------------------------------------------------------------- Study B


#: The second row of `purity_boxplot_figure`: the chance-adjusted agreement and its axis label.
ADJUSTED_MEASURE = ("ari", "Adjusted Rand index")


def _boxes(ax, part: pd.DataFrame, stages: list[str], colours: Mapping[str, str], value: str,
           rng: np.random.Generator, *, label_mean: bool) -> list[np.ndarray]:
    values = [part.loc[part["stage"] == s, value].dropna().to_numpy() for s in stages]
    positions = np.arange(1, len(stages) + 1)
    shown = [i for i, v in enumerate(values) if len(v)]
    boxes = ax.boxplot(
        [values[i] for i in shown],
        positions=positions[shown],
        widths=0.55,
        patch_artist=True,
        showfliers=False,
        medianprops={"color": "black", "linewidth": 2},
    )
    for patch, i in zip(boxes["boxes"], shown, strict=True):
        patch.set_facecolor(colours[stages[i]])
        patch.set_alpha(0.55)
        patch.set_hatch(_HATCHES[i % 5])
    for i in shown:
        v = values[i]
        ax.scatter(positions[i] + rng.uniform(-0.12, 0.12, len(v)), v, s=14, color="black", alpha=0.6,
                   zorder=3, linewidths=0)
        ax.scatter([positions[i]], [v.mean()], marker="D", s=50, color="white", edgecolor="black", zorder=4,
                   label="mean" if label_mean and i == shown[0] else None)
    ax.set_xticks(positions, [f"{s}\n(n = {len(v)})" for s, v in zip(stages, values, strict=True)])
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return values


def purity_boxplot_figure(
    purities: pd.DataFrame,
    *,
    title: str = "Clustering purity with respect to the CNN's predictions",
    seed: int = 0,
) -> Figure:
    """XNN paper Figure 4: purity per stage, one panel per dataset ((a) CEL, (b) CUB); with an
    ``ari`` column, a second row of panels shows the adjusted Rand index (0 = chance).

    `purities` has columns ``participant, stage, dataset, purity`` (`clustering.purity_table`,
    which also gives ``chance_purity`` and ``ari``). Boxes show quartiles with whiskers at
    1.5 IQR; dots are participants (jittered sideways with a fixed `seed`); the white diamond is
    the mean; with ``chance_purity``, a dashed grey bar marks each stage's mean chance purity
    (what shuffled labels would score with the same group sizes).
    """
    require_columns(purities, ["stage", "dataset", "purity"], name="purities")
    stages = ordered_levels(purities["stage"], STUDY_B_STAGES)
    return _purity_panels(purities, stages, _colours(stages, STAGE_COLOURS), title=title, seed=seed)


def study_comparison_figure(
    purities: pd.DataFrame,
    *,
    title: str = "Clustering purity with respect to the CNN's predictions, by study",
    seed: int = 0,
) -> Figure:
    """XNN paper Figure 4 across studies: every condition of every study side by side, one
    panel per data set (e.g. the main study's NoVis, 1-Heatmap (ExcitationBP) and XNN beside the
    complementary study's 1-Heatmap (DeepLIFT)), studies apart by a dotted line; with ``ari``,
    the adjusted Rand index below, as in `purity_boxplot_figure`.

    `purities` is `clustering.purity_table` output of several studies stacked with ``study``
    and ``condition`` columns (as `clustering.compare_studies` takes). A condition keeps its
    colour in every study (the stage's colour for the first condition of each stage, else a spare).
    """
    require_columns(purities, ["study", "condition", "stage", "dataset", "purity"], name="purities")
    conditions = clustering.study_conditions(purities)
    # A tick per condition, wrapped so that six fit a panel: "1-Heatmap\n(DeepLIFT)\n[study]".
    label = {key: key[1].replace(" (", "\n(") + "\n[" + key[0] + "]" for key in conditions}
    frame = purities.assign(stage=[label[(str(s), str(c))] for s, c in zip(purities["study"], purities["condition"], strict=True)])
    stage_of = dict(zip(purities["condition"].astype(str), purities["stage"], strict=False))
    by_condition: dict[str, str] = {}
    spare = iter(_SPARE * 3)
    for _, condition in conditions:
        if condition not in by_condition:
            known = STAGE_COLOURS.get(stage_of[condition])
            by_condition[condition] = known if known and known not in by_condition.values() else next(spare)
    colours = {label[key]: by_condition[key[1]] for key in conditions}
    studies = [key[0] for key in conditions]
    separators = [i + 1.5 for i in range(len(studies) - 1) if studies[i] != studies[i + 1]]
    return _purity_panels(frame, [label[k] for k in conditions], colours, title=title, seed=seed, separators=separators)


def _purity_panels(
    purities: pd.DataFrame, stages: list[str], colours: Mapping[str, str], *, title: str, seed: int,
    separators: Iterable[float] = (),
) -> Figure:
    datasets = ordered_levels(purities["dataset"], STUDY_B_DATASETS)
    adjusted, adjusted_label = ADJUSTED_MEASURE
    rows = 2 if adjusted in purities.columns else 1
    width = max(4.2, 1.3 * len(stages) + 0.5)
    fig = _new_figure(width * max(len(datasets), 1) + 0.4, 4.6 + 3.6 * (rows - 1))
    if not datasets:
        return _empty(fig, "No groupings to show")
    axes = fig.subplots(rows, len(datasets), sharey="row", squeeze=False)
    rng = np.random.default_rng(seed)
    letter = iter("abcdefghijklmnopqrstuvwxyz")
    separators = list(separators)
    for k, dataset in enumerate(datasets):
        ax = axes[0][k]
        part = purities[purities["dataset"] == dataset]
        _boxes(ax, part, stages, colours, "purity", rng, label_mean=True)
        if "chance_purity" in part.columns:
            for i, stage in enumerate(stages):
                chance = part.loc[part["stage"] == stage, "chance_purity"].dropna()
                if len(chance):
                    ax.hlines(chance.mean(), i + 1 - 0.32, i + 1 + 0.32, colors=OKABE_ITO["grey"], linestyles="--",
                              linewidth=2, zorder=5, label="chance (mean)" if i == 0 else None)
        ax.set_title(f"({next(letter)}) {DATASET_NAMES.get(dataset, dataset)}")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_ylim(0, 1.05)
    axes[0][0].set_ylabel("Purity")
    axes[0][0].legend(loc="lower right", frameon=True)
    if rows == 2:
        low = min(-0.1, float(purities[adjusted].min()) - 0.05) if purities[adjusted].notna().any() else -0.1
        for k, dataset in enumerate(datasets):
            ax = axes[1][k]
            _boxes(ax, purities[purities["dataset"] == dataset], stages, colours, adjusted, rng, label_mean=False)
            ax.axhline(0, color=OKABE_ITO["grey"], linestyle="--", linewidth=1.5, zorder=1)
            ax.set_title(f"({next(letter)}) {DATASET_NAMES.get(dataset, dataset)}: {adjusted_label[0].lower()}{adjusted_label[1:]}")
            ax.set_ylim(low, 1.05)
        axes[1][0].set_ylabel(f"{adjusted_label} (0 = chance)")
    for ax in axes.flat:
        for x in separators:
            ax.axvline(x, color=OKABE_ITO["black"], linestyle=":", linewidth=1.2, zorder=1)
    fig.suptitle(title)
    return fig


def confidence_figure(
    dist: pd.DataFrame,
    *,
    title: str = "Confidence that the grouping is correct, per stage",
) -> Figure:
    """XNN paper Figure 5a-b: confidence level shares per stage, a panel per dataset if any.

    `dist` has columns ``[dataset,] stage, confidence, count, share``
    (`clustering.confidence_distribution`).
    """
    require_columns(dist, ["stage", "confidence", "count", "share"], name="dist")
    datasets = (
        ordered_levels(dist["dataset"], STUDY_B_DATASETS) if "dataset" in dist.columns else [None]
    )
    stages = ordered_levels(dist["stage"], STUDY_B_STAGES)
    fig = _new_figure(8.0, 3.6 * len(datasets) + 0.6)
    if not stages or dist["count"].sum() == 0:
        return _empty(fig, "No confidence answers to show")
    axes = fig.subplots(len(datasets), 1, sharex=True, squeeze=False)[:, 0]
    colours = _colours(stages, STAGE_COLOURS)
    for k, (ax, dataset) in enumerate(zip(axes, datasets, strict=True)):
        part = dist if dataset is None else dist[dist["dataset"] == dataset]
        _grouped_bars(
            ax,
            part,
            group="stage",
            value="confidence",
            scale=CONFIDENCE_LABELS,
            groups=stages,
            colours=colours,
        )
        if dataset is not None:
            ax.set_title(f"({chr(ord('a') + k)}) {DATASET_NAMES.get(dataset, dataset)}")
        ax.legend(title="Stage", frameon=False, loc="upper right")
    axes[-1].set_xlabel("Confidence")
    fig.suptitle(title)
    return fig


def agent_rating_figure(
    dist: pd.DataFrame, *, title: str = "Rating of each AI agent's performance"
) -> Figure:
    """XNN paper Figure 5c: share of each 7-level rating per agent
    (`clustering.agent_rating_distribution`)."""
    return _rating_bars_figure(
        dist,
        group="agent",
        order=STUDY_B_AGENTS,
        height=4.4,
        empty="No agent ratings to show",
        scale=AGENT_RATING_LABELS,
        palette=STAGE_COLOURS,
        wrap=10,
        legend="Agent",
        title=title,
    )


def power_curve_figure(
    curve: pd.DataFrame,
    *,
    target: float = 0.8,
    title: str = "Power against participants per arm",
) -> Figure:
    """Power by n per arm (`power.power_curve`), with the `target` power as a dashed line."""
    require_columns(curve, ["n_per_arm", "power"], name="curve")
    fig = _new_figure(6.4, 4.0)
    ax = fig.add_subplot()
    ax.plot(
        curve["n_per_arm"],
        curve["power"],
        color=OKABE_ITO["blue"],
        linewidth=2,
        marker="o",
        markersize=3,
    )
    ax.axhline(
        target, color=OKABE_ITO["vermillion"], linestyle="--", label=f"target power {target:.0%}"
    )
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylim(0, 1)
    ax.set_xlabel("Participants per arm")
    ax.set_ylabel("Power")
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False, loc="lower right")
    ax.set_title(title)
    return fig


# --------------------------------------------------------------------------- touch-ups


def no_data_figure(message: str) -> Figure:
    """A small figure that says there is nothing to draw (the figure functions' own empty
    figures are sized for data, e.g. 0.6 inches wide without arms)."""
    fig = Figure(figsize=(6.4, 1.6), layout="constrained")
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12)
    ax.set_axis_off()
    return fig


def legend_clear_of_bars(fig: Figure) -> Figure:
    """Bar figures put their legend top left, over the bars when the first levels are the tall
    ones: give the axes headroom and let matplotlib pick the emptiest corner."""
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None and ax.patches:
            bottom, top = ax.get_ylim()
            ax.set_ylim(bottom, top * 1.35)
            legend.set_loc("best")
    return fig


# --------------------------------------------------------------------------- bytes


def figure_png(fig: Figure, *, dpi: int = 150) -> bytes:
    """The figure as PNG bytes (Agg)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def figure_svg(fig: Figure) -> bytes:
    """The figure as SVG bytes; the same figure gives the same bytes (no date stamp, fixed
    salt for the element ids, which matplotlib otherwise randomises)."""
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "studyapp-analysis"}):
        fig.savefig(buf, format="svg", facecolor="white", metadata={"Date": None})
    return buf.getvalue()
