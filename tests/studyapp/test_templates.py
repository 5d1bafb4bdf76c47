"""New studies from templates, copies, and fixtures that never overwrite a study.

The service (``studyapp.studies.designs.create``) is exercised through the command and the
admin pages a researcher uses; the rows are real, the models are rows without weights (the
pipeline's own tests train and load real ones; tests/studyapp/test_own_study.py runs it all).
"""

from __future__ import annotations

import json
from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from studyapp.pipeline.datasets import dataset_store
from studyapp.pipeline.models import Dataset, TrainedModel
from studyapp.studies.designs import template_design
from studyapp.studies.models import Arm, Participant, Study
from tests.owndata import CLASS_NAMES, digit_arrays
from tests.studyapp import factories
from tests.studyapp.admin_forms import superuser_client
from tests.studyapp.bots import Bot

pytestmark = pytest.mark.django_db


def own_dataset(name: str = "shapes", kind: str = "images") -> Dataset:
    """A researcher's own two-class colour set (``kind`` "images": imported from folders)."""
    x, y = digit_arrays(size=16, rgb=True)
    split = SimpleNamespace(images=x[:40], labels=y[:40]), SimpleNamespace(images=x[40:80], labels=y[40:80])
    return dataset_store(
        name=name, kind=kind,
        source="test", is_standin=False, class_names=list(CLASS_NAMES), train=split[0], test=split[1],
    )


def model(dataset: Dataset, role: str = "classifier", status: str = "ready") -> TrainedModel:
    return TrainedModel.objects.create(dataset=dataset, role=role, arch="SmallCNN", status=status)


def create(*args: str) -> tuple[Study, str]:
    out = StringIO()
    call_command("create_study", *args, stdout=out)
    return Study.objects.order_by("-pk").first(), out.getvalue()


def snapshot(study: Study) -> str:
    study.refresh_from_db()
    fields = {f.name: getattr(study, f.name) for f in Study._meta.fields if f.name != "updated_at"}
    arms = list(study.arms.order_by("pk").values())
    return json.dumps({"study": fields, "arms": arms, "versions": list(study.versions.values("number", "config_hash"))},
                      sort_keys=True, default=str)


def test_the_published_template_is_the_published_study():
    study, out = create("--template", "learning")
    fixture = template_design("learning")
    assert study.slug == "kannada-learning" and study.status == Study.Status.DRAFT
    assert study.consent_text == fixture["study"]["consent_text"] and study.cover_story == fixture["study"]["cover_story"]
    assert [(a.name, a.feedback, a.instruction) for a in study.arms.all()] == [
        (a["name"], a["feedback"], a["instruction"]) for a in fixture["arms"]
    ]
    assert study.config_hash == study.compute_config_hash()
    assert "Template 'learning'" in study.parsed_config.notes
    assert "Made the draft study 'kannada-learning'" in out


def test_loading_the_published_templates_on_a_running_study_changes_nothing():
    study = factories.learning_study()
    bot = Bot(study.public_code)
    bot.open_link()
    bot.walk()
    assert Participant.objects.filter(study=study).exists()
    before = snapshot(study)
    n_studies, n_arms = Study.objects.count(), Arm.objects.count()
    with pytest.raises(Exception, match="exists already"):
        call_command("loaddata", str(factories.FIXTURES / "study_a_kannada.json"), verbosity=0)
    with pytest.raises(CommandError, match="exists already"):
        create("--template", "learning")
    with pytest.raises(CommandError, match="exists already"):
        create("--template", "clustering", "--slug", study.slug)
    assert snapshot(study) == before
    assert (Study.objects.count(), Arm.objects.count()) == (n_studies, n_arms)
    # A fixture whose study is new but whose arm rows are taken is refused whole.
    clustering = json.loads((factories.FIXTURES / "study_b_clustering.json").read_text())
    clustering[0]["fields"]["slug"] = "another"
    clustering[0]["pk"] = 99
    clustering[1]["pk"] = 1  # the running study's first arm
    clustering[1]["fields"]["study"] = 99
    path = factories.FIXTURES.parent / "var" / "test-fixture.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(clustering))
    try:
        with pytest.raises(Exception, match="exists already"):
            call_command("loaddata", str(path), verbosity=0)
    finally:
        path.unlink()
    assert snapshot(study) == before and not Study.objects.filter(slug="another").exists()


