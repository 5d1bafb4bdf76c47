"""Validity metrics for CDeepEx results and heatmaps."""

from __future__ import annotations

import math

import pytest
import torch

from explainers.cdeepex import CDeepExConfig, CDeepExResult, explain
from explainers.metrics import (
    Validity,
    cdeepex_validity,
    heatmap_validity,
    third_class_wins,
    top2_is_pair,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def fake_result(final_llh: list[list[float]], *, recon: list[float], true: list[int], probe: list[int]) -> CDeepExResult:
    """A hand-made result with only the fields the metrics read."""
    llh = torch.tensor(final_llh, dtype=torch.float64)
    n, c = llh.shape
    return CDeepExResult(
        z0=torch.zeros(n, 2),
        z_path=torch.ones(n, 2, 2),
        frames=torch.zeros(n, 2, 1, 4, 4),
        final=torch.zeros(n, 1, 4, 4),
        difference=torch.full((n, 1, 4, 4), 0.1),
        llh=torch.stack([llh, llh], dim=1),
        converged=torch.ones(n, dtype=torch.bool),
        eq_residual=torch.zeros(n),
        ineq_residual=torch.zeros(n),
        z0_recon_error=torch.tensor(recon),
        true_labels=torch.tensor(true),
        probe_labels=torch.tensor(probe),
        residual=torch.zeros(n, 1, 4, 4),
        steps=torch.full((n,), 7),
        evaluations=torch.full((n,), 9),
    )


def log_probs(*p: float) -> list[float]:
    return [math.log(v) for v in p]


def test_cdeepex_validity_names_each_failure():
    r = fake_result(
        [
            log_probs(0.45, 0.45, 0.10),  # good: on the boundary, true and probe on top
            log_probs(0.30, 0.30, 0.40),  # a third class wins
            log_probs(0.70, 0.25, 0.05),  # not on the boundary
            log_probs(0.45, 0.45, 0.10),  # good, but G could not represent the image
        ],
        recon=[0.1, 0.1, 0.1, 0.5],
        true=[0, 0, 0, 0],
        probe=[1, 1, 1, 1],
    )
    v = cdeepex_validity(r, llh_tol=0.1, recon_threshold=0.3)
    assert [x.ok for x in v] == [True, False, False, False]
    assert v[0].reasons == []
    assert "not {true=0, probe=1}" in v[1].reasons[0]
    assert "not on the boundary" in v[2].reasons[0]
    assert "cannot represent" in v[3].reasons[0]
    assert v[1].numbers["other_margin"] == pytest.approx(math.log(0.3) - math.log(0.4))
    assert v[0].numbers["llh_gap"] == pytest.approx(0.0)
    assert v[0].numbers["latent_distance"] == pytest.approx(math.sqrt(2))
    assert v[0].numbers["difference_l1"] == pytest.approx(0.1)
    assert top2_is_pair(r).tolist() == [True, False, True, True]
    assert third_class_wins(r).tolist() == [False, True, False, False]


def test_cdeepex_validity_on_a_real_run(toy_models, toy_images):
    D, G = toy_models
    r = explain(D, G, toy_images, true_labels=None, encoder=G, config=CDeepExConfig(outer_iterations=40))
    v = cdeepex_validity(r)
    assert len(v) == toy_images.shape[0] and all(isinstance(x, Validity) for x in v)
    for x, conv in zip(v, r.converged.tolist(), strict=True):
        assert x.ok == (not x.reasons)
        if conv:
            assert x.numbers["llh_gap"] <= 0.05 + 1e-4


def test_heatmap_validity_blank_uniform_good_and_nonfinite():
    good = torch.zeros(8, 8)
    good[2:4, 2:4] = 1.0
    maps = torch.stack([torch.zeros(8, 8), torch.full((8, 8), 0.7), good, torch.full((8, 8), float("nan")), -good])
    v = heatmap_validity(maps)
    assert [x.ok for x in v] == [False, False, True, False, True]
    assert "blank" in v[0].reasons[0]
    assert "uniform" in v[1].reasons[0]
    assert "NaN" in v[3].reasons[0]
    assert v[2].numbers["coverage"] == pytest.approx(4 / 64)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        heatmap_validity(torch.zeros(8, 8))


# ----------------------------------------------------------------------------- the morph as displayed


def frames_llh(gaps: list[float], *, third: float = -9.0) -> torch.Tensor:
    """Log-likelihoods (T, 3) with classes 0 (true) and 1 (probe) at the given gaps
    ``llh_0 - llh_1`` and class 2 at ``third`` (unnormalised log-scores are fine for the gate)."""
    return torch.tensor([[g / 2, -g / 2, third] for g in gaps], dtype=torch.float64)


def test_displayed_morph_gate_names_each_rule_with_a_code():
    from explainers.metrics import REASON_CODES, displayed_morph_validity

    good = displayed_morph_validity(frames_llh([3.0, 2.0, 1.0, 0.02]), 0, 1, pixel_change=0.05, latent_distance=2.0)
    assert good.ok and good.codes == [] and good.numbers["llh_gap"] == pytest.approx(0.02)
    assert good.numbers["max_probe_excess"] == 0.0 and good.numbers["frames"] == 4.0
    cases = {
        "off_boundary": dict(llh=frames_llh([3.0, 1.0, 0.3])),
        "crossover": dict(llh=frames_llh([3.0, 1.0, -0.5, -0.7])),  # the symbol turns into the probe
        "not_monotone": dict(llh=frames_llh([3.0, 1.0, 2.0, 0.0])),
        "third_class": dict(llh=frames_llh([3.0, 1.0, 0.0], third=5.0)),
        "poor_fit": dict(llh=frames_llh([3.0, 0.0]), recon_error=0.5),
        "small_morph": dict(llh=frames_llh([3.0, 0.0]), pixel_change=0.001, morph_floor=0.01),
    }
    for code, kw in cases.items():
        v = displayed_morph_validity(kw.pop("llh"), 0, 1, **kw)
        expected = [code, "off_boundary"] if code == "crossover" else [code]  # ends at -0.7: also off it
        assert not v.ok and sorted(v.codes) == sorted(expected) and len(v.reasons) == len(expected), (code, v)
        assert code in REASON_CODES
    crossing = displayed_morph_validity(frames_llh([3.0, -1.0, 0.01]), 0, 1)  # and comes back
    assert crossing.numbers["max_probe_excess"] == pytest.approx(1.0)
    assert set(crossing.codes) == {"crossover", "not_monotone"}
    nan = displayed_morph_validity(frames_llh([3.0, math.nan]), 0, 1)
    assert nan.codes == ["nonfinite"]


def test_xgems_is_gated_on_the_boundary_only():
    from explainers.metrics import displayed_morph_validity

    third_wins_and_crosses = frames_llh([3.0, -1.0, 2.0, 0.01], third=5.0)
    assert displayed_morph_validity(third_wins_and_crosses, 0, 1, method="xgems", recon_error=0.9).ok
    cd = displayed_morph_validity(third_wins_and_crosses, 0, 1, method="cdeepex", recon_error=0.9)
    assert set(cd.codes) == {"third_class", "crossover", "not_monotone", "poor_fit"}
    off = displayed_morph_validity(frames_llh([3.0, 0.5]), 0, 1, method="xgems")
    assert off.codes == ["off_boundary"]
    small = displayed_morph_validity(frames_llh([3.0, 0.0]), 0, 1, method="xgems", pixel_change=0.0, morph_floor=0.01)
    assert small.codes == ["small_morph"]  # the researcher's floor applies to every morph
    with pytest.raises(ValueError, match="method"):
        displayed_morph_validity(frames_llh([1.0]), 0, 1, method="gradcam")


def test_the_gate_on_decoded_frames_judges_what_is_shown_not_what_was_computed():
    """Decode + re-classify: the verdict follows the frames decoded from the GIF (clipped to
    [0, 1], 8-bit), whatever the unclipped frames said."""
    from explainers import render
    from explainers.metrics import displayed_morph_validity

    def D(x: torch.Tensor) -> torch.Tensor:  # llh_true - llh_probe = 4 (mean pixel - 0.5)
        m = x.flatten(1).mean(1)
        return torch.stack([2 * (m - 0.5), -2 * (m - 0.5)], 1)

    def morph(pattern: list[float]) -> torch.Tensor:
        start = torch.full((1, 4, 4), 0.9)
        last = torch.tensor(pattern * 4).view(1, 4, 4)
        return torch.stack([start, 0.5 * (start + last), last])

    def gaps(x: torch.Tensor) -> torch.Tensor:
        llh = torch.log_softmax(D(x), 1)
        return llh[:, 0] - llh[:, 1]

    def shown(frames: torch.Tensor) -> torch.Tensor:
        out = torch.from_numpy(render.decode_animation_frames(render.morph_gif(frames, scale=3), scale=3))
        assert out.shape[1:] == (1, 4, 4) and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
        return out

    # on the boundary as computed (mean 0.5), below it as shown (mean 0.4375: the probe wins)
    looks_fine = morph([1.5, 0.25, -0.25, 0.5])
    assert abs(float(gaps(looks_fine)[-1])) < 1e-6
    refused = displayed_morph_validity(torch.log_softmax(D(shown(looks_fine)), 1), 0, 1)
    assert set(refused.codes) == {"off_boundary", "crossover"}
    assert refused.numbers["llh_gap"] == pytest.approx(0.25, abs=0.01)
    # off the boundary as computed (mean 0.625), on it as shown (mean 0.5)
    looks_off = morph([1.5, 0.5, 0.5, 0.0])
    assert float(gaps(looks_off)[-1]) == pytest.approx(0.5, abs=1e-5)
    accepted = displayed_morph_validity(torch.log_softmax(D(shown(looks_off)), 1), 0, 1)
    assert accepted.ok and accepted.numbers["llh_gap"] < 0.01


def test_decoded_frames_are_the_rendered_8_bit_frames_for_gif_and_webp():
    from explainers import render

    rng = torch.Generator().manual_seed(0)
    frames = torch.round(torch.rand(6, 1, 7, 5, generator=rng) * 255) / 255
    frames[3] = frames[2]  # a repeated frame may be merged by the encoder
    frames[0, 0, 0, 0] = 1.7  # clipped, as displayed
    expected = frames.clamp(0, 1)[[0, 1, 2, 4, 5]]
    for encode in (render.morph_gif, render.morph_webp):
        out = torch.from_numpy(render.decode_animation_frames(encode(frames, scale=4), scale=4))
        torch.testing.assert_close(out, expected, atol=0, rtol=0)
    with pytest.raises(ValueError, match="multiple of scale"):
        render.decode_animation_frames(render.morph_gif(frames, scale=4), scale=3)
