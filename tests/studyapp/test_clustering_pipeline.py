"""Study B on the shared pipeline: stand-in data sets, 4-class classifiers, XNNs, pre-drawn sets,
ExcitationBP and XNN heatmaps behind the validity gate, then a bot takes the study."""

from __future__ import annotations

import random

import pytest
from django.core.management import call_command

from studyapp.pipeline import clustering, explain
from studyapp.pipeline.datasets import dataset_import_kannada
from studyapp.pipeline.models import Dataset, ExplanationAsset, Stimulus
from studyapp.pipeline.storage import media_path
from studyapp.studies import selectors
from studyapp.studies import services as study_services
from studyapp.studies.models import Grouping, Study
from tests.studyapp.bots import Bot
from tests.studyapp.factories import FIXTURES
from tests.studyapp.test_pipeline import write_official_npz


@pytest.mark.slow
@pytest.mark.django_db
def test_study_b_is_built_from_digit_stand_ins_and_can_be_taken(tmp_path):
    call_command("loaddata", str(FIXTURES / "study_b_clustering.json"), verbosity=0)
    study = Study.objects.get(slug="xnn-clustering")
    base = dataset_import_kannada(name="k", directory=write_official_npz(tmp_path / "k", n_train=3000, n_test=1000))
    clustering.clustering_build_standin(study=study, base=base, xnn_epochs=40)
    study.refresh_from_db()

    standins = Dataset.objects.filter(kind=Dataset.Kind.DIGIT_STANDIN)
    assert standins.count() == 2 and all(d.is_standin and "stand-in" in d.class_names[0] for d in standins)
    for label in ("CUB", "CEL"):
        stimuli = Stimulus.objects.filter(study=study, group=label)
        assert stimuli.count() == 50  # 5 sets of 10, drawn up front
        assert sorted(set(stimuli.values_list("set_index", flat=True))) == [0, 1, 2, 3, 4]
        assert len(set(stimuli.values_list("index", flat=True))) == 50

    ids = list(Stimulus.objects.filter(study=study).values_list("pk", flat=True))
    for method in ("excitation_bp", "xnn"):
        for k in range(0, len(ids), 25):
            explain.explanations_compute(stimulus_ids=ids[k : k + 25], method=method)
    xnn_assets = ExplanationAsset.objects.filter(method="xnn")
    assert xnn_assets.count() == 100 and ExplanationAsset.objects.filter(method="excitation_bp").count() == 100
    for asset in xnn_assets[:5]:
        assert sorted(asset.files) == [f"x{j}" for j in range(7)]
        assert len(asset.metrics["contributions"]) == 7
        assert all(media_path(p).exists() for p in asset.files.values())
        assert asset.valid or asset.reasons
    # Re-running is idempotent.
    explain.explanations_compute(stimulus_ids=ids[:10], method="xnn")
    assert ExplanationAsset.objects.filter(method="xnn").count() == 100

    assert selectors.study_readiness(study=study) == [], selectors.study_readiness(study=study)
    study_services.study_open(study=study)
    bot = Bot(study.public_code, rng=random.Random(0))
    bot.open_link()
    assert bot.walk_clustering()["kind"] == "done"
    assert Grouping.objects.count() == 6
    # Nothing in what the participant saw says "stand-in".
    assert not any("stand-in" in body.lower() for _, _, body in bot.responses)
