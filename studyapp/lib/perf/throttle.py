"""DRF throttles of the participant API: per browser session, counted in leases.

A participant's request costs one cache round trip per :attr:`SessionRateThrottle.LEASE`
requests instead of DRF's read and write of a list of times on every request.
"""

from __future__ import annotations

from rest_framework.throttling import ScopedRateThrottle

from studyapp.lib.perf import switches, timing
from studyapp.lib.perf.caches import ProcessCache


class LiveRateThrottle(ScopedRateThrottle):
    """Reads the rate from the current settings (DRF binds them once, at import)."""

    def get_rate(self):
        from rest_framework.settings import api_settings

        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class SessionRateThrottle(LiveRateThrottle):
    """Participants are throttled per browser session, not per IP (a lab may share one IP).

    Counted in fixed windows of the rate's period (a minute for ``600/minute``), and in leases: a
    web process takes :attr:`LEASE` requests at a time from the counter shared in the cache (one
    ``incr``) and counts them down in its own memory. Never more than the rate is let through in a
    window; a participant whose requests go to several processes may be refused up to LEASE
    requests per process early (leased, not used), which at 600 a minute is far above what a
    person does. Exact within one process. ``STUDY_PERF_LEASED_THROTTLE=0``: DRF's own counting.
    """

    LEASE = 10
    #: cache key -> [window, requests left in this process's lease]; -1: the window's rate is spent.
    #: A lease of a window gone by is simply not matched; the least recently used go first.
    _leases: ProcessCache[str, list[int]] = ProcessCache("throttle leases", maxsize=50_000)

    def get_cache_key(self, request, view):
        session_key = request.session.session_key
        if not session_key:
            return super().get_cache_key(request, view)
        return self.cache_format % {"scope": self.scope, "ident": session_key}

    def allow_request(self, request, view) -> bool:
        with timing.stage("throttle"):
            return self._allow(request, view)

    def _allow(self, request, view) -> bool:
        if not switches.LEASED_THROTTLE:
            return super().allow_request(request, view)
        self.scope = getattr(view, self.scope_attr, None)
        self.rate = self.get_rate() if self.scope else None
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.duration)
        self.window_ends = (window + 1) * self.duration
        with self._leases.lock:
            lease = self._leases.data.get(key)
            if lease is not None and lease[0] == window and lease[1] != 0:
                if lease[1] < 0:
                    return False
                lease[1] -= 1
                return True
        asked = min(self.LEASE, self.num_requests)
        shared = f"{key}:{window}"
        try:  # one write per lease: the window's counter exists but for its first lease
            total = self.cache.incr(shared, asked)
        except ValueError:  # the window's first lease (here or in another process, meanwhile)
            if self.cache.add(shared, asked, self.duration):
                total = asked
            else:
                try:
                    total = self.cache.incr(shared, asked)
                except ValueError:  # expired between the two calls
                    self.cache.set(shared, asked, self.duration)
                    total = asked
        granted = min(asked, self.num_requests - (total - asked))
        self._leases.put(key, [window, granted - 1 if granted > 0 else -1])
        return granted > 0

    def wait(self) -> float:
        if not switches.LEASED_THROTTLE:
            return super().wait()
        return max(0.0, self.window_ends - self.now)
