"""APEM on every stored heatmap and GAD as a study method, on a real (small) trained classifier.

The pipeline stores eps-, eps+ and APEM with each heatmap asset's validity numbers (the same
numbers explainers.apem gives for the map), a researcher's APEM floor refuses assets with a
reason, a GAD arm precomputes and passes the gate, and the tidy export carries the numbers of
the heatmap each trial showed.
"""

from __future__ import annotations

import csv
import io
import random

import numpy as np
import pytest
import torch
from django.core.management import call_command

from explainers import gad as gad_module
from explainers.apem import APEM
from explainers.datasets.common import to_tensor
from explainers.gradcam import GradCAM
from explainers.targets import ClassTarget
from studyapp.lib.study_config import StudyConfigError, validate_config
from studyapp.pipeline import datasets, explain, loading, precompute, training
from studyapp.pipeline.models import ExplanationAsset, PrecomputeJob, Stimulus
from studyapp.pipeline.selectors import explanation_summary
from studyapp.pipeline.stimuli import stimuli_select
from studyapp.pipeline.storage import media_path
from studyapp.studies import exports, selectors
from studyapp.studies.models import Arm, Study
from tests.studyapp.bots import Bot
from tests.studyapp.factories import FIXTURES, learning_study
from tests.studyapp.test_pipeline import write_official_npz

APEM_KEYS = ("eps_minus", "eps_plus", "apem", "apem_at_ceiling")


def gad_learning_study(tmp_path, *, feedbacks=("gradcam", "gad"), n_trials: int = 4, spare: int = 2, **config) -> Study:
    """Study A from its fixture with the given arms (GAD's instruction its own), a small real
    MnistNet on Kannada-MNIST (the real data when present) and its selected stimuli."""
    call_command("loaddata", str(FIXTURES / "study_a_kannada.json"), verbosity=0)
    study = Study.objects.get(slug="kannada-learning")
    arms = list(study.arms.order_by("position"))
    for arm, feedback in zip(arms, feedbacks, strict=False):
        arm.feedback = feedback
        if feedback == Arm.Feedback.GAD:
            arm.name = "GAD"
            arm.instruction = "Then, the system shows you the parts of the picture that set this symbol apart from the other one."
        arm.save()
    for arm in arms[len(feedbacks):]:
        arm.delete()
    data = write_official_npz(tmp_path / "k", n_train=1500, n_test=300)
    dataset = datasets.dataset_import_kannada(name="k", directory=data)
    classifier = training.model_create(dataset=dataset, role="classifier", params={"epochs": 1, "seed": 0, "lr": 3e-3, "batch_size": 64})
    classifier = training.model_train(trained_id=classifier.pk)
    Study.objects.filter(pk=study.pk).update(
        n_trials=n_trials, config={**study.config, "spare_stimuli": spare, "explain_batch": 3, **config}
    )
    study.refresh_from_db()
    stimuli_select(study=study, classifier=classifier)
    study.refresh_from_db()
    return study


def compute(study: Study, method: str) -> list[ExplanationAsset]:
    ids = list(Stimulus.objects.filter(study=study).order_by("position").values_list("pk", flat=True))
    out = []
    for k in range(0, len(ids), 3):  # two batches: the support models are fine-tuned once
        out += explain.explanations_compute(stimulus_ids=ids[k : k + 3], method=method)
    return out


