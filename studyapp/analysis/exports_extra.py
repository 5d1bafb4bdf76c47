"""CSV exports beyond the tidy and wide ones: groupings (Study B) and interaction events.

Like `studyapp.studies.exports` (whose helpers these reuse): each row carries the participant's
configuration hash and the software version, and external ids are kept, dropped or hashed.

- `grouping_rows`: one row per image placed in a grouping, in the tidy schema that
  `studyapp.analysis.clustering` reads (``participant, stage, dataset, image_id, cluster,
  predicted_class, batch``) and that `importing` accepts back.
- `event_rows`: one row per interaction event (e.g. replaying an animation, leaving the tab),
  with the kind of step it happened on and the payload as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import studyapp
from studyapp.pipeline.models import Stimulus
from studyapp.studies.exports import ID_MODES, _external, to_csv
from studyapp.studies.models import Grouping, InteractionEvent, Study

__all__ = ["EVENT_COLUMNS", "GROUPING_COLUMNS", "ID_MODES", "event_rows", "grouping_rows", "to_csv"]

GROUPING_COLUMNS = [
    "participant", "prolific_pid", "arm", "batch", "stage", "dataset", "set_index", "image_id",
    "dataset_index", "cluster", "predicted_class", "true_label", "batch_purity", "shown_at",
    "saved_at", "config_hash", "software_version",
]
EVENT_COLUMNS = [
    "participant", "prolific_pid", "arm", "step_index", "step_kind", "kind", "payload", "at",
    "config_hash", "software_version",
]


def _check_ids(ids: str) -> None:
    if ids not in ID_MODES:
        raise ValueError(f"ids must be one of {ID_MODES}")


def grouping_rows(*, study: Study, ids: str = "keep") -> Iterable[dict]:
    """One row per image of every saved grouping; ``batch`` is the plan step of the grouping."""
    _check_ids(ids)
    groupings = list(
        Grouping.objects.filter(participant__study=study)
        .select_related("participant", "participant__arm")
        .order_by("participant__started_at", "participant_id", "step_index")
    )
    stimulus_ids = {int(k) for g in groupings for k in g.assignment}
    stimuli = {
        pk: (index, pred, true)
        for pk, index, pred, true in Stimulus.objects.filter(pk__in=stimulus_ids).values_list(
            "pk", "index", "model_prediction", "true_label"
        )
    }
    version = studyapp.__version__
    for g in groupings:
        p = g.participant
        for image_id in sorted(g.assignment, key=int):
            index, pred, true = stimuli.get(int(image_id), ("", "", ""))
            yield {
                "participant": p.code,
                "prolific_pid": _external(p.prolific_pid, ids),
                "arm": p.arm.name,
                "batch": g.step_index,
                "stage": g.stage,
                "dataset": g.dataset,
                "set_index": g.set_index,
                "image_id": int(image_id),
                "dataset_index": index,
                "cluster": g.assignment[image_id],
                "predicted_class": pred,
                "true_label": true,
                "batch_purity": g.purity,
                "shown_at": g.shown_at.isoformat(),
                "saved_at": g.saved_at.isoformat(),
                "config_hash": p.config_hash,
                "software_version": version,
            }


def event_rows(*, study: Study, ids: str = "keep") -> Iterable[dict]:
    """One row per interaction event, oldest first per participant."""
    _check_ids(ids)
    events = (
        InteractionEvent.objects.filter(participant__study=study)
        .select_related("participant", "participant__arm")
        .order_by("participant__started_at", "participant_id", "at", "pk")
    )
    version = studyapp.__version__
    for e in events.iterator(chunk_size=2000):
        p = e.participant
        plan = p.plan or []
        step_kind = plan[e.step_index]["kind"] if 0 <= e.step_index < len(plan) else ""
        yield {
            "participant": p.code,
            "prolific_pid": _external(p.prolific_pid, ids),
            "arm": p.arm.name,
            "step_index": e.step_index,
            "step_kind": step_kind,
            "kind": e.kind,
            "payload": json.dumps(e.payload, sort_keys=True, separators=(",", ":")),
            "at": e.at.isoformat(),
            "config_hash": p.config_hash,
            "software_version": version,
        }
