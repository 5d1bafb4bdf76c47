"""gunicorn's threaded worker, accepting a new connection only while one of its threads is free.

gunicorn's ``gthread`` worker accepts connections whenever it has fewer than ``worker_connections``
(1000) open, whether or not a thread is free to serve them. Its workers all wait on the one
listening socket, and whichever wakes first takes the connection. A worker whose threads are all busy
still takes its share, and the request waits in that worker's own queue while a sibling may be idle:
during a launch, the slowest 1% of requests spent most of their time there (the ``queue`` stage of
``Server-Timing``; issue 28).

This worker stops listening once every thread has a request and listens again when one finishes.
A new connection then stays in the kernel's one queue (the listen backlog) until some worker has a
free thread: one queue for all workers instead of one per worker. Requests on a kept-alive connection
are still served by the worker that holds the connection, as before.

``STUDY_PERF_FREE_THREAD_ACCEPT=0`` gives gunicorn's own behaviour back, to measure the difference.
"""

from __future__ import annotations

from gunicorn.workers.gthread import ThreadWorker

from studyapp.lib.perf import switches


class FreeThreadWorker(ThreadWorker):
    """``gthread``, listening only while a thread is free (see the module)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        #: Connections handed to the thread pool and not yet finished (run in the main thread only).
        self.in_flight = 0

    def _all_busy(self) -> bool:
        return switches.FREE_THREAD_ACCEPT and self.in_flight >= self.cfg.threads

    def set_accept_enabled(self, enabled: bool) -> None:
        # gunicorn's loop calls this with ``True`` while it has room for connections; listen only if a
        # thread is free too.
        super().set_accept_enabled(enabled and not self._all_busy())

    def enqueue_req(self, conn) -> None:
        self.in_flight += 1
        if self._all_busy():
            # Before the request reaches a thread, so no connection is accepted behind it.
            super().set_accept_enabled(False)
        super().enqueue_req(conn)

    def finish_request(self, conn, fs) -> None:
        # A kept-alive connection with the next request already read is handed back to the pool
        # inside ``finish_request`` (``enqueue_req`` counts it again). gunicorn's loop listens again
        # on its next turn, right after this callback.
        self.in_flight -= 1
        super().finish_request(conn, fs)