def test_a_learning_study_on_own_data_takes_class_names_models_and_neutral_texts():
    dataset = own_dataset()
    classifier, vae = model(dataset), model(dataset, role="vae")
    study, out = create(
        "--template", "learning", "--slug", "my-shapes", "--dataset", "shapes", "--classes", "loop,curl",
        "--names", "Ternal,Peat", "--classifier", str(classifier.pk), "--generator", str(vae.pk),
    )
    assert (study.slug, study.design, study.status) == ("my-shapes", "learning", "draft")
    assert study.classes == [1, 0] and study.class_names == ["Ternal", "Peat"]
    config = study.parsed_config
    assert (config.classifier_id, config.generator_id) == (classifier.pk, vae.pk)
    published = template_design("learning")["study"]
    assert study.n_trials == published["n_trials"] and study.rating_scale == published["rating_scale"]
    for text in (study.consent_text, study.cover_story, *study.arms.values_list("instruction", flat=True)):
        assert "symbol" not in text.lower() and "baghali" not in text.lower()
    assert "'shapes'" in config.notes and "neutral" not in out.lower() or "pictures" in config.notes
    assert [a.name for a in study.arms.all()] == ["Control", "GCAM", "CDeepEx"]
    # A new study: a colour-vision-safe heatmap map and its own trial question, said in the notes.
    assert (config.heatmap_colormap, config.trial_question) == ("cividis", "Which kind of picture is this?")
    assert "cividis" in config.notes
    assert "dissertation's made-up names" not in config.notes  # the published notes speak of the published texts


def test_the_published_kind_keeps_the_published_texts():
    dataset = own_dataset("published-kind", kind=Dataset.Kind.LOOKALIKE)
    classifier, vae = model(dataset), model(dataset, role="vae")
    study, _ = create("--template", "learning", "--slug", "again", "--dataset", dataset.name, "--classes", "0,1",
                      "--names", "A,B", "--classifier", str(classifier.pk), "--generator", str(vae.pk))
    assert study.cover_story == template_design("learning")["study"]["cover_story"]
    assert study.parsed_config.heatmap_colormap == "jet" and study.parsed_config.trial_question == ""


def test_arms_may_be_left_out_and_then_no_generator_is_needed():
    dataset = own_dataset()
    classifier = model(dataset)
    study, _ = create("--template", "learning", "--slug", "two-arms", "--dataset", "shapes", "--classes", "curl,loop",
                      "--names", "A,B", "--classifier", str(classifier.pk), "--arms", "Control,GCAM")
    assert [a.name for a in study.arms.all()] == ["Control", "GCAM"]
    assert study.parsed_config.generator_id is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--classes", "curl,square"], "'square' is not a class of the data set 'shapes'; its classes are: curl, loop"),
        (["--classes", "curl,curl"], "The two classes must differ"),
        (["--classes", "curl"], "compares two classes; 1 were given"),
        (["--names", "Ternal"], "Give two different made-up names"),
        (["--generator", None], "morph arm (CDeepEx) needs a generator"),
        (["--classifier", "other"], "belongs to the data set 'other', not to 'shapes'"),
        (["--classifier", "failed"], "is not ready"),
        (["--generator", "classifier"], "is a Classifier, not a generator"),
        (["--slug", "Bad slug!"], "is not a valid slug"),
        (["--arms", "Control,Heatmap"], "['Heatmap'] are not arms of the template"),
        (["--dataset", "nope"], "No data set named 'nope' (data sets: other, shapes)"),
    ],
)
def test_bad_choices_are_refused_with_a_sentence_and_nothing_is_made(args, message):
    dataset, other = own_dataset(), own_dataset("other")
    classifier, vae = model(dataset), model(dataset, role="vae")
    choices = {
        "--slug": "mine", "--dataset": "shapes", "--classes": "curl,loop", "--names": "Ternal,Peat",
        "--classifier": str(classifier.pk), "--generator": str(vae.pk),
    }
    special = {"other": str(model(other).pk), "failed": str(model(dataset, status="failed").pk), "classifier": str(classifier.pk)}
    key, value = args
    choices[key] = special.get(value, value) if value is not None else None
    argv = ["--template", "learning"] + [x for k, v in choices.items() if v is not None for x in (k, v)]
    n = Study.objects.count()
    with pytest.raises(CommandError) as refused:
        create(*argv)
    assert message in str(refused.value)
    assert Study.objects.count() == n and Arm.objects.count() == 0


