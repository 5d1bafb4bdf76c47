"""The XNN paper's CAE and Lasso baselines and the region (Places) locality, on cases whose answer
is known: a planted sparse linear model, scikit-learn's multi-task Lasso, hand-made heatmaps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from explainers.excitation_bp import ExcitationBP
from explainers.xnn import XNNConfig, fit_xnn
from explainers.xnn_baselines import (
    LinearReadout,
    fit_cae,
    fit_lasso,
    lasso_path_point,
    unit_readout,
)
from explainers.xnn_metrics import region_locality


def planted(seed: int = 0, m: int = 300, z_dim: int = 20, support=(2, 7, 11)):
    gen = torch.Generator().manual_seed(seed)
    z = torch.rand(m, z_dim, generator=gen) * 3
    w = torch.zeros(z_dim, 4)
    w[list(support)] = torch.tensor([[2.0, -1.0, 0.5, 1.5], [-1.5, 2.0, 1.0, -0.5], [1.0, 1.0, -2.0, 0.5]])
    logits = z @ w + torch.tensor([0.5, -0.5, 1.0, 0.0])
    return z, logits, w


def test_the_lasso_finds_the_planted_units_and_predicts_with_them():
    z, logits, _ = planted()
    readout = fit_lasso(z, logits, n_features=3, layer="relu3")
    assert readout.selected == (2, 7, 11) and readout.n_features == 3
    with torch.no_grad():
        approx = readout(z)
    # the shrunken weights of the smallest alpha that keeps 3 units predict almost exactly
    assert float((approx - logits).abs().mean()) < 0.05 * float(logits.abs().mean())
    # one unit fewer allowed: the Lasso must drop one, and the fit gets worse
    two = fit_lasso(z, logits, n_features=2)
    assert len(two.selected) <= 2 and set(two.selected) < {2, 7, 11}
    with torch.no_grad():
        assert float((two(z) - logits).abs().mean()) > float((approx - logits).abs().mean())


def test_the_lasso_solution_equals_scikit_learns_multi_task_lasso():
    from sklearn.linear_model import MultiTaskLasso

    z, logits, _ = planted(seed=3)
    logits = logits + 0.3 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(1))
    for alpha in (0.05, 0.3, 1.0):
        w, b = lasso_path_point(z, logits, alpha, iterations=20000, tol=1e-12)
        ref = MultiTaskLasso(alpha=alpha, fit_intercept=True, tol=1e-10, max_iter=100000).fit(z.double().numpy(), logits.double().numpy())
        assert np.allclose(w.numpy(), ref.coef_.T, atol=1e-5), alpha
        assert np.allclose(b.numpy(), ref.intercept_, atol=1e-5), alpha


def test_a_given_alpha_is_used_and_an_empty_selection_refused():
    z, logits, _ = planted()
    readout = fit_lasso(z, logits, alpha=0.2)
    assert readout.alpha == 0.2 and set(readout.selected) >= {2, 7, 11}
    with pytest.raises(ValueError, match="keeps no unit"):
        fit_lasso(z, logits, alpha=1e6)


def test_the_cae_never_sees_the_logits_and_its_readout_is_least_squares():
    z, logits, _ = planted(m=120)
    cfg = XNNConfig(n_features=4, epochs=60, seed=2, hidden=(32, 16))
    cae = fit_cae(z, logits, config=cfg, layer="relu3")
    shuffled = fit_cae(z, logits[torch.randperm(len(logits), generator=torch.Generator().manual_seed(0))], config=cfg)
    for a, b in zip(cae.encoder.parameters(), shuffled.encoder.parameters(), strict=True):
        assert torch.equal(a, b)  # the embedding is the same whatever the logits are
    with torch.no_grad():
        e = cae.embed(z).double()
        residual = logits.double() - cae(z).double()
    assert float((e.T @ residual).abs().max()) < 1e-3 * float(e.abs().max() * logits.abs().sum())  # normal equations
    assert cae.layer == "relu3" and not cae.training


def test_the_cae_is_less_faithful_than_an_xnn_trained_for_faithfulness():
    z, logits, _ = planted(m=150)
    cfg = XNNConfig(n_features=3, epochs=300, seed=0, hidden=(64, 16), eta=0.0)
    cae = fit_cae(z, logits, config=cfg)
    nn_xnn = fit_xnn(z, logits, config=XNNConfig(**{**cfg.__dict__, "mode": "nn"}))
    with torch.no_grad():
        cae_err = float((cae(z) - logits).abs().mean())
        nn_err = float((nn_xnn(z) - logits).abs().mean())
    assert nn_err < cae_err


class _Net(nn.Module):
    """Conv -> ReLU -> flatten -> Linear (Z) -> ReLU -> Linear (logits), small enough for a test."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.fc1 = nn.Linear(3 * 6 * 6, 5)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc2(self.relu2(self.fc1(torch.flatten(self.relu1(self.conv(x)), 1))))


def test_a_readouts_heatmaps_are_those_of_its_units():
    net = _Net().eval()
    x = torch.rand(4, 1, 6, 6)
    ebp = ExcitationBP(net, "relu1")
    every = ebp.xnn_maps(unit_readout(5, 2, "relu2"), x)
    assert every.shape == (4, 5, 6, 6)
    picked = LinearReadout(5, [3, 1], torch.zeros(2, 2), torch.zeros(2), "relu2")
    assert torch.allclose(ebp.xnn_maps(picked, x), every[:, [3, 1]])


def test_region_locality_against_hand_counts():
    maps = torch.zeros(2, 2, 4, 4)
    regions = torch.zeros(2, 3, 4, 4, dtype=torch.bool)
    regions[:, 0, :2, :2] = True  # object 0: top left
    regions[:, 1, 2:, 2:] = True  # object 1: bottom right
    # feature 0: all mass on object 0 in both images -> entropy 0
    maps[:, 0, 0, 0] = 1.0
    # feature 1: half on object 0, half on object 1 (image 0), and in image 1 a quarter outside
    # every region, which is not counted: masses 0.5/0.5 and 0.375/0.375 -> entropy log 2
    maps[0, 1, 0, 1], maps[0, 1, 3, 3] = 1.0, 1.0
    maps[1, 1, 1, 1], maps[1, 1, 2, 2], maps[1, 1, 0, 3] = 1.5, 1.5, 1.0
    out = region_locality(maps, regions)
    assert out.entropy[0] == pytest.approx(0.0) and out.entropy[1] == pytest.approx(math.log(2))
    assert out.mean == pytest.approx(math.log(2) / 2)
    assert out.histogram[1].tolist() == pytest.approx([0.4375, 0.4375, 0.0])
    with pytest.raises(ValueError):
        region_locality(-maps, regions)
    with pytest.raises(ValueError):
        region_locality(maps, regions[:, :, :2])
