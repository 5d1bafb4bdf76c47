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
  over pixels and channels) and an optional ``beta`` on the KL term (``beta=1`` is the plain VAE);
- colour and larger images (not in the dissertation, which has 28x28 MNIST): ``channels`` 1 or 3
  and square ``size`` in :data:`VAE_SIZES` (28, 32 or 64 pixels). The encoder keeps four
  convolutions; at 64 all four are strided (the dissertation's 28 px layout has one unstrided) and the decoder adds
  one transposed convolution per doubling, so the fully connected layers stay small (the
  decoder starts from a 7x7 or 8x8 map). ``VAE()`` is the 28x28 grey network as before, and a
  checkpoint saved without ``channels``/``size`` loads as that network.

Shapes (docs/CONTRACTS.md): images float32 ``(N, C, S, S)`` in [0, 1] (``C = channels``,
``S = size``; ``(N, 1, 28, 28)`` by default); ``encode(x) -> (mu, logvar)`` each ``(N,
latent_dim)``; ``decode(z) -> (N, C, S, S)`` in (0, 1) (sigmoid).

Example::

    >>> vae = VAE(latent_dim=8, width=8)
    >>> mu, logvar = vae.encode(torch.zeros(2, 1, 28, 28))
    >>> vae.decode(mu).shape
    torch.Size([2, 1, 28, 28])
    >>> VAE(latent_dim=8, width=8, channels=3, size=64).decode(torch.zeros(2, 8)).shape
    torch.Size([2, 3, 64, 64])
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


#: Allowed image sizes (square) -> (encoder strides, decoder start size, transposed convolutions).
#: 28 is the dissertation's layout (28 -> 14 -> 7 -> 7 -> 4; decoder 7 -> 14 -> 28).
VAE_SIZES: dict[int, tuple[tuple[int, int, int, int], int, int]] = {
    28: ((2, 2, 1, 2), 7, 2),
    32: ((2, 2, 1, 2), 8, 2),
    64: ((2, 2, 2, 2), 8, 3),
}
VAE_CHANNELS = (1, 3)


def check_image_shape(channels: int, size: int, sizes: dict | tuple = tuple(VAE_SIZES), *, what: str = "VAE") -> None:
    """Refuse image shapes the generators do not support, with a sentence that says which are."""
    if channels not in VAE_CHANNELS:
        raise ValueError(f"The {what} takes grey (1 channel) or colour (3 channels) images, got {channels} channels.")
    if size not in sizes:
        allowed = ", ".join(str(s) for s in sorted(sizes))
        raise ValueError(
            f"The {what} takes square images of {allowed} pixels, got {size}x{size}; "
            "import the data set at one of these sizes."
        )


class VAE(nn.Module):
    """Convolutional VAE for ``channels x size x size`` images (default 1 x 28 x 28).

    Encoder (four convolutions, each with BatchNorm and LeakyReLU(0.2)), at 28: Conv(C->w, 4, s2)
    28->14, Conv(w->2w, 4, s2) 14->7, Conv(2w->4w, 3) 7->7, Conv(4w->4w, 3, s2) 7->4; then
    FC(16*4w -> latent) for mu and FC(16*4w -> latent) for logvar. Decoder: FC(latent ->
    4w*7*7), BatchNorm/ReLU, ConvTranspose 7->14->28 with BatchNorm/ReLU, Conv 3x3 to C
    channels, sigmoid. At 32 the same with 8 for 7; at 64 the third convolution is strided too
    (64->32->16->8->4) and the decoder is 8->16->32->64 (4w->4w->2w->w) (:data:`VAE_SIZES`).

    ``forward(x)`` returns ``(reconstruction, mu, logvar)``; it samples ``z = mu + sigma * eps``
    in train mode and uses ``z = mu`` in eval mode (deterministic reconstructions). Use the
    model in eval mode for explanations: BatchNorm then applies its running statistics and
    each image is treated independently of the rest of its batch.
    """

    def __init__(self, latent_dim: int = 400, width: int = 32, channels: int = 1, size: int = 28) -> None:
        super().__init__()
        if latent_dim < 1 or width < 1:
            raise ValueError("latent_dim and width must be positive")
        check_image_shape(channels, size)
        self.latent_dim = latent_dim
        self.channels, self.size = channels, size
        strides, start, ups = VAE_SIZES[size]
        w = width
        kernels = (4, 4, 3, 3)
        widths = (channels, w, 2 * w, 4 * w, 4 * w)
        layers: list[nn.Module] = []
        side = size
        for k in range(4):
            kernel = kernels[k] if strides[k] == 1 or k != 2 else 4  # a strided third conv halves exactly
            layers += [
                nn.Conv2d(widths[k], widths[k + 1], kernel, stride=strides[k], padding=1),
                nn.BatchNorm2d(widths[k + 1]),
                nn.LeakyReLU(0.2),
            ]
            side = (side + 2 - kernel) // strides[k] + 1
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        features = 4 * w * side * side
        self.fc_mu = nn.Linear(features, latent_dim)
        self.fc_logvar = nn.Linear(features, latent_dim)
        self.decoder_input = nn.Linear(latent_dim, 4 * w * start * start)
        decoder: list[nn.Module] = [nn.Unflatten(1, (4 * w, start, start)), nn.BatchNorm2d(4 * w), nn.ReLU()]
        channels_in = 4 * w
        for k in range(ups):  # each doubles the side; the last two narrow to 2w and w
            channels_out = w * min(4, 2 ** (ups - 1 - k))
            decoder += [
                nn.ConvTranspose2d(channels_in, channels_out, 4, stride=2, padding=1),
                nn.BatchNorm2d(channels_out),
                nn.ReLU(),
            ]
            channels_in = channels_out
        decoder += [nn.Conv2d(w, channels, 3, padding=1), nn.Sigmoid()]
        self.decoder = nn.Sequential(*decoder)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, C, S, S)`` -> ``(mu, logvar)``, each ``(N, latent_dim)``."""
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"VAE.encode expects (N, {', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}")
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, latent_dim)`` -> images ``(N, C, S, S)`` in (0, 1)."""
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
        x: float images ``(N, C, S, S)`` in [0, 1] matching the VAE (or uint8 ``(N, S, S)`` /
            ``(N, S, S, 3)`` numpy).
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
