"""Step kinds are classes (issue 24, item 1): a new kind is one class and one registration.

The slider question below is defined here, in the test module, and nowhere else: it is
registered, put into the learning design's plans, and a bot takes it through the real API; its
answer is found in the wide export and the data dictionary, a bad answer is refused and a repeat is
harmless. Then: a plan stored as today still loads (and writes back the same JSON), and nothing
outside the step classes and their registry switches on a step's kind.
"""

from __future__ import annotations

import ast
import csv
import io
import random
from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest
from django.utils.translation import gettext

from studyapp.studies import codebook, exports
from studyapp.studies.designs import flows
from studyapp.studies.errors import InvalidInput
from studyapp.studies.models import Participant, QuestionAnswer, Study
from studyapp.studies.steps import registry
from studyapp.studies.steps.answers import Answers
from studyapp.studies.steps.base import Seen
from studyapp.studies.steps.bias import BiasMark
from studyapp.studies.steps.catch import Catch
from studyapp.studies.steps.decision import DecisionAlone, DecisionAssisted
from studyapp.studies.steps.done import Done
from studyapp.studies.steps.grouping import Grouping
from studyapp.studies.steps.hive import AgreementItem, DistinctionItem
from studyapp.studies.steps.instructions import Instructions
from studyapp.studies.steps.questions import Questions
from studyapp.studies.steps.quiz import Quiz
from studyapp.studies.steps.rating import Rating
from studyapp.studies.steps.simulation import LearningItem, SimulationItem
from studyapp.studies.steps.trial import Trial
from tests.studyapp.bots import Bot
from tests.studyapp.factories import learning_study

ROOT = Path(__file__).resolve().parents[2]


# -- a new kind, defined here only ----------------------------------------------------------------
class Slider(Answers):
    """A slider question: one whole number from ``low`` to ``high``, stored under ``key``."""

    kind: Literal["slider"] = "slider"
    key: str
    label: str
    low: int = 0
    high: int = 100

    def browser_state(self, seen: Seen) -> dict:
        return {"key": self.key, "label": self.label, "low": self.low, "high": self.high}

    def answer_keys(self) -> list[str]:
        return [self.key]

    def clean(self, study: Study, answers: object) -> dict:
        value = answers.get(self.key) if isinstance(answers, dict) else None
        if set(answers or {}) != {self.key} or not isinstance(value, int) or isinstance(value, bool) \
                or not self.low <= value <= self.high:
            raise InvalidInput(gettext("Move the slider to a number from %(low)d to %(high)d.") % {"low": self.low, "high": self.high})
        return {self.key: value}

    def codebook_entries(self, study: Study) -> dict[str, codebook.Column]:
        return {self.key: codebook.Column(self.key, f"Answer to: {self.label} (a slider)", type="integer",
                                          minimum=self.low, maximum=self.high)}

    def progress_label(self) -> str:
        return f"slider {self.key}"


@pytest.fixture
def slider_study(monkeypatch):
    """The learning study, its design composed with a slider before the end."""
    registry.register(Slider)
    learning = flows.DESIGNS[Study.Design.LEARNING]

    def draw(**kwargs):
        steps = learning.draw(**kwargs)
        return [*steps[:-1], Slider(key="trust", label="How much do you trust the AI?", high=10), steps[-1]]

    monkeypatch.setitem(flows.DESIGNS, Study.Design.LEARNING, replace(learning, steps=(*learning.steps, Slider), draw=draw))
    try:
        yield learning_study(n_trials=3)
    finally:
        registry.unregister("slider")


