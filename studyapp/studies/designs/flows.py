"""The designs a study can have, by ``Study.design``, and the plan of a new participant."""

from __future__ import annotations

from studyapp.studies.designs import bias, clustering, decision, hive, learning, simulation
from studyapp.studies.designs.base import Design
from studyapp.studies.models import Arm, Study
from studyapp.studies.steps import registry

DESIGNS: dict[str, Design] = {d.name: d for d in (learning.DESIGN, clustering.DESIGN, simulation.DESIGN, decision.DESIGN, bias.DESIGN, hive.DESIGN)}


def draw_plan(*, study: Study, arm: Arm, seed: str, order: str | None = None) -> list[dict]:
    """The plan of a new participant, as stored, with the explanation assets it shows pinned
    (``order``: the clustering design's counterbalancing cell). ``PlanError`` when the study
    cannot make one."""
    steps = DESIGNS[study.design].draw(study=study, arm=arm, seed=seed, order=order)
    # The plan ends with the one step that completes the run (what `facts.reached_end` relies on).
    if [s.completes_run for s in steps].count(True) != 1 or not steps[-1].completes_run:
        raise ValueError(f"The {study.design} design drew a plan that does not end with the step that completes the run.")
    return registry.pin_assets(study=study, arm=arm, plan=registry.dump_plan(steps))
