"""Issue 10: what a participant sees is what was validated.

A small study on the REAL Kannada-MNIST (skipped without it) is precomputed through a real Celery
worker; every stored morph is then decoded as a browser would (Pillow), each frame downsampled to
28x28 and re-classified here, independently of the pipeline's own gate code:

* CDeepEx served (valid): the last frame is on the boundary within the gate's tolerance, {true,
  probe} are the two most likely, and no frame is on the probe side beyond the tolerance, the
  gap shrinking monotonically;
* xGEMs served: the last frame is on the boundary (its only gate);
* every refused morph says which rule refused it (a reason code per reason), and the stored
  numbers are those of the decoded frames;
* the Grad-CAM overlay is not blank (it has colour, not only the grey image).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from django.core.management import call_command
from django.db import transaction
from PIL import Image

from explainers.metrics import REASON_CODES
from studyapp.pipeline import datasets, loading, precompute, training
from studyapp.pipeline.models import ExplanationAsset, PrecomputeJob
from studyapp.pipeline.stimuli import stimuli_select
from studyapp.pipeline.storage import media_path
from studyapp.studies.models import Study
from tests.studyapp.factories import FIXTURES
from tests.studyapp.test_pipeline import write_official_npz
from tests.studyapp.worker import celery_worker, wait_for


def browser_frames(data: bytes, scale: int = 8) -> np.ndarray:
    """Every frame of an animation as shown, composited by Pillow, back at 28x28 (T, 1, 28, 28)."""
    out = []
    with Image.open(io.BytesIO(data)) as img:
        for k in range(getattr(img, "n_frames", 1)):
            img.seek(k)
            a = np.asarray(img.convert("RGB"), dtype=np.float64).mean(axis=2)  # grey: R = G = B
            out.append(a[::scale, ::scale] / 255.0)  # nearest upscaling: one pixel per block
    return np.stack(out)[:, None].astype(np.float32)


@pytest.mark.slow
@pytest.mark.first_run_only
@pytest.mark.django_db(transaction=True)
def test_every_served_morph_meets_its_gate_as_decoded_from_the_stored_files(tmp_path):
    from tests.conftest import kannada_dir

    kannada_dir()  # skips without the real data
    call_command("loaddata", str(FIXTURES / "study_a_kannada.json"), verbosity=0)
    study = Study.objects.get(slug="kannada-learning")
    cdeepex = {"outer_iterations": 30, "num_frames": 8}
    Study.objects.filter(pk=study.pk).update(
        # balanced (wrong_share), so that model-wrong images are there to be gated
        n_trials=6, config={**study.config, "spare_stimuli": 2, "explain_batch": 8, "cdeepex": cdeepex, "wrong_share": 0.5}
    )
    study.refresh_from_db()
    dataset = datasets.dataset_import_kannada(name="k", directory=write_official_npz(tmp_path / "k", n_train=3000, n_test=600))
    classifier = training.model_create(dataset=dataset, role="classifier", params={"epochs": 1, "seed": 0, "lr": 3e-3, "batch_size": 64})
    classifier = training.model_train(trained_id=classifier.pk)
    vae = training.model_create(dataset=dataset, role="vae", params={
        "epochs": 6, "seed": 0, "latent_dim": 16, "width": 8, "classes": study.classes, "max_train": 1500,
    })
    vae = training.model_train(trained_id=vae.pk)
    Study.objects.filter(pk=study.pk).update(config={**study.config, "classifier_id": classifier.pk, "generator_id": vae.pk})
    study.refresh_from_db()
    stimuli = stimuli_select(study=study, classifier=classifier)
    methods = ["gradcam", "cdeepex", "xgems"]
    with transaction.atomic():
        job = precompute.start(study=study, methods=methods)
    with celery_worker(name="morphs") as proc:
        wait_for(lambda: PrecomputeJob.objects.get(pk=job.pk).status in ("done", "failed"), timeout=600, proc=proc, what="precompute")
    job.refresh_from_db()
    assert job.status == "done", job.message

    D = loading.load_model(classifier).eval()
    a, b = study.classes
    served = {m: 0 for m in methods}
    for asset in ExplanationAsset.objects.filter(stimulus__study=study).select_related("stimulus"):
        s = asset.stimulus
        assert len(asset.reason_codes) == len(asset.reasons) and set(asset.reason_codes) <= set(REASON_CODES)
        assert asset.valid == (not asset.reasons)
        served[asset.method] += asset.valid
        if asset.method == "gradcam":
            rgb = np.asarray(Image.open(media_path(asset.files["overlay"])).convert("RGB"), dtype=np.int16)
            colour = np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max()
            assert colour > 20 or not asset.valid, "a served Grad-CAM overlay is blank (grey only)"
            continue
        frames = browser_frames(media_path(asset.files["gif"]).read_bytes())
        webp = browser_frames(media_path(asset.files["webp"]).read_bytes())
        assert frames.shape == webp.shape and np.array_equal(frames, webp)
        with torch.no_grad():
            llh = torch.log_softmax(D(torch.from_numpy(frames)), 1).double()
        true, probe = s.model_prediction, (b if s.model_prediction == a else a)
        gap = (llh[:, true] - llh[:, probe]).numpy()
        tol = asset.params["gate"]["llh_tol"]
        # the stored numbers are those of the decoded frames
        assert asset.metrics["llh_gap"] == pytest.approx(abs(gap[-1]), abs=1e-4)
        assert asset.metrics["max_probe_excess"] == pytest.approx(max(0.0, float(-gap.min())), abs=1e-4)
        assert asset.morph_pixel_change == pytest.approx(float(np.abs(frames[-1] - frames[0]).mean()), abs=1e-6)
        assert asset.morph_latent_distance is not None and asset.morph_latent_distance >= 0
        if not asset.valid:
            continue
        assert abs(gap[-1]) <= tol + 1e-6, (asset.method, gap)
        if asset.method == "cdeepex":
            assert set(llh[-1].topk(2).indices.tolist()) == {true, probe}
            assert float(-gap.min()) <= tol + 1e-6, ("crossover", gap)
            assert float(np.diff(gap).max(initial=0.0)) <= tol + 1e-6, ("not monotone", gap)
            assert asset.morph_pixel_change > 0
    codes = list(ExplanationAsset.objects.filter(stimulus__study=study, valid=False).values_list("method", "reason_codes"))
    assert served["cdeepex"] >= 1 and served["gradcam"] >= 1, (served, codes)
    assert len(stimuli) == 8


@pytest.mark.django_db
def test_refusals_are_counted_per_method_and_reason_in_the_admin_and_the_analysis(admin_client):
    from studyapp.analysis.presenters_gate import gate_report
    from studyapp.pipeline.explain import explanation_params, params_hash
    from tests.studyapp.factories import learning_study

    study = learning_study(n_stimuli=8, invalid=0, open_it=False)
    for method in ("gradcam", "cdeepex"):
        ExplanationAsset.objects.filter(stimulus__study=study, method=method).update(
            params_hash=params_hash(explanation_params(study=study, method=method))
        )
    wrong = [s for s in study.stimuli.order_by("position") if s.true_label != s.model_prediction]
    a = study.classes[0]
    refused = [s for s in wrong if s.true_label == a]
    assert refused
    ExplanationAsset.objects.filter(stimulus__in=refused, method="cdeepex").update(
        valid=False, reasons=["a displayed frame is on the probe side"], reason_codes=["crossover"],
        morph_pixel_change=0.031, morph_latent_distance=2.5,
    )
    report = gate_report(study)
    rows = {(r["method"], r["true_label"], r["correctness"]): r for r in report["rows"]}
    assert rows[("cdeepex", a, "wrong")]["refused"] == len(refused)
    assert rows[("cdeepex", a, "wrong")]["reasons"] == f"crossover ×{len(refused)}"
    assert sum(r["refused"] for r in report["rows"]) == len(refused)  # nothing else, Grad-CAM none
    assert all(r["missing"] == 0 for r in report["rows"])
    served = {(r["true_label"], r["correctness"]): r for r in report["served"]}
    assert served[(a, "wrong")]["servable"] == served[(a, "wrong")]["candidates"] - len(refused)
    assert report["changed"]  # one cell lost stimuli, the others did not

    page = admin_client.get("/admin/pipeline/explanationasset/").content.decode()
    assert "Refusals per method and reason" in page and "crossover" in page and "0.0310" not in page
    assert "0.031" in page  # the morph size column
    one = ExplanationAsset.objects.get(stimulus=refused[0], method="cdeepex")
    page = admin_client.get(f"/admin/pipeline/stimulus/{refused[0].pk}/change/").content.decode()
    assert "0.0310, latent 2.50" in page and one.reason_codes == ["crossover"]
    page = admin_client.get(f"/admin/analysis/study/{study.pk}/").content.decode()
    assert 'id="gate-drops"' in page and f"crossover ×{len(refused)}" in page and "were not neutral" in page
