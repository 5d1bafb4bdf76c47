"""Bots walk Study B (clustering) through the API, including groupings that must fail."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from studyapp.pipeline.models import Stimulus
from studyapp.studies.models import Grouping, Participant, QuestionAnswer
from tests.studyapp.bots import Bot
from tests.studyapp.factories import clustering_study

pytestmark = pytest.mark.django_db


def hand_purity(assignment: dict[int, int], predicted: dict[int, int]) -> float:
    """(1/N) * sum over groups of the count of the most common predicted class (hand count)."""
    groups: dict[int, list[int]] = {}
    for image, group in assignment.items():
        groups.setdefault(group, []).append(predicted[image])
    return sum(max(Counter(members).values()) for members in groups.values()) / len(assignment)


def test_bots_take_the_clustering_study_and_purity_matches_hand_counts():
    study = clustering_study()
    predicted = dict(Stimulus.objects.values_list("pk", "model_prediction"))
    for seed in range(4):
        bot = Bot(study.slug, rng=random.Random(seed))
        bot.open_link()
        # One bot groups by the model's prediction (purity 1), the others at random.
        group_of = (lambda ids: {i: predicted[i] for i in ids}) if seed == 0 else None
        assert bot.walk_clustering(group_of=group_of)["kind"] == "done"
        p = Participant.objects.get(code=bot.state["participant"])
        saved = {g.step_index: g for g in Grouping.objects.filter(participant=p)}
        assert len(saved) == 6
        for act in bot.actions:
            g = saved[act["step"]]
            assert g.purity == pytest.approx(hand_purity(act["assignment"], predicted))
            if seed == 0:
                assert g.purity == 1.0
        keys = set(QuestionAnswer.objects.filter(participant=p).values_list("key", flat=True))
        assert {"age_band", "gender", "cs_courses", "ai_courses", "confidence:NoVis", "confidence:XNN", "confidence:1-Heatmap",
                "agent_rating:XNN", "agent_rating:1-Heatmap", "difficulty", "comments"} <= keys


def test_the_order_follows_the_protocol_and_is_stored():
    study = clustering_study()
    orders = set()
    for seed in range(36):  # P(one of the 4 orders never drawn) = 4 * 0.75**36 < 1e-4
        bot = Bot(study.slug, rng=random.Random(seed))
        bot.open_link()
        bot.enter()
        plan = Participant.objects.get(code=bot.state["participant"]).plan
        batches = [(s["stage"], s["dataset"], s["set_index"]) for s in plan if s["kind"] == "grouping"]
        stages = [b[0] for b in batches]
        datasets = [b[1] for b in batches]
        assert stages[:2] == ["NoVis", "NoVis"] and sorted(stages[2:]) == ["1-Heatmap", "1-Heatmap", "XNN", "XNN"]
        assert stages[2] == stages[3] and stages[4] == stages[5]
        assert datasets[0] != datasets[1] and datasets[::2] == [datasets[0]] * 3 and datasets[1::2] == [datasets[1]] * 3
        for d in set(datasets):  # a set is never shown twice to the same participant
            sets = [b[2] for b in batches if b[1] == d]
            assert len(set(sets)) == 3 and all(0 <= s < 5 for s in sets)
        kinds = [s["kind"] for s in plan]
        assert kinds[:2] == ["instructions", "questions"] and kinds[-2:] == ["questions", "done"]
        # a confidence question after each stage
        assert [s["key"] for s in plan if s["kind"] == "questions"][1:4] == [f"confidence:{st}" for st in dict.fromkeys(stages)]
        orders.add((stages[2], datasets[0]))
    assert len(orders) == 4  # both stage orders and both first data sets occur


def test_invalid_groupings_are_refused_and_change_nothing():
    study = clustering_study()
    bot = Bot(study.slug)
    bot.open_link()
    bot.enter()
    bot.continue_()
    assert bot.questions(Bot.default_answers(bot.state, random.Random(0)))[0] == 200
    state = bot.state
    assert state["kind"] == "grouping" and state["stage"] == "NoVis" and len(state["images"]) == 10
    ids = [img["id"] for img in state["images"]]
    other = Stimulus.objects.exclude(pk__in=ids).first().pk
    full = {i: 0 for i in ids}
    cases = [
        {i: 0 for i in ids[:-1]},                       # an image missing
        {**full, other: 1},                              # an image from another batch
        {**{i: 0 for i in ids[:-1]}, other: 0},          # swapped for an unknown one
        {**full, ids[0]: 99},                            # group number out of range
        {},
    ]
    for assignment in cases:
        status, data = bot.post(f"steps/{state['step']}/grouping", {"assignment": {str(k): v for k, v in assignment.items()}})
        assert status == 400, (assignment, data)
    status, data = bot.post(f"steps/{state['step'] + 1}/grouping", {"assignment": {str(k): 0 for k in ids}})
    assert status == 409  # the wrong stage
    assert Grouping.objects.count() == 0
    assert bot.group(full)[0] == 200
    status, repeat = bot.post(f"steps/{state['step']}/grouping", {"assignment": {str(k): 0 for k in ids}})
    assert status == 200 and Grouping.objects.count() == 1  # identical repeat: harmless
    status, _ = bot.post(f"steps/{state['step']}/grouping", {"assignment": {str(k): 1 for k in ids}})
    assert status == 409 and Grouping.objects.get().assignment == {str(k): 0 for k in ids}


def test_heatmaps_follow_the_stage_and_nothing_reveals_a_class():
    study = clustering_study()
    bot = Bot(study.slug, rng=random.Random(3))
    bot.open_link()
    bot.enter()
    seen = {}
    while bot.state["kind"] != "done":
        s = bot.state
        if s["kind"] == "grouping":
            body = str(s)
            assert "model_prediction" not in body and "true_label" not in body and "predicted" not in body
            img = s["images"][0]
            seen[s["stage"]] = ("heatmap" in img, len(img.get("xfeatures", [])))
            bot.group({i["id"]: 0 for i in s["images"]})
        elif s["kind"] == "questions":
            bot.questions(Bot.default_answers(s, bot.rng))
        else:
            bot.continue_()
    assert seen == {"NoVis": (False, 0), "1-Heatmap": (True, 0), "XNN": (False, 7)}


def test_questions_are_validated():
    study = clustering_study()
    bot = Bot(study.slug)
    bot.open_link()
    bot.enter()
    bot.continue_()
    good = Bot.default_answers(bot.state, random.Random(1))
    for bad in ({**good, "age_band": "200"}, {k: v for k, v in good.items() if k != "gender"}, {**good, "extra": 1}):
        assert bot.questions(bad)[0] == 400
    assert QuestionAnswer.objects.count() == 0
    assert bot.questions(good)[0] == 200


def test_a_set_with_a_refused_heatmap_is_never_served():
    study = clustering_study(invalid=1)
    refused = set(Stimulus.objects.filter(group="CUB", set_index=0).values_list("pk", flat=True))
    for seed in range(6):
        bot = Bot(study.slug, rng=random.Random(seed))
        bot.open_link()
        bot.enter()
        plan = Participant.objects.get(code=bot.state["participant"]).plan
        for s in plan:
            if s["kind"] == "grouping":
                assert not refused & set(s["stimuli"])
