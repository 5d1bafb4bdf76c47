"""Statistics of the two user studies: pure pandas, scipy, statsmodels and matplotlib, no Django.

Everything here takes and returns pandas DataFrames, numbers and small dataclasses. The Django
side (`studyapp.analysis`: `frames` from the database, `importing` from a CSV) builds the
frames, calls `analyse.analyse`, and presents or stores the results. Nothing here imports
`studyapp`.

Modules:

- ``schema``: column names, arm/stage names, Likert scales and their integer coding.
- ``learning``: Study A (dissertation ch. 5): learning curves, Tables 5.2/5.3, ratings.
- ``clustering``: Study B (XNN paper section 4.1): purity, stage comparisons, questionnaires.
- ``exclusions``: participant exclusion rules with a report.
- ``power``: sample size (analytic and by simulation), for the Welch test and the trial model.
- ``trial_model``: Study A at the trial level (correct ~ arm × trial, GEE).
- ``sequential``: pre-registered group-sequential stopping (Lan–DeMets alpha spending, looks).
- ``synthetic``: seeded synthetic participants with a planted learning effect.
- ``figures``: matplotlib figures (no pyplot state) and PNG/SVG bytes.
- ``analyse``: one whole analysis of a study's frames under its analysis settings.
- ``protocols/``: the field's other XAI user-study protocols (issue 25), one module per protocol
  (simulation, reliance, HIVE, bias, metrics versus people); see its own index.
"""
