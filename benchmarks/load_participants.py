"""Load: simulated participants x 20 trials against gunicorn on loopback.

Participants double-submit, reload and go back at random. Three phases, each printed:

1. *Saturation* (no pause, closed loop): ``--participants`` participants fire their next request
   as soon as the last one answers. Gives the server's requests/s for the participant API and,
   right after, for a bare Django JSON view on the same server (the ratio is the cost of the
   study logic). Latency here is mostly queueing (200 clients / req/s), not service time.
2. *Paced* (``--think``, default 1 s mean, exponential): the same number of participants, each
   waiting between actions, still far faster than a person reads a trial. Gives the latency a
   participant sees (p50/p95/p99) while 200 runs are in progress.
3. *Prolific launch* (``--launch``, default 1000 participants arriving at random over
   ``--launch-over`` seconds, default 120): each takes the whole study with a mean think time of
   ``--launch-think`` seconds (default 3, exponential) before every request. A person takes
   5-15 s per trial (two requests: the answer, then moving on), so 3 s is shorter than real; it
   keeps the run under 4 minutes. As long as a run is shorter than the arrival window the peak
   request rate is the arrival rate times the requests of a run (about 8 x 25 = 200 req/s),
   whatever the think time, so a longer think time would mostly raise the number of runs open
   at once, not the load.

After all phases, the database must hold exactly the answers the clients saw acknowledged:
nothing lost, nothing duplicated. Then the queries of each participant request are counted (one
participant walked in process, through the same settings and database). Prints the machine's
load average before and after (other work on the machine shifts every number; the ratios within
one run are what to compare). Asserts nothing about time.

The server runs with ``STUDY_PERF_TIMING=1`` (unless set to 0): each response carries its stage times in a
``Server-Timing`` header (``studyapp.lib.perf.timing``: queue before the worker took it up,
throttle, lock wait, queries, rendering, the collector), and every run prints, for the slowest 1%
of each phase, where their time went. ``STUDY_PERF_<NAME>=0`` in the environment switches a speed
trick off (``studyapp/lib/perf/switches.py``), to measure what it buys.

    python benchmarks/load_participants.py --participants 200 --workers 4
    DATABASE_URL=postgres://... python benchmarks/load_participants.py   # against PostgreSQL
    python benchmarks/load_participants.py --launch 0                     # phases 1 and 2 only
    python benchmarks/load_participants.py --phases launch --chaos        # crashes during the launch (benchmarks/chaos.py)

With a PostgreSQL ``DATABASE_URL`` the benchmark creates a database of its own next to the one
named there, and drops it at the end. Only loopback addresses are used; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
GUNICORN_CONF = ROOT / "gunicorn.conf.py"
sys.path.insert(0, str(ROOT))

import chaos  # noqa: E402  (benchmarks/chaos.py)

from studyapp.studies.client import AsyncHttpxTransport, Call, ParticipantClient, Reply  # noqa: E402


def parse_server_timing(header: str) -> dict[str, float]:
    """``Server-Timing: app;dur=3.1, db;dur=0.4`` (studyapp.lib.perf.timing) -> {"app": 0.0031, "db": 0.0004}."""
    out = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if name and dur:
            try:
                out[name] = float(dur) / 1000
            except ValueError:
                continue
    return out


#: The server's exclusive stages (studyapp.lib.perf.timing: they add up to ``app``), in the order
#: the breakdown prints them after ``queue``.
STAGES = ("middleware", "view", "throttle", "session", "lock", "db", "render")


def tail_breakdown(lat: list[float], stages: list[dict[str, float]], share: float = 0.01) -> str:
    """Where the time of the slowest ``share`` of requests went: the mean of each server stage
    (``queue`` before the worker's thread took the request up, then the exclusive stages of its
    time in the application), ``other`` (the application's time no stage holds: should be ~0),
    ``client`` (what the server did not see: gunicorn writing the response, the way back, the
    client's own event loop), and, overlapping those, the collector's passes (``gc``), the
    application's time its thread did not run on a CPU (``wait``: the GIL, locks, the disk) and
    the time it held SQLite's write lock (``held``); then how long every request that took that
    lock held it (p50 / p99 / max): while one holds it, every other writer waits in ``lock``."""
    slowest = sorted(range(len(lat)), key=lat.__getitem__, reverse=True)[: max(1, int(len(lat) * share))]
    timed = [i for i in slowest if stages[i]]
    if not timed:
        return "no Server-Timing (STUDY_PERF_TIMING=1 off?)"
    mean = lambda name: sum(stages[i].get(name, 0.0) for i in timed) / len(timed)  # noqa: E731
    total = sum(lat[i] for i in timed) / len(timed)
    parts = {"queue": mean("queue"), **{name: mean(name) for name in STAGES}}
    parts["other"] = mean("app") - sum(parts[n] for n in STAGES)
    parts["client"] = total - mean("app") - parts["queue"]
    overlapping = {"gc": mean("gc"), "wait": mean("app") - mean("cpu"), "held": mean("held")}
    shown = ", ".join(f"{name} {1000 * value:.1f}" for name, value in parts.items())
    over = ", ".join(f"{name} {1000 * value:.1f}" for name, value in overlapping.items())
    held = sorted(s["held"] for s in stages if s.get("held"))
    holds = (f"; SQLite write lock held p50 {1000 * percentile(held, 50):.1f} / p99 {1000 * percentile(held, 99):.1f}"
             f" / max {1000 * held[-1]:.1f} ms by {len(held)} requests") if held else ""
    return f"slowest {len(slowest)}: mean {1000 * total:.0f} ms = {shown} ms; overlapping: {over} ms{holds}"


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def prepare(env: dict[str, str]) -> str:
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    code = (
        "from tests.studyapp.factories import learning_study, clustering_study; "
        "s = learning_study(invalid=0); s.arms.update(cap=None); clustering_study(); print(s.public_code)"
    )
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


@contextmanager
def own_postgres_database(env: dict[str, str]):
    """With a PostgreSQL DATABASE_URL, a fresh database of the benchmark's own, dropped at the end."""
    url = env.get("DATABASE_URL", "")
    if not url.startswith(("postgres", "pgsql")):
        yield
        return
    import psycopg

    parts = urlsplit(url)
    name = f"study_load_{secrets.token_hex(4)}"
    admin = urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    env["DATABASE_URL"] = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    try:
        yield
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


#: With ``--series FILE``: every request's (end time, seconds, Server-Timing stages), written to FILE.
SERIES: list[tuple[float, float, dict[str, float]]] | None = None


def write_series(path: str) -> None:
    """One CSV row per request, in the order they ended: seconds since the first ended, latency,
    the server's queue and application time (empty for a dropped request)."""
    rows = sorted(SERIES or [])
    start = rows[0][0] if rows else 0.0
    with open(path, "w") as f:
        f.write("t_s,latency_ms,queue_ms,app_ms\n")
        for end, seconds, stages in rows:
            queue = f"{1000 * stages['queue']:.1f}" if "queue" in stages else ""
            app = f"{1000 * stages['app']:.1f}" if "app" in stages else ""
            f.write(f"{end - start:.3f},{1000 * seconds:.1f},{queue},{app}\n")


class Measured(AsyncHttpxTransport):
    """httpx on loopback, as a browser would: think time first, retry after a dropped connection."""

    def __init__(self, client: httpx.AsyncClient, rng: random.Random, latencies: list[float], think: float,
                 stages: list[dict[str, float]] | None = None):
        super().__init__(client)
        self.rng = rng
        self.lat = latencies
        self.stages = stages if stages is not None else []
        self.think = think
        self.errors = 0
        self.dropped = 0
        self.timing: dict[str, float] = {}
        client.event_hooks = {"request": [self._stamp], "response": [self._read_timing]}

    async def _stamp(self, request: httpx.Request) -> None:
        self.timing = {}
        request.headers["X-Request-Start"] = f"t={time.time():.6f}"

    async def _read_timing(self, response: httpx.Response) -> None:
        self.timing = parse_server_timing(response.headers.get("Server-Timing", ""))

    def _measured(self, seconds: float) -> None:
        self.lat.append(seconds)
        self.stages.append(self.timing)
        if SERIES is not None:
            SERIES.append((time.time(), seconds, self.timing))

    async def send(self, call: Call) -> Reply:
        if self.think:
            await asyncio.sleep(self.rng.expovariate(1 / self.think))
        for _attempt in range(3):  # a browser's retry after a dropped connection; the API is idempotent
            t0 = time.perf_counter()
            try:
                reply = await super().send(call)
            except httpx.TransportError:
                self.timing = {}
                self._measured(time.perf_counter() - t0)
                self.dropped += 1
                continue
            self._measured(time.perf_counter() - t0)
            if reply.status >= 500:
                self.errors += 1
            return reply
        raise RuntimeError(f"{call.label}: no answer after 3 attempts")


class Participant:
    def __init__(self, base: str, slug: str, rng: random.Random, latencies: list[float], think: float = 0.0,
                 stages: list[dict[str, float]] | None = None):
        # A connection idle for as long as the server keeps it (gunicorn.conf.py's keepalive) may be
        # closed by the server just as the next request goes out on it: the request then drops. A
        # browser resends such a request by itself (a reused connection that fails before any reply);
        # this client retires an idle connection a second before the server would instead.
        self.http = httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(keepalive_expiry=client_keepalive()))
        self.transport = Measured(self.http, rng, latencies, think, stages)
        self.api = ParticipantClient(slug, chaos.BrowserRetry(self.transport) if chaos.ACTIVE else self.transport)
        self.rng = rng
        self.acked: dict[int, int] = {}  # trial -> choice acknowledged by a 200
        self.code = ""
        self.done = False
        self.failed = ""  # why the run stopped early (no answer after the retries)
        self.last_kind = ""  # the kind of the last state seen (for a run that did not finish)
        self.refusals: dict[str, int] = {}  # "answer 409" -> times (4xx replies the walk expected to be 200)

    @property
    def errors(self) -> int:
        return self.transport.errors

    @property
    def dropped(self) -> int:
        return self.transport.dropped

    async def run(self, delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            await self._walk()
        except RuntimeError as exc:  # no answer after the retries: reported, not raised
            self.failed = str(exc)
        finally:
            await self.http.aclose()

    async def _walk(self) -> None:
        api = self.api
        await api.page()
        state = (await api.enter(consent=True)).data
        self.code = state["participant"]
        for _ in range(200):  # bounded
            kind = self.last_kind = state["kind"]
            if kind == "exit":  # the study ended the run (a time limit, a failed check): reported as such
                self.last_kind = f"exit ({state['exit'].get('outcome', '')})"
                break
            if kind == "done":
                self.done = True
                break
            if self.rng.random() < 0.1:  # reload
                state = (await api.state()).data
                continue
            if kind == "instructions":
                state = (await api.continue_(state["step"])).data
            elif kind == "trial" and not state["answered"]:
                choice = self.rng.choice([o["value"] for o in state["options"]])
                stimulus = state["stimulus"]
                r = await api.answer(state["step"], stimulus=stimulus, choice=choice)
                if r.status == 200:
                    self.acked[state["trial"]] = choice
                    state = r.data
                else:  # refused: carry on from the state it sends, or reload, as the page does
                    state = await self._refused("answer", r)
                if self.rng.random() < 0.2:  # double submit
                    r2 = await api.answer(state["step"], stimulus=stimulus, choice=choice)
                    if r2.status == 200:
                        self.acked[state["trial"]] = choice
            elif kind == "trial":
                step = state["step"]
                state = (await api.continue_(step)).data
                if self.rng.random() < 0.1:  # "back": ask for the step just left
                    r = await api.continue_(step)
                    state = r.data if r.status == 200 else await self._refused("back", r)
            elif kind == "rating":
                state = (await api.questions(state["step"], {state["key"]: 4})).data


    async def _refused(self, label: str, reply: Reply) -> dict:
        """A 4xx: counted by request and status; the state it carries, else the server's (a reload)."""
        key = f"{label} {reply.status}"
        self.refusals[key] = self.refusals.get(key, 0) + 1
        carried = reply.data.get("state") if isinstance(reply.data, dict) else None
        return carried if isinstance(carried, dict) and "kind" in carried else (await self.api.state()).data


async def bare(base: str, n_clients: int, n_requests: int, lat: list[float]) -> float:
    async def one(k: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            for _ in range(n_requests // n_clients):
                for _attempt in range(3):  # retried after a dropped connection, as for the API
                    t0 = time.perf_counter()
                    try:
                        await c.get("/bare")
                    except httpx.TransportError:
                        continue
                    finally:
                        lat.append(time.perf_counter() - t0)
                    break

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(n_clients)))
    return time.perf_counter() - t0


def server_cpu_seconds(master: int) -> float:
    """CPU seconds (user + system) used so far by the gunicorn master ``master`` and its workers, from
    /proc (Linux); 0.0 where /proc cannot be read."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == master or ppid == master:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


class CpuMeter:
    """CPU of the server (its processes) and of this client process over one phase."""

    def __init__(self, master: int):
        self.master = master
        self.server0, self.client0 = server_cpu_seconds(master), time.process_time()

    def done(self) -> dict[str, float]:
        return {"server_cpu": server_cpu_seconds(self.master) - self.server0, "client_cpu": time.process_time() - self.client0}


def progress(phase: str, measured: dict) -> None:
    lat = measured["lat"]
    print(f"  {phase}: {len(lat)} requests, {len(lat) / measured['elapsed']:.1f} req/s, p50 {1000 * percentile(lat, 50):.0f} ms, "
          f"p99 {1000 * percentile(lat, 99):.0f} ms, CPU per request: server {1000 * measured['server_cpu'] / len(lat):.2f} ms, "
          f"client {1000 * measured['client_cpu'] / len(lat):.2f} ms, load average {os.getloadavg()[0]:.1f}", flush=True)


async def main_async(args, base: str, slug: str, master: int) -> dict:
    out: dict = {"people": {}}
    if args.participants and "saturation" in args.phases:
        lat: list[float] = []
        stages: list[dict[str, float]] = []
        people = [Participant(base, slug, random.Random(i), lat, stages=stages) for i in range(args.participants)]
        t0, cpu = time.perf_counter(), CpuMeter(master)
        await asyncio.gather(*(p.run() for p in people))
        out["saturation"] = {"lat": lat, "stages": stages, "elapsed": time.perf_counter() - t0, **cpu.done()}
        progress("saturation", out["saturation"])
        bare_lat: list[float] = []
        cpu = CpuMeter(master)
        out["bare"] = {"lat": bare_lat, "elapsed": await bare(base, args.participants, len(lat), bare_lat)}
        out["bare"].update(cpu.done())
        progress("bare", out["bare"])
        out["people"]["saturation"] = people
    if args.participants and args.think > 0 and "paced" in args.phases:
        paced_lat: list[float] = []
        paced_stages: list[dict[str, float]] = []
        paced = [Participant(base, slug, random.Random(10_000 + i), paced_lat, think=args.think, stages=paced_stages)
                 for i in range(args.participants)]
        t1, cpu = time.perf_counter(), CpuMeter(master)
        await asyncio.gather(*(p.run() for p in paced))
        out["paced"] = {"lat": paced_lat, "stages": paced_stages, "elapsed": time.perf_counter() - t1, **cpu.done()}
        progress("paced", out["paced"])
        out["people"]["paced"] = paced
    if args.launch and "launch" in args.phases:
        launch_lat: list[float] = []
        launch_stages: list[dict[str, float]] = []
        rng = random.Random(7)
        arrivals = sorted(rng.uniform(0, args.launch_over) for _ in range(args.launch))
        launch = [Participant(base, slug, random.Random(20_000 + i), launch_lat, think=args.launch_think, stages=launch_stages)
                  for i in range(args.launch)]
        t2, cpu = time.perf_counter(), CpuMeter(master)
        runs = [asyncio.ensure_future(p.run(delay=a)) for p, a in zip(launch, arrivals, strict=True)]
        monkey = chaos.Chaos(master, args.launch_over, args.chaos_every, os.environ.get("DATABASE_URL", "")).start() if args.chaos else None
        _, unfinished = await asyncio.wait(runs, timeout=args.launch_over + args.launch_deadline)
        for run in unfinished:  # a server that cannot keep up: stop the runs still going (reported)
            run.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        if monkey:
            await monkey.stop()
            out["chaos"] = await chaos.resumable(base, slug, launch)
        out["launch"] = {"lat": launch_lat, "stages": launch_stages, "elapsed": time.perf_counter() - t2, **cpu.done()}
        progress("launch", out["launch"])
        out["people"]["launch"] = launch
    return out


# -- queries per request (run in a subprocess with the benchmark's settings) -------------------

def count_queries(learning_slug: str) -> dict[str, int]:
    """Walk one participant of each study in process and count each request's queries."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyapp.settings")
    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from studyapp.studies.client import DjangoTransport
    from studyapp.studies.models import Study

    counts: dict[str, int] = {}

    def counted(name: str, call):
        with CaptureQueriesContext(connection) as ctx:
            reply = call()
        assert reply.status in (200, 201), (name, reply.status, reply.text[:300])
        counts.setdefault(name, len(ctx.captured_queries))
        return reply.data

    api = ParticipantClient(learning_slug, DjangoTransport(Client(enforce_csrf_checks=True)))
    api.page()
    counted("enter", lambda: api.enter(consent=True))
    counted("state (instructions)", api.state)
    state = counted("continue (instructions)", lambda: api.continue_(0))
    for _ in range(2):
        state = counted("state (trial)", api.state)
        state = counted("answer", lambda s=state: api.answer(s["step"], stimulus=s["stimulus"], choice=s["options"][0]["value"]))
        counted("state (answered trial)", api.state)
        state = counted("continue (trial)", lambda s=state: api.continue_(s["step"]))

    clustering = Study.objects.get(design=Study.Design.CLUSTERING)
    api = ParticipantClient(clustering.public_code, DjangoTransport(Client(enforce_csrf_checks=True)))
    api.page()
    state = api.enter(consent=True).data
    state = api.continue_(state["step"]).data
    from tests.studyapp.bots import Bot

    rng = random.Random(0)
    answers = Bot.default_answers(state, rng)
    state = counted("questions (demographics)", lambda: api.questions(state["step"], answers))
    counted("state (grouping)", api.state)
    counted("grouping", lambda: api.grouping(state["step"], Bot.random_grouping(state, rng)))
    return counts


def gunicorn_command(args) -> list[str]:
    """The server, with the settings of every launcher (gunicorn.conf.py) and the run's overrides."""
    command = [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF), "--bind", f"127.0.0.1:{args.port}",
               "--log-level", "warning"]
    if args.workers:
        command += ["--workers", str(args.workers)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    return command


@functools.cache
def client_keepalive() -> float:
    """Seconds a client keeps an idle connection: a second less than the server (gunicorn.conf.py)."""
    return max(float(_gunicorn_file()["keepalive"]) - 1.0, 0.5)


def gunicorn_settings(args) -> tuple[int, int]:
    """(processes, threads) the server runs with: the run's overrides, else gunicorn.conf.py's."""
    conf = _gunicorn_file()
    return args.workers or conf["workers"], args.threads or conf["threads"]


def _gunicorn_file() -> dict:
    scope: dict = {"__file__": str(GUNICORN_CONF)}
    exec(compile(GUNICORN_CONF.read_text(), str(GUNICORN_CONF), "exec"), scope)  # noqa: S102 - our own config file
    return scope


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=200, help="participants of phases 1 and 2 (0: skip both)")
    parser.add_argument("--workers", type=int, help="gunicorn processes (default: gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, help="threads per process (default: gunicorn.conf.py's)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds between a participant's actions in phase 2 (0: skip)")
    parser.add_argument("--launch", type=int, default=1000, help="participants of the Prolific launch (0: skip it)")
    parser.add_argument("--launch-over", type=float, default=120.0, help="seconds over which the launch's participants arrive")
    parser.add_argument("--launch-think", type=float, default=3.0, help="mean seconds before each request of a launch participant")
    parser.add_argument("--launch-deadline", type=float, default=360.0,
                        help="seconds after the last arrival at which runs still going are stopped (and counted as not completed)")
    parser.add_argument("--phases", nargs="+", default=["saturation", "paced", "launch"], choices=["saturation", "paced", "launch"],
                        help="which phases to run (default: all three)")
    parser.add_argument("--series", metavar="FILE", help="write every request's end time, latency, queue and application time to FILE (CSV)")
    parser.add_argument("--chaos", action="store_true", help="during the launch, kill a gunicorn worker every --chaos-every s "
                        "and restart PostgreSQL once (benchmarks/chaos.py)")
    parser.add_argument("--chaos-every", type=float, default=20.0)
    parser.add_argument("--count-queries", metavar="SLUG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    chaos.ACTIVE = args.chaos
    if args.series:
        global SERIES
        SERIES = []
    if args.count_queries:
        print(json.dumps(count_queries(args.count_queries)))
        return

    tmp = Path(tempfile.mkdtemp(prefix="study-load-"))
    env = dict(os.environ)
    env.update({
        "STUDY_VAR_DIR": str(tmp), "DJANGO_SECRET_KEY": secrets.token_urlsafe(40), "DJANGO_DEBUG": "0",
        "DJANGO_SECURE_COOKIES": "0", "STUDY_ENTRY_RATE": "100000/minute", "STUDY_PARTICIPANT_RATE": "100000/minute",
        "LOG_LEVEL": "WARNING",
    })
    env.setdefault("STUDY_PERF_TIMING", "1")  # the stage breakdown; 0 to measure without its cost
    load_before = os.getloadavg()
    with own_postgres_database(env):
        slug = prepare(env)
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        server = subprocess.Popen(gunicorn_command(args), cwd=ROOT, env=env)
        base = f"http://127.0.0.1:{args.port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            result = asyncio.run(main_async(args, base, slug, server.pid))
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:  # requests still stuck after 30 s
                server.kill()
                server.wait(timeout=30)
        load_after = os.getloadavg()

        # The browser answers with an option's position in the study's classes; the row stores the class id.
        check = (
            "import json; from studyapp.studies.models import TrialAnswer; "
            "print(json.dumps([[a.participant.code, a.trial_index, [int(c) for c in a.participant.study.classes].index(a.choice)] "
            "for a in TrialAnswer.objects.select_related('participant__study')]))"
        )
        out = subprocess.run([sys.executable, "manage.py", "shell", "-c", check], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        rows = json.loads(out.stdout.strip().splitlines()[-1])
        queries = subprocess.run([sys.executable, __file__, "--count-queries", slug], cwd=ROOT, env=env, check=True,
                                 capture_output=True, text=True)
        counts = json.loads(queries.stdout.strip().splitlines()[-1])
    shutil.rmtree(tmp, ignore_errors=True)
    report(args, result, rows, counts, load_before, load_after)
    if args.series:
        write_series(args.series)


def _integrity(people: list[Participant], stored: dict[tuple[str, int], list[int]]) -> tuple[int, int, int, int]:
    codes = {p.code for p in people}
    acked = {(p.code, t): c for p in people for t, c in p.acked.items()}
    mine = {k: v for k, v in stored.items() if k[0] in codes}
    duplicates = sum(1 for v in mine.values() if len(v) > 1)
    lost = sum(1 for k, c in acked.items() if mine.get(k) != [c])
    return len(acked), lost, duplicates, sum(1 for k in mine if k not in acked)


def report(args, result: dict, rows: list, counts: dict[str, int], load_before, load_after) -> None:
    stored: dict[tuple[str, int], list[int]] = {}
    for code, trial, choice in rows:
        stored.setdefault((code, trial), []).append(choice)
    ms = lambda v: f"{1000 * v:7.1f}"  # noqa: E731
    database = "PostgreSQL" if "postgres" in os.environ.get("DATABASE_URL", "") else "SQLite"
    cache = "Redis" if os.environ.get("CACHE_URL", "").startswith("redis") else "file"
    workers, threads = gunicorn_settings(args)
    print(f"\ngunicorn {workers} workers x {threads} threads, database {database}, cache {cache}; "
          f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} ({os.cpu_count()} cores)")
    off = sorted(k for k, v in os.environ.items() if k.startswith("STUDY_PERF_") and k != "STUDY_PERF_TIMING" and v.strip().lower() in ("0", "false", "no", "off"))
    if off:
        print("switched off (studyapp/lib/perf/switches.py): " + ", ".join(off))
    print(f"{'phase':28}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'5xx':>5}{'lost':>6}{'dup':>5}"
          f"{'srv CPU':>9}{'cli CPU':>9}   (CPU ms per request)")

    def line(name: str, phase: str, people: list[Participant] | None, note: str = "") -> float:
        lat, elapsed = result[phase]["lat"], result[phase]["elapsed"]
        rps = len(lat) / elapsed
        if people is None:
            tail = f"{'':>5}{'':>6}{'':>5}"
        else:
            _, lost, dup, _ = _integrity(people, stored)
            tail = f"{sum(p.errors for p in people):>5}{lost:>6}{dup:>5}"
        cpu = f"{ms(result[phase]['server_cpu'] / len(lat)):>9}{ms(result[phase]['client_cpu'] / len(lat)):>9}"
        print(f"{name:28}{len(lat):>9}{rps:>8.1f}{ms(percentile(lat, 50)):>9}{ms(percentile(lat, 95)):>9}"
              f"{ms(percentile(lat, 99)):>9}{ms(max(lat)):>9}{tail}{cpu}{note}")
        return rps

    people = result["people"]
    if "saturation" in result:
        rps = line(f"saturation, {args.participants} at once", "saturation", people["saturation"])
        bare_rps = line("bare JSON view", "bare", None)
        print(f"{'':28}ratio of req/s (API / bare): {rps / bare_rps:.2f}   (goal >= 0.50)")
    if "paced" in result:
        line(f"paced, {args.think:g} s think", "paced", people["paced"], "   (p99 goal < 100 ms)")
    if "launch" in result:
        line(f"launch, {args.launch} over {args.launch_over:g} s", "launch", people["launch"], "   (p99 goal < 250 ms)")
        print(f"{'':28}launch: {args.launch_think:g} s mean think time, "
              f"{sum(p.done for p in people['launch'])}/{args.launch} runs completed, {result['launch']['elapsed']:.0f} s in all")
        if "chaos" in result:
            chaos.report(chaos.LOG, people["launch"], *_integrity(people["launch"], stored)[1:3], result["chaos"])
    print("where the time of the slowest 1% went (ms; studyapp.lib.perf.timing):")
    for phase in ("saturation", "paced", "launch"):
        if phase in result:
            print(f"  {phase:10} {tail_breakdown(result[phase]['lat'], result[phase]['stages'])}")
    everybody = [p for group in people.values() for p in group]
    n_acked, lost, dup, unacked = _integrity(everybody, stored)
    print(f"all phases: 5xx {sum(p.errors for p in everybody)}; dropped connections (or timeouts) retried "
          f"{sum(p.dropped for p in everybody)}; runs completed {sum(p.done for p in everybody)}/{len(everybody)}, "
          f"given up after 3 attempts {sum(bool(p.failed) for p in everybody)}")
    unfinished: dict[str, int] = {}
    for p in everybody:
        if not p.done:
            why = p.failed or p.last_kind or "not started"
            unfinished[why] = unfinished.get(why, 0) + 1
    refusals: dict[str, int] = {}
    for p in everybody:
        for k, v in p.refusals.items():
            refusals[k] = refusals.get(k, 0) + v
    if refusals:
        print("refused (4xx) where the walk expected a 200, then reloaded: " + ", ".join(f"{k}: {v}" for k, v in sorted(refusals.items())))
    if unfinished:
        print("runs not completed, by their last state: " + ", ".join(f"{k} {v}" for k, v in sorted(unfinished.items())))
    print(f"answers acknowledged {n_acked}, stored {len(stored)}, lost {lost}, duplicated {dup}, stored but never acknowledged {unacked}")
    print("queries per request: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
