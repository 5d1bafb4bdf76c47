"""Django's file cache, whose cull never lists the cache directory inside a request.

Django's ``FileBasedCache.set`` lists every file of the cache to decide whether to cull. Without
a ``CACHE_URL`` the site keeps a session and a rate-limit counter per participant there, so with
a thousand participants every write listed thousands of files: most of a participant request's
time under load. Here a write starts a look at the directory at most once every
:data:`CULL_EVERY_SECONDS` per process and directory, in a thread of its own, so that no request
waits for the listing. When the cache then holds ``MAX_ENTRIES`` or more, the expired entries go
first and, if it is still full, a random share of the others, as Django does. Between two looks
the cache may grow past ``MAX_ENTRIES`` by what is written meanwhile.
"""

from __future__ import annotations

import random
import threading
from threading import Thread

from django.core.cache.backends import filebased

from studyapp.lib.perf.caches import ProcessCache

#: How often a process looks at the size of a cache directory (seconds).
CULL_EVERY_SECONDS = 30.0

#: Cache directory -> the thread of its last look (kept CULL_EVERY_SECONDS: a directory in here is not looked at).
_looked: ProcessCache[str, threading.Thread] = ProcessCache("file cache looks", maxsize=64, ttl=CULL_EVERY_SECONDS)


class FileBasedCache(filebased.FileBasedCache):
    def _cull(self) -> None:
        with _looked.lock:  # one look per process and directory (Django makes a cache object per thread)
            if CULL_EVERY_SECONDS > 0 and self._dir in _looked.data:
                return
            look = Thread(target=self._cull_now, name=f"file cache cull {self._dir}", daemon=True)
            _looked.data[self._dir] = look
        look.start()

    def _cull_now(self) -> None:
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


def last_look(directory: str) -> threading.Thread | None:
    """The thread of the last look at ``directory`` in this process (tests wait for it)."""
    with _looked.lock:
        return _looked.data.get(directory)
