"""An explanation's parameters and their hash: computed on the web side without torch, kept in the
job's plan, carried by each task as its hash, and used by the worker instead of the live
configuration; one selector says which stimuli already have an asset for (method, parameters)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from studyapp.pipeline import datasets, params, precompute, selectors, tasks, training
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import ExplanationAsset, PrecomputeJob, Stimulus
from studyapp.pipeline.stimuli import stimuli_select
from studyapp.studies.models import Study
from tests.studyapp.factories import FIXTURES, learning_study
from tests.studyapp.test_pipeline import write_official_npz

ROOT = Path(__file__).resolve().parents[2]

# What the admin does when a researcher presses "Precompute": import the admin modules and the
# planner, and compute every method's parameters (CDeepEx's gate included) and their hash.
PROBE = """
import json, sys
import django
django.setup()
import studyapp.pipeline.admin, studyapp.studies.admin, studyapp.pipeline.precompute
from studyapp.pipeline import params
from studyapp.pipeline.models import ExplanationAsset
from studyapp.studies.models import Study
study = Study(slug="probe", design="learning", classes=[3, 7], config={"cdeepex": {"eq_tol": 0.04}})
hashes = {m: params.params_hash(params.explanation_params(study=study, method=m)) for m in ExplanationAsset.Method.values}
gate = params.explanation_params(study=study, method="cdeepex")["gate"]
print(json.dumps({"torch": "torch" in sys.modules, "explainers": sorted(m for m in sys.modules if m.startswith("explainers")),
                  "methods": len(hashes), "llh_tol": gate["llh_tol"]}))
