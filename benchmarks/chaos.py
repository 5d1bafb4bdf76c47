"""Crashes during a launch: ``benchmarks/load_participants.py --chaos``.

While the launch phase runs, :class:`Chaos` kills one gunicorn worker with SIGKILL every
``--chaos-every`` seconds (20 by default; gunicorn's master starts a new one) and, with a PostgreSQL
``DATABASE_URL``, restarts the database once, half-way through the arrivals, in *immediate* mode:
the server stops without a checkpoint and replays its WAL on start, as after a crash, so an
acknowledged answer that was not durable would be lost. The cluster is the one of Debian's
``pg_lsclusters`` that listens on the URL's port: point ``DATABASE_URL`` at a cluster of your own
(``STUDY_PG_CLUSTER=chaos STUDY_PG_PORT=5440 scripts/services.sh``), not at one other people use.

The simulated participants then do what a person does with the study page
(``static/study/study.js``): a request that fails (the connection drops, or a 5xx) shows "Something
went wrong ... Please try again" / "Could not reach the server ..." and re-enables the button; the
person clicks again after a moment and the page sends the *same* request again (same method, path
and body; the page sends no idempotency key, the server's step check makes a repeat harmless). A
reply the page renders (2xx, or a 4xx that carries the state) ends the retries. :class:`BrowserRetry`
does this around the benchmark's transport, and records every failed attempt so that each 5xx and
retry can be put down to a cause: the chaos event it followed, or none ("unexplained").

After the launch every run that did not finish is asked for its state with the cookie it had, as
its page would on reload: *resumable* when the server still holds the run.

The benchmark's usual check then says whether any acknowledged answer was lost or duplicated.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from studyapp.studies.client import AsyncHttpxTransport, Call, ParticipantClient, Reply

#: Set by ``load_participants.py --chaos``: wrap the launch participants' transport in BrowserRetry.
ACTIVE = False
#: A person clicks "try again" this many times before giving up (bounded, as every loop here).
MAX_CLICKS = 12
#: Seconds after a chaos event within which a failure is put down to it.
BLAME_WINDOW = 15.0


@dataclass
class Failure:
    t: float  # time.monotonic() when the failed attempt ended (its think time and quick retries are before)
    label: str
    kind: str  # "dropped: <httpx exception>" or "HTTP <status>"


@dataclass
class Log:
    """What chaos did and what the clients saw (one per benchmark process)."""

    events: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, "worker 123 SIGKILL" ...)
    failures: list[Failure] = field(default_factory=list)
    retries: int = 0  # requests sent again after a failure (the person's "try again")
    gave_up: int = 0  # requests still failing after MAX_CLICKS
    rerendered: int = 0  # repeats refused with the current state (the first try had gone through)


LOG = Log()


class BrowserRetry:
    """The study page's behaviour on a failed request, around another transport (see module doc).

    ``inner`` is the benchmark's transport: it waits the think time before each send (here: the
    moment before the person clicks again), and retries a dropped connection up to three times
    before raising ``RuntimeError``; its ``dropped`` counter says how many attempts dropped."""

    def __init__(self, inner, log: Log = LOG):
        self.inner = inner
        self.log = log
        self.raised: list[str] = []  # what each dropped attempt raised (httpx's exception class)
        client = getattr(inner, "client", None)
        if isinstance(client, httpx.AsyncClient):  # record the drops' exceptions, which inner swallows
            request = client.request

            async def recorded(*args, **kwargs):
                try:
                    return await request(*args, **kwargs)
                except httpx.TransportError as exc:
                    self.raised.append(type(exc).__name__)
                    raise

            client.request = recorded  # type: ignore[method-assign]

    async def send(self, call: Call) -> Reply:
        for click in range(MAX_CLICKS):
            if click:
                self.log.retries += 1
            dropped0 = self.inner.dropped
            self.raised.clear()
            try:
                reply = await self.inner.send(call)
            except RuntimeError:  # every attempt of the inner transport dropped
                reply = None
            seen = time.monotonic()  # a failure is blamed from when it is seen: the attempt began with a think time
            for k in range(self.inner.dropped - dropped0):
                why = self.raised[k] if k < len(self.raised) else "?"
                self.log.failures.append(Failure(seen, call.label, f"dropped: {why}"))
            if reply is not None and reply.status < 500:
                retried = click > 0 or self.inner.dropped > dropped0
                if retried and 400 <= reply.status < 500 and isinstance(reply.data.get("state"), dict) and "answer" not in call.label:
                    # The first try went through but its reply was lost, so the repeat is refused
                    # ("you are past that step") with the current state, which the page renders
                    # (study.js act()). Handed on as the step's reply. Never for an answer: the
                    # benchmark counts a 200 to an answer as an acknowledgement.
                    self.log.rerendered += 1
                    return Reply(call, 200, json.dumps(reply.data["state"]))
                return reply
            if reply is not None:
                self.log.failures.append(Failure(seen, call.label, f"HTTP {reply.status}"))
        self.log.gave_up += 1
        raise RuntimeError(f"{call.label}: still failing after {MAX_CLICKS} clicks")


def _children(master: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == master:
            pids.append(int(stat.parent.name))
    return pids


def postgres_cluster(database_url: str) -> tuple[str, str] | None:
    """(version, name) of the Debian cluster that listens on the URL's port, or None."""
    if not database_url.startswith(("postgres", "pgsql")):
        return None
    port = str(urlsplit(database_url).port or 5432)
    try:
        out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == port:
            return fields[0], fields[1]
    return None


