"""The forward-simulation template end to end: a study from the template, bot participants through
the real API in two arms with a planted difference, the export rows, and the analysis
(`studyapp.analysis.simulation` into `stats.protocols.simulation`) recovering the planted direction."""

from __future__ import annotations

import random

import pytest

from studyapp.analysis.simulation import simulation_frame, simulation_results
from studyapp.pipeline.models import Dataset, ExplanationAsset, Stimulus, TrainedModel
from studyapp.studies import exports, services
from studyapp.studies.designs.create import study_from_template
from studyapp.studies.models import Participant, Study, TrialAnswer
from tests.studyapp.bots import Bot
from tests.studyapp.factories import add_stimuli

pytestmark = pytest.mark.django_db

N = 6  # test items per phase (and learning items)


def simulation_study(*, n_stimuli: int = 24) -> Study:
    """The template's study (arms Control and GCAM) with stimuli: every other pair model-wrong."""
    study = study_from_template(template="simulation", slug="sim-test", arms=["Control", "GCAM"])
    study.n_trials = N
    study.save()
    add_stimuli(study, n_stimuli=n_stimuli)
    services.study_open(study=study)
    study.refresh_from_db()
    return study


def model_answer_of(study: Study, stimulus_id: int) -> int:
    """The option (position) of the model's answer on a stimulus (what a perfect simulator says)."""
    return study.classes.index(Stimulus.objects.get(pk=stimulus_id).model_prediction)


def test_the_template_draws_balanced_test_items_apart_from_the_learning_items():
    study = simulation_study()
    bot = Bot(study.public_code, pid="P0")
    bot.open_link()
    assert bot.enter()[0] in (200, 201)
    plan = Participant.objects.get(study=study).plan
    tests = {ph: [s["stimulus"] for s in plan if s["kind"] == "simulation_test" and s["phase"] == ph] for ph in ("pre", "post")}
    learn = [s["stimulus"] for s in plan if s["kind"] == "simulation_learn"]
    assert len(tests["pre"]) == len(tests["post"]) == len(learn) == N
    assert not set(tests["pre"]) & set(tests["post"]) and not (set(tests["pre"]) | set(tests["post"])) & set(learn)
    for ids in tests.values():
        wrong = Stimulus.objects.filter(pk__in=ids).exclude(model_prediction=models_true()).count()
        assert wrong == N // 2
    # the arm's explanation is pinned on the learning items only (the Control arm shows none)
    explained = Participant.objects.get(study=study).arm.feedback != "control"
    assert all(bool(s.get("assets")) == explained for s in plan if s["kind"] == "simulation_learn")
    assert not any(s.get("assets") for s in plan if s["kind"] == "simulation_test")


def models_true():
    from django.db.models import F

    return F("true_label")


