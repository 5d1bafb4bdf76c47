"""explainers.nets.wgan: DCGAN layout, gradient penalty by hand, seeded WGAN training that moves the
generator towards the data, BatchNorm recalibration, checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from explainers.datasets.common import to_tensor
from explainers.datasets.kannada import make_lookalike_kannada
from explainers.nets.checkpoints import load_checkpoint, save_checkpoint
from explainers.nets.wgan import (
    DCGANGenerator,
    WGANCritic,
    gradient_penalty,
    recalibrate_batchnorm,
    train_wgan,
)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The test machine's cores are shared: one intra-op thread avoids OpenMP thrashing.
    (Tests may set this; library code never does.)"""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def pair(seed: int = 0, width: int = 8) -> tuple[DCGANGenerator, WGANCritic]:
    torch.manual_seed(seed)
    return DCGANGenerator(z_dim=100, width=width), WGANCritic(width=width)


@pytest.fixture(scope="module")
def glyphs() -> torch.Tensor:
    return to_tensor(make_lookalike_kannada(20, seed=0).images)


def test_generator_layout_and_range():
    G = DCGANGenerator()
    assert G.z_dim == 100
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in G.modules()) == 5
    assert sum(isinstance(m, nn.BatchNorm2d) for m in G.modules()) == 4
    out = G.eval()(torch.randn(3, 100) * 5)
    assert out.shape == (3, 1, 28, 28) and out.min() >= 0 and out.max() <= 1
    assert WGANCritic()(out).shape == (3,)
    with pytest.raises(ValueError, match=r"\(N, 100\)"):
        G(torch.randn(3, 50))
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        WGANCritic()(torch.rand(2, 1, 32, 32))


def test_gradient_penalty_of_a_linear_critic_by_hand():
    """critic(x) = <w, x>: the gradient is w everywhere, so the penalty is (||w|| - 1)^2."""
    w = torch.full((1, 1, 28, 28), 0.1)

    class Linear(nn.Module):
        def forward(self, x):
            return (x * w).flatten(1).sum(1)

    real, fake = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    eps = torch.rand(4, 1, 1, 1)
    expected = (w.norm() - 1) ** 2  # ||w|| = 0.1 * 28 = 2.8
    torch.testing.assert_close(gradient_penalty(Linear(), real, fake, eps), expected)


def test_training_moves_the_generator_towards_the_data(glyphs):
    G, critic = pair()
    z = torch.randn(64, 100, generator=torch.Generator().manual_seed(1))
    data_mean = glyphs.mean().item()
    with torch.no_grad():
        before = abs(G.eval()(z).mean().item() - data_mean)
    G.train()
    events = []
    train_wgan(
        G,
        critic,
        glyphs,
        iterations=15,
        batch_size=16,
        n_critic=2,
        lr=1e-3,
        seed=0,
        progress=events.append,
    )
    G.eval()
    with torch.no_grad():
        samples = G(z)
    after = abs(samples.mean().item() - data_mean)
    assert after < 0.5 * before, (before, after)
    assert len(events) == 15 and events[-1]["step"] == events[-1]["total"] == 15
    assert {"stage", "critic_loss", "generator_loss", "wasserstein"} <= set(events[0])
    # the critic tells real from generated images apart (positive Wasserstein estimate)
    assert sum(e["wasserstein"] for e in events[-5:]) / 5 > 0


def test_training_is_seeded_and_leaves_the_caller_state_alone(glyphs):
    (G1, C1), (G2, C2), (G3, C3) = pair(), pair(), pair()
    G1.eval()
    C1.net[0].weight.requires_grad_(False)
    frozen = C1.net[0].weight.detach().clone()
    state = torch.random.get_rng_state()
    train_wgan(G1, C1, glyphs, iterations=2, batch_size=16, n_critic=2, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not G1.training and C1.training
    assert C1.net[0].weight.requires_grad is False and torch.equal(C1.net[0].weight, frozen)
    assert all(p.requires_grad for name, p in C1.named_parameters() if name != "net.0.weight")
    C2.net[0].weight.requires_grad_(False)
    train_wgan(G2, C2, glyphs, iterations=2, batch_size=16, n_critic=2, seed=7)
    train_wgan(G3, C3, glyphs, iterations=2, batch_size=16, n_critic=2, seed=8)
    for (name, a), b in zip(G1.state_dict().items(), G2.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(G1.net[0].weight, G3.net[0].weight)


def test_weight_clipping_variant_keeps_the_critic_in_the_box(glyphs):
    G, critic = pair()
    train_wgan(
        G, critic, glyphs, epochs=1, batch_size=50, n_critic=2, method="clip", clip=0.02, seed=0
    )
    assert all(p.abs().max() <= 0.02 for p in critic.parameters())


def test_argument_checks(glyphs):
    G, critic = pair()
    with pytest.raises(ValueError, match="exactly one"):
        train_wgan(G, critic, glyphs, iterations=1, epochs=1)
    with pytest.raises(ValueError, match="exactly one"):
        train_wgan(G, critic, glyphs)
    with pytest.raises(ValueError, match="method"):
        train_wgan(G, critic, glyphs, iterations=1, method="hinge")


def test_batchnorm_recalibration_makes_eval_mode_match_train_mode():
    G, _ = pair()
    for m in G.modules():  # stale statistics, as after a short or unstable training
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(3.0)
            m.running_var.fill_(0.01)
    z = torch.randn(256, 100, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        train_mode_mean = G.train()(z).mean().item()
        stale = G.eval()(z).mean().item()
        recalibrate_batchnorm(G, z_dim=100, generator=torch.Generator().manual_seed(1))
        assert not G.training
        fresh = G(z).mean().item()
    assert abs(fresh - train_mode_mean) < 0.02 < abs(stale - train_mode_mean)


def test_checkpoint_round_trip(tmp_path, glyphs):
    G, critic = pair()
    train_wgan(G, critic, glyphs, iterations=2, batch_size=16, n_critic=1)
    save_checkpoint(
        tmp_path / "g.pt", G, arch="DCGANGenerator", arch_kwargs={"z_dim": 100, "width": 8}
    )
    save_checkpoint(tmp_path / "c.pt", critic, arch="WGANCritic", arch_kwargs={"width": 8})
    G2, meta = load_checkpoint(tmp_path / "g.pt")
    C2, _ = load_checkpoint(tmp_path / "c.pt")
    assert isinstance(G2, DCGANGenerator) and not G2.training and meta["arch"] == "DCGANGenerator"
    z = torch.randn(4, 100)
    G.eval()
    with torch.no_grad():
        assert torch.equal(G2(z), G(z))
        assert torch.equal(C2(G(z)), critic(G(z)))
