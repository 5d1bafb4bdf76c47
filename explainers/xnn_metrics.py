"""Quantitative metrics of an explanation network (XNN paper, section 4.2).

* Faithfulness: ``F_reg = mean |ŷ - ȳ|`` (``ȳ = vᵀE`` the XNN's approximation of the logits ``ŷ``)
  and ``F_cls`` = share of images whose predicted class is unchanged when ``ŷ`` is replaced by
  ``ȳ`` before the softmax.
* Orthogonality: ``P`` = the correlation matrix of the x-features' heatmaps (each x-feature's maps
  flattened and concatenated over all images), ``O1 = ||P||_F - √n``, ``O2 = -log det P``; both
  are 0 for uncorrelated heatmaps.
* Locality: the entropy ``H_n`` of each x-feature's heatmap mass over annotated parts, roughly the
  log of the number of parts an x-feature covers (lower = more local).

Choices (the paper is per-category one-vs-all; the study's XNN is multi-class):

* ``F_reg`` averages over images *and* classes; ``F_cls`` replaces the columns ``columns`` of the
  logits (default all) by the approximation. For a one-vs-all XNN of class ``c`` pass
  ``columns=[c]`` and ``approx`` of shape ``(N, 1)``.
* A heatmap with zero variance over the whole set (a dead x-feature) has no correlation; it is
  left out of ``P`` (``O1``/``O2`` use the remaining ``n'`` features and ``√n'``) and reported in
  ``Orthogonality.dead``. A singular ``P`` (an eigenvalue <= 1e-10) gives ``O2 = inf``.
* Locality follows Algorithm 1 of the appendix: every pixel belongs to the Voronoi cell of its
  nearest *visible* part; its weight for that part is ``1 - d̄`` with ``d̄`` the distance to the
  part normalised to [0, 1] (by the largest distance in the cell, the paper's choice, or by
  ``radius``, so pixels farther than ``radius`` from every part give nothing); with ``boxes``,
  the mass outside the bounding box goes to a 16th "context" part instead. Per image and
  x-feature the heatmap is first normalised to sum 1 (``P(pixel | neuron)``), the part masses
  ``S_p`` are averaged over images, normalised, and ``H_n = -Σ_p s_p log s_p`` (natural log).
  Coordinates are in heatmap pixels, ``x`` = column, ``y`` = row.
* ``region_locality`` is the Places variant (the paper's Table 2): objects come as regions, and
  ``S_p`` is the heatmap mass inside object ``p``'s region (no Voronoi cells, no context part).

Example::

    >>> f_reg(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.5, 2.0]]))
    0.25
    >>> orthogonality(torch.rand(10, 3, 8, 8)).o1 < 0.1                 # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Locality", "Orthogonality", "f_cls", "f_reg", "locality", "orthogonality", "region_locality"]


def _pair(logits: Tensor, approx: Tensor) -> tuple[Tensor, Tensor]:
    logits, approx = torch.as_tensor(logits).double(), torch.as_tensor(approx).double()
    if logits.dim() != 2 or approx.dim() != 2 or logits.shape[0] != approx.shape[0] or logits.shape[0] == 0:
        raise ValueError(f"need logits (N, C) and approx (N, C'), N >= 1; got {tuple(logits.shape)}, {tuple(approx.shape)}")
    return logits, approx


def f_reg(logits: Tensor, approx: Tensor) -> float:
    """Mean absolute difference between the logits ``ŷ (N, C)`` and the approximation ``ȳ (N, C)``."""
    logits, approx = _pair(logits, approx)
    if logits.shape != approx.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and approx {tuple(approx.shape)} differ in shape")
    return float((logits - approx).abs().mean())


def f_cls(logits: Tensor, approx: Tensor, columns: Sequence[int] | None = None) -> float:
    """Share of images whose argmax is unchanged when columns ``columns`` of ``logits`` (default
    all) are replaced by ``approx (N, len(columns))``."""
    logits, approx = _pair(logits, approx)
    cols = list(range(logits.shape[1])) if columns is None else [int(c) for c in columns]
    if approx.shape[1] != len(cols):
        raise ValueError(f"approx has {approx.shape[1]} columns for {len(cols)} replaced logits")
    replaced = logits.clone()
    replaced[:, cols] = approx
    return float((replaced.argmax(1) == logits.argmax(1)).double().mean())


@dataclass(frozen=True)
class Orthogonality:
    """``o1``, ``o2`` over the live features; ``correlation`` ``(n, n)`` (NaN rows/columns for dead
    features); ``dead`` indices of zero-variance features."""

    o1: float
    o2: float
    correlation: Tensor
    dead: tuple[int, ...]


def orthogonality(maps: Tensor) -> Orthogonality:
    """``O1``, ``O2`` of heatmaps ``maps (N, n, H, W)`` (or ``(N, n, D)``)."""
    maps = torch.as_tensor(maps).double()
    if maps.dim() < 3 or maps.shape[0] == 0 or maps.shape[1] < 1:
        raise ValueError(f"maps must be (N, n, H, W) with N, n >= 1, got {tuple(maps.shape)}")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps contain NaN or infinite values")
    n = maps.shape[1]
    x = maps.transpose(0, 1).reshape(n, -1)
    x = x - x.mean(1, keepdim=True)
    cov = x @ x.T / max(x.shape[1] - 1, 1)
    var = cov.diagonal()
    live = var > 1e-24 * max(float(var.max()), 1e-300)
    dead = tuple(int(i) for i in torch.nonzero(~live).flatten())
    std = var.clamp(min=0).sqrt()
    corr = torch.full((n, n), float("nan"), dtype=torch.float64)
    idx = torch.nonzero(live).flatten()
    if idx.numel() == 0:
        return Orthogonality(float("nan"), float("nan"), corr, dead)
    sub = cov[idx][:, idx] / (std[idx][:, None] * std[idx][None, :])
    sub = sub.clamp(-1, 1)
    sub.fill_diagonal_(1.0)
    corr[idx[:, None], idx[None, :]] = sub
    o1 = float(torch.linalg.matrix_norm(sub)) - math.sqrt(idx.numel())
    eig = torch.linalg.eigvalsh(sub)
    o2 = float(-eig.log().sum()) if float(eig.min()) > 1e-10 else float("inf")
    return Orthogonality(o1=o1, o2=o2, correlation=corr.float(), dead=dead)


@dataclass(frozen=True)
class Locality:
    """``entropy (n,)`` per x-feature ``H_n``; ``mean`` over x-features with any mass;
    ``histogram (n, P + 1)`` the averaged part masses ``S̄_p^n`` (last column: context)."""

    entropy: Tensor
    mean: float
    histogram: Tensor


def locality(
    maps: Tensor,
    parts: Tensor,
    visible: Tensor | None = None,
    *,
    boxes: Tensor | None = None,
    radius: float | None = None,
) -> Locality:
    """Locality of heatmaps ``maps (N, n, H, W)`` given part centres ``parts (N, P, 2)`` as
    ``(x, y)`` in heatmap pixels, ``visible (N, P)`` bool (default all), optional ``boxes (N, 4)``
    ``(x, y, width, height)`` and ``radius`` in pixels (see the module docstring)."""
    maps = torch.as_tensor(maps).double()
    parts = torch.as_tensor(parts).double()
    if maps.dim() != 4 or parts.dim() != 3 or parts.shape[-1] != 2 or parts.shape[0] != maps.shape[0]:
        raise ValueError(f"need maps (N, n, H, W) and parts (N, P, 2); got {tuple(maps.shape)}, {tuple(parts.shape)}")
    if bool((maps < 0).any()) or not bool(torch.isfinite(maps).all()):
        raise ValueError("maps must be finite and non-negative")
    if radius is not None and radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    n_img, n_feat, height, width = maps.shape
    n_parts = parts.shape[1]
    vis = torch.ones(n_img, n_parts, dtype=torch.bool) if visible is None else torch.as_tensor(visible).bool()
    if vis.shape != (n_img, n_parts):
        raise ValueError(f"visible must have shape ({n_img}, {n_parts}), got {tuple(vis.shape)}")
    if boxes is not None:
        boxes = torch.as_tensor(boxes).double()
        if boxes.shape != (n_img, 4):
            raise ValueError(f"boxes must have shape ({n_img}, 4), got {tuple(boxes.shape)}")
    rows = torch.arange(height, dtype=torch.float64)[:, None].expand(height, width)
    cols = torch.arange(width, dtype=torch.float64)[None, :].expand(height, width)
    hist = torch.zeros(n_feat, n_parts + 1, dtype=torch.float64)
    for m in range(n_img):
        total = maps[m].flatten(1).sum(1)
        s = torch.where(total[:, None, None] > 0, maps[m] / total.clamp(min=1e-300)[:, None, None], torch.zeros_like(maps[m]))
        inside = torch.ones(height, width, dtype=torch.bool)
        if boxes is not None:
            bx, by, bw, bh = boxes[m].tolist()
            inside = (cols >= bx) & (cols <= bx + bw) & (rows >= by) & (rows <= by + bh)
            hist[:, n_parts] += s[:, ~inside].sum(1)
        ids = torch.nonzero(vis[m]).flatten()
        if ids.numel() == 0:
            continue
        xy = parts[m, ids]  # (P', 2)
        dist = torch.sqrt((cols[None] - xy[:, 0, None, None]) ** 2 + (rows[None] - xy[:, 1, None, None]) ** 2)
        nearest_d, nearest = dist.min(0)  # (H, W)
        if radius is not None:
            dbar = (nearest_d / radius).clamp(max=1.0)
        else:
            dbar = torch.zeros_like(nearest_d)
            for k in range(ids.numel()):
                cell = (nearest == k) & inside
                if bool(cell.any()):
                    far = nearest_d[cell].max()
                    dbar[cell] = nearest_d[cell] / far if far > 0 else 0.0
        weight = torch.where(inside, 1.0 - dbar, torch.zeros_like(dbar))
        for k, p in enumerate(ids.tolist()):
            cell = nearest == k
            hist[:, p] += (s[:, cell] * weight[cell]).sum(1)
    hist /= n_img
    sums = hist.sum(1, keepdim=True)
    prob = torch.where(sums > 0, hist / sums.clamp(min=1e-300), torch.zeros_like(hist))
    logs = torch.where(prob > 0, prob.log(), torch.zeros_like(prob))
    entropy = -(prob * logs).sum(1)
    has_mass = sums[:, 0] > 0
    mean = float(entropy[has_mass].mean()) if bool(has_mass.any()) else float("nan")
    return Locality(entropy=entropy.float(), mean=mean, histogram=hist.float())


def _entropy_of(hist: Tensor) -> Locality:
    sums = hist.sum(1, keepdim=True)
    prob = torch.where(sums > 0, hist / sums.clamp(min=1e-300), torch.zeros_like(hist))
    logs = torch.where(prob > 0, prob.log(), torch.zeros_like(prob))
    entropy = -(prob * logs).sum(1)
    has_mass = sums[:, 0] > 0
    mean = float(entropy[has_mass].mean()) if bool(has_mass.any()) else float("nan")
    return Locality(entropy=entropy.float(), mean=mean, histogram=hist.float())


def region_locality(maps: Tensor, regions: Tensor) -> Locality:
    """Locality over object regions (the XNN paper's Places metric): ``maps (N, n, H, W)``,
    ``regions (N, P, H, W)`` bool, region ``p`` of image ``m`` the pixels of object ``p`` (empty
    when absent). Per image and x-feature the map is normalised to sum 1, ``S_p`` is its mass in
    region ``p``; the ``S_p`` are averaged over images, normalised and ``H_n = -Σ_p s_p log s_p``.
    ``histogram`` is ``(n, P)``; a pixel in two regions counts for both.

    >>> m = torch.zeros(1, 1, 2, 2); m[0, 0, 0] = 1.0           # mass on the top row
    >>> r = torch.zeros(1, 2, 2, 2, dtype=torch.bool); r[0, 0, 0] = True; r[0, 1, 1] = True
    >>> region_locality(m, r).mean
    0.0
    """
    maps = torch.as_tensor(maps).double()
    regions = torch.as_tensor(regions).bool()
    if maps.dim() != 4 or regions.dim() != 4 or regions.shape[0] != maps.shape[0] or regions.shape[2:] != maps.shape[2:]:
        raise ValueError(f"need maps (N, n, H, W) and regions (N, P, H, W); got {tuple(maps.shape)}, {tuple(regions.shape)}")
    if bool((maps < 0).any()) or not bool(torch.isfinite(maps).all()):
        raise ValueError("maps must be finite and non-negative")
    total = maps.flatten(2).sum(2)  # (N, n)
    s = torch.where(total[..., None, None] > 0, maps / total.clamp(min=1e-300)[..., None, None], torch.zeros_like(maps))
    hist = torch.einsum("mnhw,mphw->np", s, regions.double()) / maps.shape[0]
    return _entropy_of(hist)
