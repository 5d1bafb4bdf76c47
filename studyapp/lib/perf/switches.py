"""Every speed trick of the site can be switched off here, read once from the environment, to
measure what it buys (``benchmarks/load_participants.py`` with ``STUDY_PERF_<NAME>=0``)."""

from __future__ import annotations

from studyapp.lib.env import env_bool

PREPARED = env_bool("STUDY_PERF_PREPARED", True)
SQLITE_LOCK_FILE = env_bool("STUDY_PERF_SQLITE_LOCK_FILE", True)
FILE_CACHE_CULL = env_bool("STUDY_PERF_FILE_CACHE_CULL", True)
LEASED_THROTTLE = env_bool("STUDY_PERF_LEASED_THROTTLE", True)
PROCESS_CACHES = env_bool("STUDY_PERF_PROCESS_CACHES", True)
GC_FREEZE = env_bool("STUDY_PERF_GC_FREEZE", True)

#: Not a trick: per-request stage times in a Server-Timing header (studyapp.lib.perf.timing).
TIMING = env_bool("STUDY_PERF_TIMING", False)
