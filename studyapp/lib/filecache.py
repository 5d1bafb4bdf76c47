"""Django's file cache, without listing the whole cache directory on every write.

Django's ``FileBasedCache.set`` lists every file of the cache to decide whether to cull. Without
a ``CACHE_URL`` the site keeps a session and a rate-limit counter per participant there, so with
a thousand participants every write listed thousands of files: most of a participant request's
time under load. Here a process looks at the directory at most once every
:data:`CULL_EVERY_SECONDS`. When the cache then holds ``MAX_ENTRIES`` or more, the expired
entries go first and, if it is still full, a random share of the others, as Django does. Between
two looks the cache may grow past ``MAX_ENTRIES`` by what is written meanwhile.
"""

from __future__ import annotations

import random
import threading
import time

from django.core.cache.backends import filebased

#: How often a process checks the size of a cache directory (seconds).
CULL_EVERY_SECONDS = 30.0

_next_look: dict[str, float] = {}  # cache directory -> monotonic time of the next look
_lock = threading.Lock()


class FileBasedCache(filebased.FileBasedCache):
    def _cull(self) -> None:
        now = time.monotonic()
        with _lock:  # one look per process and directory (Django makes a cache object per thread)
            if now < _next_look.get(self._dir, 0.0):
                return
            _next_look[self._dir] = now + CULL_EVERY_SECONDS
        files = self._list_cache_files()
        if len(files) < self._max_entries:
            return
        if self._cull_frequency == 0:
            self.clear()
            return
        live = [name for name in files if not self._expired(name)]
        if len(live) >= self._max_entries:
            for name in random.sample(live, int(len(live) / self._cull_frequency)):
                self._delete(name)

    def _expired(self, name: str) -> bool:
        """Whether the entry in file ``name`` has expired (it is then deleted, as on a read)."""
        try:
            with open(name, "rb") as f:
                return self._is_expired(f)
        except FileNotFoundError:
            return True
