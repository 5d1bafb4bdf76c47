"""Every figure renders to PNG and SVG with readable labels.

Set ANALYSIS_FIGURES_DIR to keep the PNGs for a look (they go to a temporary directory
otherwise).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.colors import to_hex
from PIL import Image

from stats import clustering, figures, learning, power
from stats.synthetic import generate_study_a, generate_study_b


@pytest.fixture(scope="module")
def study_a():
    return generate_study_a(15, seed=3)


@pytest.fixture(scope="module")
def study_b():
    return generate_study_b(30, seed=1)


@pytest.fixture
def out_dir(tmp_path) -> Path:
    configured = os.environ.get("ANALYSIS_FIGURES_DIR")
    path = Path(configured) if configured else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_and_check(fig, out_dir: Path, name: str) -> Image.Image:
    png = figures.figure_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (out_dir / f"{name}.png").write_bytes(png)
    assert b"<svg" in figures.figure_svg(fig)[:500]
    image = Image.open(io.BytesIO(png))
    assert image.width >= 800 and image.height >= 500
    return image


def texts(fig) -> set[str]:
    found = {t.get_text() for t in fig.findobj(match=lambda a: hasattr(a, "get_text"))}
    return {t for t in found if t}


def legend_labels(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def test_learning_curve_panels_and_overlay(study_a, out_dir):
    curve = learning.learning_curve(study_a[0])
    fig = figures.learning_curve_figure(curve)
    save_and_check(fig, out_dir, "fig_5_8_learning_curve")
    assert [ax.get_title() for ax in fig.axes] == [
        "Control (n = 15)",
        "GCAM (n = 15)",
        "CDeepEx (n = 15)",
    ]
    assert fig.axes[0].get_ylabel() == "Cumulative correct answers"
    assert all(ax.get_xlabel() == "Trial" for ax in fig.axes)
    assert "guessing (50% per trial)" in legend_labels(fig)
    colours = {to_hex(line.get_color()) for ax in fig.axes for line in ax.get_lines()}
    assert {c.lower() for c in figures.ARM_COLOURS.values()} <= colours

    overlay = figures.learning_curve_figure(curve, layout="overlay", chance=None)
    save_and_check(overlay, out_dir, "fig_5_8_learning_curve_overlay")
    assert legend_labels(overlay) == ["Control (n = 15)", "GCAM (n = 15)", "CDeepEx (n = 15)"]


def test_rating_distribution(study_a, out_dir):
    fig = figures.rating_distribution_figure(learning.rating_distribution(study_a[1]))
    save_and_check(fig, out_dir, "fig_5_9_ratings")
    assert "mostly\nmisleading" in texts(fig) or "mostly misleading" in texts(fig)
    assert legend_labels(fig) == ["Control (n = 15)", "GCAM (n = 15)", "CDeepEx (n = 15)"]
    assert fig.axes[0].get_ylabel() == "Share of participants"


def test_purity_boxplots(study_b, out_dir):
    fig = figures.purity_boxplot_figure(clustering.purity_table(study_b[0]))
    save_and_check(fig, out_dir, "xnn_fig_4_purity")
    assert [ax.get_title() for ax in fig.axes] == [
        "(a) CEL (cancer cells)", "(b) CUB (gulls)",
        "(c) CEL (cancer cells): adjusted Rand index", "(d) CUB (gulls): adjusted Rand index",
    ]
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["NoVis\n(n = 30)", "1-Heatmap\n(n = 30)", "XNN\n(n = 30)"]
    assert fig.axes[0].get_ylabel() == "Purity"
    assert fig.axes[2].get_ylabel() == "Adjusted Rand index (0 = chance)"
    assert legend_labels(fig) == ["chance (mean)", "mean"] or legend_labels(fig) == ["mean", "chance (mean)"]
    # without the adjusted measure (e.g. an old table): purity alone
    assert len(figures.purity_boxplot_figure(clustering.purity_table(study_b[0])[["participant", "stage", "dataset", "purity"]]).axes) == 2


def test_confidence(study_b, out_dir):
    fig = figures.confidence_figure(clustering.confidence_distribution(study_b[1]))
    save_and_check(fig, out_dir, "xnn_fig_5ab_confidence")
    assert [ax.get_title() for ax in fig.axes] == ["(a) CEL (cancer cells)", "(b) CUB (gulls)"]
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()][-1] == "100%"
    single = clustering.confidence_distribution(
        study_b[1][study_b[1]["dataset"] == "CUB"].drop(columns="dataset")
    )
    save_and_check(figures.confidence_figure(single), out_dir, "xnn_fig_5ab_confidence_single")


def test_agent_rating(study_b, out_dir):
    fig = figures.agent_rating_figure(clustering.agent_rating_distribution(study_b[2]))
    save_and_check(fig, out_dir, "xnn_fig_5c_agents")
    assert legend_labels(fig) == ["1-Heatmap (n = 30)", "XNN (n = 30)"]
    assert "Very Good" in texts(fig)


def test_power_curve(out_dir):
    fig = figures.power_curve_figure(
        power.power_curve(0.2, range(10, 400, 10), alpha=0.1), title="d = 0.2"
    )
    save_and_check(fig, out_dir, "power_curve")
    assert fig.axes[0].get_xlabel() == "Participants per arm"


def test_svg_bytes_are_reproducible(study_a):
    fig = figures.rating_distribution_figure(learning.rating_distribution(study_a[1]))
    assert figures.figure_svg(fig) == figures.figure_svg(fig)


def test_empty_inputs_draw_a_message(out_dir):
    empty_curve = pd.DataFrame(columns=["arm", "trial", "n", "mean", "sd"])
    fig = figures.learning_curve_figure(empty_curve)
    assert "No trials to show" in texts(fig)
    empty_dist = learning.rating_distribution(
        pd.DataFrame(columns=["participant", "arm", "rating"])
    )
    assert "No ratings to show" in texts(figures.rating_distribution_figure(empty_dist))


def test_no_data_figure_says_so():
    fig = figures.no_data_figure("No groupings yet")
    assert "No groupings yet" in texts(fig)
    assert not fig.axes[0].axison
    assert tuple(fig.get_size_inches()) == (6.4, 1.6)


def test_the_legend_of_a_bar_figure_gets_headroom(study_a):
    fig = figures.rating_distribution_figure(learning.rating_distribution(study_a[1]))
    top = fig.axes[0].get_ylim()[1]
    figures.legend_clear_of_bars(fig)
    assert fig.axes[0].get_ylim()[1] == pytest.approx(top * 1.35)
    assert fig.axes[0].get_legend()._loc == 0  # "best"
    # A figure without bars (a line plot) is left as it is.
    curve = figures.learning_curve_figure(learning.learning_curve(study_a[0]))
    limits = [ax.get_ylim() for ax in curve.axes]
    figures.legend_clear_of_bars(curve)
    assert [ax.get_ylim() for ax in curve.axes] == limits
