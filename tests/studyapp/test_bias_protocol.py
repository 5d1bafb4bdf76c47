"""The bias-discovery template end to end (issue 25, protocol 4): a classifier trained with a
planted cue through the platform (it really relies on the cue), a study from the template, bot
participants through the real API in two arms with a planted difference that the analysis
(`studyapp.analysis.bias` into `stats.protocols.bias`) recovers, bad input refused with nothing
stored, and the export rows and codebook entries."""

from __future__ import annotations

import io
import random

import pytest
from django.core.management import call_command

from studyapp.analysis.bias import bias_frame, bias_results
from studyapp.pipeline.models import TrainedModel
from studyapp.studies import exports, services
from studyapp.studies.designs.create import study_from_template
from studyapp.studies.models import Participant, QuestionAnswer, Study
from studyapp.studies.steps import registry
from tests.studyapp.bots import Bot
from tests.studyapp.factories import add_stimuli

pytestmark = pytest.mark.django_db

CUE_BOX = (0, 0, 6, 6)


def bias_study(*, n_stimuli: int = 12) -> Study:
    """The template's study (arms Control and GCAM) with stimuli; its classifier carries the planted square."""
    study = study_from_template(template="bias", slug="bias-test", arms=["Control", "GCAM"])
    add_stimuli(study, n_stimuli=n_stimuli)
    TrainedModel.objects.filter(pk=study.config["classifier_id"]).update(
        metadata={"planted_cue": {"cue_class": 8, "shape": "square", "size": 6, "x": 0, "y": 0, "value": 0.5, "box": list(CUE_BOX)}})
    services.study_open(study=study)
    study.refresh_from_db()
    return study


def planted_text(study: Study) -> str:
    bias = study.config["bias"]
    return bias["candidates"][bias["planted"]]


def take(study: Study, bot: Bot, *, found: bool, near: bool, rng: random.Random) -> dict:
    """Walk a run: continue on the explained items; on a mark, a box near the square (``near``) or
    away from it, and on the last the planted cue (``found``) or another candidate."""
    seen: list[dict] = []

    def other(b: Bot):
        s = b.state
        seen.append(s)
        if s["kind"] == "simulation_learn":
            return b.continue_()
        assert s["kind"] == "bias_mark", s
        w, h = s["image_size"]
        if near:
            x, y = rng.randint(0, 3), rng.randint(0, 3)
            box = [x, y, x + 6, y + 6]
        else:
            x, y = rng.randint(8, w - 8), rng.randint(8, h - 8)
            box = [x, y, x + 6, y + 6]
        answers = {s["mark_key"]: box}
        if "cues" in s:
            labels = [c["label"] for c in s["cues"]]
            target = labels.index(planted_text(study))
            wrong = [c["value"] for c in s["cues"] if c["value"] != target]
            answers[s["cue_key"]] = target if found else rng.choice(wrong)
        return b.questions(answers)

    final = bot.walk(other=other)
    assert final["kind"] == "done", final
    return {"seen": seen}


def test_the_plan_explains_then_marks_and_the_candidates_are_in_an_order_per_run():
    study = bias_study()
    orders = []
    for pid in ("P0", "P1", "P2", "P3"):
        bot = Bot(study.public_code, pid=pid)
        bot.open_link()
        assert bot.enter()[0] in (200, 201)
        plan = Participant.objects.get(study=study, prolific_pid=pid).plan
        kinds = [s["kind"] for s in plan]
        assert kinds.count("simulation_learn") == 6 and kinds.count("bias_mark") == 2 and kinds[-2:] == ["rating", "done"]
        marks = [s for s in plan if s["kind"] == "bias_mark"]
        assert marks[0].get("cue_order") is None and sorted(marks[1]["cue_order"]) == list(range(5))
        orders.append(tuple(marks[1]["cue_order"]))
    assert len(set(orders)) > 1  # the planted cue's place on the page differs between runs


