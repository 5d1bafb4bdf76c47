"""Study B on a researcher's own two image sets, through the commands a researcher types:
classifiers trained in the platform, the clustering template, precompute on a real worker
(the XNNs, the image sets, every heatmap), a bot that takes the study, and the export."""

from __future__ import annotations

import csv
import io
import random
from types import SimpleNamespace

import pytest
from django.core.management import call_command

from studyapp.pipeline.datasets import dataset_store
from studyapp.pipeline.models import ExplanationAsset, Stimulus, TrainedModel
from studyapp.studies import selectors, services
from studyapp.studies.models import Grouping, Study
from tests.owndata import digit_arrays
from tests.studyapp.admin_forms import superuser_client
from tests.studyapp.bots import Bot
from tests.studyapp.worker import celery_worker

SIZE = 32


def own_set(name: str, classes: tuple[int, ...]):
    x, y = digit_arrays(size=SIZE, rgb=True, classes=classes)
    train = [i for i in range(len(y)) if i % 3]
    test = [i for i in range(len(y)) if i % 3 == 0]
    return dataset_store(
        name=name, kind="images", source="test folders", is_standin=False,
        class_names=[f"kind {c}" for c in classes],
        train=SimpleNamespace(images=x[train], labels=y[train]), test=SimpleNamespace(images=x[test], labels=y[test]),
    )


@pytest.mark.slow
@pytest.mark.first_run_only
@pytest.mark.django_db(transaction=True)
def test_a_clustering_study_on_two_own_sets_from_the_template_to_the_export():
    sets = {"petals": own_set("petals", (0, 1, 6)), "marks": own_set("marks", (4, 7))}
    ids = {}
    for name in sets:
        call_command(
            "train_models", dataset=name, role="classifier", epochs=3,
            params='{"backbone": "vgg11_bn", "batch_size": 16, "lr": 1e-3}', stdout=io.StringIO(),
        )
        ids[name] = TrainedModel.objects.filter(dataset__name=name, role="classifier", status="ready").get().pk
    call_command(
        "create_study", template="clustering", slug="own-groups", dataset="petals", dataset2="marks",
        classifier=ids["petals"], classifier2=ids["marks"], stdout=io.StringIO(),
    )
    study = Study.objects.get(slug="own-groups")
    # The researcher's edit in the admin: small sets, 3 x-features, a low APEM ceiling (fast).
    study.config = {**study.config, "images_per_class": 9, "n_sets": 3, "set_size": 6, "n_xfeatures": 3, "apem_ceiling": 60}
    study.save()
    with celery_worker(name="own-clustering"):
        call_command("precompute", study="own-groups", xnn_epochs=20, wait=True, timeout=900, stdout=io.StringIO())
    study.refresh_from_db()
    config = study.parsed_config
    assert set(config.models) == {"petals", "marks"} and all(m["xnn_id"] for m in config.models.values())
    for name in sets:
        drawn = Stimulus.objects.filter(study=study, group=name)
        assert drawn.count() == 18 and sorted(set(drawn.values_list("set_index", flat=True))) == [0, 1, 2]
    methods = set(ExplanationAsset.objects.filter(stimulus__study=study).values_list("method", flat=True))
    assert methods == {"excitation_bp", "xnn"}
    assert selectors.study_readiness(study=study) == []
    services.study_open(study=study)

    bot = Bot(study.public_code, rng=random.Random(3))
    bot.open_link()
    assert bot.walk_clustering()["kind"] == "done"
    groupings = Grouping.objects.filter(participant__study=study)
    assert groupings.count() == 6 and {g.dataset for g in groupings} == {"petals", "marks"}
    # Nothing the browser received names the researcher's data sets or their classes.
    received = "\n".join(text for _, _, text in bot.responses).lower()
    for secret in ("petals", "marks", "kind 0", "kind 4"):
        assert secret not in received, secret

    export = superuser_client().get(f"/admin/studies/study/{study.pk}/export/groupings.csv")
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    assert len(rows) == 6 * 6 and {r["dataset"] for r in rows} == {"petals", "marks"}  # one row per image
