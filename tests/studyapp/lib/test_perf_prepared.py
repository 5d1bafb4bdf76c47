"""studyapp.lib.perf.prepared: a read compiled once gives what the ORM gives, or is not cached."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from studyapp.lib.perf import prepared
from studyapp.lib.perf.prepared import PreparedRead, insert_one, update_one
from studyapp.studies import services
from studyapp.studies.models import Participant, TrialAnswer
from tests.studyapp.factories import learning_study

pytestmark = pytest.mark.django_db


def runs(slug: str, codes: list[str]):
    return Participant.objects.select_related("study", "arm").filter(study__slug=slug).filter(code__in=codes).order_by("pk")


def fields(p: Participant) -> dict:
    return {f.attname: getattr(p, f.attname) for f in Participant._meta.concrete_fields}


def test_a_prepared_read_gives_the_orm_rows_with_their_related_objects_and_compiles_once():
    study = learning_study()
    a, _ = services.participant_enroll(study=study, consent=True)
    b, _ = services.participant_enroll(study=study, consent=True)
    read: PreparedRead[Participant] = PreparedRead("test")
    for codes in ([a.code], [b.code], [a.code, b.code], ["nobody"]):
        expected = list(runs(study.slug, codes))
        with CaptureQueriesContext(connection) as ctx:
            got = read.fetch(len(codes), [study.slug, *codes], lambda c=codes: runs(study.slug, c))
        assert len(ctx.captured_queries) == 1
        assert [fields(p) for p in got] == [fields(p) for p in expected]
        # JSON and datetimes converted as the ORM does; the joined rows are objects, not queries.
        for p, e in zip(got, expected, strict=True):
            assert isinstance(p.plan, list) and p.plan == e.plan and p.started_at == e.started_at
            assert Participant.study.is_cached(p) and Participant.arm.is_cached(p)
            assert p.study.classes == e.study.classes and p.arm.feedback == e.arm.feedback
            assert not p._state.adding and p._state.db == "default"
    assert sorted(read._local.entries) == [1, 2]  # one compile per shape (IN of 1 or 2 codes), in this thread


def test_params_that_do_not_match_the_sql_or_are_not_plain_are_read_by_the_orm_uncached():
    study = learning_study()
    a, _ = services.participant_enroll(study=study, consent=True)
    read: PreparedRead[Participant] = PreparedRead("test")
    # Given in the wrong order: the compiled parameters differ, so nothing is stored.
    got = read.fetch("swapped", [a.code, study.slug], lambda: runs(study.slug, [a.code]))
    assert [p.pk for p in got] == [a.pk]
    assert "swapped" not in getattr(read._local, "entries", {})
    got = read.fetch("float", [study.slug, 1.5], lambda: runs(study.slug, [a.code]))
    assert [p.pk for p in got] == [a.pk] and "float" not in getattr(read._local, "entries", {})


@prepared.read
def runs_of(code: str, slug: str) -> QuerySet[Participant]:
    return Participant.objects.select_related("study", "arm").filter(code=code, study__slug=slug)


def test_a_function_of_plain_orm_is_read_from_its_sql_compiled_once_per_thread():
    study = learning_study()
    a, _ = services.participant_enroll(study=study, consent=True)
    b, _ = services.participant_enroll(study=study, consent=True)
    runs_of.prepared._local.__dict__.clear()
    for code in (a.code, b.code, "nobody"):
        expected = list(Participant.objects.select_related("study", "arm").filter(code=code, study__slug=study.slug))
        with CaptureQueriesContext(connection) as ctx:
            got = runs_of(code, study.slug)
        assert len(ctx.captured_queries) == 1
        assert [fields(p) for p in got] == [fields(p) for p in expected]
        assert all(Participant.study.is_cached(p) and p.study.pk == study.pk for p in got)
    assert list(runs_of.prepared._local.entries) == [2]  # compiled once, for two arguments
    assert [p.pk for p in runs_of(a.code, slug=study.slug)] == [a.pk]  # keywords: the ORM, uncached


def test_a_prepared_locking_read_locks_in_a_transaction():
    study = learning_study()
    a, _ = services.participant_enroll(study=study, consent=True)
    read: PreparedRead[Participant] = PreparedRead("test")

    def locked():
        return runs(study.slug, [a.code]).select_for_update(of=("self",))

    with transaction.atomic(), CaptureQueriesContext(connection) as ctx:
        assert [p.pk for p in read.fetch("lock", [study.slug, a.code], locked)] == [a.pk]
        assert [p.pk for p in read.fetch("lock", [study.slug, a.code], locked)] == [a.pk]
    sql = [q["sql"] for q in ctx.captured_queries if "SELECT" in q["sql"]]
    assert len(sql) == 2 and sql[0] == sql[1]
    if connection.features.has_select_for_update:
        assert all("FOR UPDATE" in s for s in sql)


def test_insert_one_stores_the_row_the_orm_would_in_one_query_and_a_repeat_breaks_the_constraint():
    study = learning_study()
    p, _ = services.participant_enroll(study=study, consent=True)
    stimulus = study.stimuli.first()
    now = timezone.now()
    values = {"participant": p, "stimulus_id": stimulus.pk, "choice": 3, "correct_label": 7, "correct": False,
              "shown_at": now, "answered_at": now, "response_ms": 1200, "client_response_ms": None}
    with CaptureQueriesContext(connection) as ctx:
        ours = insert_one(TrialAnswer(trial_index=0, **values))
    assert len(ctx.captured_queries) == 1
    theirs = TrialAnswer.objects.create(trial_index=1, **values)
    assert ours.pk and ours.pk != theirs.pk and not ours._state.adding and ours._state.db == "default"
    stored = {a.trial_index: {f.attname: getattr(a, f.attname) for f in TrialAnswer._meta.concrete_fields if f.name != "id"}
              for a in TrialAnswer.objects.filter(participant=p)}
    assert stored[0] == {**stored[1], "trial_index": 0}  # the same row as the ORM's, datetimes and all
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_one(TrialAnswer(trial_index=0, **values))
    assert TrialAnswer.objects.filter(participant=p).count() == 2
    with pytest.raises(ValueError):
        insert_one(ours)  # not a new row


def test_update_one_updates_only_where_the_condition_row_exists_in_one_query_each():
    study = learning_study()
    p, _ = services.participant_enroll(study=study, consent=True)
    step, now = p.step_index, timezone.now()
    answered = (TrialAnswer, {"participant": p.pk, "trial_index": 0})
    with CaptureQueriesContext(connection) as ctx:
        moved = update_one(p, {"step_index": step + 1, "last_seen_at": now}, if_exists=answered)
    assert (moved, len(ctx.captured_queries), p.step_index) == (False, 1, step)  # no answer yet: unchanged
    TrialAnswer.objects.create(participant=p, trial_index=0, stimulus=study.stimuli.first(), choice=3, correct_label=3,
                               correct=True, shown_at=now, answered_at=now, response_ms=5)
    with CaptureQueriesContext(connection) as ctx:
        moved = update_one(p, {"step_index": step + 1, "last_seen_at": now}, if_exists=answered)
    assert (moved, len(ctx.captured_queries), p.step_index) == (True, 1, step + 1)
    stored = Participant.objects.get(pk=p.pk)
    assert (stored.step_index, stored.last_seen_at) == (step + 1, now)
