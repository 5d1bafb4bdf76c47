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

The morph as displayed (:func:`displayed_morph_validity`): the same checks made on the
likelihoods of the frames decoded from the stored GIF/WebP (what a participant's browser shows),
plus "no crossover" and "monotone", per method: CDeepEx gets every check, xGEMs only "reaches
the boundary" (a third class winning is xGEMs' documented failure, which the ablation arm must
show, not filter away). Every reason comes with a stable code in ``Validity.codes``
(:data:`REASON_CODES`), which the pipeline stores and counts.

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

__all__ = [
    "REASON_CODES",
    "Validity",
    "cdeepex_validity",
    "displayed_morph_validity",
    "heatmap_validity",
    "third_class_wins",
    "top2_is_pair",
]

#: code -> what it means; ``Validity.codes[i]`` names the rule behind ``Validity.reasons[i]``.
REASON_CODES: dict[str, str] = {
    "nonfinite": "non-finite values in the explanation",
    "off_boundary": "the last frame is not on the decision boundary (|llh_true - llh_probe| too large)",
    "third_class": "a class other than true and probe is among the two most likely at the last frame",
    "crossover": "a frame is on the probe side of the boundary beyond the tolerance",
    "not_monotone": "the likelihood gap grows again along the animation beyond the tolerance",
    "poor_fit": "the generator cannot represent the image (z0 reconstruction error too large)",
    "small_morph": "the morph is below the study's size floor (mean absolute pixel change of the last frame)",
    "render_mismatch": "the stored GIF and WebP do not decode to the same frames",
    "blank": "the heatmap is blank",
    "uniform": "the heatmap is uniform",
    "apem_floor": "the heatmap's APEM is below the study's floor",
    "unsupported": "the method cannot run on this classifier (the reason says why, e.g. no layer it can read)",
    "other": "another check (see the reason text)",
}


@dataclass
class Validity:
    """``ok`` iff ``reasons`` is empty; ``numbers`` holds the measured values (floats)."""

    ok: bool
    reasons: list[str] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)
    codes: list[str] = field(default_factory=list)  # one per reason (REASON_CODES); may be empty

    def add(self, code: str, reason: str) -> None:
        """Refuse with ``reason`` under ``code``."""
        self.reasons.append(reason)
        self.codes.append(code)
        self.ok = False


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
        v = Validity(ok=True, numbers=numbers)
        if not all(math.isfinite(x) for k, x in numbers.items() if k != "other_margin"):
            v.add("nonfinite", "non-finite values in the explanation")
        if not bool(pair_ok[i]):
            v.add("third_class", f"the two most likely classes are {{{order[0]}, {order[1]}}}, not {{true={t}, probe={p}}}")
        if not gap < llh_tol:
            v.add("off_boundary", f"|llh_true - llh_probe| = {gap:.3g} is not below {llh_tol:g}: not on the boundary")
        if not float(recon[i]) <= recon_threshold:
            v.add(
                "poor_fit",
                f"z0 reconstruction RMS {float(recon[i]):.3g} > {recon_threshold:g}: the generator "
                "cannot represent this image (the morph is mostly residual)",
            )
        out.append(v)
    return out