@pytest.mark.django_db
def test_a_step_kind_defined_in_one_module_runs_through_the_api_into_the_exports_and_codebook(slider_study):
    study = slider_study
    bot = Bot(study.public_code, pid="SLIDER1", rng=random.Random(3))
    bot.open_link()
    seen: list[dict] = []

    def slide(b: Bot):
        state = b.state
        assert state["kind"] == "slider" and (state["low"], state["high"]) == (0, 10), state
        seen.append(state)
        refused = b.post(f"steps/{state['step']}/questions", {"answers": {"trust": 11}})  # out of range
        assert refused[0] == 400 and refused[1]["error"] == "invalid" and "0 to 10" in refused[1]["detail"], refused
        assert not QuestionAnswer.objects.filter(key="trust").exists()
        wrong = b.post(f"steps/{state['step']}/continue")  # a slider is not left without its answer
        assert wrong[0] == 409 and wrong[1]["error"] == "wrong_step" and wrong[1]["state"]["step"] == state["step"], wrong
        return b.questions({"trust": 7})

    final = bot.walk(other=slide)
    assert final["kind"] == "done" and len(seen) == 1

    run = Participant.objects.get(code=final["participant"])
    assert [registry.kind_of(s) for s in run.plan][-3:] == ["rating", "slider", "done"]
    # The repeat of the answer that left the step is harmless; another answer to it is refused.
    step = seen[0]["step"]
    assert bot.post(f"steps/{step}/questions", {"answers": {"trust": 7}})[0] == 200
    assert bot.post(f"steps/{step}/questions", {"answers": {"trust": 2}})[0] == 409
    assert list(QuestionAnswer.objects.filter(participant=run, key="trust").values_list("value", flat=True)) == [7]

    # The wide export has the answer in its own column; the dictionary has its entry.
    rows = list(csv.DictReader(io.StringIO(exports.export_csv(study=study, kind="wide"))))
    assert [r["trust"] for r in rows if r["participant"] == run.code] == ["7"]
    entries = registry.study_entries(study)
    assert entries["trust"].type == "integer" and (entries["trust"].minimum, entries["trust"].maximum) == (0, 10)
    header = next(csv.reader(io.StringIO(exports.export_csv(study=study, kind="wide"))))
    described = {c.name: c for c in codebook.columns("wide", header, extra=entries)}
    assert described["trust"].check("7") is None and described["trust"].check("11") is not None
    # The status page's monitor names the step by its own label.
    labels = {r["label"] for r in registry.step_histogram(study=study)}
    assert labels == set()  # the run has completed: no unfinished run is at a step
    assert Slider(key="trust", label="x").progress_label() == "slider trust"


# -- plans as stored ---------------------------------------------------------------------------------
#: Plans as stored today (taken from runs of both designs, with every kind and the optional keys:
#: pinned assets, a grouping drawn before the group rule existed, a catch item with an image).
STORED_LEARNING = [
    {"kind": "instructions"},
    {"kind": "quiz"},
    {"kind": "trial", "trial": 0, "stimulus": 41, "assets": {"gradcam": 7}},
    {"kind": "catch", "catch": 0, "stimulus": 55},
    {"kind": "trial", "trial": 1, "stimulus": 42},
    {"kind": "rating", "key": "feedback_rating"},
    {"kind": "done"},
]
STORED_CLUSTERING = [
    {"kind": "instructions", "order": "XNN,1-Heatmap|CUB,CEL"},
    {"kind": "questions", "key": "demographics", "title": "About you", "questions": [
        {"key": "age_band", "type": "choice", "label": "Your age", "options": ["18-24", "25-34"]}]},
    {"kind": "grouping", "stage": "NoVis", "dataset": "CUB", "set_index": 2, "stimuli": [1, 2, 3]},
    {"kind": "grouping", "stage": "XNN", "dataset": "CEL", "set_index": 0, "stimuli": [4, 5],
     "groups": {"rule": "free", "n": 2}, "assets": {"4": 9, "5": 10}},
    {"kind": "questions", "key": "confidence:XNN:CEL", "title": "Your confidence", "questions": [
        {"key": "confidence:XNN:CEL", "type": "scale", "label": "Confidence?", "options": ["Zero", "Low"], "first_value": 0}]},
    {"kind": "catch", "catch": 1},
    {"kind": "done"},
]


@pytest.mark.parametrize("stored", [STORED_LEARNING, STORED_CLUSTERING], ids=["learning", "clustering"])
def test_a_plan_as_stored_today_loads_typed_and_writes_back_the_same_json(stored):
    steps = registry.load_plan(stored)
    assert [type(s) for s in steps] == [registry.class_of(s["kind"]) for s in stored]
    assert registry.dump_plan(steps) == stored
    assert [list(d) for d in registry.dump_plan(steps)] == [list(d) for d in stored]  # the keys' order too


def test_the_typed_plan_refuses_a_malformed_step():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        registry.load_plan([{"kind": "trial", "trial": "first"}])  # no stimulus, a word for a number
    with pytest.raises(ValidationError):
        registry.load_plan([{"kind": "no-such-kind"}])


