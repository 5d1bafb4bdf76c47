"""DCGAN-layout generator and critic trained as a Wasserstein GAN: the GAN generator ``G`` of
CDeepEx.

Dissertation, section 3.2.1: "GAN structure follows the guidelines of (Radford et al., 2015). It
has 5 set of ConvTranspose2d/BatchNorm2d/ReLU operations. The size of z is 100." Section 3.1.2:
trained "using the method proposed by Arjovsky et al. (2017)" (WGAN).

Choices and deviations:

- Training defaults to **WGAN-GP** (Gulrajani et al. 2017: gradient penalty, weight 10, Adam
  lr 1e-4, betas (0.5, 0.9), 5 critic steps per generator step) instead of the weight
  clipping of Arjovsky et al. It is the same Wasserstein objective but trains faster and more
  stably, which matters on a CPU. ``method="clip"`` gives the original recipe (RMSprop lr 5e-5,
  clip 0.01).
- Five ConvTranspose2d layers: four ConvTranspose/BatchNorm/ReLU blocks (1 -> 4 -> 8 -> 16 ->
  32) and a fifth ConvTranspose with Tanh (DCGAN ends with Tanh, not BatchNorm/ReLU). The
  Tanh output is mapped to [0, 1] by ``(t + 1) / 2`` and the 32x32 image is centre-cropped to
  28x28 (the DCGAN layout doubles the size at each step, 28 is not a power of two).
- Channel widths (``width``, default 32: 256-128-64-32) are smaller than DCGAN's for speed.
- Colour and larger images (not in the dissertation): ``channels`` 1 or 3 and square ``size``
  28, 32 or 64. At 32 nothing is cropped; at 64 the fifth ConvTranspose doubles the size
  (32 -> 64, DCGAN's own 64x64 layout) and the critic gets a fourth strided convolution.
  ``DCGANGenerator()`` and ``WGANCritic()`` are the 1x28x28 networks as before, and checkpoints
  saved without ``channels``/``size`` load as those.
- The critic has no BatchNorm (the gradient penalty is defined per sample, Gulrajani et al.
  section 4); it is four strided convolutions with LeakyReLU.
- After training, the generator's BatchNorm running statistics are re-estimated on fresh
  latents, so ``G.eval()`` (how CDeepEx uses it) produces the same kind of images as training
  mode did.

Shapes (docs/CONTRACTS.md): ``G: (N, z_dim) -> (N, C, S, S)`` in [0, 1]; critic:
``(N, C, S, S) -> (N,)`` scores (``(N, 1, 28, 28)`` by default).

Example::

    >>> G = DCGANGenerator(z_dim=100, width=8).eval()
    >>> G(torch.zeros(2, 100)).shape
    torch.Size([2, 1, 28, 28])
    >>> DCGANGenerator(z_dim=100, width=8, channels=3, size=64).eval()(torch.zeros(2, 100)).shape
    torch.Size([2, 3, 64, 64])
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import nn

from explainers.hooks import Progress, as_images, model_device, model_guard
from explainers.nets.vae import check_image_shape

logger = logging.getLogger(__name__)

IMAGE_SIZE = 28
#: Square image sizes the generator and critic take.
WGAN_SIZES = (28, 32, 64)


class DCGANGenerator(nn.Module):
    """DCGAN generator, latent ``(N, z_dim)`` -> images ``(N, C, S, S)`` in [0, 1].

    ConvTranspose z->8w 1->4, 8w->4w 4->8, 4w->2w 8->16, 2w->w 16->32 (each BatchNorm/ReLU),
    then the fifth ConvTranspose to C channels with Tanh: 3x3 stride 1 (32 -> 32, centre-cropped
    to 28 for ``size=28``) or 4x4 stride 2 (32 -> 64 for ``size=64``).
    """

    def __init__(self, z_dim: int = 100, width: int = 32, channels: int = 1, size: int = IMAGE_SIZE) -> None:
        super().__init__()
        if z_dim < 1 or width < 1:
            raise ValueError("z_dim and width must be positive")
        check_image_shape(channels, size, WGAN_SIZES, what="WGAN")
        self.z_dim = z_dim
        self.channels, self.size = channels, size
        w = width
        # (modules are created in the order of the 28 px network: same seed, same initial weights)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(z_dim, 8 * w, 4, bias=False),  # 1 -> 4
            nn.BatchNorm2d(8 * w),
            nn.ReLU(),
            nn.ConvTranspose2d(8 * w, 4 * w, 4, stride=2, padding=1, bias=False),  # 4 -> 8
            nn.BatchNorm2d(4 * w),
            nn.ReLU(),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, stride=2, padding=1, bias=False),  # 8 -> 16
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False),  # 16 -> 32
            nn.BatchNorm2d(w),
            nn.ReLU(),
            (
                nn.ConvTranspose2d(w, channels, 4, stride=2, padding=1)  # 32 -> 64
                if size == 64
                else nn.ConvTranspose2d(w, channels, 3, padding=1)  # 32 -> 32
            ),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(
                f"DCGANGenerator expects (N, {self.z_dim}) latents, got {tuple(z.shape)}"
            )
        out = self.net(z[:, :, None, None])
        border = (out.shape[-1] - self.size) // 2
        out = out[:, :, border : border + self.size, border : border + self.size]
        return (out + 1) / 2


class WGANCritic(nn.Module):
    """Wasserstein critic, images ``(N, C, S, S)`` -> unbounded scores ``(N,)``.

    At 28: Conv(C->w, 4, s2) 28->14, Conv(w->2w, 4, s2) 14->7, Conv(2w->4w, 3, s2) 7->4 with
    LeakyReLU(0.2), then Conv(4w->1, 4) 4->1. At 32 the same (32->16->8->4->1); at 64 a first
    Conv(C->w, 4, s2) 64->32 comes before, the others one step wider (w->2w->4w->8w).
    """

    def __init__(self, width: int = 32, channels: int = 1, size: int = IMAGE_SIZE) -> None:
        super().__init__()
        if width < 1:
            raise ValueError("width must be positive")
        check_image_shape(channels, size, WGAN_SIZES, what="WGAN critic")
        self.channels, self.size = channels, size
        w = width
        first: list[nn.Module] = []
        if size == 64:
            first = [nn.Conv2d(channels, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels, w = w, 2 * w
        self.net = nn.Sequential(
            *first,
            nn.Conv2d(channels, w, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(4 * w, 1, 4),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (self.channels, self.size, self.size)
        if x.ndim != 4 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"WGANCritic expects (N, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
        return self.net(x).flatten()


def gradient_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor
) -> torch.Tensor:
    """Gulrajani et al. (2017), eq. 3: mean over the batch of (||grad_x critic(x_hat)||_2 - 1)^2
    at ``x_hat = eps * real + (1 - eps) * fake``, ``eps`` of shape ``(N, 1, 1, 1)``."""
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


@torch.no_grad()
def recalibrate_batchnorm(
    G: nn.Module,
    *,
    z_dim: int,
    batches: int = 10,
    batch_size: int = 128,
    generator: torch.Generator | None = None,
) -> None:
    """Re-estimate every BatchNorm's running mean/var of ``G`` as the average over ``batches``
    batches of fresh latents ``z ~ N(0, I)`` (momentum ``None`` = cumulative average)."""
    norms = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    device = model_device(G)
    momenta = [m.momentum for m in norms]
    with model_guard(G, training=True, freeze=False):
        try:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None
            for _ in range(batches):
                G(torch.randn(batch_size, z_dim, generator=generator).to(device))
        finally:
            for m, momentum in zip(norms, momenta, strict=True):
                m.momentum = momentum


def train_wgan(
    G: DCGANGenerator,
    critic: nn.Module,
    x: torch.Tensor | np.ndarray,
    *,
    iterations: int | None = None,
    epochs: int | None = None,
    batch_size: int = 64,
    n_critic: int = 5,
    method: str = "gp",
    lr: float | None = None,
    gp_weight: float = 10.0,
    clip: float = 0.01,
    seed: int = 0,
    progress: Progress | None = None,
) -> DCGANGenerator:
    """Train ``G`` and ``critic`` in place as a WGAN; return ``G``.

    Give either ``iterations`` (generator updates) or ``epochs`` (passes of the critic over
    ``x``: one epoch is ``len(x) / (batch_size * n_critic)`` generator updates).

    Each iteration: ``n_critic`` critic updates minimising ``critic(fake) - critic(real)``
    (+ ``gp_weight`` * gradient penalty for ``method="gp"``; weights clamped to
    ``[-clip, clip]`` for ``method="clip"``), then one generator update minimising
    ``-critic(G(z))``. The generator's BatchNorm statistics are recalibrated at the end
    (:func:`recalibrate_batchnorm`).

    Deterministic for given initial weights, data and ``seed`` (own ``torch.Generator`` for
    data order, latents and interpolation weights; caller's RNG untouched). Modes of ``G`` and
    ``critic`` are restored afterwards.

    Args:
        x: float images ``(N, C, S, S)`` in [0, 1] matching ``G`` and ``critic`` (or uint8
            ``(N, S, S)`` / ``(N, S, S, 3)`` numpy).
        lr: default 1e-4 (gp, Adam betas (0.5, 0.9)) or 5e-5 (clip, RMSprop).
        progress: called after every generator update with ``{"stage": "train_wgan", "step",
            "total", "critic_loss", "generator_loss", "wasserstein"}`` where ``wasserstein`` is
            the critic's estimate ``mean critic(real) - mean critic(fake)`` on the last batch.

    Example::

        >>> G = train_wgan(DCGANGenerator(), WGANCritic(), x_train, iterations=500)  # doctest: +SKIP
    """
    if (iterations is None) == (epochs is None):
        raise ValueError("give exactly one of iterations or epochs")
    if method not in ("gp", "clip"):
        raise ValueError(f"method must be 'gp' or 'clip', got {method!r}")
    images = as_images(x)
    n = images.shape[0]
    if epochs is not None:
        iterations = max(1, round(epochs * n / (batch_size * n_critic)))
    if iterations is None or iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    device = model_device(G)
    opt_c: torch.optim.Optimizer
    opt_g: torch.optim.Optimizer
    if method == "gp":
        lr = 1e-4 if lr is None else lr
        opt_c = torch.optim.Adam(critic.parameters(), lr=lr, betas=(0.5, 0.9))
        opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.9))
    else:
        lr = 5e-5 if lr is None else lr
        opt_c = torch.optim.RMSprop(critic.parameters(), lr=lr)
        opt_g = torch.optim.RMSprop(G.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    cursor = 0

    def next_real() -> torch.Tensor:
        nonlocal order, cursor
        if cursor + batch_size > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        idx = order[cursor : cursor + batch_size]
        cursor += batch_size
        return images[idx].to(device)

    def latents(count: int) -> torch.Tensor:
        return torch.randn(count, G.z_dim, generator=generator).to(device)

    started = time.perf_counter()
    with (
        torch.random.fork_rng(devices=[]),
        model_guard(G, critic, training=True, freeze=False),
    ):
        torch.manual_seed(seed)
        for step in range(1, iterations + 1):
            for _ in range(n_critic):
                real = next_real()
                with torch.no_grad():
                    fake = G(latents(real.shape[0]))
                wasserstein = critic(real).mean() - critic(fake).mean()
                loss_c = -wasserstein
                if method == "gp":
                    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(device)
                    loss_c = loss_c + gp_weight * gradient_penalty(critic, real, fake, eps)
                opt_c.zero_grad(set_to_none=True)
                loss_c.backward()
                opt_c.step()
                if method == "clip":
                    with torch.no_grad():
                        for p in critic.parameters():
                            p.clamp_(-clip, clip)
            with model_guard(critic, training=True):  # no critic gradients in the generator step
                loss_g = -critic(G(latents(batch_size))).mean()
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
            if progress is not None:
                progress(
                    {
                        "stage": "train_wgan",
                        "step": step,
                        "total": iterations,
                        "critic_loss": float(loss_c.detach()),
                        "generator_loss": float(loss_g.detach()),
                        "wasserstein": float(wasserstein.detach()),
                    }
                )
            if step % 100 == 0 or step == iterations:
                logger.info(
                    "train_wgan %d/%d: W estimate %.4f (%.1f s)",
                    step,
                    iterations,
                    float(wasserstein.detach()),
                    time.perf_counter() - started,
                )
    recalibrate_batchnorm(G, z_dim=G.z_dim, generator=generator)
    return G