def displayed_morph_validity(
    llh: Tensor,
    true: int,
    probe: int,
    *,
    method: str = "cdeepex",
    llh_tol: float = 0.05,
    cross_tol: float = 0.05,
    mono_tol: float = 0.05,
    recon_error: float | None = None,
    recon_threshold: float = 0.3,
    pixel_change: float | None = None,
    latent_distance: float | None = None,
    morph_floor: float | None = None,
) -> Validity:
    """The gate of one morph, on the log-likelihoods ``llh (T, C)`` of its *displayed* frames
    (decoded from the stored animation and re-classified), first frame to last.

    Checks (code in brackets; CDeepEx gets all, xGEMs only those marked *):

    * finite values (``nonfinite``) *;
    * the last frame is on the boundary: ``|llh_true - llh_probe| <= llh_tol`` (``off_boundary``) *;
    * the two most likely classes at the last frame are {true, probe} (``third_class``);
    * no crossover: no frame has ``llh_probe - llh_true > cross_tol`` (``crossover``);
    * monotone: the gap ``llh_true - llh_probe`` never grows by more than ``mono_tol`` from one
      frame to the next (``not_monotone``);
    * the z0 fit: ``recon_error <= recon_threshold`` when given (``poor_fit``);
    * the morph is visible: ``pixel_change >= morph_floor`` when a floor is set
      (``small_morph``) *: a researcher's display floor, applied to every morph method alike.

    ``numbers``: ``llh_true``, ``llh_probe``, ``llh_gap`` (last frame, absolute), ``other_margin``,
    ``top1``, ``top2``, ``max_probe_excess`` (largest ``llh_probe - llh_true`` over the frames,
    >= 0: the overshoot shown), ``max_gap_increase``, ``frames`` (decoded), and
    ``pixel_change``, ``latent_distance``, ``z0_recon_error`` when given.
    """
    if method not in ("cdeepex", "xgems"):
        raise ValueError(f"method must be 'cdeepex' or 'xgems', got {method!r}")
    if not isinstance(llh, Tensor) or llh.dim() != 2 or llh.shape[0] < 1:
        raise ValueError(f"llh must be a tensor (T, C), got {getattr(llh, 'shape', type(llh).__name__)}")
    ll = llh.detach().double().cpu()
    num_classes = ll.shape[1]
    last = ll[-1]
    gaps = ll[:, true] - ll[:, probe]
    order = last.argsort(descending=True).tolist()
    others = [k for k in range(num_classes) if k not in (true, probe)]
    best_other = max((float(last[k]) for k in others), default=-math.inf)
    increase = float((gaps[1:] - gaps[:-1]).max()) if len(gaps) > 1 else 0.0
    numbers = {
        "llh_true": float(last[true]),
        "llh_probe": float(last[probe]),
        "llh_gap": abs(float(gaps[-1])),
        "other_margin": min(float(last[true]), float(last[probe])) - best_other,
        "top1": float(order[0]),
        "top2": float(order[1]),
        "max_probe_excess": max(0.0, float((-gaps).max())),
        "max_gap_increase": max(0.0, increase),
        "frames": float(ll.shape[0]),
    }
    for key, value in (("pixel_change", pixel_change), ("latent_distance", latent_distance), ("z0_recon_error", recon_error)):
        if value is not None:
            numbers[key] = float(value)
    full = method == "cdeepex"
    v = Validity(ok=True, numbers=numbers)
    if not bool(torch.isfinite(ll).all()) or not all(math.isfinite(x) for k, x in numbers.items() if k != "other_margin"):
        v.add("nonfinite", "non-finite values in the displayed morph")
        return v
    if not numbers["llh_gap"] <= llh_tol:
        v.add("off_boundary", f"last frame as displayed: |llh_true - llh_probe| = {numbers['llh_gap']:.3g} > {llh_tol:g}: not on the boundary")
    if full and set(order[:2]) != {true, probe}:
        v.add("third_class", f"last frame as displayed: the two most likely classes are {{{order[0]}, {order[1]}}}, not {{true={true}, probe={probe}}}")
    if full and numbers["max_probe_excess"] > cross_tol:
        v.add("crossover", f"a displayed frame is on the probe side by {numbers['max_probe_excess']:.3g} nats (> {cross_tol:g})")
    if full and numbers["max_gap_increase"] > mono_tol:
        v.add("not_monotone", f"the gap grows again by {numbers['max_gap_increase']:.3g} nats between two frames (> {mono_tol:g})")
    if full and recon_error is not None and not recon_error <= recon_threshold:
        v.add("poor_fit", f"z0 reconstruction RMS {recon_error:.3g} > {recon_threshold:g}: the generator cannot represent this image")
    if morph_floor is not None and pixel_change is not None and not pixel_change >= morph_floor:
        v.add("small_morph", f"the morph changes the image by {pixel_change:.4f} per pixel on average, below the floor {morph_floor:g}")
    return v


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
        v = Validity(ok=True, numbers=numbers)
        if not finite:
            v.add("nonfinite", "the map contains NaN or infinite values")
        elif peak <= blank_tol:
            v.add("blank", BLANK_REASON)
        elif numbers["std"] <= uniform_tol * peak:
            v.add("uniform", "the map is uniform (highlights nothing)")
        out.append(v)
    return out
