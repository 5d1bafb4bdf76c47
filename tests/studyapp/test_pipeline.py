"""The precompute pipeline: import (all or nothing), train, select stimuli, explain on a real worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.db import transaction

from explainers.datasets.kannada import load_kannada
from studyapp.pipeline import datasets, precompute, training
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import Dataset, ExplanationAsset, PrecomputeJob, Stimulus
from studyapp.pipeline.stimuli import stimuli_select
from studyapp.pipeline.storage import media_path
from studyapp.studies import selectors
from studyapp.studies.models import Study
from tests.conftest import kannada_dir
from tests.studyapp.factories import FIXTURES
from tests.studyapp.worker import celery_worker, wait_for


def write_official_npz(directory: Path, *, n_train: int, n_test: int, seed: int = 0) -> Path:
    """A small Kannada-MNIST in the official npz layout, from the real data when present."""
    directory.mkdir(parents=True, exist_ok=True)
    source = kannada_dir()
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        if source is not None:
            full = load_kannada(source, split)
            idx = rng.choice(len(full.labels), size=n, replace=False)
            x, y = full.images[idx], full.labels[idx]
        else:
            from explainers.datasets.kannada import make_lookalike_kannada

            part = make_lookalike_kannada(n // 10 + 1, seed=seed + (split == "test"))
            x, y = part.images[:n], part.labels[:n]
        np.savez(directory / f"X_kannada_MNIST_{split}.npz", x)
        np.savez(directory / f"y_kannada_MNIST_{split}.npz", y)
    return directory


@pytest.mark.django_db
def test_import_is_all_or_nothing(tmp_path):
    good = write_official_npz(tmp_path / "good", n_train=200, n_test=50)
    dataset = datasets.dataset_import_kannada(name="small", directory=good)
    assert (dataset.n_train, dataset.n_test) == (200, 50) and not dataset.is_standin
    assert media_path(dataset.file).exists()
    # Importing the same files again is harmless.
    assert datasets.dataset_import_kannada(name="small", directory=good).pk == dataset.pk

    broken = write_official_npz(tmp_path / "broken", n_train=200, n_test=50)
    np.savez(broken / "y_kannada_MNIST_test.npz", np.arange(49) % 10)  # 49 labels for 50 images
    files_before = sorted(p.name for p in media_path("datasets").rglob("*"))
    with pytest.raises(PipelineError, match="y_kannada_MNIST_test"):
        datasets.dataset_import_kannada(name="broken", directory=broken)
    assert not Dataset.objects.filter(name="broken").exists()
    assert sorted(p.name for p in media_path("datasets").rglob("*")) == files_before

    with pytest.raises(PipelineError):
        datasets.dataset_import_kannada(name="nothing", directory=tmp_path / "does-not-exist")
    assert Dataset.objects.count() == 1


@pytest.mark.django_db
def test_import_command_reports_bad_input_clearly(tmp_path, capsys):
    from django.core.management.base import CommandError

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CommandError) as excinfo:
        call_command("import_kannada", dir=str(empty))
    assert str(empty) in str(excinfo.value) or "kannada" in str(excinfo.value).lower()
    assert Dataset.objects.count() == 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_train_select_and_precompute_on_a_real_worker(tmp_path):
    call_command("loaddata", str(FIXTURES / "study_a_kannada.json"), verbosity=0)
    study = Study.objects.get(slug="kannada-learning")
    Study.objects.filter(pk=study.pk).update(n_trials=4, config={**study.config, "spare_stimuli": 2, "explain_batch": 4})
    study.refresh_from_db()
    data = write_official_npz(tmp_path / "k", n_train=3000, n_test=600)
    dataset = datasets.dataset_import_kannada(name="k", directory=data)

    seen = []
    classifier = training.model_create(dataset=dataset, role="classifier", params={"epochs": 2, "seed": 0, "lr": 3e-3, "batch_size": 64})
    classifier = training.model_train(trained_id=classifier.pk, echo=seen.append)
    assert classifier.status == "ready" and classifier.test_accuracy > 0.8
    assert seen and seen[-1]["step"] == seen[-1]["total"]
    classifier.refresh_from_db()
    assert classifier.progress  # progress was written for the admin
    vae = training.model_create(dataset=dataset, role="vae", params={"epochs": 8, "seed": 0, "latent_dim": 32, "classes": study.classes})
    vae = training.model_train(trained_id=vae.pk)
    Study.objects.filter(pk=study.pk).update(config={**study.config, "classifier_id": classifier.pk, "generator_id": vae.pk})
    study.refresh_from_db()

    stimuli = stimuli_select(study=study, classifier=classifier)
    assert len(stimuli) == 6
    assert {s.true_label for s in stimuli} == set(study.classes)
    assert all(s.model_prediction in study.classes for s in stimuli)

    with transaction.atomic():
        job = precompute.start(study=study, methods=selectors.study_methods(study=study))
    assert job.total == 12  # 6 stimuli x (gradcam, cdeepex)
    with celery_worker(name="precompute") as proc:
        wait_for(lambda: PrecomputeJob.objects.get(pk=job.pk).status in ("done", "failed"), timeout=600, proc=proc, what="precompute")
    job.refresh_from_db()
    assert job.status == "done", job.message
    assets = ExplanationAsset.objects.filter(stimulus__study=study)
    assert assets.count() == 12
    for asset in assets:
        for path in asset.files.values():
            file = media_path(path)
            assert file.exists() and file.stat().st_size > 0
            assert file.stem in path and len(file.stem) == 64  # content-addressed
        assert asset.valid or asset.reasons  # a refused explanation always says why
    assert assets.filter(method="gradcam", valid=True).exists()
    assert assets.filter(method="cdeepex", valid=True).exists()
    # APEM on every heatmap asset, beside its validity numbers; none on the morphs.
    for asset in assets:
        assert ("apem" in asset.metrics) == (asset.method == "gradcam"), (asset.method, asset.metrics)
        if asset.method == "gradcam":
            assert asset.metrics["apem"] == asset.metrics["eps_plus"] - asset.metrics["eps_minus"]

    # Resumable and idempotent: a second run finds nothing to do.
    with transaction.atomic():
        again = precompute.start(study=study, methods=selectors.study_methods(study=study))
    assert again.total == 0 and again.status == "done"
    servable = selectors.servable_stimuli(study=study).count()
    assert servable == Stimulus.objects.filter(study=study).count() - len(
        {a.stimulus_id for a in assets.filter(valid=False)}
    )


@pytest.mark.django_db
def test_admin_import_view_shows_the_error_and_imports_nothing(tmp_path, admin_client):
    response = admin_client.post("/admin/pipeline/dataset/import/", {"source": "directory", "directory": str(tmp_path / "nope"), "name": "x"})
    assert response.status_code == 200 and "Nothing was imported" in response.content.decode()
    assert Dataset.objects.count() == 0
    good = write_official_npz(tmp_path / "good", n_train=100, n_test=20)
    response = admin_client.post("/admin/pipeline/dataset/import/", {"source": "directory", "directory": str(good), "name": "x"})
    assert response.status_code == 302 and Dataset.objects.get().n_train == 100
