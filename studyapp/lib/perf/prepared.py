"""The participant flow's hot reads and writes, with their SQL built once instead of per request.

Building and compiling a query costs Django's ORM about a millisecond of CPU, more than SQLite
takes to answer it; the participant API's hot reads (the run of a request, with its study and
arm; a trial's saved answer) and its two hot writes (a step's UPDATE, a trial's INSERT) run with
the same SQL thousands of times, only the values change. Measured with
``benchmarks/load_participants.py`` (``STUDY_PERF_PREPARED=0`` switches all of this off): server
CPU per API request 2.5-3.0 ms with, 4.3-4.9 ms without, in one sitting (see :mod:`studyapp.lib.perf.switches`).

- :func:`read` decorates a function that returns a plain ORM query of its arguments (the domain
  code stays plain ORM); the first call in a thread compiles it, later calls execute the stored
  SQL with the new arguments and build the instances as Django's ``ModelIterable`` does
  (``select_related`` objects, the database's converters: JSON, datetimes).
- :func:`insert_one` and :func:`update_one` build their SQL from the model's metadata, once per
  model and shape, and prepare every value through the field's own ``pre_save`` and
  ``get_db_prep_save`` (public field API).

It stays correct by construction, or it does not cache: the first compile must produce exactly
the function's arguments as the SQL's parameters, in order, and every argument must be a ``str``
or an ``int`` (types Django passes through unchanged); otherwise the read is done by the ORM,
every time, uncached. The stored compiler belongs to the thread's own connection object; another
one recompiles. ``select_for_update`` outside a transaction raises as Django does.

The reads use Django's compiler internals (``select``, ``klass_info``,
``get_related_populators``), as ``ModelIterable`` does in Django 5.2: the one place in the site
that does; the participant flow's tests run every read through it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar

from django.db import connections, router
from django.db.models import Exists, Model, QuerySet
from django.db.models.query import get_related_populators
from django.db.transaction import TransactionManagementError

from studyapp.lib.perf import switches

M = TypeVar("M", bound=Model)
P = ParamSpec("P")


@dataclass
class _Compiled:
    connection: Any
    sql: str
    compiler: Any
    converters: dict
    init_list: list[str]
    start: int
    end: int
    populators: list
    annotations: dict[str, int]
    for_update: bool


class PreparedRead(Generic[M]):
    """One read of the flow, its SQL kept per thread and key (see the module's docstring)."""

    def __init__(self, name: str):
        self.name = name
        self._local = threading.local()

    def fetch(self, key: Hashable, params: Sequence[object], build: Callable[[], QuerySet[M]], *, using: str = "default") -> list[M]:
        """The rows of ``build()`` (a query whose SQL parameters are ``params``, in order)."""
        connection = connections[using]
        if not switches.PREPARED or not all(type(p) in (str, int) for p in params):
            return list(build())
        entries: dict = self._local.__dict__.setdefault("entries", {})
        entry = entries.get(key)
        if entry is None or entry.connection is not connection:
            entry = self._compile(build(), params, connection, using)
            if entry is None:
                return list(build())
            entries[key] = entry
        return self._run(entry, list(params), using)

    def _compile(self, qs: QuerySet[M], params: Sequence[object], connection, using: str) -> _Compiled | None:
        if qs._prefetch_related_lookups or qs._known_related_objects or qs.query.is_empty():
            return None
        compiler = qs.query.get_compiler(using=using)
        if connection.get_autocommit() and qs.query.select_for_update:
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        sql, compiled = compiler.as_sql()
        if tuple(compiled) != tuple(params):
            return None
        select, klass_info = compiler.select, compiler.klass_info
        fields = klass_info["select_fields"]
        start, end = fields[0], fields[-1] + 1
        return _Compiled(
            connection=connection,
            sql=sql,
            compiler=compiler,
            converters=compiler.get_converters([s[0] for s in select[: compiler.col_count]]),
            init_list=[f[0].target.attname for f in select[start:end]],
            start=start,
            end=end,
            populators=get_related_populators(klass_info, select, using),
            annotations=dict(compiler.annotation_col_map or {}),
            for_update=bool(qs.query.select_for_update),
        )

    def _run(self, entry: _Compiled, params: list, using: str) -> list[M]:
        if entry.for_update and entry.connection.get_autocommit():
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        with entry.connection.cursor() as cursor:
            cursor.execute(entry.sql, params)
            rows = cursor.fetchall()
        if entry.converters:
            rows = list(entry.compiler.apply_converters(rows, entry.converters))
        model = entry.compiler.klass_info["model"]
        out = []
        for row in rows:
            obj = model.from_db(using, entry.init_list, row[entry.start : entry.end])
            for populator in entry.populators:
                populator.populate(row, obj)
            for name, position in entry.annotations.items():
                setattr(obj, name, row[position])
            out.append(obj)
        return out


def read(query: Callable[P, QuerySet[M]]) -> Callable[P, list[M]]:
    """``query`` (a function of ``str``/``int`` arguments returning a plain ORM query whose SQL
    parameters are those arguments, in order) made to return its rows, its SQL compiled once per
    thread (see the module's docstring)."""
    prepared: PreparedRead[M] = PreparedRead(query.__qualname__)

    @functools.wraps(query)
    def rows(*args: P.args, **kwargs: P.kwargs) -> list[M]:
        if kwargs:
            return list(query(*args, **kwargs))
        return prepared.fetch(len(args), args, lambda: query(*args))

    rows.prepared = prepared  # type: ignore[attr-defined]  # tests look at what it compiled
    return rows


# The hot writes' SQL, by database vendor, model and shape (built from the models' metadata).
_WRITE_SQL: dict[tuple, str] = {}


def _writer(model: type[Model], using: str | None):
    return connections[using or router.db_for_write(model)]


def insert_one(obj: M, *, using: str | None = None) -> M:
    """Insert the new instance ``obj`` in one statement and set its primary key, as
    ``objects.create`` would (``save(force_insert=True)``), without the ORM's per-call compile.

    For the flow's hot write, a trial's answer: the SQL (every concrete column but the
    auto-incremented key) is built once per model and database vendor; each value goes through
    its field's ``pre_save`` and ``get_db_prep_save``, as Django's insert does. No ``pre_save`` /
    ``post_save`` signals are sent (use ``create`` for a model that has receivers). A database
    error (the unique constraint of a repeated answer) is raised as Django's own.
    """
    meta = obj._meta
    if not switches.PREPARED:
        obj.save(force_insert=True, using=using)
        return obj
    if not meta.pk.db_returning or obj.pk is not None:
        raise ValueError("insert_one is for new rows of a model with an auto-incremented key")
    connection = _writer(type(obj), using)
    fields = [f for f in meta.local_concrete_fields if f is not meta.pk]
    returning = connection.features.can_return_columns_from_insert
    key = ("insert", connection.vendor, meta.label)
    sql = _WRITE_SQL.get(key)
    if sql is None:
        qn = connection.ops.quote_name
        columns = ", ".join(qn(f.column) for f in fields)
        sql = f"INSERT INTO {qn(meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"  # noqa: S608 - names from the model, values as parameters
        if returning:
            sql += f" RETURNING {qn(meta.pk.column)}"
        _WRITE_SQL[key] = sql
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        obj.pk = cursor.fetchone()[0] if returning else connection.ops.last_insert_id(cursor, meta.db_table, meta.pk.column)
    obj._state.adding = False
    obj._state.db = connection.alias
    return obj


def update_one(
    obj: Model, values: dict[str, Any], *, if_exists: tuple[type[Model], dict[str, Any]] | None = None, using: str | None = None
) -> bool:
    """``type(obj).objects.filter(pk=obj.pk).update(**values)`` in one statement whose SQL is
    built once per model, set of columns and condition; then ``values`` are set on ``obj``.

    ``if_exists=(Model, {field: value})`` updates only if such a row exists, tested by the same
    statement (``AND EXISTS (SELECT 1 ...)``). Values go through each field's
    ``get_db_prep_save`` (``get_db_prep_value`` in the condition), as the ORM sends them. Like
    ``update()``, no signals and no ``auto_now``. Returns whether the row was updated.
    """
    meta = obj._meta
    if not switches.PREPARED:  # what it stands for, through the ORM
        rows = type(obj)._default_manager.using(using).filter(pk=obj.pk)
        if if_exists is not None:
            rows = rows.filter(Exists(if_exists[0]._default_manager.filter(**if_exists[1])))
        if rows.update(**values) != 1:
            return False
        for name, value in values.items():
            setattr(obj, name, value)
        return True
    connection = _writer(type(obj), using)
    other, where = if_exists if if_exists is not None else (None, {})
    key = ("update", connection.vendor, meta.label, tuple(values), other and other._meta.label, tuple(where))
    sql = _WRITE_SQL.get(key)
    if sql is None:
        qn = connection.ops.quote_name
        sets = ", ".join(f"{qn(meta.get_field(name).column)} = %s" for name in values)
        sql = f"UPDATE {qn(meta.db_table)} SET {sets} WHERE {qn(meta.pk.column)} = %s"  # noqa: S608 - names from the models, values as parameters
        if other is not None:
            test = " AND ".join(f"{qn(other._meta.get_field(name).column)} = %s" for name in where)
            sql += f" AND EXISTS (SELECT 1 FROM {qn(other._meta.db_table)} WHERE {test})"  # noqa: S608 - as above
        _WRITE_SQL[key] = sql
    params = [meta.get_field(name).get_db_prep_save(value, connection) for name, value in values.items()]
    params.append(obj.pk)
    if other is not None:
        params += [other._meta.get_field(name).get_db_prep_value(value, connection) for name, value in where.items()]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount != 1:
            return False
    for name, value in values.items():
        setattr(obj, name, value)
    return True
