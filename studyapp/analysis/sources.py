"""Where an analysis reads its data: a study (`frames`, from the database) or an imported result
set (`importing`, from its stored CSV), reduced to a `Source` that `run_analysis` hands to
`stats.analyse`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pandas as pd
from django.urls import reverse

from stats import analyse
from studyapp.analysis import frames, importing
from studyapp.analysis.models import ImportedResults
from studyapp.studies.designs.flows import DESIGNS
from studyapp.studies.models import Study


@dataclass
class Source:
    """A study or an imported result set, reduced to what the analysis needs."""

    kind: str  # "study" or "imported"
    obj: Study | ImportedResults
    title: str
    design: str
    config: dict
    config_hash: str
    frames: dict[str, pd.DataFrame]
    levels: list[str]
    n_trials: int | None = None
    participants: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    #: Whether staff test runs (pilots, previews) are in the frames, and how many there are.
    include_test: bool = False
    n_test: int = 0

    @property
    def url_name(self) -> str:
        return f"analysis-{self.kind}"

    def url(self, suffix: str = "", *args) -> str:
        name = self.url_name + (f"-{suffix}" if suffix else "")
        return reverse(name, args=[self.obj.pk, *args])

    @property
    def slug(self) -> str:
        return self.obj.slug if self.kind == "study" else f"imported-{self.obj.pk}"

    @property
    def data_hashes(self) -> dict[str, int]:
        """The configuration hashes the data ran under, with their number of participants."""
        if self.kind == "study":
            if self.participants is None:
                return {}
            return self.participants["config_hash"].value_counts().to_dict()
        return dict((self.obj.meta or {}).get("config_hashes", {}))

    def participant_url(self, code: str) -> str:
        """Where the admin shows a participant of a study ("" for an imported result set)."""
        if self.kind != "study":
            return ""
        return reverse("admin:studies_participant_changelist") + f"?q={code}"


def study_source(study: Study, *, include_test: bool = False) -> Source:
    """A study's frames; its test runs (``is_test``) only with ``include_test=True``."""
    d = frames.study_data(study=study, include_test=include_test)
    data = {
        "trials": d.trials, "ratings": d.ratings, "groupings": d.groupings, "batches": d.batches,
        "confidence": d.confidence, "agent_ratings": d.agent_ratings, "checks": d.checks,
    }
    if study.design == Study.Design.CLUSTERING:
        levels = analyse.levels_of(analyse.CLUSTERING, stages=d.groupings["stage"].unique())
        n_trials = None
    else:
        levels = list(study.arms.order_by("position", "pk").values_list("name", flat=True))
        n_trials = study.n_trials
    return Source(
        # a design analysed as another (the simulation design: its answers as learning trials) says which
        kind="study", obj=study, title=study.title, design=DESIGNS[study.design].analysis, config=study.parsed_config.analysis(),
        config_hash=study.config_hash, frames=data, levels=levels, n_trials=n_trials,
        participants=d.participants, notes=_test_note(include_test, d.n_test) + list(d.problems),
        include_test=include_test, n_test=d.n_test,
    )


def _test_note(include_test: bool, n_test: int) -> list[str]:
    if not include_test:
        return []
    runs = "test run" if n_test == 1 else "test runs"
    return [f"This analysis is including {n_test} {runs} (staff previews and pilots, left out by default)."]


def imported_source(imported: ImportedResults) -> Source:
    data = importing.imported_frames(imported)
    if imported.study_design == ImportedResults.Design.CLUSTERING:
        groupings = data.get("groupings", pd.DataFrame(columns=["participant", "stage"]))
        # Exclusion rules read one row per batch; an imported file has no batch times, so the
        # rules see one row per participant (with completion, when the participants file gave it).
        columns = [c for c in ("participant", "arm", "completed") if c in groupings.columns]
        batches = groupings.drop_duplicates("participant")[columns] if len(groupings) else None
        data["batches"] = batches
        levels = analyse.levels_of(analyse.CLUSTERING, stages=groupings["stage"].unique())
    else:
        trials = data.get("trials", pd.DataFrame(columns=["arm"]))
        levels = analyse.levels_of(analyse.LEARNING, arms=trials["arm"].unique())
    return Source(
        kind="imported", obj=imported, title=imported.name, design=imported.study_design,
        config=imported.config or {}, config_hash=imported.config_hash, frames=data,
        levels=levels, notes=list((imported.meta or {}).get("notes", [])),
    )


def run_analysis(source: Source, *, power_target: float | None = None) -> analyse.Analysis:
    """The whole analysis of `source` under its analysis settings; problems with the settings
    are added to ``source.notes``."""
    # No gc.freeze()/unfreeze() around it: unfreezing undid the worker's boot-time freeze
    # (studyapp/wsgi.py) for the rest of its life; with the boot's objects frozen, the collections
    # statsmodels asks for are cheap anyway.
    return _run_analysis(source, power_target=power_target)


def _run_analysis(source: Source, *, power_target: float | None = None) -> analyse.Analysis:
    settings, problems = analyse.settings_from_config(
        source.config, design=source.design, levels=source.levels, n_trials=source.n_trials
    )
    if power_target is not None:
        settings = dataclasses.replace(settings, power_target=power_target)
    f = source.frames
    result = analyse.analyse(
        design=source.design, settings=settings, trials=f.get("trials"), ratings=f.get("ratings"),
        groupings=f.get("groupings"), batches=f.get("batches"), confidence=f.get("confidence"),
        agent_ratings=f.get("agent_ratings"), checks=f.get("checks"),
    )
    source.notes.extend(problems)
    return result
