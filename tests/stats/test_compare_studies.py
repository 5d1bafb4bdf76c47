"""Between-study comparison of clustering purity (XNN paper Fig. 4 across studies)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from stats import clustering, figures
from stats.schema import AnalysisInputError
from stats.synthetic import generate_study_b


def _study(name: str, accuracy: dict, heatmap: str, seed: int, n: int = 24) -> pd.DataFrame:
    groupings, _, _ = generate_study_b(n, accuracy=accuracy, seed=seed)
    groupings["participant"] = name + "-" + groupings["participant"]
    table = clustering.purity_table(groupings)
    table["study"] = name
    table["condition"] = table["stage"].where(table["stage"] != "1-Heatmap", f"1-Heatmap ({heatmap})")
    return table


SAME = {d: {"NoVis": 0.4, "1-Heatmap": 0.6, "XNN": 0.8} for d in ("CUB", "CEL")}
#: The complementary study's heatmap helps far less on CEL only; NoVis and XNN are as in the main study.
WEAKER_ON_CEL = {"CUB": {"NoVis": 0.4, "1-Heatmap": 0.6, "XNN": 0.8}, "CEL": {"NoVis": 0.4, "1-Heatmap": 0.05, "XNN": 0.8}}


@pytest.fixture(scope="module")
def two_studies() -> pd.DataFrame:
    return pd.concat(
        [_study("main", SAME, "ExcitationBP", seed=1), _study("complementary", WEAKER_ON_CEL, "DeepLIFT", seed=2)],
        ignore_index=True,
    )


def _row(table, dataset, measure, c1, c2):
    hit = table[(table["dataset"] == dataset) & (table["measure"] == measure)
                & (table["condition1"] == c1) & (table["condition2"] == c2)]
    assert len(hit) == 1, hit
    return hit.iloc[0]


def test_the_known_difference_is_found_and_no_other(two_studies):
    table = clustering.compare_studies(two_studies)
    assert set(table["measure"]) == {"purity", "ari", "above_chance"}
    # Only pairs of different studies: 3 conditions x 3 conditions per data set and measure.
    assert (table["study1"] != table["study2"]).all()
    assert len(table) == 2 * 3 * 9
    for measure in ("purity", "ari", "above_chance"):
        cel = _row(table, "CEL", measure, "1-Heatmap (ExcitationBP)", "1-Heatmap (DeepLIFT)")
        assert cel["difference"] > 0 and cel["p_adjusted"] < 0.001
        cub = _row(table, "CUB", measure, "1-Heatmap (ExcitationBP)", "1-Heatmap (DeepLIFT)")
        assert cub["p"] > 0.01
        assert _row(table, "CEL", measure, "NoVis", "NoVis")["p"] > 0.01
    # The numbers are scipy's Welch test on one purity per participant.
    main = two_studies[(two_studies["study"] == "main") & (two_studies["dataset"] == "CEL") & (two_studies["stage"] == "XNN")]
    comp = two_studies[(two_studies["study"] == "complementary") & (two_studies["dataset"] == "CEL")
                       & (two_studies["stage"] == "1-Heatmap")]
    expected = scipy_stats.ttest_ind(main["purity"], comp["purity"], equal_var=False)
    row = _row(table, "CEL", "purity", "XNN", "1-Heatmap (DeepLIFT)")
    assert row["n1"] == len(main) == 24 and row["n2"] == len(comp)
    assert row["t"] == pytest.approx(expected.statistic) and row["p"] == pytest.approx(expected.pvalue)
    assert row["difference"] == pytest.approx(main["purity"].mean() - comp["purity"].mean())
    above = _row(table, "CEL", "above_chance", "XNN", "1-Heatmap (DeepLIFT)")
    assert above["mean1"] == pytest.approx((main["purity"] - main["chance_purity"]).mean())
    # Holm within a data set and measure: never below the raw p.
    assert (table["p_adjusted"] >= table["p"] - 1e-12).all()


def test_one_study_or_too_few_people_are_said_not_failed(two_studies):
    with pytest.raises(AnalysisInputError, match="at least two studies"):
        clustering.compare_studies(two_studies[two_studies["study"] == "main"])
    few = two_studies[(two_studies["study"] == "main") | two_studies["participant"].str.endswith("B0001")]
    table = clustering.compare_studies(few)
    assert table["n2"].eq(1).all() and table["p"].isna().all() and table["p_adjusted"].isna().all()


def test_the_figure_draws_every_condition_of_every_study_per_data_set(two_studies):
    fig = figures.study_comparison_figure(two_studies)
    top = [ax for ax in fig.axes if ax.get_title().startswith(("(a)", "(b)"))]
    assert len(top) == 2
    labels = [t.get_text().split("\n(n")[0] for t in top[0].get_xticklabels()]
    assert labels == [
        "NoVis\n[main]", "1-Heatmap\n(ExcitationBP)\n[main]", "XNN\n[main]",
        "NoVis\n[complementary]", "1-Heatmap\n(DeepLIFT)\n[complementary]", "XNN\n[complementary]",
    ]
    # The same condition keeps its colour across studies; the two heatmaps differ.
    faces = [tuple(np.round(p.get_facecolor()[:3], 3)) for p in top[0].patches if p.get_facecolor()[3] > 0.3][:6]
    assert faces[0] == faces[3] and faces[2] == faces[5] and faces[1] != faces[4]
    assert figures.figure_png(fig).startswith(b"\x89PNG")