def test_the_built_in_kinds_are_one_class_each_and_a_design_is_a_composition_of_them():
    built_in = {cls.KIND: cls for cls in registry.BUILT_IN}
    assert built_in == {
        "instructions": Instructions, "quiz": Quiz, "trial": Trial, "catch": Catch, "questions": Questions,
        "rating": Rating, "grouping": Grouping, "done": Done,
        "simulation_test": SimulationItem, "simulation_learn": LearningItem,
        "decision_alone": DecisionAlone, "decision_assisted": DecisionAssisted,
        "bias_mark": BiasMark,
        "hive_agreement": AgreementItem, "hive_distinction": DistinctionItem,
    }
    assert all(registry.class_of(kind) is cls for kind, cls in built_in.items())
    assert [cls.KIND for cls in flows.DESIGNS[Study.Design.LEARNING].steps] == ["instructions", "trial", "rating", "done"]
    assert [cls.KIND for cls in flows.DESIGNS[Study.Design.CLUSTERING].steps] == ["instructions", "questions", "grouping", "done"]
    assert [cls.KIND for cls in flows.DESIGNS[Study.Design.SIMULATION].steps] == [
        "instructions", "simulation_test", "simulation_learn", "rating", "done"]
    assert [cls.KIND for cls in flows.DESIGNS[Study.Design.DECISION].steps] == [
        "instructions", "decision_alone", "decision_assisted", "rating", "done"]
    assert [cls.KIND for cls in flows.DESIGNS[Study.Design.BIAS].steps] == [
        "instructions", "simulation_learn", "bias_mark", "rating", "done"]
    assert [cls.KIND for cls in flows.DESIGNS[Study.Design.HIVE].steps] == [
        "instructions", "hive_agreement", "hive_distinction", "rating", "done"]
    assert [cls.KIND for cls in registry.BUILT_IN if cls.completes_run] == ["done"]


@pytest.mark.django_db
def test_a_drawn_plan_is_stored_as_the_json_it_always_was():
    study = learning_study(n_trials=2, open_it=False)
    arm = study.arms.get(feedback="gradcam")
    plan = flows.draw_plan(study=study, arm=arm, seed="s")
    assert [s["kind"] for s in plan] == ["instructions", "trial", "trial", "rating", "done"]
    assert plan[0] == {"kind": "instructions"} and plan[-2:] == [{"kind": "rating", "key": "feedback_rating"}, {"kind": "done"}]
    assert set(plan[1]) == {"kind", "trial", "stimulus", "assets"} and list(plan[1]["assets"]) == ["gradcam"]


# -- no switch on a step's kind elsewhere -----------------------------------------------------------
#: Where a step's kind may be compared: the step classes and their registry.
ALLOWED = ("studyapp/studies/steps/",)


def kind_switches(root: Path) -> list[str]:
    """Every test of a value against the name of a built-in step kind in ``studyapp/`` outside
    `ALLOWED`: ``x == "trial"``, ``step.get("kind") != "done"``, ``kind in ("rating", "questions")``
    (a switch on a step's kind). ``"rating" in frame`` (a column of that name) is no such test."""
    names = {cls.KIND for cls in registry.BUILT_IN}

    def named(node: ast.expr) -> bool:
        return isinstance(node, ast.Constant) and node.value in names

    found = []
    for path in sorted((root / "studyapp").rglob("*.py")):
        where = path.relative_to(root).as_posix()
        if where.startswith(ALLOWED) or "/migrations/" in where:
            continue
        for node in ast.walk(ast.parse(path.read_text(), where)):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            for left, op, right in zip(operands[:-1], node.ops, operands[1:], strict=True):
                if isinstance(op, ast.Eq | ast.NotEq | ast.Is | ast.IsNot):
                    hit = named(left) or named(right)
                elif isinstance(op, ast.In | ast.NotIn):
                    hit = isinstance(right, ast.Tuple | ast.List | ast.Set) and any(named(v) for v in right.elts)
                else:
                    hit = False
                if hit:
                    found.append(f"{where}:{node.lineno}")
    return found


def test_nothing_outside_the_step_classes_switches_on_a_steps_kind():
    assert kind_switches(ROOT) == []


def test_the_kind_switch_check_can_fail(tmp_path):
    (tmp_path / "studyapp" / "studies").mkdir(parents=True)
    (tmp_path / "studyapp" / "studies" / "state.py").write_text(
        'def f(step, frame):\n    if step["kind"] == "trial":\n        return 1\n    if "rating" in frame:\n        return 2\n'
        '    return step.get("kind") in ("rating", "questions")\n'
    )
    assert kind_switches(tmp_path) == ["studyapp/studies/state.py:2", "studyapp/studies/state.py:6"]
