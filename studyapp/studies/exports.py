"""Every CSV a researcher downloads: tidy, wide, groupings and interaction events.

- ``tidy``: one row per trial (`tidy_rows`); the learning analysis and `importing` read it.
  ``explanation_apem``, ``explanation_eps_minus`` and ``explanation_eps_plus`` are the APEM
  numbers of the heatmap the trial's arm showed (its newest valid asset, as served); empty for
  arms that show no heatmap (control, morphs) or an asset stored before APEM was measured.
  Per-trial provenance (`PROVENANCE_COLUMNS`): the explanation asset the trial's arm showed
  (``explanation_asset_id``; ``explanation_content_hash``, the sha256 of the JSON object
  ``{role: sha256 of that file's bytes}`` over the asset's files, which are stored under their
  own sha256; ``explanation_params_hash``, the hash of everything that determined it), the
  classifier whose prediction the trial showed and, for the morph arms, the generator (ids and
  ``*_checkpoint_sha256``, the sha256 of the checkpoint file) and ``dataset_fingerprint`` (the
  sha256 of the imported arrays). The asset is the one the run's plan pinned at enrolment (what
  the trial showed); for a run enrolled before assets were pinned, the newest valid one of the
  arm's method created no later than the trial was shown, else the newest; empty for the control arm.
- ``wide``: one row per participant, with their questionnaire answers and per-trial columns
  (`wide_rows`); `importing` takes it as the participants file.
- ``groupings``: one row per image placed in a grouping (Study B), in the tidy schema that
  `stats.clustering` reads (``participant, stage, dataset, image_id, cluster,
  predicted_class, batch``) and that `importing` accepts back (`grouping_rows`).
- ``events``: one row per interaction event (e.g. replaying an animation, leaving the tab),
  with the kind of step it happened on and the payload as JSON (`event_rows`).

- ``checks``: one row per comprehension-quiz try and catch item, with what was answered and
  whether it passed (`check_rows`); the wide file sums them per run (``attention_check``).

The facts of a run the wide file and the analysis frames share (``total_seconds``,
``attention_check``, ``quiz_passed``, ``stale``) are `studyapp.studies.facts`'s, defined once.

Tidy rows also carry the exposure of each trial (`EXPOSURE_COLUMNS`, see `_Exposure`). Test runs
(staff previews and pilots) are left out of every export unless asked for (``?test=1``).

`export_csv` makes any of them; the admin serves them all at one URL,
``/admin/studies/study/<id>/export/<kind>.csv?ids=keep|hash|drop``. Each row carries the
participant's configuration hash, the number of the study version the run was enrolled under
(``study_version``: `versions`; empty for a run older than versions) and the software version.
External ids can be kept, dropped or hashed: ``hash`` is an HMAC-SHA256 keyed with
``EXPORT_ID_HMAC_KEY`` (by default the secret key), so hashes are stable within a deployment and
cannot be recomputed from a guessed Prolific id without the key. Rotating the key changes every
hash: keep it as long as exports of one study must be joined.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from bisect import bisect_right
from collections.abc import Iterable
from pathlib import PurePosixPath

from django.conf import settings
from django.utils import timezone

import studyapp
from studyapp.pipeline.models import ExplanationAsset, Stimulus, TrainedModel
from studyapp.studies import facts
from studyapp.studies.models import (
    CheckAnswer,
    Grouping,
    InteractionEvent,
    Participant,
    QuestionAnswer,
    Study,
    TrialAnswer,
)
from studyapp.studies.selectors import FEEDBACK_METHOD
from studyapp.studies.steps import registry
from studyapp.studies.steps.base import ShownTimes, step_of
from studyapp.studies.steps.trial import Trial

ID_MODES = ("keep", "drop", "hash")
KINDS = ("tidy", "wide", "groupings", "events", "checks")

TIDY_COLUMNS = [
    "participant", "prolific_pid", "arm", "feedback", "trial_index", "phase", "item_kind", "stimulus_id", "dataset_index",
    "true_label", "model_prediction", "correct_label", "choice", "correct", "response_ms",
    "shown_at", "answered_at", "explanation_apem", "explanation_eps_minus", "explanation_eps_plus",
    "explanation_asset_id", "explanation_content_hash", "explanation_params_hash", "explanation_colormap",
    "classifier_id", "classifier_checkpoint_sha256", "generator_id", "generator_checkpoint_sha256",
    "dataset_fingerprint", "client_response_ms", "cleaned_response_ms", "hidden_ms", "feedback_ms",
    "feedback_visible_ms", "animation_completed", "replays", "config_hash", "study_version", "software_version",
]
#: The exposure columns of a tidy row (see `_Exposure`).
EXPOSURE_COLUMNS = (
    "client_response_ms", "cleaned_response_ms", "hidden_ms", "feedback_ms", "feedback_visible_ms",
    "animation_completed", "replays",
)

_APEM_COLUMNS = {"explanation_apem": "apem", "explanation_eps_minus": "eps_minus", "explanation_eps_plus": "eps_plus"}
_ASSET_COLUMNS = (
    *_APEM_COLUMNS, "explanation_asset_id", "explanation_content_hash", "explanation_params_hash",
    "explanation_colormap", "generator_id", "generator_checkpoint_sha256",
)
#: The provenance columns of a tidy row (see the module docstring).
PROVENANCE_COLUMNS = (
    "explanation_asset_id", "explanation_content_hash", "explanation_params_hash", "classifier_id",
    "classifier_checkpoint_sha256", "generator_id", "generator_checkpoint_sha256", "dataset_fingerprint",
)


def _file_sha256(path: str) -> str:
    """The sha256 a stored file is named by (``<folder>/<h[:2]>/<sha256>.<ext>``), or ``""``."""
    return PurePosixPath(path).stem if path else ""


def content_hash(files: dict) -> str:
    """The content hash of an asset: sha256 of ``{role: sha256 of the file's bytes}`` as JSON."""
    named = {role: _file_sha256(path) for role, path in (files or {}).items()}
    return hashlib.sha256(json.dumps(named, sort_keys=True).encode()).hexdigest()


def asset_colormap(method: str, params: dict | None) -> str:
    """The colour map a heatmap asset was drawn in (its parameters say so; heatmaps made before
    the colour map was a choice were jet), ``""`` for an asset that is not a heatmap."""
    from studyapp.pipeline.params import HEATMAP_METHODS

    if method not in HEATMAP_METHODS:
        return ""
    return str((params or {}).get("colormap") or "jet")


class _ShownAssets:
    """(stimulus id, feedback) -> the columns of the asset that arm showed (two queries)."""

    def __init__(self, study: Study) -> None:
        methods = {m: f for f, m in FEEDBACK_METHOD.items() if m}
        rows = list(
            ExplanationAsset.objects.filter(stimulus__study=study, method__in=list(methods), valid=True)
            .order_by("created_at", "pk")
            .values_list("pk", "stimulus_id", "method", "metrics", "files", "params", "params_hash", "created_at")
        )
        generator_ids = {p.get("generator_id") for *_, p, _h, _c in rows if isinstance(p, dict)} - {None}
        checkpoints = dict(TrainedModel.objects.filter(pk__in=generator_ids).values_list("pk", "checkpoint")) if generator_ids else {}
        self._by_key: dict[tuple[int, str], tuple[list, list[dict]]] = {}
        self._by_pk: dict[int, dict] = {}
        for pk, stimulus_id, method, numbers, files, params, params_hash, created_at in rows:  # oldest first
            numbers = numbers or {}
            columns = dict.fromkeys(_ASSET_COLUMNS, "")
            if "apem" in numbers and not isinstance(numbers["apem"], list):
                columns.update({col: numbers[key] for col, key in _APEM_COLUMNS.items()})
            generator_id = (params or {}).get("generator_id")
            columns.update({
                "explanation_asset_id": pk, "explanation_content_hash": content_hash(files),
                "explanation_params_hash": params_hash,
                "explanation_colormap": asset_colormap(method, params),
                "generator_id": "" if generator_id is None else generator_id,
                "generator_checkpoint_sha256": _file_sha256(checkpoints.get(generator_id, "")),
            })
            times, facts = self._by_key.setdefault((stimulus_id, methods[method]), ([], []))
            times.append(created_at)
            facts.append(columns)
            self._by_pk[pk] = columns

    def get(self, stimulus_id: int, feedback: str, shown_at, pinned: int | None = None) -> dict | None:
        """The asset the run's plan pinned (``pinned``), else the newest valid asset created no
        later than ``shown_at`` (as served then), else the newest."""
        if pinned in self._by_pk:
            return self._by_pk[pinned]
        found = self._by_key.get((stimulus_id, feedback))
        if found is None:
            return None
        times, facts = found
        k = bisect_right(times, shown_at)
        return facts[k - 1] if k else facts[-1]


def _n_extensions(used: dict | None) -> int:
    """Every extension of a time limit the run asked for (the study's and its steps')."""
    used = used or {}
    return int(used.get("study", 0)) + sum(int(n) for n in (used.get("steps") or {}).values())


def _check_ids(ids: str) -> None:
    if ids not in ID_MODES:
        raise ValueError(f"ids must be one of {ID_MODES}")


def _external(value: str, mode: str) -> str:
    _check_ids(mode)
    if not value or mode == "drop":
        return ""
    if mode == "hash":
        key = (settings.EXPORT_ID_HMAC_KEY or settings.SECRET_KEY).encode()
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:16]
    return value


