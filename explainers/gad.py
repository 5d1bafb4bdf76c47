"""GAD (Gradient Artificial Distancing): de-noising gradient maps by contrasting two classes.

Paper: C. Mazini Rodrigues, N. Boutry, L. Najman, "Transforming gradient-based techniques into
interpretable methods" (``003_4d58198070226848.txt``), sections 4-6.

Method (§4).

1. *Distancing* (§4.1). For two classes ``a`` and ``b`` and their training images, take the
   classifier's pre-softmax outputs and subtract ``α`` from the *other* class's logit: from
   logit ``b`` for the images of ``a``, from logit ``a`` for those of ``b``.
2. *Support regressions* (§4.2). For each ``α`` in ``(2, 4, 6, 8)`` a copy of the classifier (its
   weights as the start, a linear output) is fine-tuned with MSE to those outputs
   (:func:`train_support_models`).
3. *Important features* (§4.3). The chosen gradient method explains output ``a`` of the original
   model and of every support model; a pixel is important in a map when it is in the map's top
   ``keep`` (the paper: 50 %); the **GAD mask** is the set of pixels important in all five maps,
   and the **GAD map** is the original map restricted to it (:class:`GAD`).

Gradient methods (§2): ``"saliency"`` (|∂N_a/∂x|), ``"deconvolution"``, ``"gradient_x_input"``,
``"guided_backprop"`` and ``"integrated_gradients"`` (zero baseline, 50 Gauss-Legendre steps), all
by Captum (:func:`attribute`).

Metrics (§5), with the hull ``CH`` of a set of pixels taken over the pixels' corners
(:func:`convex_hull`) and ``M`` the binary mask of the pixels whose centres lie in it::

    RC          = A(CH_GAD) / A(CH_orig)                                   (RC < 1 favours GAD)
    RS(I, M, a) = |N_a(I) - N_a(I ⊙ (1 - M))| / Σ M                         (per occluded pixel)

for the GAD mask ``M_GAD`` and the *supplementary* mask ``M_orig - M_GAD``; the paper expects
``RS(GAD) > RS(Sup.)`` (:func:`gad_metrics`).

Choices where the paper is silent (the reasons and measurements: docs/DECISIONS.md, "GAD"):

* a pixel's importance is ``|Σ_c A_c|``; "top 50 %" is the top half of the pixels with non-zero
  importance (``among="nonzero"``; ``among="all"`` is the top half of all pixels);
* ``RC`` compares the GAD mask with the original map's top-50 % mask; ``RC = 1`` counts for the
  original method; an empty GAD mask gives ``RC = 0``, an empty original mask ``NaN``;
* hulls are over pixel corners (a single pixel is a unit square); a pixel is in the mask when its
  centre is inside or on the hull;
* ``N_a`` is the original classifier's logit ``a``; occlusion sets pixels to ``fill`` (0);
  ``RS`` is ``NaN`` for an empty mask and means skip ``NaN``;
* the support models are fine-tuned on the outputs of all classes, in train mode, seeded, with
  cheaper defaults than the paper's (``epochs=3``, ``lr=1e-3``); :class:`SupportModel` records
  the gap each one achieved (``achieved_gap``);
* the GAD map for display is ``importance ⊙ gad_mask`` divided by its maximum, in [0, 1].

Shapes: images ``(N, C, H, W)``, labels ``(N,)``; ``masks`` ``(N, 1 + S, H, W)`` (the original
model and S support models), ``gad_mask`` and ``maps`` ``(N, H, W)``.

Example::

    >>> supports = train_support_models(net, x_train, y_train, 3, 7)         # doctest: +SKIP
    >>> gad = GAD(net, supports, method="integrated_gradients")              # doctest: +SKIP
    >>> res = gad.explain(x, labels)           # GADResult: masks, maps, ...  # doctest: +SKIP
    >>> m = gad_metrics(net, x, res)           # m.rc, m.rs_gad, m.rs_sup      # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
from explainers.targets import ClassTarget

__all__ = [
    "GAD",
    "GADMetrics",
    "GADResult",
    "METHODS",
    "PAPER_ALPHAS",
    "SupportModel",
    "attribute",
    "complexity",
    "convex_hull",
    "distanced_targets",
    "gad_metrics",
    "importance",
    "sensitivity",
    "top_fraction",
    "train_support_models",
]

logger = logging.getLogger(__name__)

Progress = Callable[[dict], None]

#: The gradient methods of the paper (§2, Tables 1-2), in its order: S, D, GxI, GB, IG.
METHODS = ("saliency", "deconvolution", "gradient_x_input", "guided_backprop", "integrated_gradients")
#: The paper's α values for the support models (§6; α = 0 is the original model).
PAPER_ALPHAS = (2.0, 4.0, 6.0, 8.0)


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _as_labels(targets: Tensor | Sequence[int] | int | ClassTarget, n: int) -> Tensor:
    if isinstance(targets, ClassTarget):
        targets = targets.labels
    elif callable(targets):
        raise ExplainerInputError(
            "GAD explains one output per image (the paper's N_a): pass class indices or a ClassTarget"
        )
    return check_labels(targets, n, name="targets")


# ----------------------------------------------------------------------------------------------
# Support regression models (§4.1-4.2)


def distanced_targets(logits: Tensor, labels: Tensor, class_a: int, class_b: int, alpha: float) -> Tensor:
    """The artificial outputs of §4.1: ``logits`` with ``α`` subtracted from logit ``b`` for the
    images labelled ``a`` and from logit ``a`` for those labelled ``b`` (other rows unchanged)."""
    out = logits.detach().clone()
    labels = labels.to(out.device)
    out[labels == class_a, class_b] -= alpha
    out[labels == class_b, class_a] -= alpha
    return out


@dataclass(frozen=True)
class SupportModel:
    """A fine-tuned copy of the classifier for one ``alpha``.

    Attributes:
        model: the regression network (same architecture, linear output), in eval mode.
        alpha: the distance subtracted.
        final_mse: mean squared error to the distanced targets on the training images.
        achieved_gap: mean over the training images of how much the *other* class's logit went
            down relative to the image's own class, compared with the original model (α would
            be a perfect fit).
    """

    model: nn.Module
    alpha: float
    final_mse: float
    achieved_gap: float


def _pair_gap(logits: Tensor, labels: Tensor, class_a: int, class_b: int) -> Tensor:
    """own-class logit minus other-class logit, per image of the pair."""
    own = torch.where(labels == class_a, logits[:, class_a], logits[:, class_b])
    other = torch.where(labels == class_a, logits[:, class_b], logits[:, class_a])
    return own - other


def train_support_models(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    class_a: int,
    class_b: int,
    *,
    alphas: Sequence[float] = PAPER_ALPHAS,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[SupportModel]:
    """Fine-tune one copy of ``model`` per ``alpha`` with MSE to :func:`distanced_targets`.

    ``images (N, C, H, W)`` and ``labels (N,)``: training images of the two classes (rows of other
    classes are dropped). Adam, ``epochs`` passes in an order drawn from a generator seeded with
    ``seed`` (the same for every α), inside ``torch.random.fork_rng`` so the caller's RNG is left
    alone. ``model`` itself is never changed (its modes and flags are restored).
    """
    check_images(images)
    labels = check_labels(labels, images.shape[0], name="labels")
    if class_a == class_b:
        raise ExplainerInputError("class_a and class_b must differ")
    if epochs < 1 or batch_size < 1:
        raise ExplainerInputError(f"epochs and batch_size must be positive, got {epochs}, {batch_size}")
    keep = (labels == class_a) | (labels == class_b)
    if not bool((labels == class_a).any()) or not bool((labels == class_b).any()):
        raise ExplainerInputError(f"need training images of both classes {class_a} and {class_b}")
    device = model_device(model)
    x, y = images[keep].detach().to(device), labels[keep].to(device)
    with model_guard(model), torch.no_grad():
        base = torch.cat([model(x[s]) for s in _chunks(x.shape[0], 256)])
    if base.dim() != 2 or max(class_a, class_b) >= base.shape[1]:
        raise ExplainerInputError(f"classes {class_a}, {class_b} are not outputs of a model with {tuple(base.shape)} logits")
    base_gap = _pair_gap(base, y, class_a, class_b)
    n = x.shape[0]
    steps = epochs * math.ceil(n / batch_size)
    out = []
    for k, alpha in enumerate(alphas):
        target = distanced_targets(base, y, class_a, class_b, float(alpha))
        reg = copy.deepcopy(model)
        for p in reg.parameters():
            p.requires_grad_(True)
        optimiser = torch.optim.Adam(reg.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(seed)
        reg.train()
        step = 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for _ in range(epochs):
                order = torch.randperm(n, generator=generator).to(device)
                for s in _chunks(n, batch_size):
                    idx = order[s]
                    loss = F.mse_loss(reg(x[idx]), target[idx])
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    step += 1
                    if progress is not None:
                        progress({
                            "stage": "gad_support", "step": k * steps + step, "total": len(alphas) * steps,
                            "alpha": float(alpha), "loss": float(loss.detach()),
                        })
        reg.eval()
        with torch.no_grad():
            pred = torch.cat([reg(x[s]) for s in _chunks(n, 256)])
        mse = float(F.mse_loss(pred, target))
        gap = float((_pair_gap(pred, y, class_a, class_b) - base_gap).mean())
        logger.info("GAD support model alpha=%g: MSE %.4f, achieved gap %.3f", alpha, mse, gap)
        out.append(SupportModel(model=reg, alpha=float(alpha), final_mse=mse, achieved_gap=gap))
    return out


# ----------------------------------------------------------------------------------------------
# Gradient methods (Captum)


def attribute(
    method: str,
    model: nn.Module,
    images: Tensor,
    targets: Tensor | Sequence[int] | int | ClassTarget,
    *,
    ig_steps: int = 50,
    baseline: float = 0.0,
    chunk_size: int = 64,
) -> Tensor:
    """Raw attributions ``(N, C, H, W)`` of output ``targets[i]`` by one of :data:`METHODS`.

    Captum's ``Saliency`` (absolute gradient), ``Deconvolution``, ``InputXGradient``,
    ``GuidedBackprop`` and ``IntegratedGradients`` (``baseline`` everywhere, ``ig_steps``
    Gauss-Legendre steps). The model is guarded (eval mode, frozen parameters, restored after);
    Captum's ReLU hooks are removed by Captum in ``finally``. Images go to the model's device,
    attributions come back on the images' device.
    """
    from captum.attr import (
        Deconvolution,
        GuidedBackprop,
        InputXGradient,
        IntegratedGradients,
        Saliency,
    )

    check_images(images)
    n = images.shape[0]
    labels = _as_labels(targets, n)
    classes = {
        "saliency": Saliency, "deconvolution": Deconvolution, "gradient_x_input": InputXGradient,
        "guided_backprop": GuidedBackprop, "integrated_gradients": IntegratedGradients,
    }
    if method not in classes:
        raise ExplainerInputError(f"unknown gradient method {method!r}; choose from {list(METHODS)}")
    device = model_device(model)
    parts = []
    with model_guard(model), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*backward hooks on ReLU.*")
        explainer = classes[method](model)
        for s in _chunks(n, chunk_size):
            x = images[s].detach().to(device).clone().requires_grad_(True)
            target = labels[s].to(device)
            with torch.enable_grad():
                if method == "integrated_gradients":
                    a = explainer.attribute(
                        x, baselines=baseline, target=target, n_steps=ig_steps,
                        internal_batch_size=max(chunk_size, x.shape[0]) * 4,
                    )
                else:
                    a = explainer.attribute(x, target=target)
            parts.append(a.detach())
    return torch.cat(parts).to(images.device)


def importance(attributions: Tensor) -> Tensor:
    """``|Σ_c A_c|``: ``(N, C, H, W)`` attributions -> ``(N, H, W)`` pixel importance."""
    if attributions.dim() != 4:
        raise ExplainerInputError(f"attributions must be (N, C, H, W), got {tuple(attributions.shape)}")
    return attributions.sum(1).abs()


def top_fraction(values: Tensor, keep: float = 0.5, *, among: str = "nonzero") -> Tensor:
    """Bool mask ``(..., H, W)`` of each map's most important pixels.

    ``among="nonzero"`` (default): the top ``ceil(keep · n)`` of the ``n`` pixels whose value is
    above 0; ``among="all"``: the top ``ceil(keep · H · W)`` of all pixels, still never a pixel
    whose value is 0. Ties at the threshold are all kept.
    """
    if not 0 < keep <= 1:
        raise ExplainerInputError(f"keep must be in (0, 1], got {keep}")
    if among not in ("nonzero", "all"):
        raise ExplainerInputError(f"among must be 'nonzero' or 'all', got {among!r}")
    flat = values.flatten(-2)
    positive = flat > 0
    if among == "all":
        k = torch.full(flat.shape[:-1], math.ceil(keep * flat.shape[-1]), dtype=torch.int64, device=flat.device)
    else:
        k = torch.ceil(keep * positive.sum(-1).double()).to(torch.int64)
    ordered = flat.sort(dim=-1, descending=True).values
    kth = ordered.gather(-1, (k.clamp(min=1) - 1)[..., None])
    return ((flat >= kth) & positive).view(values.shape)


# ----------------------------------------------------------------------------------------------
# GAD


@dataclass(frozen=True)
class GADResult:
    """GAD for ``N`` images (all on the images' device).

    Attributes:
        importance: ``(N, 1 + S, H, W)`` pixel importance of the original model (index 0) and of
            the S support models.
        masks: ``(N, 1 + S, H, W)`` bool, the top-``keep`` pixels of each of those maps.
        original_mask: ``masks[:, 0]``, the original method's important pixels.
        gad_mask: ``(N, H, W)`` bool, the pixels important in every map.
        maps: ``(N, H, W)`` the GAD map for display: ``importance[:, 0] ⊙ gad_mask`` / its max.
        original_maps: ``(N, H, W)`` the original method's map, ``importance[:, 0]`` / its max.
        targets: ``(N,)`` the explained outputs.
    """

    importance: Tensor
    masks: Tensor
    original_mask: Tensor
    gad_mask: Tensor
    maps: Tensor
    original_maps: Tensor
    targets: Tensor


def _unit(x: Tensor) -> Tensor:
    peak = x.flatten(1).amax(1).view(-1, 1, 1)
    return torch.where(peak > 0, x / peak.clamp_min(1e-30), torch.zeros_like(x))


class GAD:
    """GAD maps from a classifier and its support regression models.

    Args:
        model: the classifier being explained.
        supports: the support models (:class:`SupportModel` or plain modules), e.g. from
            :func:`train_support_models` with the paper's α = 2, 4, 6, 8.
        method: one of :data:`METHODS`.
        keep: the share of pixels each map keeps as important (the paper: 0.5).
        among: ``"nonzero"`` ranks the pixels with non-zero importance, ``"all"`` all pixels
            (see :func:`top_fraction` and the module docstring).
        ig_steps, baseline, chunk_size: passed to :func:`attribute`.

    ``gad.explain(images, targets)`` -> :class:`GADResult`; ``gad(images, targets)`` -> the GAD
    maps ``(N, H, W)`` in [0, 1] (``targets`` default: the classifier's predictions), so a
    ``GAD`` is a heatmap method like the others (e.g. for :class:`explainers.apem.APEM`).
    """

    def __init__(
        self,
        model: nn.Module,
        supports: Sequence[SupportModel | nn.Module],
        *,
        method: str = "integrated_gradients",
        keep: float = 0.5,
        among: str = "nonzero",
        ig_steps: int = 50,
        baseline: float = 0.0,
        chunk_size: int = 64,
    ) -> None:
        if among not in ("nonzero", "all"):
            raise ValueError(f"among must be 'nonzero' or 'all', got {among!r}")
        if method not in METHODS:
            raise ValueError(f"unknown gradient method {method!r}; choose from {list(METHODS)}")
        if not supports:
            raise ValueError("GAD needs at least one support model")
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {keep}")
        self.model = model
        self.supports = [s.model if isinstance(s, SupportModel) else s for s in supports]
        self.method = method
        self.keep = keep
        self.among = among
        self.ig_steps = ig_steps
        self.baseline = baseline
        self.chunk_size = chunk_size

    def __call__(self, images: Tensor, targets: Tensor | Sequence[int] | int | ClassTarget | None = None) -> Tensor:
        return self.explain(images, targets).maps

    def explain(
        self,
        images: Tensor,
        targets: Tensor | Sequence[int] | int | ClassTarget | None = None,
        *,
        progress: Progress | None = None,
    ) -> GADResult:
        check_images(images)
        n = images.shape[0]
        if targets is None:
            device = model_device(self.model)
            with model_guard(self.model), torch.no_grad():
                targets = torch.cat([self.model(images[s].to(device)).argmax(1) for s in _chunks(n, 256)])
        else:  # the range check needs the number of outputs: one forward pass of one image
            device = model_device(self.model)
            with model_guard(self.model), torch.no_grad():
                n_classes = self.model(images[:1].to(device)).shape[1]
            targets = check_labels(_as_labels(targets, n), n, n_classes, name="targets")
        labels = _as_labels(targets, n)
        nets = [self.model, *self.supports]
        imps = []
        with model_guard(*nets):
            for k, net in enumerate(nets):
                raw = attribute(
                    self.method, net, images, labels,
                    ig_steps=self.ig_steps, baseline=self.baseline, chunk_size=self.chunk_size,
                )
                imps.append(importance(raw))
                if progress is not None:
                    progress({"stage": "gad", "step": k + 1, "total": len(nets), "method": self.method})
        imp = torch.stack(imps, dim=1)
        masks = top_fraction(imp, self.keep, among=self.among)
        gad_mask = masks.all(1)
        return GADResult(
            importance=imp, masks=masks, original_mask=masks[:, 0], gad_mask=gad_mask,
            maps=_unit(imp[:, 0] * gad_mask), original_maps=_unit(imp[:, 0]),
            targets=labels.to(images.device),
        )


# ----------------------------------------------------------------------------------------------
# Metrics (§5)


def convex_hull(mask: Tensor | np.ndarray) -> tuple[float, np.ndarray]:
    """Area of the convex hull of a 2-d bool mask's pixels and the mask it fills.

    The hull is taken over the four corners of every selected pixel (pixel ``(i, j)`` spans
    ``[i, i+1] x [j, j+1]``), with :class:`scipy.spatial.ConvexHull`; the filled mask holds the
    pixels whose centre ``(i + 0.5, j + 0.5)`` lies inside or on the hull. An empty mask gives
    ``(0.0, all False)``.

    >>> area, filled = convex_hull(np.eye(3, dtype=bool))   # 3x3 square minus two corners
    >>> round(area, 6), int(filled.sum())
    (5.0, 7)
    """
    from scipy.spatial import ConvexHull

    m = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    if m.ndim != 2:
        raise ExplainerInputError(f"mask must be 2-d (H, W), got shape {m.shape}")
    m = m.astype(bool)
    if not m.any():
        return 0.0, np.zeros_like(m)
    rows, cols = np.nonzero(m)
    corners = np.concatenate(
        [np.stack([rows + dr, cols + dc], 1) for dr in (0, 1) for dc in (0, 1)]
    ).astype(np.float64)
    corners = np.unique(corners, axis=0)
    hull = ConvexHull(corners)
    h, w = m.shape
    ii, jj = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    centres = np.stack([ii.ravel(), jj.ravel()], 1)
    inside = (centres @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9).all(1)
    return float(hull.volume), inside.reshape(h, w)


def _hulls(masks: Tensor) -> tuple[Tensor, Tensor]:
    """Areas ``(N,)`` and filled masks ``(N, H, W)`` of a batch of masks."""
    areas, filled = [], []
    for m in masks:
        a, f = convex_hull(m)
        areas.append(a)
        filled.append(torch.from_numpy(f))
    return torch.tensor(areas, dtype=torch.float64), torch.stack(filled)


def complexity(gad_mask: Tensor, original_mask: Tensor) -> Tensor:
    """``RC = A(CH_GAD) / A(CH_orig)`` per image, ``(N,)`` float64 (``NaN`` if the original mask
    is empty). Masks ``(N, H, W)`` bool."""
    if gad_mask.shape != original_mask.shape or gad_mask.dim() != 3:
        raise ExplainerInputError("gad_mask and original_mask must both be (N, H, W)")
    a_gad, _ = _hulls(gad_mask)
    a_orig, _ = _hulls(original_mask)
    return torch.where(a_orig > 0, a_gad / a_orig.clamp_min(1e-30), torch.full_like(a_orig, float("nan")))


def sensitivity(
    model: nn.Module,
    images: Tensor,
    masks: Tensor,
    targets: Tensor | Sequence[int] | int | ClassTarget,
    *,
    fill: float = 0.0,
    chunk_size: int = 256,
) -> Tensor:
    """``RS(I, M, a) = |N_a(I) - N_a(I ⊙ (1 - M) + fill · M)| / Σ M`` per image, ``(N,)`` float64.

    ``masks (N, H, W)`` (bool or {0, 1}) broadcast over channels; ``N_a`` is logit ``a`` of
    ``model``; ``fill = 0`` is the paper's occlusion; ``NaN`` where the mask is empty.
    """
    check_images(images)
    n = images.shape[0]
    labels = _as_labels(targets, n)
    if masks.shape != (n, *images.shape[-2:]):
        raise ExplainerInputError(f"masks must be (N, H, W) = {(n, *images.shape[-2:])}, got {tuple(masks.shape)}")
    device = model_device(model)
    m = masks.to(device=device, dtype=images.dtype)[:, None]
    x = images.detach().to(device)
    target = ClassTarget(labels)
    with model_guard(model), torch.no_grad():
        clean = torch.cat([model(x[s]) for s in _chunks(n, chunk_size)])
        occluded = torch.cat([model(x[s] * (1 - m[s]) + fill * m[s]) for s in _chunks(n, chunk_size)])
    diff = (target(clean) - target(occluded)).abs().double().cpu()
    area = m.flatten(1).sum(1).double().cpu()
    rs = torch.where(area > 0, diff / area.clamp_min(1), torch.full_like(diff, float("nan")))
    return rs.to(images.device)


@dataclass(frozen=True)
class GADMetrics:
    """§5 metrics per image, ``(N,)`` float64 on the images' device.

    Attributes:
        rc: complexity ratio ``A(CH_GAD) / A(CH_orig)``.
        rs_gad: sensitivity of the GAD hull mask.
        rs_sup: sensitivity of the supplementary mask ``M_orig - M_GAD``.
        area_gad, area_orig: the hull areas (pixels²).
        empty_gad: ``(N,)`` bool, no pixel survived in all maps.
    """

    rc: Tensor
    rs_gad: Tensor
    rs_sup: Tensor
    area_gad: Tensor
    area_orig: Tensor
    empty_gad: Tensor


def gad_metrics(
    model: nn.Module, images: Tensor, result: GADResult, *, fill: float = 0.0, chunk_size: int = 256
) -> GADMetrics:
    """RC and RS (GAD and supplementary masks) of a :class:`GADResult`, with the hull masks of
    :func:`convex_hull`, ``N_a`` the logits of ``model`` (the original classifier) and occluded
    pixels set to ``fill``."""
    check_images(images)
    a_gad, m_gad = _hulls(result.gad_mask)
    a_orig, m_orig = _hulls(result.original_mask)
    rc = torch.where(a_orig > 0, a_gad / a_orig.clamp_min(1e-30), torch.full_like(a_orig, float("nan")))
    m_sup = m_orig & ~m_gad
    rs_gad = sensitivity(model, images, m_gad, result.targets, fill=fill, chunk_size=chunk_size)
    rs_sup = sensitivity(model, images, m_sup, result.targets, fill=fill, chunk_size=chunk_size)
    dev = images.device
    return GADMetrics(
        rc=rc.to(dev), rs_gad=rs_gad, rs_sup=rs_sup, area_gad=a_gad.to(dev), area_orig=a_orig.to(dev),
        empty_gad=(~result.gad_mask.flatten(1).any(1)).to(dev),
    )