@pytest.mark.slow
@pytest.mark.django_db
def test_every_heatmap_asset_stores_its_apem_and_the_floor_refuses_with_a_reason(tmp_path, monkeypatch):
    study = gad_learning_study(tmp_path)
    assert selectors.study_methods(study=study) == ["gad", "gradcam"]
    trained = []
    real_train = gad_module.train_support_models

    def counting(*args, **kwargs):
        trained.append(args[3:5])
        return real_train(*args, **kwargs)

    monkeypatch.setattr(gad_module, "train_support_models", counting)
    explain._SUPPORTS.clear()

    gradcam = compute(study, "gradcam")
    gad = compute(study, "gad")
    assert len(gradcam) == len(gad) == Stimulus.objects.filter(study=study).count() == 6
    assert trained == [(3, 7)]  # one fine-tuning for the job's two batches (cached per classifier)
    for asset in gradcam + gad:
        m = asset.metrics
        assert all(k in m for k in APEM_KEYS), m
        assert 1 <= m["eps_minus"] <= 1000 and 1 <= m["eps_plus"] <= 1000
        assert m["apem"] == pytest.approx(m["eps_plus"] - m["eps_minus"])
        assert asset.params["apem"] == {"floor": None, "ceiling": 1000.0, "search": "bisect"}
    # GAD: the study's two classes, an overlay PNG, and it passes the same gate as Grad-CAM.
    for asset in gad:
        assert asset.metrics["gad_pair"] == [3.0, 7.0] and 0 < asset.metrics["gad_kept"] <= 0.5 + 1e-9
        assert set(asset.files) == {"overlay"} and media_path(asset.files["overlay"]).stat().st_size > 0
        assert asset.valid, asset.reasons
    # The stored numbers are those explainers.apem gives for the Grad-CAM map of the stimulus.
    first = Stimulus.objects.filter(study=study).order_by("position").select_related("classifier", "dataset")[0]
    net = loading.load_model(first.classifier)
    image = to_tensor(loading.dataset_arrays(first.dataset)["x_test"][first.index][None])
    cam = GradCAM(net, net.features_layer)(image, ClassTarget(torch.tensor([first.model_prediction])))
    direct = APEM(net, search="bisect")(image, cam / cam.amax().clamp_min(1e-30))
    stored = ExplanationAsset.objects.get(stimulus=first, method="gradcam").metrics
    assert stored["eps_minus"] == pytest.approx(float(direct.eps_minus[0]))
    assert stored["eps_plus"] == pytest.approx(float(direct.eps_plus[0]))

    # The study page's summary shows the numbers beside the counts.
    summary = {row["method"]: row for row in explanation_summary(study=study)}
    assert summary["gradcam"]["apem_mean"] == pytest.approx(np.mean([a.metrics["apem"] for a in gradcam]), abs=0.06)

    # A floor above every asset's APEM: new parameters, so recomputed, and every asset refused.
    floor = max(a.metrics["apem"] for a in gradcam + gad) + 1
    Study.objects.filter(pk=study.pk).update(config={**study.config, "apem_floor": floor})
    study.refresh_from_db()
    assert {m for m, _ in precompute.plan(study=study, methods=["gradcam", "gad"])} == {"gradcam", "gad"}
    for asset in compute(study, "gradcam") + compute(study, "gad"):
        assert not asset.valid
        assert any(r.startswith("APEM ") and f"below the floor {floor:g}" in r for r in asset.reasons), asset.reasons
    assert trained == [(3, 7)]  # the floor does not change the GAD settings: same support models

    with pytest.raises(StudyConfigError, match="heatmap_method"):
        validate_config({"heatmap_method": "gradcam"})
    assert validate_config({"heatmap_method": "gad", "apem_floor": 5}).apem_floor == 5


@pytest.mark.slow
@pytest.mark.django_db
def test_gad_as_study_b_heatmap_contrasts_the_prediction_with_the_runner_up(tmp_path):
    study = gad_learning_study(tmp_path, feedbacks=("control",))
    Study.objects.filter(pk=study.pk).update(design=Study.Design.CLUSTERING, config={**study.config, "heatmap_method": "gad"})
    study.refresh_from_db()
    assert selectors.study_methods(study=study) == ["gad", "xnn"]
    params = explain.explanation_params(study=study, method="gad")
    assert "classes" not in params and "classifier_id" not in params
    explain._SUPPORTS.clear()
    assets = compute(study, "gad")
    for asset in assets:
        s = asset.stimulus
        runner_up = int(np.argsort(s.probabilities)[-2]) if int(np.argmax(s.probabilities)) == s.model_prediction else None
        assert s.model_prediction in asset.metrics["gad_pair"]
        if runner_up is not None:
            assert sorted(asset.metrics["gad_pair"]) == sorted([float(s.model_prediction), float(runner_up)])
        assert set(asset.files) == {"heatmap"} and "apem" in asset.metrics


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_gad_arm_precomputes_on_a_real_worker_with_progress(tmp_path):
    from django.db import transaction

    from tests.studyapp.worker import celery_worker, wait_for

    study = gad_learning_study(tmp_path, feedbacks=("gad",))
    with transaction.atomic():
        job = precompute.start(study=study, methods=selectors.study_methods(study=study))
    assert job.total == 6 and [b["method"] for b in job.plan] == ["gad", "gad"]
    with celery_worker(name="precompute-gad") as proc:
        wait_for(lambda: PrecomputeJob.objects.get(pk=job.pk).status in ("done", "failed"), timeout=600, proc=proc, what="precompute")
    job.refresh_from_db()
    assert job.status == "done" and job.done == 6, job.message
    assert ExplanationAsset.objects.filter(stimulus__study=study, method="gad", valid=True).count() >= 4
    assert precompute.resume(job_id=job.pk) == 0


