"""Bot participants that walk a study through the real HTTP API (Django test client, CSRF on)."""

from __future__ import annotations

import json
import random
import re

from django.test import Client

from studyapp.studies.client import DjangoTransport, ParticipantClient, Reply

LEAK_KEYS = ("feedback", "correct", "correct_label", "correct_answer", "true_label", "model_prediction", "probabilities")


class Bot:
    def __init__(self, code: str, *, pid: str = "", rng: random.Random | None = None, client: Client | None = None):
        """``code``: the study's public code (its participant link ``/s/<code>/``), not its slug."""
        self.code = code
        self.pid = pid
        self.client = client or Client(enforce_csrf_checks=True)
        self.api = ParticipantClient(code, DjangoTransport(self.client))
        self.rng = rng or random.Random(0)
        self.responses: list[tuple[str, int, str]] = []
        self.actions: list[dict] = []
        self.state: dict = {}

    # -- HTTP ----------------------------------------------------------------------------------
    def _record(self, reply: Reply, label: str | None = None) -> tuple[int, dict]:
        self.responses.append((label or reply.call.label, reply.status, reply.text))
        return reply.status, reply.data

    def current_step(self) -> int:
        return int(self.state.get("step", 0))

    def csrf(self) -> str:
        return self.client.cookies["csrftoken"].value

    def get(self, path: str) -> tuple[int, dict]:
        return self._record(self.api.request("GET", path))

    def post(self, path: str, body: dict | None = None, *, csrf: bool = True) -> tuple[int, dict]:
        return self._record(self.api.request("POST", path, body, csrf=csrf))

    # -- flow ----------------------------------------------------------------------------------
    def open_link(self) -> dict:
        page = self.api.page(prolific_pid=self.pid, study_id="S1", session_id="X1") if self.pid else self.api.page()
        assert page.status == 200
        self._record(page, "PAGE")
        status, self.state = self._record(self.api.state(prolific_pid=self.pid, session_id="X1" if self.pid else None))
        assert status == 200, self.state
        return self.state

    def enter(self) -> tuple[int, dict]:
        status, data = self._record(self.api.enter(consent=True, prolific_pid=self.pid, study_id="S1", session_id="X1"))
        if status in (200, 201):
            self.state = data
        return status, data

    def refresh(self) -> dict:
        status, self.state = self._record(self.api.state())
        assert status == 200
        return self.state

    def continue_(self) -> tuple[int, dict]:
        status, data = self._record(self.api.continue_(self.state["step"]))
        if status == 200:
            self.state = data
        return status, data

    def answer(self, choice: int) -> tuple[int, dict]:
        s = self.state
        assert s["kind"] == "trial" and not s["answered"]
        self.assert_no_leak()
        status, data = self._record(self.api.answer(s["step"], stimulus=s["stimulus"], choice=choice))
        if status == 200:
            self.state = data
            self.actions.append({"trial": s["trial"], "stimulus": s["stimulus"], "choice": choice,
                                 "correct": data["feedback"]["correct"], "correct_answer": data["feedback"]["correct_answer"]})
        return status, data

    def rate(self, value: int) -> tuple[int, dict]:
        status, data = self._record(self.api.questions(self.state["step"], {self.state["key"]: value}))
        if status == 200:
            self.state = data
        return status, data

    def questions(self, answers: dict) -> tuple[int, dict]:
        status, data = self._record(self.api.questions(self.state["step"], answers))
        if status == 200:
            self.state = data
        return status, data

    def check(self, answers: dict) -> tuple[int, dict]:
        """Answer the quiz or a catch item (key -> option index)."""
        status, data = self._record(self.api.check(self.state["step"], answers))
        if status == 200:
            self.state = data
        return status, data

    def group(self, assignment: dict) -> tuple[int, dict]:
        before = self.state
        status, data = self._record(self.api.grouping(before["step"], assignment))
        if status == 200:
            self.actions.append({"stage": before["stage"], "step": before["step"], "assignment": dict(assignment)})
            self.state = data
        return status, data

    @staticmethod
    def default_answers(state: dict, rng: random.Random) -> dict:
        answers = {}
        for q in state["questions"]:
            if q["type"] == "choice":
                answers[q["key"]] = rng.choice(q["options"])
            elif q["type"] == "scale":
                answers[q["key"]] = q.get("first_value", 1) + rng.randrange(len(q["options"]))
            else:
                answers[q["key"]] = "fine"
        return answers

    @staticmethod
    def random_grouping(state: dict, rng: random.Random, n_groups: int | None = None) -> dict:
        """A random grouping of the batch into ``n_groups`` non-empty groups (default: a number
        the step's rule allows, ``min_groups`` .. ``max_groups``)."""
        ids = [img["id"] for img in state["images"]]
        n = n_groups if n_groups is not None else rng.randint(state["min_groups"], state["max_groups"])
        order = rng.sample(ids, len(ids))
        assignment = {i: k for k, i in enumerate(order[:n])}  # every group gets one image first
        assignment.update({i: rng.randrange(n) for i in order[n:]})
        return assignment

    def refused_wrong_group_counts(self) -> list[dict]:
        """Post groupings with a number of groups the step's rule refuses (one fewer than the
        minimum, one more than the maximum, where the batch allows); each must be a 400 that
        names the rule and leaves the participant on the same step. Returns the refusals."""
        s = self.state
        wrong = [n for n in (s["min_groups"] - 1, s["max_groups"] + 1) if 1 <= n <= len(s["images"])]
        refusals = []
        for n in wrong:
            status, data = self.post(f"steps/{s['step']}/grouping",
                                     {"assignment": {str(k): v for k, v in self.random_grouping(s, self.rng, n).items()}})
            assert status == 400, (n, data)
            assert data["error"] == "invalid" and s["group_rule"] in data["detail"] and f"in {n} group" in data["detail"], data
            refusals.append({"step": s["step"], "n_groups": n, "detail": data["detail"]})
        if refusals:  # nothing moved: the server still holds this batch
            before = s
            assert self.refresh()["step"] == before["step"] and self.state["kind"] == "grouping", self.state
        return refusals

    def walk_clustering(self, *, group_of=None, try_wrong_counts: bool = False) -> dict:
        """Take the whole clustering study; ``group_of(image_ids) -> {id: group}`` (default: a
        random grouping the step's rule allows). With ``try_wrong_counts`` every batch is first
        sent with a number of groups the rule refuses (`refused_wrong_group_counts`)."""
        if self.state.get("kind") in (None, "consent"):
            status, _ = self.enter()
            assert status in (200, 201), self.state
        self.refusals: list[dict] = []
        while self.state["kind"] != "done":
            kind = self.state["kind"]
            if kind == "instructions":
                assert self.continue_()[0] == 200
            elif kind == "questions":
                status, data = self.questions(self.default_answers(self.state, self.rng))
                assert status == 200, data
            elif kind == "grouping":
                if try_wrong_counts:
                    self.refusals += self.refused_wrong_group_counts()
                ids = [img["id"] for img in self.state["images"]]
                assignment = group_of(ids) if group_of else self.random_grouping(self.state, self.rng)
                status, data = self.group(assignment)
                assert status == 200, data
            else:  # pragma: no cover
                raise AssertionError(f"unexpected step {kind}")
        return self.state

    def walk(self, *, choose=None, rating: int = 4, quiz=None, catch=None, other=None) -> dict:
        """Take the whole study: instructions, every trial, rating. Returns the final state.
        ``quiz(state)`` and ``catch(state)`` give the answers of a quiz and a catch item;
        ``other(bot)`` answers a step of any other kind (e.g. one a test registers) and returns
        ``(status, data)``."""
        if self.state.get("kind") in (None, "consent"):
            status, _ = self.enter()
            assert status in (200, 201), self.state
        while self.state["kind"] not in ("done", "exit"):
            kind = self.state["kind"]
            if kind == "instructions":
                assert self.continue_()[0] == 200
            elif kind == "trial":
                if not self.state["answered"]:
                    options = [o["value"] for o in self.state["options"]]
                    choice = choose(self.state) if choose else self.rng.choice(options)
                    status, data = self.answer(choice)
                    assert status == 200, data
                assert self.continue_()[0] == 200
            elif kind == "rating":
                assert self.rate(rating)[0] == 200
            elif kind == "quiz":
                status, data = self.check(quiz(self.state))
                assert status == 200, data
            elif kind == "catch":
                status, data = self.check({"catch": catch(self.state) if catch else 0})
                assert status == 200, data
            elif other is not None:
                status, data = other(self)
                assert status == 200, data
            else:  # pragma: no cover
                raise AssertionError(f"unexpected step {kind}")
        return self.state

    def assert_no_leak(self) -> None:
        """No response so far reveals the correct answer of the current, unanswered trial."""
        trial = self.state["trial"]
        for label, _, body in self.responses:
            if not body.startswith("{"):
                continue
            data = json.loads(body)
            states = [data] + ([data["state"]] if isinstance(data.get("state"), dict) else [])
            for st in states:
                if st.get("kind") == "trial" and st.get("trial") == trial:
                    leaked = [k for k in LEAK_KEYS if re.search(rf'"{k}"', json.dumps(st))]
                    assert not leaked, f"{label} revealed {leaked} before the answer of trial {trial}"
