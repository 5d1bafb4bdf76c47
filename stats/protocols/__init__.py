"""The statistics of the field's XAI user-study protocols (issue 25): pure pandas/scipy/statsmodels.

One module per protocol. Each documents its long-format input frame (one row per participant ×
item × phase, column names as module constants), analyses it with the paper's measure, and has a
seeded generator of synthetic participants with a planted effect and a function giving the power
by simulation at the n the paper used. Nothing here imports Django or the step classes.

- ``schema``: column names shared by every protocol, frame checks.
- ``estimates``: an estimate with its interval, the interval formulas used throughout, power by
  simulation.
- ``simulation``: forward and counterfactual simulation (Hase & Bansal, ACL 2020; Colin et al.,
  NeurIPS 2022).
- ``reliance``: AI-assisted decisions, RAIR and RSR (Nguyen et al., NeurIPS 2021; Schemmer et al.,
  IUI 2023).
- ``hive``: HIVE agreement and distinction (Kim et al., ECCV 2022).
- ``bias``: discovery of a planted bias (dissertation §3.2.2; Sixt et al., ICLR 2022).
- ``metrics_people``: do the assets' automatic metrics predict the human outcome?
"""