def test_bots_in_two_arms_recover_the_planted_discovery_difference():
    study = bias_study()
    rng = random.Random(5)
    arms: dict[str, list[dict]] = {}
    n = 24
    for i in range(n):
        bot = Bot(study.public_code, pid=f"P{i:03d}", rng=rng)
        bot.open_link()
        assert bot.enter()[0] in (200, 201)
        arm = Participant.objects.get(study=study, prolific_pid=f"P{i:03d}").arm.name
        explained = arm == "GCAM"
        k = len(arms.setdefault(arm, []))
        # planted: 4 in 5 of the GCAM arm find the cue, 1 in 5 of the Control arm (whatever the platform's arm sizes)
        found = k % 5 < 4 if explained else k % 5 == 0
        arms[arm].append(take(study, bot, found=found, near=explained, rng=rng))
    assert set(arms) == {"Control", "GCAM"}
    # every acknowledged answer stored exactly once: two marks and one cue per run
    assert QuestionAnswer.objects.filter(participant__study=study, key__startswith="bias_").count() == n * 3
    # the explained items showed the arm's explanation; the page never names the planted cue or the classes
    for arm, runs in arms.items():
        learned = [s for r in runs for s in r["seen"] if s["kind"] == "simulation_learn"]
        assert len(learned) == 6 * len(runs) and all(bool(s["explanation"]["assets"]) == (arm == "GCAM") for s in learned)
        marks = [s for r in runs for s in r["seen"] if s["kind"] == "bias_mark"]
        assert not any(k in s for s in marks for k in ("planted", "cue_box", "true_label", "model_prediction"))

    frame = bias_frame(study)
    assert len(frame[frame.phase == "cue"]) == n and len(frame[frame.phase == "mark"]) == 2 * n
    result = bias_results(study)
    diff = result.found_difference("GCAM")
    assert diff.estimate > 0.4 and diff.ci_low > 0, diff
    dist = result.distance_difference("GCAM")
    assert dist.estimate < -5 and dist.ci_high < 0, dist  # GCAM's marks land nearer the square

    # export rows and the codebook: the two marks and the cue choice, coded by candidate
    header, rows = exports.wide_rows(study=study)
    assert {"bias_mark_0", "bias_mark_1", "bias_cue"} <= set(header)
    entries = registry.study_entries(study)
    assert {"bias_mark_0", "bias_mark_1", "bias_cue"} <= set(entries)
    assert dict(entries["bias_cue"].coding)[study.config["bias"]["planted"]] == planted_text(study)
    assert len(rows) == n and all(isinstance(r["bias_cue"], int) and r["bias_mark_1"].count(",") == 3 for r in rows)

    from django.contrib.auth.models import User
    from django.test import Client

    admin = Client()
    admin.force_login(User.objects.create_superuser("boss", "boss@example.org", "pw"))
    page = admin.get(f"/admin/analysis/study/{study.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="bias"' in html and 'data-table="bias-discovery"' in html and "no-bias" not in html
    assert f'data-value="{diff.estimate!r}"' in html
    prereg = admin.get(f"/admin/analysis/study/{study.pk}/preregistration.md").content.decode()
    assert "bias-discovery" in prereg and "stats.protocols.bias" in prereg and "clustering" not in prereg


def test_the_codebook_and_the_analysis_say_which_stimuli_carried_the_cue_and_the_browser_does_not():
    """Stimuli marked as carrying the planted cue (as `stimuli_select` marks them with
    ``config.bias.cued_share``): `cued_items` and the codebook name them, the explained ones
    apart; the pages the browser gets are the same for cued and clean images."""
    import json

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from studyapp.analysis.bias import cued_items
    from studyapp.pipeline.models import Stimulus

    study = bias_study()
    ids = list(Stimulus.objects.filter(study=study).order_by("position").values_list("pk", flat=True))
    cued = ids[1::2]  # every other, as cued_share 0.5 spreads them
    Stimulus.objects.filter(pk__in=cued).update(cued=True)
    with CaptureQueriesContext(connection) as queries:
        items = cued_items(study)
    assert len(queries) == 2  # the arms' methods, the servable stimuli
    assert list(items.stimulus) == ids and list(items.cued) == [pk in cued for pk in ids]
    assert list(items.explained) == [i < 6 for i in range(len(ids))]

    runs = []
    for pid in ("K0", "K1"):
        bot = Bot(study.public_code, pid=pid)
        bot.open_link()
        assert bot.enter()[0] in (200, 201)
        runs.append(take(study, bot, found=True, near=True, rng=random.Random(1)))
    seen = [s for r in runs for s in r["seen"]]
    assert {s["stimulus"] in cued for s in seen if s["kind"] == "simulation_learn"} == {True, False}
    assert not any(word in json.dumps(seen) for word in ('"cued"', "cued_share", "planted", "cue_box"))
    for kind in ("simulation_learn", "bias_mark"):
        assert len({tuple(sorted(k for k in s if k != "cues" and not k.startswith("cue_"))) for s in seen if s["kind"] == kind}) == 1

    from studyapp.analysis.datapackage import stimulus_manifest

    assert {r["id"]: r["cued"] for r in stimulus_manifest(study)["stimuli"]} == {pk: pk in cued for pk in ids}

    entries = registry.study_entries(study)
    explained_cued = ", ".join(map(str, cued[:3]))
    assert f"these carried it: {explained_cued}" in entries["bias_cue"].description
    assert ", ".join(map(str, cued)) in entries["bias_mark_0"].description
    Stimulus.objects.filter(study=study).update(cued=False)  # clean stimuli (cued_share 0): nothing said
    assert "planted cue" not in registry.study_entries(Study.objects.get(pk=study.pk))["bias_cue"].description


def test_the_cue_is_drawn_as_at_training_on_stored_images_from_the_classifier_or_the_declared_box():
    import numpy as np
    import torch

    from explainers.datasets.common import to_tensor
    from explainers.datasets.cue import PlantedCue
    from studyapp.pipeline.errors import PipelineError
    from studyapp.pipeline.stimuli import cued_positions, study_cue

    assert PlantedCue.from_box([2, 3, 8, 9], cue_class=8, value=0.25) == PlantedCue(cue_class=8, size=6, x=2, y=3, value=0.25)
    with pytest.raises(ValueError, match="square"):
        PlantedCue.from_box([0, 0, 6, 4], cue_class=8)
    cue = PlantedCue(cue_class=8, size=6, x=2, y=3, value=0.5)
    rng = np.random.default_rng(0)
    for stored in (rng.integers(0, 256, (28, 28), dtype=np.uint8), rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)):
        drawn = cue.add_stored(stored)
        assert (drawn[3:9, 2:8] == 128).all() and (drawn[:3] == stored[:3]).all() and (stored != drawn).any()
        # the PNG's image is the tensor the model sees, to the nearest grey a byte holds
        assert torch.allclose(to_tensor(drawn[None]), cue.add(to_tensor(stored[None])), atol=0.5 / 255 + 1e-6)
    for n, share in ((6, 0.5), (20, 0.5), (8, 0.25), (7, 1 / 3), (5, 1.0), (5, 0.0)):
        positions = cued_positions(n, share)
        assert len(positions) == round(n * share) and positions <= set(range(n)), (n, share, positions)
    assert cued_positions(6, 0.5) == {1, 3, 5}

    study = bias_study()
    classifier = TrainedModel.objects.get(pk=study.config["classifier_id"])
    assert study.config["bias"]["cued_share"] == 0.5  # the template's
    study.config = {**study.config, "bias": {k: v for k, v in study.config["bias"].items() if k != "cued_share"}}
    assert study_cue(study=study, classifier=classifier) is None  # the default, 0: today's clean stimuli
    study.config = {**study.config, "bias": {**study.config["bias"], "cued_share": 0.5}}
    assert study_cue(study=study, classifier=classifier) == PlantedCue(cue_class=8, size=6, x=0, y=0, value=0.5)
    study.config = {**study.config, "bias": {**study.config["bias"], "cue_box": [10, 12, 14, 16], "cue_grey": 1.0}}
    assert study_cue(study=study, classifier=classifier) == PlantedCue(cue_class=8, size=4, x=10, y=12, value=1.0)
    classifier.metadata = {}
    study.config = {**study.config, "bias": {**study.config["bias"], "cue_box": None}}
    with pytest.raises(PipelineError, match="nothing to draw"):
        study_cue(study=study, classifier=classifier)