def test_bots_in_two_arms_recover_the_planted_explanation_effect():
    study = simulation_study()
    rng = random.Random(3)
    # GCAM learns (0.5 -> 1.0), Control does not (0.5 -> 0.5): a planted change of 0.5, about 5 standard
    # errors at 24 runs of N = 6 items whatever split of arms the platform's randomisation gives (at
    # 0.55 -> 0.9 an unlucky split left the interval touching 0 about once in twenty)
    bots = []
    for i in range(24):
        bot = Bot(study.public_code, pid=f"P{i:03d}", rng=rng)
        bot.open_link()
        status, _ = bot.enter()
        assert status in (200, 201)
        arm = Participant.objects.get(study=study, prolific_pid=f"P{i:03d}").arm.name
        skill = {"pre": 0.5, "post": 1.0 if arm == "GCAM" else 0.5}
        bots.append((arm, take_entered(study, bot, skill=skill, rng=rng)))
    arms = {a for a, _ in bots}
    assert arms == {"Control", "GCAM"}
    # every acknowledged answer stored exactly once: 2N per participant
    assert TrialAnswer.objects.filter(participant__study=study).count() == 24 * 2 * N
    gcam_learned = [s for a, b in bots if a == "GCAM" for s in b.learned]
    control_learned = [s for a, b in bots if a == "Control" for s in b.learned]
    assert all(s["explanation"]["assets"] for s in gcam_learned)
    assert not any(s["explanation"]["assets"] for s in control_learned)

    frame = simulation_frame(study)
    assert len(frame[frame.phase != "learn"]) == 24 * 2 * N and len(frame[frame.phase == "learn"]) == 24 * N
    result = simulation_results(study)
    effect = result.effect("GCAM")
    assert effect.estimate > 0.2 and effect.ci_low > 0, effect
    balance = result.balance.set_index("phase")["share_model_correct"]
    assert balance["pre"] == pytest.approx(0.5) and balance["post"] == pytest.approx(0.5)

    rows = list(exports.tidy_rows(study=study))
    assert len(rows) == 24 * 2 * N
    # the phase column: each run's first N answers are the pre-test, the next N the post-test; test
    # items show no explanation, so no asset columns; the codebook describes the column
    assert {(r["phase"], r["item_kind"]) for r in rows} == {("pre", "forward"), ("post", "forward")}
    assert all(r["phase"] == ("pre" if r["trial_index"] < N else "post") for r in rows)
    assert all(r["explanation_asset_id"] == "" and r["explanation_apem"] == "" for r in rows)
    from studyapp.studies import codebook

    phase = codebook.entry("tidy", "phase")
    assert phase is not None and {"learn", "pre", "post"} <= set(phase.values)
    assert all(phase.check(str(r["phase"])) is None for r in rows)

    # the analysis page shows the section, with the GCAM effect's row
    from django.contrib.auth.models import User
    from django.test import Client

    admin = Client()
    admin.force_login(User.objects.create_superuser("boss", "boss@example.org", "pw"))
    page = admin.get(f"/admin/analysis/study/{study.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="simulation"' in html and 'data-table="simulation-effects"' in html and "no-simulation" not in html
    assert f'data-value="{effect.estimate!r}"' in html
    prereg = admin.get(f"/admin/analysis/study/{study.pk}/preregistration.md").content.decode()
    assert "forward-simulation" in prereg and "clustering" not in prereg and "the arm GCAM" in prereg


def test_the_analysis_section_says_why_when_there_is_nothing_yet():
    from studyapp.analysis.presenters_simulation import simulation_section

    section = simulation_section(simulation_study())
    assert "no rows" in section["error"] and "accuracy" not in section


def take_entered(study: Study, bot: Bot, *, skill: dict[str, float], rng: random.Random) -> Bot:
    learned: list[dict] = []

    def other(b: Bot):
        s = b.state
        if s["kind"] == "simulation_learn":
            assert s["model_answer_label"] in study.class_names and "feedback" not in s
            learned.append(s)
            status, data = b._record(b.api.continue_(s["step"]))
        else:
            assert s["kind"] == "simulation_test" and s["answered"] is False
            assert not any(k in s for k in ("feedback", "correct", "model_answer", "model_prediction", "true_label"))
            right = model_answer_of(study, s["stimulus"])
            choice = right if rng.random() < skill[s["phase"]] else 1 - right
            status, data = b._record(b.api.answer(s["step"], stimulus=s["stimulus"], choice=choice))
            assert "feedback" not in data, data
        if status == 200:
            b.state = data
        return status, data

    final = bot.walk(other=other)
    assert final["kind"] == "done", final
    bot.learned = learned  # type: ignore[attr-defined]
    return bot


def test_bad_input_is_refused_and_a_repeat_is_stored_once():
    study = simulation_study()
    bot = Bot(study.public_code, pid="P1")
    bot.open_link()
    assert bot.enter()[0] in (200, 201)
    while bot.state["kind"] != "simulation_test":
        assert bot.continue_()[0] == 200
    s = bot.state
    for body in ({"stimulus": s["stimulus"], "choice": 5}, {"stimulus": s["stimulus"], "choice": -1},
                 {"stimulus": s["stimulus"] + 999, "choice": 0}, {"choice": 0}):
        status, data = bot.post(f"steps/{s['step']}/answer", body)
        assert 400 <= status < 500, (body, status, data)
    assert bot.post(f"steps/{s['step']}/continue")[0] >= 400  # a test item is left by answering it
    assert TrialAnswer.objects.filter(participant__study=study).count() == 0
    assert bot.refresh()["step"] == s["step"]
    first = bot.post(f"steps/{s['step']}/answer", {"stimulus": s["stimulus"], "choice": 0})
    again = bot.post(f"steps/{s['step']}/answer", {"stimulus": s["stimulus"], "choice": 0})
    other = bot.post(f"steps/{s['step']}/answer", {"stimulus": s["stimulus"], "choice": 1})
    assert first[0] == 200 and again[0] == 200 and 400 <= other[0] < 500, (first, again, other)
    assert first[1]["step"] == s["step"] + 1 and "feedback" not in first[1]
    assert TrialAnswer.objects.filter(participant__study=study).count() == 1


def test_create_study_makes_the_simulation_template_on_a_kannada_data_set_with_its_classifier():
    import io

    from django.core.management import call_command

    dataset = Dataset.objects.create(
        name="kannada", kind=Dataset.Kind.KANNADA, source="test", file="none.npz", fingerprint="1" * 64,
        class_names=[str(i) for i in range(10)], n_train=0, n_test=0,
    )
    classifier = TrainedModel.objects.create(dataset=dataset, role="classifier", arch="MnistNet", status="ready")
    out = io.StringIO()
    call_command("create_study", "--template", "simulation", "--slug", "sim-kannada", "--dataset", "kannada",
                 "--classes", "3,7", "--names", "Ternal,Peat", "--classifier", str(classifier.pk),
                 "--arms", "Control,GCAM", stdout=out)
    study = Study.objects.get(slug="sim-kannada")
    assert study.design == Study.Design.SIMULATION and study.correct_mode == Study.CorrectMode.PREDICTION
    assert study.classes == [3, 7] and study.class_names == ["Ternal", "Peat"]
    assert study.parsed_config.wrong_share == 0.5 and study.config["classifier_id"] == classifier.pk
    assert [a.feedback for a in study.arms.order_by("position")] == ["control", "gradcam"]
    assert "Forward simulation" in out.getvalue()


@pytest.mark.slow
@pytest.mark.first_run_only  # model work; CI's PostgreSQL run proves the worker path on the learning study
@pytest.mark.django_db(transaction=True)
def test_on_kannada_data_with_a_trained_classifier_the_template_runs_from_stimuli_to_a_balanced_plan(tmp_path):
    """The real chain: Kannada (the stand-in when the data is absent), a trained classifier, the
    template's balanced stimulus selection, Grad-CAM precomputed on a real worker, a bot's run."""
    from django.db import transaction

    from studyapp.pipeline import datasets, precompute, training
    from studyapp.pipeline.stimuli import stimuli_select
    from studyapp.studies import selectors
    from tests.studyapp.test_pipeline import write_official_npz
    from tests.studyapp.worker import celery_worker, wait_for

    dataset = datasets.dataset_import_kannada(name="kannada", directory=write_official_npz(tmp_path / "k", n_train=3000, n_test=600))
    classifier = training.model_create(dataset=dataset, role="classifier", params={"epochs": 1, "seed": 0, "lr": 3e-3, "batch_size": 64})
    classifier = training.model_train(trained_id=classifier.pk)
    study = study_from_template(template="simulation", slug="sim-real", datasets=[dataset], classes=[3, 7],
                                names=["Ternal", "Peat"], classifiers=[classifier], arms=["Control", "GCAM"])
    Study.objects.filter(pk=study.pk).update(n_trials=4, config={**study.config, "spare_stimuli": 10, "explain_batch": 8})
    study.refresh_from_db()
    chosen = stimuli_select(study=study, classifier=classifier)
    assert len(chosen) == 14
    with transaction.atomic():
        job = precompute.start(study=study, methods=selectors.study_methods(study=study))
    with celery_worker(name="precompute-sim") as proc:
        wait_for(lambda: job.__class__.objects.get(pk=job.pk).status in ("done", "failed"), timeout=600, proc=proc, what="precompute")
    job.refresh_from_db()
    assert job.status == "done", job.message
    services.study_open(study=study)
    study.refresh_from_db()
    bot = Bot(study.public_code, pid="R1")
    bot.open_link()
    assert bot.enter()[0] in (200, 201)
    plan = Participant.objects.get(study=study).plan
    correct = dict(Stimulus.objects.filter(study=study).values_list("pk", "model_prediction"))
    truth = dict(Stimulus.objects.filter(study=study).values_list("pk", "true_label"))
    for phase in ("pre", "post"):
        ids = [s["stimulus"] for s in plan if s["kind"] == "simulation_test" and s["phase"] == phase]
        assert len(ids) == 4 and sum(correct[i] != truth[i] for i in ids) == 2, (phase, ids)
    tested = {s["stimulus"] for s in plan if s["kind"] == "simulation_test"}
    learned = {s["stimulus"] for s in plan if s["kind"] == "simulation_learn"}
    assert len(tested) == 8 and len(learned) == 4 and not tested & learned
    status, data = bot.post(f"steps/{bot.state['step']}/continue")
    assert status == 200 and data["kind"] == "simulation_test" and "model_answer" not in data


# --------------------------------------------------------------------------- counterfactual items


def counterfactual_study(c: int = 2) -> Study:
    """The simulation study with ``c`` counterfactual items per phase: every stimulus's CDeepEx
    morph is given the classifier's answer on its last frame (``top1``, as the worker's gate stores
    it): the class the morph moved to, the other one of the two."""
    study = simulation_study()
    a, b = study.classes
    for asset in ExplanationAsset.objects.filter(stimulus__study=study, method="cdeepex").select_related("stimulus"):
        asset.metrics = {**asset.metrics, "top1": float(b if asset.stimulus.model_prediction == a else a)}
        asset.save(update_fields=["metrics"])
    Study.objects.filter(pk=study.pk).update(config={**study.config, "counterfactual_items": c})
    study.refresh_from_db()
    return study


def test_counterfactual_items_show_a_morphs_last_frame_scored_against_the_models_answer_on_it():
    import io

    import numpy as np
    from PIL import Image, ImageSequence

    from studyapp.pipeline.storage import media_path, media_url

    study = counterfactual_study(2)
    rng = random.Random(5)
    bot = Bot(study.public_code, pid="CF0", rng=rng)
    bot.open_link()
    assert bot.enter()[0] in (200, 201)
    run = Participant.objects.get(study=study)
    tests = [s for s in run.plan if s["kind"] == "simulation_test"]
    assert [s["trial"] for s in tests] == list(range(2 * (N + 2)))
    assert [s["phase"] for s in tests] == ["pre"] * (N + 2) + ["post"] * (N + 2)
    changed = [s for s in tests if s.get("item_kind") == "counterfactual"]
    assert [s["phase"] for s in changed] == ["pre", "pre", "post", "post"]
    others = {s["stimulus"] for s in run.plan if s.get("stimulus") and s.get("item_kind") != "counterfactual"}
    assert len({s["stimulus"] for s in changed}) == 4 and not {s["stimulus"] for s in changed} & others
    for s in changed:
        asset = ExplanationAsset.objects.get(pk=s["asset"])
        assert asset.method == "cdeepex" and asset.stimulus_id == s["stimulus"] and s["model_answer"] == asset.metrics["top1"]
        assert asset.files["counterfactual"] == s["image"]
        # the image is the GIF's last frame, decoded as displayed
        with Image.open(io.BytesIO(media_path(asset.files["gif"]).read_bytes())) as gif:
            last = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(gif)][-1]
        assert np.array_equal(np.asarray(Image.open(media_path(s["image"]))), last)
        assert s["model_answer"] != Stimulus.objects.get(pk=s["stimulus"]).model_prediction

    # answered through the API: the browser sees an ordinary test item with the frame's URL
    seen = []

    def other(b: Bot):
        s = b.state
        if s["kind"] == "simulation_learn":
            status, data = b._record(b.api.continue_(s["step"]))
        else:
            step = next(t for t in tests if t["trial"] == s["trial"])
            if step.get("item_kind") == "counterfactual":
                seen.append(s)
                assert s["image_url"] == media_url(step["image"])
                assert not any("counterfactual" in str(v) for v in s.values())
                choice = study.classes.index(step["model_answer"])  # a perfect simulator of the changed input
            else:
                choice = model_answer_of(study, s["stimulus"])
            status, data = b._record(b.api.answer(s["step"], stimulus=s["stimulus"], choice=choice))
        if status == 200:
            b.state = data
        return status, data

    assert bot.walk(other=other)["kind"] == "done"
    assert len(seen) == 4
    answers = {a.trial_index: a for a in TrialAnswer.objects.filter(participant=run)}
    assert len(answers) == 2 * (N + 2) and all(a.correct for a in answers.values())
    for s in changed:
        assert answers[s["trial"]].correct_label == s["model_answer"] and answers[s["trial"]].stimulus_id == s["stimulus"]

    # the analysis splits by item kind; the export says which item was which
    frame = simulation_frame(study)
    cf = frame[frame.item_kind == "counterfactual"]
    assert sorted(cf["item"]) == sorted(f"cf{s['asset']}" for s in changed) and (cf["answer"] == cf["model_answer"]).all()
    rows = list(exports.tidy_rows(study=study))
    assert sorted(r["trial_index"] for r in rows if r["item_kind"] == "counterfactual") == sorted(s["trial"] for s in changed)