def test_a_clustering_study_on_two_own_data_sets():
    shapes, cells = own_dataset(), own_dataset("cells")
    study, _ = create("--template", "clustering", "--slug", "my-groups", "--dataset", "shapes", "--dataset2", "cells",
                      "--classifier", str(model(shapes).pk), "--classifier2", str(model(cells).pk))
    config = study.parsed_config
    assert config.datasets == ("shapes", "cells")
    assert set(config.models) == {"shapes", "cells"} and config.cub_classes is None
    assert "birds" not in study.consent_text.lower() and "cells" not in study.consent_text.lower()
    with pytest.raises(CommandError, match="one classifier per data set"):
        create("--template", "clustering", "--slug", "x", "--dataset", "shapes", "--dataset2", "cells",
               "--classifier", str(model(shapes).pk))


def test_copy_makes_a_new_draft_and_leaves_the_study_alone():
    study = factories.learning_study()
    bot = Bot(study.public_code)
    bot.open_link()
    bot.walk()
    before = snapshot(study)
    copy, out = create("--copy", study.slug, "--slug", "kannada-learning-2")
    assert (copy.slug, copy.status, copy.design) == ("kannada-learning-2", "draft", study.design)
    assert copy.consent_text == study.consent_text and copy.config["classifier_id"] == study.config["classifier_id"]
    assert [(a.name, a.feedback, a.cap) for a in copy.arms.all()] == [(a.name, a.feedback, a.cap) for a in study.arms.all()]
    assert not copy.participants.exists() and not copy.stimuli.exists()
    assert snapshot(study) == before
    with pytest.raises(CommandError, match="exists already"):
        create("--copy", study.slug, "--slug", "kannada-learning-2")


def test_admin_new_study_from_template_and_copy():
    client = superuser_client()
    dataset = own_dataset()
    classifier = model(dataset)
    page = client.get("/admin/studies/study/from-template/")
    assert page.status_code == 200 and b"New study from template" in page.content
    assert b"from-template" in client.get("/admin/studies/study/").content
    bad = client.post("/admin/studies/study/from-template/", {
        "template": "learning", "slug": "mine", "dataset": dataset.pk, "classes": "curl,loop", "names": "A,B",
        "classifier": classifier.pk,
    })
    assert bad.status_code == 200 and b"No study was made: The template&#x27;s morph arm" in bad.content
    assert not Study.objects.filter(slug="mine").exists()
    made = client.post("/admin/studies/study/from-template/", {
        "template": "learning", "slug": "mine", "dataset": dataset.pk, "classes": "curl,loop", "names": "A,B",
        "classifier": classifier.pk, "arms": "Control,GCAM",
    })
    study = Study.objects.get(slug="mine")
    assert made.status_code == 302 and made["Location"].endswith(f"/admin/studies/study/{study.pk}/change/")
    copied = client.post("/admin/studies/study/", {"action": "copy_studies", "_selected_action": [study.pk]}, follow=True)
    assert copied.status_code == 200
    copy = Study.objects.get(slug="mine-copy")
    assert copy.status == "draft" and copy.arms.count() == 2