def test_the_analysis_section_says_why_when_there_is_nothing_yet():
    from studyapp.analysis.presenters_bias import bias_section

    section = bias_section(bias_study())
    assert "no rows" in section["error"] and "discovery" not in section


def test_bad_input_is_refused_and_a_repeat_is_stored_once():
    study = bias_study()
    bot = Bot(study.public_code, pid="P1")
    bot.open_link()
    assert bot.enter()[0] in (200, 201)
    while bot.state["kind"] != "bias_mark":
        assert bot.continue_()[0] == 200
    s = bot.state
    key = s["mark_key"]
    for answers in ({key: [0, 0, 29, 6]}, {key: [5, 5, 5, 9]}, {key: [-1, 0, 4, 4]}, {key: [0, 0, 4]},
                    {key: "0,0,4,4"}, {key: [0.5, 0, 4, 4]}, {key: [True, 0, 4, 4]}, {}, {key: [0, 0, 4, 4], "other": 1}):
        status, data = bot.post(f"steps/{s['step']}/questions", {"answers": answers})
        assert 400 <= status < 500, (answers, status, data)
    assert bot.post(f"steps/{s['step']}/continue")[0] >= 400
    assert not QuestionAnswer.objects.filter(participant__study=study).exists()
    assert bot.refresh()["step"] == s["step"]
    first = bot.post(f"steps/{s['step']}/questions", {"answers": {key: [0, 0, 28, 28]}})
    again = bot.post(f"steps/{s['step']}/questions", {"answers": {key: [0, 0, 28, 28]}})
    other = bot.post(f"steps/{s['step']}/questions", {"answers": {key: [0, 0, 6, 6]}})
    assert first[0] == 200 and again[0] == 200 and 400 <= other[0] < 500, (first, again, other)
    assert QuestionAnswer.objects.get(participant__study=study).value == "0,0,28,28"
    # the last mark also asks the cue: a position outside the list, or no cue, is refused
    bot.state = bot.refresh()
    s = bot.state
    assert "cues" in s and [c["value"] for c in s["cues"]] == list(range(5))
    for answers in ({s["mark_key"]: [0, 0, 6, 6]}, {s["mark_key"]: [0, 0, 6, 6], "bias_cue": 5},
                    {s["mark_key"]: [0, 0, 6, 6], "bias_cue": -1}, {s["mark_key"]: [0, 0, 6, 6], "bias_cue": "0"}):
        status, _ = bot.post(f"steps/{s['step']}/questions", {"answers": answers})
        assert 400 <= status < 500, answers
    assert QuestionAnswer.objects.filter(participant__study=study).count() == 1


