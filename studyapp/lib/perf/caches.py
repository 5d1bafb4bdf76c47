"""The one kind of process cache the site keeps: bounded, thread-safe, on ``cachetools``.

What a web process keeps in memory between requests (a study's stimuli and assets, a version's
design, a study's language, a participant's throttle lease, a loaded model) goes in a
:class:`ProcessCache`: a ``cachetools`` ``LRUCache`` (or ``TTLCache`` with ``ttl``) behind one
lock. Eviction is the library's: the least recently used entry, or the expired ones at the front
of its time-ordered list, one at a time as entries are added; nothing ever walks all the keys
inside a request (the hand-rolled caches this replaces cleared or scanned their whole dict when
full). :func:`memoize` is ``cachetools.cached`` on such a cache, with a condition so that
concurrent callers of one key wait for the first one's value instead of computing it again.

Every cache registers itself, so that tests can start from empty ones (:func:`clear_all`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import cachetools

from studyapp.lib.perf import switches

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
F = TypeVar("F", bound=Callable[..., Any])

_all: weakref.WeakSet[ProcessCache] = weakref.WeakSet()


class ProcessCache(Generic[K, V]):
    """At most ``maxsize`` entries, each kept for ``ttl`` seconds (or until evicted) when given."""

    def __init__(self, name: str, *, maxsize: int, ttl: float | None = None):
        self.name = name
        self.data: cachetools.Cache = (
            cachetools.TTLCache(maxsize=maxsize, ttl=ttl) if ttl is not None else cachetools.LRUCache(maxsize=maxsize)
        )
        self.lock = threading.Lock()
        _all.add(self)

    def get(self, key: K) -> V | None:
        """The value kept under ``key``, or None (always None with ``STUDY_PERF_PROCESS_CACHES=0``)."""
        if not switches.PROCESS_CACHES:
            return None
        with self.lock:
            return self.data.get(key)

    def put(self, key: K, value: V) -> V:
        with self.lock:
            self.data[key] = value
        return value

    def pop(self, key: K) -> V | None:
        with self.lock:
            return self.data.pop(key, None)

    def clear(self) -> None:
        with self.lock:
            self.data.clear()

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, key: object) -> bool:
        with self.lock:
            return key in self.data


def memoize(cache: ProcessCache, *, key: Callable[..., Hashable] = cachetools.keys.hashkey) -> Callable[[F], F]:
    """``cachetools.cached`` on ``cache`` (its lock; callers of a key being computed wait for it)."""

    def decorate(function: F) -> F:
        if not switches.PROCESS_CACHES:
            return function
        condition = threading.Condition(cache.lock)
        return cachetools.cached(cache.data, key=key, lock=condition, condition=condition)(function)  # type: ignore[return-value]

    return decorate


def clear_all() -> None:
    """Empty every process cache (tests: a rolled-back database reuses primary keys)."""
    for cache in list(_all):
        cache.clear()
