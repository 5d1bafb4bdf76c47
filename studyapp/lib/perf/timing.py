"""Where a request's time goes on the server, in a ``Server-Timing`` response header.

On only with ``STUDY_PERF_TIMING=1`` (the load benchmark sets it): then the settings put
:class:`StageTimingMiddleware` first, and every response says, in milliseconds,

- ``queue``: from the client's ``X-Request-Start: t=<epoch seconds>`` (sent just before the
  request) to the moment the worker's thread took it up: the listen queue, gunicorn's accept and
  parse (on loopback the two clocks are one);
- ``throttle``: the participant throttle (:mod:`studyapp.lib.perf.throttle`);
- ``lock``: waiting for the database's write lock (the SQLite lock file, ``BEGIN``, a
  ``SELECT ... FOR UPDATE``);
- ``db``: every other query (``connection.execute_wrapper``);
- ``render``: turning the response into bytes;
- ``gc``: the garbage collector's passes in this process while the request ran (they stop every
  thread);
- ``app``: from the middleware's start to its end, all of the above but ``queue`` included.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections

_local = threading.local()
_gc = {"total": 0.0, "started": 0.0}


def _gc_callback(phase: str, info: dict) -> None:
    if phase == "start":
        _gc["started"] = time.perf_counter()
    elif _gc["started"]:
        _gc["total"] += time.perf_counter() - _gc["started"]
        _gc["started"] = 0.0


def _stages() -> dict[str, float] | None:
    return getattr(_local, "stages", None)


def add(stage: str, seconds: float) -> None:
    """Count ``seconds`` to ``stage`` of the request this thread serves (nothing when timing is off)."""
    stages = _stages()
    if stages is not None:
        stages[stage] = stages.get(stage, 0.0) + seconds


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block as stage ``name`` of the current request."""
    if _stages() is None:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        add(name, time.perf_counter() - t0)


def _timed_query(execute, sql, params, many, context):
    t0 = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        head = sql.lstrip()[:6].upper() if isinstance(sql, str) else ""
        locking = head == "BEGIN" or (isinstance(sql, str) and "FOR UPDATE" in sql)
        add("lock" if locking else "db", time.perf_counter() - t0)


def _request_start(request) -> float | None:
    raw = request.META.get("HTTP_X_REQUEST_START", "")
    if not raw.startswith("t="):
        return None
    try:
        return float(raw[2:])
    except ValueError:
        return None


class StageTimingMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        if _gc_callback not in gc.callbacks:
            gc.callbacks.append(_gc_callback)

    def __call__(self, request):
        taken_up, t0, gc0 = time.time(), time.perf_counter(), _gc["total"]
        _local.stages = stages = {}
        try:
            with connections["default"].execute_wrapper(_timed_query):
                response = self.get_response(request)
        finally:
            _local.stages = None
        stages["app"] = time.perf_counter() - t0
        stages["gc"] = _gc["total"] - gc0
        start = _request_start(request)
        if start is not None:
            stages["queue"] = max(0.0, taken_up - start)
        response["Server-Timing"] = ", ".join(f"{name};dur={1000 * value:.2f}" for name, value in stages.items())
        return response

    def process_template_response(self, request, response):
        render = response.render

        def timed_render():
            with stage("render"):
                return render()

        response.render = timed_render
        return response