def test_the_tidy_export_has_the_apem_of_the_heatmap_each_trial_showed(db):
    study = learning_study()
    for k, asset in enumerate(ExplanationAsset.objects.filter(method="gradcam").order_by("pk")):
        asset.metrics = {"max": 1.0, "eps_minus": 3.0 + k, "eps_plus": 40.0 + k, "apem": 37.0, "apem_at_ceiling": 0.0}
        asset.save()
    for seed in range(3):
        bot = Bot(study.public_code, pid=f"P{seed}", rng=random.Random(seed))
        bot.open_link()
        bot.walk()
    out = list(csv.DictReader(io.StringIO(exports.export_csv(study=study, kind="tidy"))))
    assert list(out[0]) == exports.TIDY_COLUMNS
    assert {"explanation_apem", "explanation_eps_minus", "explanation_eps_plus"} <= set(out[0])
    by_feedback = {}
    for row in out:
        by_feedback.setdefault(row["feedback"], []).append(row)
    assert set(by_feedback) == {"control", "gradcam", "cdeepex"}
    for row in by_feedback["gradcam"]:
        asset = ExplanationAsset.objects.get(stimulus_id=int(row["stimulus_id"]), method="gradcam")
        assert float(row["explanation_eps_minus"]) == asset.metrics["eps_minus"]
        assert float(row["explanation_eps_plus"]) == asset.metrics["eps_plus"]
        assert float(row["explanation_apem"]) == 37.0
    for feedback in ("control", "cdeepex"):  # no heatmap shown: empty
        assert all(r["explanation_apem"] == r["explanation_eps_minus"] == "" for r in by_feedback[feedback])


def test_the_admin_shows_apem_beside_the_other_numbers(admin_client):
    study = learning_study()
    asset = ExplanationAsset.objects.filter(method="gradcam").order_by("pk").first()
    asset.metrics = {"max": 1.0, "eps_minus": 3.0, "eps_plus": 40.0, "apem": 37.0, "apem_at_ceiling": 0.0}
    asset.save()
    page = admin_client.get("/admin/pipeline/explanationasset/").content.decode()
    assert "37.0 (eps- 3, eps+ 40)" in page
    page = admin_client.get(f"/admin/pipeline/stimulus/{asset.stimulus_id}/change/").content.decode()
    assert "37.0 (eps- 3, eps+ 40)" in page
    summary = {row["method"]: row for row in explanation_summary(study=study)}
    assert summary["gradcam"]["apem_mean"] == 37.0 and summary["cdeepex"]["apem_mean"] == ""
    from django.urls import reverse

    page = admin_client.get(reverse("admin:study-dashboard", args=[study.pk])).content.decode()
    assert "APEM mean / median" in page and "<td>37.0 / 37.0</td>" in page
    assert "at the ceiling" not in page
    asset.metrics = {"max": 1.0, "eps_minus": 60.0, "eps_plus": 60.0, "apem": 0.0, "apem_at_ceiling": 1.0}
    asset.save()
    assert {row["method"]: row for row in explanation_summary(study=study)}["gradcam"]["apem_at_ceiling"] == 1
    page = admin_client.get(reverse("admin:study-dashboard", args=[study.pk])).content.decode()
    assert "1 of " in page and "maps at the ceiling" in page
