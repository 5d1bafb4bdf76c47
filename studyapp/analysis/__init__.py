"""Statistical analysis of the two user studies, free of Django.

Everything here takes and returns pandas DataFrames, numbers and small dataclasses; the
Django side (selectors, CSV import) builds the DataFrames and stores or serves the results.

Modules:

- ``schema``: column names, arm/stage names, Likert scales and their integer coding.
- ``learning``: Study A (dissertation ch. 5): learning curves, Tables 5.2/5.3, ratings.
- ``clustering``: Study B (XNN paper section 4.1): purity, stage comparisons, questionnaires.
- ``exclusions``: participant exclusion rules with a report.
- ``power``: sample size (analytic and by simulation).
- ``synthetic``: seeded synthetic participants with a planted learning effect.
- ``figures``: matplotlib figures (no pyplot state) and PNG/SVG bytes.
- ``report``: a self-contained HTML report.
"""
