"""Fixtures for the explainer tests: toy models with hand-checkable answers, and small real
models trained on Kannada-MNIST (skipped when the data is absent).

The real models are trained once in a few seconds to tens of seconds (2 CPU cores, one
thread) and cached in pytest's cache directory (``.pytest_cache``, keyed by the recipe and the
data), so later sessions load them instantly; ``pytest --cache-clear`` retrains.

* ``kannada_models[0]``: ``MnistNet(10)`` trained one epoch on 4000 random training images of
  all ten classes. Ten classes, so that CDeepEx's inequality constraints ("every other class
  stays below true and probe") have eight real competitors to hold down.
* ``kannada_models[1]``: :class:`SmallVAE`, an MLP VAE (784-256-16) trained 10 epochs on 4000
  training images of the look-alike pair ``PAIR = (3, 7)`` (both resemble a handwritten "2";
  the pair the classifier tests use). An MLP trains in seconds on a CPU; the conv
  ``explainers.nets.vae.VAE`` needs minutes to become a generator that CDeepEx can walk on (briefly
  trained, its decoder saturates between the classes and the boundary is not reached).
* ``pair_test``: 16 test images of the pair that the classifier assigns to one of the two.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

SHARED_KANNADA = Path(__file__).resolve().parents[3] / "shared" / "data" / "kannada_mnist"
PAIR = (3, 7)
RECIPE = "v2: D=MnistNet(10) 4000 imgs 1 epoch seed 0; SmallVAE(16, 256) pair 4000 imgs 10 epochs seed 0"


# ----------------------------------------------------------------------------- toy models


class ToyCNN(nn.Module):
    """conv(1->3, 3x3, pad 1) -> ReLU -> global average pool -> linear(3 -> C).

    Grad-CAM has a closed form here. At the ReLU output ``a`` (layer ``relu``),
    ``dy_c / da_k[i, j] = W[c, k] / (H W)`` everywhere, so ``alpha_k = W[c, k] / (H W)``. At the
    conv output ``A`` (layer ``conv``) the gradient is ``W[c, k] / (H W)`` where ``A > 0`` and
    0 elsewhere, so ``alpha_k = W[c, k] * mean(A_k > 0) / (H W)``.
    """

    def __init__(self, num_classes: int = 3, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(3, num_classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.conv(x))
        return self.fc(a.mean(dim=(2, 3)))


class ToyClassifier(nn.Module):
    """A smooth, BatchNorm-carrying classifier on (N, 1, 8, 8) images (for CDeepEx tests)."""

    def __init__(self, num_classes: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.act = nn.Tanh()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(6 * 8 * 8, num_classes)
        with torch.no_grad():  # non-trivial running statistics for eval mode
            self.bn.running_mean.uniform_(-0.1, 0.1)
            self.bn.running_var.uniform_(0.8, 1.2)
            self.fc.weight.mul_(15.0)  # confident, with reachable boundaries

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.act(self.bn(self.conv(x)))).flatten(1))


class ToyGenerator(nn.Module):
    """Latent (N, Z) -> image (N, 1, 8, 8) in (0, 1), with an encoder ``encode``."""

    def __init__(self, z_dim: int = 6, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed + 1)
        self.z_dim = z_dim
        self.dec = nn.Sequential(nn.Linear(z_dim, 32), nn.Tanh(), nn.Linear(32, 64))
        self.enc = nn.Linear(64, 2 * z_dim)
        with torch.no_grad():  # a decoder whose output reacts to z, so boundaries are reachable
            self.dec[2].weight.mul_(3.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.dec(z)).view(-1, 1, 8, 8)

    decode = forward

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.enc(x.flatten(1))
        return out[:, : self.z_dim], out[:, self.z_dim :]


@pytest.fixture
def single_thread() -> Iterator[None]:
    """One intra-op thread: the explainers run many tiny ops, and on a shared 2-core machine a
    second thread mostly spins (10x slower). Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def toy_cnn() -> ToyCNN:
    return ToyCNN()


@pytest.fixture
def toy_models() -> tuple[ToyClassifier, ToyGenerator]:
    return ToyClassifier(), ToyGenerator()


@pytest.fixture
def toy_images(toy_models: tuple[ToyClassifier, ToyGenerator]) -> torch.Tensor:
    """Six images that the toy generator can represent (plus a little off-manifold noise)."""
    _, G = toy_models
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        x = G(torch.randn(6, G.z_dim, generator=g)) + 0.02 * torch.randn(6, 1, 8, 8, generator=g)
    return x.clamp(0, 1)


