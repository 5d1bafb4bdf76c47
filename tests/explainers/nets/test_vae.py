"""explainers.nets.vae: layout from the dissertation, ELBO by hand, seeded training that learns,
checkpoints."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from explainers.datasets.common import to_tensor
from explainers.datasets.kannada import load_kannada, make_lookalike_kannada
from explainers.nets.checkpoints import load_checkpoint, save_checkpoint
from explainers.nets.vae import VAE, train_vae, vae_loss

SHARED_KANNADA = Path(__file__).resolve().parents[4] / "shared" / "data" / "kannada_mnist"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The test machine's cores are shared: one intra-op thread avoids OpenMP thrashing.
    (Tests may set this; library code never does.)"""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def training_images(n: int) -> torch.Tensor:
    """Real test-split images drawn at random (any writer), else the look-alike stand-in."""
    configured = os.environ.get("KANNADA_MNIST_DIR")
    for candidate in ([Path(configured)] if configured else []) + [SHARED_KANNADA]:
        if candidate.is_dir() and any(candidate.glob("X_kannada_MNIST_test*")):
            images = load_kannada(candidate, "test").images
            idx = np.sort(np.random.default_rng(0).choice(len(images), n, replace=False))
            return to_tensor(images[idx])
    return to_tensor(make_lookalike_kannada(math.ceil(n / 10), seed=0).images[:n])


def small_vae(seed: int = 0, latent_dim: int = 16) -> VAE:
    torch.manual_seed(seed)
    return VAE(latent_dim=latent_dim, width=8)


def test_layout_follows_the_dissertation():
    vae = VAE()
    assert vae.latent_dim == 400
    assert sum(isinstance(m, nn.Conv2d) for m in vae.encoder.modules()) == 4
    assert (vae.fc_mu.out_features, vae.fc_logvar.out_features) == (400, 400)
    mu, logvar = vae.encode(torch.rand(3, 1, 28, 28))
    assert mu.shape == logvar.shape == (3, 400)
    out = vae.decode(torch.randn(3, 400))
    assert out.shape == (3, 1, 28, 28) and out.min() >= 0 and out.max() <= 1


def test_forward_samples_in_train_mode_and_uses_the_mean_in_eval_mode():
    vae = small_vae()
    x = torch.rand(4, 1, 28, 28)
    vae.eval()
    recon, mu, _ = vae(x)
    torch.testing.assert_close(recon, vae.decode(mu))
    torch.testing.assert_close(vae(x)[0], recon)
    vae.train()
    assert not torch.allclose(vae(x)[0], vae(x)[0])


def test_shape_errors():
    vae = small_vae()
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        vae.encode(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, 16\)"):
        vae.decode(torch.rand(2, 15))


def test_loss_matches_the_elbo_by_hand():
    x = torch.tensor([[1.0, 0.0]]).reshape(1, 1, 1, 2)
    recon = torch.tensor([[0.8, 0.4]]).reshape(1, 1, 1, 2)
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(4.0)]])
    loss, rec, kl = vae_loss(recon, x, mu, logvar)
    expected_rec = -(math.log(0.8) + math.log(0.6))
    # kl = sum_j (mu_j^2 + s_j^2 - 1 - log s_j^2) / 2
    expected_kl = 0.5 * (1.0 + 0.0) + 0.5 * (4.0 - 1.0 - math.log(4.0))
    assert rec.item() == pytest.approx(expected_rec, rel=1e-5)
    assert kl.item() == pytest.approx(expected_kl, rel=1e-5)
    assert loss.item() == pytest.approx(expected_rec + expected_kl, rel=1e-5)
    assert vae_loss(recon, x, mu, logvar, beta=0.0)[0].item() == pytest.approx(
        expected_rec, rel=1e-5
    )


def test_training_reduces_the_loss_and_learns_image_specific_codes():
    x = training_images(704)
    train, held_out = x[:-64], x[-64:]
    vae = small_vae(latent_dim=16)
    events = []
    train_vae(vae, train, epochs=3, batch_size=32, lr=3e-3, seed=0, progress=events.append)
    assert events[0]["stage"] == "train_vae" and events[-1]["step"] == events[-1]["total"] == 3 * 20
    assert {"loss", "reconstruction", "kl", "epoch"} <= set(events[0])
    first = np.mean([e["loss"] for e in events[:5]])
    last = np.mean([e["loss"] for e in events[-5:]])
    assert last < 0.5 * first, (first, last)
    vae.eval()
    with torch.no_grad():
        recon = vae(held_out)[0]
    # squared error between reconstruction i and held-out image j
    err = ((recon.flatten(1)[:, None] - held_out.flatten(1)[None]) ** 2).mean(-1)
    own = err.diag().mean().item()
    others = err[~torch.eye(64, dtype=torch.bool)].mean().item()
    mean_image = ((train.mean(0) - held_out) ** 2).mean().item()
    assert own < 0.9 * mean_image, (own, mean_image)  # better than always drawing the mean digit
    assert own < 0.85 * others, (own, others)  # the code carries this image, not a generic one


def test_training_is_seeded_and_restores_mode_and_global_rng():
    x = torch.rand(48, 1, 28, 28)
    a, b, c = small_vae(), small_vae(), small_vae()
    a.eval()
    state = torch.random.get_rng_state()
    train_vae(a, x, epochs=1, batch_size=16, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not a.training
    train_vae(b, x, epochs=1, batch_size=16, seed=3)
    train_vae(c, x, epochs=1, batch_size=16, seed=4)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.fc_mu.weight, c.fc_mu.weight)


def test_kl_warmup_starts_with_a_small_kl_weight():
    x = torch.rand(32, 1, 28, 28)
    events = []
    train_vae(
        small_vae(), x, epochs=1, batch_size=16, seed=0, kl_warmup_steps=100, progress=events.append
    )
    first = events[0]
    # loss = reconstruction + (1/100) * kl on the first step
    assert first["loss"] == pytest.approx(first["reconstruction"] + first["kl"] / 100, rel=1e-5)
    with pytest.raises(ValueError, match="epochs"):
        train_vae(small_vae(), x, epochs=0)


def test_checkpoint_round_trip(tmp_path):
    vae = small_vae()
    train_vae(vae, torch.rand(32, 1, 28, 28), epochs=1, batch_size=16)
    save_checkpoint(
        tmp_path / "vae.pt",
        vae,
        arch="VAE",
        arch_kwargs={"latent_dim": 16, "width": 8},
        metadata={"note": "t"},
    )
    loaded, meta = load_checkpoint(tmp_path / "vae.pt")
    assert isinstance(loaded, VAE) and not loaded.training and meta["note"] == "t"
    z = torch.randn(5, 16)
    x = torch.rand(5, 1, 28, 28)
    vae.eval()
    with torch.no_grad():
        assert torch.equal(loaded.decode(z), vae.decode(z))
        assert all(torch.equal(p, q) for p, q in zip(loaded.encode(x), vae.encode(x), strict=True))