"""


def test_the_admin_computes_every_methods_parameters_without_importing_torch(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))}
    env.update(DJANGO_SETTINGS_MODULE="studyapp.settings", DJANGO_DEBUG="1", STUDY_VAR_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["methods"] == len(ExplanationAsset.Method.values) and probe["llh_tol"] == 0.04  # it did compute them
    assert probe["torch"] is False, probe["explainers"]
    assert "explainers.cdeepex" not in probe["explainers"]


def test_the_mirrored_eq_tol_is_cdeepexs_and_the_grey_gate_keeps_its_hash():
    from explainers.cdeepex import CDeepExConfig

    assert params.CDEEPEX_EQ_TOL == CDeepExConfig().eq_tol
    # The gate of 28x28 grey morphs, as it has been since before colour (assets keep their hash).
    assert params.morph_gate({}, None) == {
        "llh_tol": 0.05, "cross_tol": 0.05, "mono_tol": 0.05, "recon_threshold": 0.3,
        "morph_floor": None, "scale": 8, "decoded": "gif+webp",
    }
    colour = params.morph_gate({"eq_tol": 0.02}, 0.01, image_shape=(3, 64, 64))
    assert (colour["llh_tol"], colour["scale"], colour["decoded"]) == (0.02, 4, "webp") and "WebP" in colour["colour"]
    for bad in (0, -1, "x", None, float("nan")):
        with pytest.raises(PipelineError, match="eq_tol must be a number > 0"):
            params.morph_gate({"eq_tol": bad}, None)


@pytest.mark.django_db
def test_one_selector_says_which_stimuli_have_an_asset_for_a_method_and_its_parameters(django_assert_num_queries):
    study = learning_study(n_stimuli=6, invalid=1, open_it=False)  # its assets: gradcam under "g", cdeepex under "c"
    ids = list(Stimulus.objects.filter(study=study).order_by("position").values_list("pk", flat=True))
    ExplanationAsset.objects.filter(stimulus_id=ids[0], method="gradcam").delete()
    assert selectors.stimuli_with_asset(study=study, method="gradcam", params_hash="g") == set(ids[1:])
    assert selectors.stimuli_with_asset(study=study, method="cdeepex", params_hash="c") == set(ids)  # refused ones too
    assert selectors.stimuli_with_asset(study=study, method="gradcam", params_hash="other") == set()
    assert selectors.stimuli_with_asset(stimulus_ids=ids[:3], method="gradcam", params_hash="g") == set(ids[1:3])
    with pytest.raises(TypeError):
        selectors.stimuli_with_asset(method="gradcam", params_hash="g")
    plan = [{"method": "gradcam", "params_hash": "g", "stimuli": ids[k : k + 2]} for k in range(0, 6, 2)]
    plan += [{"method": "cdeepex", "params_hash": "c", "stimuli": ids[k : k + 2]} for k in range(0, 6, 2)]
    with django_assert_num_queries(2):  # one per (method, parameters), not one per batch
        assert selectors.job_done(plan=plan) == 5 + 6


@pytest.mark.django_db
def test_a_job_gives_its_worker_the_parameters_it_planned_and_refuses_ones_that_do_not_match_their_hash():
    study = learning_study(n_stimuli=2, invalid=0, open_it=False)
    planned = params.explanation_params(study=study, method="gradcam")
    good = params.params_hash(planned)
    job = PrecomputeJob.objects.create(study=study, kind="explain", total=2, plan=[
        {"method": "gradcam", "params_hash": good, "params": planned, "stimuli": [1, 2]},
        {"method": "gradcam", "params_hash": "f" * 64, "params": {**planned, "colormap": "jet"}, "stimuli": [3]},
        {"method": "cdeepex", "params_hash": "c" * 64, "stimuli": [1]},  # planned before plans kept parameters
    ])
    assert selectors.job_params(job_id=job.pk, method="gradcam", params_hash=good) == planned
    with pytest.raises(PipelineError, match="do not match their hash"):
        selectors.job_params(job_id=job.pk, method="gradcam", params_hash="f" * 64)
    assert selectors.job_params(job_id=job.pk, method="cdeepex", params_hash="c" * 64) is None  # the live ones, as before
    assert selectors.job_params(job_id=job.pk, method="gradcam", params_hash=None) is None  # a message without a hash
    with pytest.raises(PipelineError, match="does not exist"):
        selectors.job_params(job_id=job.pk + 1, method="gradcam", params_hash=good)


@pytest.mark.slow
@pytest.mark.django_db
def test_a_configuration_changed_mid_job_leaves_the_job_complete_under_its_own_hash(tmp_path):
    call_command("loaddata", str(FIXTURES / "study_a_kannada.json"), verbosity=0)
    study = Study.objects.get(slug="kannada-learning")
    dataset = datasets.dataset_import_kannada(name="k", directory=write_official_npz(tmp_path / "k", n_train=2000, n_test=400))
    classifier = training.model_create(dataset=dataset, role="classifier", params={"epochs": 2, "seed": 0, "lr": 3e-3, "batch_size": 64})
    classifier = training.model_train(trained_id=classifier.pk)
    config = {**study.config, "spare_stimuli": 0, "explain_batch": 2, "classifier_id": classifier.pk, "heatmap_colormap": "cividis"}
    Study.objects.filter(pk=study.pk).update(n_trials=4, config=config)
    study.refresh_from_db()
    stimuli_select(study=study, classifier=classifier)

    job = precompute.start(study=study, methods=["gradcam"])  # its messages wait for the commit, which never comes here
    first, second = job.plan
    assert job.total == 4 and first["params_hash"] == second["params_hash"] == params.params_hash(first["params"])
    tasks.explain_batch.apply(args=(job.pk, "gradcam", first["stimuli"], first["params_hash"]), throw=True)
    # The researcher changes the colour map while the job runs.
    Study.objects.filter(pk=study.pk).update(config={**config, "heatmap_colormap": "viridis"})
    tasks.explain_batch.apply(args=(job.pk, "gradcam", second["stimuli"], second["params_hash"]), throw=True)

    job.refresh_from_db()
    assert (job.done, job.total, job.status) == (4, 4, "done"), job.message
    assets = ExplanationAsset.objects.filter(stimulus__study=study)
    assert {(a.params_hash, a.params["colormap"]) for a in assets} == {(first["params_hash"], "cividis")}
    # The next job plans the new parameters: every stimulus again, under another hash.
    study.refresh_from_db()
    assert sorted(i for _, ids in precompute.plan(study=study, methods=["gradcam"]) for i in ids) == sorted(first["stimuli"] + second["stimuli"])
