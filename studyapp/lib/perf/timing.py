"""Where a request's time goes on the server, in a ``Server-Timing`` response header.

On only with ``STUDY_PERF_TIMING=1`` (the load benchmark sets it): then the settings wrap the
middleware in :data:`OUTER` (first) and :data:`INNER` (last, around the view), and every response
says, in milliseconds, where its time on the server went. The stages are *exclusive*: a stage
timed inside another (a query inside the session's save) counts to the inner one only, so

    middleware + view + throttle + session + lock + db + render == app

(to the clock's resolution), and nothing is left over as "other":

- ``queue``: from the client's ``X-Request-Start: t=<epoch seconds>`` (sent just before the
  request) to the moment the worker's thread took it up: the listen queue, gunicorn's accept and
  parse, the wait for a free thread (on loopback the two clocks are one); not part of ``app``;
- ``middleware``: Django's middleware around the view (security, sessions, CSRF, messages ...)
  and the handler's URL resolution, less the stages below;
- ``view``: the view's own Python (DRF's dispatch, the step logic), less the stages below;
- ``throttle``: the participant throttle (:mod:`studyapp.lib.perf.throttle`);
- ``session``: loading and saving the session (:mod:`studyapp.lib.perf.sessions`; the cache read
  and write, its database row's write is ``lock`` + ``db``);
- ``lock``: waiting for the database's write lock (the SQLite lock file, ``BEGIN``, a
  ``SELECT ... FOR UPDATE``);
- ``db``: every other query (``connection.execute_wrapper``);
- ``render``: turning the response into bytes (DRF's renderer, a template);
- ``app``: from the outer middleware's start to its end: all of the above;
- ``cpu``: the CPU time of the request's thread over ``app`` (overlaps the others): ``app - cpu``
  is time the thread waited (the GIL, a lock, the disk, the collector);
- ``gc``: the collector's passes in this process while the request ran (overlaps the others:
  they stop every thread);
- ``held``: how long the request's connection held SQLite's write lock file
  (:mod:`studyapp.lib.perf.sqlite`; overlaps the others): while it holds it, every other writer
  waits in ``lock``.

What happens after the header is written (gunicorn writing the response to the socket, Django's
``request_finished`` closing or returning the database connection) cannot be in the header; the
load benchmark shows it with the network's way back and its own event loop as ``client``.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections

OUTER = "studyapp.lib.perf.timing.StageTimingMiddleware"
INNER = "studyapp.lib.perf.timing.ViewTimingMiddleware"

#: The exclusive stages, which add up to ``app``.
EXCLUSIVE = ("middleware", "view", "throttle", "session", "lock", "db", "render")

_local = threading.local()
_gc = {"total": 0.0, "started": 0.0}


def with_timing(middleware: list[str]) -> list[str]:
    """``middleware`` wrapped in the timing middleware: :data:`OUTER` first, :data:`INNER` last."""
    return [OUTER, *(m for m in middleware if m not in (OUTER, INNER)), INNER]


def _gc_callback(phase: str, info: dict) -> None:
    if phase == "start":
        _gc["started"] = time.perf_counter()
    elif _gc["started"]:
        _gc["total"] += time.perf_counter() - _gc["started"]
        _gc["started"] = 0.0


class _Clock:
    """The stages of the request one thread serves: a stack of open stages, each [name, since]."""

    __slots__ = ("extra", "stack", "stages")

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.stack: list[list] = []
        self.extra: dict[str, float] = {}  # overlapping measures (see note)

    def enter(self, name: str) -> None:
        now = time.perf_counter()
        if self.stack:  # the enclosing stage pauses
            outer = self.stack[-1]
            self.stages[outer[0]] = self.stages.get(outer[0], 0.0) + now - outer[1]
        self.stack.append([name, now])

    def leave(self) -> None:
        now = time.perf_counter()
        name, since = self.stack.pop()
        self.stages[name] = self.stages.get(name, 0.0) + now - since
        if self.stack:  # the enclosing stage goes on
            self.stack[-1][1] = now


def _clock() -> _Clock | None:
    return getattr(_local, "clock", None)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block as stage ``name`` of the current request (nothing when timing is off)."""
    clock = _clock()
    if clock is None:
        yield
        return
    clock.enter(name)
    try:
        yield
    finally:
        clock.leave()


def note(name: str, seconds: float) -> None:
    """Add ``seconds`` to measure ``name`` of the current request, one that overlaps the stages
    (``held``: the time the request's connection held SQLite's write lock file)."""
    clock = _clock()
    if clock is not None:
        clock.extra[name] = clock.extra.get(name, 0.0) + seconds


def _timed_query(execute, sql, params, many, context):
    head = sql.lstrip()[:6].upper() if isinstance(sql, str) else ""
    locking = head == "BEGIN" or (isinstance(sql, str) and "FOR UPDATE" in sql)
    with stage("lock" if locking else "db"):
        return execute(sql, params, many, context)


def _request_start(request) -> float | None:
    raw = request.META.get("HTTP_X_REQUEST_START", "")
    if not raw.startswith("t="):
        return None
    try:
        return float(raw[2:])
    except ValueError:
        return None


class StageTimingMiddleware:
    """The outer one (first in MIDDLEWARE): opens the request's clock and writes the header."""

    def __init__(self, get_response):
        self.get_response = get_response
        if _gc_callback not in gc.callbacks:
            gc.callbacks.append(_gc_callback)

    def __call__(self, request):
        taken_up, t0, cpu0, gc0 = time.time(), time.perf_counter(), time.thread_time(), _gc["total"]
        _local.clock = clock = _Clock()
        clock.enter("middleware")
        try:
            with connections["default"].execute_wrapper(_timed_query):
                response = self.get_response(request)
        finally:
            while clock.stack:  # the middleware's own stage (and any left open by an exception)
                clock.leave()
            _local.clock = None
        stages = clock.stages
        for name in EXCLUSIVE:
            stages.setdefault(name, 0.0)
        stages["app"] = time.perf_counter() - t0
        stages["cpu"] = time.thread_time() - cpu0
        stages["gc"] = _gc["total"] - gc0
        stages.update(clock.extra)
        start = _request_start(request)
        if start is not None:
            stages["queue"] = max(0.0, taken_up - start)
        response["Server-Timing"] = ", ".join(f"{name};dur={1000 * value:.2f}" for name, value in stages.items())
        return response


class ViewTimingMiddleware:
    """The inner one (last in MIDDLEWARE): the view, and its response's rendering."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with stage("view"):
            return self.get_response(request)

    def process_template_response(self, request, response):
        render = response.render

        def timed_render():
            with stage("render"):
                return render()

        response.render = timed_render
        return response
