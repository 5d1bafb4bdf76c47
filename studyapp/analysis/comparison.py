"""A comparison of two or more studies of the clustering design (XNN paper Fig. 4 across studies).

The paper's Figure 4 puts the main study's NoVis, 1-Heatmap (ExcitationBP) and XNN beside the
complementary study's 1-Heatmap (DeepLIFT), run with other participants. Here each chosen study
is analysed as its own page analyses it (`sources.run_analysis`: its frames, its pre-registered
exclusion rules), its per-participant purity table is labelled with the study and with what
each stage showed in it (the 1-Heatmap stage names its method), and the stacked table goes to
`stats.clustering.compare_studies` (the between-study Welch tests) and
`stats.figures.study_comparison_figure`. Learning studies are not compared here (say so: their
arms are compared on each study's own page).

Reads only; nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

from stats import clustering, figures
from stats.schema import AnalysisInputError
from studyapp.analysis import presenters
from studyapp.analysis.sources import run_analysis, study_source
from studyapp.lib.study_config import StudyConfigError
from studyapp.studies.models import Study

#: How the 1-Heatmap stage is named after the method it showed (``config.heatmap_method``).
HEATMAP_NAMES = {"excitation_bp": "ExcitationBP", "deeplift": "DeepLIFT", "gad": "GAD"}
HEATMAP_STAGE = "1-Heatmap"
MEASURE_NAMES = {
    "purity": "Purity",
    "ari": "Adjusted Rand index",
    "above_chance": "Purity minus chance",
}


@dataclass
class StudyComparison:
    studies: list[Study]
    purities: pd.DataFrame
    tests: pd.DataFrame | None = None
    error: str = ""
    notes: list[str] = field(default_factory=list)


def condition_of(study: Study, stage: str) -> str:
    """What a stage showed in `study`: ``1-Heatmap (DeepLIFT)`` for its heatmap stage, else the stage."""
    if stage != HEATMAP_STAGE:
        return stage
    try:
        method = study.parsed_config.heatmap_method
    except StudyConfigError:  # the study's own page says what is wrong with its configuration
        return stage
    return f"{stage} ({HEATMAP_NAMES.get(method, method)})"


def study_purities(study: Study) -> tuple[pd.DataFrame, str]:
    """The study's purity table of the participants its analysis keeps, with ``study`` and
    ``condition``, and a line saying how many were kept."""
    result = run_analysis(study_source(study))
    purities = result.clustering.purities if result.clustering is not None else None
    if purities is None or not len(purities):
        return pd.DataFrame(), f"{study.slug}: no analysed groupings yet."
    frame = purities.assign(study=study.slug, condition=[condition_of(study, s) for s in purities["stage"]])
    report = result.exclusions.report
    excluded = len(report.excluded_participants) if report is not None else 0
    line = f"{study.slug}: {frame['participant'].nunique()} participants analysed"
    return frame, line + (f" ({excluded} excluded by its rules)." if excluded else ".")


def compare(studies: Sequence[Study]) -> StudyComparison:
    """The comparison of `studies` (all of the clustering design, at least two; the form checks)."""
    parts, notes = [], []
    for study in studies:
        frame, line = study_purities(study)
        notes.append(line)
        if len(frame):
            parts.append(frame)
    purities = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    out = StudyComparison(studies=list(studies), purities=purities, notes=notes)
    try:
        out.tests = clustering.compare_studies(purities) if len(parts) >= 2 else None
        if out.tests is None:
            out.error = "Fewer than two of the chosen studies have analysed groupings: nothing to compare yet."
    except (AnalysisInputError, ValueError) as exc:
        out.error = f"The comparison cannot be computed from these data: {exc}"
    return out


def figure(comparison: StudyComparison) -> Figure:
    if not len(comparison.purities):
        return figures.no_data_figure("No analysed groupings in the chosen studies")
    return figures.study_comparison_figure(comparison.purities)


def tests_table(tests: pd.DataFrame | None) -> dict | None:
    """The between-study tests as a table of the analysis pages (`presenters.table`)."""
    if tests is None or not len(tests):
        return None
    rows = []
    for r in tests.itertuples(index=False):
        rows.append([
            presenters.cell(r.dataset), presenters.cell(MEASURE_NAMES.get(r.measure, r.measure)),
            presenters.cell(f"{r.condition1} [{r.study1}]"), presenters.cell(f"{r.condition2} [{r.study2}]"),
            presenters.count(r.n1), presenters.cell(r.mean1), presenters.cell(r.sd1),
            presenters.count(r.n2), presenters.cell(r.mean2), presenters.cell(r.sd2),
            presenters.cell(r.difference), presenters.cell(r.t, 2), presenters.cell(r.df, 1),
            presenters.cell(r.p, p=True), presenters.cell(r.p_adjusted, p=True), presenters.cell(r.hedges_g, 2),
        ])
    headers = [
        "data set", "measure", "condition 1 [study]", "condition 2 [study]", "n1", "mean1", "sd1", "n2", "mean2",
        "sd2", "difference", "t", "df", "p", "p (Holm)", "Hedges' g",
    ]
    return presenters.table(headers, rows, name="study-comparison")


def summary_table(purities: pd.DataFrame) -> dict | None:
    """Per study, data set and condition: n and the mean purity, chance purity and ARI."""
    if not len(purities):
        return None
    rows = []
    for (study, dataset, condition), part in purities.groupby(["study", "dataset", "condition"], sort=False):
        rows.append([
            presenters.cell(study), presenters.cell(dataset), presenters.cell(condition),
            presenters.count(part["participant"].nunique()), presenters.cell(part["purity"].mean()),
            presenters.cell(part["chance_purity"].mean()), presenters.cell(part["ari"].mean()),
        ])
    return presenters.table(
        ["study", "data set", "condition", "n", "mean purity", "mean chance purity", "mean ARI"], rows,
        name="study-comparison-summary",
    )