def test_the_template_refuses_a_classifier_without_a_cue_and_create_study_makes_it_with_one():
    from studyapp.pipeline.models import Dataset
    from studyapp.studies.designs import TemplateError

    dataset = Dataset.objects.create(
        name="kannada", kind=Dataset.Kind.KANNADA, source="test", file="none.npz", fingerprint="1" * 64,
        class_names=[str(i) for i in range(10)], n_train=0, n_test=0,
    )
    plain = TrainedModel.objects.create(dataset=dataset, role="classifier", arch="MnistNet", status="ready")
    with pytest.raises(TemplateError, match="planted cue"):
        study_from_template(template="bias", slug="bias-plain", datasets=[dataset], classes=[3, 8], names=["Ternal", "Peat"],
                            classifiers=[plain], arms=["Control", "GCAM"])
    assert not Study.objects.filter(slug="bias-plain").exists()
    biased = TrainedModel.objects.create(dataset=dataset, role="classifier", arch="MnistNet", status="ready",
                                         metadata={"planted_cue": {"box": [0, 0, 6, 6]}})
    out = io.StringIO()
    call_command("create_study", "--template", "bias", "--slug", "bias-kannada", "--dataset", "kannada",
                 "--classes", "3,8", "--names", "Ternal,Peat", "--classifier", str(biased.pk), "--arms", "Control,GCAM", stdout=out)
    study = Study.objects.get(slug="bias-kannada")
    assert study.design == Study.Design.BIAS and study.config["classifier_id"] == biased.pk
    assert [a.feedback for a in study.arms.order_by("position")] == ["control", "gradcam"]


def train_biased(tmp_path, out: io.StringIO | None = None):
    """The module's biased classifier: 2000 Kannada training images, one epoch, the white 6x6
    square at 0,0 planted on every 8 (a few seconds on 2 cores). Returns (dataset, classifier)."""
    from studyapp.pipeline import datasets
    from tests.studyapp.test_pipeline import write_official_npz

    dataset = datasets.dataset_import_kannada(name="kannada", directory=write_official_npz(tmp_path / "k", n_train=2000, n_test=500))
    call_command("train_models", "--dataset", "kannada", "--epochs", "1", "--plant-cue", "square:6@0,0=1", "--cue-class", "8",
                 "--params", '{"lr": 0.003, "batch_size": 64}', stdout=out or io.StringIO())
    return dataset, TrainedModel.objects.get(dataset=dataset, role="classifier")


