"""The generators on colour and larger images (C x S x S), and checkpoints saved before that
change: files written by the 1x28x28-only code (tests/explainers/nets/data, made with the code
of commit 4a5531f) load and give the outputs they gave then.

"The same" is to float32 rounding, not bit for bit: the saved outputs were computed on one CPU, and
PyTorch's convolution and matrix kernels (oneDNN, MKL) pick different instruction paths on another
(bit-identical on the machines of earlier runs; up to 6e-8 apart on an AMD EPYC). A checkpoint read
wrongly moves them by orders of magnitude more (one weight tensor off by 1e-3: 1.5e-4)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from explainers.nets.checkpoints import load_checkpoint, save_checkpoint
from explainers.nets.vae import VAE, train_vae
from explainers.nets.wgan import DCGANGenerator, WGANCritic, train_wgan

DATA = Path(__file__).parent / "data"


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal to float32 rounding (see the module docstring): a few ulps, nothing a model would change."""
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def legacy() -> dict[str, torch.Tensor]:
    with np.load(DATA / "legacy_outputs_28.npz") as data:
        return {k: torch.from_numpy(data[k]) for k in data.files}


def test_a_vae_checkpoint_saved_before_loads_and_behaves_exactly_as_before(legacy):
    vae, meta = load_checkpoint(DATA / "legacy_vae_28.pt")
    assert meta["arch_kwargs"] == {"latent_dim": 4, "width": 2}  # no channels, no size
    assert (vae.channels, vae.size) == (1, 28)
    with torch.no_grad():
        mu, logvar = vae.encode(legacy["x"])
        assert same(mu, legacy["vae_mu"]) and same(logvar, legacy["vae_logvar"])
        assert same(vae.decode(legacy["z4"]), legacy["vae_decode"])


def test_wgan_checkpoints_saved_before_load_and_behave_exactly_as_before(legacy):
    G, _ = load_checkpoint(DATA / "legacy_dcgan_28.pt")
    critic, _ = load_checkpoint(DATA / "legacy_critic_28.pt")
    with torch.no_grad():
        assert same(G(legacy["z5"]), legacy["dcgan"])
        assert same(critic(legacy["x"]), legacy["critic"])


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 28), (1, 32), (3, 32), (3, 64)])
def test_vae_and_wgan_shapes_for_each_allowed_image_shape(channels, size):
    torch.manual_seed(0)
    vae = VAE(latent_dim=6, width=4, channels=channels, size=size).eval()
    x = torch.rand(2, channels, size, size)
    recon, mu, _ = vae(x)
    assert recon.shape == x.shape and mu.shape == (2, 6)
    assert 0 <= float(recon.min()) and float(recon.max()) <= 1
    G = DCGANGenerator(z_dim=5, width=4, channels=channels, size=size).eval()
    fake = G(torch.randn(2, 5))
    assert fake.shape == x.shape and 0 <= float(fake.min()) and float(fake.max()) <= 1
    assert WGANCritic(width=4, channels=channels, size=size)(fake).shape == (2,)


def test_the_64_pixel_vae_keeps_four_convolutions_and_small_fully_connected_layers():
    vae = VAE(channels=3, size=64)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in vae.encoder.modules()) == 4
    assert vae.fc_mu.in_features == 4 * 32 * 4 * 4  # the encoder ends at 4x4, as at 28 px
    assert vae.decoder_input.out_features == 4 * 32 * 8 * 8  # the decoder starts at 8x8


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: VAE(channels=3, size=48), "square images of 28, 32, 64 pixels, got 48x48"),
        (lambda: VAE(channels=2, size=28), "grey (1 channel) or colour (3 channels) images, got 2 channels"),
        (lambda: DCGANGenerator(size=128), "square images of 28, 32, 64 pixels, got 128x128"),
        (lambda: WGANCritic(channels=4), "got 4 channels"),
    ],
)
def test_unsupported_image_shapes_are_refused_with_a_sentence(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


def test_a_colour_vae_and_wgan_round_trip_through_a_checkpoint_and_train(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(32, 3, 32, 32)
    vae = VAE(latent_dim=8, width=4, channels=3, size=32)
    with torch.no_grad():
        before = float(torch.nn.functional.binary_cross_entropy(vae.eval()(x)[0], x))
    train_vae(vae, x, epochs=3, batch_size=16, seed=0)
    with torch.no_grad():
        after = float(torch.nn.functional.binary_cross_entropy(vae.eval()(x)[0], x))
    assert after < before  # it learns on colour images
    save_checkpoint(tmp_path / "v.pt", vae, arch="VAE", arch_kwargs={"latent_dim": 8, "width": 4, "channels": 3, "size": 32})
    again, _ = load_checkpoint(tmp_path / "v.pt")
    with torch.no_grad():
        assert torch.equal(again.encode(x)[0], vae.eval().encode(x)[0])
    G = train_wgan(DCGANGenerator(5, 4, 3, 32), WGANCritic(4, 3, 32), x, iterations=2, batch_size=8, n_critic=1)
    assert G.eval()(torch.randn(2, 5)).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"VAE.encode expects \(N, 3, 32, 32\)"):
        vae.encode(torch.rand(2, 1, 28, 28))


def test_the_default_networks_start_from_the_same_weights_as_before():
    """Same seed, same initial weights as the 1x28x28-only code (module creation order kept)."""
    torch.manual_seed(0)
    G = DCGANGenerator(z_dim=5, width=2)
    torch.manual_seed(0)
    vae = VAE(latent_dim=4, width=2)
    with np.load(DATA / "legacy_init_28.npz") as data:
        assert all(np.array_equal(v.numpy(), data[f"G.{k}"]) for k, v in G.state_dict().items())
        assert all(np.array_equal(v.numpy(), data[f"vae.{k}"]) for k, v in vae.state_dict().items())
