"""The AI-assisted decision template end to end: a study from the template, bot participants
through the real API in two arms with a planted reliance difference, the export rows and codebook,
and the analysis (`studyapp.analysis.decision` into `stats.protocols.reliance`) recovering it."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from studyapp.analysis.decision import decision_frame, decision_results
from studyapp.pipeline.models import ExplanationAsset, Stimulus
from studyapp.pipeline.storage import media_url, store_bytes
from studyapp.studies import exports, services
from studyapp.studies.designs.create import study_from_template
from studyapp.studies.models import Participant, Study, TrialAnswer
from studyapp.studies.steps import registry
from tests.studyapp.bots import LEAK_KEYS, Bot
from tests.studyapp.factories import add_stimuli

pytestmark = pytest.mark.django_db

N = 8  # decision items per run


def decision_study(*, n_stimuli: int = 16, arms: tuple[str, ...] = ("Control", "Nearest")) -> Study:
    """The template's study with stimuli (every other pair model-wrong), each with a stand-in
    nearest-examples strip besides the factory's Grad-CAM and CDeepEx assets."""
    study = study_from_template(template="decision", slug="dec-test", arms=list(arms))
    study.n_trials = N
    study.save()
    add_stimuli(study, n_stimuli=n_stimuli)
    for s in Stimulus.objects.filter(study=study):
        ExplanationAsset.objects.create(stimulus=s, method="nearest", params_hash="n", params={}, valid=True,
                                        files={"examples": store_bytes(strip(s.position), ext="png")})
    services.study_open(study=study)
    study.refresh_from_db()
    return study


def strip(seed: int) -> bytes:
    """A stand-in strip of three random 28 px pictures, drawn as the pipeline draws the real one."""
    from explainers import render

    return render.frames_strip_png(torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(seed)), scale=4, gap=2)


def truth_of(study: Study, stimulus_id: int) -> int:
    return study.classes.index(Stimulus.objects.get(pk=stimulus_id).true_label)


def enter(study: Study, pid: str, rng: random.Random | None = None) -> Bot:
    bot = Bot(study.public_code, pid=pid, rng=rng)
    bot.open_link()
    assert bot.enter()[0] in (200, 201)
    return bot


def test_the_template_draws_balanced_items_each_answered_alone_then_with_advice():
    study = decision_study()
    assert study.design == Study.Design.DECISION and study.correct_mode == Study.CorrectMode.TRUTH
    enter(study, "P0")
    p = Participant.objects.get(study=study)
    alone = [s for s in p.plan if s["kind"] == "decision_alone"]
    assisted = [s for s in p.plan if s["kind"] == "decision_assisted"]
    assert len(alone) == len(assisted) == N
    # each item: its alone step right before its assisted step, trials 2k and 2k + 1, one image
    kinds = [s["kind"] for s in p.plan]
    for a in alone:
        i = p.plan.index(a)
        assert kinds[i + 1] == "decision_assisted" and p.plan[i + 1]["stimulus"] == a["stimulus"]
        assert (a["trial"], p.plan[i + 1]["trial"]) == (2 * a["item"], 2 * a["item"] + 1)
    ids = [s["stimulus"] for s in alone]
    assert len(set(ids)) == N
    wrong = sum(1 for s in Stimulus.objects.filter(pk__in=ids) if s.model_prediction != s.true_label)
    assert wrong == N // 2
    # the arm's explanation is pinned on the assisted half only
    explained = p.arm.feedback != "control"
    assert all(bool(s.get("assets")) == explained for s in assisted)
    assert not any(s.get("assets") for s in alone)


