"""APEM, the Adversarial Perturbation Explanation Metric, and its Explanation Filter.

Source: the APEM thesis (``002_f83ceda1146e55fa.txt``), chapter 3 (the metric and Algorithm 2),
chapter 4 (the relevance methods and their visualisation) and §5.2 (shuffled maps).

The metric. A relevance map ``R`` in [0, 1] (one value per pixel, 1 = important) is turned into a
*directed* perturbation with the sign of the gradient of the loss at the model's prediction
``y = argmax D(x)``::

    R_dir   = R / ||R||_1  ⊙  sign(∇_x J(θ, x, y))          J = cross-entropy
    x'(ε)   = x + ε · R_dir                                   ε = step, 2·step, ..., ceiling
    ε⁻      = the smallest ε with argmax D(x'(ε)) != y
    ε⁺      = the same for the irrelevance map R⁻ = 1 - R (normalised and directed the same way)
    APEM    = mean over images of (ε⁺ - ε⁻)                   higher = a more reliable map

Normalised APEM (§5.2). Each map is shuffled ``shuffles`` times (the thesis: 10); the first ε at
which *any* shuffled map flips the prediction is ε-shuffle⁻ (ε-shuffle⁺ for ``1 - shuffled R``)::

    APEM_norm = mean over images of (ε⁺ / ε-shuffle⁺  -  ε⁻ / ε-shuffle⁻)

Explanation Filter (Algorithm 2). Repeatedly zero the pixels that hold the smallest positive
relevance and recompute the image's APEM (ε⁺ - ε⁻); stop when it drops below the best so far and
return the last map before the drop.

Relevance methods (thesis §4.2). :func:`gradient` (∂ logit_y / ∂x, Captum's ``Saliency``),
:func:`smoothgrad` (n = 100, σ = 0.2; Captum's ``NoiseTunnel``) and :func:`lrp` (ε-rule with
ε = 1; Captum's ``LRP``) give raw relevances; :func:`visualise` turns them into the thesis's maps
(``|R|`` clipped at its 99th percentile, times the pixels, summed over channels, divided by its
maximum). Any other heatmap method can be scored: maps ``(N, H, W)`` in [0, 1], or a callable
``(images, predicted) -> maps`` such as ``DeepLift(net)`` or ``GradCAM(net, net.features_layer)``.

Choices where the thesis is silent (all configurable; the reasons: docs/DECISIONS.md, "APEM"):

* the ε grid: unit steps (``step=1``) up to ``ceiling=1000``; an image whose prediction never
  changes gets ε = ``ceiling`` and its ``*_at_ceiling`` flag (its APEM is then a bound);
* the perturbed image is not clipped (``clamp=(0, 1)`` clips it);
* a map ``(N, H, W)`` is broadcast over the channels, then L1-normalised; an all-zero map gives
  no perturbation (ε at the ceiling);
* the label is the model's prediction;
* SmoothGrad's σ is relative to each image's range, its noise from a seeded CPU generator;
* :func:`visualise` divides by the maximum (not min-max);
* the Explanation Filter stops when no positive relevance would be left; ``levels`` rounds the
  map to that many grey levels first.

``search="scan"`` walks the ε grid in order (the thesis's procedure); ``search="bisect"``
(galloping, then bisection) needs about 20 forward passes per image and map, and returns the
same ε whenever a changed prediction stays changed for larger ε. ``chunk_size`` bounds memory
only; the result does not depend on it.

Shapes: images ``(N, C, H, W)``; maps ``(N, H, W)`` or ``(N, 1|C, H, W)``; results ``(N,)``.

Example::

    >>> scorer = APEM(net)                                             # doctest: +SKIP
    >>> pred = net(x).argmax(1)                                        # doctest: +SKIP
    >>> maps = visualise(gradient(net, x, pred), pixels=x)             # doctest: +SKIP
    >>> res = scorer(x, maps)                                          # doctest: +SKIP
    >>> res.mean(), res.median(), res.eps_minus, res.eps_plus          # doctest: +SKIP
    >>> shuffled = scorer.shuffled(x, maps, shuffles=10)               # doctest: +SKIP
    >>> apem_norm(res, shuffled).mean()                                # doctest: +SKIP
    >>> scorer.filter(x, maps).maps                                    # Algorithm 2
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from explainers.hooks import (
    ExplainerInputError,
    check_images,
    check_labels,
    model_device,
    model_guard,
)

__all__ = [
    "APEM",
    "APEMResult",
    "FilterResult",
    "Relevance",
    "apem_norm",
    "directed",
    "first_flip",
    "gradient",
    "loss_gradient_sign",
    "lrp",
    "relevance_map",
    "smoothgrad",
    "visualise",
]

logger = logging.getLogger(__name__)

Progress = Callable[[dict], None]
#: A heatmap method as APEM takes it: ``(images (N, C, H, W), predicted (N,)) -> maps`` in [0, 1].
Relevance = Callable[[Tensor, Tensor], Tensor]

_RANGE_TOL = 1e-4


# ----------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class APEMResult:
    """Per-image ε values, all ``(N,)`` on the images' device (ε as float32).

    Attributes:
        eps_minus: ε⁻, the smallest ε on the grid at which the relevance map flips the prediction.
        eps_plus: ε⁺, the same for the irrelevance map ``1 - R``.
        apem: ``eps_plus - eps_minus`` per image (the thesis's gap; :meth:`mean` is APEM).
        minus_at_ceiling, plus_at_ceiling: no ε up to the ceiling flipped the prediction; the ε
            is then recorded as the ceiling (so ``apem`` is a bound for that image).
        hit_ceiling: either flag.
        predicted: the model's predictions on the clean images (the ``y`` of the loss).
    """

    eps_minus: Tensor
    eps_plus: Tensor
    apem: Tensor
    minus_at_ceiling: Tensor
    plus_at_ceiling: Tensor
    hit_ceiling: Tensor
    predicted: Tensor

    def mean(self) -> float:
        """APEM: the mean of ``eps_plus - eps_minus``."""
        return float(self.apem.double().mean())

    def median(self) -> float:
        return float(np.median(self.apem.double().cpu().numpy()))


@dataclass(frozen=True)
class FilterResult:
    """Output of the Explanation Filter (Algorithm 2), per image.

    Attributes:
        maps: the filtered maps, ``(N, H, W)`` (``(N, C, H, W)`` for per-channel maps).
        apem: ``(N,)`` ε⁺ - ε⁻ of the filtered maps (never below that of the input map).
        initial_apem: ``(N,)`` ε⁺ - ε⁻ of the input maps.
        iterations: ``(N,)`` how many zeroing steps were kept.
        kept_fraction: ``(N,)`` share of the input's positive pixels still positive.
    """

    maps: Tensor
    apem: Tensor
    initial_apem: Tensor
    iterations: Tensor
    kept_fraction: Tensor


# ----------------------------------------------------------------------------------------------
# Relevance methods (raw relevances, (N, C, H, W), for the classes `labels`)


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def gradient(model: nn.Module, images: Tensor, labels: Tensor, *, chunk_size: int = 256) -> Tensor:
    """Raw gradient relevance ``∂ logit_label / ∂x`` (Simonyan et al. 2013) by Captum's
    ``Saliency`` (``abs=False``: the signed gradient), ``(N, C, H, W)``."""
    from captum.attr import Saliency

    check_images(images)
    labels = check_labels(labels, images.shape[0], name="labels")
    device = model_device(model)
    saliency = Saliency(model)
    parts = []
    with model_guard(model), torch.enable_grad():
        for s in _chunks(images.shape[0], chunk_size):
            x = images[s].detach().to(device)
            parts.append(saliency.attribute(x, target=labels[s].to(device).tolist(), abs=False).detach())
    return torch.cat(parts).to(images.device)


def smoothgrad(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    samples: int = 100,
    sigma: float = 0.2,
    seed: int = 0,
    chunk_size: int = 1024,
) -> Tensor:
    """SmoothGrad (Smilkov et al. 2017) by Captum's ``NoiseTunnel`` over ``Saliency``: the mean
    gradient over ``samples`` noisy copies ``x + N(0, (σ · (max x - min x))²)`` of each image
    (thesis: n = 100, σ = 0.2). Returns the raw mean gradient ``(N, C, H, W)``.

    Captum takes one σ per call, so each image is one call with its own σ (its ``samples`` copies
    in passes of at most ``chunk_size``). Captum draws the noise from torch's global generator on
    the input's device; the images stay on the CPU for it (the model runs on its own device), and
    the CPU generator is seeded with ``seed`` and restored afterwards (``fork_rng``). So image i
    gets the i-th draw of the seeded CPU stream, whatever the device and (for
    ``chunk_size >= samples``) the chunk size.
    """
    from captum.attr import NoiseTunnel, Saliency

    check_images(images)
    n = images.shape[0]
    labels = check_labels(labels, n, name="labels")
    if samples < 1:
        raise ExplainerInputError(f"samples must be at least 1, got {samples}")
    device = model_device(model)
    tunnel = NoiseTunnel(Saliency(lambda v: model(v.to(device))))
    x = images.detach().cpu()
    spread = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).clamp_min(1e-12) * sigma
    out = []
    with model_guard(model), torch.enable_grad(), torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU generator only (torch.manual_seed seeds CUDA too)
        for i in range(n):
            out.append(
                tunnel.attribute(
                    x[i : i + 1], nt_type="smoothgrad", nt_samples=samples,
                    nt_samples_batch_size=min(samples, chunk_size), stdevs=float(spread[i]),
                    target=int(labels[i]), abs=False,
                ).detach()
            )
    return torch.cat(out).to(images.device)


def lrp(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    epsilon: float = 1.0,
    chunk_size: int = 256,
) -> Tensor:
    """LRP with the ε-rule (thesis §4.2.2: ε = 1) on every layer, by Captum's ``LRP``.

    ``R_i = Σ_j z_ij / (Σ_i' z_i'j + ε · sign(Σ_i' z_i'j)) · R_j`` for ``Linear``, ``Conv2d``,
    pooling and ``BatchNorm2d`` layers; ReLU, Dropout and Tanh pass relevance on; ``Flatten``,
    ``Unflatten`` and ``Identity`` modules get an ε-rule with ε = 1e-9, which passes relevance on
    unchanged (Captum's ``IdentityRule`` cannot change a tensor's shape). Functional operations in
    ``forward`` (MnistNet's ``F.interpolate`` and ``torch.flatten``) pass relevance back like a
    gradient, so the 28x28 relevance is the 64x64 relevance of the resized input mapped back by the
    transpose of the resize. Captum refuses any other layer type (``TypeError``).

    Captum attaches ``rule`` and ``activations`` attributes to the layers; they are removed (and a
    ``rule`` the caller had set is put back) in ``finally``. Returns ``(N, C, H, W)``.
    """
    from captum.attr import LRP
    from captum.attr._utils.lrp_rules import EpsilonRule

    check_images(images)
    labels = check_labels(labels, images.shape[0], name="labels")
    device = model_device(model)
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    saved = [(m, dict(m.__dict__)) for m in leaves]
    parts = []
    try:
        with model_guard(model):
            for s in _chunks(images.shape[0], chunk_size):
                for m in leaves:  # captum deletes the rules after each call
                    if isinstance(m, (nn.Flatten, nn.Unflatten, nn.Identity)):
                        m.rule = EpsilonRule()  # ε = 1e-9: z / (z + ε) ≈ 1, relevance passes on
                    elif isinstance(m, (nn.Linear, nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.BatchNorm2d)):
                        m.rule = EpsilonRule(epsilon=epsilon)
                x = images[s].detach().to(device).clone().requires_grad_(True)
                with torch.enable_grad():
                    rel = LRP(model).attribute(x, target=labels[s].to(device).tolist())
                parts.append(rel.detach())
    finally:
        for m, before in saved:
            for key in [k for k in m.__dict__ if k not in before]:
                delattr(m, key)
            for key in ("rule", "activations"):
                if key in before:
                    m.__dict__[key] = before[key]
    return torch.cat(parts).to(images.device)


def visualise(raw: Tensor, *, pixels: Tensor | None = None, percentile: float = 99.0) -> Tensor:
    """The thesis's visualisation (§4.2) of raw relevances ``(N, C, H, W)`` -> maps ``(N, H, W)``.

    ``|R|``, clipped per image at its ``percentile``-th percentile, multiplied by ``pixels`` (the
    images in their display range; ``None`` skips this step), summed over channels, divided by the
    per-image maximum (an all-zero map stays zero). With ``pixels`` it is the thesis's step 3 (the
    maps of Tables 4.2 and 5.1), without it step 2.
    """
    if raw.dim() != 4:
        raise ExplainerInputError(f"raw relevance must be (N, C, H, W), got {tuple(raw.shape)}")
    r = raw.detach().abs()
    cap = torch.quantile(r.flatten(1).double(), percentile / 100.0, dim=1).to(r.dtype)
    r = torch.minimum(r, cap.view(-1, 1, 1, 1))
    if pixels is not None:
        if pixels.shape != raw.shape:
            raise ExplainerInputError(f"pixels {tuple(pixels.shape)} must match raw {tuple(raw.shape)}")
        r = r * pixels.detach().to(r.device)
    r = r.sum(1)
    peak = r.flatten(1).amax(1).view(-1, 1, 1)
    return torch.where(peak > 0, r / peak.clamp_min(1e-30), torch.zeros_like(r))


_METHODS: dict[str, Callable[..., Tensor]] = {"gradient": gradient, "smoothgrad": smoothgrad, "lrp": lrp}


def relevance_map(
    method: str,
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    multiply_by_image: bool = True,
    **kwargs: Any,
) -> Tensor:
    """``method`` in ``{"gradient", "smoothgrad", "lrp"}`` followed by :func:`visualise`
    (``pixels=images`` when ``multiply_by_image``, the thesis's step 3). ``(N, H, W)`` in [0, 1]."""
    if method not in _METHODS:
        raise ExplainerInputError(f"unknown relevance method {method!r}; choose from {sorted(_METHODS)}")
    raw = _METHODS[method](model, images, labels, **kwargs)
    return visualise(raw, pixels=images if multiply_by_image else None)


# ----------------------------------------------------------------------------------------------
# Kernels


def loss_gradient_sign(model: nn.Module, x: Tensor, labels: Tensor, *, chunk_size: int = 256) -> Tensor:
    """``sign(∇_x J(θ, x, y))`` with J the cross-entropy at ``labels``, ``(N, C, H, W)``.

    The model must already be guarded (eval mode); ``x`` on the model's device.
    """
    out = []
    for s in _chunks(x.shape[0], chunk_size):
        with torch.enable_grad():
            leaf = x[s].detach().requires_grad_(True)
            loss = F.cross_entropy(model(leaf), labels[s], reduction="sum")
            (grad,) = torch.autograd.grad(loss, leaf)
        out.append(grad.sign())
    return torch.cat(out)


def directed(maps: Tensor, sign: Tensor) -> Tensor:
    """``maps / ||maps||_1 ⊙ sign`` per map: ``maps (N, ..., C|1, H, W)`` broadcast to ``sign``'s
    channels first; an all-zero map gives a zero direction."""
    wide = torch.broadcast_to(maps, (*maps.shape[:-3], *sign.shape[-3:]))
    norm = wide.flatten(-3).sum(-1)[..., None, None, None]
    unit = torch.where(norm > 0, wide / norm.clamp_min(1e-30), torch.zeros_like(wide))
    extra = unit.dim() - sign.dim()
    return unit * sign.view(sign.shape[0], *([1] * extra), *sign.shape[1:])


def _flips(
    model: nn.Module,
    x: Tensor,
    directions: Tensor,
    predicted: Tensor,
    ids: Tensor,
    eps: Tensor,
    *,
    chunk_size: int,
    clamp: tuple[float, float] | None,
) -> Tensor:
    """For groups ``ids`` (flat ``n * G + g``) and their ε values ``eps (A, B)``: does any of the
    group's S directions change the prediction at each ε? ``(A, B)`` bool."""
    g, s = directions.shape[1:3]
    a, b = eps.shape
    per_pass = max(1, chunk_size // (b * s))
    out = []
    for c in _chunks(a, per_pass):
        img, grp = ids[c] // g, ids[c] % g
        pert = x[img][:, None, None] + eps[c].view(-1, b, 1, 1, 1, 1) * directions[img, grp][:, None]
        if clamp is not None:
            pert = pert.clamp(*clamp)
        pred = model(pert.flatten(0, 2)).argmax(1).view(-1, b, s)
        out.append((pred != predicted[img].view(-1, 1, 1)).any(2))
    return torch.cat(out)


@torch.no_grad()
def first_flip(
    model: nn.Module,
    x: Tensor,
    directions: Tensor,
    predicted: Tensor,
    eps: Tensor,
    *,
    search: str = "scan",
    chunk_size: int = 4096,
    clamp: tuple[float, float] | None = None,
    progress: Progress | None = None,
) -> Tensor:
    """Index of the first ε at which any member of a group flips the prediction.

    ``x (N, C, H, W)``, ``directions (N, G, S, C, H, W)`` (G groups of S directions per image),
    ``predicted (N,)``, ``eps (K,)`` ascending. Returns ``(N, G)`` int64 in ``[0, K]``; ``K`` means
    no ε flipped it.

    * ``search="scan"`` (exact, the thesis's procedure): every group walks the grid in order; each
      round evaluates the next ``B = max(1, chunk_size // (active groups · S))`` values of ε for
      all groups still unresolved, in forward passes of at most ``chunk_size`` images.
    * ``search="bisect"``: galloping (indices 0, 2, 6, 14, ...) then binary search on the grid,
      about ``2 log2 K`` evaluations per group instead of up to ``K``. It returns the first flip
      when the prediction, once changed along the ray ``x + ε d``, stays changed; otherwise *a*
      grid point where it changes just after one where it does not.
    """
    if search not in ("scan", "bisect"):
        raise ExplainerInputError(f"search must be 'scan' or 'bisect', got {search!r}")
    n, g, s = directions.shape[:3]
    k_total = eps.numel()
    if search == "bisect":
        lo = torch.full((n * g,), -1, dtype=torch.int64, device=x.device)  # known not to flip
        hi = torch.full((n * g,), k_total, dtype=torch.int64, device=x.device)  # known to flip
        rounds = 0
        while True:
            open_ = (hi - lo > 1).nonzero().flatten()
            if open_.numel() == 0:
                break
            low, high = lo[open_], hi[open_]
            gallop = torch.clamp(2 * (low + 1), max=k_total - 1)
            probe = torch.where(high < k_total, (low + high) // 2, gallop)
            flipped = _flips(model, x, directions, predicted, open_, eps[probe][:, None], chunk_size=chunk_size, clamp=clamp)[:, 0]
            hi[open_[flipped]] = probe[flipped]
            lo[open_[~flipped]] = probe[~flipped]
            rounds += 1
            if progress is not None:
                progress({"stage": "apem", "step": rounds, "total": None, "active": int(open_.numel())})
        return hi.view(n, g)
    result = torch.full((n, g), k_total, dtype=torch.int64, device=x.device)
    active = torch.arange(n * g, device=x.device)
    pos = 0
    while active.numel() > 0 and pos < k_total:
        block = max(1, min(k_total - pos, chunk_size // (active.numel() * s)))
        step_eps = eps[pos : pos + block].expand(active.numel(), -1)
        flipped = _flips(model, x, directions, predicted, active, step_eps, chunk_size=chunk_size, clamp=clamp)
        hit = flipped.any(1)
        first = flipped.to(torch.int8).argmax(1)
        result.view(-1)[active[hit]] = pos + first[hit]
        active = active[~hit]
        pos += block
        if progress is not None:
            progress({"stage": "apem", "step": pos, "total": k_total, "active": int(active.numel())})
    return result


def _check_maps(maps: Any, images: Tensor, *, name: str = "maps") -> Tensor:
    """Maps ``(N, H, W)`` or ``(N, 1|C, H, W)`` in [0, 1] -> ``(N, 1|C, H, W)``."""
    if not isinstance(maps, Tensor):
        raise ExplainerInputError(f"{name} must be a tensor or a callable, got {type(maps).__name__}")
    n, c, h, w = images.shape
    if maps.dim() == 3:
        maps = maps[:, None]
    if maps.dim() != 4 or maps.shape[0] != n or maps.shape[-2:] != (h, w) or maps.shape[1] not in (1, c):
        raise ExplainerInputError(
            f"{name} must have shape ({n}, {h}, {w}) or ({n}, 1|{c}, {h}, {w}), got {tuple(maps.shape)}"
        )
    if not maps.is_floating_point() or not bool(torch.isfinite(maps).all()):
        raise ExplainerInputError(f"{name} must be finite floating values")
    lo, hi = float(maps.min()), float(maps.max())
    if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise ExplainerInputError(f"{name} must lie in [0, 1] (relevance), got [{lo:.4g}, {hi:.4g}]")
    return maps.detach().clamp(0, 1)


# ----------------------------------------------------------------------------------------------
# Public


class APEM:
    """The APEM scorer for one classifier (see the module docstring for the formulas).

    Args:
        model: classifier ``(N, C, H, W) -> logits (N, K)``; it stays on its device, the images
            are moved there and the results come back on the images' device.
        step: the ε increment (thesis: unit steps).
        ceiling: the largest ε tried.
        chunk_size: images per forward pass (memory bound only).
        clamp: pixel range for the perturbed images, ``None`` = no clipping (the thesis's formula).
        search: ``"scan"`` walks the ε grid in order (exact first flip, the thesis's procedure);
            ``"bisect"`` finds it by galloping and bisection (about 20 forward passes per image
            and map instead of up to ``ceiling / step``; exact when a changed prediction stays
            changed as ε grows, see :func:`first_flip`).

    ``scorer(images, maps)`` -> :class:`APEMResult`. ``maps`` is a tensor ``(N, H, W)`` or
    ``(N, 1|C, H, W)`` in [0, 1], a callable ``(images, predicted) -> maps`` (any heatmap method),
    or one of ``"gradient"``, ``"smoothgrad"``, ``"lrp"`` (thesis step-3 maps, default settings).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        step: float = 1.0,
        ceiling: float = 1000.0,
        chunk_size: int = 4096,
        clamp: tuple[float, float] | None = None,
        search: str = "scan",
    ) -> None:
        if search not in ("scan", "bisect"):
            raise ValueError(f"search must be 'scan' or 'bisect', got {search!r}")
        if step <= 0 or ceiling < step:
            raise ValueError(f"need 0 < step <= ceiling, got step={step}, ceiling={ceiling}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.model = model
        self.step = float(step)
        self.ceiling = float(ceiling)
        self.chunk_size = int(chunk_size)
        self.clamp = clamp
        self.search = search

    # -- grid -----------------------------------------------------------------------------------

    def grid(self) -> Tensor:
        """The ε values tried: ``step, 2·step, ...`` up to ``ceiling`` (float64)."""
        k = int(np.floor(self.ceiling / self.step + 1e-9))
        return torch.arange(1, k + 1, dtype=torch.float64) * self.step

    # -- public ---------------------------------------------------------------------------------

    def predict(self, images: Tensor) -> Tensor:
        """The model's predictions ``(N,)`` (the APEM label), on the images' device."""
        check_images(images)
        device = model_device(self.model)
        with model_guard(self.model), torch.no_grad():
            out = [self.model(images[s].to(device)).argmax(1) for s in _chunks(images.shape[0], self.chunk_size)]
        return torch.cat(out).to(images.device)

    def __call__(
        self,
        images: Tensor,
        maps: Tensor | Relevance | str,
        *,
        progress: Progress | None = None,
    ) -> APEMResult:
        check_images(images)
        with model_guard(self.model):
            x, predicted, sign = self._prepare(images)
            r = self._resolve(maps, images, predicted)
            dirs = torch.stack([directed(r, sign), directed(1 - r, sign)], dim=1)[:, :, None]
            return self._result(x, dirs, predicted, images.device, progress)

    def shuffled(
        self,
        images: Tensor,
        maps: Tensor | Relevance | str,
        *,
        shuffles: int = 10,
        seed: int = 0,
        progress: Progress | None = None,
    ) -> APEMResult:
        """ε-shuffle⁻ and ε-shuffle⁺ (§5.2): the first ε at which any of ``shuffles`` random
        pixel permutations of each map (resp. of ``1 - map``, the same permutation) flips the
        prediction. Permutations come from a CPU generator seeded with ``seed``."""
        check_images(images)
        if shuffles < 1:
            raise ExplainerInputError(f"shuffles must be at least 1, got {shuffles}")
        with model_guard(self.model):
            x, predicted, sign = self._prepare(images)
            r = self._resolve(maps, images, predicted)
            n = r.shape[0]
            flat = r.flatten(1).cpu()
            generator = torch.Generator().manual_seed(seed)
            perms = torch.stack(
                [torch.stack([torch.randperm(flat.shape[1], generator=generator) for _ in range(shuffles)]) for _ in range(n)]
            )  # (N, S, P)
            shuffled = torch.gather(flat[:, None].expand(-1, shuffles, -1), 2, perms)
            shuffled = shuffled.view(n, shuffles, *r.shape[1:]).to(x.device)
            dirs = torch.stack([directed(shuffled, sign), directed(1 - shuffled, sign)], dim=1)
            return self._result(x, dirs, predicted, images.device, progress)

    def filter(
        self,
        images: Tensor,
        maps: Tensor | Relevance | str,
        *,
        levels: int | None = None,
        max_iterations: int | None = None,
        progress: Progress | None = None,
    ) -> FilterResult:
        """The Explanation Filter (Algorithm 2), all images in lock-step.

        Each iteration zeroes, in every image still running, the pixels equal to its smallest
        positive relevance and recomputes that image's ε⁺ - ε⁻; an image stops when its APEM
        drops below its best (it keeps the map before the drop), when no positive value would be
        left, or after ``max_iterations``. ``levels`` rounds the maps to ``levels`` grey levels
        first (e.g. 255 for a stored 8-bit map).
        """
        check_images(images)
        with model_guard(self.model):
            x, predicted, sign = self._prepare(images)
            r = self._resolve(maps, images, predicted)
            if levels is not None:
                if levels < 1:
                    raise ExplainerInputError(f"levels must be positive, got {levels}")
                r = torch.round(r * levels) / levels
            n = r.shape[0]
            initial_pos = (r > 0).flatten(1).sum(1)
            best = r.clone()
            best_apem = self._apem_of(x, best, sign, predicted)
            initial = best_apem.clone()
            iterations = torch.zeros(n, dtype=torch.int64, device=x.device)
            running = torch.arange(n, device=x.device)
            it = 0
            while running.numel() > 0 and (max_iterations is None or it < max_iterations):
                cur = best[running]
                flat = cur.flatten(1)
                positive = flat > 0
                minimum = torch.where(positive, flat, torch.full_like(flat, float("inf"))).amin(1)
                candidate = torch.where(flat == minimum[:, None], torch.zeros_like(flat), flat).view_as(cur)
                alive = (candidate.flatten(1) > 0).any(1)
                running, cur, candidate = running[alive], cur[alive], candidate[alive]
                if running.numel() == 0:
                    break
                score = self._apem_of(x[running], candidate, sign[running], predicted[running])
                keep = score >= best_apem[running]
                idx = running[keep]
                best[idx] = candidate[keep]
                best_apem[idx] = score[keep]
                iterations[idx] += 1
                running = idx
                it += 1
                if progress is not None:
                    progress({"stage": "apem_filter", "step": it, "total": max_iterations, "running": int(idx.numel())})
            kept = (best > 0).flatten(1).sum(1).float() / initial_pos.clamp_min(1).float()
            dev = images.device
            out_maps = best[:, 0] if best.shape[1] == 1 else best
            return FilterResult(
                maps=out_maps.to(dev), apem=best_apem.to(dev), initial_apem=initial.to(dev),
                iterations=iterations.to(dev), kept_fraction=kept.to(dev),
            )

    # -- internals ------------------------------------------------------------------------------

    def _prepare(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        device = model_device(self.model)
        x = images.detach().to(device)
        with torch.no_grad():
            logits = torch.cat([self.model(x[s]) for s in _chunks(x.shape[0], self.chunk_size)])
        if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
            raise ExplainerInputError(f"model must return logits (N, K), got {tuple(logits.shape)}")
        predicted = logits.argmax(1)
        sign = loss_gradient_sign(self.model, x, predicted, chunk_size=min(self.chunk_size, 256))
        return x, predicted, sign

    def _resolve(self, maps: Tensor | Relevance | str, images: Tensor, predicted: Tensor) -> Tensor:
        if isinstance(maps, str):
            maps = relevance_map(maps, self.model, images, predicted.to(images.device))
        elif callable(maps) and not isinstance(maps, Tensor):
            maps = maps(images, predicted.to(images.device))
        return _check_maps(maps, images).to(model_device(self.model))

    def _apem_of(self, x: Tensor, r: Tensor, sign: Tensor, predicted: Tensor) -> Tensor:
        dirs = torch.stack([directed(r, sign), directed(1 - r, sign)], dim=1)[:, :, None]
        values, _ = self._eps(x, dirs, predicted, None)
        return values[:, 1] - values[:, 0]

    def _eps(self, x: Tensor, dirs: Tensor, predicted: Tensor, progress: Progress | None) -> tuple[Tensor, Tensor]:
        """``(values (N, G) float32, at_ceiling (N, G) bool)`` on ``x``'s device. The grid is kept
        in float64 on the CPU and only the chosen values are moved (MPS has no float64)."""
        grid = self.grid()
        idx = first_flip(
            self.model, x, dirs, predicted, grid.to(x.dtype).to(x.device), search=self.search,
            chunk_size=self.chunk_size, clamp=self.clamp, progress=progress,
        ).cpu()
        values = grid[idx.clamp(max=grid.numel() - 1)].float()
        return values.to(x.device), (idx >= grid.numel()).to(x.device)

    def _result(self, x: Tensor, dirs: Tensor, predicted: Tensor, out: torch.device, progress: Progress | None) -> APEMResult:
        values, at_ceiling = self._eps(x, dirs, predicted, progress)
        e_minus, e_plus = values[:, 0], values[:, 1]
        logger.info("APEM over %d images: mean %.3f", x.shape[0], float((e_plus - e_minus).mean()))
        return APEMResult(
            eps_minus=e_minus.to(out), eps_plus=e_plus.to(out), apem=(e_plus - e_minus).to(out),
            minus_at_ceiling=at_ceiling[:, 0].to(out), plus_at_ceiling=at_ceiling[:, 1].to(out),
            hit_ceiling=at_ceiling.any(1).to(out), predicted=predicted.to(out),
        )


def apem_norm(result: APEMResult, shuffled: APEMResult) -> Tensor:
    """Per-image ``ε⁺ / ε-shuffle⁺ - ε⁻ / ε-shuffle⁻`` (§5.2); its mean is APEM_norm."""
    if result.eps_minus.shape != shuffled.eps_minus.shape:
        raise ExplainerInputError("result and shuffled must be for the same images")
    return result.eps_plus / shuffled.eps_plus - result.eps_minus / shuffled.eps_minus
