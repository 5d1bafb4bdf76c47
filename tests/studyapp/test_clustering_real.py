"""Study B on real-format data: a CUB-200-2011 tree and a CEL class-per-folder tree (tiny, built
here in the official layouts), a torchvision backbone classifier, the XNN, the pre-drawn sets and
all three kinds of heatmaps, through the same services as the stand-ins. Broken trees store nothing."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image

from studyapp.pipeline import clustering, explain
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import Dataset, ExplanationAsset, Stimulus, TrainedModel
from studyapp.pipeline.storage import media_path
from studyapp.studies import selectors
from studyapp.studies import services as study_services
from studyapp.studies.models import Grouping, Study
from tests.explainers.datasets.test_cub import build_cub
from tests.studyapp.bots import Bot
from tests.studyapp.factories import FIXTURES

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 210, 40), (200, 60, 200), (60, 210, 210)]
SIZE = 32


def painter(position: int, j: int) -> Image.Image:
    """A class-coloured square on noise, so that the classes can be learnt."""
    rng = np.random.default_rng(100 * position + j)
    noise = rng.integers(0, 90, size=(30, 40, 3), dtype=np.uint8)
    img = Image.fromarray(noise, "RGB")
    img.paste(COLOURS[position % len(COLOURS)], (8 + j % 5, 4, 28 + j % 5, 22))
    return img


def build_cel(root, *, per_class: int = 20):
    for c, name in enumerate(["actinedge", "hemispherebleb", "lamellipodia", "smallbleb"]):
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            painter(c + 2, j).save(root / name / f"cell_{j:03d}.png")
    return root


@pytest.fixture
def study():
    call_command("loaddata", str(FIXTURES / "study_b_clustering.json"), verbosity=0)
    s = Study.objects.get(slug="xnn-clustering")
    s.config = {**s.config, "images_per_class": 8, "n_sets": 3, "set_size": 10}
    s.save()
    return s


@pytest.mark.slow
@pytest.mark.first_run_only
@pytest.mark.django_db
def test_study_b_on_real_cub_and_cel_trees(tmp_path, study):
    cub_dir = build_cub(tmp_path / "cub", per_class=20, painter=painter)
    cel_dir = build_cel(tmp_path / "cel")
    datasets = clustering.clustering_datasets(study=study, base=None, cub_dir=str(cub_dir.parent), cel_dir=str(cel_dir), size=SIZE)

    cub, cel = datasets["CUB"], datasets["CEL"]
    assert (cub.kind, cub.is_standin, cel.kind, cel.is_standin) == ("cub", False, "cel", False)
    assert cub.class_names == ["California Gull", "Herring Gull", "Slaty backed Gull", "Western Gull"]
    assert (cub.n_train, cub.n_test) == (40, 40)  # the official split: ids alternate train/test
    assert cel.class_names == ["actinedge", "hemispherebleb", "lamellipodia", "smallbleb"] and cel.n_test == 40
    with np.load(media_path(cub.file)) as arrays:
        assert arrays["x_train"].shape == (40, SIZE, SIZE, 3) and arrays["x_train"].dtype == np.uint8
        assert sorted(np.unique(arrays["y_test"]).tolist()) == [0, 1, 2, 3]

    clustering.clustering_build(
        study=study, datasets=datasets, classifier_options={"backbone": "vgg11_bn", "backbone_epochs": 4},
        overrides={label: {"batch_size": 16} for label in datasets}, xnn_epochs=30,
    )
    study.refresh_from_db()

    classifiers = TrainedModel.objects.filter(role="classifier")
    assert sorted(classifiers.values_list("arch", flat=True)) == ["BackboneClassifier"] * 2
    assert all(c.metadata["features_from"] == "random initialisation" for c in classifiers)  # nothing downloaded
    for label in ("CUB", "CEL"):
        stimuli = Stimulus.objects.filter(study=study, group=label)
        assert stimuli.count() == 30 and sorted(set(stimuli.values_list("set_index", flat=True))) == [0, 1, 2]
        assert len(set(stimuli.values_list("split", "index"))) == 30
        counts = np.bincount(list(stimuli.values_list("true_label", flat=True)), minlength=4)
        assert counts.sum() == 30 and counts.max() <= 8 and counts.min() >= 30 - 3 * 8  # from 8 per class
        with Image.open(media_path(stimuli.first().image)) as img:
            assert img.mode == "RGB" and img.size == (SIZE * 7, SIZE * 7)  # colour, about 224 px

    ids = list(Stimulus.objects.filter(study=study).values_list("pk", flat=True))
    for method in ("excitation_bp", "deeplift", "xnn"):
        explain.explanations_compute(stimulus_ids=ids, method=method)
        assert ExplanationAsset.objects.filter(method=method).count() == 60
    asset = ExplanationAsset.objects.filter(method="xnn").first()
    assert sorted(asset.files) == [f"x{j}" for j in range(7)] and len(asset.metrics["contributions"]) == 7
    with Image.open(io.BytesIO(media_path(asset.files["x0"]).read_bytes())) as img:
        assert img.mode == "RGB" and img.size == (SIZE * 7, SIZE * 7)
    # The overlay shows the colour image: its pixels are not all grey.
    heat = ExplanationAsset.objects.filter(method="excitation_bp").first()
    assert heat.files["heatmap"] and media_path(heat.files["heatmap"]).exists()

    invalid = list(ExplanationAsset.objects.filter(valid=False).values_list("method", "reasons"))
    assert selectors.study_readiness(study=study) == [], (selectors.study_readiness(study=study), invalid[:5])
    study_services.study_open(study=study)
    bot = Bot(study.public_code, rng=random.Random(1))
    bot.open_link()
    assert bot.walk_clustering()["kind"] == "done"
    assert Grouping.objects.count() == 6


@pytest.mark.django_db
def test_broken_trees_store_nothing(tmp_path, study):
    cub_dir = build_cub(tmp_path / "cub", per_class=4, painter=painter)
    victim = next((cub_dir / "images" / "066.Western_Gull").iterdir())
    victim.write_bytes(b"not a jpeg")
    with pytest.raises(PipelineError, match="CUB import failed, nothing was stored: .*not a readable image"):
        clustering.clustering_datasets(study=study, base=None, cub_dir=str(cub_dir), size=SIZE)
    cel_dir = build_cel(tmp_path / "cel", per_class=3)
    (cel_dir / "smallbleb" / "cell_001.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(PipelineError, match="CEL import failed"):
        clustering.dataset_import_cel(name="cel", directory=cel_dir, size=SIZE)
    with pytest.raises(PipelineError, match="CUB import failed"):
        clustering.dataset_import_cub(name="cub", directory=tmp_path / "nowhere", size=SIZE)
    assert Dataset.objects.count() == 0
    assert not (media_path("datasets").exists() and any(media_path("datasets").iterdir()))
    # Without a directory and without digit data there is nothing to build from: a clear error.
    with pytest.raises(PipelineError, match="no directory configured"):
        clustering.clustering_datasets(study=study, base=None)
