"""Faults: a worker killed mid-precompute, a broker that is down, an error in the middle of an answer."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import Client

from studyapp.celery import app as celery_app
from studyapp.pipeline import precompute
from studyapp.pipeline.datasets import dataset_import_kannada
from studyapp.pipeline.models import ExplanationAsset, PrecomputeJob, TrainedModel
from studyapp.pipeline.stimuli import stimuli_select
from studyapp.pipeline.storage import media_path, store_bytes
from studyapp.studies import services
from studyapp.studies.models import Participant, Study, TrialAnswer
from studyapp.studies.selectors import study_methods
from tests.studyapp.bots import Bot
from tests.studyapp.factories import FIXTURES, learning_study
from tests.studyapp.test_pipeline import write_official_npz
from tests.studyapp.worker import celery_worker, wait_for


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """A small classifier and VAE trained once per session on (a sample of) real Kannada data."""
    import torch

    from explainers.datasets.common import to_tensor
    from explainers.datasets.kannada import load_kannada
    from explainers.nets import checkpoints, classifiers
    from explainers.nets.vae import VAE, train_vae

    folder = tmp_path_factory.mktemp("ckpt")
    data = write_official_npz(folder / "data", n_train=2000, n_test=400, seed=1)
    train = load_kannada(data, "train")
    x, y = to_tensor(train.images), torch.as_tensor(train.labels)
    torch.manual_seed(0)
    clf = classifiers.MnistNet(num_classes=10)
    classifiers.train_classifier(clf, x, y, epochs=2, lr=3e-3, batch_size=64, seed=0)
    checkpoints.save_checkpoint(folder / "clf.pt", clf, arch="MnistNet", arch_kwargs={"num_classes": 10}, metadata={})
    keep = (y == 3) | (y == 7)
    torch.manual_seed(0)
    vae = VAE(latent_dim=32)
    train_vae(vae, x[keep], epochs=6, seed=0)
    checkpoints.save_checkpoint(folder / "vae.pt", vae, arch="VAE", arch_kwargs={"latent_dim": 32}, metadata={})
    return data, folder / "clf.pt", folder / "vae.pt"


def ready_study(tiny_checkpoints, *, n_trials: int, batch: int) -> Study:
    data, clf_path, vae_path = tiny_checkpoints
    call_command("loaddata", str(FIXTURES / "study_a_kannada.json"), verbosity=0)
    study = Study.objects.get(slug="kannada-learning")
    dataset = dataset_import_kannada(name="k", directory=data)
    rows = {}
    for role, path, arch in (("classifier", clf_path, "MnistNet"), ("vae", vae_path, "VAE")):
        rows[role] = TrainedModel.objects.create(
            dataset=dataset, role=role, arch=arch, status="ready",
            checkpoint=store_bytes(Path(path).read_bytes(), ext="pt", folder="models"),
        )
    Study.objects.filter(pk=study.pk).update(
        n_trials=n_trials,
        config={**study.config, "spare_stimuli": 0, "explain_batch": batch,
                "classifier_id": rows["classifier"].pk, "generator_id": rows["vae"].pk},
    )
    study.refresh_from_db()
    stimuli_select(study=study, classifier=rows["classifier"])
    return study


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_precompute_and_restarted_finishes_the_job(tiny_checkpoints, monkeypatch):
    study = ready_study(tiny_checkpoints, n_trials=8, batch=2)
    with transaction.atomic():
        job = precompute.start(study=study, methods=study_methods(study=study))
    assert job.total == 16
    with celery_worker(name="victim") as proc:
        wait_for(lambda: PrecomputeJob.objects.get(pk=job.pk).done >= 2, timeout=300, proc=proc, what="first batches")
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and its pool children, mid-job
        proc.wait(timeout=30)
    job.refresh_from_db()
    assert job.status != "done", "the job finished before the kill; make it longer"
    monkeypatch.setenv("PRECOMPUTE_RESUME_AFTER", "0")
    with celery_worker(name="restarted") as proc:
        wait_for(lambda: PrecomputeJob.objects.get(pk=job.pk).status == "done", timeout=600, proc=proc, what="resumed job")
    job.refresh_from_db()
    assert job.done == job.total == 16
    assets = ExplanationAsset.objects.filter(stimulus__study=study)
    assert assets.count() == 16  # no duplicates
    assert len({(a.stimulus_id, a.method) for a in assets}) == 16
    root = Path(media_path(""))
    assert not list(root.rglob(".tmp-*"))  # no half-written file under a real name or left over
    import hashlib

    for asset in assets:
        for rel in asset.files.values():
            assert hashlib.sha256(media_path(rel).read_bytes()).hexdigest() == Path(rel).stem


@pytest.mark.django_db
def test_broker_down_participants_still_take_the_study_and_the_admin_says_why(monkeypatch, admin_client, settings, django_capture_on_commit_callbacks):
    study = learning_study()
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:9/0")  # Celery reads the variable before its conf
    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://127.0.0.1:9/0")
    monkeypatch.setattr(celery_app.conf, "broker_connection_timeout", 0.5)
    bot = Bot(study.public_code, rng=random.Random(0))
    bot.open_link()
    assert bot.walk()["kind"] == "done"
    page = admin_client.get(f"/admin/studies/study/{study.pk}/dashboard/").content.decode()
    assert "The Celery broker is unreachable" in page and "participants are not affected" in page
    # Queuing work while the broker is down is not a server error: the job says what is wrong.
    from studyapp.pipeline.models import Stimulus

    Stimulus.objects.filter(study=study).first().explanations.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/studies/study/", {"action": "precompute_explanations", "_selected_action": [study.pk]}, follow=True)
    assert response.status_code == 200
    job = PrecomputeJob.objects.latest("pk")
    assert job.status == "failed" and "Could not reach the Celery broker" in job.message


@pytest.mark.django_db(transaction=True)
def test_an_error_in_the_middle_of_an_answer_leaves_no_partial_rows(monkeypatch):
    study = learning_study()
    bot = Bot(study.public_code, client=Client(enforce_csrf_checks=True, raise_request_exception=False))
    bot.open_link()
    bot.enter()
    bot.continue_()
    original = Participant.save
    # last_seen_at is written at most every TOUCH_EVERY_SECONDS: make this answer write it
    monkeypatch.setattr(services, "TOUCH_EVERY_SECONDS", 0)

    def failing_save(self, *args, **kwargs):
        if kwargs.get("update_fields") == ["last_seen_at"]:
            raise RuntimeError("disk full")  # after the answer row was written, before commit
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Participant, "save", failing_save)
    status, _ = bot.post(f"steps/{bot.state['step']}/answer", {"stimulus": bot.state["stimulus"], "choice": 0})
    assert status == 500
    assert TrialAnswer.objects.count() == 0
    monkeypatch.setattr(Participant, "save", original)
    assert bot.answer(0)[0] == 200
    assert TrialAnswer.objects.count() == 1


def test_health_endpoint(client, db):
    response = client.get("/health")
    assert response.status_code == 200 and response.json()["database"] is True
    assert time.time() > 0
