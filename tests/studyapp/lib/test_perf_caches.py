"""The process caches: bounded, evicting one entry at a time, never scanning their keys in a request (issue 28)."""

from __future__ import annotations

import threading

import cachetools
import pytest
from django.test import Client

from studyapp.lib.perf import caches
from studyapp.lib.perf.caches import ProcessCache, memoize
from studyapp.studies import api, i18n, selectors, versions
from studyapp.studies.client import DjangoTransport, ParticipantClient
from tests.studyapp.factories import learning_study


@pytest.fixture
def no_scans(monkeypatch):
    """Any walk over a cache's keys, values or items raises."""

    def scan(self, *args):
        raise AssertionError(f"a scan of {type(self).__name__}")

    for name in ("__iter__", "keys", "values", "items"):
        monkeypatch.setattr(cachetools.Cache, name, scan)


def test_a_full_cache_evicts_the_least_recently_used_entry_without_a_scan(no_scans):
    cache: ProcessCache[int, int] = ProcessCache("test", maxsize=3)
    for i in range(3):
        cache.put(i, i * 10)
    assert cache.get(0) == 0  # now the most recently used
    cache.put(3, 30)
    assert (cache.get(1), cache.get(0), cache.get(3), len(cache)) == (None, 0, 30, 3)
    for i in range(100, 1100):
        cache.put(i, i)
    assert len(cache) == 3 and cache.get(1099) == 1099


def test_entries_with_a_ttl_age_out():
    now = [0.0]
    cache: ProcessCache[str, int] = ProcessCache("test", maxsize=10, ttl=5)
    cache.data = cachetools.TTLCache(maxsize=10, ttl=5, timer=lambda: now[0])
    cache.put("a", 1)
    now[0] = 4.9
    assert cache.get("a") == 1
    now[0] = 5.0
    assert cache.get("a") is None


def test_memoize_computes_a_key_once_even_when_asked_at_once(monkeypatch):
    calls: list[int] = []
    gate = threading.Event()

    @memoize(ProcessCache("test", maxsize=4))
    def slow(x: int) -> int:
        calls.append(x)
        gate.wait(5)
        return x * 2

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(slow(7))) for _ in range(4)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert results == [14] * 4 and calls == [7]


def test_switched_off_a_cache_keeps_nothing(monkeypatch):
    monkeypatch.setattr(caches.switches, "PROCESS_CACHES", False)
    cache: ProcessCache[str, int] = ProcessCache("test", maxsize=4)
    cache.put("a", 1)
    assert cache.get("a") is None


@pytest.mark.django_db(transaction=True)
def test_no_request_of_a_participant_scans_a_process_cache(no_scans, monkeypatch, settings):
    """Full caches (one entry each: the throttle's leases of four participants evict each other) are
    used by every request, and no request walks one."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"entry": "1000/minute", "participant": "1000/minute"}}
    caches.clear_all()
    for owner, name in ((api.SessionRateThrottle, "_leases"), (i18n, "_languages"), (selectors, "_content"),
                        (versions, "_designs"), (versions, "_configs")):
        monkeypatch.setattr(owner, name, ProcessCache(name, maxsize=1))
    study = learning_study()
    walked = 0
    for _ in range(4):
        client = ParticipantClient(study.public_code, DjangoTransport(Client(enforce_csrf_checks=True)))
        assert client.page().status == 200
        state = client.enter(consent=True).data
        state = client.continue_(state["step"]).data
        for _ in range(2):
            assert client.state().status == 200
            state = client.answer(state["step"], stimulus=state["stimulus"], choice=0).data
            state = client.continue_(state["step"]).data
            walked += 1
    assert walked == 8 and len(api.SessionRateThrottle._leases) == 1
