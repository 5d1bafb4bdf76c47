"""Study B statistics: purity against hand counts, paired stage comparisons, questionnaires."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stats import clustering
from stats.schema import AnalysisInputError
from stats.synthetic import generate_study_b

# --------------------------------------------------------------------- purity by hand


@pytest.mark.parametrize(
    ("clusters", "predicted", "expected"),
    [
        # every cluster holds one predicted class
        ([0, 0, 1, 1, 2], ["a", "a", "b", "b", "c"], 1.0),
        # everything in one cluster: purity = share of the commonest class (3 of 5)
        ([7, 7, 7, 7, 7], ["a", "a", "a", "b", "c"], 3 / 5),
        # cluster 0: a,a,b -> 2; cluster 1: b,b -> 2; total 4 of 5
        ([0, 0, 0, 1, 1], ["a", "a", "b", "b", "b"], 4 / 5),
        # singletons are always pure
        ([1, 2, 3, 4], ["a", "a", "b", "b"], 1.0),
        # 10 images, 3 clusters: {a,a,a,b} 3 + {b,b,c} 2 + {c,d,d} 2 = 7
        ([0, 0, 0, 0, 1, 1, 1, 2, 2, 2], list("aaabbbccdd"), 7 / 10),
        # tie inside a cluster counts once: {a,b} -> 1, {c} -> 1
        (["x", "x", "y"], ["a", "b", "c"], 2 / 3),
    ],
)
def test_purity_against_hand_counts(clusters, predicted, expected):
    assert clustering.purity(clusters, predicted) == pytest.approx(expected)


def test_purity_ignores_cluster_and_class_names():
    base = clustering.purity([0, 0, 1, 1, 1], [1, 2, 2, 2, 3])
    assert clustering.purity(["u", "u", "v", "v", "v"], ["x", "y", "y", "y", "z"]) == base


@pytest.mark.parametrize(
    ("clusters", "predicted"),
    [([], []), ([0, 1], ["a"]), ([0, None], ["a", "b"]), ([0, 1], ["a", float("nan")])],
)
def test_purity_refuses_bad_input(clusters, predicted):
    with pytest.raises(AnalysisInputError):
        clustering.purity(clusters, predicted)


def _grouping(participant, stage, dataset, clusters, predicted, batch=None):
    frame = pd.DataFrame(
        {
            "participant": participant,
            "stage": stage,
            "dataset": dataset,
            "image_id": [f"{dataset}{i}" for i in range(len(clusters))],
            "cluster": clusters,
            "predicted_class": predicted,
        }
    )
    if batch is not None:
        frame["batch"] = batch
    return frame


def test_purity_table_per_participant_stage_dataset():
    groupings = pd.concat(
        [
            _grouping("p1", "XNN", "CUB", [0, 0, 1, 1], list("aabb")),
            _grouping("p1", "NoVis", "CUB", [0, 0, 0, 1], list("aabb")),
            _grouping("p1", "NoVis", "CEL", [0, 0, 0, 0], list("abcd")),
            _grouping("p2", "XNN", "CUB", [3, 3, 3, 3], list("aaab")),
        ]
    )
    table = clustering.purity_table(groupings)
    assert list(table.columns) == [
        "participant",
        "stage",
        "dataset",
        "n_images",
        "n_clusters",
        "purity",
        "chance_purity",
        "ari",
        "nmi",
    ]
    got = table.set_index(["participant", "stage", "dataset"])["purity"].to_dict()
    assert got == {
        ("p1", "NoVis", "CEL"): 0.25,
        ("p1", "NoVis", "CUB"): 0.75,
        ("p1", "XNN", "CUB"): 1.0,
        ("p2", "XNN", "CUB"): 0.75,
    }
    # CEL first, then CUB; within a dataset NoVis, 1-Heatmap, XNN
    assert table["dataset"].tolist()[0] == "CEL"
    assert (
        table.set_index(["participant", "stage", "dataset"]).loc[
            ("p1", "NoVis", "CUB"), "n_clusters"
        ]
        == 2
    )


def test_cluster_ids_are_local_to_a_batch():
    # Two batches both use cluster id 0; pooled they would mix a's and b's.
    groupings = _grouping("p", "XNN", "CUB", [0, 0, 0, 0], list("aabb"), batch=[1, 1, 2, 2])
    groupings["image_id"] = ["i1", "i2", "i3", "i4"]
    assert clustering.purity_table(groupings)["purity"].item() == 1.0
    assert clustering.purity_table(groupings.drop(columns="batch"))["purity"].item() == 0.5


def test_purity_table_equals_purity_per_group_on_synthetic_data():
    groupings, _, _ = generate_study_b(12, seed=4)
    table = clustering.purity_table(groupings).set_index(["participant", "stage", "dataset"])
    for key, part in groupings.groupby(["participant", "stage", "dataset"]):
        assert table.loc[key, "purity"] == pytest.approx(
            clustering.purity(part["cluster"], part["predicted_class"])
        )


# --------------------------------------------------------------------- chance level and agreement


def test_chance_purity_against_a_hand_count():
    """Labels a, a, b over groups of sizes 2 and 1. The 3 images can be dealt to the two groups
    in 3 ways (which image is alone): {a,a}|{b} -> (2 + 1)/3 = 1; {a,b}|{a} twice -> (1 + 1)/3.
    Mean: (1 + 2/3 + 2/3) / 3 = 7/9."""
    assert clustering.chance_purity([2, 1], [2, 1]) == pytest.approx(7 / 9)
    assert clustering.purity_chance(["x", "x", "y"], ["a", "b", "a"]) == pytest.approx(7 / 9)
    # Four images a, a, b, b in two pairs: {aa}|{bb} (purity 1) in 2 of the 6 deals, else 1/2.
    assert clustering.chance_purity([2, 2], [2, 2]) == pytest.approx((2 * 1 + 4 * 0.5) / 6)
    # One group, or one image per group: purity is fixed, so is its chance level.
    assert clustering.chance_purity([5], [3, 1, 1]) == pytest.approx(3 / 5)
    assert clustering.chance_purity([1] * 5, [3, 1, 1]) == 1.0


def _hand_purity(clusters, labels) -> float:
    """The purity sum by hand (a Counter per group), fast enough for every permutation."""
    from collections import Counter

    groups: dict = {}
    for g, c in zip(clusters, labels, strict=True):
        groups.setdefault(g, Counter())[c] += 1
    return sum(max(c.values()) for c in groups.values()) / len(labels)


def test_chance_purity_is_the_mean_over_every_permutation_of_the_labels():
    import itertools

    rng = np.random.default_rng(3)
    for _ in range(6):
        labels = list(rng.choice(list("abcd"), size=7))
        clusters = list(rng.integers(0, 3, size=7))
        brute = np.mean([_hand_purity(clusters, perm) for perm in itertools.permutations(labels)])
        assert clustering.purity_chance(clusters, labels) == pytest.approx(brute)
    # and a shuffle of the labels (the permutation test's draw) averages to it
    labels, clusters = list("aaabbbccdd"), [0, 0, 0, 0, 1, 1, 1, 2, 2, 3]
    draws = [_hand_purity(clusters, rng.permutation(labels)) for _ in range(20000)]
    assert np.mean(draws) == pytest.approx(clustering.purity_chance(clusters, labels), abs=0.005)


def test_chance_purity_refuses_sizes_that_do_not_add_up():
    with pytest.raises(AnalysisInputError):
        clustering.chance_purity([2, 2], [3, 2])
    with pytest.raises(AnalysisInputError):
        clustering.chance_purity([], [])


def test_ari_and_nmi_equal_scikit_learn_on_generated_groupings():
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    groupings, _, _ = generate_study_b(15, seed=7)
    groupings["batch"] = groupings.groupby(["participant", "stage", "dataset"]).ngroup()
    table = clustering.purity_table(groupings).set_index(["participant", "stage", "dataset"])
    for key, part in groupings.groupby(["participant", "stage", "dataset"]):
        assert table.loc[key, "ari"] == pytest.approx(adjusted_rand_score(part["predicted_class"], part["cluster"]), abs=1e-12)
        assert table.loc[key, "nmi"] == pytest.approx(normalized_mutual_info_score(part["predicted_class"], part["cluster"]), abs=1e-12)
        assert table.loc[key, "chance_purity"] == pytest.approx(clustering.purity_chance(part["cluster"], part["predicted_class"]))
    # and on random small groupings, with one group, singletons and a single class among them
    rng = np.random.default_rng(11)
    for _ in range(200):
        n = int(rng.integers(1, 13))
        clusters = rng.integers(0, int(rng.integers(1, n + 1)), size=n)
        predicted = rng.choice(list("abcd")[: int(rng.integers(1, 5))], size=n)
        ari, nmi = clustering.agreement(clusters, predicted)
        assert ari == pytest.approx(adjusted_rand_score(predicted, clusters), abs=1e-12)
        assert nmi == pytest.approx(normalized_mutual_info_score(predicted, clusters), abs=1e-12)


def test_singletons_score_purity_one_but_no_agreement():
    """The trick the group rule forbids: one image per group. Purity 1.0, but so is its chance
    level, and the adjusted Rand index is 0."""
    g = _grouping("p", "XNN", "CUB", list(range(8)), list("aabbccdd"))
    row = clustering.purity_table(g).iloc[0]
    assert (row["purity"], row["chance_purity"], row["n_clusters"]) == (1.0, 1.0, 8)
    assert row["ari"] == pytest.approx(0.0)
    good = clustering.purity_table(_grouping("p", "XNN", "CUB", [0, 0, 1, 1, 2, 2, 3, 3], list("aabbccdd"))).iloc[0]
    assert (good["purity"], good["ari"], good["nmi"]) == (1.0, 1.0, 1.0) and good["chance_purity"] < 0.6


def test_the_summary_reports_groups_chance_and_agreement():
    groupings, _, _ = generate_study_b(12, seed=4)
    purities = clustering.purity_table(groupings)
    summary = clustering.purity_summary(purities).set_index(["dataset", "stage"])
    for (dataset, stage), part in purities.groupby(["dataset", "stage"]):
        row = summary.loc[(dataset, stage)]
        assert row["mean_groups"] == pytest.approx(part["n_clusters"].mean())
        assert row["mean_chance"] == pytest.approx(part["chance_purity"].mean())
        assert row["mean_ari"] == pytest.approx(part["ari"].mean())
        assert row["mean_nmi"] == pytest.approx(part["nmi"].mean())


# --------------------------------------------------------------------- order as a factor


def _ordered_groupings(participant, later, datasets, purities):
    """One batch per stage x dataset in plan order; ``purities[stage]`` sets how well the batch
    follows the predictions (4 images, 2 classes)."""
    frames, batch = [], 0
    for stage in ["NoVis", *later]:
        for dataset in datasets:
            good = purities[stage]
            clusters = [0, 0, 1, 1] if good else [0, 1, 0, 1]
            g = _grouping(participant, stage, dataset, clusters, list("aabb"), batch=[batch] * 4)
            g["image_id"] = [f"{participant}{batch}-{k}" for k in range(4)]
            frames.append(g)
            batch += 1
    return pd.concat(frames)


def test_the_order_is_read_from_the_batches_and_can_be_a_factor():
    frames = []
    for k in range(6):
        later = ["XNN", "1-Heatmap"] if k % 2 == 0 else ["1-Heatmap", "XNN"]
        datasets = ["CUB", "CEL"] if k % 4 < 2 else ["CEL", "CUB"]
        # XNN beats 1-Heatmap only when it comes second (a carry-over effect, planted)
        quality = {"NoVis": False, "XNN": later[0] == "XNN", "1-Heatmap": False}
        frames.append(_ordered_groupings(f"p{k}", later, datasets, quality))
    groupings = pd.concat(frames)
    orders = clustering.order_table(groupings).set_index("participant")
    assert orders.loc["p0", "order"] == "XNN second, CUB first"
    assert orders.loc["p1", "order"] == "1-Heatmap second, CUB first"
    assert orders.loc["p2", "order"] == "XNN second, CEL first"
    purities = clustering.purity_table(groupings)
    summary = clustering.order_summary(purities, orders.reset_index())
    xnn = summary[(summary["dataset"] == "CUB") & (summary["stage"] == "XNN")].set_index("order")
    assert xnn.loc["XNN second, CUB first", "mean"] == 1.0 and xnn.loc["1-Heatmap second, CUB first", "mean"] == 0.5
    effect = clustering.order_effect(purities, orders.reset_index()).set_index("dataset")
    assert list(effect.index) == ["CEL", "CUB"]
    row = effect.loc["CUB"]
    assert (row["n1"], row["n2"], row["mean_diff1"], row["mean_diff2"]) == (3, 3, 0.5, 0.0)
    assert row["p_u"] == pytest.approx(stats.mannwhitneyu([0.5] * 3, [0.0] * 3).pvalue)


def test_an_image_twice_is_refused():
    g = _grouping("p", "XNN", "CUB", [0, 1], list("ab"))
    g["image_id"] = "same"
    with pytest.raises(AnalysisInputError, match="twice"):
        clustering.purity_table(g)


def test_purity_summary():
    purities = pd.DataFrame(
        {
            "participant": ["a", "b", "c"],
            "stage": "XNN",
            "dataset": "CUB",
            "purity": [0.5, 0.7, 0.9],
        }
    )
    row = clustering.purity_summary(purities).iloc[0]
    assert (row["n"], row["mean"], row["median"]) == (3, pytest.approx(0.7), pytest.approx(0.7))
    assert row["sd"] == pytest.approx(0.2)


# --------------------------------------------------------------------- paired comparisons


@pytest.fixture
def purities() -> pd.DataFrame:
    xnn = [0.9, 0.8, 0.7, 0.9, 0.6, 0.8, 1.0, 0.7]
    heat = [0.6, 0.7, 0.7, 0.5, 0.4, 0.75, 0.8, 0.65]
    rows = [(f"p{i}", "XNN", "CUB", v) for i, v in enumerate(xnn)]
    rows += [(f"p{i}", "1-Heatmap", "CUB", v) for i, v in enumerate(heat)]
    rows += [("lonely", "XNN", "CUB", 1.0)]  # no 1-Heatmap value: left out of the pair
    return pd.DataFrame(rows, columns=["participant", "stage", "dataset", "purity"])


def test_paired_tests_match_scipy_and_hand_formulas(purities):
    out = clustering.compare_stages(
        purities, value="purity", pairs=[("XNN", "1-Heatmap", "greater")]
    )
    row = out.iloc[0]
    x = np.array([0.9, 0.8, 0.7, 0.9, 0.6, 0.8, 1.0, 0.7])
    y = np.array([0.6, 0.7, 0.7, 0.5, 0.4, 0.75, 0.8, 0.65])
    d = x - y
    assert row["n_pairs"] == 8 and row["group"] == "CUB" and row["hypothesis"] == "XNN > 1-Heatmap"
    assert row["t"] == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(8)))
    assert row["df"] == 7
    assert row["p_t"] == pytest.approx(stats.ttest_rel(x, y, alternative="greater").pvalue)
    assert row["cohen_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    # one zero difference (0.7 vs 0.7) and tied magnitudes: normal approximation
    assert row["n_nonzero"] == 7 and row["wilcoxon_method"] == "asymptotic"
    ref = stats.wilcoxon(x, y, zero_method="wilcox", alternative="greater", method="asymptotic")
    assert row["wilcoxon_w"] == pytest.approx(ref.statistic)
    assert row["p_wilcoxon"] == pytest.approx(ref.pvalue)
    # W+ by hand: ranks of |d| among the 7 non-zero differences, all positive here
    assert row["wilcoxon_w"] == pytest.approx(stats.rankdata(np.abs(d[d != 0])).sum())


def test_exact_wilcoxon_without_ties():
    x = np.array([5.1, 6.3, 7.2, 4.4, 8.8, 6.0])
    y = x - np.array([0.5, -0.2, 1.1, 0.7, 1.9, 0.3])
    comp = clustering.paired_comparison(x, y, "two-sided")
    assert comp.wilcoxon_method == "exact"
    assert comp.p_wilcoxon == pytest.approx(stats.wilcoxon(x, y, method="exact").pvalue)
    # exact two-sided p by enumeration: W- = 1 (the single negative difference has rank 1)
    # P(W <= 1) = 2 / 64 under the null, doubled: 4 / 64
    assert comp.p_wilcoxon == pytest.approx(4 / 64)


def test_holm_within_each_dataset(purities):
    both = pd.concat([purities, purities.assign(dataset="CEL")])
    out = clustering.compare_stages(both, value="purity")
    assert out["group"].tolist() == ["CEL"] * 3 + ["CUB"] * 3
    cub = out[out["group"] == "CUB"]
    finite = cub["p_t"].notna()
    # only the XNN vs 1-Heatmap pair has data (no NoVis rows): one test, nothing to adjust
    assert finite.sum() == 1
    assert cub.loc[finite, "p_t_adjusted"].item() == cub.loc[finite, "p_t"].item()
    assert cub.loc[~finite, "n_pairs"].tolist() == [0, 0]


def test_identical_stages_give_nan_not_an_error():
    frame = pd.DataFrame(
        {"participant": ["a", "a", "b", "b"], "stage": ["XNN", "NoVis"] * 2, "purity": [0.5] * 4}
    )
    row = clustering.compare_stages(
        frame, value="purity", by=None, pairs=[("XNN", "NoVis", "two-sided")]
    ).iloc[0]
    assert math.isnan(row["p_t"]) and math.isnan(row["p_wilcoxon"]) and row["n_nonzero"] == 0


def test_duplicate_measurements_are_refused(purities):
    with pytest.raises(AnalysisInputError, match="more than one"):
        clustering.compare_stages(pd.concat([purities, purities.head(1)]), value="purity")


def test_synthetic_xnn_advantage_is_recovered():
    groupings, _, _ = generate_study_b(60, seed=5)
    out = clustering.compare_stages(clustering.purity_table(groupings), value="purity")
    cub = out[(out["group"] == "CUB") & (out["hypothesis"] == "XNN ≠ 1-Heatmap")].iloc[0]
    assert cub["mean_diff"] > 0.05 and cub["p_wilcoxon_adjusted"] < 0.01


# --------------------------------------------------------------------- questionnaires


def test_confidence_distribution_and_tests_with_and_without_dataset():
    _, confidence, _ = generate_study_b(20, seed=6)
    dist = clustering.confidence_distribution(confidence)
    assert list(dist.columns) == ["dataset", "stage", "confidence", "label", "count", "share"]
    assert len(dist) == 2 * 3 * 7
    assert dist.groupby(["dataset", "stage"])["count"].sum().eq(20).all()
    assert dist.loc[dist["confidence"] == 6, "label"].unique().tolist() == ["100%"]
    assert clustering.compare_confidence(confidence)["group"].tolist() == ["CEL"] * 3 + ["CUB"] * 3

    one_per_stage = confidence[confidence["dataset"] == "CEL"].drop(columns="dataset")
    assert clustering.confidence_distribution(one_per_stage).columns[0] == "stage"
    out = clustering.compare_confidence(one_per_stage)
    assert out["group"].isna().all() and len(out) == 3


def test_confidence_off_scale_is_refused():
    with pytest.raises(AnalysisInputError, match="outside the scale"):
        clustering.confidence_distribution(
            pd.DataFrame({"participant": ["a"], "stage": ["XNN"], "confidence": [7]})
        )


@pytest.fixture
def agent_ratings() -> pd.DataFrame:
    xnn = [7, 6, 6, 5, 4, 6, 7, 5, 3, 6]
    heat = [4, 4, 5, 5, 4, 3, 5, 2, 4, 4]
    rows = [(f"p{i}", "XNN", r) for i, r in enumerate(xnn)] + [
        (f"p{i}", "1-Heatmap", r) for i, r in enumerate(heat)
    ]
    return pd.DataFrame(rows, columns=["participant", "agent", "rating"])


def test_agent_preference_counts_and_tests(agent_ratings):
    pref = clustering.agent_preference(agent_ratings, alternative="greater")
    # differences: 3, 2, 1, 0, 0, 3, 2, 3, -1, 2 -> 7 up, 1 down, 2 ties
    assert (pref.n_pairs, pref.n_prefer_agent, pref.n_prefer_baseline, pref.n_ties) == (10, 7, 1, 2)
    # exact sign test by hand: P(X >= 7 | n = 8, 1/2) = (C(8,7) + C(8,8)) / 2^8
    assert pref.p_sign == pytest.approx((math.comb(8, 7) + math.comb(8, 8)) / 256)
    x = np.array([7, 6, 6, 5, 4, 6, 7, 5, 3, 6])
    y = np.array([4, 4, 5, 5, 4, 3, 5, 2, 4, 4])
    ref = stats.wilcoxon(x, y, zero_method="wilcox", alternative="greater", method="asymptotic")
    assert pref.p_wilcoxon == pytest.approx(ref.pvalue)
    assert pref.median_agent == 6 and pref.median_baseline == 4


def test_agent_rating_distribution(agent_ratings):
    dist = clustering.agent_rating_distribution(agent_ratings)
    assert dist["agent"].unique().tolist() == ["1-Heatmap", "XNN"]
    assert dist.set_index(["agent", "rating"]).loc[("XNN", 7), "label"] == "Very Good"
    assert dist.set_index(["agent", "rating"]).loc[("XNN", 6), "count"] == 4


def test_agent_preference_needs_both_agents(agent_ratings):
    with pytest.raises(AnalysisInputError, match="DeepLIFT"):
        clustering.agent_preference(agent_ratings, baseline="DeepLIFT")