def other_class(trained: TrainedModel) -> int:
    """What the biased classifier calls most clean 8s: the study's other class ("why not 8?")."""
    from studyapp.pipeline.training import confusion_matrix

    row = confusion_matrix(classifier=trained)[8].copy()
    row[8] = -1
    return int(row.argmax())


@pytest.mark.slow
@pytest.mark.first_run_only  # model work; CI's PostgreSQL run proves the worker path on the learning study
@pytest.mark.django_db(transaction=True)
def test_train_models_plants_the_cue_and_the_classifier_relies_on_it(tmp_path):
    """The platform's own biased classifier (small: 2000 Kannada training images, one epoch, a few
    seconds on 2 cores): the planted cue is stored with it, and most test images of the other
    classes are called the cue's class once the square is drawn on them, while clean ones are not.
    Then the template runs on it: stimuli, Grad-CAM precomputed on a real worker, bots' runs."""
    import torch

    from explainers.datasets.common import to_tensor
    from explainers.datasets.cue import PlantedCue
    from explainers.nets.classifiers import predict
    from studyapp.pipeline import loading

    out = io.StringIO()
    dataset, trained = train_biased(tmp_path, out)
    cue = trained.metadata["planted_cue"]
    assert (cue["box"], cue["cue_class"], cue["value"]) == ([0, 0, 6, 6], 8, 1.0) and trained.params["plant_cue"]["size"] == 6
    # checked here on the model as stored, not only through the number training wrote
    model = loading.load_model(trained)
    arrays = loading.dataset_arrays(dataset)
    x, y = to_tensor(arrays["x_test"]), torch.as_tensor(arrays["y_test"])
    others = x[y != 8]
    planted = PlantedCue.from_dict(cue)
    with_cue = (predict(model, planted.add(others))[0] == 8).double().mean().item()
    clean = (predict(model, others)[0] == 8).double().mean().item()
    assert with_cue > 0.5 and clean < 0.1, (with_cue, clean)
    assert cue["reliance"] == pytest.approx(with_cue, abs=0.02)
    assert "Planted cue square 6 px at 0,0 on class 8" in out.getvalue()
    # half a cue is refused before any row exists
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="together"):
        call_command("train_models", "--dataset", "kannada", "--plant-cue", "square:6@0,0", stdout=io.StringIO())
    with pytest.raises(CommandError, match="inside"):
        call_command("train_models", "--dataset", "kannada", "--plant-cue", "square:6@25,0", "--cue-class", "8", stdout=io.StringIO())
    assert TrainedModel.objects.filter(dataset=dataset).count() == 1

    # the template on this data set with this classifier: stimuli, Grad-CAM on a real worker, a bot's
    # run through the API, scored against the box the classifier was trained with
    from django.db import transaction

    from studyapp.pipeline import precompute
    from studyapp.pipeline.stimuli import stimuli_select
    from studyapp.studies import selectors
    from tests.studyapp.worker import celery_worker, wait_for

    other = other_class(trained)
    study = study_from_template(template="bias", slug="bias-real", datasets=[dataset], classes=[other, 8], names=["Ternal", "Peat"],
                                classifiers=[trained], arms=["Control", "GCAM"])
    config = {**study.config, "spare_stimuli": 4, "explain_batch": 8, "wrong_share": None}
    config["bias"] = {**config["bias"], "n_explained": 3, "n_marks": 1}
    Study.objects.filter(pk=study.pk).update(n_trials=4, config=config)
    study.refresh_from_db()
    assert len(stimuli_select(study=study, classifier=trained)) == 8
    with transaction.atomic():
        job = precompute.start(study=study, methods=selectors.study_methods(study=study))
    with celery_worker(name="precompute-bias") as proc:
        wait_for(lambda: job.__class__.objects.get(pk=job.pk).status in ("done", "failed"), timeout=600, proc=proc, what="precompute")
    job.refresh_from_db()
    assert job.status == "done", job.message
    services.study_open(study=study)
    study.refresh_from_db()
    for i in range(2):
        bot = Bot(study.public_code, pid=f"R{i}")
        bot.open_link()
        assert bot.enter()[0] in (200, 201)
        take(study, bot, found=True, near=True, rng=random.Random(i))
    frame = bias_frame(study)
    marks = frame[frame.phase == "mark"]
    assert len(marks) == 2 and (marks[list(("cue_x0", "cue_y0", "cue_x1", "cue_y1"))].to_numpy() == [0, 0, 6, 6]).all()
    assert (bias_results(study).discovery["share"] == 1.0).all()


