"""The HIVE template end to end (issue 25, protocol 3): a study from the template, bot participants
through the real API in two arms with a planted difference that the analysis
(`studyapp.analysis.hive` into `stats.protocols.hive`) recovers, bad input refused with nothing
stored, the export and codebook, and the four maps of the model's top classes computed by the
worker and decoded as shown."""

from __future__ import annotations

import io
import random

import pytest
from django.core.management import call_command

from studyapp.analysis.hive import hive_frame, hive_results
from studyapp.pipeline.models import Dataset, ExplanationAsset, Stimulus, TrainedModel
from studyapp.pipeline.params import explanation_params, params_hash, target_ranks
from studyapp.pipeline.storage import store_bytes
from studyapp.studies import exports, services
from studyapp.studies.designs import TemplateError
from studyapp.studies.designs.create import study_from_template
from studyapp.studies.models import Arm, Participant, QuestionAnswer, Study
from studyapp.studies.steps import registry
from tests.studyapp.bots import Bot
from tests.studyapp.factories import add_stimuli, png

pytestmark = pytest.mark.django_db

N = 4  # items per task


def hive_study(*, n_stimuli: int = 24, arms: tuple[str, ...] = ("Control", "GCAM")) -> Study:
    """The template's study with stimuli (every other pair model-wrong) and, per stimulus, the
    Grad-CAM maps of ranks 0-3 under the parameters a HIVE precompute plans."""
    study = study_from_template(template="hive", slug="hive-test", arms=list(arms))
    study.n_trials = N
    study.save()
    add_stimuli(study, n_stimuli=n_stimuli)
    study.refresh_from_db()
    hashes = [params_hash(explanation_params(study=study, method="gradcam", target_rank=k)) for k in range(4)]
    for stimulus in Stimulus.objects.filter(study=study):
        for k, h in enumerate(hashes):
            ExplanationAsset.objects.create(
                stimulus=stimulus, method="gradcam", params_hash=h, params={"target_rank": k}, valid=True,
                files={"overlay": store_bytes(png(5000 + 10 * stimulus.position + k), ext="png")},
            )
    services.study_open(study=study)
    study.refresh_from_db()
    return study


def enter(study: Study, pid: str, rng: random.Random | None = None) -> Bot:
    bot = Bot(study.public_code, pid=pid, rng=rng)
    bot.open_link()
    assert bot.enter()[0] in (200, 201)
    return bot


def test_precompute_plans_four_ranks_for_a_hive_study_only_and_rank_zero_keeps_its_hash():
    study = hive_study()
    other = study_from_template(template="simulation", slug="sim-x", arms=["GCAM"])
    assert list(target_ranks(study=study, method="gradcam")) == [0, 1, 2, 3]
    assert list(target_ranks(study=other, method="gradcam")) == [0]
    assert list(target_ranks(study=study, method="cdeepex")) == [0]
    base = explanation_params(study=study, method="gradcam")
    assert "target_rank" not in base and explanation_params(study=study, method="gradcam", target_rank=0) == base
    hashes = {params_hash(explanation_params(study=study, method="gradcam", target_rank=k)) for k in range(4)}
    assert len(hashes) == 4 and params_hash(base) in hashes
    from studyapp.pipeline.errors import PipelineError

    with pytest.raises(PipelineError, match="cannot explain the class of rank"):
        explanation_params(study=study, method="cdeepex", target_rank=1)
    # every map exists already: nothing to plan; one rank missing: only that rank is planned
    from studyapp.pipeline import precompute

    assert precompute.plan(study=study, methods=["gradcam"]) == []
    ExplanationAsset.objects.filter(stimulus__study=study, params__target_rank=2).delete()
    batches = precompute.plan(study=study, methods=["gradcam"])
    assert sum(len(ids) for _, ids in batches) == 24


