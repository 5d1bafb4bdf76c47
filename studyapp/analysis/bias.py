"""The bias-discovery study's results as `stats.protocols.bias` takes them, and its analysis.

`bias_frame` reads the database into the protocol's long frame (one row per participant × item ×
phase): the cue answer (``bias_cue``: the chosen candidate's text, from ``config.bias.candidates``)
and the regions marked (``bias_mark_<item>`` on the image the run's plan showed), each with the
planted cue's box it is scored against: the study's declared ``config.bias.cue_box``, else the box
the study's classifier was trained with (``metadata["planted_cue"]``, ``train_models --plant-cue``).
`bias_results` runs `stats.protocols.bias.analyse` on it. `cued_items` says which of the
study's images carried the planted cue (``config.bias.cued_share``), the explained ones marked:
beside the frame, which stays the protocol's.
"""

from __future__ import annotations

import pandas as pd

from stats.protocols import bias as protocol
from stats.protocols.schema import ARM, ITEM, PARTICIPANT, PHASE
from stats.schema import AnalysisInputError
from studyapp.analysis.frames import protocol_runs
from studyapp.lib.study_config import BiasConfig
from studyapp.pipeline.models import TrainedModel
from studyapp.studies.designs.bias import cue_box_of
from studyapp.studies.errors import InvalidInput
from studyapp.studies.models import QuestionAnswer, Study
from studyapp.studies.selectors import servable_stimuli
from studyapp.studies.steps.bias import CUE_KEY, BiasMark, bias_config, parse_box

__all__ = ["bias_frame", "bias_results", "cued_items", "planted"]

COLUMNS = [PARTICIPANT, ARM, ITEM, PHASE, protocol.CHOSEN_CUE, *protocol.MARK_BOX, *protocol.CUE_BOX]


def planted(study: Study) -> tuple[BiasConfig, tuple[int, int, int, int]]:
    """The study's bias settings and the planted cue's box (``AnalysisInputError`` saying what is missing)."""
    try:
        config = bias_config(study)
    except InvalidInput as exc:
        raise AnalysisInputError(str(exc)) from None
    classifier_id = study.parsed_config.classifier_id
    metadata = TrainedModel.objects.filter(pk=classifier_id).values_list("metadata", flat=True).first() if classifier_id else None
    box = cue_box_of(config, metadata)
    if box is None:
        raise AnalysisInputError("the study's classifier has no planted cue and config.bias.cue_box is not set: nothing to score the marks against")
    return config, box


def bias_frame(study: Study, *, include_test: bool = False) -> pd.DataFrame:
    """The protocol's frame of ``study`` (test runs only with ``include_test``); 3 queries."""
    config, box = planted(study)
    runs, plans = protocol_runs(study, include_test=include_test)
    stimulus_of = {
        (pk, BiasMark.model_validate(plan[i]).mark_key): plan[i].get("stimulus")
        for pk, (_, plan) in plans.items() for i in BiasMark.positions_in(plan)
    }
    rows = []
    answers = QuestionAnswer.objects.filter(participant__in=runs, key__startswith="bias_").values_list("participant_id", "key", "value")
    for pid, key, value in answers.order_by("participant_id", "key"):
        arm = plans[pid][0]
        if key == CUE_KEY:
            chosen = config.candidates[value] if isinstance(value, int) and 0 <= value < len(config.candidates) else None
            rows.append({PARTICIPANT: pid, ARM: arm, ITEM: "cue-question", PHASE: protocol.CUE, protocol.CHOSEN_CUE: chosen})
        elif (pid, key) in stimulus_of:
            mark = dict(zip(protocol.MARK_BOX, parse_box(value), strict=True))
            rows.append({PARTICIPANT: pid, ARM: arm, ITEM: stimulus_of[(pid, key)], PHASE: protocol.MARK, **mark,
                         **dict(zip(protocol.CUE_BOX, box, strict=True))})
    return pd.DataFrame(rows, columns=COLUMNS)


def bias_results(study: Study, *, reference_arm: str = "Control", include_test: bool = False,
                 level: float = 0.95) -> protocol.BiasResult:
    """Share who found the planted cue and localisation error per arm, each arm against
    ``reference_arm`` (``AnalysisInputError`` when the data cannot give them)."""
    config, _ = planted(study)
    frame = bias_frame(study, include_test=include_test)
    if frame.empty:
        raise AnalysisInputError("no rows: nobody has answered the bias questions yet")
    arms = set(frame[ARM])
    return protocol.analyse(frame, planted_cue=config.planted_cue, reference_arm=reference_arm if reference_arm in arms else None,
                            level=level)


def cued_items(study: Study) -> pd.DataFrame:
    """One row per servable stimulus of ``study`` in order: ``stimulus`` (id, the frame's ``item``
    of a mark), ``explained`` (one of the ``n_explained`` every run is shown explained) and
    ``cued`` (it carried the planted cue, ``Stimulus.cued``); 2 queries (the arms' methods, the stimuli)."""
    try:
        n_explained = bias_config(study).n_explained
    except InvalidInput as exc:
        raise AnalysisInputError(str(exc)) from None
    rows = list(servable_stimuli(study=study).values_list("pk", "cued"))
    return pd.DataFrame([{"stimulus": pk, "explained": i < n_explained, "cued": bool(cued)} for i, (pk, cued) in enumerate(rows)],
                        columns=["stimulus", "explained", "cued"])