def walk(study: Study, bot: Bot, *, skill: float, rair: float, rsr: float, rng: random.Random) -> list[dict]:
    """Take the study: alone, right with probability ``skill``; with advice, switch to the AI's
    right answer with probability ``rair`` and keep an own right answer against a wrong AI with
    probability ``rsr``. Returns the assisted states seen."""
    seen: list[dict] = []

    def other(b: Bot):
        s = b.state
        truth = truth_of(study, s["stimulus"])
        if s["kind"] == "decision_alone":
            assert s["answered"] is False and s["options"] == [{"value": i, "label": n} for i, n in enumerate(study.class_names)]
            assert not any(k in s for k in (*LEAK_KEYS, "model_answer", "explanation"))
            choice = truth if rng.random() < skill else 1 - truth
        else:
            assert s["kind"] == "decision_assisted", s
            assert not any(k in s for k in LEAK_KEYS)
            seen.append(s)
            own, ai = s["own_answer"], s["model_answer"]
            if own == ai:
                choice = own
            elif ai == truth:
                choice = ai if rng.random() < rair else own
            else:
                choice = own if rng.random() < rsr else ai
        status, data = b._record(b.api.answer(s["step"], stimulus=s["stimulus"], choice=choice))
        assert "feedback" not in data, data
        if status == 200:
            b.state = data
        return status, data

    final = bot.walk(other=other)
    assert final["kind"] == "done", final
    return seen


