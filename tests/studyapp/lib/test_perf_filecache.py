"""The file cache looks at its directory once per interval, outside the writing thread, and culls
expired entries first."""

from __future__ import annotations

import threading
import types

import pytest
from django.core.cache.backends import base as cache_base

from studyapp.lib.perf import filecache


@pytest.fixture
def make_cache(tmp_path):
    filecache._looked.clear()

    def make(max_entries: int) -> filecache.FileBasedCache:
        return filecache.FileBasedCache(str(tmp_path / "cache"), {"OPTIONS": {"MAX_ENTRIES": max_entries, "CULL_FREQUENCY": 2}})

    yield make
    filecache._looked.clear()


def set_and_wait(cache: filecache.FileBasedCache, key: str, value, **kwargs) -> None:
    """A write, then the end of the look it may have started (the writer itself never waits)."""
    cache.set(key, value, **kwargs)
    look = filecache.last_look(cache._dir)
    if look is not None and look.is_alive():
        look.join(timeout=10)


def test_a_process_lists_the_directory_once_per_interval_and_never_in_the_writing_thread(make_cache, monkeypatch):
    cache = make_cache(max_entries=1000)
    looks: list[threading.Thread] = []
    listing = cache._list_cache_files
    monkeypatch.setattr(cache, "_list_cache_files", lambda: looks.append(threading.current_thread()) or listing())
    for i in range(50):
        set_and_wait(cache, f"k{i}", i)
    assert len(looks) == 1 and cache.get("k49") == 49
    assert looks[0] is not threading.current_thread()  # the request that wrote did not list the files
    monkeypatch.setattr(filecache, "CULL_EVERY_SECONDS", 0.0)
    set_and_wait(cache, "k50", 50)
    set_and_wait(cache, "k51", 51)
    assert len(looks) == 3 and threading.current_thread() not in looks


class InlineThread(threading.Thread):
    """A look run at once by the writer: the order of look and write is then Django's (look first)."""

    def start(self) -> None:
        self.run()


def test_a_full_cache_drops_expired_entries_first_then_a_share_of_the_rest(make_cache, monkeypatch):
    monkeypatch.setattr(filecache, "CULL_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(filecache, "Thread", InlineThread)
    cache = make_cache(max_entries=10)
    now = [1_000_000.0]
    clock = types.SimpleNamespace(time=lambda: now[0])
    monkeypatch.setattr(filecache.filebased, "time", clock)  # expiry is checked here
    monkeypatch.setattr(cache_base, "time", clock)  # and computed here
    for i in range(6):
        set_and_wait(cache, f"old{i}", i, timeout=10)
    for i in range(4):
        set_and_wait(cache, f"new{i}", i, timeout=1000)
    now[0] += 100  # the "old" entries have expired
    set_and_wait(cache, "one more", 1, timeout=1000)  # ten files: a look; six are expired and go
    assert len(cache._list_cache_files()) == 5
    assert [cache.get(f"new{i}") for i in range(4)] == [0, 1, 2, 3] and cache.get("one more") == 1
    for i in range(6):
        set_and_wait(cache, f"more{i}", i, timeout=1000)
    # Ten live entries at the last look (before the last write): half culled at random, as Django does.
    assert len(cache._list_cache_files()) == 10 - 5 + 1
