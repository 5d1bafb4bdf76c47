"""Issue 27 item 3: CDeepEx on a researcher's own colour images, through the platform.

A two-class colour set (scikit-learn's digits, colourised, 32x32: ``tests/owndata.py``) is
stored as an imported set; the platform picks its colour classifier (ConvNet) and trains a conv
VAE of the images' shape (3x32x32); the morphs are computed by the function the Celery task
calls (``explain.explanations_compute``). A colour morph is shown as one file, a lossless
animated WebP of the unquantised 8-bit frames (no GIF: 256 colours moved the last frame off the
boundary). Every stored morph is then decoded from it as a browser would (Pillow, in colour),
downsampled by the recorded scale and re-classified here, independently of the gate's code: it is
not on a palette (more than 256 colours), at least 90% pass the displayed-frame gate
(the issue's target), and what is served meets the gate as decoded.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from django.core.management import call_command
from PIL import Image

from studyapp.pipeline import datasets, explain, loading, training
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import Dataset, ExplanationAsset, TrainedModel
from studyapp.pipeline.stimuli import stimuli_select
from studyapp.pipeline.storage import media_path
from studyapp.studies.models import Study
from tests.owndata import digit_arrays
from tests.studyapp.factories import FIXTURES

SIZE = 32


def colour_set(name: str = "own-colour", size: int = SIZE) -> Dataset:
    x, y = digit_arrays(size=size, rgb=True)
    test = np.arange(len(y)) % 5 == 0
    split = lambda rows: SimpleNamespace(images=x[rows], labels=y[rows])  # noqa: E731
    return datasets.dataset_store(
        name=name, kind=Dataset.Kind.DIGIT_STANDIN, source="tests/owndata.py", is_standin=True,
        class_names=["curl", "loop"], train=split(~test), test=split(test),
    )


def browser_frames(data: bytes, scale: int) -> np.ndarray:
    """Every frame as shown (Pillow composites them), one pixel per ``scale`` block: (T, 3, S, S)."""
    out = []
    with Image.open(io.BytesIO(data)) as img:
        for k in range(getattr(img, "n_frames", 1)):
            img.seek(k)
            rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
            out.append(rgb[::scale, ::scale].transpose(2, 0, 1) / 255.0)
    return np.stack(out)


@pytest.mark.django_db
def test_a_generator_refuses_images_it_cannot_take_before_any_row_exists():
    dataset = colour_set(name="own-colour-24", size=24)
    before = TrainedModel.objects.count()
    with pytest.raises(PipelineError, match=r"square images of 28, 32, 64 pixels, got 24x24"):
        training.model_create(dataset=dataset, role="vae", params={})
    with pytest.raises(PipelineError, match=r"WGAN takes square images of 28, 32, 64 pixels"):
        training.model_create(dataset=dataset, role="wgan", params={})
    assert TrainedModel.objects.count() == before


@pytest.mark.slow
@pytest.mark.first_run_only
@pytest.mark.django_db
def test_cdeepex_on_a_colour_set_passes_the_displayed_frame_gate_as_decoded():
    dataset = colour_set()
    classifier = training.model_create(dataset=dataset, role="classifier", params={"epochs": 6})
    assert classifier.arch == "ConvNet"  # chosen for colour images: MnistNet takes one channel
    classifier = training.model_train(trained_id=classifier.pk)
    assert classifier.test_accuracy >= 0.9
    vae = training.model_create(dataset=dataset, role="vae", params={"latent_dim": 32, "width": 8, "steps": 200})
    vae = training.model_train(trained_id=vae.pk)
    assert vae.metadata["params"]["epochs"] >= 40  # the step budget, not 2 epochs of 286 images
    G = loading.load_model(vae)
    assert (G.channels, G.size) == (3, SIZE)

    call_command("loaddata", str(FIXTURES / "study_a_kannada.json"), verbosity=0)
    study = Study.objects.get(slug="kannada-learning")
    config = {**study.config, "spare_stimuli": 2, "cdeepex": {"num_frames": 8}, "classifier_id": classifier.pk, "generator_id": vae.pk}
    Study.objects.filter(pk=study.pk).update(classes=[0, 1], n_trials=8, config=config)
    study.refresh_from_db()
    stimuli = stimuli_select(study=study, classifier=classifier)
    with Image.open(media_path(stimuli[0].image)) as shown:
        assert shown.size == (224, 224) and shown.mode == "RGB"  # 32 px at scale 7

    assets = explain.explanations_compute(stimulus_ids=[s.pk for s in stimuli], method="cdeepex")
    assert len(assets) == len(stimuli) == 10
    D = loading.load_model(classifier).eval()
    passed, changes = 0, []
    for asset in assets:
        gate = asset.params["gate"]
        assert gate["scale"] == 7 and gate["decoded"] == "webp" and "WebP" in gate["colour"]  # how it was shown
        assert "gif" not in asset.files and "palette_option" not in asset.metrics  # one file shown, no palette
        frames = browser_frames(media_path(asset.files["webp"]).read_bytes(), gate["scale"])
        assert frames.shape[1:] == (3, SIZE, SIZE)
        assert len(np.unique(frames.transpose(0, 2, 3, 1).reshape(-1, 3), axis=0)) > 256  # not on a palette
        assert np.abs(frames[0] - frames[0].mean(axis=0)).max() > 0.05  # colour, not grey
        with torch.no_grad():
            llh = torch.log_softmax(D(torch.from_numpy(frames)), 1).double()
        s = asset.stimulus
        true, probe = s.model_prediction, 1 - s.model_prediction
        gap = (llh[:, true] - llh[:, probe]).numpy()
        tol = gate["llh_tol"]
        assert asset.metrics["llh_gap"] == pytest.approx(abs(gap[-1]), abs=1e-4)  # the gate saw these frames
        assert asset.morph_pixel_change == pytest.approx(float(np.abs(frames[-1] - frames[0]).mean()), abs=1e-6)
        if asset.valid:
            passed += 1
            assert abs(gap[-1]) <= tol + 1e-6 and float(-gap.min()) <= tol + 1e-6, gap
            assert float(np.diff(gap).max(initial=0.0)) <= tol + 1e-6, gap
            changes.append(asset.morph_pixel_change)
            assert asset.morph_pixel_change > 0 or abs(gap[0]) <= tol  # it changes, unless it starts on the boundary
    refused = [a.reasons for a in assets if not a.valid]
    # The issue asks for >= 90% (on 256-colour GIFs 8 of 10 passed: the others ended 0.15-0.2 nats
    # off the boundary once quantised; the unquantised WebP shows the frames the optimiser stopped on).
    assert passed >= 0.9 * len(assets), (passed, refused)
    assert np.mean(changes) > 0.01  # the served morphs show a change
    assert ExplanationAsset.objects.filter(stimulus__study=study, method="cdeepex").count() == len(assets)