def test_bots_in_two_arms_recover_the_planted_reliance_difference():
    study = decision_study()
    rng = random.Random(5)
    planted = {"Control": 0.2, "Nearest": 0.9}
    runs = []
    for i in range(20):
        bot = enter(study, f"P{i:03d}", rng)
        arm = Participant.objects.get(study=study, prolific_pid=f"P{i:03d}").arm.name
        runs.append((arm, walk(study, bot, skill=0.45, rair=planted[arm], rsr=0.7, rng=rng)))
    assert {a for a, _ in runs} == {"Control", "Nearest"}
    # every acknowledged answer stored exactly once: two per item
    assert TrialAnswer.objects.filter(participant__study=study).count() == 20 * 2 * N
    nearest = [s for a, states in runs if a == "Nearest" for s in states]
    control = [s for a, states in runs if a == "Control" for s in states]
    assert all(s["explanation"]["kind"] == "nearest" and s["explanation"]["assets"]["examples"] for s in nearest)
    assert not any(s["explanation"]["assets"] for s in control)

    frame = decision_frame(study)
    assert len(frame) == 20 * 2 * N and set(frame.phase) == {"alone", "assisted"}
    result = decision_results(study, reference_arm="Control")
    diff = result.comparison("Nearest", "RAIR")
    assert diff.ci_low > 0 and diff.estimate > 0.4, diff  # planted 0.9 - 0.2 = 0.7
    rsr = result.comparison("Nearest", "RSR")
    assert rsr.ci_low < 0 < rsr.ci_high, rsr  # planted equal
    assert result.measure("Control", "AI alone").estimate == pytest.approx(0.5)

    rows = list(exports.tidy_rows(study=study))
    assert len(rows) == 20 * 2 * N
    # the tidy rows say which half an answer is, and only the advised answers of an explaining arm name an asset
    assert {r["phase"] for r in rows} == {"alone", "assisted"}
    assert all(r["explanation_asset_id"] == "" for r in rows if r["phase"] == "alone" or r["arm"] == "Control")
    assert all(r["explanation_asset_id"] != "" for r in rows if r["phase"] == "assisted" and r["arm"] == "Nearest")

    # metrics vs people: each final answer of an explained arm, with the strip its advice showed
    from studyapp.analysis.metrics_people import metrics_frame

    n_nearest = sum(1 for a, _ in runs if a == "Nearest")
    data = metrics_frame(study)
    assert len(data.frame) == n_nearest * N and data.n_unexplained == (20 - n_nearest) * N
    pinned = {s["explanation"]["assets"]["examples"] for s in nearest}
    shown = ExplanationAsset.objects.filter(pk__in=set(data.frame.asset))
    assert set(shown.values_list("method", flat=True)) == {"nearest"}
    assert {media_url(a.files["examples"]) for a in shown} <= pinned
    entries = registry.study_entries(study)
    assert "answer alone" in entries["correct_1"].description and "final answer" in entries["correct_2"].description
    assert entries["rt_ms_16"].unit == "ms"
    from studyapp.analysis.datapackage import package_files

    dictionary = package_files(study)["codebook.csv"].decode()
    assert 'wide,correct_1,integer,,"Decision item 1, answer alone' in dictionary
    assert 'wide,correct_16,integer,,"Decision item 8, final answer' in dictionary

    from django.contrib.auth.models import User
    from django.test import Client

    admin = Client()
    admin.force_login(User.objects.create_superuser("boss", "boss@example.org", "pw"))
    page = admin.get(f"/admin/analysis/study/{study.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="decision"' in html and "AI-assisted decision (answer alone" in html and 'data-table="decision-comparisons"' in html and "no-decision" not in html
    assert f'data-value="{diff.estimate!r}"' in html
    assert 'id="protocol-only"' in html and 'id="learning-curve"' not in html  # its answers are not learning trials
    prereg = admin.get(f"/admin/analysis/study/{study.pk}/preregistration.md").content.decode()
    assert "AI-assisted decision" in prereg and "RAIR" in prereg


def test_the_analysis_section_says_why_when_there_is_nothing_yet():
    from studyapp.analysis.presenters_decision import decision_section

    section = decision_section(decision_study())
    assert "no rows" in section["error"] and "measures" not in section


def test_bad_input_is_refused_and_a_repeat_is_stored_once():
    study = decision_study(arms=("Nearest",))
    bot = enter(study, "P1")
    while bot.state["kind"] != "decision_alone":
        assert bot.continue_()[0] == 200
    s = bot.state
    step = s["step"]
    # the advice's step cannot be answered (nor read) before the answer alone
    assert 400 <= bot.post(f"steps/{step + 1}/answer", {"stimulus": s["stimulus"], "choice": 0})[0] < 500
    for body in ({"stimulus": s["stimulus"], "choice": 2}, {"stimulus": s["stimulus"], "choice": -1},
                 {"stimulus": s["stimulus"], "choice": True},
                 {"stimulus": s["stimulus"] + 999, "choice": 0}, {"choice": 0}):
        status, data = bot.post(f"steps/{step}/answer", body)
        assert 400 <= status < 500, (body, status, data)
    assert 400 <= bot.post(f"steps/{step}/continue")[0] < 500  # left by answering, never by continuing
    assert TrialAnswer.objects.filter(participant__study=study).count() == 0
    assert bot.refresh()["step"] == step

    first = bot.post(f"steps/{step}/answer", {"stimulus": s["stimulus"], "choice": 0})
    again = bot.post(f"steps/{step}/answer", {"stimulus": s["stimulus"], "choice": 0})
    changed = bot.post(f"steps/{step}/answer", {"stimulus": s["stimulus"], "choice": 1})
    assert first[0] == 200 and again[0] == 200 and 400 <= changed[0] < 500, (first, again, changed)
    advice = first[1]
    assert advice["kind"] == "decision_assisted" and advice["step"] == step + 1 and advice["own_answer"] == 0
    assert advice["model_answer"] in (0, 1) and advice["explanation"]["assets"]["examples"]
    assert again[1]["step"] == step + 1
    assert TrialAnswer.objects.filter(participant__study=study).count() == 1

    for body in ({"stimulus": s["stimulus"], "choice": 5}, {"stimulus": s["stimulus"] + 1, "choice": 0}):
        assert 400 <= bot.post(f"steps/{step + 1}/answer", body)[0] < 500
    assert TrialAnswer.objects.filter(participant__study=study).count() == 1
    final = bot.post(f"steps/{step + 1}/answer", {"stimulus": s["stimulus"], "choice": 1})
    repeat = bot.post(f"steps/{step + 1}/answer", {"stimulus": s["stimulus"], "choice": 1})
    switch_back = bot.post(f"steps/{step + 1}/answer", {"stimulus": s["stimulus"], "choice": 0})
    assert final[0] == 200 and repeat[0] == 200 and 400 <= switch_back[0] < 500
    assert final[1]["step"] == step + 2 and "feedback" not in final[1]
    rows = dict(TrialAnswer.objects.filter(participant__study=study).values_list("trial_index", "choice"))
    assert rows == {s["trial"]: study.classes[0], s["trial"] + 1: study.classes[1]}


def test_create_study_makes_the_decision_template_on_a_kannada_data_set_with_its_classifier():
    import io

    from django.core.management import call_command

    from studyapp.pipeline.models import Dataset, TrainedModel

    dataset = Dataset.objects.create(
        name="kannada", kind=Dataset.Kind.KANNADA, source="test", file="none.npz", fingerprint="1" * 64,
        class_names=[str(i) for i in range(10)], n_train=0, n_test=0,
    )
    classifier = TrainedModel.objects.create(dataset=dataset, role="classifier", arch="MnistNet", status="ready")
    out = io.StringIO()
    call_command("create_study", "--template", "decision", "--slug", "dec-kannada", "--dataset", "kannada",
                 "--classes", "3,7", "--names", "Ternal,Peat", "--classifier", str(classifier.pk), stdout=out)
    study = Study.objects.get(slug="dec-kannada")
    assert study.design == Study.Design.DECISION and study.correct_mode == Study.CorrectMode.TRUTH
    assert study.classes == [3, 7] and study.config["classifier_id"] == classifier.pk
    assert [a.feedback for a in study.arms.order_by("position")] == ["control", "gradcam", "nearest"]
    from studyapp.studies.selectors import study_methods

    assert study_methods(study=study) == ["gradcam", "nearest"]
    assert "AI-assisted decision" in out.getvalue()


@pytest.mark.slow
@pytest.mark.first_run_only  # model work; CI's PostgreSQL run proves the worker path on the learning study
def test_the_nearest_examples_method_stores_a_strip_of_the_predicted_class_as_decoded(tmp_path):
    """A real (small) classifier, the pipeline's nearest method through `explanations_compute`: the
    stored PNG, decoded, is the k training images its numbers name, side by side, each of the
    predicted class and nearest first."""
    import io

    from PIL import Image

    from explainers.datasets.common import to_tensor
    from explainers.nearest import penultimate_features
    from studyapp.pipeline import datasets, explain, loading, training
    from studyapp.pipeline.params import NEAREST_DEFAULTS, explanation_params
    from studyapp.pipeline.stimuli import stimuli_select
    from studyapp.pipeline.storage import media_path
    from tests.studyapp.test_pipeline import write_official_npz

    dataset = datasets.dataset_import_kannada(name="k", directory=write_official_npz(tmp_path / "k", n_train=800, n_test=200))
    classifier = training.model_create(dataset=dataset, role="classifier", params={"epochs": 1, "seed": 0, "lr": 3e-3, "batch_size": 64})
    classifier = training.model_train(trained_id=classifier.pk)
    study = study_from_template(template="decision", slug="dec-nearest", datasets=[dataset], classes=[3, 7],
                                names=["Ternal", "Peat"], classifiers=[classifier], arms=["Nearest"])
    Study.objects.filter(pk=study.pk).update(n_trials=2, config={**study.config, "spare_stimuli": 1})
    study.refresh_from_db()
    stimuli = stimuli_select(study=study, classifier=classifier)
    params = explanation_params(study=study, method="nearest")
    assert params["nearest"] == NEAREST_DEFAULTS and params["classes"] == [3, 7]
    assets = explain.explanations_compute(stimulus_ids=[s.pk for s in stimuli], method="nearest")
    assert len(assets) == len(stimuli) == 3 and all(a.valid for a in assets)

    arrays = loading.dataset_arrays(dataset)
    net = loading.load_model(classifier)
    k, scale = NEAREST_DEFAULTS["k"], NEAREST_DEFAULTS["scale"]
    for asset in assets:
        stimulus = asset.stimulus
        rows = [int(r) for r in asset.metrics["nearest_train_index"]]
        assert len(rows) == k and all(arrays["y_train"][r] == stimulus.model_prediction for r in rows)
        decoded = np.asarray(Image.open(io.BytesIO(media_path(asset.files["examples"]).read_bytes())).convert("L"))
        assert decoded.shape == (28 * scale, k * 28 * scale + (k - 1) * 2 * scale)
        for j, r in enumerate(rows):
            left = j * (28 + 2) * scale
            assert np.array_equal(decoded[::scale, left:left + 28 * scale:scale], arrays["x_train"][r].reshape(28, 28))
        # nearest first, and no training image of that class nearer than the last one shown
        image = to_tensor(arrays[f"x_{stimulus.split}"][stimulus.index][None])
        same = np.flatnonzero(arrays["y_train"] == stimulus.model_prediction)
        d = torch.cdist(penultimate_features(net, image).double(),
                        penultimate_features(net, to_tensor(arrays["x_train"][same])).double())[0].numpy()
        shown = [float(np.linalg.norm(d[np.searchsorted(same, r)])) for r in rows]
        assert shown == sorted(shown) and shown[-1] <= np.sort(d)[k - 1] + 1e-9
        assert asset.metrics["nearest_distance"] == pytest.approx(shown, abs=1e-4)


@pytest.mark.slow
@pytest.mark.first_run_only  # model work; CI's PostgreSQL run proves the worker path on the learning study
@pytest.mark.django_db(transaction=True)
def test_on_kannada_data_with_a_trained_classifier_a_precompute_job_makes_the_nearest_strips_on_a_worker(tmp_path):
    """The real chain: Kannada (the stand-in when the data is absent), a trained classifier, the
    template's stimulus selection, Grad-CAM and the nearest examples precomputed by a real worker,
    a bot's first item with the strip pinned and shown."""
    from django.db import transaction

    from studyapp.pipeline import datasets, precompute, training
    from studyapp.pipeline.stimuli import stimuli_select
    from studyapp.studies import selectors
    from tests.studyapp.test_pipeline import write_official_npz
    from tests.studyapp.worker import celery_worker, wait_for

    dataset = datasets.dataset_import_kannada(name="kannada", directory=write_official_npz(tmp_path / "k", n_train=1500, n_test=300))
    classifier = training.model_create(dataset=dataset, role="classifier", params={"epochs": 1, "seed": 0, "lr": 3e-3, "batch_size": 64})
    classifier = training.model_train(trained_id=classifier.pk)
    study = study_from_template(template="decision", slug="dec-real", datasets=[dataset], classes=[3, 7],
                                names=["Ternal", "Peat"], classifiers=[classifier], arms=["GCAM", "Nearest"])
    Study.objects.filter(pk=study.pk).update(n_trials=4, config={**study.config, "spare_stimuli": 2, "explain_batch": 4})
    study.refresh_from_db()
    assert len(stimuli_select(study=study, classifier=classifier)) == 6
    assert selectors.study_methods(study=study) == ["gradcam", "nearest"]
    with transaction.atomic():
        job = precompute.start(study=study, methods=selectors.study_methods(study=study))
    with celery_worker(name="precompute-dec") as proc:
        wait_for(lambda: job.__class__.objects.get(pk=job.pk).status in ("done", "failed"), timeout=600, proc=proc, what="precompute")
    job.refresh_from_db()
    assert job.status == "done", job.message
    strips = ExplanationAsset.objects.filter(stimulus__study=study, method="nearest")
    assert strips.count() == 6 and all(a.valid and "examples" in a.files for a in strips)
    services.study_open(study=study)
    study.refresh_from_db()
    for pid in ("R1", "R2"):  # one per arm
        bot = enter(study, pid)
        assert bot.continue_()[0] == 200 and bot.state["kind"] == "decision_alone"
        s = bot.state
        status, advice = bot.post(f"steps/{s['step']}/answer", {"stimulus": s["stimulus"], "choice": 0})
        assert status == 200 and advice["kind"] == "decision_assisted"
        arm = Participant.objects.get(study=study, prolific_pid=pid).arm.feedback
        role = {"nearest": "examples", "gradcam": "overlay"}[arm]
        assert advice["explanation"]["kind"] == arm and advice["explanation"]["assets"][role].endswith(".png")
