"""Load: N concurrent simulated participants x 20 trials against gunicorn on loopback.

Participants double-submit, reload and go back at random. Two phases, each printed:

1. *Saturation* (``--think 0``, closed loop): every participant fires its next request as soon
   as the last one answers. Gives the server's requests/s for the participant API and, right
   after, for a bare Django JSON view on the same server (the ratio is the cost of the study
   logic). Latency here is mostly queueing (200 clients / req/s), not service time.
2. *Paced* (``--think``, default 1 s mean, exponential): each participant waits between
   actions, still far faster than a person reads a trial. Gives the latency a participant sees
   (p50/p95/p99) while 200 runs are in progress.

After both, the database must hold exactly the answers the clients saw acknowledged: nothing
lost, nothing duplicated. Prints; asserts nothing about time.

    python benchmarks/load_participants.py --participants 200 --workers 4
    DATABASE_URL=postgres://... python benchmarks/load_participants.py   # against PostgreSQL

Only loopback addresses are used; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from studyapp.studies.client import AsyncHttpxTransport, Call, ParticipantClient, Reply  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def prepare(env: dict[str, str]) -> str:
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    code = (
        "from tests.studyapp.factories import learning_study; "
        "s = learning_study(invalid=0); s.arms.update(cap=None); print(s.slug)"
    )
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


class Measured(AsyncHttpxTransport):
    """httpx on loopback, as a browser would: think time first, retry after a dropped connection."""

    def __init__(self, client: httpx.AsyncClient, rng: random.Random, latencies: list[float], think: float):
        super().__init__(client)
        self.rng = rng
        self.lat = latencies
        self.think = think
        self.errors = 0
        self.dropped = 0

    async def send(self, call: Call) -> Reply:
        if self.think:
            await asyncio.sleep(self.rng.expovariate(1 / self.think))
        for _attempt in range(3):  # a browser's retry after a dropped connection; the API is idempotent
            t0 = time.perf_counter()
            try:
                reply = await super().send(call)
            except httpx.TransportError:
                self.lat.append(time.perf_counter() - t0)
                self.dropped += 1
                continue
            self.lat.append(time.perf_counter() - t0)
            if reply.status >= 500:
                self.errors += 1
            return reply
        raise RuntimeError(f"{call.label}: no answer after 3 attempts")


class Participant:
    def __init__(self, base: str, slug: str, rng: random.Random, latencies: list[float], think: float = 0.0):
        self.http = httpx.AsyncClient(base_url=base, timeout=30)
        self.transport = Measured(self.http, rng, latencies, think)
        self.api = ParticipantClient(slug, self.transport)
        self.rng = rng
        self.acked: dict[int, int] = {}  # trial -> choice acknowledged by a 200
        self.code = ""

    @property
    def errors(self) -> int:
        return self.transport.errors

    @property
    def dropped(self) -> int:
        return self.transport.dropped

    async def run(self) -> None:
        api = self.api
        await api.page()
        state = (await api.enter(consent=True)).data
        self.code = state["participant"]
        for _ in range(200):  # bounded
            kind = state["kind"]
            if kind == "done":
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
                if self.rng.random() < 0.2:  # double submit
                    r2 = await api.answer(state["step"], stimulus=stimulus, choice=choice)
                    if r2.status == 200:
                        self.acked[state["trial"]] = choice
            elif kind == "trial":
                step = state["step"]
                state = (await api.continue_(step)).data
                if self.rng.random() < 0.1:  # "back": ask for the step just left
                    r = await api.continue_(step)
                    state = r.data if r.status == 200 else r.data.get("state", state)
            elif kind == "rating":
                state = (await api.questions(state["step"], {state["key"]: 4})).data
        await self.http.aclose()


async def bare(base: str, n_clients: int, n_requests: int, lat: list[float]) -> float:
    async def one(k: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            for _ in range(n_requests // n_clients):
                t0 = time.perf_counter()
                await c.get("/bare")
                lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(n_clients)))
    return time.perf_counter() - t0


async def main_async(args, base: str, slug: str) -> dict:
    lat: list[float] = []
    people = [Participant(base, slug, random.Random(i), lat) for i in range(args.participants)]
    t0 = time.perf_counter()
    await asyncio.gather(*(p.run() for p in people))
    elapsed = time.perf_counter() - t0
    bare_lat: list[float] = []
    bare_elapsed = await bare(base, args.participants, len(lat), bare_lat)
    paced_lat: list[float] = []
    paced = [Participant(base, slug, random.Random(10_000 + i), paced_lat, think=args.think) for i in range(args.participants)]
    t1 = time.perf_counter()
    if args.think > 0:
        await asyncio.gather(*(p.run() for p in paced))
    return {"people": people + paced, "lat": lat, "elapsed": elapsed, "bare_lat": bare_lat, "bare_elapsed": bare_elapsed,
            "paced_lat": paced_lat, "paced_elapsed": time.perf_counter() - t1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds between a participant's actions in phase 2 (0: skip)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="study-load-"))
    env = dict(os.environ)
    env.update({
        "STUDY_VAR_DIR": str(tmp), "DJANGO_SECRET_KEY": secrets.token_urlsafe(40), "DJANGO_DEBUG": "0",
        "DJANGO_SECURE_COOKIES": "0", "STUDY_ENTRY_RATE": "100000/minute", "STUDY_PARTICIPANT_RATE": "100000/minute",
        "LOG_LEVEL": "WARNING",
    })
    slug = prepare(env)
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "studyapp.wsgi", "--bind", f"127.0.0.1:{args.port}",
         "--workers", str(args.workers), "--threads", str(args.threads), "--log-level", "warning", "--timeout", "120"],
        cwd=ROOT, env=env,
    )
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        result = asyncio.run(main_async(args, base, slug))
    finally:
        server.terminate()
        server.wait(timeout=30)

    people = result["people"]
    check = (
        "import json; from studyapp.studies.models import TrialAnswer; "
        "print(json.dumps([[a.participant.code, a.trial_index, a.choice] for a in TrialAnswer.objects.select_related('participant')]))"
    )
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", check], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    import json

    rows = json.loads(out.stdout.strip().splitlines()[-1])
    stored: dict[tuple[str, int], list[int]] = {}
    for code, trial, choice in rows:
        stored.setdefault((code, trial), []).append(choice)
    acked = {(p.code, t): c for p in people for t, c in p.acked.items()}
    duplicates = sum(1 for v in stored.values() if len(v) > 1)
    lost = sum(1 for k, c in acked.items() if stored.get(k) != [c])
    unacked_stored = sum(1 for k in stored if k not in acked)

    lat, bare_lat = result["lat"], result["bare_lat"]
    rps = len(lat) / result["elapsed"]
    bare_rps = len(bare_lat) / result["bare_elapsed"]
    ms = lambda v: f"{1000 * v:7.1f}"  # noqa: E731
    print(f"\n{args.participants} participants x 20 trials, gunicorn {args.workers} workers x {args.threads} threads, "
          f"database {'PostgreSQL' if 'postgres' in os.environ.get('DATABASE_URL', '') else 'SQLite'}")
    print(f"{'':18}{'requests':>10}{'req/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    print(f"{'participant API':18}{len(lat):>10}{rps:>10.1f}{ms(percentile(lat, 50)):>9}{ms(percentile(lat, 95)):>9}{ms(percentile(lat, 99)):>9}")
    print(f"{'bare JSON view':18}{len(bare_lat):>10}{bare_rps:>10.1f}{ms(percentile(bare_lat, 50)):>9}{ms(percentile(bare_lat, 95)):>9}{ms(percentile(bare_lat, 99)):>9}")
    print(f"ratio of req/s (API / bare): {rps / bare_rps:.2f}   (goal >= 0.50)")
    if result["paced_lat"]:
        paced = result["paced_lat"]
        print(f"{'paced API':18}{len(paced):>10}{len(paced) / result['paced_elapsed']:>10.1f}{ms(percentile(paced, 50)):>9}"
              f"{ms(percentile(paced, 95)):>9}{ms(percentile(paced, 99)):>9}   ({args.participants} at once, {args.think:g} s mean think time; p99 goal < 100 ms)")
    print(f"5xx responses: {sum(p.errors for p in people)}; dropped connections retried: {sum(p.dropped for p in people)}; completed runs: {sum(1 for p in people if len(p.acked) == 20)}/{len(people)} (both phases)")
    print(f"answers acknowledged: {len(acked)}, stored: {len(stored)}, lost: {lost}, duplicated: {duplicates}, stored but never acknowledged: {unacked_stored}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
