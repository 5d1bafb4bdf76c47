"""The Django side of the statistics: the analysis pages, the report and imported result sets.

The statistics themselves are the pure `stats` package; this app reads the data, runs
`stats.analyse` once per request and presents the result.

Modules:

- ``models``, ``admin``, ``urls``: imported result sets and the staff-only pages.
- ``access``: who may see what (the model permissions the admin would check).
- ``frames``: a study's database rows as the pandas frames `stats` reads.
- ``importing``: a results CSV as an imported result set (all or nothing).
- ``sources``: a study or an imported result set, its frames and settings, and `run_analysis`.
- ``presenters``: analysis results as table cells and figures, for the page and the report.
- ``forms``, ``views``: the planned tests, the power calculator, the upload; thin views.
- ``report``: the self-contained HTML report, a template filled from the presenters.
- ``services``: the writes of the analysis page (planned tests, alpha).
"""