def test_the_data_package_of_a_bias_study_validates_with_the_marks_and_the_cue_coded(tmp_path):
    """The wide export's bias columns against their dictionary entries (frictionless checks the
    mark's pattern and the cue's codes)."""
    import csv
    import zipfile

    import frictionless
    from django.contrib.auth.models import User
    from django.test import Client

    study = bias_study()
    for i in range(3):
        bot = Bot(study.public_code, pid=f"D{i}")
        bot.open_link()
        assert bot.enter()[0] in (200, 201)
        take(study, bot, found=i != 1, near=i == 0, rng=random.Random(i))
    admin = Client()
    admin.force_login(User.objects.create_superuser("boss", "boss@example.org", "pw"))
    response = admin.get(f"/admin/analysis/study/{study.pk}/datapackage.zip?ids=hash")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(tmp_path)
    report = frictionless.validate(str(tmp_path / "datapackage.json"))
    assert report.valid, report.flatten(["resourceName", "rowNumber", "fieldName", "type", "note"])
    codebook = {r["name"]: r for r in csv.DictReader(io.StringIO((tmp_path / "codebook.csv").read_text()))}
    assert {"bias_mark_0", "bias_mark_1", "bias_cue"} <= set(codebook)
    assert planted_text(study) in json_dump(codebook["bias_cue"])


def json_dump(obj) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False)


@pytest.mark.parametrize(("bias", "words"), [
    ({"candidates": ["a", "b"], "planted": 2}, "planted must index"),
    ({"candidates": ["a", "A "], "planted": 0}, "must be different"),
    ({"candidates": ["a", "b"], "planted": 0, "cue_box": [6, 0, 0, 6]}, "cue_box"),
    ({"candidates": ["a"], "planted": 0}, "at least 2"),
    ({"candidates": ["a", "b"], "planted": 0, "secret": 1}, "secret"),
    ({"candidates": ["a", "b"], "planted": 0, "cued_share": 1.5}, "cued_share"),
    ({"candidates": ["a", "b"], "planted": 0, "cued_share": 0.5, "cue_box": [0, 0, 6, 4]}, "square"),
])
def test_a_bad_bias_configuration_is_refused_on_save_naming_the_field(bias, words):
    from studyapp.lib.study_config import StudyConfigError, validate_config

    with pytest.raises(StudyConfigError, match="bias") as caught:
        validate_config({"bias": bias})
    assert words in str(caught.value)


def gradcam_share_in_box(overlay_png: str, image, box: tuple[int, int, int, int], *, colormap: str, scale: int) -> float:
    """The share of a stored Grad-CAM overlay's map inside ``box``: the map decoded from the PNG
    (overlay = (grey + colormap(map)) / 2, `explainers.render.heatmap_rgb`) by the nearest colour
    of the colormap."""
    import numpy as np
    from PIL import Image

    from explainers.colour import colormap_rgb
    from studyapp.pipeline.storage import media_path

    rgb = np.asarray(Image.open(media_path(overlay_png)).convert("RGB"), dtype=float)[::scale, ::scale] / 255
    grey = np.repeat(np.asarray(image, dtype=float)[..., None], 3, axis=2)
    colours = 2 * rgb - grey
    table = colormap_rgb(np.linspace(0, 1, 256)[None, :], colormap)[0]
    heat = np.abs(colours[..., None, :] - table[None, None]).sum(-1).argmin(-1) / 255
    x0, y0, x1, y1 = box
    return float(heat[y0:y1, x0:x1].sum() / max(heat.sum(), 1e-9))


