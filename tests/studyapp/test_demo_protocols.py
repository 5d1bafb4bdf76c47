"""``demo_protocols`` (and ``demo --protocols``) refuse clearly, and change nothing, without the demo's models.

The whole chain (train the biased classifier, precompute on a worker, open) is not run here: it
trains real models (CI time); scripts/take_protocols.py takes the studies it builds in Chromium.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from studyapp.pipeline.models import Dataset, TrainedModel
from studyapp.studies.designs.create import study_from_template
from studyapp.studies.management.commands import demo_protocols
from studyapp.studies.models import Study

pytestmark = pytest.mark.django_db


def counts() -> tuple[int, int]:
    return Study.objects.count(), TrainedModel.objects.count()


def refusal() -> str:
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("demo_protocols", stdout=out, stderr=out)
    return str(caught.value)


def test_refuses_before_the_demo_is_built_and_names_the_command_that_builds_it():
    before = counts()
    message = refusal()
    assert "demo's models are missing" in message and "manage.py demo" in message, message
    assert counts() == before


def test_refuses_while_the_demo_classifier_is_not_ready_and_makes_no_study():
    dataset = Dataset.objects.create(name="kannada-mnist", kind="kannada", class_names=[str(i) for i in range(10)])
    training = TrainedModel.objects.create(dataset=dataset, role="classifier", arch="SmallCNN", status="training")
    study = study_from_template(template="learning")
    study.config = {**study.config, "classifier_id": training.pk}
    study.save()
    before = counts()
    message = refusal()
    assert "demo's models are missing" in message, message
    assert counts() == before
    assert not Study.objects.filter(slug__in=[slug for _, slug in demo_protocols.PROTOCOLS]).exists()

