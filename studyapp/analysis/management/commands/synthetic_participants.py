"""Send synthetic participants through the real participant API, then print the analysis.

    python manage.py synthetic_participants --study kannada-learning --n 30 --seed 1
    python manage.py synthetic_participants --study kannada-learning --n 0 --power --power-n 15

Each synthetic participant is a separate HTTP client (Django's test ``Client``, CSRF checks on,
its own session and address) that goes through consent, instructions, every trial and the
rating exactly as a browser would, against the configured database. It answers each trial
correctly with the probability its arm's planted learning curve gives
(`stats.synthetic`): ``planted`` makes CDeepEx learn fastest and Control slowest,
``null`` gives every arm the same curve. The server, not the bot, decides the arm, scores the
answer and stamps the times.

``--apem-slope S`` plants a known dependence on the explanations' APEM score instead (issue 25,
item 5): a participant answers an item correctly with probability
``base + S · (APEM of the explanation behind that answer − the study's mean APEM) + u``, with ``u``
the participant's own skill (uniform in ±0.1, seeded); the answers and explanations are the ones
`studyapp.analysis.metrics_people` reads (learning: every trial, with the asset its feedback shows;
simulation: the post-test items, with the asset the arm shows for that image). The printed
estimate of the APEM coefficient should cover S. The simulation design (forward simulation) is
taken the same way: its test items are answered (right = the model's answer) with probability
``--base`` (plus the APEM term on post-test items when a slope is planted), its learning items
continued.

Synthetic runs carry the Prolific id ``synthetic-<seed>-<i>``, so a rerun with the same seed
resumes them instead of adding more, and they can be found and deleted in the admin. Use this on
a pilot or test copy of a study, never on one that collects real data.
"""

from __future__ import annotations

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.test import Client

from stats import analyse as summary
from stats import power, synthetic
from stats.schema import AnalysisInputError
from studyapp.analysis import frames as data
from studyapp.analysis.metrics_people import arm_assets, arm_methods, metrics_people_results
from studyapp.analysis.simulation import simulation_results
from studyapp.pipeline.models import ExplanationAsset, Stimulus
from studyapp.studies import selectors
from studyapp.studies.client import API_ROOT, DjangoTransport, ParticipantClient, Reply
from studyapp.studies.models import Participant, Study
from studyapp.studies.steps import registry

CURVES = {"planted": synthetic.PLANTED_CURVES, "null": synthetic.NULL_CURVES}
#: Arms not named after a curve get the curve of their feedback kind.
CURVE_OF_FEEDBACK = {"control": "Control", "gradcam": "GCAM", "cdeepex": "CDeepEx"}
DESIGNS = (Study.Design.LEARNING, Study.Design.SIMULATION)
#: The spread of the participants' own skill around the planted probability (uniform, ±).
SKILL_SPREAD = 0.1


class PlantedPerson:
    """A synthetic participant who answers item ``trial`` correctly with probability ``p_of[trial]``
    (``base`` for items not in it) plus their own skill, and rates as `synthetic.SyntheticParticipant` does."""

    def __init__(self, *, seed: int, base: float, p_of: dict[int, float]):
        self.rng = np.random.default_rng(seed)
        self.skill = float(self.rng.uniform(-SKILL_SPREAD, SKILL_SPREAD))
        self.base, self.p_of = base, p_of

    def choose(self, trial_index: int, correct_answer, options):
        p = self.p_of.get(trial_index, self.base) + self.skill
        if self.rng.uniform() < p or len(options) < 2:
            return correct_answer
        wrong = [o for o in options if o != correct_answer]
        return wrong[int(self.rng.integers(len(wrong)))]

    def feedback_rating(self) -> int:
        return int(self.rng.choice(np.arange(1, 6), p=np.asarray((0.1, 0.15, 0.3, 0.3, 0.15))))


def _host() -> str:
    """A host name the site accepts (the test client's "testserver" need not be allowed)."""
    for host in settings.ALLOWED_HOSTS:
        if host and host != "*" and not host.startswith("."):
            return host
    return "localhost"


