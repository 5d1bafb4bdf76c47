"""Validity checks of explanations: is this explanation fit to show a participant?

Each check returns one :class:`Validity` per image: ``ok``, human-readable ``reasons`` (empty
when ok) and the ``numbers`` behind the decision, so that the study pipeline can store them and
skip or flag an image.

CDeepEx (:func:`cdeepex_validity`), from the definition of eq. 3.2 (dissertation §3.1.4):

* the two most likely classes at the explanation are exactly {true, probe} (the point the paper
  adds the inequality constraints for; xGEMs often fails here);
* ``|llh_true - llh_probe| < llh_tol`` (the explanation lies on the decision boundary);
* the Procedure-2 fit ``G(z0) ≈ I`` is good: the residual makes frame 0 exact anyway, but an RMS
  error above ``recon_threshold`` means G could not represent the image and the morph is mostly
  the fixed residual plus an unrelated generated image.

Grad-CAM (:func:`heatmap_validity`): the map is finite, not blank (all ~0: the target does not
depend on the layer or the ReLU killed everything) and not uniform.

Example::

    >>> import torch
    >>> [v.ok for v in heatmap_validity(torch.stack([torch.zeros(4, 4), torch.eye(4)]))]
    [False, True]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from explainers.cdeepex import CDeepExResult

__all__ = ["Validity", "cdeepex_validity", "heatmap_validity", "third_class_wins", "top2_is_pair"]


@dataclass
class Validity:
    """``ok`` iff ``reasons`` is empty; ``numbers`` holds the measured values (floats)."""

    ok: bool
    reasons: list[str] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)


def top2_is_pair(result: CDeepExResult) -> Tensor:
    """(N,) bool: the two most likely classes at ``final`` are {true, probe}."""
    top2 = result.llh[:, -1].topk(2, dim=1).indices
    t, p = result.true_labels[:, None], result.probe_labels[:, None]
    return ((top2 == t) | (top2 == p)).all(1)


def third_class_wins(result: CDeepExResult) -> Tensor:
    """(N,) bool: at ``final`` some class other than true and probe is the most likely."""
    top1 = result.llh[:, -1].argmax(1)
    return (top1 != result.true_labels) & (top1 != result.probe_labels)


def cdeepex_validity(
    result: CDeepExResult,
    *,
    llh_tol: float = 0.1,
    recon_threshold: float = 0.3,
) -> list[Validity]:
    """One :class:`Validity` per image of a :class:`~explainers.cdeepex.CDeepExResult`.

    Args:
        llh_tol: largest accepted ``|llh_true - llh_probe|`` (nats) at the final frame.
        recon_threshold: largest accepted RMS per pixel of ``G(z0) - I`` (images in [0, 1]).

    ``numbers``: ``llh_true``, ``llh_probe``, ``llh_gap``, ``other_margin`` (how far the best
    other class is below the weaker of true/probe; negative = a third class beats one of them),
    ``top1``, ``top2``, ``converged`` (0/1), ``steps``, ``z0_recon_error``,
    ``latent_distance`` ``||z_e - z0||``, ``difference_l1`` (mean |difference|).
    """
    final = result.llh[:, -1].detach().double().cpu()
    n, num_classes = final.shape
    true = result.true_labels.cpu()
    probe = result.probe_labels.cpu()
    pair_ok = top2_is_pair(result).cpu()
    dist = (result.z_path[:, -1] - result.z0).norm(dim=1).double().cpu()
    diff_l1 = result.difference.detach().abs().flatten(1).mean(1).double().cpu()
    recon = result.z0_recon_error.detach().double().cpu()
    out = []
    for i in range(n):
        llh = final[i]
        t, p = int(true[i]), int(probe[i])
        order = llh.argsort(descending=True).tolist()
        others = [k for k in range(num_classes) if k not in (t, p)]
        best_other = max((float(llh[k]) for k in others), default=-math.inf)
        gap = abs(float(llh[t] - llh[p]))
        numbers = {
            "llh_true": float(llh[t]),
            "llh_probe": float(llh[p]),
            "llh_gap": gap,
            "other_margin": min(float(llh[t]), float(llh[p])) - best_other,
            "top1": float(order[0]),
            "top2": float(order[1]),
            "converged": float(bool(result.converged[i])),
            "steps": float(result.steps[i]),
            "z0_recon_error": float(recon[i]),
            "latent_distance": float(dist[i]),
            "difference_l1": float(diff_l1[i]),
        }
        reasons = []
        if not all(math.isfinite(v) for k, v in numbers.items() if k != "other_margin"):
            reasons.append("non-finite values in the explanation")
        if not bool(pair_ok[i]):
            reasons.append(
                f"the two most likely classes are {{{order[0]}, {order[1]}}}, not "
                f"{{true={t}, probe={p}}}"
            )
        if not gap < llh_tol:
            reasons.append(f"|llh_true - llh_probe| = {gap:.3g} is not below {llh_tol:g}: not on the boundary")
        if not float(recon[i]) <= recon_threshold:
            reasons.append(
                f"z0 reconstruction RMS {float(recon[i]):.3g} > {recon_threshold:g}: the generator "
                "cannot represent this image (the morph is mostly residual)"
            )
        out.append(Validity(ok=not reasons, reasons=reasons, numbers=numbers))
    return out


#: The reason :func:`heatmap_validity` gives for an all-zero map.
BLANK_REASON = "the map is blank (all zero)"


def heatmap_validity(
    maps: Tensor,
    *,
    blank_tol: float = 1e-6,
    uniform_tol: float = 1e-3,
) -> list[Validity]:
    """One :class:`Validity` per map ``(N, H, W)`` (Grad-CAM in [0, 1], or signed maps).

    Blank: ``max |map| <= blank_tol``. Uniform: the standard deviation over pixels is
    ``<= uniform_tol`` times the largest magnitude (a flat map highlights nothing).
    ``numbers``: ``min``, ``max``, ``mean``, ``std``, ``coverage`` (share of pixels whose
    magnitude is above half the largest).
    """
    if not isinstance(maps, Tensor) or maps.dim() != 3:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"maps must be a tensor (N, H, W), got {shape}")
    flat = maps.detach().double().cpu().flatten(1)
    out = []
    for row in flat:
        finite = bool(torch.isfinite(row).all())
        mag = row.abs()
        peak = float(mag.max()) if finite else math.nan
        numbers = {
            "min": float(row.min()),
            "max": float(row.max()),
            "mean": float(row.mean()),
            "std": float(row.std(unbiased=False)),
            "coverage": float((mag > 0.5 * peak).double().mean()) if finite and peak > 0 else 0.0,
        }
        reasons = []
        if not finite:
            reasons.append("the map contains NaN or infinite values")
        elif peak <= blank_tol:
            reasons.append(BLANK_REASON)
        elif numbers["std"] <= uniform_tol * peak:
            reasons.append("the map is uniform (highlights nothing)")
        out.append(Validity(ok=not reasons, reasons=reasons, numbers=numbers))
    return out