def _version(p: Participant) -> int | str:
    """The number of the version the run was enrolled under (joined by the query), or ``""``."""
    return p.version.number if p.version_id else ""


def _pinned_asset(p: Participant, trial_index: int, feedback: str) -> int | None:
    index = registry.trial_step(p.plan, trial_index)
    return (p.plan[index].get("assets") or {}).get(FEEDBACK_METHOD.get(feedback)) if index is not None else None


def _trial_facts(p: Participant, trial_index: int) -> tuple[str, str, bool]:
    """(phase, item kind, whether an explanation went with the answer) of a run's trial, as its step
    class says (`Trial.answer_facts`); blank for an answer whose step is not in the plan."""
    index = registry.trial_step(p.plan, trial_index)
    step = step_of(p.plan[index]) if index is not None else None
    return step.answer_facts() if isinstance(step, Trial) else ("", "", True)


def _runs(study: Study, include_test: bool, prefix: str = "participant__") -> dict:
    """The filter of a study's runs: test runs (previews, pilots) only when asked for."""
    where = {f"{prefix}study": study} if prefix else {"study": study}
    if not include_test:
        where[f"{prefix}is_test"] = False
    return where


class _Exposure:
    """Per trial, how long and how fully its stimulus and feedback were seen (five queries):

    - ``client_response_ms``: the browser's own response time, as it reported it;
    - ``hidden_ms``: time the tab was hidden on the trial's step (the page's ``visible`` events
      carry the hidden spell's length); ``cleaned_response_ms``: ``response_ms`` less the hidden
      time before the answer;
    - ``feedback_ms``: from the answer saved to the next step shown (the server's times: the next
      step's answer row records when it was shown); ``feedback_visible_ms`` less the hidden time
      after the answer; empty while the next step has no answer yet;
    - ``animation_completed`` (morph arms): whether the page reported the animation's end;
      ``replays``: how many times it was replayed.
    """

    KINDS = ("visible", "animation_end", "replay")

    def __init__(self, study: Study, include_test: bool) -> None:
        where = _runs(study, include_test)
        self.shown = ShownTimes()
        self.shown.trial = {
            (pid, trial): shown for pid, trial, shown in TrialAnswer.objects.filter(**where).values_list("participant_id", "trial_index", "shown_at")
        }
        for model in (Grouping, CheckAnswer):
            for pid, step, shown in model.objects.filter(**where).values_list("participant_id", "step_index", "shown_at"):
                self.shown.step.setdefault((pid, step), shown)
        self.shown.question = {
            (pid, key): shown for pid, key, shown in QuestionAnswer.objects.filter(**where).values_list("participant_id", "key", "shown_at")
        }
        self.events: dict[tuple[int, int], list[tuple[str, dict]]] = {}
        for pid, step, kind, payload in InteractionEvent.objects.filter(kind__in=self.KINDS, **where).values_list(
            "participant_id", "step_index", "kind", "payload"
        ):
            self.events.setdefault((pid, step), []).append((kind, payload or {}))

    def _next_shown(self, p: Participant, step_index: int):
        """When the step after ``step_index`` was shown, as its answer row recorded it."""
        nxt = step_index + 1
        if nxt >= len(p.plan):
            return None
        return registry.step_of(p.plan[nxt]).shown_at(self.shown, p, nxt)

    def columns(self, p: Participant, a: TrialAnswer) -> dict:
        step_index = registry.trial_step(p.plan, a.trial_index)
        events = self.events.get((p.pk, step_index), []) if step_index is not None else []
        hidden_before = sum(_ms(e.get("hidden_ms")) for k, e in events if k == "visible" and not e.get("answered"))
        hidden_after = sum(_ms(e.get("hidden_ms")) for k, e in events if k == "visible" and e.get("answered"))
        left = self._next_shown(p, step_index) if step_index is not None else None
        feedback_ms = max(0, int((left - a.answered_at).total_seconds() * 1000)) if left else ""
        morph = p.arm.feedback in ("cdeepex", "xgems")
        return {
            "client_response_ms": "" if a.client_response_ms is None else a.client_response_ms,
            "cleaned_response_ms": max(0, a.response_ms - hidden_before),
            "hidden_ms": hidden_before + hidden_after,
            "feedback_ms": feedback_ms,
            "feedback_visible_ms": "" if feedback_ms == "" else max(0, feedback_ms - hidden_after),
            "animation_completed": int(any(k == "animation_end" for k, _ in events)) if morph else "",
            "replays": sum(1 for k, _ in events if k == "replay"),
        }


