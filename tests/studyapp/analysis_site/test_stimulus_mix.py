"""Study A's stimulus mix (issue 23, item 4): the published design draws the images at random
from the two classes' test images (the model's accuracy gives the right/wrong mix); balancing
(``wrong_share``) stays an option; the analysis page states the mix each arm saw."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from studyapp.lib.study_config import read_config
from studyapp.pipeline.stimuli import draw_indices
from studyapp.studies.models import TrialAnswer
from tests.studyapp.analysis_site.conftest import page_tables, run_bots, value
from tests.studyapp.factories import learning_study

FIXTURE = Path(__file__).resolve().parents[3] / "fixtures" / "study_a_kannada.json"


def _model_outputs(n_per_class: int, wrong: tuple[float, float], classes=(3, 7), seed: int = 1):
    """Labels and predictions of a model that gets ``wrong[k]`` of class k wrong (as the other class)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.array(classes), n_per_class)
    flip = np.concatenate([rng.random(n_per_class) < wrong[0], rng.random(n_per_class) < wrong[1]])
    predictions = np.where(flip, np.where(labels == classes[0], classes[1], classes[0]), labels)
    predictions[:5] = 9  # a third class: never drawn (its "correct" answer is not an option)
    return labels, predictions


def test_the_published_template_draws_at_random_and_balancing_stays_an_option():
    config = json.loads(FIXTURE.read_text(encoding="utf-8"))[0]["fields"]["config"]
    assert "wrong_share" not in config and read_config(config).wrong_share is None
    assert read_config({"wrong_share": 0.5}).wrong_share == 0.5

    labels, predictions = _model_outputs(4000, wrong=(0.1, 0.3))
    drawn, shortfall = draw_indices(labels=labels, predictions=predictions, classes=[3, 7], n=2000, wrong_share=None)
    assert len(drawn) == len(set(drawn)) == 2000 and not shortfall
    assert all(predictions[i] in (3, 7) for i in drawn)
    for cls, model_wrong in ((3, 0.1), (7, 0.3)):
        mine = [i for i in drawn if labels[i] == cls]
        assert len(mine) == 1000  # half from each class
        share = np.mean([predictions[i] != cls for i in mine])
        assert abs(share - model_wrong) < 0.05, (cls, share)  # the model's own mix, not 0.5

    balanced, _ = draw_indices(labels=labels, predictions=predictions, classes=[3, 7], n=20, wrong_share=0.5)
    assert sum(predictions[i] != labels[i] for i in balanced) == 10
    again, _ = draw_indices(labels=labels, predictions=predictions, classes=[3, 7], n=20, wrong_share=None)
    other_seed, _ = draw_indices(labels=labels, predictions=predictions, classes=[3, 7], n=20, wrong_share=None, seed=5)
    assert again == draw_indices(labels=labels, predictions=predictions, classes=[3, 7], n=20, wrong_share=None)[0]
    assert again != other_seed  # random, reproducible by seed


@pytest.mark.django_db
def test_the_analysis_page_states_the_mix_each_arm_saw(owner):
    study = learning_study()
    run_bots(study.public_code, 6, seed=3)
    html = owner.get(f"/admin/analysis/study/{study.pk}/").content.decode()
    assert "Stimuli drawn at random from the two classes" in html
    rows = {row[0][0]: row for row in page_tables(html)["stimulus-mix"]}
    assert set(rows) == set(study.arms.values_list("name", flat=True))
    for arm, row in rows.items():
        answers = TrialAnswer.objects.filter(participant__arm__name=arm, participant__study=study).select_related("stimulus")
        right = sum(a.stimulus.true_label == a.stimulus.model_prediction for a in answers)
        assert (value(row[1]), value(row[2])) == (right, answers.count() - right), arm
        assert answers.count() > 0
