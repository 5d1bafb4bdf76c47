"""The baselines of the XNN paper's quantitative comparison (section 4.2, Tables 1-2): CAE and Lasso.

Paper: Z. Qi, S. Khorram, L. Fuxin, "Embedding Deep Networks into Visual Explanations", section
4.2: "a classic autoencoder with only traditional reconstruction loss and without faithfulness
loss (CAE), a feature selection model (Lasso) on Z". The other baselines, NN and SAE, are
``explainers.xnn.fit_xnn`` with ``mode="nn"`` / ``mode="sae"`` (and ``eta=0``).

* :func:`fit_cae` trains the XNN's encoder and decoder (the same 800-100-n architecture,
  :class:`explainers.xnn.XNN`) on the plain reconstruction loss ``1/S_z Σ_k Q_k`` alone; the
  x-features never see the logits. The readout ``v`` is then the least-squares fit of the logits
  on ``E`` (no bias, like the XNN's), so that faithfulness can be measured at all. The paper
  does not say how its CAE predicts; a least-squares readout is the most favourable choice.
* :func:`fit_lasso` selects ``n`` units of ``Z`` by the multi-task Lasso (the group Lasso over
  the classes: a unit is kept for all logits or for none), objective
  ``1/(2M) ||Y - b - Z W||²_F + α Σ_j ||W_j||_2``, solved by FISTA on centred data with the
  intercept ``b`` refitted; ``α`` is the smallest value on a log-bisection that keeps at most
  ``n`` units (the paper tunes ``α``, its appendix Table .4 shows 8 units at ``α = 2.5``). The
  approximation ``ȳ = b + Z_S W_S`` uses the shrunken Lasso weights, as a Lasso predicts.
  The result is a :class:`LinearReadout`: its encoder is a one-hot ``nn.Linear`` that picks the
  selected units, so :meth:`explainers.excitation_bp.ExcitationBP.xnn_maps` gives each selected
  unit's heatmap exactly as it gives an x-feature's.
* :func:`unit_readout` is the same one-hot readout over every unit of ``Z`` (Table 1's column
  ``Z``: the locality of each dimension of ``Z``).

Shapes: ``Z`` ``(M, S_z)``, logits ``(M, C)``. Everything runs on CPU and is deterministic for a
given ``config.seed``.

Example::

    >>> cae = fit_cae(z, logits, config=XNNConfig(n_features=5, epochs=500), layer="relu3")  # doctest: +SKIP
    >>> lasso = fit_lasso(z, logits, n_features=5, layer="relu3")                             # doctest: +SKIP
    >>> lasso(z).shape, lasso.selected                                                        # doctest: +SKIP
    (torch.Size([200, 4]), (3, 11, 17, 30, 42))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from explainers.hooks import ExplainerInputError
from explainers.xnn import XNN, XNNConfig, reconstruction_loss

__all__ = ["LinearReadout", "fit_cae", "fit_lasso", "lasso_path_point", "unit_readout"]


def _check(z: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
    z = torch.as_tensor(z).detach().flatten(1).float().cpu()
    logits = torch.as_tensor(logits).detach().float().cpu()
    if logits.dim() != 2 or z.shape[0] != logits.shape[0] or z.shape[0] < 2:
        raise ExplainerInputError(f"need Z (M, S_z) and logits (M, C) with M >= 2, got {tuple(z.shape)}, {tuple(logits.shape)}")
    if not (torch.isfinite(z).all() and torch.isfinite(logits).all()):
        raise ExplainerInputError("Z or logits contain NaN or infinite values")
    return z, logits


def fit_cae(
    z: Tensor,
    logits: Tensor,
    *,
    config: XNNConfig = XNNConfig(),  # noqa: B008 (frozen dataclass)
    layer: str | None = None,
) -> XNN:
    """CAE: the XNN architecture trained on reconstruction alone, then a least-squares readout.

    Uses ``config``'s ``n_features``, ``epochs``, ``lr``, ``seed``, ``hidden``,
    ``x_activation`` and ``batch_size`` (``beta``, ``q``, ``eta`` and ``mode`` do not apply).
    Returns the XNN in eval mode on CPU; ``xnn(z)`` is the readout ``vᵀE``.
    """
    z, logits = _check(z, logits)
    m = z.shape[0]
    bs = m if config.batch_size is None else max(2, min(int(config.batch_size), m))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        xnn = XNN(z.shape[1], logits.shape[1], config.n_features, config.hidden, config.x_activation, layer)
        generator = torch.Generator().manual_seed(config.seed)
        params = list(xnn.encoder.parameters()) + list(xnn.decoder.parameters())
        optimiser = torch.optim.Adam(params, lr=config.lr)
        xnn.train()
        for epoch in range(config.epochs):
            order = torch.randperm(m, generator=generator) if bs < m else torch.arange(m)
            for start in range(0, m, bs):
                idx = order[start : start + bs]
                batch = z[idx]
                loss = reconstruction_loss(xnn.decoder(xnn.encoder(batch)), batch, q=1.0, mode="sae")
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError(f"CAE loss became {float(loss.detach())} at epoch {epoch}; lower lr")
    xnn.eval()
    with torch.no_grad():
        e = xnn.embed(z).double()
        v = torch.linalg.lstsq(e, logits.double(), driver="gelsd").solution  # (n, C)
        xnn.v.weight.copy_(v.T.float())
    return xnn


class LinearReadout(nn.Module):
    """Logits approximated linearly from a few units of ``Z``: ``ȳ = b + Z_S W``.

    ``encoder`` ends in one ``nn.Linear(S_z, n)`` with one-hot rows (unit ``selected[i]`` -> feature
    ``i``), so ExcitationBP's ``xnn_maps`` takes each selected unit's heatmap; ``v`` holds ``W``;
    ``bias`` the intercept ``b``; ``layer`` names ``Z`` in the classifier. ``forward(z)`` is ``ȳ``.
    """

    def __init__(self, z_dim: int, selected: Sequence[int], weight: Tensor, bias: Tensor, layer: str | None) -> None:
        super().__init__()
        self.selected = tuple(int(j) for j in selected)
        n = len(self.selected)
        if n == 0:
            raise ValueError("a readout needs at least one unit")
        # The Identity keeps the layers below the x-layer a (trivial) chain ExcitationBP accepts.
        self.encoder = nn.Sequential(nn.Identity(), nn.Linear(z_dim, n, bias=True))
        self.v = nn.Linear(n, weight.shape[0], bias=False)
        linear = cast(nn.Linear, self.encoder[1])  # built just above
        with torch.no_grad():
            linear.weight.zero_()
            linear.bias.zero_()
            for i, j in enumerate(self.selected):
                linear.weight[i, j] = 1.0
            self.v.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32).reshape(-1))
        self.layer = layer
        self.n_features = n
        for p in self.parameters():
            p.requires_grad_(False)

    def embed(self, z: Tensor) -> Tensor:
        return self.encoder(z.flatten(1))

    def forward(self, z: Tensor) -> Tensor:
        return self.v(self.embed(z)) + self.bias


def unit_readout(z_dim: int, num_classes: int, layer: str | None) -> LinearReadout:
    """Every unit of ``Z`` as its own feature (readout weights zero): for per-unit heatmaps."""
    return LinearReadout(z_dim, range(z_dim), torch.zeros(num_classes, z_dim), torch.zeros(num_classes), layer)


def lasso_path_point(z: Tensor, logits: Tensor, alpha: float, *, iterations: int = 2000, tol: float = 1e-7) -> tuple[Tensor, Tensor]:
    """The multi-task Lasso at ``alpha``: ``(W (S_z, C), b (C,))`` by FISTA on centred data.

    Minimises ``1/(2M) ||Y - b - Z W||²_F + α Σ_j ||W_j||_2`` (``W_j`` the row of unit ``j``).
    """
    z, logits = _check(z, logits)
    zd, yd = z.double(), logits.double()
    z_mean, y_mean = zd.mean(0), yd.mean(0)
    x, y = zd - z_mean, yd - y_mean
    m = x.shape[0]
    lipschitz = float(torch.linalg.matrix_norm(x, ord=2)) ** 2 / m
    if lipschitz == 0:
        w = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64)
        return w, y_mean
    step = 1.0 / lipschitz
    w = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64)
    momentum, t = w.clone(), 1.0
    xtx, xty = x.T @ x / m, x.T @ y / m
    for _ in range(iterations):
        grad = xtx @ momentum - xty
        u = momentum - step * grad
        norms = u.norm(dim=1, keepdim=True)
        shrink = (1 - step * alpha / norms.clamp(min=1e-300)).clamp(min=0)
        w_next = u * shrink
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        momentum = w_next + (t - 1) / t_next * (w_next - w)
        done = float((w_next - w).abs().max()) <= tol * max(1.0, float(w_next.abs().max()))
        w, t = w_next, t_next
        if done:
            break
    return w, y_mean - z_mean @ w


def fit_lasso(
    z: Tensor,
    logits: Tensor,
    *,
    n_features: int = 5,
    alpha: float | None = None,
    layer: str | None = None,
    iterations: int = 2000,
) -> LinearReadout:
    """Lasso feature selection on ``Z``: at most ``n_features`` units (``alpha`` None: the
    smallest ``α`` on a 40-step log-bisection that keeps at most that many), or the units the
    given ``alpha`` keeps. The readout's ``alpha`` attribute records the ``α`` used."""
    z, logits = _check(z, logits)
    if n_features < 1:
        raise ValueError(f"n_features must be at least 1, got {n_features}")

    def kept(a: float) -> tuple[Tensor, Tensor, list[int]]:
        w, b = lasso_path_point(z, logits, a, iterations=iterations)
        return w, b, torch.nonzero(w.norm(dim=1) > 1e-10).flatten().tolist()

    if alpha is None:
        x = z.double() - z.double().mean(0)
        y = logits.double() - logits.double().mean(0)
        alpha_max = float((x.T @ y / x.shape[0]).norm(dim=1).max())  # every unit is zero above it
        lo, hi = math.log(alpha_max * 1e-6 + 1e-300), math.log(alpha_max + 1e-300)
        best = None
        for _ in range(40):
            mid = (lo + hi) / 2
            w, b, sel = kept(math.exp(mid))
            if len(sel) <= n_features:
                best, hi = (math.exp(mid), w, b, sel), mid
            else:
                lo = mid
        if best is None or not best[3]:
            best = (math.exp(hi), *kept(math.exp(hi)))
        alpha, w, b, sel = best
    else:
        w, b, sel = kept(alpha)
    if not sel:
        raise ExplainerInputError(f"the Lasso at alpha = {alpha:g} keeps no unit of Z")
    readout = LinearReadout(z.shape[1], sel, w[sel].T.float(), b.float(), layer)
    readout.alpha = float(alpha)  # type: ignore[assignment]  # a plain attribute, not a parameter
    return readout.eval()
