"""Grad-CAM (Selvaraju et al., ICCV 2017) and its contrastive use from CDeepEx §3.2.1.

Grad-CAM for target score ``y`` (one per image) and conv-layer activations ``A`` (N, K, h, w)::

    alpha_k = mean_{i,j} dy / dA_k[i, j]                (global-average-pooled gradients)
    L       = ReLU( sum_k alpha_k * A_k )                (N, h, w)
    map     = minmax( upsample_bilinear(L, (H, W)) )     (N, H, W), each image scaled to [0, 1]

``minmax(x) = (x - min x) / (max x - min x + 1e-7)`` per image, as pytorch-grad-cam's
``scale_cam_image``; a map that is zero everywhere stays zero (flagged by
:func:`explainers.metrics.heatmap_validity`). Because bilinear upsampling is a convex
combination of pixels, upsample-then-minmax equals pytorch-grad-cam's
minmax-upsample-minmax, so the maps match that package to float precision.

Deviations from pytorch-grad-cam (on purpose):

* the whole batch is one forward and one ``autograd.grad`` call; the gradient is taken with
  respect to the captured activation only (see :class:`~explainers.hooks.LayerCapture`), so
  no parameter gradients and no back-propagation below the layer;
* the caller's ``train``/``eval`` mode and ``requires_grad`` flags are restored afterwards,
  and exceptions are never swallowed;
* targets are callables ``logits (N, C) -> (N,)`` (:mod:`explainers.targets`), not lists.

Example::

    cam = GradCAM(net, net.features_layer)
    maps = cam(images, ClassTarget(labels))        # (N, 28, 28) in [0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from explainers.hooks import (
    ExplainerInputError,
    LayerCapture,
    Progress,
    check_images,
    check_labels,
    check_scores,
    model_device,
    model_guard,
)
from explainers.targets import ClassTarget, Target, as_target

__all__ = ["GradCAM", "contrastive_gradcam", "default_contrast_weights"]


def default_contrast_weights() -> Tensor:
    """The probe weights of CDeepEx §3.2.1: 0.005, 0.010, ..., 2.000 (400 values)."""
    return torch.arange(1, 401, dtype=torch.float64) * 0.005


def _minmax(x: Tensor) -> Tensor:
    flat = x.flatten(1)
    lo = flat.min(1).values[:, None, None]
    x = x - lo
    hi = x.flatten(1).max(1).values[:, None, None]
    return x / (hi + 1e-7)


class GradCAM:
    """Grad-CAM maps for any conv layer of ``model``, batched, one target per image.

    Args:
        model: classifier ``(N, C, H, W) -> logits (N, C)``.
        layer: the conv layer (module or dotted submodule name), e.g. ``net.features_layer``.
        relu: apply the ReLU of the paper (``False`` keeps negative evidence).

    Calling it with ``images (N, C, H, W)`` and a target callable (or integer labels, meaning
    :class:`~explainers.targets.ClassTarget`) returns ``(N, H, W)`` maps in [0, 1], detached.
    """

    def __init__(self, model: nn.Module, layer: nn.Module | str, *, relu: bool = True) -> None:
        self.model = model
        self.layer = layer
        self.relu = relu

    def __call__(
        self,
        images: Tensor,
        targets: Target | Tensor | Sequence[int],
        *,
        progress: Progress | None = None,
    ) -> Tensor:
        check_images(images)
        maps, _ = self.maps_and_logits(images, [as_target(targets, images.shape[0])], progress=progress)
        return maps[0]

    def maps_and_logits(
        self,
        images: Tensor,
        targets: Sequence[Target],
        *,
        progress: Progress | None = None,
    ) -> tuple[list[Tensor], Tensor]:
        """One forward pass, one map per target: ``([(N, H, W), ...], logits (N, C))``."""
        check_images(images)
        n, _, height, width = images.shape
        with model_guard(self.model), LayerCapture(self.model, self.layer) as cap:
            x = images.to(model_device(self.model))
            with torch.enable_grad():
                logits = self.model(x)
                act = cap.activation
                if act is None:
                    raise RuntimeError("the Grad-CAM layer was not called by model.forward")
                if act.dim() != 4:
                    raise ExplainerInputError(
                        f"Grad-CAM needs a conv layer with (N, K, h, w) output, got {tuple(act.shape)}"
                    )
                maps = []
                for k, target in enumerate(targets):
                    scores = check_scores(target(logits), n)
                    (grad,) = torch.autograd.grad(
                        scores.sum(), act, retain_graph=k + 1 < len(targets), allow_unused=True
                    )
                    if grad is None:  # score does not depend on the layer: an all-zero map
                        grad = torch.zeros_like(act)
                    alpha = grad.mean(dim=(2, 3), keepdim=True)
                    cam = (alpha * act.detach()).sum(1, keepdim=True)
                    if self.relu:
                        cam = cam.clamp_min(0)
                    cam = F.interpolate(cam, size=(height, width), mode="bilinear", align_corners=False)
                    maps.append(_minmax(cam[:, 0]).to(images.dtype).to(images.device))
                    if progress is not None:
                        progress({"stage": "gradcam", "step": k + 1, "total": len(targets)})
        return maps, logits.detach()


@torch.no_grad()
def _probs_in_chunks(model: nn.Module, x: Tensor, chunk_size: int) -> Tensor:
    return torch.cat([torch.softmax(model(c), dim=1) for c in x.split(chunk_size)])


def contrastive_gradcam(
    model: nn.Module,
    layer: nn.Module | str,
    images: Tensor,
    true: Tensor | Sequence[int],
    probe: Tensor | Sequence[int],
    weights: Tensor | None = None,
    *,
    strength: float = 1.0,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    chunk_size: int = 1024,
    return_kept: bool = False,
    progress: Progress | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Grad-CAM shoe-horned into "why true and not probe?", as in CDeepEx §3.2.1.

    The dissertation: "we generate the explanation by first extracting the explanations for the
    true and probe classes. Then we assign different weights to each of these explanations and
    subtract them from each other. If imposing this explanation on the input image decreases the
    network probability for the true class and increases it for the probe class, we keep this
    explanation. The weights for the probe explanation we used are from 0.005 to 2 with
    increments of 0.005. The final explanation is the average of all the maps that satisfies
    the mentioned condition."

    With ``M_t``, ``M_p`` the Grad-CAM maps (each in [0, 1]) of the true and probe classes::

        M_w  = M_t - w * M_p                         for every w in weights (default 400 values)
        I_w  = clamp(I - strength * M_w, 0, 1)       "imposing" the map (broadcast over channels)
        keep = p_true(I_w) < p_true(I)  and  p_probe(I_w) > p_probe(I)
        out  = mean of the kept M_w                  (zeros where no w was kept)

    "Imposing" is not defined in the text. We read it as applying the map as a perturbation in
    the same polarity as the CDeepEx difference image: positive ``M_w`` (evidence for true over
    probe) is *removed* from the image, negative ``M_w`` (evidence for probe) is *added*. All
    ``N * len(weights)`` perturbed images are evaluated batched (in ``chunk_size`` chunks), one
    forward pass for both maps.

    Args:
        images: ``(N, C, H, W)``; ``true``, ``probe``: int ``(N,)``, ``probe != true``.
        weights: probe weights ``(W,)``; default :func:`default_contrast_weights`.
        clamp: pixel range after imposing; ``None`` for inputs that are not in [0, 1].

    Returns:
        ``(N, H, W)`` signed maps in ``[-max(weights), 1]``: positive = why true, negative = why
        probe (render with ``render.difference_png(image, -map)`` for the red-add / blue-remove
        convention). With ``return_kept=True`` also the ``(N, W)`` bool mask of kept weights.

    Example::

        cmap = contrastive_gradcam(net, net.features_layer, x, true=y, probe=p)
    """
    check_images(images)
    n = images.shape[0]
    weights = default_contrast_weights() if weights is None else torch.as_tensor(weights)
    if weights.dim() != 1 or weights.numel() == 0:
        raise ExplainerInputError(f"weights must be a non-empty 1-d tensor, got {tuple(weights.shape)}")
    true = check_labels(true, n, name="true")
    probe = check_labels(probe, n, name="probe")
    cam = GradCAM(model, layer)
    with model_guard(model):
        maps, logits = cam.maps_and_logits(images, [ClassTarget(true), ClassTarget(probe)])
        num_classes = logits.shape[1]
        true = check_labels(true, n, num_classes, name="true")
        probe = check_labels(probe, n, num_classes, name="probe")
        if bool((true == probe).any()):
            raise ExplainerInputError(
                f"probe equals true for images {(true == probe).nonzero().flatten().tolist()}"
            )
        m_true, m_probe = maps
        p0 = torch.softmax(logits.double(), 1).to(images.device)
        w = weights.to(images.dtype).to(images.device)
        contrast = m_true[:, None] - w[None, :, None, None] * m_probe[:, None]  # (N, W, H, W)
        imposed = images[:, None] - strength * contrast[:, :, None]  # (N, W, C, H, W)
        if clamp is not None:
            imposed = imposed.clamp(*clamp)
        device = model_device(model)
        probs = _probs_in_chunks(model, imposed.flatten(0, 1).to(device), chunk_size)
        probs = probs.double().to(images.device).view(n, w.numel(), num_classes)
        rows = torch.arange(n, device=images.device)
        p_true = probs[rows, :, true.to(images.device)]
        p_probe = probs[rows, :, probe.to(images.device)]
        kept = (p_true < p0[rows, true][:, None]) & (p_probe > p0[rows, probe][:, None])
        count = kept.sum(1).clamp_min(1).to(images.dtype)
        out = (contrast * kept[:, :, None, None].to(images.dtype)).sum(1) / count[:, None, None]
        if progress is not None:
            progress({"stage": "contrast", "step": 1, "total": 1, "kept": kept.sum(1).tolist()})
    return (out, kept) if return_kept else out