def _ms(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 else 0


def tidy_rows(*, study: Study, ids: str = "keep", include_test: bool = False) -> Iterable[dict]:
    """One row per answered trial (test runs only with ``include_test``)."""
    answers = (
        TrialAnswer.objects.filter(**_runs(study, include_test))
        .select_related("participant", "participant__arm", "participant__version", "stimulus")
        .order_by("participant__started_at", "participant_id", "trial_index")
    )
    shown = _ShownAssets(study)
    exposure = _Exposure(study, include_test)
    blank = dict.fromkeys(_ASSET_COLUMNS, "")
    models = {  # stimulus id -> (classifier id, its checkpoint sha256, data set fingerprint)
        pk: (classifier_id, _file_sha256(checkpoint), fingerprint)
        for pk, classifier_id, checkpoint, fingerprint in Stimulus.objects.filter(study=study).values_list(
            "pk", "classifier_id", "classifier__checkpoint", "dataset__fingerprint"
        )
    }
    for a in answers.iterator(chunk_size=2000):
        p = a.participant
        classifier_id, classifier_sha, data_fingerprint = models.get(a.stimulus_id, ("", "", ""))
        phase, item_kind, explained = _trial_facts(p, a.trial_index)
        yield {
            "participant": p.code,
            "prolific_pid": _external(p.prolific_pid, ids),
            "arm": p.arm.name,
            "feedback": p.arm.feedback,
            "trial_index": a.trial_index,
            "phase": phase,
            "item_kind": item_kind,
            "stimulus_id": a.stimulus_id,
            "dataset_index": a.stimulus.index,
            "true_label": a.stimulus.true_label,
            "model_prediction": a.stimulus.model_prediction,
            "correct_label": a.correct_label,
            "choice": a.choice,
            "correct": int(a.correct),
            "response_ms": a.response_ms,
            "shown_at": a.shown_at.isoformat(),
            "answered_at": a.answered_at.isoformat(),
            **((shown.get(a.stimulus_id, p.arm.feedback, a.shown_at, _pinned_asset(p, a.trial_index, p.arm.feedback)) if explained
                else None) or blank),
            "classifier_id": classifier_id,
            "classifier_checkpoint_sha256": classifier_sha,
            "dataset_fingerprint": data_fingerprint,
            **exposure.columns(p, a),
            "config_hash": p.config_hash,
            "study_version": _version(p),
            "software_version": studyapp.__version__,
        }


def wide_rows(*, study: Study, ids: str = "keep", include_test: bool = False) -> tuple[list[str], list[dict]]:
    participants = list(
        Participant.objects.filter(**_runs(study, include_test, prefix=""))
        .annotate(slot=facts.slot_state(study, timezone.now()))
        .select_related("arm", "version").order_by("started_at", "pk")
    )
    attempts = facts.quiz_attempts(study=study)
    answers: dict[int, dict[int, TrialAnswer]] = {}
    for a in TrialAnswer.objects.filter(**_runs(study, include_test)):
        answers.setdefault(a.participant_id, {})[a.trial_index] = a
    checks: dict[int, list[CheckAnswer]] = {}
    for c in CheckAnswer.objects.filter(**_runs(study, include_test)).order_by("step_index", "attempt"):
        checks.setdefault(c.participant_id, []).append(c)
    questions: dict[int, dict[str, object]] = {}
    keys: list[str] = []
    for q in QuestionAnswer.objects.filter(**_runs(study, include_test)).order_by("pk"):
        questions.setdefault(q.participant_id, {})[q.key] = q.value
        if q.key not in keys:
            keys.append(q.key)
    n_trials = max([study.n_trials] + [max(d) + 1 for d in answers.values() if d])
    columns = [
        "participant", "prolific_pid", "prolific_study_id", "prolific_session_id", "arm", "feedback", "status",
        "is_test", "stale", "rejected_reason", "consent_at", "started_at", "finished_at", "total_seconds", "n_answered",
        "n_correct", "quiz_attempts", "quiz_passed", "catch_passed", "catch_failed", "attention_check",
        "time_extensions", *keys,
    ]
    columns += [f"correct_{i + 1}" for i in range(n_trials)] + [f"rt_ms_{i + 1}" for i in range(n_trials)]
    columns += ["config_hash", "study_version", "software_version"]
    rows = []
    for p in participants:
        mine = answers.get(p.pk, {})
        row = {
            "participant": p.code,
            "prolific_pid": _external(p.prolific_pid, ids),
            "prolific_study_id": _external(p.prolific_study_id, ids),
            "prolific_session_id": _external(p.prolific_session_id, ids),
            "arm": p.arm.name,
            "feedback": p.arm.feedback,
            "status": p.status,
            "is_test": int(p.is_test),
            "rejected_reason": p.rejected_reason,
            "time_extensions": _n_extensions(p.time_extensions),
            "consent_at": p.consent_at.isoformat() if p.consent_at else "",
            "started_at": p.started_at.isoformat(),
            "finished_at": p.finished_at.isoformat() if p.finished_at else "",
            "stale": int(p.slot == "stale"),
            "total_seconds": _blank(facts.total_seconds(
                status=p.status, plan=p.plan, step_index=p.step_index, started_at=p.started_at, finished_at=p.finished_at,
            )),
            "n_answered": len(mine),
            "n_correct": sum(a.correct for a in mine.values()),
            **_check_columns(checks.get(p.pk, []), status=p.status, attempts=attempts.get(p.version_id)),
            "config_hash": p.config_hash,
            "study_version": _version(p),
            "software_version": studyapp.__version__,
        }
        row.update({k: questions.get(p.pk, {}).get(k, "") for k in keys})
        for i in range(n_trials):
            a = mine.get(i)
            row[f"correct_{i + 1}"] = "" if a is None else int(a.correct)
            row[f"rt_ms_{i + 1}"] = "" if a is None else a.response_ms
        rows.append(row)
    return columns, rows


def _blank(value):
    return "" if value is None else value


def _check_columns(checks: list[CheckAnswer], *, status: str, attempts: int | None) -> dict:
    """A run's checks: quiz tries and its verdict, catch items passed and failed, and
    ``attention_check``, as `facts` judges them (0: a judged check failed, 1: every judged check
    passed, blank: none judged; a quiz with tries left in an active run is not judged yet)."""
    rows = [(c.kind, c.step_index, c.attempt, c.passed) for c in checks]
    quiz = [c for c in checks if c.kind == CheckAnswer.Kind.QUIZ]
    catch = [c for c in checks if c.kind == CheckAnswer.Kind.CATCH]
    quiz_passed = facts.quiz_verdict(rows, status=status, attempts=attempts)
    verdict = facts.attention_check(facts.check_verdicts(rows, status=status, attempts=attempts))
    return {
        "quiz_attempts": len(quiz) if quiz else "",
        "quiz_passed": "" if quiz_passed is None else int(quiz_passed),
        "catch_passed": sum(c.passed for c in catch) if catch else "",
        "catch_failed": sum(not c.passed for c in catch) if catch else "",
        "attention_check": "" if verdict is None else int(verdict),
    }


CHECK_COLUMNS = [
    "participant", "prolific_pid", "arm", "step_index", "kind", "item", "attempt", "answers", "passed",
    "shown_at", "answered_at", "config_hash", "study_version", "software_version",
]


def check_rows(*, study: Study, ids: str = "keep", include_test: bool = False) -> Iterable[dict]:
    """One row per quiz try and catch item: the ``attention_check`` data, per trial."""
    _check_ids(ids)
    rows = (
        CheckAnswer.objects.filter(**_runs(study, include_test))
        .select_related("participant", "participant__arm", "participant__version")
        .order_by("participant__started_at", "participant_id", "step_index", "attempt")
    )
    for c in rows:
        p = c.participant
        step = p.plan[c.step_index] if 0 <= c.step_index < len(p.plan) else {}
        yield {
            "participant": p.code,
            "prolific_pid": _external(p.prolific_pid, ids),
            "arm": p.arm.name,
            "step_index": c.step_index,
            "kind": c.kind,
            "item": step.get("catch", ""),
            "attempt": c.attempt,
            "answers": json.dumps(c.answers, sort_keys=True, separators=(",", ":")),
            "passed": int(c.passed),
            "shown_at": c.shown_at.isoformat(),
            "answered_at": c.answered_at.isoformat(),
            "config_hash": p.config_hash,
            "study_version": _version(p),
            "software_version": studyapp.__version__,
        }


GROUPING_COLUMNS = [
    "participant", "prolific_pid", "arm", "batch", "stage", "dataset", "set_index", "image_id",
    "dataset_index", "cluster", "predicted_class", "true_label", "batch_purity", "shown_at",
    "saved_at", "config_hash", "study_version", "software_version",
]
EVENT_COLUMNS = [
    "participant", "prolific_pid", "arm", "step_index", "step_kind", "kind", "payload", "at",
    "config_hash", "study_version", "software_version",
]


def grouping_rows(*, study: Study, ids: str = "keep", include_test: bool = False) -> Iterable[dict]:
    """One row per image of every saved grouping; ``batch`` is the plan step of the grouping."""
    _check_ids(ids)
    groupings = list(
        Grouping.objects.filter(**_runs(study, include_test))
        .select_related("participant", "participant__arm", "participant__version")
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
                "study_version": _version(p),
                "software_version": version,
            }


def event_rows(*, study: Study, ids: str = "keep", include_test: bool = False) -> Iterable[dict]:
    """One row per interaction event, oldest first per participant."""
    _check_ids(ids)
    events = (
        InteractionEvent.objects.filter(**_runs(study, include_test))
        .select_related("participant", "participant__arm", "participant__version")
        .order_by("participant__started_at", "participant_id", "at", "pk")
    )
    version = studyapp.__version__
    for e in events.iterator(chunk_size=2000):
        p = e.participant
        plan = p.plan or []
        step_kind = registry.kind_of(plan[e.step_index]) if 0 <= e.step_index < len(plan) else ""
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
            "study_version": _version(p),
            "software_version": version,
        }


def to_csv(columns: list[str], rows: Iterable[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue()


def export_csv(*, study: Study, kind: str, ids: str = "keep", include_test: bool = False) -> str:
    """The CSV text of one of `KINDS`; ``ValueError`` for an unknown kind or ids mode. Test runs
    (previews and pilots) are left out unless ``include_test``."""
    _check_ids(ids)
    if kind == "tidy":
        return to_csv(TIDY_COLUMNS, tidy_rows(study=study, ids=ids, include_test=include_test))
    if kind == "wide":
        columns, rows = wide_rows(study=study, ids=ids, include_test=include_test)
        return to_csv(columns, rows)
    if kind == "groupings":
        return to_csv(GROUPING_COLUMNS, grouping_rows(study=study, ids=ids, include_test=include_test))
    if kind == "events":
        return to_csv(EVENT_COLUMNS, event_rows(study=study, ids=ids, include_test=include_test))
    if kind == "checks":
        return to_csv(CHECK_COLUMNS, check_rows(study=study, ids=ids, include_test=include_test))
    raise ValueError(f"kind must be one of {KINDS}")