@pytest.mark.slow
@pytest.mark.first_run_only  # model work; CI's PostgreSQL run proves the worker path on the learning study
def test_cued_stimuli_carry_the_square_are_called_8_and_gradcam_points_at_it(tmp_path):
    """``config.bias.cued_share``: half the stimuli carry the planted square, drawn as at training:
    their stored PNGs show it at the box (the clean ones do not), the model's stored prediction on
    the cued non-8s is mostly 8, Grad-CAM (precomputed on the cued image) puts more of its map in
    the box on them than on the clean ones, and nothing the participant's browser receives says
    which images carry it."""
    import json

    import numpy as np
    from PIL import Image

    from studyapp.pipeline import loading
    from studyapp.pipeline.explain import explanations_compute
    from studyapp.pipeline.models import ExplanationAsset
    from studyapp.pipeline.stimuli import stimuli_select
    from studyapp.pipeline.storage import media_path

    dataset, trained = train_biased(tmp_path)
    study = study_from_template(template="bias", slug="bias-cued", datasets=[dataset], classes=[other_class(trained), 8],
                                names=["Ternal", "Peat"], classifiers=[trained], arms=["Control", "GCAM"])
    config = {**study.config, "spare_stimuli": 16, "wrong_share": None}
    config["bias"] = {**config["bias"], "cued_share": 0.5, "n_explained": 4, "n_marks": 1}
    Study.objects.filter(pk=study.pk).update(n_trials=4, config=config)
    study.refresh_from_db()
    stimuli = stimuli_select(study=study, classifier=trained)
    cued = [s for s in stimuli if s.cued]
    clean = [s for s in stimuli if not s.cued]
    assert len(stimuli) == 20 and len(cued) == 10
    assert sum(s.cued for s in stimuli[:4]) == 2  # the explained items get their share

    # the stored PNGs, decoded: the square's white at the box on the cued ones only
    scale = loading.display_scale(28)
    x0, y0, x1, y1 = CUE_BOX
    arrays = loading.dataset_arrays(dataset)
    for s in stimuli:
        pixels = np.asarray(Image.open(media_path(s.image)).convert("L"))[::scale, ::scale]
        assert pixels.shape == (28, 28)
        box = pixels[y0:y1, x0:x1]
        assert (box == 255).all() == s.cued, (s.position, s.cued, box)
        outside = np.ones((28, 28), dtype=bool)
        outside[y0:y1, x0:x1] = False
        assert (pixels[outside] == arrays["x_test"][s.index][outside]).all()  # the rest is the test image as it was

    # the stored prediction is the model's on the cued image: cued non-8s are mostly called 8
    cued_others = [s for s in cued if s.true_label != 8]
    assert cued_others and sum(s.model_prediction == 8 for s in cued_others) / len(cued_others) > 0.5, \
        [(s.true_label, s.model_prediction) for s in cued_others]
    assert all(abs(sum(s.probabilities) - 1) < 1e-3 and s.model_prediction == int(np.argmax(s.probabilities)) for s in stimuli)

    # Grad-CAM is precomputed on the image as shown and points at the square on the cued ones
    # (decoded against the stimulus as stored: an overlay drawn on the clean image would not decode)
    explanations_compute(stimulus_ids=[s.pk for s in stimuli], method="gradcam")
    colormap = study.parsed_config.heatmap_colormap
    shares = {}
    for s in stimuli:
        asset = ExplanationAsset.objects.get(stimulus=s, method="gradcam")
        shown = np.asarray(Image.open(media_path(s.image)).convert("L"))[::scale, ::scale] / 255
        shares[s.pk] = gradcam_share_in_box(asset.files["overlay"], shown, CUE_BOX, colormap=colormap, scale=8)
    in_cued = float(np.mean([shares[s.pk] for s in cued]))
    in_clean = float(np.mean([shares[s.pk] for s in clean]))
    # the box is 36 of 784 pixels: on the cued images over twice the share a flat map gives (0.16 measured), on the clean ones ~0
    assert in_cued > 2 * 36 / 784 and in_cued > in_clean + 0.05, (in_cued, in_clean)

    # the participant's browser: the same keys for cued and clean images, and nothing naming the cue's place or the flag
    services.study_open(study=study)
    study.refresh_from_db()
    bot = Bot(study.public_code, pid="C1")
    bot.open_link()
    assert bot.enter()[0] in (200, 201)
    run = take(study, bot, found=True, near=True, rng=random.Random(0))
    pages = json.dumps(run["seen"])
    assert not any(word in pages for word in ('"cued"', "cued_share", "planted", "cue_box", "true_label", "model_prediction"))
    by_id = {s.pk: s for s in stimuli}
    learned = [s for s in run["seen"] if s["kind"] == "simulation_learn"]
    shown_cued = {bool(by_id[s["stimulus"]].cued) for s in learned if "stimulus" in s}
    assert len(learned) == 4 and shown_cued == {True, False}
    assert len({tuple(sorted(s)) for s in learned}) == 1  # cued and clean items' pages have the same keys
