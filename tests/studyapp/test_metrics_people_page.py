"""Do the automatic metrics predict people? (issue 25, item 5): synthetic participants whose
outcome depends on the explanations' APEM score by a planted slope go through the real API
(`manage.py synthetic_participants --apem-slope`), and the analysis page's estimate recovers it."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from studyapp.analysis.metrics_people import metrics_frame, metrics_people_results
from studyapp.analysis.presenters_metrics_people import metrics_people_section
from studyapp.pipeline.models import ExplanationAsset
from studyapp.studies import services
from studyapp.studies.models import Participant, Study, TrialAnswer
from tests.studyapp.factories import learning_study

pytestmark = pytest.mark.django_db

SLOPE = 0.6  # per unit APEM, which runs over (0, 1) here: P(correct) 0.5 ± 0.3 ± the participant's 0.1
BASE = 0.5


def with_apem(study: Study, *, seed: int = 0) -> dict[int, float]:
    """Give every asset APEM numbers (APEM ~ U(0, 1) = ε⁺ − ε⁻), a constant gate number, and the
    CDeepEx assets a morph size with no effect; returns asset pk -> APEM."""
    rng = np.random.default_rng(seed)
    out = {}
    for asset in ExplanationAsset.objects.filter(stimulus__study=study).order_by("pk"):
        apem = float(rng.uniform())
        eps_minus = float(rng.uniform(1, 5))
        asset.metrics = {"apem": apem, "eps_minus": eps_minus, "eps_plus": eps_minus + apem, "std": 0.2}
        if asset.method == "cdeepex":  # the gate's numbers include class ids and a copy of the column: not metrics
            asset.morph_pixel_change = float(rng.uniform(0, 3))
            asset.metrics |= {"top1": float(asset.pk % 2), "pixel_change": asset.morph_pixel_change}
        asset.save(update_fields=["metrics", "morph_pixel_change"])
        out[asset.pk] = apem
    return out


def run(**options) -> str:
    out = io.StringIO()
    call_command("synthetic_participants", stdout=out, **options)
    return out.getvalue()


def demo_like(monkeypatch, seed: int) -> Study:
    study = learning_study()
    with_apem(study, seed=seed)
    monkeypatch.setattr(services, "_rng", random.Random(seed))  # the server's arm draw, made repeatable
    return study


def test_the_page_recovers_a_planted_apem_slope_within_its_interval(monkeypatch):
    study = demo_like(monkeypatch, seed=1)
    out = run(study=study.slug, n=45, seed=1, apem_slope=SLOPE, base=BASE)
    assert TrialAnswer.objects.filter(participant__study=study).count() == 45 * 20

    # the frame: one row per explained answer (the Control arm's 15 runs show none), with the asset's metrics
    data = metrics_frame(study)
    assert data.n_unexplained == 15 * 20 and len(data.frame) == 30 * 20
    assert {"apem", "eps_minus", "eps_plus", "morph_size", "std"} == set(data.metrics)  # not top1, pixel_change
    pinned = {(p.pk, s["trial"]): next(iter(s["assets"].values())) for p in Participant.objects.filter(study=study)
              for s in p.plan if s.get("kind") == "trial" and s.get("assets")}
    answers = {(a.participant_id, a.stimulus_id): a.trial_index for a in TrialAnswer.objects.filter(participant__study=study)}
    for _, row in data.frame.head(25).iterrows():
        assert row["asset"] == pinned[(row["participant"], answers[(row["participant"], row["item"])])]
        assert row["apem"] == ExplanationAsset.objects.get(pk=row["asset"]).metrics["apem"]

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        result = metrics_people_results(study)
    assert len(queries) <= 6  # runs, arms, plans, assets, answers, metrics: none per participant or answer
    by_method = {m.method: m for m in result.methods}
    assert set(by_method) == {"gradcam", "cdeepex"}
    for m in by_method.values():
        apem = m.coefficients.set_index("metric").loc["apem"]
        # One draw: its 95% interval misses the planted slope about 1 time in 10 (coverage over 300 draws is
        # measured by benchmarks/protocol_power.py), and the draw here depends on the database's state (the
        # PostgreSQL run of the whole suite gives 0.84 [0.70, 0.99] for Grad-CAM; this file alone 0.65). So:
        # within 4 standard errors, and well away from 0.
        assert abs(apem["coef"] - SLOPE) <= 4 * apem["se"], (m.method, apem.to_dict())
        assert apem["ci_low"] > 0, (m.method, apem.to_dict())  # found at 15 participants × 20 items
        assert m.n_participants == 15 and m.n_items == 20
        assert (m.coefficients["p_holm"] >= m.coefficients["p_value"]).all()
        assert any("does not vary" in d and "std" in d for d in m.dropped)
    assert "morph_size" in set(by_method["cdeepex"].coefficients["metric"])
    assert "morph_size" not in set(by_method["gradcam"].coefficients["metric"])
    assert ("(covers it)" in out or "(misses it)" in out) and "planted 0.6 per unit APEM" in out

    admin = Client()
    admin.force_login(User.objects.create_superuser("boss", "boss@example.org", "pw"))
    html = admin.get(f"/admin/analysis/study/{study.pk}/").content.decode()
    assert 'id="metrics-people"' in html and "no-metrics-people" not in html
    for m in by_method.values():
        coef = m.coefficients.set_index("metric").loc["apem", "coef"]
        assert f'data-table="metrics-people-{m.method}"' in html and f'data-value="{float(coef)!r}"' in html
    assert "the interval excludes 0: people did better with higher values" in html
    report = admin.get(f"/admin/analysis/study/{study.pk}/report.html")
    assert report.status_code == 200 and 'id="metrics-people"' in report.content.decode()


def test_a_zero_slope_is_not_called_significant_in_most_seeds(monkeypatch):
    """Three fixed seeds of a study with no planted slope (10 participants per arm): of the six APEM
    coefficients (two methods each), at most one is significant at 5% (two-way clustered intervals
    on so few clusters are a little narrow, as `stats.protocols.metrics_people` says)."""
    significant = 0
    study = demo_like(monkeypatch, seed=11)
    for seed in (11, 12, 13):
        with_apem(study, seed=seed)
        Participant.objects.filter(study=study).delete()  # each seed a fresh sample of the study
        run(study=study.slug, n=30, seed=seed, apem_slope=0.0, base=BASE)
        for m in metrics_people_results(study).methods:
            apem = m.coefficients.set_index("metric").loc["apem"]
            significant += bool(apem["p_value"] < 0.05)
    assert significant <= 1, significant


def test_the_section_says_why_when_there_is_nothing_yet_and_a_bad_slope_is_refused(monkeypatch):
    study = demo_like(monkeypatch, seed=2)
    section = metrics_people_section(study)
    assert section is not None and "no answers" in section["error"]
    with pytest.raises(CommandError, match="smaller slope"):
        run(study=study.slug, n=1, seed=2, apem_slope=2.0)
    assert not Participant.objects.filter(study=study).exists()
    ExplanationAsset.objects.filter(stimulus__study=study).update(metrics={})
    with pytest.raises(CommandError, match="APEM score"):
        run(study=study.slug, n=1, seed=2, apem_slope=0.1)


def test_synthetic_participants_take_the_simulation_design_and_its_post_test_is_the_outcome(monkeypatch):
    from tests.studyapp.test_simulation_protocol import N, simulation_study

    study = simulation_study()
    with_apem(study, seed=4)
    monkeypatch.setattr(services, "_rng", random.Random(4))
    out = run(study=study.slug, n=8, seed=4, apem_slope=SLOPE, base=BASE)
    runs = Participant.objects.filter(study=study)
    assert runs.count() == 8 and set(runs.values_list("status", flat=True)) == {"completed"}
    assert TrialAnswer.objects.filter(participant__study=study).count() == 8 * 2 * N
    assert "Forward simulation: sim-test" in out and "planted 0.6 per unit APEM" in out
    # the outcomes: the GCAM arm's post-test answers, each with the Grad-CAM asset of its image
    data = metrics_frame(study)
    gcam = runs.filter(arm__feedback="gradcam")
    assert len(data.frame) == gcam.count() * N and set(data.frame["method"]) == {"gradcam"}
    post = {(p.pk, s["stimulus"]) for p in gcam for s in p.plan if s.get("phase") == "post"}
    assert set(zip(data.frame["participant"], data.frame["item"], strict=True)) == post
    assets = dict(ExplanationAsset.objects.filter(stimulus__study=study, method="gradcam").values_list("stimulus_id", "pk"))
    assert all(assets[i] == a for i, a in zip(data.frame["item"], data.frame["asset"], strict=True))
    assert data.n_unexplained == (8 - gcam.count()) * N


def test_a_metric_without_an_interval_or_on_few_clusters_is_not_read_as_a_finding():
    from studyapp.analysis.presenters_metrics_people import _sentence

    row = {"per_sd": 0.01, "per_sd_low": float("nan"), "per_sd_high": float("nan"), "sd": 1.0}
    said = _sentence("max_probe_excess", row, "correct", 0.95)
    assert "no interval could be estimated" in said and "includes 0" not in said
    row = {"per_sd": 0.08, "per_sd_low": 0.02, "per_sd_high": 0.14, "sd": 12.3}
    assert "excludes 0" in _sentence("apem", row, "correct", 0.95)


def test_row_numbers_and_class_ids_are_not_metrics_and_lists_are_averaged():
    from studyapp.analysis.metrics_people import _numbers, metric_label

    stored = {"nearest_train_index": [10.0, 2000.0, 7.0], "nearest_distance": [0.5, 1.5, 1.0], "top1": 3, "apem": 12.0}
    assert _numbers(stored) == {"nearest_distance": 1.0, "apem": 12.0}
    assert metric_label("nearest_distance").startswith("distance to the nearest examples")
