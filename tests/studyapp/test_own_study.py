"""A researcher's own study, start to finish, with only the commands the README gives.

Class-per-folder colour images (scikit-learn's digits, drawn in colour, 32x32, two look-alike
classes named by their folders) -> ``import_images``; a small CNN trained outside the platform
and saved as a torch.export program and as a TorchScript file -> ``register_model`` (each;
torchvision state dicts have their own tests in test_register_model.py); a VAE trained in the platform on the colour set -> ``train_models``;
``create_study --template learning`` on the exported model; a real Celery worker runs
``precompute``; the study opens, a bot takes it through the API, and the exports name what
was shown. The morphs are checked as the browser gets them: the stored GIFs decoded.
"""

from __future__ import annotations

import csv
import io
import random

import numpy as np
import pytest
import torch
from django.core.management import call_command
from PIL import Image, ImageSequence

from studyapp.pipeline.models import Dataset, ExplanationAsset, TrainedModel
from studyapp.pipeline.storage import media_path
from studyapp.studies import selectors, services
from studyapp.studies.models import Study, TrialAnswer
from tests.owndata import CLASS_NAMES, digit_arrays, make_image_folders, train_small_cnn
from tests.studyapp.admin_forms import superuser_client
from tests.studyapp.bots import Bot
from tests.studyapp.worker import celery_worker

SIZE = 32


def run(*args, **options) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


def save_formats(net: torch.nn.Module, folder) -> dict[str, dict]:
    """The network as a lab would hand it over, in each format register_model takes."""
    example = torch.zeros(2, 3, SIZE, SIZE)
    program = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, folder / "net.pt2")
    with pytest.warns(FutureWarning):  # TorchScript is deprecated in torch 2.14, still what many labs have
        torch.jit.save(torch.jit.script(net), folder / "net.ts")
    return {"pt2": {"file": str(folder / "net.pt2")}, "torchscript": {"file": str(folder / "net.ts")}}


@pytest.mark.slow
@pytest.mark.first_run_only
@pytest.mark.django_db(transaction=True)
def test_own_images_own_model_own_study(tmp_path):
    root = make_image_folders(tmp_path / "shapes", size=SIZE, rgb=True)
    out = run("import_images", str(root), name="shapes")
    dataset = Dataset.objects.get(name="shapes")
    assert dataset.kind == Dataset.Kind.IMAGES and dataset.class_names == list(CLASS_NAMES)
    assert "curl" in out and "loop" in out

    x, y = digit_arrays(size=SIZE, rgb=True)
    net = train_small_cnn(x, y, epochs=4)
    registered = {}
    for fmt, options in save_formats(net, tmp_path).items():
        out = run("register_model", dataset="shapes", **options)
        registered[fmt] = TrainedModel.objects.filter(dataset=dataset, role="classifier").latest("pk")
        assert registered[fmt].status == "ready" and registered[fmt].test_accuracy > 0.9, out
    assert len({m.pk for m in registered.values()}) == 2

    run("train_models", dataset="shapes", role="vae", epochs=40, params='{"latent_dim": 16}')
    vae = TrainedModel.objects.get(dataset=dataset, role="vae", status="ready")

    run("create_study", template="learning", slug="my-shapes", dataset="shapes", classes="curl,loop",
        names="Ternal,Peat", classifier=registered["pt2"].pk, generator=vae.pk)
    study = Study.objects.get(slug="my-shapes")
    # The researcher's edits in the admin: a short pilot of 6 trials.
    study.n_trials = 6
    study.config = {**study.config, "spare_stimuli": 6, "explain_batch": 6}
    study.save()
    with celery_worker(name="own-study"):
        run("precompute", study="my-shapes", wait=True, timeout=1200)
    assets = ExplanationAsset.objects.filter(stimulus__study=study)
    assert set(assets.values_list("method", flat=True)) == {"gradcam", "cdeepex"}
    morphs = assets.filter(method="cdeepex", valid=True)
    assert morphs.count() >= 0.75 * assets.filter(method="cdeepex").count(), list(
        assets.filter(method="cdeepex", valid=False).values_list("reasons", flat=True)
    )
    with Image.open(media_path(morphs.first().files["webp"])) as webp:  # what the browser gets: a colour morph's one file
        frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(webp)]
    assert len(frames) > 2 and frames[0].shape[-1] == 3 and np.ptp(frames[0].reshape(-1, 3).mean(0)) > 0
    assert selectors.study_readiness(study=study) == []
    services.study_open(study=study)

    bot = Bot(study.public_code, rng=random.Random(7))
    bot.open_link()
    assert bot.walk()["kind"] == "done"
    assert TrialAnswer.objects.filter(participant__study=study).count() == 6
    received = "\n".join(text for _, _, text in bot.responses).lower()
    for secret in ("shapes", "curl", "loop", "my-shapes"):
        assert secret not in received, secret

    tidy = superuser_client().get(f"/admin/studies/study/{study.pk}/export/tidy.csv")
    rows = list(csv.DictReader(io.StringIO(tidy.content.decode())))
    assert len(rows) == 6
    sha = registered["pt2"].metadata["sha256"]
    assert all(sha in " ".join(row.values()) for row in rows), rows[0]