class Chaos:
    """Kills a gunicorn worker every ``every`` seconds for ``duration`` seconds, and restarts the
    PostgreSQL cluster once at ``duration / 2`` (when there is one)."""

    def __init__(self, master: int, duration: float, every: float = 20.0, database_url: str = "", log: Log = LOG, seed: int = 0):
        self.master, self.duration, self.every, self.log = master, duration, every, log
        self.cluster = postgres_cluster(database_url)
        self.rng = random.Random(seed)
        self.task: asyncio.Task | None = None

    def start(self) -> Chaos:
        self.task = asyncio.ensure_future(self._run())
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        t0 = time.monotonic()
        kills = [self.every / 2 + k * self.every for k in range(int(self.duration // self.every) + 1)]
        plan = [(t, "kill") for t in kills if t < self.duration]
        if self.cluster:
            plan.append((self.duration / 2 + self.every / 4, "restart"))  # between two kills
        for at, what in sorted(plan):
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            if what == "kill":
                self._kill_worker()
            else:
                await self._restart_database()

    def _kill_worker(self) -> None:
        workers = _children(self.master)
        if not workers:
            self.log.events.append((time.monotonic(), "no worker to kill"))
            return
        pid = self.rng.choice(workers)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.log.events.append((time.monotonic(), f"worker SIGKILL (pid {pid})"))

    async def _restart_database(self) -> None:
        assert self.cluster
        ver, name = self.cluster
        t = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            "pg_ctlcluster", "--mode", "immediate", ver, name, "restart",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        took = time.monotonic() - t
        outcome = "" if proc.returncode == 0 else f", failed: {err.decode().strip()[:200]}"
        self.log.events.append((t, f"PostgreSQL {ver}/{name} immediate restart ({took:.1f} s{outcome})"))


def blame(failure: Failure, events: list[tuple[float, str]]) -> str:
    """The chaos event a failure followed (within BLAME_WINDOW s), else "unexplained"."""
    before = [(t, what) for t, what in events if t <= failure.t]
    if before and failure.t - before[-1][0] <= BLAME_WINDOW:
        what = before[-1][1]
        return "database restart" if what.startswith("PostgreSQL") else "worker SIGKILL"
    return "unexplained"


async def resumable(base: str, slug: str, people) -> tuple[int, int]:
    """(resumable, not resumable) among the runs that did not finish: the page's reload with the
    run's cookie; resumable when the server answers with a step of the run."""
    ok = bad = 0
    for p in people:
        if p.done or not p.code:
            continue
        async with httpx.AsyncClient(base_url=base, timeout=30, cookies=p.http.cookies) as client:
            try:
                reply = await ParticipantClient(slug, AsyncHttpxTransport(client)).state()
            except httpx.HTTPError:
                bad += 1
                continue
        if reply.status == 200 and reply.data.get("kind") not in (None, "exit", "unavailable"):
            ok += 1
        else:
            bad += 1
    return ok, bad


def report(log: Log, launch_people, lost: int, duplicated: int, resumable_counts: tuple[int, int]) -> None:
    t0 = min([t for t, _ in log.events] + [f.t for f in log.failures], default=0.0)
    print("\nchaos (launch phase):")
    for t, what in log.events:
        print(f"  {t - t0:6.1f} s  {what}")
    done = sum(p.done for p in launch_people)
    started = sum(bool(p.code) for p in launch_people)
    ok, bad = resumable_counts
    print(f"  answers lost {lost} (must be 0), duplicated {duplicated} (must be 0)")
    print(f"  runs: {done} completed, {ok} not completed but resumable, {bad} neither, "
          f"{len(launch_people) - started} never entered, of {len(launch_people)}")
    print(f"  requests sent again after a failure (the page's 'try again'): {log.retries}; "
          f"given up after {MAX_CLICKS} tries: {log.gave_up}; repeats refused with the current state "
          f"(the first try had gone through; the page shows that state): {log.rerendered}")
    by: dict[tuple[str, str], int] = {}
    for f in log.failures:
        key = (blame(f, log.events), f.kind)
        by[key] = by.get(key, 0) + 1
    print(f"  failed attempts by cause (the chaos event within {BLAME_WINDOW:.0f} s before; dropped = no HTTP reply: "
          "RemoteProtocolError/ReadError when the worker died with the request or closed an idle keep-alive connection "
          "as the request went out; HTTP 5xx = the server answered with an error):")
    for (cause, kind), n in sorted(by.items()):
        print(f"    {cause:18} {kind:32} {n:6}")
    if not by:
        print("    none")
