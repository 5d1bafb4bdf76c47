"""Build studies whose rows are real but whose explanations are small stand-in files.

The participant flow is the component under these tests; the pipeline that makes real
explanations has its own tests (tests/studyapp/test_pipeline*.py).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from django.core.management import call_command
from PIL import Image

from studyapp.pipeline.models import Dataset, ExplanationAsset, Stimulus, TrainedModel
from studyapp.pipeline.storage import store_bytes
from studyapp.studies import services
from studyapp.studies.models import Study

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def png(seed: int, size: int = 28) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def gif(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    frames = [Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8), mode="L") for _ in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], loop=0, duration=100)
    return buffer.getvalue()


def add_stimuli(study: Study, *, n_stimuli: int, invalid: int = 0) -> None:
    """``n_stimuli`` stimuli of the study's two classes (every other pair model-wrong), each with a
    valid Grad-CAM asset and a CDeepEx asset (the first ``invalid`` refused by the gate), and the
    classifier they came from set in the configuration (saved)."""
    a, b = study.classes
    dataset = Dataset.objects.create(
        name="tiny", kind=Dataset.Kind.KANNADA, source="test", file="none.npz", fingerprint="0" * 64,
        class_names=[str(i) for i in range(10)], n_train=0, n_test=n_stimuli,
    )
    classifier = TrainedModel.objects.create(dataset=dataset, role="classifier", arch="MnistNet", status="ready")
    for pos in range(n_stimuli):
        true = a if pos % 2 == 0 else b
        pred = true if pos % 4 < 2 else (b if true == a else a)
        stimulus = Stimulus.objects.create(
            study=study, dataset=dataset, index=pos, position=pos,
            image=store_bytes(png(pos), ext="png", folder="stimuli"),
            true_label=true, model_prediction=pred, probabilities=[0.1] * 10, classifier=classifier,
        )
        ExplanationAsset.objects.create(
            stimulus=stimulus, method="gradcam", params_hash="g", params={}, valid=True,
            files={"overlay": store_bytes(png(1000 + pos), ext="png")},
        )
        bad = pos < invalid
        ExplanationAsset.objects.create(
            stimulus=stimulus, method="cdeepex", params_hash="c", params={}, valid=not bad,
            reasons=["final top-2 is not {true, probe}"] if bad else [],
            files={"gif": store_bytes(gif(2000 + pos), ext="gif"), "strip": store_bytes(png(3000 + pos), ext="png")},
        )
    study.config = {**study.config, "classifier_id": classifier.pk}
    study.save()


def learning_study(*, n_stimuli: int = 24, invalid: int = 1, open_it: bool = True, **overrides) -> Study:
    """Study A from its fixture with stimuli and valid Grad-CAM / CDeepEx assets.

    Predictions are set so that some stimuli are "model-wrong" (prediction != true label).
    The first ``invalid`` stimuli get a CDeepEx asset that failed the validity gate.
    """
    call_command("loaddata", str(FIXTURES / "study_a_kannada.json"), verbosity=0)
    study = Study.objects.get(slug="kannada-learning")
    for key, value in overrides.items():
        setattr(study, key, value)
    study.save()
    add_stimuli(study, n_stimuli=n_stimuli, invalid=invalid)
    if open_it:
        services.study_open(study=study)
        study.refresh_from_db()
    return study


def dump(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def clustering_study(*, n_sets: int = 5, set_size: int = 10, n_xfeatures: int = 7, invalid: int = 0, open_it: bool = True,
                     group_rule: str | None = None) -> Study:
    """Study B from its fixture: per data set, ``n_sets`` sets of ``set_size`` images with
    4 predicted classes, each with a 1-Heatmap and ``n_xfeatures`` XNN heatmaps.
    The first ``invalid`` images of CUB set 0 get an XNN asset refused by the validity gate.
    ``group_rule``: another rule than the published template's ("free": the number not told),
    e.g. "exactly" (as many groups as classes, told)."""
    call_command("loaddata", str(FIXTURES / "study_b_clustering.json"), verbosity=0)
    study = Study.objects.get(slug="xnn-clustering")
    if group_rule is not None:
        study.config = {**study.config, "group_rule": group_rule}
        study.save(update_fields=["config"])
    position = 0
    for dataset_name in study.config["datasets"]:
        dataset = Dataset.objects.create(
            name=f"tiny-{dataset_name}", kind=Dataset.Kind.DIGIT_STANDIN, source="test", file="none.npz",
            fingerprint=dataset_name.ljust(64, "0"), class_names=["a", "b", "c", "d"], is_standin=True,
        )
        classifier = TrainedModel.objects.create(dataset=dataset, role="classifier", arch="MnistNet", status="ready")
        for set_index in range(n_sets):
            for k in range(set_size):
                stimulus = Stimulus.objects.create(
                    study=study, dataset=dataset, index=position, position=position, group=dataset_name, set_index=set_index,
                    image=store_bytes(png(position, 32), ext="png", folder="stimuli"),
                    true_label=k % 4, model_prediction=(k + set_index) % 4, probabilities=[0.25] * 4, classifier=classifier,
                )
                ExplanationAsset.objects.create(
                    stimulus=stimulus, method="excitation_bp", params_hash="e", params={}, valid=True,
                    files={"heatmap": store_bytes(png(5000 + position, 32), ext="png")},
                )
                bad = dataset_name == "CUB" and set_index == 0 and k < invalid
                ExplanationAsset.objects.create(
                    stimulus=stimulus, method="xnn", params_hash="x", params={}, valid=not bad,
                    reasons=["x-feature heatmap 3 is blank"] if bad else [],
                    files={f"x{i}": store_bytes(png(10000 + position * 10 + i, 32), ext="png") for i in range(n_xfeatures)},
                    metrics={"contributions": [round((-1) ** i * (i + 1) / 28, 4) for i in range(n_xfeatures)]},
                )
                position += 1
    if open_it:
        services.study_open(study=study)
        study.refresh_from_db()
    return study
