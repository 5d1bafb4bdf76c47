"""Frozen study versions: what a run reads of its study is the design it was enrolled under.

A study's design (texts, classes and names, arms, trial count, stimulus order, configuration) can
be edited in the admin at any time, but a participant part-way through must not see the edit.
So each run is pinned at enrolment to a :class:`~studyapp.studies.models.StudyVersion`, a frozen
copy of the design; an enrolment after an edit makes the next version, with the list of what
changed (the admin shows it). The participant flow reads the design through :func:`study_of` and
:func:`arm_of`, which give the study and arm *as the run's version has them*.

The explanation assets a run shows are pinned in its plan (`pin_assets`), so a re-precompute
with other parameters, which makes new assets, never changes a run in progress.
"""

from __future__ import annotations

import copy

from studyapp.lib.perf.caches import ProcessCache
from studyapp.lib.study_config import StudyConfig
from studyapp.studies import models
from studyapp.studies.models import Arm, Participant, Study, StudyVersion

# One definition of the design and of its hash, in the models (`Study.design_snapshot`,
# `models.config_hash_of`); the field lists are named here for this module's readers too.
DESIGN_FIELDS, ARM_FIELDS = models.DESIGN_FIELDS, models.ARM_FIELDS


def design_of(study: Study) -> dict:
    """The study's design as stored in a version: its design fields and its arms (by id)."""
    return study.design_snapshot()


def design_changes(before: dict, after: dict) -> list[dict]:
    """What differs between two designs: ``[{"field", "before", "after"}]``; an arm is named
    ``arm <name>`` (an arm added or removed has ``None`` on the other side)."""
    changes = [
        {"field": field, "before": before.get(field), "after": after.get(field)}
        for field in DESIGN_FIELDS
        if before.get(field) != after.get(field)
    ]
    arms_before = {a["id"]: a for a in before.get("arms", [])}
    arms_after = {a["id"]: a for a in after.get("arms", [])}
    for arm_id in sorted(set(arms_before) | set(arms_after)):
        old, new = arms_before.get(arm_id), arms_after.get(arm_id)
        if old != new:
            name = (new or old or {}).get("name", arm_id)
            changes.append({"field": f"arm {name}", "before": old, "after": new})
    return changes


def current_version(*, study: Study) -> StudyVersion:
    """The version new runs of ``study`` are enrolled under: the latest, or a new one when the
    design has changed since (call it with the study row locked, as enrolment does)."""
    design = design_of(study)
    digest = models.config_hash_of(design)
    latest = StudyVersion.objects.filter(study=study).order_by("-number").first()
    # A version stored before the hash had one definition keeps its hash: it is recognised by its design.
    if latest is not None and (latest.config_hash == digest or models.config_hash_of(latest.design) == digest):
        return latest
    return StudyVersion.objects.create(
        study=study,
        number=(latest.number + 1) if latest else 1,
        config_hash=digest,
        design=design,
        changes=design_changes(latest.design, design) if latest else [],
    )


def version_after_edit(*, study: Study) -> StudyVersion | None:
    """After an admin edit: a study that has runs gets its next version at once (so the admin
    shows what changed); one without runs gets its first version at its first enrolment."""
    if not Participant.objects.filter(study=study).exists():
        return None
    return current_version(study=study)


# What a run reads of its study ---------------------------------------------------------------
_designs: ProcessCache[tuple, dict] = ProcessCache("version designs", maxsize=256)
_configs: ProcessCache[tuple, StudyConfig] = ProcessCache("version configurations", maxsize=256)


def _design(participant: Participant) -> dict:
    """The design of the run's version, read once per process: versions are never edited. Kept
    under the version's and the study's primary keys and the study's ``updated_at`` (as
    `selectors.study_content` is), so a reused primary key (a test database rolled back) is
    never mistaken for another study's version."""
    key = (participant.version_id, participant.study_id, participant.study.updated_at)
    design = _designs.get(key)
    if design is None:
        design = _designs.put(key, StudyVersion.objects.values_list("design", flat=True).get(pk=participant.version_id))
    return design


def config_of(participant: Participant) -> StudyConfig:
    """The parsed configuration of the run's version (the live study's for a run without one),
    parsed once per process and version: what every request of the flow reads of it."""
    if participant.version_id is None:
        return participant.study.parsed_config
    key = (participant.version_id, participant.study_id, participant.study.updated_at)
    config = _configs.get(key)
    if config is None:
        config = _configs.put(key, study_of(participant).parsed_config)
    return config


def study_of(participant: Participant) -> Study:
    """``participant.study`` with the design fields of the run's version (not for saving: the
    status, completion code and redirect are the live study's)."""
    if participant.version_id is None:
        return participant.study
    cached = participant.__dict__.get("_versioned_study")
    if cached is not None and cached[0] == participant.version_id:
        return cached[1]
    design = _design(participant)
    study = copy.copy(participant.study)
    for field in DESIGN_FIELDS:
        if field in design:
            setattr(study, field, design[field])
    participant.__dict__["_versioned_study"] = (participant.version_id, study)
    return study


def arm_of(participant: Participant) -> Arm:
    """``participant.arm`` as the run's version has it (its feedback and instruction)."""
    if participant.version_id is None:
        return participant.arm
    frozen = next((a for a in _design(participant).get("arms", []) if a["id"] == participant.arm_id), None)
    if frozen is None:
        return participant.arm
    arm = copy.copy(participant.arm)
    for field in ARM_FIELDS:
        setattr(arm, field, frozen[field])
    return arm
