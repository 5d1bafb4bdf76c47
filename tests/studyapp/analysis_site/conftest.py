"""Personas for the analysis pages: an owner (staff with every permission), a viewer (staff who may
only view studies and imported results), a staff member without permissions, a member (logged in,
not staff) and an outsider (not logged in)."""

from __future__ import annotations

import random
from html.parser import HTMLParser

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from tests.studyapp.bots import Bot


def _client(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def owner(db) -> Client:
    return _client(get_user_model().objects.create_user("owner", password="pw-owner-123", is_staff=True, is_superuser=True))


@pytest.fixture
def viewer(db) -> Client:
    user = get_user_model().objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_study", "view_importedresults"])
    )
    return _client(user)


@pytest.fixture
def staff_without_permissions(db) -> Client:
    return _client(get_user_model().objects.create_user("helper", password="pw-helper-123", is_staff=True))


@pytest.fixture
def member(db) -> Client:
    return _client(get_user_model().objects.create_user("member", password="pw-member-123"))


@pytest.fixture
def outsider() -> Client:
    return Client()


def run_bots(study_code: str, n: int, *, seed: int = 0, choose=None, rating=None, stop_after: dict | None = None) -> list[Bot]:
    """`n` bots take the learning study; ``stop_after[i] = k`` makes bot i leave after k trials."""
    bots = []
    for i in range(n):
        bot = Bot(study_code, pid=f"B{seed}x{i}", rng=random.Random(seed * 1000 + i))
        bot.open_link()
        if stop_after and i in stop_after:
            bot.enter()
            bot.continue_()
            for _ in range(stop_after[i]):
                bot.answer(bot.state["options"][0]["value"])
                bot.continue_()
        else:
            bot.walk(choose=choose, rating=rating(i) if rating else 1 + i % 5)
        bots.append(bot)
    return bots


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str | None]]]] = {}
        self._name = None
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("data-table"):
            self._name = attrs["data-table"]
            self.tables[self._name] = []
        elif self._name and tag == "tr":
            self._row = []
        elif self._name and tag == "td" and self._row is not None:
            self._cell = ["", attrs.get("data-value")]

    def handle_endtag(self, tag):
        if tag == "table":
            self._name = None
        elif tag == "tr" and self._row is not None:
            if self._row:
                self.tables[self._name].append(self._row)
            self._row = None
        elif tag == "td" and self._cell is not None:
            self._row.append((self._cell[0].strip(), self._cell[1]))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0] += data


def page_tables(html: str) -> dict[str, list[list[tuple[str, str | None]]]]:
    """The page's data tables by name: rows of ``(text shown, exact value or None)``."""
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def value(cell: tuple[str, str | None]) -> float:
    assert cell[1] is not None, cell
    return float(cell[1])
