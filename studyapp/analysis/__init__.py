"""The Django side of the statistics: the analysis pages, the report and imported result sets.

The statistics themselves are the pure `stats` package; this app reads the data, runs
`stats.analyse` once per request and presents the result.

Modules:

- ``models``, ``admin``, ``apps``, ``urls``: imported result sets and the staff-only pages.
- ``access``: who may see what (the model permissions the admin would check).
- ``frames``: a study's database rows as the pandas frames `stats` reads.
- ``importing``: a results CSV as an imported result set (all or nothing; frictionless checks it
  against the data dictionary's Table Schema).
- ``sources``: a study or an imported result set, its frames and settings, and `run_analysis`.
- ``presenters``: analysis results as table cells and figures, for the page and the report.
- ``presenters_gate``: whether the validity gates changed the stimulus set.
- ``presenters_sequential``: the trial-level model and the sequential looks, as cells and figures.
- ``metrics_people``, ``presenters_metrics_people``: "Do the automatic metrics predict people?",
  each answer as an outcome of its explanation's metrics (a design declares its outcome rows).
- ``comparison``: clustering studies side by side (Fig. 4 across studies).
- ``datapackage``: one study's data as a zip (exports, Frictionless ``datapackage.json``, Psych-DS).
- ``preregistration``: a study's pre-registration text (Markdown).
- ``forms``, ``views``: the planned tests, the power calculator, the upload; thin views.
- ``report``: the self-contained HTML report, a template filled from the presenters.
- ``services``: the writes of the analysis page (planned tests, alpha).
- ``management/commands/synthetic_participants``: synthetic participants for a study.
"""