class ApiParticipant:
    """One synthetic participant's browser: a cookie jar that talks JSON to the participant API."""

    def __init__(self, study_code: str, *, address: str):
        host = _host()
        secure = bool(settings.SECURE_SSL_REDIRECT)
        scheme = "https" if secure else "http"
        client = Client(
            enforce_csrf_checks=True, REMOTE_ADDR=address, HTTP_HOST=host,
            HTTP_ORIGIN=f"{scheme}://{host}", **({"wsgi.url_scheme": "https"} if secure else {}),
        )
        self.api = ParticipantClient(study_code, DjangoTransport(client, secure=secure))
        self.state: dict = {}

    def send(self, reply: Reply) -> dict:
        """The new state from ``reply`` (e.g. ``bot.send(bot.api.continue_(step))``); a refusal stops the command."""
        body = reply.data if reply.parsed is not None or not reply.text else {"detail": reply.text[:200]}
        if reply.status >= 300:
            raise CommandError(f"{reply.call.label} was refused ({reply.status}): {body.get('detail', body)}")
        self.state = body
        return self.state


class Command(BaseCommand):
    help = (
        "Send N synthetic participants with a planted per-arm learning effect (or a planted dependence on "
        "the explanations' APEM score) through the real participant API of an open learning or forward-"
        "simulation study, then print the analysis."
    )

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Slug of an open learning or simulation study.")
        parser.add_argument("--n", type=int, required=True, help="Synthetic participants to send (0: none).")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the answers (and of the Prolific ids).")
        parser.add_argument("--curves", choices=sorted(CURVES), default="planted",
                            help="planted: CDeepEx > GCAM > Control; null: the same curve in every arm.")
        parser.add_argument("--apem-slope", type=float, default=None,
                            help="Plant this change in P(correct) per unit of the explanation's APEM score "
                                 "(instead of the learning curves).")
        parser.add_argument("--base", type=float, default=0.6,
                            help="P(correct) at the study's mean APEM (--apem-slope) or on a simulation test item (default 0.6).")
        parser.add_argument("--alpha", type=float, default=None, help="Significance level (default: the study's).")
        parser.add_argument("--power", action="store_true",
                            help="Also simulate how often the planted effect is detected (power.simulate_power).")
        parser.add_argument("--power-n", type=int, default=None,
                            help="Participants per arm in the simulation (default: this run's per arm).")
        parser.add_argument("--power-sims", type=int, default=2000, help="Simulated studies (default 2000).")

    def handle(self, *args, **opts):
        study = Study.objects.filter(slug=opts["study"]).first()
        if study is None:
            raise CommandError(f"No study with slug {opts['study']!r}.")
        if study.design not in DESIGNS:
            raise CommandError(f"Synthetic participants exist for the {' and '.join(DESIGNS)} designs only.")
        n, seed, slope, base = opts["n"], opts["seed"], opts["apem_slope"], opts["base"]
        if n < 0:
            raise CommandError("--n must be 0 or more.")
        if opts["alpha"] is not None and not 0 < opts["alpha"] < 1:
            raise CommandError("--alpha must be between 0 and 1.")
        if not SKILL_SPREAD <= base <= 1 - SKILL_SPREAD:
            raise CommandError(f"--base must be between {SKILL_SPREAD:g} and {1 - SKILL_SPREAD:g}.")
        planted = slope is not None or study.design != Study.Design.LEARNING
        if opts["power"] and planted:
            raise CommandError("--power simulates the learning curves only (benchmarks/protocol_power.py has the others).")
        curves = CURVES[opts["curves"]]
        arm_curve = {} if planted else self._arm_curves(study, curves)
        apem = self._apem_plan(study, slope=slope, base=base) if slope is not None else None
        if n:
            if study.status != Study.Status.OPEN:
                raise CommandError(f"Study {study.slug!r} is {study.status}: open it first (admin action).")
            self._check_capacity(study, n, seed)
            self._send(study, n=n, seed=seed, curves=curves, arm_curve=arm_curve, apem=apem, base=base)
        if study.design == Study.Design.LEARNING:
            self._summary(study, seed=seed, alpha=opts["alpha"])
        else:
            self._simulation_summary(study)
        if slope is not None:
            self._apem_summary(study, slope)
        if opts["power"]:
            per_arm = opts["power_n"] or max(2, -(-n // max(len(arm_curve), 1)))
            self._power(study, curves, arm_curve, n_per_arm=per_arm, n_sims=opts["power_sims"], seed=seed,
                        alpha=opts["alpha"], label=opts["curves"])

    # -- set-up --------------------------------------------------------------------------------
    def _arm_curves(self, study: Study, curves) -> dict[str, str]:
        out = {}
        for name, feedback in study.arms.values_list("name", "feedback"):
            curve = name if name in curves else CURVE_OF_FEEDBACK.get(feedback)
            if curve not in curves:
                raise CommandError(
                    f"No planted learning curve for arm {name!r} ({feedback}); curves exist for {sorted(curves)}."
                )
            out[name] = curve
        if not out:
            raise CommandError("The study has no arms.")
        return out

    def _check_capacity(self, study: Study, n: int, seed: int) -> None:
        fill = selectors.arm_fill(study=study)
        if any(a["cap"] is None for a in fill):
            return
        free = sum(max(0, a["cap"] - a["completed"] - a["active"]) for a in fill)
        resumed = Participant.objects.filter(
            study=study, prolific_pid__in=[self._pid(seed, i) for i in range(n)]
        ).count()
        if n - resumed > free:
            raise CommandError(
                f"The arms' caps leave {free} place(s), but {n - resumed} new synthetic participants were asked "
                "for. Raise the caps (admin, arms) or ask for fewer."
            )

    @staticmethod
    def _pid(seed: int, i: int) -> str:
        return f"synthetic-{seed}-{i}"

    # -- the run -------------------------------------------------------------------------------
    def _send(self, study: Study, *, n: int, seed: int, curves, arm_curve: dict[str, str],
              apem: tuple[dict, float, float, float] | None = None, base: float = 0.6) -> None:
        scored_on = "model_prediction" if study.correct_mode == Study.CorrectMode.PREDICTION else "true_label"
        # The browser's option values are positions in the study's class list (state.answer_options).
        position = {int(c): i for i, c in enumerate(study.classes)}
        correct_of = {pk: position.get(label, -1) for pk, label in Stimulus.objects.filter(study=study).values_list("pk", scored_on)}
        self.stdout.write(f"Sending {n} synthetic participant(s) through {API_ROOT.format(code=study.public_code)} ...")
        done = 0
        for i in range(n):
            bot = ApiParticipant(study.public_code, address=f"198.18.{i // 250}.{i % 250 + 1}")
            state = bot.send(bot.api.state())
            if state.get("kind") == "unavailable":
                raise CommandError(f"After {done} participant(s): {state.get('detail')}")
            if state.get("kind") == "consent":
                # The SESSION_ID is what lets a rerun resume the run (access.access_resume).
                pid = self._pid(seed, i)
                state = bot.send(bot.api.enter(consent=True, prolific_pid=pid, session_id=pid))
            arm, plan = Participant.objects.filter(code=state["participant"]).values_list("arm__name", "plan").get()
            person: synthetic.SyntheticParticipant | PlantedPerson
            if arm in arm_curve:
                person = synthetic.SyntheticParticipant(arm_curve[arm], seed=synthetic.seed_for(seed, i), curves=curves)
            else:
                p_of = self._planted(study, arm, plan, apem) if apem is not None else {}
                person = PlantedPerson(seed=synthetic.seed_for(seed, i), base=base, p_of=p_of)
            self._walk(bot, person, correct_of)
            done += 1
            if done % 10 == 0 or done == n:
                self.stdout.write(f"  {done}/{n} done")

    def _walk(self, bot: ApiParticipant, person: synthetic.SyntheticParticipant | PlantedPerson, correct_of: dict) -> None:
        for _ in range(10_000):  # a plan has far fewer steps; this only guards against a loop
            state = bot.state
            step = registry.class_of(state["kind"])  # what the step accepts, not its name
            if step.completes_run:
                return
            if "answer" in step.actions:  # a trial: answer it, then leave its feedback
                if not state.get("answered"):
                    options = [o["value"] for o in state["options"]]
                    correct = correct_of[state["stimulus"]]
                    choice = person.choose(state["trial"], correct, options)
                    answered = bot.send(bot.api.answer(state["step"], stimulus=state["stimulus"], choice=choice))
                    if "continue" not in step.actions:  # a simulation test item: the answer moved the run on
                        continue
                    if answered["feedback"]["correct"] != (choice == correct):
                        raise CommandError("The server scored an answer differently from the study's configuration.")
                bot.send(bot.api.continue_(state["step"]))
            elif "continue" in step.actions:
                bot.send(bot.api.continue_(state["step"]))
            elif "questions" in step.actions and "scale" in state:  # the feedback rating
                bot.send(bot.api.questions(state["step"], {state["key"]: person.feedback_rating()}))
            else:
                raise CommandError(f"A synthetic participant cannot answer a {step.KIND!r} step.")
        raise CommandError("A synthetic participant did not reach the end of the study.")

    # -- the planted APEM slope ----------------------------------------------------------------
    def _apem_plan(self, study: Study, *, slope: float, base: float) -> tuple[dict, float, float, float]:
        """(asset pk -> APEM, the mean APEM, the slope, the base) of the study's valid assets with an APEM score;
        refuses a slope that takes the planted probability out of [0, 1]."""
        apem = {pk: float(m["apem"]) for pk, m in ExplanationAsset.objects.filter(stimulus__study=study, valid=True)
                .values_list("pk", "metrics") if isinstance((m or {}).get("apem"), int | float)}
        if not apem:
            raise CommandError("No explanation of this study has an APEM score (the pipeline stores one with each heatmap).")
        values = np.fromiter(apem.values(), float)
        center = float(values.mean())
        low, high = base + slope * (values.min() - center), base + slope * (values.max() - center)
        if min(low, high) - SKILL_SPREAD < 0 or max(low, high) + SKILL_SPREAD > 1:
            raise CommandError(
                f"APEM runs from {values.min():.3g} to {values.max():.3g} (mean {center:.3g}): a slope of {slope:g} takes "
                f"P(correct) to [{min(low, high):.2f}, {max(low, high):.2f}] ± {SKILL_SPREAD:g}, out of [0, 1]. Plant a smaller slope."
            )
        return apem, center, slope, base

    def _planted(self, study: Study, arm: str, plan: list[dict], apem: tuple[dict, float, float, float]) -> dict[int, float]:
        """Trial index -> P(correct) of this run's answers that `metrics_people` reads with an asset."""
        scores, center, slope, base = apem
        method = arm_methods(study).get(arm)
        fallback = arm_assets(study)
        out = {}
        for step in plan:
            if "trial" not in step:
                continue
            if study.design == Study.Design.SIMULATION:
                if step.get("phase") != "post":
                    continue
                asset = fallback.get((step["stimulus"], method)) if method else None
            else:
                pinned = sorted((step.get("assets") or {}).items())
                asset = pinned[0][1] if pinned else (fallback.get((step["stimulus"], method)) if method else None)
            if asset in scores:
                out[step["trial"]] = base + slope * (scores[asset] - center)
        return out

    def _apem_summary(self, study: Study, slope: float) -> None:
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING("Do the automatic metrics predict people? (the planted APEM slope)"))
        try:
            result = metrics_people_results(study)
        except AnalysisInputError as exc:
            self.stdout.write(f"Not analysed: {exc}")
            return
        for m in result.methods:
            rows = m.coefficients.set_index("metric") if not m.coefficients.empty else None
            if rows is None or "apem" not in rows.index:
                self.stdout.write(f"  {m.method}: no APEM coefficient ({' '.join(m.dropped) or 'no APEM scores'})")
                continue
            r = rows.loc["apem"]
            covered = "covers" if r["ci_low"] <= slope <= r["ci_high"] else "misses"
            self.stdout.write(
                f"  {m.method}: planted {slope:g} per unit APEM; estimate {r['coef']:.4g} "
                f"[95% CI {r['ci_low']:.4g}, {r['ci_high']:.4g}] ({covered} it), p = {r['p_value']:.3g}; "
                f"{m.n_participants} participants × {m.n_items} items"
            )

    def _simulation_summary(self, study: Study) -> None:
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING(f"Forward simulation: {study.slug}"))
        control = next((a.name for a in study.arms.order_by("position", "pk") if a.feedback == "control"), "Control")
        try:
            res = simulation_results(study, control_arm=control)
        except AnalysisInputError as exc:
            self.stdout.write(f"Not analysed: {exc}")
            return
        acc = res.accuracy[(res.accuracy["item_kind"] == "forward") & (res.accuracy["subset"] == "all")]
        for _, r in acc.iterrows():
            self.stdout.write(f"  {r['arm']}: pre {r['pre']:.3f}, post {r['post']:.3f}, change {r['change']:+.3f} (n = {int(r['n'])})")

    # -- reporting -----------------------------------------------------------------------------
    def _settings(self, study: Study, alpha: float | None):
        levels = list(study.arms.order_by("position", "pk").values_list("name", flat=True))
        settings_, problems = summary.settings_from_config(
            study.config, design=summary.LEARNING, levels=levels, n_trials=study.n_trials
        )
        if alpha is not None:
            settings_ = summary.AnalysisSettings(settings_.pairs, alpha, settings_.exclusions, settings_.n_trials)
        return settings_, problems

    def _summary(self, study: Study, *, seed: int, alpha: float | None) -> None:
        d = data.study_data(study=study)
        settings_, problems = self._settings(study, alpha)
        result = summary.analyse(
            design=summary.LEARNING, settings=settings_, trials=d.trials, ratings=d.ratings,
            checks=d.checks, ignore_rules=summary.TIMING_RULES,
        )
        n_synthetic = Participant.objects.filter(study=study, prolific_pid__startswith="synthetic-").count()
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING(f"Analysis of {study.slug} (configuration {study.config_hash[:12]})"))
        self.stdout.write(
            f"{len(d.participants)} participant(s), {n_synthetic} of them synthetic; "
            f"{int(d.participants['completed'].sum()) if len(d.participants) else 0} completed."
        )
        for problem in problems + d.problems:
            self.stdout.write(self.style.WARNING(problem))
        if result.exclusions.ignored:
            self.stdout.write(
                "Response-time rules are not applied in this summary: the server stamps response times, "
                "and synthetic participants answer at once. The analysis page applies them."
            )
        self.stdout.write(summary.summary_text(result))

    def _power(self, study, curves, arm_curve, *, n_per_arm: int, n_sims: int, seed: int, alpha, label: str) -> None:
        settings_, _ = self._settings(study, alpha)
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING(
            f"Power by simulation ({label} curves, {n_per_arm} per arm, {study.n_trials} trials, "
            f"{n_sims} simulated studies, alpha = {settings_.alpha:g})"
        ))
        sim = None
        for arm1, arm2, alternative in settings_.pairs:
            if arm1 not in arm_curve or arm2 not in arm_curve:
                continue
            sim = power.simulate_power(
                curves, arm_curve[arm1], arm_curve[arm2], n_per_arm, n_trials=study.n_trials,
                n_sims=n_sims, alpha=settings_.alpha, alternative=alternative, seed=seed,
            )
            verb = "detected" if curves[arm_curve[arm1]] != curves[arm_curve[arm2]] else "a (false) positive"
            self.stdout.write(
                f"  {summary.hypothesis((arm1, arm2, alternative)):<22} {verb} in {sim.power:.1%} "
                f"[95% CI {sim.ci_low:.1%}, {sim.ci_high:.1%}]; mean correct {sim.mean_total1:.2f} vs "
                f"{sim.mean_total2:.2f}, mean d {sim.mean_d:.2f}"
            )
        if sim is not None:
            self.stdout.write("  Assumptions: each arm's p(correct at trial t) = ceiling - (ceiling - start)·exp(-rate·t):")
            for arm, name in arm_curve.items():
                c = curves[name]
                self.stdout.write(f"    {arm}: start {c.start:g}, ceiling {c.ceiling:g}, rate {c.rate:g}, rate_sd {c.rate_sd:g}")
            self.stdout.write("    " + "; ".join(sim.assumptions[2:-1]) + f"; seed {seed}.")