def test_the_design_balances_the_items_and_pins_the_four_maps_in_a_drawn_order():
    study = hive_study()
    orders = []
    for i in range(6):
        enter(study, f"P{i}")
    for p in Participant.objects.filter(study=study).select_related("arm"):
        agree = [s for s in p.plan if s["kind"] == "hive_agreement"]
        distinct = [s for s in p.plan if s["kind"] == "hive_distinction"]
        assert len(agree) == N
        wrong = Stimulus.objects.filter(pk__in=[s["stimulus"] for s in agree]).exclude(model_prediction=models_true()).count()
        assert wrong == N // 2
        if p.arm.feedback == "control":
            assert not distinct and not any(s.get("assets") for s in agree)
            continue
        assert len(distinct) == N and not {s["stimulus"] for s in agree} & {s["stimulus"] for s in distinct}
        for s in agree:
            assert ExplanationAsset.objects.get(pk=s["assets"]["0"]).params == {"target_rank": 0}
        for s in distinct:
            assert sorted(s["order"]) == [0, 1, 2, 3]
            assert {k: ExplanationAsset.objects.get(pk=v).params["target_rank"] for k, v in s["assets"].items()} == {"0": 0, "1": 1, "2": 2, "3": 3}
            orders.append(tuple(s["order"]))
    assert len(set(orders)) > 1  # the positions are drawn, not fixed


def models_true():
    from django.db.models import F

    return F("true_label")


