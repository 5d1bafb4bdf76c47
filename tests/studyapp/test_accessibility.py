"""Issue 26 on the server: the heatmap colour map as a recorded study variable (configuration,
asset parameters, tidy export, stimulus manifest, codebook, admin preview) and time limits a
participant can extend (WCAG 2.2.1), through the real API and the admin."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.apps import apps

from studyapp.analysis.datapackage import stimulus_manifest
from studyapp.lib.study_config import StudyConfigError, read_config, validate_config
from studyapp.pipeline.explain import explanation_params, params_hash
from studyapp.pipeline.models import ExplanationAsset
from studyapp.studies import codebook
from studyapp.studies.designs.create import JET_NOTE, study_from_template
from studyapp.studies.models import Participant, Study
from tests.studyapp.admin_forms import superuser_client
from tests.studyapp.bots import Bot
from tests.studyapp.factories import learning_study

pytestmark = pytest.mark.django_db


def csv_rows(study: Study, kind: str) -> list[dict]:
    reply = superuser_client().get(f"/admin/studies/study/{study.pk}/export/{kind}.csv")
    assert reply.status_code == 200
    return list(csv.DictReader(io.StringIO(reply.content.decode())))


# -- colour maps -----------------------------------------------------------------------------------
def test_new_studies_default_to_cividis_and_the_published_templates_keep_jet_and_say_so():
    assert read_config({}).heatmap_colormap == "cividis"
    with pytest.raises(StudyConfigError, match="heatmap_colormap"):
        validate_config({"heatmap_colormap": "rainbow"})
    study = study_from_template(template="learning")
    assert study.parsed_config.heatmap_colormap == "jet"
    assert JET_NOTE in study.config["notes"] and "cividis" in JET_NOTE


def test_the_colour_map_is_part_of_a_heatmap_assets_parameters_not_of_a_morphs():
    study = learning_study(open_it=False)
    jet = explanation_params(study=study, method="gradcam")
    assert jet["colormap"] == "jet"
    assert "colormap" not in explanation_params(study=study, method="cdeepex")
    study.config = {**study.config, "heatmap_colormap": "cividis"}
    study.save()
    cividis = explanation_params(study=study, method="gradcam")
    assert cividis["colormap"] == "cividis" and params_hash(cividis) != params_hash(jet)  # a re-precompute makes new assets


def test_tidy_export_manifest_and_codebook_name_the_colour_map_shown():
    study = learning_study()
    ExplanationAsset.objects.filter(stimulus__study=study, method="gradcam").update(params={"colormap": "cividis"})
    ExplanationAsset.objects.filter(stimulus__study=study, method="gradcam", stimulus__position=0).update(params={})
    bots = [Bot(study.public_code, pid=f"cm{i}") for i in range(3)]
    for bot in bots:
        bot.open_link()
        bot.enter()
        bot.continue_()
        bot.post(f"steps/{bot.state['step']}/answer", {"stimulus": bot.state["stimulus"], "choice": 0})
    rows = csv_rows(study, "tidy")
    by_feedback = {(r["feedback"], r["explanation_colormap"]) for r in rows}
    assert {f for f, _ in by_feedback} == {"control", "gradcam", "cdeepex"}
    assert all(c == "" for f, c in by_feedback if f != "gradcam")
    assert {c for f, c in by_feedback if f == "gradcam"} <= {"cividis", "jet"} and ("gradcam", "") not in by_feedback
    assert codebook.TIDY["explanation_colormap"].allowed == ("cividis", "viridis", "magma", "inferno", "plasma", "jet")
    manifest = stimulus_manifest(study)
    shown = {(a["method"], a["colormap"]) for s in manifest["stimuli"] for a in s["explanations"]}
    # an asset made before the colour map was a choice (no "colormap" parameter) was drawn in jet
    assert shown == {("gradcam", "cividis"), ("gradcam", "jet"), ("cdeepex", "")}


def test_the_admin_previews_the_heatmaps_as_seen_with_colour_vision_deficiency():
    study = learning_study(open_it=False)
    page = superuser_client().get(f"/admin/studies/study/{study.pk}/colours/").content.decode()
    assert "Machado" in page and 'id="study-colormap">jet<' in page
    for name in ("jet", "cividis"):  # the study's map, and cividis beside it for comparison
        assert f'id="preview-{name}"' in page
    for vision in ("as drawn", "deuteranopia", "protanopia", "tritanopia"):
        assert page.count(f"<th scope=\"row\">{vision}</th>") == 2
    assert page.count("data:image/png;base64,") == 16
    dashboard = superuser_client("other").get(f"/admin/studies/study/{study.pk}/dashboard/").content.decode()
    assert f"/admin/studies/study/{study.pk}/colours/" in dashboard


def test_studies_from_before_the_choice_keep_jet():
    from importlib import import_module

    migration = import_module("studyapp.studies.migrations.0007_a11y_time_extensions_colormap")
    old = learning_study(open_it=False)
    config = dict(old.config)
    config.pop("heatmap_colormap")
    Study.objects.filter(pk=old.pk).update(config=config)
    migration.existing_studies_keep_jet(apps, None)
    old.refresh_from_db()
    assert old.config["heatmap_colormap"] == "jet"


# -- time limits a participant can extend -----------------------------------------------------------
def timed(**limits) -> tuple[Study, Bot]:
    study = learning_study()
    study.config = {**study.config, "time_limits": {"step_minutes": {"trial": 2}, "warn_seconds": 60, **limits}}
    study.save()
    bot = Bot(study.public_code, pid="T1")
    bot.open_link()
    bot.enter()
    bot.continue_()
    assert bot.state["kind"] == "trial"
    return study, bot


def test_a_participant_extends_a_time_limit_once_by_default_and_it_is_exported():
    study, bot = timed()
    assert bot.state["time_limit"]["extensions_left"] == 1
    reply = bot.api.time_extend()  # the one client of the API knows the route
    status, state = reply.status, reply.data
    assert status == 200 and state["time_limit"]["extensions_left"] == 0
    assert 230 <= state["time_limit"]["seconds_left"] <= 240  # the 2 minutes doubled
    run = Participant.objects.get(prolific_pid="T1")
    assert run.time_extensions == {"steps": {str(run.step_index): 1}}
    status, refused = bot.post("time/extend")
    assert status == 400 and "all the extra time" in refused["detail"]
    # Three minutes on the trial: past the limit, but not past the extended one.
    Participant.objects.filter(pk=run.pk).update(step_shown_at=run.step_shown_at - timedelta(minutes=3))
    status, _ = bot.post(f"steps/{bot.state['step']}/answer", {"stimulus": bot.state["stimulus"], "choice": 0})
    assert status == 200
    wide = {r["participant"]: r for r in csv_rows(study, "wide")}
    assert wide[run.code]["time_extensions"] == "1"
    assert codebook.WIDE["time_extensions"].type == "integer"


def test_an_essential_limit_is_never_extended():
    study, bot = timed(essential=True, extensions=3)
    assert bot.state["time_limit"]["extensions_left"] == 0
    status, refused = bot.post("time/extend")
    assert status == 400 and "part of the study" in refused["detail"]
    assert Participant.objects.get(prolific_pid="T1").time_extensions == {}


def test_the_researcher_sets_how_many_extensions_and_each_step_has_its_own():
    study, bot = timed(extensions=2)
    assert bot.post("time/extend")[0] == 200 and bot.post("time/extend")[0] == 200
    assert bot.post("time/extend")[0] == 400
    bot.post(f"steps/{bot.state['step']}/answer", {"stimulus": bot.state["stimulus"], "choice": 0})
    bot.continue_()  # the next trial: its own limit, its own extensions
    assert bot.state["time_limit"]["extensions_left"] == 2
    with pytest.raises(StudyConfigError, match="extensions"):
        validate_config({"time_limits": {"total_minutes": 5, "extensions": -1}})


def test_a_heatmap_is_shown_with_its_colour_scale_and_words_at_both_ends():
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from explainers.colour import COLORMAPS, colormap_rgb

    legends = Path(__file__).resolve().parents[2] / "static" / "study" / "legends"
    for name in COLORMAPS:  # the static scales are the maps (regenerate them if a map changes)
        drawn = np.asarray(Image.open(legends / f"{name}.png").convert("RGB"), float) / 255
        np.testing.assert_allclose(drawn[0], colormap_rgb(np.linspace(0, 1, 128), name), atol=1 / 255)
    study = learning_study()
    seen = {}
    for i in range(3):
        bot = Bot(study.public_code, pid=f"lg{i}")
        bot.open_link()
        bot.enter()
        bot.continue_()
        status, state = bot.post(f"steps/{bot.state['step']}/answer", {"stimulus": bot.state["stimulus"], "choice": 0})
        seen[state["feedback"]["kind"]] = state["feedback"].get("legend", "")
    assert seen["gradcam"].endswith("/study/legends/jet.png") and seen["cdeepex"] == seen["control"] == ""
    script = (legends.parent / "study.js").read_text()
    assert 'gettext("less important")' in script and 'gettext("more important")' in script


@pytest.mark.slow
@pytest.mark.first_run_only
def test_a_computed_heatmap_asset_is_drawn_in_the_studys_colour_map_and_names_it(tmp_path):
    """The real precompute on a small trained classifier: the stored overlay is the Grad-CAM map
    drawn in the study's colour map, byte for byte, and its parameters say which."""
    import torch

    from explainers import render
    from explainers.datasets.common import to_tensor
    from explainers.gradcam import GradCAM
    from explainers.targets import ClassTarget
    from studyapp.pipeline import loading
    from studyapp.pipeline.models import Stimulus
    from studyapp.pipeline.storage import media_path
    from tests.studyapp.test_apem_gad import compute, gad_learning_study

    study = gad_learning_study(tmp_path, feedbacks=("gradcam",), n_trials=2, spare=0, heatmap_colormap="cividis")
    assets = compute(study, "gradcam")
    assert assets and all(a.params["colormap"] == "cividis" for a in assets)
    first = Stimulus.objects.filter(study=study).order_by("position").select_related("classifier", "dataset")[0]
    net = loading.load_model(first.classifier)
    image = to_tensor(loading.dataset_arrays(first.dataset)["x_test"][first.index][None])
    cam = GradCAM(net, net.features_layer)(image, ClassTarget(torch.tensor([first.model_prediction])))
    stored = media_path(ExplanationAsset.objects.get(stimulus=first, method="gradcam").files["overlay"]).read_bytes()
    assert stored == render.heatmap_overlay_png(image[0], cam[0], colormap="cividis")
    assert stored != render.heatmap_overlay_png(image[0], cam[0], colormap="jet")
