"""Where a participant request spends its CPU, in process (no server, no network).

Walks ``--participants`` participants of the learning study through the whole API with
Django's test client (:class:`studyapp.studies.client.DjangoTransport`, the full middleware
stack), with the benchmark's settings (``DJANGO_DEBUG=0``, a fresh database and cache in a
temporary folder; ``DATABASE_URL`` / ``CACHE_URL`` as given). Each request is timed in CPU
seconds of this process (``time.process_time``: other work on the machine matters less than for
wall time, though a busy machine still slows caches) and profiled with cProfile, one profile per
request kind (enter, state, continue, answer, questions). Prints, per kind: requests, CPU ms per
request (mean and median), and the functions with the most own time and the most cumulative time
below the WSGI handler; then the same for the bare JSON view (``/bare``), and the ratio.

    python benchmarks/profile_participant_api.py                     # 30 participants, SQLite
    python benchmarks/profile_participant_api.py --top 25 --kind answer
    python benchmarks/profile_participant_api.py --no-profile       # CPU times only (no profiler overhead)

The test client's own work (building the request, the cookie jar) is outside the timed span
where it can be: the span is Django's handler (``ClientHandler.__call__``). Asserts nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup(tmp: Path) -> None:
    os.environ.update({
        "STUDY_VAR_DIR": str(tmp), "DJANGO_SECRET_KEY": secrets.token_urlsafe(40), "DJANGO_DEBUG": "0",
        "DJANGO_SECURE_COOKIES": "0", "STUDY_ENTRY_RATE": "100000/minute", "STUDY_PARTICIPANT_RATE": "100000/minute",
        "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "studyapp.settings",
    })
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    # The manifest storage needs collectstatic; the API never renders a template that needs it.
    settings.STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    call_command("migrate", verbosity=0)


class Timed:
    """Wraps the test client's handler: CPU time (and, if on, a profile) per request kind."""

    def __init__(self, handler, profile: bool):
        self.handler = handler
        self.profile = profile
        self.kind = "other"
        self.cpu: dict[str, list[float]] = {}
        self.profiles: dict[str, cProfile.Profile] = {}

    def __call__(self, environ):
        prof = self.profiles.setdefault(self.kind, cProfile.Profile()) if self.profile else None
        t0 = time.process_time()
        if prof:
            prof.enable()
        try:
            return self.handler(environ)
        finally:
            if prof:
                prof.disable()
            self.cpu.setdefault(self.kind, []).append(time.process_time() - t0)


def kind_of(label: str) -> str:
    # "POST steps/3/answer" -> "answer"; "GET state" -> "state"; "POST enter" -> "enter"
    return label.split()[-1].split("/")[-1].split("?")[0]


def walk(api, rng: random.Random) -> None:
    api.page()
    state = api.enter(consent=True).data
    for _ in range(200):  # bounded
        kind = state["kind"]
        if kind == "done":
            return
        state = api.state().data  # a reload before each action, as the load benchmark does now and then
        if kind == "instructions":
            state = api.continue_(state["step"]).data
        elif kind == "trial" and not state["answered"]:
            state = api.answer(state["step"], stimulus=state["stimulus"], choice=rng.choice([o["value"] for o in state["options"]])).data
        elif kind == "trial":
            state = api.continue_(state["step"]).data
        elif kind == "rating":
            state = api.questions(state["step"], {state["key"]: 4}).data
    raise RuntimeError("the walk did not reach the end")


def summary(name: str, times: list[float]) -> str:
    ms = [1000 * t for t in times]
    return f"{name:12}{len(ms):>8}{statistics.fmean(ms):>10.3f}{statistics.median(ms):>10.3f}{sorted(ms)[int(0.95 * (len(ms) - 1))]:>10.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3, help="participants walked first, not measured")
    parser.add_argument("--top", type=int, default=15, help="functions shown per kind")
    parser.add_argument("--kind", action="append", help="only these kinds' profiles (repeatable)")
    parser.add_argument("--no-profile", action="store_true", help="CPU times only")
    parser.add_argument("--sort", default="tottime,cumulative", help="pstats sort keys, comma separated")
    parser.add_argument("--callers", metavar="REGEX", help="also print who calls the functions matching REGEX")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="study-profile-"))
    try:
        setup(tmp)
        from django.test import Client

        from studyapp.studies.client import DjangoTransport, ParticipantClient
        from tests.studyapp.factories import learning_study

        study = learning_study(invalid=0)
        study.arms.update(cap=None)
        rng = random.Random(0)

        def client(timed: Timed | None) -> ParticipantClient:
            c = Client(enforce_csrf_checks=True)
            if timed is not None:
                timed.handler = c.handler
                c.handler = timed
            transport = DjangoTransport(c)
            send = transport.send

            def labelled(call):
                if timed is not None:
                    timed.kind = kind_of(call.label)
                return send(call)

            transport.send = labelled  # type: ignore[method-assign]
            return ParticipantClient(study.public_code, transport)

        for _ in range(args.warmup):
            walk(client(None), rng)
        timed = Timed(None, profile=not args.no_profile)
        for _ in range(args.participants):
            walk(client(timed), rng)

        bare = Client()
        bare_timed = Timed(bare.handler, profile=not args.no_profile)
        bare.handler = bare_timed
        bare_timed.kind = "bare"
        for _ in range(500):
            bare.get("/bare")

        from django.conf import settings

        print(f"database {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}, cache "
              f"{settings.CACHES['default']['BACKEND'].rsplit('.', 1)[-1]}, profiler {'on' if not args.no_profile else 'off'}, "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"{'kind':12}{'requests':>8}{'mean ms':>10}{'p50 ms':>10}{'p95 ms':>10}   (CPU of this process per request)")
        api_times = [t for k, v in timed.cpu.items() if k != "page" for t in v]
        for kind in sorted(timed.cpu):
            print(summary(kind, timed.cpu[kind]))
        print(summary("API, all", api_times))
        print(summary("bare", bare_timed.cpu["bare"]))
        print(f"mean CPU per API request / bare: {statistics.fmean(api_times) / statistics.fmean(bare_timed.cpu['bare']):.1f}")

        if not args.no_profile:
            profiles = {**timed.profiles, "bare": bare_timed.profiles["bare"]}
            for kind, prof in profiles.items():
                if args.kind and kind not in args.kind:
                    continue
                n = len({**timed.cpu, **bare_timed.cpu}[kind])
                for key in args.sort.split(","):
                    out = io.StringIO()
                    stats = pstats.Stats(prof, stream=out)
                    stats.strip_dirs().sort_stats(key).print_stats(args.top)
                    body = out.getvalue()
                    body = body[body.find("   ncalls"):] if "   ncalls" in body else body
                    print(f"\n== {kind}: {n} requests, top {args.top} by {key} (seconds are totals over all of them)")
                    print(body.rstrip())
                if args.callers:
                    out = io.StringIO()
                    pstats.Stats(prof, stream=out).strip_dirs().sort_stats("tottime").print_callers(args.callers)
                    print(f"\n== {kind}: callers of {args.callers}")
                    print(out.getvalue().rstrip())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
