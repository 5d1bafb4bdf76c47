"""Every speed trick of the site can be switched off here, read once from the environment, to
measure what it buys (``benchmarks/load_participants.py`` with ``STUDY_PERF_<NAME>=0``).

What each bought, switched off one at a time, one run each, all in one sitting (2026-12-06, 2
cores shared with other work: load average 1 to 16, so compare server CPU per request, which the
load moves least; 100 participants, 4 workers x 4 threads, SQLite, file cache):

Server CPU ms per API request, saturation / paced phase:

- nothing off (3 runs): 2.5 / 3.0 at load 1-4; 3.1 / 3.5 and 3.0 / 3.6 at load 11-16
- ``PREPARED`` off: 4.3 / 4.9 (kept: +1.2-1.9 ms)
- ``LEASED_THROTTLE`` off: 3.8 / 4.4 (kept: +0.7-0.9 ms)
- ``PROCESS_CACHES`` off: 11.1 / 11.7, and 3-10 times the queries (kept)
- ``GC_FREEZE`` off: 3.5 / 4.2 (kept: +0.4-0.7 ms)
- ``SQLITE_LOCK_FILE`` off: 3.4 / 3.4, paced p99 1614 ms against 1018 at the same load (kept: the tail)
- ``FILE_CACHE_CULL`` off: 2.6 / 3.5 (kept, see below)

The file cache's cull costs nothing measurable with a few hundred entries; it lists the cache
directory, so it grows with the participants (a session each), and it now never runs in a request.
"""

from __future__ import annotations

from studyapp.lib.env import env_bool

PREPARED = env_bool("STUDY_PERF_PREPARED", True)
SQLITE_LOCK_FILE = env_bool("STUDY_PERF_SQLITE_LOCK_FILE", True)
#: The threads of one process queue on an in-process lock before SQLite's lock file
#: (studyapp/lib/perf/sqlite/base.py; no measurable gain on a noisy 2-core machine, kept for the property).
SQLITE_TURNS = env_bool("STUDY_PERF_SQLITE_TURNS", True)
FILE_CACHE_CULL = env_bool("STUDY_PERF_FILE_CACHE_CULL", True)
LEASED_THROTTLE = env_bool("STUDY_PERF_LEASED_THROTTLE", True)
PROCESS_CACHES = env_bool("STUDY_PERF_PROCESS_CACHES", True)
GC_FREEZE = env_bool("STUDY_PERF_GC_FREEZE", True)
#: A gunicorn worker listens for new connections only while one of its threads is free
#: (studyapp/lib/perf/worker.py).
FREE_THREAD_ACCEPT = env_bool("STUDY_PERF_FREE_THREAD_ACCEPT", True)

#: Not a trick: per-request stage times in a Server-Timing header (studyapp.lib.perf.timing).
TIMING = env_bool("STUDY_PERF_TIMING", False)
