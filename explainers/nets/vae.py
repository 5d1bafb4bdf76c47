"""Variational auto-encoder used as the generator ``G`` (and encoder) of CDeepEx.

Dissertation, section 3.2.1: "The VAE has four convolutional layers and two fully connected
layers, one for mu and one for sigma. The size of the latent code is 400 for each of the mean
and standard deviation." (Kingma and Welling 2014.) The decoder is not described; here it
mirrors the encoder: an FC layer, two transposed convolutions and a 3x3 convolution.

Deviations, all documented choices:

- the second FC layer outputs ``logvar = log sigma^2`` rather than sigma (numerically stable);
- the channel widths are not given; ``width`` (default 32: 32-64-128-128) keeps it trainable
  on a CPU in minutes;
- BatchNorm after every convolution (not mentioned in the dissertation): without it the short
  CPU trainings sit for hundreds of steps on the blurry "mean digit" before the latent code is
  used at all;
- the loss is the usual negative ELBO with a Bernoulli likelihood (binary cross-entropy summed
  over pixels) and an optional ``beta`` on the KL term (``beta=1`` is the plain VAE).

Shapes (docs/CONTRACTS.md): images float32 ``(N, 1, 28, 28)`` in [0, 1]; ``encode(x) -> (mu,
logvar)`` each ``(N, latent_dim)``; ``decode(z) -> (N, 1, 28, 28)`` in (0, 1) (sigmoid).

Example::

    >>> vae = VAE(latent_dim=8, width=8)
    >>> mu, logvar = vae.encode(torch.zeros(2, 1, 28, 28))
    >>> vae.decode(mu).shape
    torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from explainers.hooks import Progress, as_images, model_device, model_guard

logger = logging.getLogger(__name__)


class VAE(nn.Module):
    """Convolutional VAE for 28x28 single-channel images.

    Encoder (four convolutions, each with BatchNorm and LeakyReLU(0.2)): Conv(1->w, 4, s2)
    28->14, Conv(w->2w, 4, s2) 14->7, Conv(2w->4w, 3) 7->7, Conv(4w->4w, 3, s2) 7->4; then
    FC(16*4w -> latent) for mu and FC(16*4w -> latent) for logvar. Decoder: FC(latent ->
    4w*7*7), BatchNorm/ReLU, ConvTranspose 7->14->28 with BatchNorm/ReLU, Conv 3x3 to one
    channel, sigmoid.

    ``forward(x)`` returns ``(reconstruction, mu, logvar)``; it samples ``z = mu + sigma * eps``
    in train mode and uses ``z = mu`` in eval mode (deterministic reconstructions). Use the
    model in eval mode for explanations: BatchNorm then applies its running statistics and
    each image is treated independently of the rest of its batch.
    """

    def __init__(self, latent_dim: int = 400, width: int = 32) -> None:
        super().__init__()
        if latent_dim < 1 or width < 1:
            raise ValueError("latent_dim and width must be positive")
        self.latent_dim = latent_dim
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w, 4, stride=2, padding=1),  # 28 -> 14
            nn.BatchNorm2d(w),
            nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1),  # 14 -> 7
            nn.BatchNorm2d(2 * w),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1),  # 7 -> 7
            nn.BatchNorm2d(4 * w),
            nn.LeakyReLU(0.2),
            nn.Conv2d(4 * w, 4 * w, 3, stride=2, padding=1),  # 7 -> 4
            nn.BatchNorm2d(4 * w),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        features = 4 * w * 4 * 4
        self.fc_mu = nn.Linear(features, latent_dim)
        self.fc_logvar = nn.Linear(features, latent_dim)
        self.decoder_input = nn.Linear(latent_dim, 4 * w * 7 * 7)
        self.decoder = nn.Sequential(
            nn.Unflatten(1, (4 * w, 7, 7)),
            nn.BatchNorm2d(4 * w),
            nn.ReLU(),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, stride=2, padding=1),  # 7 -> 14
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1),  # 14 -> 28
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.Conv2d(w, 1, 3, padding=1),  # 28 -> 28
            nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, 1, 28, 28)`` -> ``(mu, logvar)``, each ``(N, latent_dim)``."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"VAE.encode expects (N, 1, 28, 28), got {tuple(x.shape)}")
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, latent_dim)`` -> images ``(N, 1, 28, 28)`` in (0, 1)."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"VAE.decode expects (N, {self.latent_dim}), got {tuple(z.shape)}")
        return self.decoder(self.decoder_input(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decode(z), mu, logvar


def vae_loss(
    recon: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    *,
    beta: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative ELBO per image, averaged over the batch: ``(loss, reconstruction, kl)``.

    reconstruction = sum_pixels BCE(recon, x); kl = -1/2 sum_j (1 + logvar_j - mu_j^2 - e^logvar_j).
    """
    n = x.shape[0]
    rec = F.binary_cross_entropy(recon, x, reduction="sum") / n
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / n
    return rec + beta * kl, rec, kl


def train_vae(
    vae: VAE,
    x: torch.Tensor | np.ndarray,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    beta: float = 1.0,
    kl_warmup_steps: int = 0,
    progress: Progress | None = None,
) -> VAE:
    """Train ``vae`` in place with Adam on the negative ELBO; return it.

    Deterministic for given initial weights, data and ``seed``: shuffling uses its own
    generator and the reparameterisation noise comes from the global RNG inside
    ``torch.random.fork_rng`` seeded with ``seed`` (the caller's RNG state is untouched).
    The module's train/eval modes are restored afterwards.

    Args:
        x: float images ``(N, 1, 28, 28)`` in [0, 1] (or uint8 ``(N, 28, 28)`` numpy).
        beta: weight of the KL term (1 = the plain VAE of Kingma and Welling).
        kl_warmup_steps: if > 0, the KL weight rises linearly from ``beta / kl_warmup_steps``
            to ``beta`` over these first steps ("KL annealing", Bowman et al. 2016), which keeps
            the short CPU trainings from settling on blurry, prior-like reconstructions.
        progress: called after every step with ``{"stage": "train_vae", "step", "total",
            "epoch", "loss", "reconstruction", "kl"}`` (per-image values of that batch).

    Example::

        >>> vae = train_vae(VAE(), x_train, epochs=5, seed=0)   # doctest: +SKIP
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    images = as_images(x)
    device = model_device(vae)
    optimiser = torch.optim.Adam([p for p in vae.parameters() if p.requires_grad], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    total = epochs * ((n + batch_size - 1) // batch_size)
    step = 0
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]), model_guard(vae, training=True, freeze=False):
        torch.manual_seed(seed)
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator)
            running = 0.0
            for start in range(0, n, batch_size):
                batch = images[order[start : start + batch_size]].to(device)
                recon, mu, logvar = vae(batch)
                weight = beta * min(1.0, (step + 1) / kl_warmup_steps) if kl_warmup_steps else beta
                loss, rec, kl = vae_loss(recon, batch, mu, logvar, beta=weight)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                step += 1
                running += float(loss.detach()) * batch.shape[0]
                if progress is not None:
                    progress(
                        {
                            "stage": "train_vae",
                            "step": step,
                            "total": total,
                            "epoch": epoch,
                            "loss": float(loss.detach()),
                            "reconstruction": float(rec.detach()),
                            "kl": float(kl.detach()),
                        }
                    )
            logger.info(
                "train_vae epoch %d/%d: mean loss %.2f (%.1f s)",
                epoch + 1,
                epochs,
                running / n,
                time.perf_counter() - started,
            )
    return vae
