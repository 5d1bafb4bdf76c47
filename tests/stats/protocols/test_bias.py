"""Bias discovery: share who found the planted cue and localisation error, by hand and on planted data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stats.protocols import bias
from stats.schema import AnalysisInputError

SQUARE = (0, 0, 6, 6)


def _hand() -> pd.DataFrame:
    rows = []
    cues = {"c1": ("Control", "slant"), "c2": ("Control", "Grey square,  TOP left"),
            "e1": ("Explained", "grey square, top left"), "e2": ("Explained", "grey square, top left")}
    for person, (arm, cue) in cues.items():
        rows.append({"participant": person, "arm": arm, "item": "q", "phase": "cue", "chosen_cue": cue})
    marks = {
        "c1": [(6, 0, 12, 6)],            # right next to the square: centres 6 apart, IoU 0
        "c2": [(3, 4, 9, 10), None],      # centres (6, 7) vs (3, 3): distance 5; second image unmarked
        "e1": [(0, 0, 6, 6)],             # exact: distance 0, IoU 1
        "e2": [(0, 0, 3, 6)],             # left half: centres (1.5, 3) vs (3, 3): 1.5, IoU 0.5
    }
    for person, boxes in marks.items():
        arm = cues[person][0]
        for k, box in enumerate(boxes):
            m = dict(zip(bias.MARK_BOX, box, strict=True)) if box else dict.fromkeys(bias.MARK_BOX, np.nan)
            rows.append({"participant": person, "arm": arm, "item": f"img{k}", "phase": "mark", **m,
                         **dict(zip(bias.CUE_BOX, SQUARE, strict=True))})
    return pd.DataFrame(rows)


def test_box_geometry_by_hand():
    a = np.array([[0, 0, 6, 6], [6, 0, 12, 6], [0, 0, 3, 6], [2, 2, 4, 4]], dtype=float)
    b = np.array([SQUARE] * 4, dtype=float)
    assert bias.box_centre_distance(a, b) == pytest.approx([0, 6, 1.5, 0])
    assert bias.box_iou(a, b) == pytest.approx([1, 0, 0.5, 4 / 36])


def test_hand_computed_discovery_and_localisation():
    r = bias.analyse(_hand(), planted_cue="grey square, top left", reference_arm="Control")
    d = r.discovery.set_index("arm")
    assert (d.loc["Control", "found"], d.loc["Control", "n"]) == (1, 2)  # case and spaces ignored
    assert d.loc["Explained", "share"] == 1.0
    assert r.found_difference("Explained").estimate == pytest.approx(0.5)
    loc = r.localisation.set_index("arm")
    assert loc.loc["Control", "distance"] == pytest.approx((6 + 5) / 2)
    assert loc.loc["Explained", "distance"] == pytest.approx((0 + 1.5) / 2)
    assert loc.loc["Explained", "iou"] == pytest.approx(0.75)
    assert loc.loc["Control", "n_marks"] == 2 and r.unmarked == 1 and r.unanswered == 0
    assert r.distance_difference("Explained").estimate == pytest.approx(0.75 - 5.5)


def test_recovers_planted_discovery_and_distance():
    plan = bias.BiasPlan()
    r = bias.analyse(bias.simulate_participants(plan, seed=2), planted_cue=plan.planted_cue, reference_arm="Control")
    assert r.found_difference("Explained").covers(plan.planted_found_difference("Explained", "Control"))
    planted_diff = plan.planted_distance("Explained") - plan.planted_distance("Control")
    assert r.distance_difference("Explained").covers(planted_diff)


def test_arm_distances_cover_the_rayleigh_mean_at_their_level():
    plan = bias.BiasPlan(n_per_arm=40)
    covered = {"Control": [], "Explained": []}
    for s in range(40):
        loc = bias.analyse(bias.simulate_participants(plan, seed=s), planted_cue=plan.planted_cue).localisation
        for arm, row in loc.set_index("arm").iterrows():
            covered[arm].append(row["distance_low"] <= plan.planted_distance(arm) <= row["distance_high"])
    assert all(np.mean(c) >= 0.85 for c in covered.values())


def test_no_effect_covers_zero_and_wrong_values_are_rejected():
    plan = bias.BiasPlan(n_per_arm=60, found={"Control": 0.4, "Explained": 0.4},
                         mark_sd={"Control": 4.0, "Explained": 4.0})
    results = [bias.analyse(bias.simulate_participants(plan, seed=s), planted_cue=plan.planted_cue,
                            reference_arm="Control") for s in range(30)]
    assert np.mean([r.found_difference("Explained").covers(0.0) for r in results]) >= 0.8
    assert np.mean([r.distance_difference("Explained").covers(0.0) for r in results]) >= 0.8
    assert np.mean([r.found_difference("Explained").covers(0.35) for r in results]) < 0.2


def test_power_at_paper_n():
    p = bias.power_at_paper_n(n_sims=60, seed=4)
    assert p.planted == pytest.approx(0.2) and "80 per arm" in p.design and p.power > 0.4
    null = bias.BiasPlan(found={"Control": 0.4, "Explained": 0.4})
    assert bias.power_at_paper_n(plan=null, n_sims=60, seed=4).power <= 0.15


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: pd.concat([f, f.iloc[[0]].assign(item="q2")]), "more than one cue answer"),
        (lambda f: f.assign(mark_x1=f["mark_x0"]), "x1 <= x0"),
        (lambda f: f.assign(cue_x0=np.nan), "planted cue's box"),
        (lambda f: f.drop(columns=["cue_y1"]), "missing column"),
        (lambda f: f.assign(phase="look"), "phase"),
    ],
)
def test_malformed_frames_are_refused(mutate, message):
    with pytest.raises(AnalysisInputError, match=message):
        bias.analyse(mutate(_hand()), planted_cue="grey square, top left")
