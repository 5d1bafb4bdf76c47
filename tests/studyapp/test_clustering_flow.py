"""Bots walk Study B (clustering) through the API, including groupings that must fail."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from studyapp.pipeline.models import Stimulus
from studyapp.studies import plans, selectors, services
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
    study = clustering_study(group_rule="exactly")  # the fixed-number rule, an option for new studies
    predicted = dict(Stimulus.objects.values_list("pk", "model_prediction"))
    for seed in range(4):
        bot = Bot(study.public_code, rng=random.Random(seed))
        bot.open_link()
        # One bot groups by the model's prediction (purity 1), the others at random; every bot
        # first sends each batch in 3 and in 5 groups, which the rule (exactly 4) refuses.
        group_of = (lambda ids: {i: predicted[i] for i in ids}) if seed == 0 else None
        before = Grouping.objects.count()
        assert bot.walk_clustering(group_of=group_of, try_wrong_counts=True)["kind"] == "done"
        assert [r["n_groups"] for r in bot.refusals] == [3, 5] * 6
        assert all(r["detail"].startswith("Make exactly 4 groups.") for r in bot.refusals)
        p = Participant.objects.get(code=bot.state["participant"])
        saved = {g.step_index: g for g in Grouping.objects.filter(participant=p)}
        assert len(saved) == 6 and Grouping.objects.count() == before + 6  # the refusals stored nothing
        assert all(len(set(g.assignment.values())) == 4 for g in saved.values())
        for act in bot.actions:
            g = saved[act["step"]]
            assert g.purity == pytest.approx(hand_purity(act["assignment"], predicted))
            if seed == 0:
                assert g.purity == 1.0
        keys = set(QuestionAnswer.objects.filter(participant=p).values_list("key", flat=True))
        confidence = {f"confidence:{stage}:{d}" for stage in ("NoVis", "XNN", "1-Heatmap") for d in ("CUB", "CEL")}
        assert {"age_band", "gender", "cs_courses", "ai_courses", *confidence,
                "agent_rating:XNN", "agent_rating:1-Heatmap", "difficulty", "comments"} <= keys
        assert not any(k.count(":") == 1 and k.startswith("confidence:") for k in keys)  # none per stage only
        # The published fixture asks the XNN paper's demographics.
        ages = QuestionAnswer.objects.get(participant=p, key="age_band").value
        assert ages in ["18-30", "31-40", "41-50", "51-60", "Over 60", "Prefer not to say"]


def test_the_order_follows_the_protocol_and_is_stored():
    study = clustering_study(group_rule="exactly")
    orders = []
    for seed in range(8):
        bot = Bot(study.public_code, rng=random.Random(seed))
        bot.open_link()
        bot.enter()
        participant = Participant.objects.get(code=bot.state["participant"])
        plan = participant.plan
        batches = [(s["stage"], s["dataset"], s["set_index"]) for s in plan if s["kind"] == "grouping"]
        stages = [b[0] for b in batches]
        datasets = [b[1] for b in batches]
        assert stages[:2] == ["NoVis", "NoVis"] and sorted(stages[2:]) == ["1-Heatmap", "1-Heatmap", "XNN", "XNN"]
        assert stages[2] == stages[3] and stages[4] == stages[5]
        assert datasets[0] != datasets[1] and datasets[::2] == [datasets[0]] * 3 and datasets[1::2] == [datasets[1]] * 3
        for d in set(datasets):  # a set is never shown twice to the same participant
            sets = [b[2] for b in batches if b[1] == d]
            assert len(set(sets)) == 3 and all(0 <= s < 5 for s in sets)
        assert all(s["groups"] == {"rule": "exactly", "n": 4} for s in plan if s["kind"] == "grouping")
        kinds = [s["kind"] for s in plan]
        assert kinds[:2] == ["instructions", "questions"] and kinds[-2:] == ["questions", "done"]
        # a confidence question after each batch, for that stage and data set
        for k, step in enumerate(plan):
            if step["kind"] == "grouping":
                after = plan[k + 1]
                assert after["kind"] == "questions" and after["key"] == f"confidence:{step['stage']}:{step['dataset']}"
                assert [q["key"] for q in after["questions"]] == [after["key"]]
        # the stored cell is the order the plan follows
        assert participant.order_cell == plan[0]["order"] == f"{stages[2]},{stages[4]}|{datasets[0]},{datasets[1]}"
        orders.append((stages[2], datasets[0]))
    # Nobody has left: the first four take the four cells of the Latin square, the next four again.
    assert orders[:4] == [("XNN", "CUB"), ("1-Heatmap", "CEL"), ("XNN", "CEL"), ("1-Heatmap", "CUB")]
    assert orders[4:] == orders[:4]


def enrol(study, n: int) -> list[Participant]:
    out = []
    for _ in range(n):
        participant, created = services.participant_enroll(study=study, consent=True)
        assert created
        out.append(participant)
    return out


def holding_counts(study, cells) -> list[int]:
    """Completed plus active (not stale) runs per cell, counted by hand from the rows."""
    stale_before = timezone.now() - timedelta(minutes=study.dropout_minutes)
    rows = Participant.objects.filter(study=study).values_list("order_cell", "status", "last_seen_at")
    held = Counter(cell for cell, status, seen in rows if status == Participant.Status.COMPLETED or seen >= stale_before)
    assert set(held) <= set(cells)
    return [held.get(c, 0) for c in cells]


def test_the_latin_square_stays_balanced_after_enrolments_with_dropouts():
    """N enrolments interleaved with completions and dropouts (runs idle for longer than
    dropout_minutes): each enrolment takes the first least-held cell of the square, so a
    dropout's place is given again, and enough further enrolments to refill the places leave
    every cell holding the same number of runs."""
    study = clustering_study()
    cells = plans.order_cells(study.parsed_config.datasets)
    rng = random.Random(5)
    long_ago = timezone.now() - timedelta(minutes=study.dropout_minutes + 1)
    n_enrolled = n_dropped = 0
    for _ in range(60):
        active = list(Participant.objects.filter(study=study, status=Participant.Status.ACTIVE,
                                                 last_seen_at__gt=long_ago).values_list("pk", flat=True))
        event = rng.random()
        if active and event < 0.2:  # drops out
            Participant.objects.filter(pk=rng.choice(active)).update(last_seen_at=long_ago)
            n_dropped += 1
        elif active and event < 0.35:  # finishes (keeps its place)
            Participant.objects.filter(pk=rng.choice(active)).update(status=Participant.Status.COMPLETED)
        else:
            before = holding_counts(study, cells)
            (p,) = enrol(study, 1)
            n_enrolled += 1
            assert p.order_cell == cells[before.index(min(before))], (before, p.order_cell)
    counts = holding_counts(study, cells)
    assert n_dropped >= 5 and sum(counts) == n_enrolled - n_dropped
    fill = {row["cell"]: row for row in selectors.order_fill(study=study)}
    assert [fill[c]["holding"] for c in cells] == counts
    assert sum(fill[c]["stale"] for c in cells) == n_dropped
    enrol(study, sum(max(counts) - c for c in counts))  # refill the places dropouts left
    assert len(set(holding_counts(study, cells))) == 1


def test_the_status_page_shows_the_fill_of_each_order_cell(admin_client):
    study = clustering_study()
    enrol(study, 6)
    html = admin_client.get(f"/admin/studies/study/{study.pk}/dashboard/").content.decode()
    assert 'id="order-fill"' in html
    for cell in plans.order_cells(study.parsed_config.datasets):
        assert f'data-cell="{cell}"' in html
    assert "NoVis → XNN → 1-Heatmap; CUB then CEL" in html


def test_invalid_groupings_are_refused_and_change_nothing():
    study = clustering_study(group_rule="exactly")
    bot = Bot(study.public_code)
    bot.open_link()
    bot.enter()
    bot.continue_()
    assert bot.questions(Bot.default_answers(bot.state, random.Random(0)))[0] == 200
    state = bot.state
    assert state["kind"] == "grouping" and state["stage"] == "NoVis" and len(state["images"]) == 10
    assert (state["min_groups"], state["max_groups"], state["group_rule"]) == (4, 4, "Make exactly 4 groups.")
    ids = [img["id"] for img in state["images"]]
    other = Stimulus.objects.exclude(pk__in=ids).first().pk
    full = {i: k % 4 for k, i in enumerate(ids)}
    cases = [
        ({i: 0 for i in ids[:-1]}, "not in a group yet"),                      # an image missing
        ({**full, other: 1}, "1 image does not belong to this batch"),        # an image from another batch
        ({**{i: k % 4 for k, i in enumerate(ids[:-1])}, other: 0}, "does not belong"),  # swapped for an unknown one
        ({**full, ids[0]: 99}, "numbered 0 to 9"),                             # group number out of range
        ({i: 0 for i in ids}, "Make exactly 4 groups. These images are in 1 group."),
        ({i: k % 3 for k, i in enumerate(ids)}, "Make exactly 4 groups. These images are in 3 groups."),
        ({i: k % 5 for k, i in enumerate(ids)}, "Make exactly 4 groups. These images are in 5 groups."),
        ({i: k for k, i in enumerate(ids)}, "These images are in 10 groups."),  # the purity-1.0 trick
        ({}, "Put every image into a group."),
    ]
    for assignment, message in cases:
        status, data = bot.post(f"steps/{state['step']}/grouping", {"assignment": {str(k): v for k, v in assignment.items()}})
        assert status == 400 and message in data["detail"], (assignment, data)
    assert bot.refresh()["step"] == state["step"]
    status, data = bot.post(f"steps/{state['step'] + 1}/grouping", {"assignment": {str(k): v for k, v in full.items()}})
    assert status == 409  # the wrong stage
    assert Grouping.objects.count() == 0
    # Four groups numbered as the client likes (not 0..3) are four groups.
    assert bot.group({i: (7, 2, 9, 0)[g] for i, g in full.items()})[0] == 200
    saved = {str(k): (7, 2, 9, 0)[g] for k, g in full.items()}
    status, repeat = bot.post(f"steps/{state['step']}/grouping", {"assignment": saved})
    assert status == 200 and Grouping.objects.count() == 1  # identical repeat: harmless
    status, _ = bot.post(f"steps/{state['step']}/grouping", {"assignment": {str(k): v for k, v in full.items()}})
    assert status == 409 and Grouping.objects.get().assignment == saved


def test_the_published_template_does_not_tell_the_number_and_takes_any_number_of_groups():
    """Issue 23 item 3: the paper measured the purity of the groupings people made and says
    nothing of telling them how many categories there are."""
    study = clustering_study()
    assert study.parsed_config.group_rule == "free"
    told = " ".join([study.cover_story, *study.instructions]).lower()
    assert not any(word in told for word in ("four", " 4 ", "number of categories", "exactly")), told
    predicted = dict(Stimulus.objects.values_list("pk", "model_prediction"))
    bot = Bot(study.public_code, rng=random.Random(1))
    bot.open_link()
    bot.enter()
    counts = iter([1, 2, 3, 7, 10, 5])
    while bot.state["kind"] != "done":
        kind = bot.state["kind"]
        if kind == "instructions":
            assert bot.continue_()[0] == 200
        elif kind == "questions":
            assert bot.questions(bot.default_answers(bot.state, bot.rng))[0] == 200
        else:
            state = bot.state
            assert (state["min_groups"], state["max_groups"], state["group_rule"]) == (1, 10, "")
            ids = [img["id"] for img in state["images"]]
            status, data = bot.post(f"steps/{state['step']}/grouping", {"assignment": {str(i): 10 for i in ids}})
            assert status == 400 and "numbered 0 to 9" in data["detail"], data  # the board's maximum holds
            n = next(counts)
            status, data = bot.group({i: k % n for k, i in enumerate(ids)})
            assert status == 200, (n, data)
    saved = Grouping.objects.filter(participant__code=bot.state["participant"]).order_by("step_index")
    assert [len(set(g.assignment.values())) for g in saved] == [1, 2, 3, 7, 10, 5]
    for g in saved:
        assert g.purity == pytest.approx(hand_purity({int(k): v for k, v in g.assignment.items()}, predicted))


def test_heatmaps_follow_the_stage_and_nothing_reveals_a_class():
    study = clustering_study()
    bot = Bot(study.public_code, rng=random.Random(3))
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
            assert bot.group(Bot.random_grouping(s, bot.rng))[0] == 200
        elif s["kind"] == "questions":
            bot.questions(Bot.default_answers(s, bot.rng))
        else:
            bot.continue_()
    assert seen == {"NoVis": (False, 0), "1-Heatmap": (True, 0), "XNN": (False, 7)}


def test_questions_are_validated():
    study = clustering_study()
    bot = Bot(study.public_code)
    bot.open_link()
    bot.enter()
    bot.continue_()
    good = Bot.default_answers(bot.state, random.Random(1))
    # The browser gets the questions' positions as keys (q0: age, q1: gender), not the stored keys.
    assert [q["key"] for q in bot.state["questions"]] == ["q0", "q1", "q2", "q3"]
    for bad in ({**good, "q0": "200"}, {k: v for k, v in good.items() if k != "q1"}, {**good, "extra": 1},
                {**good, "age_band": good["q0"]}):
        assert bot.questions(bad)[0] == 400, bad
    assert QuestionAnswer.objects.count() == 0
    assert bot.questions(good)[0] == 200


def test_a_set_with_a_refused_heatmap_is_never_served():
    study = clustering_study(invalid=1)
    refused = set(Stimulus.objects.filter(group="CUB", set_index=0).values_list("pk", flat=True))
    for seed in range(6):
        bot = Bot(study.public_code, rng=random.Random(seed))
        bot.open_link()
        bot.enter()
        plan = Participant.objects.get(code=bot.state["participant"]).plan
        for s in plan:
            if s["kind"] == "grouping":
                assert not refused & set(s["stimuli"])


def test_at_most_k_groups_when_configured():
    study = clustering_study(open_it=False)
    study.config = {**study.config, "group_rule": "at_most", "n_groups": 3}
    study.clean()  # the configuration check the admin makes on save
    study.save()
    services.study_open(study=study)
    bot = Bot(study.public_code, rng=random.Random(2))
    bot.open_link()
    bot.enter()
    bot.continue_()
    bot.questions(Bot.default_answers(bot.state, bot.rng))
    s = bot.state
    assert (s["min_groups"], s["max_groups"], s["group_rule"]) == (1, 3, "Make at most 3 groups.")
    ids = [img["id"] for img in s["images"]]
    status, data = bot.post(f"steps/{s['step']}/grouping", {"assignment": {str(i): k % 4 for k, i in enumerate(ids)}})
    assert status == 400 and data["detail"] == "Make at most 3 groups. These images are in 4 groups."
    assert bot.group({i: 0 for i in ids})[0] == 200  # one group is at most 3
    assert Grouping.objects.get().assignment == {str(i): 0 for i in sorted(ids)}


def test_a_run_drawn_before_the_group_rule_keeps_its_old_rule():
    """A plan drawn before the rule existed has no ``groups`` in its steps: it is not refused
    mid-run (any number of groups up to max_groups, as when it started)."""
    study = clustering_study()
    bot = Bot(study.public_code)
    bot.open_link()
    bot.enter()
    p = Participant.objects.get(code=bot.state["participant"])
    p.plan = [{k: v for k, v in step.items() if k != "groups"} for step in p.plan]
    p.save(update_fields=["plan"])
    bot.continue_()
    bot.questions(Bot.default_answers(bot.state, bot.rng))
    assert (bot.state["min_groups"], bot.state["max_groups"], bot.state["group_rule"]) == (1, 10, "")
    assert bot.group({img["id"]: 0 for img in bot.state["images"]})[0] == 200


@pytest.mark.parametrize("preset", ["xnn_paper", "age_bands"])
def test_the_demographics_can_name_a_preset(preset):
    study = clustering_study(open_it=False)
    study.config = {**study.config, "demographics": preset}
    study.clean()  # the configuration check the admin makes on save
    study.save()
    services.study_open(study=study)
    bot = Bot(study.public_code)
    bot.open_link()
    bot.enter()
    bot.continue_()
    shown = plans.DEMOGRAPHIC_PRESETS[preset]  # with the positions as keys (the browser sees no stored key)
    assert bot.state["questions"] == [{**q, "key": f"q{i}"} for i, q in enumerate(shown)]
    ages = {"xnn_paper": ["18-30", "31-40", "41-50", "51-60"], "age_bands": ["18-24", "25-34", "35-44"]}[preset]
    assert set(ages) <= set(bot.state["questions"][0]["options"])


def test_the_published_fixture_holds_the_papers_demographics():
    study = clustering_study(open_it=False)
    assert study.parsed_config.demographics == plans.XNN_PAPER_DEMOGRAPHICS
    courses = next(q for q in study.parsed_config.demographics if q["key"] == "ai_courses")["options"]
    assert courses == ["No course", "1 course", "2 courses", "3 courses", "4 courses or more"]