# ----------------------------------------------------------------------------- real Kannada


class SmallVAE(nn.Module):
    """MLP VAE for 28x28 images: ``encode(x) -> (mu, logvar)``, ``decode(z) -> (N, 1, 28, 28)``."""

    def __init__(self, latent_dim: int = 16, hidden: int = 256) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU())
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 784), nn.Sigmoid()
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, 1, 28, 28)

    def fit(self, x: torch.Tensor, *, epochs: int, seed: int = 0, lr: float = 2e-3) -> SmallVAE:
        """Adam on the negative ELBO (Bernoulli likelihood), seeded."""
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        self.train()
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=g)
            for start in range(0, x.shape[0], 128):
                b = x[order[start : start + 128]]
                mu, logvar = self.encode(b)
                eps = torch.randn(mu.shape, generator=g)
                recon = self.decode(mu + eps * (0.5 * logvar).exp())
                rec = nn.functional.binary_cross_entropy(recon, b, reduction="sum")
                kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum()
                opt.zero_grad()
                ((rec + kl) / b.shape[0]).backward()
                opt.step()
        return self.eval()


def kannada_dir() -> Path:
    configured = os.environ.get("KANNADA_MNIST_DIR")
    for candidate in ([Path(configured)] if configured else []) + [SHARED_KANNADA]:
        if candidate.is_dir() and any(candidate.glob("X_kannada_MNIST_*")):
            return candidate
    pytest.skip("real Kannada-MNIST files not available (set KANNADA_MNIST_DIR)")


@pytest.fixture(scope="session")
def kannada() -> dict[str, object]:
    from explainers.datasets.kannada import load_kannada

    directory = kannada_dir()
    return {"train": load_kannada(directory, "train"), "test": load_kannada(directory, "test")}


def _cache_key(kannada: dict[str, object]) -> str:
    train = kannada["train"]
    digest = hashlib.sha256(RECIPE.encode())
    digest.update(train.images[:: 997].tobytes())  # cheap fingerprint of the data
    digest.update(train.labels.tobytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def kannada_models(
    kannada: dict[str, object], pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> tuple[nn.Module, SmallVAE]:
    from explainers.datasets.common import to_tensor
    from explainers.nets.classifiers import MnistNet, train_classifier

    D, vae = MnistNet(10), SmallVAE()
    cache_provider = getattr(pytestconfig, "cache", None)  # absent with -p no:cacheprovider
    folder = (
        cache_provider.mkdir("explainers-kannada-models")
        if cache_provider is not None
        else tmp_path_factory.mktemp("explainers-kannada-models")
    )
    cache = folder / f"{_cache_key(kannada)}.pt"
    if cache.is_file():
        state = torch.load(cache, map_location="cpu", weights_only=True)
        D.load_state_dict(state["D"])
        vae.load_state_dict(state["vae"])
        return D.eval(), vae.eval()
    train = kannada["train"]
    rng = np.random.default_rng(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        idx = rng.permutation(len(train.labels))[:4000]
        torch.manual_seed(0)
        D = MnistNet(10)
        train_classifier(D, to_tensor(train.images[idx]), torch.from_numpy(train.labels[idx]), epochs=1, seed=0)
        pair_idx = rng.permutation(np.flatnonzero(np.isin(train.labels, PAIR)))[:4000]
        torch.manual_seed(0)
        vae = SmallVAE().fit(to_tensor(train.images[pair_idx]), epochs=10, seed=0)
    finally:
        torch.set_num_threads(before)
    torch.save({"D": D.state_dict(), "vae": vae.state_dict()}, cache)
    return D.eval(), vae.eval()


@pytest.fixture(scope="session")
def pair_test(kannada: dict[str, object], kannada_models: tuple[nn.Module, nn.Module]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images (16, 1, 28, 28), D's prediction (16,), the partner class as probe (16,))."""
    from explainers.datasets.common import to_tensor

    D, _ = kannada_models
    test = kannada["test"]
    idx = np.flatnonzero(np.isin(test.labels, PAIR))[:64]
    x = to_tensor(test.images[idx])
    with torch.no_grad():
        pred = D(x).argmax(1)
    keep = (pred == PAIR[0]) | (pred == PAIR[1])
    x, pred = x[keep][:16], pred[keep][:16]
    probe = torch.where(pred == PAIR[0], PAIR[1], PAIR[0])
    return x, pred, probe