def test_bots_in_two_arms_recover_the_planted_difference():
    study = hive_study()
    rng = random.Random(5)
    correct = {pk: pred == true for pk, pred, true in Stimulus.objects.filter(study=study).values_list("pk", "model_prediction", "true_label")}
    seen: dict[str, list[dict]] = {"Control": [], "GCAM": []}
    n_bots = 16
    for i in range(n_bots):
        bot = enter(study, f"P{i:03d}", rng)
        p = Participant.objects.get(study=study, prolific_pid=f"P{i:03d}")
        arm = p.arm.name

        def other(b: Bot, p=p, arm=arm):
            s = b.state
            seen[arm].append(s)
            stored = p.plan[s["step"]]
            assert not any(k in s for k in ("order", "model_answer", "assets", "correct", "true_label", "model_prediction")), s
            if s["kind"] == "hive_agreement":
                # GCAM: confident on the model's right answers, not on its wrong ones; Control: no signal
                if arm == "GCAM":
                    value = rng.choice([3, 4]) if correct[s["stimulus"]] else rng.choice([1, 2])
                else:
                    value = rng.choice([1, 2, 3, 4])
                return b.questions({s["key"]: value})
            assert s["kind"] == "hive_distinction" and [o["label"] for o in s["options"]] == ["A", "B", "C", "D"]
            assert all(o["url"] for o in s["options"])
            right = stored["order"].index(0)
            choice = right if rng.random() < 0.8 else rng.choice([k for k in range(4) if k != right])
            return b.questions({s["key"]: choice})

        final = bot.walk(other=other)
        assert final["kind"] == "done", final
        # nothing the browser got names the data set, a class rank or where the model's answer is
        for label, _, body in bot.responses:
            for word in ('"tiny"', "target_rank", '"order"', "probabilities", "model_prediction", "true_label"):
                assert word not in body, (label, word)
    n_gcam = Participant.objects.filter(study=study, arm__name="GCAM").count()
    n_control = n_bots - n_gcam
    assert n_gcam and n_control
    # every acknowledged answer stored exactly once: N agreement (+ N distinction and its hit) per run, and the rating
    hive_rows = QuestionAnswer.objects.filter(participant__study=study, key__startswith="hive_").count()
    assert hive_rows == n_control * N + n_gcam * 3 * N
    assert all(s["explanation"]["assets"] for s in seen["GCAM"] if s["kind"] == "hive_agreement")
    assert not any(s["explanation"]["assets"] for s in seen["Control"])
    assert all(s["model_answer_label"] in study.class_names for arm in seen.values() for s in arm if s["kind"] == "hive_agreement")

    frame = hive_frame(study)
    assert len(frame) == n_bots * N + n_gcam * N

    # metrics vs people: the agreement ratings of the GCAM arm, each with the map of the model's answer
    from studyapp.analysis.metrics_people import metrics_frame

    data = metrics_frame(study)
    assert data.outcome == "rating" and len(data.frame) == n_gcam * N and data.n_unexplained == n_control * N
    ranks = set(ExplanationAsset.objects.filter(pk__in=set(data.frame.asset)).values_list("params__target_rank", flat=True))
    assert ranks <= {None, 0}, ranks  # the prediction's map (rank 0), never another class's
    assert sorted(data.frame.rating.unique()) == [1.0, 2.0, 3.0, 4.0]
    res = hive_results(study)
    gcam, control = res.difference("GCAM"), res.difference("Control")
    assert gcam.estimate > 1.5 and gcam.ci_low > 0, gcam  # planted: 3.5 vs 1.5 = 2
    assert control.ci_low < 0.9, control
    acc = res.accuracy("GCAM")
    assert 0.55 < acc.estimate and acc.p_value < 0.001 and acc.null == 0.25, acc
    assert set(res.distinction["arm"]) == {"GCAM"}

    # export and codebook: the wide rows have the answers under their keys, the dictionary names them
    columns, rows = exports.wide_rows(study=study)
    for key in ("hive_agreement_0", "hive_distinction_0", "hive_distinction_0_hit"):
        assert key in columns
    gcam_row = next(r for r in rows if r.get("hive_distinction_0") != "")
    assert gcam_row["hive_distinction_0_hit"] in (0, 1)
    entries = registry.study_entries(study)
    assert entries["hive_agreement_0"].coding == (
        (1, "Fairly confident that prediction is incorrect"), (2, "Somewhat confident that prediction is incorrect"),
        (3, "Somewhat confident that prediction is correct"), (4, "Fairly confident that prediction is correct"))
    assert entries["hive_distinction_0"].coding[0] == (0, "A")

    # the analysis page shows the section with the GCAM difference
    from django.contrib.auth.models import User
    from django.test import Client

    admin = Client()
    admin.force_login(User.objects.create_superuser("boss", "boss@example.org", "pw"))
    page = admin.get(f"/admin/analysis/study/{study.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="hive"' in html and 'data-table="hive-distinction"' in html and "no-hive" not in html
    assert f'data-value="{gcam.estimate!r}"' in html
    prereg = admin.get(f"/admin/analysis/study/{study.pk}/preregistration.md").content.decode()
    assert "HIVE study" in prereg and "stats.protocols.hive" in prereg and "clustering" not in prereg


def test_bad_input_is_refused_and_a_repeat_is_stored_once():
    study = hive_study(arms=("GCAM",))
    bot = enter(study, "P1")
    while bot.state["kind"] != "hive_agreement":
        assert bot.continue_()[0] == 200
    s = bot.state
    key = s["key"]
    for answers in ({key: 0}, {key: 5}, {key: "3"}, {key: True}, {key: 2, "other": 1}, {"hive_agreement_9": 2}, []):
        status, data = bot.post(f"steps/{s['step']}/questions", {"answers": answers})
        assert 400 <= status < 500, (answers, status, data)
    assert bot.post(f"steps/{s['step']}/continue")[0] >= 400
    assert not QuestionAnswer.objects.filter(participant__study=study).exists()
    first = bot.post(f"steps/{s['step']}/questions", {"answers": {key: 3}})
    again = bot.post(f"steps/{s['step']}/questions", {"answers": {key: 3}})
    other = bot.post(f"steps/{s['step']}/questions", {"answers": {key: 1}})
    assert first[0] == 200 and again[0] == 200 and 400 <= other[0] < 500, (first, again, other)
    assert QuestionAnswer.objects.filter(participant__study=study).count() == 1
    bot.state = first[1]
    while bot.state["kind"] != "hive_distinction":
        assert bot.questions({bot.state["key"]: 2})[0] == 200
    s = bot.state
    before = QuestionAnswer.objects.filter(participant__study=study).count()
    for answers in ({s["key"]: 4}, {s["key"]: -1}, {s["key"]: "A"}, {s["key"]: None}, {s["key"]: 1, f"{s['key']}_hit": 1}):
        status, data = bot.post(f"steps/{s['step']}/questions", {"answers": answers})
        assert 400 <= status < 500, (answers, status, data)
    assert QuestionAnswer.objects.filter(participant__study=study).count() == before
    assert bot.questions({s["key"]: 1})[0] == 200
    saved = dict(QuestionAnswer.objects.filter(participant__study=study, key__startswith=s["key"]).values_list("key", "value"))
    order = Participant.objects.get(study=study).plan[s["step"]]["order"]
    assert saved == {s["key"]: 1, f"{s['key']}_hit": int(order[1] == 0)}


def test_a_hive_arm_showing_a_morph_is_refused_with_the_reason(caplog):
    study = hive_study(arms=("GCAM",))
    study.arms.update(feedback=Arm.Feedback.CDEEPEX)
    from studyapp.studies.errors import StudyUnavailable

    with pytest.raises(StudyUnavailable, match="arm 'GCAM' shows CDeepEx morph animation; a HIVE study's arms show Grad-CAM"):
        services.study_open(study=study)  # the admin's "open" says why
    bot = Bot(study.public_code, pid="M1")
    bot.open_link()
    status, data = bot.enter()
    assert status >= 400 and "morph" not in str(data).lower()
    assert "morphs and GAD explain a pair" in caplog.text
    assert not Participant.objects.filter(study=study).exists()


def test_a_classifier_of_fewer_than_four_classes_cannot_open_a_hive_study():
    study = hive_study(arms=("GCAM",))
    Study.objects.filter(pk=study.pk).update(status=Study.Status.DRAFT)
    Stimulus.objects.filter(study=study).update(probabilities=[0.5, 0.3, 0.2])
    from studyapp.studies.errors import StudyUnavailable

    with pytest.raises(StudyUnavailable, match="the classifier has 3 classes; .* at least 4"):
        services.study_open(study=study)


def test_create_study_makes_the_hive_template_on_kannada_and_refuses_a_classifier_of_three_classes():
    def dataset(name: str, n: int) -> tuple[Dataset, TrainedModel]:
        d = Dataset.objects.create(
            name=name, kind=Dataset.Kind.KANNADA, source="test", file="none.npz", fingerprint=name[0] * 64,
            class_names=[str(i) for i in range(n)], n_train=0, n_test=0,
        )
        return d, TrainedModel.objects.create(dataset=d, role="classifier", arch="MnistNet", status="ready")

    _, classifier = dataset("kannada", 10)
    out = io.StringIO()
    call_command("create_study", "--template", "hive", "--slug", "hive-kannada", "--dataset", "kannada",
                 "--classes", "3,7", "--names", "Ternal,Peat", "--classifier", str(classifier.pk), stdout=out)
    study = Study.objects.get(slug="hive-kannada")
    assert study.design == Study.Design.HIVE and study.classes == [3, 7] and study.config["classifier_id"] == classifier.pk
    assert [a.feedback for a in study.arms.order_by("position")] == ["control", "gradcam"]
    assert "HIVE" in out.getvalue()
    small, small_classifier = dataset("three", 3)
    with pytest.raises(TemplateError, match="at least four"):
        study_from_template(template="hive", slug="hive-3", datasets=[small], classes=[0, 1], names=["Ternal", "Peat"],
                            classifiers=[small_classifier])
    assert not Study.objects.filter(slug="hive-3").exists()


def test_the_analysis_section_says_why_when_there_is_nothing_yet():
    from studyapp.analysis.presenters_hive import hive_section

    section = hive_section(hive_study())
    assert section["error"] and "agreement" not in section


@pytest.mark.slow
@pytest.mark.first_run_only  # model work; CI's PostgreSQL run proves the worker path on the learning study
@pytest.mark.django_db(transaction=True)
def test_the_worker_makes_the_four_maps_of_the_top_classes_and_they_decode_as_shown(tmp_path):
    """The real chain: Kannada (the stand-in when the data is absent), a trained classifier, the
    template's stimuli, one precompute job on a real Celery worker making four Grad-CAM assets per
    stimulus; each stored PNG decodes to the map of its rank's class, and a bot's distinction item
    shows those four files."""
    import numpy as np
    import torch
    from django.db import transaction
    from PIL import Image

    from explainers import render
    from explainers.datasets.common import to_tensor
    from explainers.gradcam import GradCAM
    from explainers.nets.external import gradcam_view
    from explainers.targets import ClassTarget
    from studyapp.pipeline import datasets, explain, loading, precompute, training
    from studyapp.pipeline.models import PrecomputeJob
    from studyapp.pipeline.stimuli import stimuli_select
    from studyapp.pipeline.storage import media_path, media_url
    from studyapp.studies import selectors
    from tests.studyapp.test_pipeline import write_official_npz
    from tests.studyapp.worker import celery_worker, wait_for

    data = datasets.dataset_import_kannada(name="kannada", directory=write_official_npz(tmp_path / "k", n_train=1000, n_test=300))
    classifier = training.model_create(dataset=data, role="classifier", params={"epochs": 1, "seed": 0, "lr": 3e-3, "batch_size": 64})
    classifier = training.model_train(trained_id=classifier.pk)
    study = study_from_template(template="hive", slug="hive-real", datasets=[data], classes=[3, 7], names=["Ternal", "Peat"],
                                classifiers=[classifier], arms=["GCAM"])
    Study.objects.filter(pk=study.pk).update(n_trials=1, config={**study.config, "spare_stimuli": 2, "explain_batch": 8})
    study.refresh_from_db()
    stimuli = stimuli_select(study=study, classifier=classifier)
    with transaction.atomic():
        job = precompute.start(study=study, methods=selectors.study_methods(study=study))
    assert job.total == 4 * len(stimuli)
    assert sorted({b["params"].get("target_rank", 0) for b in job.plan}) == [0, 1, 2, 3]
    with celery_worker(name="precompute-hive") as proc:
        wait_for(lambda: PrecomputeJob.objects.get(pk=job.pk).status in ("done", "failed"), timeout=600, proc=proc, what="precompute")
    job.refresh_from_db()
    assert job.status == "done", job.message
    stimulus = Stimulus.objects.get(pk=stimuli[0].pk)
    model = loading.load_model(classifier)
    image = to_tensor(loading.dataset_arrays(data)[f"x_{stimulus.split}"][stimulus.index][None])
    view, layer, _ = gradcam_view(model, image, None)
    shown, urls = [], {}
    for batch in job.plan:
        rank = batch["params"].get("target_rank", 0)
        asset = ExplanationAsset.objects.get(stimulus=stimulus, method="gradcam", params_hash=batch["params_hash"])
        decoded = np.asarray(Image.open(media_path(asset.files["overlay"])).convert("RGB"))
        target = explain.ranked_class(stimulus, rank)
        expected_map = GradCAM(view, layer)(image, ClassTarget(torch.tensor([target])))
        expected = np.asarray(Image.open(io.BytesIO(render.heatmap_overlay_png(image[0], expected_map[0], colormap="cividis"))).convert("RGB"))
        assert np.array_equal(decoded, expected), rank
        shown.append(decoded)
        urls[rank] = media_url(asset.files["overlay"])
    assert explain.ranked_class(stimulus, 0) == stimulus.model_prediction
    assert len({explain.ranked_class(stimulus, k) for k in range(4)}) == 4
    assert sum(not np.array_equal(shown[0], other) for other in shown[1:]) >= 2
    # a run shows them: the distinction item's four options are the four maps, in its drawn order
    services.study_open(study=study)
    study.refresh_from_db()
    bot = enter(study, "R1")
    while bot.state["kind"] != "hive_distinction":
        status, _ = bot.continue_() if bot.state["kind"] == "instructions" else bot.questions({bot.state["key"]: 3})
        assert status == 200
    item = Participant.objects.get(study=study).plan[bot.state["step"]]
    by_rank = {rank: ExplanationAsset.objects.get(pk=pk) for rank, pk in item["assets"].items()}
    stimulus = Stimulus.objects.get(pk=item["stimulus"])
    assert [o["url"] for o in bot.state["options"]] == [media_url(by_rank[str(r)].files["overlay"]) for r in item["order"]]
    assert {r: a.params.get("target_rank", 0) for r, a in by_rank.items()} == {"0": 0, "1": 1, "2": 2, "3": 3}
