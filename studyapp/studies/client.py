"""One client of the participant API: its URL scheme and request bodies, over any transport.

The test bots, the ``synthetic_participants`` command and the load benchmark all talk to the
API through :class:`ParticipantClient`; only this module (and the page's own JavaScript, which
gets its root from ``window.STUDY.api``) knows the paths in ``studyapp/urls.py``. A transport
sends one :class:`Call` and returns a :class:`Reply`; the client does not care whether that is
Django's test ``Client`` in this process or httpx against a server, sync or async::

    client = ParticipantClient(study.public_code, DjangoTransport(Client(enforce_csrf_checks=True)))
    client.page()                            # sets the CSRF cookie, as a browser's first visit does
    state = client.enter(consent=True).data  # {"kind": "instructions", "step": 0, ...}
    state = client.continue_(state["step"]).data

With :class:`AsyncHttpxTransport` every method returns an awaitable of the same :class:`Reply`
(``state = (await client.enter(consent=True)).data``).

The shapes, in short (``studies/state.py`` and ``studies/api.py`` are the reference): every
successful step request answers the participant's new state, a dict with ``kind`` (consent,
unavailable, instructions, trial, rating, questions, grouping, done) and ``step``; ``answer``
adds ``saved``, and a trial's state carries ``feedback`` once answered. A refused request
answers ``{"error", "detail"}`` and, for flow errors, the current ``state``.

Pure standard library: no Django, no httpx import (adapters take a client object as it is).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlencode

API_ROOT = "/api/s/{code}/"
PAGE = "/s/{code}/"
CSRF_COOKIE = "csrftoken"
CSRF_HEADER = "X-CSRFToken"


@dataclass(frozen=True)
class Call:
    """One request: ``label`` names it relative to the API root (``"POST steps/3/answer"``)."""

    method: str
    path: str
    label: str
    body: dict | None = None
    csrf: bool = True


@dataclass(frozen=True)
class Reply:
    """A response: the status, the text, and the JSON object it holds (``data``; ``{}`` if none)."""

    call: Call
    status: int
    text: str

    @cached_property
    def parsed(self) -> Any:
        """The decoded JSON body, or None when the body is not JSON (the study page, a proxy's error)."""
        try:
            return json.loads(self.text)
        except json.JSONDecodeError:
            return None

    @property
    def data(self) -> dict:
        return self.parsed if isinstance(self.parsed, dict) else {}


R = TypeVar("R", covariant=True)


class Transport(Protocol[R]):
    """Sends one call; ``R`` is :class:`Reply` or ``Awaitable[Reply]``."""

    def send(self, call: Call) -> R: ...


class ParticipantClient(Generic[R]):
    """The participant API of one study, as one participant (one cookie jar) sees it."""

    def __init__(self, code: str, transport: Transport[R]):
        """``code``: the study's public code (``Study.public_code``, the participant link's), not its slug."""
        self.code = code
        self.transport = transport
        self.root = API_ROOT.format(code=code)

    def request(self, method: str, endpoint: str, body: dict | None = None, *, csrf: bool = True) -> R:
        """Any request below the API root (``endpoint`` like ``"steps/3/answer"``), e.g. a tampered one."""
        method = method.upper()
        return self.transport.send(
            Call(method, self.root + endpoint, f"{method} {endpoint}", body if method != "GET" else None, csrf)
        )

    def page(self, *, prolific_pid: str | None = None, study_id: str | None = None, session_id: str | None = None) -> R:
        """The study's page (HTML), with Prolific's query parameters as a recruitment link has them."""
        query = _query(PROLIFIC_PID=prolific_pid, STUDY_ID=study_id, SESSION_ID=session_id)
        return self.transport.send(Call("GET", PAGE.format(code=self.code) + query, "GET page"))

    def state(self, *, prolific_pid: str | None = None, session_id: str | None = None) -> R:
        """Where the participant is; a known ``prolific_pid`` resumes that participant's run when
        ``session_id`` is the SESSION_ID it was enrolled with (else 403 ``resume_refused``)."""
        return self.request("GET", "state" + _query(PROLIFIC_PID=prolific_pid, SESSION_ID=session_id))

    def enter(self, *, consent: bool, prolific_pid: str | None = None, study_id: str | None = None,
              session_id: str | None = None) -> R:
        given = {"prolific_pid": prolific_pid, "study_id": study_id, "session_id": session_id}
        return self.request("POST", "enter", {"consent": consent, **{k: v for k, v in given.items() if v is not None}})

    def continue_(self, step: int) -> R:
        return self.request("POST", f"steps/{step}/continue")

    def answer(self, step: int, *, stimulus: int, choice: int, client_ms: int | None = None) -> R:
        body = {"stimulus": stimulus, "choice": choice, **({"client_ms": client_ms} if client_ms is not None else {})}
        return self.request("POST", f"steps/{step}/answer", body)

    def check(self, step: int, answers: Mapping[str, int]) -> R:
        """The comprehension quiz or a catch item: question key -> option index."""
        return self.request("POST", f"steps/{step}/check", {"answers": dict(answers)})

    def questions(self, step: int, answers: Mapping[str, Any]) -> R:
        return self.request("POST", f"steps/{step}/questions", {"answers": dict(answers)})

    def grouping(self, step: int, assignment: Mapping[Any, int]) -> R:
        """``assignment`` maps image ids to group numbers (keys are sent as strings, as JSON wants)."""
        return self.request("POST", f"steps/{step}/grouping", {"assignment": {str(k): v for k, v in assignment.items()}})

    def event(self, kind: str, payload: dict | None = None) -> R:
        return self.request("POST", "events", {"kind": kind, **({"payload": payload} if payload is not None else {})})

    def events(self, events: list[dict]) -> R:
        """A batch of events ``[{kind, payload, step, t}]``, as the page sends them."""
        return self.request("POST", "events", {"events": list(events)})

    def withdraw(self, *, confirm: bool) -> R:
        return self.request("POST", "withdraw", {"confirm": confirm})

    def time_extend(self) -> R:
        """More time on the limit that ends first (WCAG 2.2.1), when the study allows it."""
        return self.request("POST", "time/extend")


def _query(**params: str | None) -> str:
    given = {k: v for k, v in params.items() if v}
    return "?" + urlencode(given) if given else ""


# -- transports ------------------------------------------------------------------------------


class DjangoTransport:
    """Django's test ``Client`` (CSRF token from its cookie jar, as the page's script sends it)."""

    def __init__(self, client: Any, *, secure: bool = False):
        self.client = client
        self.secure = secure

    def send(self, call: Call) -> Reply:
        if call.method == "GET":
            response = self.client.get(call.path, secure=self.secure)
        else:
            headers = {"HTTP_X_CSRFTOKEN": self.client.cookies[CSRF_COOKIE].value} if call.csrf else {}
            response = self.client.generic(
                call.method, call.path, json.dumps(call.body or {}), content_type="application/json",
                secure=self.secure, **headers,
            )
        return Reply(call, response.status_code, response.content.decode())


class AsyncHttpxTransport:
    """An ``httpx.AsyncClient`` with a ``base_url`` (a server on loopback, e.g. the benchmark's)."""

    def __init__(self, client: Any):
        self.client = client

    async def send(self, call: Call) -> Reply:
        headers = {}
        if call.method != "GET" and call.csrf:
            headers[CSRF_HEADER] = self.client.cookies.get(CSRF_COOKIE, "")
        body = (call.body or {}) if call.method != "GET" else None
        response = await self.client.request(call.method, call.path, json=body, headers=headers)
        return Reply(call, response.status_code, response.text)
