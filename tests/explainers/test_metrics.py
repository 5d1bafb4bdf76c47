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
