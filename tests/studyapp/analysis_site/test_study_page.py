"""The live analysis page of a study: bots' answers in, the pure functions' numbers out."""

from __future__ import annotations

import random
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import studyapp
from stats import clustering, exclusions, learning
from studyapp.analysis import frames
from studyapp.studies.models import Participant, Study
from tests.studyapp.analysis_site.conftest import page_tables, run_bots, value
from tests.studyapp.bots import Bot
from tests.studyapp.factories import clustering_study, learning_study

pytestmark = pytest.mark.django_db

RULES = {"incomplete": True, "min_response_ms": 0, "max_fast_share": 1}


def learning_study_with_rules(**rules) -> Study:
    study = learning_study()
    Study.objects.filter(pk=study.pk).update(config={**study.config, "exclusions": rules or RULES})
    study.refresh_from_db()
    return study


def test_the_page_shows_what_the_pure_functions_compute_from_the_bots_answers(owner):
    study = learning_study_with_rules()
    # Six bots finish (two per arm); the seventh leaves after 5 trials and must be excluded.
    bots = run_bots(study.public_code, 7, seed=1, stop_after={6: 5})
    dropout = bots[6].state["participant"]
    response = owner.get(f"/admin/analysis/study/{study.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    tables = page_tables(html)

    # What the pure layer says, from the same rows (read in a fixed number of queries).
    with CaptureQueriesContext(connection) as queries:
        frames.study_data(study=study)
    assert len(queries) <= 3  # trials, ratings, participants: none per participant
    trials = frames.study_trials(study=study)
    kept, report = exclusions.apply_exclusions(trials, study.config["exclusions"])
    assert report.excluded["participant"].tolist() == [dropout]
    counts = learning.final_counts(kept, n_trials=20)
    totals = learning.participant_totals(kept, n_trials=20)
    family = learning.pairwise_welch(totals, learning.DISSERTATION_PAIRS, alpha=0.1)

    # Exclusions: counts, who and why.
    assert "1 of 7 participants excluded, 6 analysed." in html
    assert dropout in html and "did not complete the study" in html
    assert [[c[0] for c in row] for row in tables["exclusion-counts"]] == [
        ["Total" if r.arm == "all" else r.arm, str(r.n_before), str(r.n_excluded), str(r.n_kept)]
        for r in report.counts.itertuples()
    ]
    # Table 5.2: the exact numbers.
    shown = {row[0][0]: row for row in tables["final-counts"]}
    for r in counts.itertuples():
        assert value(shown[r.arm][1]) == r.n and value(shown[r.arm][2]) == r.mean and value(shown[r.arm][3]) == r.sd
    # Table 5.3: t, df, p, Holm p, Hedges' g for the configured one-sided tests.
    shown = {row[0][0]: row for row in tables["welch-tests"]}
    assert list(shown) == ["CDeepEx > Control", "GCAM > Control", "CDeepEx > GCAM"]
    for test, p_adj in zip(family.tests, family.p_adjusted, strict=True):
        row = shown[test.hypothesis]
        assert row[1][0] == f"{test.mean1:.3f} ± {test.sd1:.3f} ({test.n1})" and value(row[1]) == test.mean1
        assert row[2][0] == f"{test.mean2:.3f} ± {test.sd2:.3f} ({test.n2})" and value(row[2]) == test.mean2
        assert value(row[3]) == test.t and value(row[4]) == test.df and value(row[5]) == test.p
        assert value(row[6]) == p_adj and value(row[8]) == test.hedges_g
        assert row[9][0] == f"[{test.g_ci_low:.3f}, {test.g_ci_high:.3f}]"
        assert row[7][0] == ("yes" if test.p <= 0.1 else "no")
    assert family.note in unescape(html)
    # Figure 5.8 as a table: the last trial's mean per arm.
    curve = learning.learning_curve(kept)
    last = tables["learning-curve"][-1]
    assert last[0][0] == "20"
    for i, arm in enumerate(["Control", "GCAM", "CDeepEx"], start=1):
        assert value(last[i]) == curve[(curve.arm == arm) & (curve.trial == 20)]["mean"].item()
    # Figure 5.9: rating counts per arm (the dropout never rated).
    ratings = exclusions.ExclusionReport.apply(report, frames.study_ratings(study=study))
    dist = learning.rating_distribution(ratings)
    rows = tables["ratings"]
    for code in range(1, 6):
        for j, arm in enumerate(["Control", "GCAM", "CDeepEx"], start=1):
            expected = dist[(dist.arm == arm) & (dist.rating == code)]["count"].item()
            assert value(rows[code - 1][j]) == expected
    # The pilot sample sizes and the generic power form.
    assert len(tables["pilot-power"]) == 3
    assert 'id="power-result"' in html

    # Figures as PNG and SVG, inline and as downloads.
    for name in ("learning-curve", "ratings"):
        png = owner.get(f"/admin/analysis/study/{study.pk}/figure/{name}.png")
        assert png.status_code == 200 and png["Content-Type"] == "image/png" and png.content[:4] == b"\x89PNG"
        svg = owner.get(f"/admin/analysis/study/{study.pk}/figure/{name}.svg?download=1")
        assert svg["Content-Type"] == "image/svg+xml" and b"<svg" in svg.content[:500]
        assert svg["Content-Disposition"] == f'attachment; filename="{study.slug}-{name}.svg"'
    power = owner.get(f"/admin/analysis/study/{study.pk}/figure/power.png?pw-d=0.5&pw-alpha=0.1&pw-power=0.8&pw-alternative=greater")
    assert power.status_code == 200 and power.content[:4] == b"\x89PNG"

    # The self-contained report carries the configuration hash and the software version.
    report_response = owner.get(f"/admin/analysis/study/{study.pk}/report.html")
    assert report_response.status_code == 200
    assert report_response["Content-Disposition"].startswith("attachment;")
    body = report_response.content.decode()
    assert study.config_hash in body and studyapp.__version__ in body
    assert "Pairwise Welch t-tests" in body and "data:image/png;base64," in body
    assert "<script" not in body and 'src="http' not in body
    # Drawn by the page's presenters: the same tables, cell for cell.
    report_tables = page_tables(body)
    for name in ("exclusion-counts", "final-counts", "welch-tests", "learning-curve", "ratings", "pilot-power"):
        assert report_tables[name] == tables[name], name


def test_the_tests_form_saves_the_direction_and_alpha_into_the_config(owner):
    study = learning_study_with_rules()
    run_bots(study.public_code, 6, seed=2)
    old_hash = study.config_hash
    post = {
        "tests-TOTAL_FORMS": "4", "tests-INITIAL_FORMS": "3", "tests-MIN_NUM_FORMS": "0", "tests-MAX_NUM_FORMS": "20",
        "tests-0-level1": "CDeepEx", "tests-0-alternative": "two-sided", "tests-0-level2": "Control",
        "tests-1-level1": "GCAM", "tests-1-alternative": "greater", "tests-1-level2": "Control", "tests-1-DELETE": "on",
        "tests-2-level1": "CDeepEx", "tests-2-alternative": "greater", "tests-2-level2": "GCAM",
        "tests-3-level1": "", "tests-3-alternative": "greater", "tests-3-level2": "",
        "alpha": "0.05",
    }
    response = owner.post(f"/admin/analysis/study/{study.pk}/", post)
    assert response.status_code == 302
    study.refresh_from_db()
    assert study.config["tests"] == [["CDeepEx", "Control", "two-sided"], ["CDeepEx", "GCAM", "greater"]]
    assert study.config["alpha"] == 0.05 and study.config["exclusions"] == RULES
    assert study.config_hash == study.compute_config_hash() != old_hash
    html = owner.get(f"/admin/analysis/study/{study.pk}/").content.decode()
    assert [row[0][0] for row in page_tables(html)["welch-tests"]] == ["CDeepEx ≠ Control", "CDeepEx > GCAM"]
    assert "more than one configuration" in html  # the bots ran under the old hash

    # A row with one side missing, or an arm compared with itself, is refused; nothing changes.
    bad = {**post, "tests-0-level2": "", "tests-2-level2": "CDeepEx"}
    response = owner.post(f"/admin/analysis/study/{study.pk}/", bad)
    assert response.status_code == 200
    assert "Choose both sides" in response.content.decode() and "cannot be compared with itself" in response.content.decode()
    study.refresh_from_db()
    assert study.config["tests"] == [["CDeepEx", "Control", "two-sided"], ["CDeepEx", "GCAM", "greater"]]


def test_a_study_without_data_says_so(owner):
    study = learning_study()
    # Rules that name min_response_ms without max_fast_share: said plainly, nothing excluded.
    Study.objects.filter(pk=study.pk).update(config={**study.config, "exclusions": {"incomplete": True, "min_response_ms": 250}})
    response = owner.get(f"/admin/analysis/study/{study.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "No data yet: nobody has taken part" in html and 'id="no-trials"' in html
    assert "not tested yet" in html and "No ratings yet." in html
    assert "cannot be applied: min_response_ms and max_fast_share must be given together" in html
    for url in ("figure/learning-curve.png", "figure/ratings.svg", "figure/purity.png", "report.html"):
        assert owner.get(f"/admin/analysis/study/{study.pk}/{url}").status_code == 200, url


def test_a_malformed_analysis_configuration_is_reported_not_fatal(owner):
    study = learning_study()
    Study.objects.filter(pk=study.pk).update(config={
        **study.config, "alpha": "often", "exclusions": {"sometimes": True},
        "tests": [["CDeepEx", "Nobody", "greater"], ["GCAM", "Control", "bigger"], "CDeepEx>GCAM", ["CDeepEx", "Control", "greater"]],
    })
    run_bots(study.public_code, 4, seed=3)
    response = owner.get(f"/admin/analysis/study/{study.pk}/")
    assert response.status_code == 200
    html = unescape(response.content.decode())
    assert "is not a number between 0 and 1; using 0.05" in html
    assert "Nobody is not one of Control, GCAM, CDeepEx" in html
    assert "alternative must be one of greater, less, two-sided" in html
    assert "unknown exclusion rule(s) ['sometimes']" in html


def test_the_clustering_page_shows_purity_confidence_and_agent_ratings(owner):
    study = clustering_study(group_rule="exactly")  # four groups each, so that the table's counts are known
    assert owner.get(f"/admin/analysis/study/{study.pk}/").content.decode().count("No data yet") >= 1
    for seed in range(4):
        bot = Bot(study.public_code, rng=random.Random(seed))
        bot.open_link()
        bot.walk_clustering()
    response = owner.get(f"/admin/analysis/study/{study.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    tables = page_tables(html)
    with CaptureQueriesContext(connection) as queries:
        frames.study_data(study=study)
    assert len(queries) <= 7  # one per frame (plus the stimuli's predictions), none per participant
    groupings, _ = frames.study_groupings(study=study)
    purities = clustering.purity_table(groupings)
    summary = clustering.purity_summary(purities)
    assert len(tables["purity"]) == len(summary) == 6
    for row, r in zip(tables["purity"], summary.itertuples(), strict=True):
        assert (row[0][0], row[1][0]) == (r.dataset, r.stage)
        assert value(row[2]) == r.n == 4 and value(row[3]) == r.mean
        # next to purity: groups used (exactly 4, the rule), the chance level and the adjusted measures
        assert value(row[8]) == r.mean_groups == 4.0
        assert value(row[9]) == r.mean_chance and value(row[10]) == r.mean_ari and value(row[11]) == r.mean_nmi
    assert (purities["n_clusters"] == 4).all()
    ari_tests = clustering.compare_stages(purities, value="ari")
    for row, r in zip(tables["ari-tests"], ari_tests.itertuples(), strict=True):
        assert row[1][0] == r.hypothesis and value(row[3]) == r.mean1
    # order as a factor: each bot's order cell, read back from its batches
    orders = clustering.order_table(groupings)
    assert sorted(orders["order"]) == sorted(["XNN second, CUB first", "1-Heatmap second, CEL first",
                                              "XNN second, CEL first", "1-Heatmap second, CUB first"])
    order_summary = clustering.order_summary(purities, orders)
    assert len(tables["order-summary"]) == 6 and len(tables["order-summary"][0]) == 2 + 4
    for row in tables["order-summary"]:
        part = order_summary[(order_summary["dataset"] == row[0][0]) & (order_summary["stage"] == row[1][0])]
        assert [value(c) for c in row[2:]] == list(part.sort_values("order")["mean"])
    assert len(tables["order-tests"]) == 2
    tests = clustering.compare_stages(purities, value="purity")
    for row, r in zip(tables["purity-tests"], tests.itertuples(), strict=True):
        assert row[1][0] == r.hypothesis and value(row[2]) == r.n_pairs
        if r.p_wilcoxon == r.p_wilcoxon:
            assert value(row[10]) == r.p_wilcoxon
    # The stored purity of each grouping is what the analysis recomputes.
    stored = Participant.objects.get(code=purities.participant.iloc[0]).groupings.all()
    assert all(0 <= g.purity <= 1 for g in stored)
    conf = frames.study_confidence(study=study)
    assert len(conf) == 4 * 6 and set(conf["dataset"]) == {"CUB", "CEL"}  # per stage and data set
    assert sum(value(c) for row in tables["confidence"] for c in row[1:]) == 24
    assert len(tables["confidence"][0]) == 1 + 6  # a column per data set x stage
    paper = clustering.compare_confidence(conf).set_index(["group", "hypothesis"]).loc[("CEL", "XNN ≠ 1-Heatmap")]
    assert "The paper's test, CEL, XNN vs 1-Heatmap" in unescape(html) and "p = 0.083" in html
    if paper["p_wilcoxon"] == paper["p_wilcoxon"]:
        assert f'data-value="{float(paper["p_wilcoxon"])!r}"' in html
    agents = frames.study_agent_ratings(study=study)
    pref = clustering.agent_preference(agents)
    row = tables["agent-preference"][0]
    assert value(row[1]) == pref.n_pairs == 4 and value(row[2]) == pref.n_prefer_agent
    assert "Planned comparisons" in html and "XNN ≠ 1-Heatmap" in html
    for name in ("purity", "confidence", "agent-ratings"):
        figure = owner.get(f"/admin/analysis/study/{study.pk}/figure/{name}.png")
        assert figure.status_code == 200 and figure.content[:4] == b"\x89PNG", name
    body = owner.get(f"/admin/analysis/study/{study.pk}/report.html").content.decode()
    assert "Study B: grouping images" in body and study.config_hash in body
