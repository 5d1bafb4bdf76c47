"""Django's ``cached_db`` session engine, with its load and save timed as the request's ``session``
stage (:mod:`studyapp.lib.perf.timing`; nothing else changes, and nothing is timed when timing is
off)."""

from __future__ import annotations

from django.contrib.sessions.backends import cached_db

from studyapp.lib.perf import timing


class SessionStore(cached_db.SessionStore):
    def load(self):
        with timing.stage("session"):
            return super().load()

    def save(self, must_create=False):
        with timing.stage("session"):
            return super().save(must_create=must_create)
