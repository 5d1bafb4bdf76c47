"""The file cache looks at its directory once per interval, and culls expired entries first."""

from __future__ import annotations

import types

import pytest
from django.core.cache.backends import base as cache_base

from studyapp.lib import filecache


@pytest.fixture
def make_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(filecache, "_next_look", {})

    def make(max_entries: int) -> filecache.FileBasedCache:
        return filecache.FileBasedCache(str(tmp_path / "cache"), {"OPTIONS": {"MAX_ENTRIES": max_entries, "CULL_FREQUENCY": 2}})

    return make


def test_a_process_lists_the_directory_once_per_interval(make_cache, monkeypatch):
    cache = make_cache(max_entries=1000)
    looks = []
    listing = cache._list_cache_files
    monkeypatch.setattr(cache, "_list_cache_files", lambda: looks.append(1) or listing())
    for i in range(50):
        cache.set(f"k{i}", i)
    assert len(looks) == 1 and cache.get("k49") == 49
    monkeypatch.setattr(filecache, "CULL_EVERY_SECONDS", 0.0)
    filecache._next_look.clear()
    cache.set("k50", 50)
    cache.set("k51", 51)
    assert len(looks) == 3


def test_a_full_cache_drops_expired_entries_first_then_a_share_of_the_rest(make_cache, monkeypatch):
    monkeypatch.setattr(filecache, "CULL_EVERY_SECONDS", 0.0)
    cache = make_cache(max_entries=10)
    now = [1_000_000.0]
    clock = types.SimpleNamespace(time=lambda: now[0])
    monkeypatch.setattr(filecache.filebased, "time", clock)  # expiry is checked here
    monkeypatch.setattr(cache_base, "time", clock)  # and computed here
    for i in range(6):
        cache.set(f"old{i}", i, timeout=10)
    for i in range(4):
        cache.set(f"new{i}", i, timeout=1000)
    now[0] += 100  # the "old" entries have expired
    cache.set("one more", 1, timeout=1000)  # ten files: a look; six are expired and go
    assert len(cache._list_cache_files()) == 5
    assert [cache.get(f"new{i}") for i in range(4)] == [0, 1, 2, 3] and cache.get("one more") == 1
    for i in range(6):
        cache.set(f"more{i}", i, timeout=1000)
    # Ten live entries at the last look (before the last write): half culled at random, as Django does.
    assert len(cache._list_cache_files()) == 10 - 5 + 1