def test_counterfactual_items_split_the_analysis_by_item_kind():
    study = counterfactual_study(1)
    rng = random.Random(9)
    for i in range(6):
        bot = Bot(study.public_code, pid=f"K{i}", rng=rng)
        bot.open_link()
        assert bot.enter()[0] in (200, 201)
        take_entered(study, bot, skill={"pre": 0.6, "post": 0.8}, rng=rng)
    result = simulation_results(study)
    kinds = set(result.accuracy["item_kind"])
    assert kinds == {"forward", "counterfactual"}
    cf = result.accuracy[(result.accuracy.item_kind == "counterfactual") & (result.accuracy.subset == "all")]
    assert (cf["n"] > 0).all()
    from studyapp.analysis.presenters_simulation import simulation_section

    section = simulation_section(study)
    texts = [row[0]["text"] for row in section["accuracy"]["rows"]]
    assert "counterfactual: all" in texts and "all" in texts
    from studyapp.analysis.preregistration import preregistration_text

    text = preregistration_text(study)
    assert "Counterfactual simulation: 1 more item(s) per test phase" in text and "analysed apart" in text
    assert "Counterfactual" not in preregistration_text(simulation_study_again(study))


def simulation_study_again(study: Study) -> Study:
    """``study`` without counterfactual items (its configuration only)."""
    Study.objects.filter(pk=study.pk).update(config={k: v for k, v in study.config.items() if k != "counterfactual_items"})
    study.refresh_from_db()
    return study


def test_a_study_asking_for_more_counterfactual_items_than_its_morphs_give_enrols_no_one():
    study = counterfactual_study(4)  # 18 stimuli in the plan, 6 left: not 8
    bot = Bot(study.public_code, pid="CFX")
    bot.open_link()
    status, _ = bot.enter()
    assert status >= 400 and not Participant.objects.filter(study=study).exists()
    Study.objects.filter(pk=study.pk).update(config={**study.config, "counterfactual_items": -1})
    status, _ = bot.enter()
    assert status >= 400 and not Participant.objects.filter(study=study).exists()
