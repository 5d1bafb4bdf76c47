"""One configuration hash (`models.config_hash_of`): the study's, its versions' and its runs' are
the same function of the design; versions stored under the earlier formula stay readable."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from studyapp.studies import services, versions
from studyapp.studies.designs.create import study_copy
from studyapp.studies.models import Participant, Study, StudyVersion, config_hash_of
from tests.studyapp.factories import learning_study

pytestmark = pytest.mark.django_db


def _enrol(study: Study, pid: str) -> Participant:
    return services.participant_enroll(study=study, consent=True, prolific_pid=pid)[0]


def test_the_study_its_version_and_its_runs_carry_one_hash_and_a_copy_has_the_same():
    study = learning_study()
    run = _enrol(study, "H1")
    study.refresh_from_db()
    assert run.config_hash == run.version.config_hash == study.config_hash == study.compute_config_hash()
    assert study.config_hash == config_hash_of(run.version.design)
    # The language and the completion text are part of the design, so of the hash (they were not).
    before = study.compute_config_hash()
    study.completion_text = "Thanks!"
    study.save()
    assert study.compute_config_hash() != before
    # A copy of the same design (other arm ids) has the same hash as the original.
    copy = study_copy(study=study, slug="copy-of-it", title=study.title)
    assert set(copy.arms.values_list("pk", flat=True)).isdisjoint(study.arms.values_list("pk", flat=True))
    assert config_hash_of(copy.design_snapshot()) == config_hash_of(study.design_snapshot())


def test_a_version_stored_under_the_earlier_formula_stays_readable():
    study = learning_study()
    # A version as the earlier code stored it: the same design, under another hash.
    legacy = StudyVersion.objects.create(study=study, number=1, config_hash="e" * 64, design=versions.design_of(study))
    run = _enrol(study, "H2")
    assert run.version == legacy and run.config_hash == "e" * 64  # recognised by its design, no new version
    assert study.compute_config_hash() == "e" * 64
    assert StudyVersion.objects.filter(study=study).count() == 1
    # An edit makes the next version under the one formula.
    study.n_trials = study.n_trials - 1
    study.save()
    later = _enrol(study, "H3")
    assert later.version.number == 2 and later.config_hash == config_hash_of(later.version.design) != "e" * 64


def test_the_migration_gives_each_run_its_versions_hash():
    study = learning_study()
    run = _enrol(study, "H4")
    Participant.objects.filter(pk=run.pk).update(config_hash="0" * 64)  # what the study-level formula had stored
    Study.objects.filter(pk=study.pk).update(config_hash="1" * 64)
    migration = importlib.import_module("studyapp.studies.migrations.0006_facts_config_hash_of_version")
    migration.runs_carry_their_version_hash(apps, None)
    run.refresh_from_db()
    study.refresh_from_db()
    assert run.config_hash == run.version.config_hash == study.config_hash
