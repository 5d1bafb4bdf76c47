"""Excitation backprop and its contrastive marginal winning probability (c-MWP).

Paper: J. Zhang, Z. Lin, J. Brandt, X. Shen, S. Sclaroff, "Top-down neural attention by
excitation backprop", ECCV 2016. The XNN paper (Qi, Khorram, Li, section 2.3 and 4.1) uses
c-MWP for its 1-Heatmap baseline (from the prediction ``ŷ``) and for one heatmap per x-feature.

The rule. Activations ``a_j >= 0`` of a layer feed neuron ``a_i`` of the layer above with weights
``w_ji``. The *marginal winning probability* (MWP) ``P`` starts at 1 on the top neuron and flows
down with only the positive (excitatory) weights::

    P(a_j | a_i) = a_j w_ji⁺ / Σ_j' a_j' w_j'i⁺             (0 where the denominator is 0)
    P(a_j)       = Σ_i P(a_j | a_i) P(a_i)

i.e. for a linear or convolutional layer ``Y⁺ = W⁺ a`` (no bias) and
``P_in = a ⊙ W⁺ᵀ (P_out / Y⁺)``. The total probability is conserved layer by layer.

Contrastive MWP. The *dual* of the top neuron has the negated input weights ``-w``; its MWP
``P̄`` flows down the same way. ``c-MWP = P - P̄``. As in the authors' Caffe code, the
difference is formed at the input of the top layer and then propagated once; because the rule is
linear in ``P`` this equals subtracting the two MWP maps at any lower layer.

The map. The (c-)MWP of the neurons of a chosen layer (the paper takes a conv layer, e.g.
``pool3`` of VGG, then upsamples) is summed over channels, its positive part kept, upsampled
bilinearly to the image size and **normalised per neuron and image so that its maximum is 1**
(an all-zero map stays zero). ``layer=None`` takes the MWP down to the input pixels.

Supported models (walked with forward hooks, so any ``forward`` built from these modules works,
also functional ``F.interpolate`` / ``torch.flatten``, passed on like a gradient):

* excitation rule: ``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``, ``nn.AvgPool1d/2d``,
  ``nn.AdaptiveAvgPool1d/2d``;
* passed on as a gradient (probability routing): ``nn.ReLU`` (also in-place), ``nn.MaxPool1d/2d``
  (winner takes all), ``nn.Flatten``, ``nn.Unflatten``, ``nn.Dropout`` (eval mode),
  ``nn.Identity``;
* skipped (``P_in = P_out``): ``nn.BatchNorm1d/2d`` (docs/DECISIONS.md, "ExcitationBP").

Any other leaf module raises :class:`ExcitationBPError`, and so does a call whose MWP mass at the
chosen layer exceeds 1 (branches merged functionally, e.g. a ResNet's ``x + f(x)``).

Deviations and choices:

* inputs of an excitation layer are clamped at 0 (the rule assumes ``a >= 0``: post-ReLU
  activations, images in [0, 1]); with ImageNet-normalised pixels take a conv layer, not
  ``layer=None``;
* the top layer must be an ``nn.Linear`` (the logits layer, found as the last ``nn.Linear``
  called by ``forward``, or given as ``top_layer``; for an XNN: its last embedding layer);
* an x-feature's map is computed whether the x-feature is active on that image or not (its
  contribution ``v_i E_i`` then says how much it matters).

Shapes: images ``(N, C, H, W)`` -> maps ``(N, H, W)`` (one per image) or ``(N, n, H, W)`` (one per
x-feature), float in [0, 1].

Example::

    >>> ebp = ExcitationBP(net, "relu1")                     # doctest: +SKIP
    >>> maps = ebp(images)                                   # (N, 28, 28), predicted class
    >>> xmaps = ebp.xnn_maps(xnn, images)                    # (N, 7, 28, 28), one per x-feature
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from explainers.hooks import (
    ExplainerInputError,
    LayerCapture,
    Progress,
    check_images,
    check_labels,
    model_device,
    model_guard,
    resolve_layer,
)
from explainers.xnn import XNN, capture_z

__all__ = [
    "ExcitationBP",
    "ExcitationBPError",
    "LayerMWP",
    "normalise_maps",
    "top_signals",
]

#: Mass above 1 by more than this means a branch duplicated probability.
MASS_TOLERANCE = 1e-3
_EPS = 1e-12

_EXCITED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
_ROUTED = (
    nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.Flatten, nn.Unflatten,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity,
)
_SKIPPED = (nn.BatchNorm1d, nn.BatchNorm2d)


class ExcitationBPError(ValueError):
    """The model cannot be explained by excitation backprop (unsupported layer, lost or
    duplicated probability, layer not between input and top layer)."""


# ----------------------------------------------------------------------------------------------
# Kernels


def _positive_op(module: nn.Module) -> Callable[[Tensor], Tensor]:
    """``a -> W⁺ a`` (no bias) for an excitation layer."""
    if isinstance(module, nn.Linear):
        w = module.weight.detach().clamp(min=0)
        return lambda a: F.linear(a, w)
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        if module.padding_mode != "zeros":
            raise ExcitationBPError(f"conv padding_mode {module.padding_mode!r} is not supported")
        w = module.weight.detach().clamp(min=0)
        conv = F.conv1d if isinstance(module, nn.Conv1d) else F.conv2d
        return lambda a: conv(a, w, None, module.stride, module.padding, module.dilation, module.groups)
    if isinstance(module, nn.AvgPool1d):
        return lambda a: F.avg_pool1d(a, module.kernel_size, module.stride, module.padding, module.ceil_mode, module.count_include_pad)
    if isinstance(module, nn.AvgPool2d):
        return lambda a: F.avg_pool2d(
            a, module.kernel_size, module.stride, module.padding, module.ceil_mode,
            module.count_include_pad, module.divisor_override,
        )
    if isinstance(module, nn.AdaptiveAvgPool1d):
        return lambda a: F.adaptive_avg_pool1d(a, module.output_size)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return lambda a: F.adaptive_avg_pool2d(a, module.output_size)
    raise ExcitationBPError(f"no excitation rule for {type(module).__name__}")  # pragma: no cover


class _Excite(torch.autograd.Function):
    """Forward: the layer's own output. Backward: ``P_in = a⁺ ⊙ W⁺ᵀ (P_out / (W⁺ a⁺))``."""

    @staticmethod
    def forward(ctx: Any, inp: Tensor, out: Tensor, positive: Callable[[Tensor], Tensor]) -> Tensor:
        ctx.save_for_backward(inp)
        ctx.positive = positive
        return out.clone()

    @staticmethod
    def backward(ctx: Any, p_out: Tensor) -> tuple[Tensor, None, None]:
        (inp,) = ctx.saved_tensors
        a = inp.detach().clamp(min=0)
        with torch.enable_grad():
            leaf = a.clone().requires_grad_(True)
            y = ctx.positive(leaf)
            ratio = torch.where(y > _EPS, p_out / y.clamp(min=_EPS), torch.zeros_like(y))
            (back,) = torch.autograd.grad(y, leaf, ratio)
        return a * back, None, None


class _PassThrough(torch.autograd.Function):
    """Forward: the layer's own output. Backward: ``P_in = P_out`` (a skipped BatchNorm)."""

    @staticmethod
    def forward(ctx: Any, inp: Tensor, out: Tensor) -> Tensor:
        return out.clone()

    @staticmethod
    def backward(ctx: Any, p_out: Tensor) -> tuple[Tensor, None]:
        return p_out, None


def _excite_hook(module: nn.Module, args: tuple, output: Any) -> Tensor:
    return _Excite.apply(args[0], output.detach(), _positive_op(module))


def _skip_hook(module: nn.Module, args: tuple, output: Any) -> Tensor:
    if args[0].shape != output.shape:  # pragma: no cover - BatchNorm keeps shapes
        raise ExcitationBPError(f"{type(module).__name__} changed the shape; cannot skip it")
    return _PassThrough.apply(args[0], output.detach())


def _check_supported(*models: nn.Module) -> None:
    bad = []
    for model in models:
        for name, module in model.named_modules():
            if next(module.children(), None) is not None:
                continue  # containers: their leaves are checked
            if not isinstance(module, (*_EXCITED, *_ROUTED, *_SKIPPED)):
                bad.append(f"{name or '<model>'} ({type(module).__name__})")
    if bad:
        raise ExcitationBPError(
            "ExcitationBP does not support these layers: " + ", ".join(bad[:10])
            + ". Supported: Linear, Conv1d/2d, AvgPool, AdaptiveAvgPool, ReLU, MaxPool, Flatten, "
            "Dropout (eval), Identity, BatchNorm (skipped)"
        )


@contextlib.contextmanager
def _excitation_hooks(*models: nn.Module) -> Iterator[None]:
    handles = []
    try:
        for model in models:
            for module in model.modules():
                if isinstance(module, _EXCITED):
                    handles.append(module.register_forward_hook(_excite_hook))
                elif isinstance(module, _SKIPPED):
                    handles.append(module.register_forward_hook(_skip_hook))
        yield
    finally:
        for h in handles:
            h.remove()


class _InputRecorder:
    """Forward pre-hook on every ``nn.Linear``: remembers the input of the last call (the top
    layer's input ``h``) and which module it was."""

    def __init__(self, model: nn.Module, only: nn.Module | None) -> None:
        self.targets = [only] if only is not None else [m for m in model.modules() if isinstance(m, nn.Linear)]
        self.module: nn.Module | None = None  # the last of ``targets`` called
        self.input: Tensor | None = None
        self._handles: list[Any] = []

    def _hook(self, module: nn.Module, args: tuple) -> None:
        self.module, self.input = module, args[0]

    def __enter__(self) -> _InputRecorder:
        self._handles = [m.register_forward_pre_hook(self._hook) for m in self.targets]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def top_signals(h: Tensor, weight_rows: Tensor) -> tuple[Tensor, Tensor]:
    """MWP of the top neuron and of its dual at the top layer's input.

    ``h`` ``(N, D)`` activations entering the top layer, ``weight_rows`` ``(N, D)`` the input
    weights of each image's top neuron. Returns ``(P, P̄)``, each ``(N, D)``::

        P  = h⁺ w⁺ / Σ h⁺ w⁺        P̄ = h⁺ (-w)⁺ / Σ h⁺ (-w)⁺        (rows of zeros if Σ = 0)
    """
    a = h.detach().clamp(min=0)
    pos = a * weight_rows.clamp(min=0)
    neg = a * (-weight_rows).clamp(min=0)

    def _norm(x: Tensor) -> Tensor:
        total = x.sum(1, keepdim=True)
        return torch.where(total > _EPS, x / total.clamp(min=_EPS), torch.zeros_like(x))

    return _norm(pos), _norm(neg)


def normalise_maps(maps: Tensor) -> Tensor:
    """Positive part, then divided by the maximum over the last two dims (all-zero stays zero)."""
    maps = maps.clamp(min=0)
    peak = maps.flatten(-2).amax(-1)[..., None, None]
    return torch.where(peak > 0, maps / peak.clamp(min=1e-30), torch.zeros_like(maps))


@dataclass(frozen=True)
class LayerMWP:
    """Raw per-neuron results at the chosen layer (``layer=None``: the input), detached.

    Attributes:
        target: MWP of the top neuron, shape of the layer's output (``(N, K, h, w)``).
        dual: MWP of its dual (negated top weights), same shape.
        contrastive: ``target - dual``.
        mass: ``(N,)`` total MWP of the top neuron reaching the layer (1, or 0 if no excitation).
    """

    target: Tensor
    dual: Tensor
    contrastive: Tensor
    mass: Tensor


def _cat(parts: Sequence[LayerMWP]) -> LayerMWP:
    if len(parts) == 1:
        return parts[0]
    return LayerMWP(*(torch.cat([getattr(p, f) for p in parts]) for f in ("target", "dual", "contrastive", "mass")))


def _features_of(xnn: XNN) -> tuple[nn.Module, nn.Linear, str]:
    """``(layers below the x-layer, the x-layer nn.Linear, the name of Z)`` of an XNN."""
    encoder = getattr(xnn, "encoder", None)
    if not isinstance(encoder, nn.Sequential):
        raise ExplainerInputError("xnn must have an nn.Sequential `encoder` (an explainers.xnn.XNN)")
    linears = [(i, m) for i, m in enumerate(encoder) if isinstance(m, nn.Linear)]
    if not linears:
        raise ExplainerInputError("the XNN encoder has no nn.Linear layer")
    if xnn.layer is None:
        raise ExplainerInputError("this XNN has no layer name; train it with train_xnn or set .layer")
    position, top = linears[-1]
    return nn.Sequential(*list(encoder)[:position]), top, xnn.layer


class ExcitationBP:
    """Contrastive excitation backprop maps, batched, for class neurons or XNN x-features.

    Args:
        model: classifier ``(N, C, H, W) -> logits (N, C)`` built from supported layers.
        layer: where to read the MWP: a submodule (or its dotted name) whose output is spatial
            ``(N, K, h, w)``, e.g. ``"relu1"`` of MnistNet; ``None`` for the input pixels.
        contrastive: c-MWP (``True``, the paper's) or plain MWP of the top neuron.
        top_layer: the layer whose output neuron is explained; default the last ``nn.Linear``
            called in ``forward`` (the logits layer).
        batch_size: images per forward pass (memory bound; results do not depend on it).

    ``ebp(images, classes=None)`` -> ``(N, H, W)`` maps (the 1-Heatmap; ``classes`` default to the
    predicted ones). ``ebp.xnn_maps(xnn, images, features=None)`` -> ``(N, n, H, W)``.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module | str | None,
        *,
        contrastive: bool = True,
        top_layer: nn.Module | str | None = None,
        batch_size: int = 64,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = model
        self.layer = layer
        self.contrastive = contrastive
        self.top_layer = top_layer
        self.batch_size = int(batch_size)

    # -- public --------------------------------------------------------------------------------

    def __call__(self, images: Tensor, classes: Tensor | Sequence[int] | int | None = None) -> Tensor:
        raw, _ = self.class_mwp(images, classes)
        return self._to_maps(raw, images)

    def class_mwp(
        self, images: Tensor, classes: Tensor | Sequence[int] | int | None = None
    ) -> tuple[LayerMWP, Tensor]:
        """Raw MWP at the layer for output neurons ``classes`` (default: predicted); also the
        predicted classes ``(N,)``."""
        check_images(images)
        n = images.shape[0]
        if classes is not None:
            classes = check_labels(classes, n, name="classes")
        parts = [
            self._class_chunk(images[i : i + self.batch_size], None if classes is None else classes[i : i + self.batch_size])
            for i in range(0, n, self.batch_size)
        ]
        return _cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _class_chunk(self, images: Tensor, classes: Tensor | None) -> tuple[LayerMWP, Tensor]:
        top = None if self.top_layer is None else resolve_layer(self.model, self.top_layer)
        with self._session(images) as (x, leaf_of):
            with _InputRecorder(self.model, top) as rec:
                logits = self.model(x)
            if rec.module is None or rec.input is None:
                raise ExcitationBPError("the model's forward called no nn.Linear top layer")
            if not isinstance(rec.module, nn.Linear):
                raise ExcitationBPError(f"the top layer must be an nn.Linear, got {type(rec.module).__name__}")
            if logits.dim() != 2:
                raise ExcitationBPError(f"model must return logits (N, C), got {tuple(logits.shape)}")
            predicted = logits.detach().argmax(1)
            n, num_classes = logits.shape
            cls = predicted if classes is None else check_labels(classes, n, num_classes, name="classes")
            weight = rec.module.weight.detach()
            if cls.max() >= weight.shape[0]:
                raise ExcitationBPError("classes index beyond the top layer's outputs")
            h = rec.input
            if h.dim() != 2:
                raise ExcitationBPError(f"top layer input must be (N, D), got {tuple(h.shape)}")
            raw = self._backward(h, weight[cls.to(weight.device)], leaf_of(), last=True)
        return raw, predicted.cpu()

    def xnn_maps(
        self,
        xnn: XNN,
        images: Tensor,
        features: Sequence[int] | None = None,
        *,
        progress: Progress | None = None,
    ) -> Tensor:
        """``(N, n, H, W)`` c-MWP maps from each x-feature neuron (``features`` default: all).

        The MWP flows from x-feature ``i`` through the XNN embedding into its layer ``Z`` of the
        classifier, then down the classifier to ``layer``. ``xnn`` is an
        :class:`explainers.xnn.XNN` whose ``layer`` names ``Z`` (its encoder ends in the x-feature
        ``nn.Linear``).
        """
        raws = self.xnn_mwp(xnn, images, features, progress=progress)
        return torch.stack([self._to_maps(r, images) for r in raws], dim=1)

    def xnn_mwp(
        self,
        xnn: XNN,
        images: Tensor,
        features: Sequence[int] | None = None,
        *,
        progress: Progress | None = None,
    ) -> list[LayerMWP]:
        """Raw per-x-feature MWP at the layer, one :class:`LayerMWP` per feature."""
        check_images(images)
        below, top, z_layer = _features_of(xnn)
        n_features = top.out_features
        feats = list(range(n_features)) if features is None else [int(f) for f in features]
        if not feats or any(f < 0 or f >= n_features for f in feats):
            raise ExplainerInputError(f"features must be in [0, {n_features}), got {feats}")
        _check_supported(below)
        starts = range(0, images.shape[0], self.batch_size)
        chunks: list[list[LayerMWP]] = []
        for c, start in enumerate(starts):
            out: list[LayerMWP] = []
            with model_guard(xnn), _excitation_hooks(below), self._session(images[start : start + self.batch_size]) as (x, leaf_of):
                with capture_z(self.model, z_layer) as zcap:
                    self.model(x)
                if zcap.value is None:
                    raise ExcitationBPError(f"the XNN's layer {z_layer!r} was not called by model.forward")
                with _InputRecorder(xnn, top) as rec:
                    xnn.embed(zcap.value)
                h = rec.input
                if h is None:  # pragma: no cover - embed always calls the x-layer
                    raise ExcitationBPError("the XNN's x-layer was not called by its encoder")
                for k, f in enumerate(feats):
                    rows = top.weight.detach()[f].expand(h.shape[0], -1)
                    out.append(self._backward(h, rows, leaf_of(), last=k + 1 == len(feats)))
                    if progress is not None:
                        progress({"stage": "excitation_bp", "step": c * len(feats) + k + 1, "total": len(starts) * len(feats)})
            chunks.append(out)
        return [_cat([chunk[k] for chunk in chunks]) for k in range(len(feats))]

    # -- internals -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self, images: Tensor) -> Iterator[tuple[Tensor, Callable[[], Tensor]]]:
        """Guard the model, install hooks, make the leaf at ``layer`` (or the input)."""
        _check_supported(self.model)
        device = model_device(self.model)
        with model_guard(self.model), _excitation_hooks(self.model), torch.enable_grad():
            if self.layer is None:
                x = images.detach().to(device).clone().requires_grad_(True)
                yield x, lambda: x
            else:
                # registered after the excitation hooks, so it sees (and cuts) their output
                with LayerCapture(self.model, self.layer) as cap:
                    x = images.detach().to(device)

                    def leaf() -> Tensor:
                        if cap.activation is None:
                            raise ExcitationBPError("the map layer was not called by model.forward")
                        return cap.activation

                    yield x, leaf

    def _backward(self, h: Tensor, rows: Tensor, leaf: Tensor, *, last: bool) -> LayerMWP:
        if not h.requires_grad:
            raise ExcitationBPError("the map layer does not lie below the top layer (no MWP reaches it)")
        p_target, p_dual = top_signals(h, rows.to(h.dtype))
        grads = []
        for i, signal in enumerate((p_target, p_dual)):
            (g,) = torch.autograd.grad(h, leaf, signal, retain_graph=not (last and i == 1), allow_unused=True)
            if g is None:
                raise ExcitationBPError("the map layer does not lie below the top layer (no MWP reaches it)")
            grads.append(g.detach())
        target, dual = grads
        mass = target.flatten(1).sum(1)
        if bool((mass > 1 + MASS_TOLERANCE).any()) or bool((dual.flatten(1).sum(1) > 1 + MASS_TOLERANCE).any()):
            raise ExcitationBPError(
                f"MWP mass {float(mass.max()):.4f} > 1 reached the map layer: probability was "
                "duplicated, so the model has branches merged by functional ops (e.g. residual "
                "connections) that excitation backprop's layer walk does not support"
            )
        return LayerMWP(target=target, dual=dual, contrastive=target - dual, mass=mass)

    def _to_maps(self, raw: LayerMWP, images: Tensor) -> Tensor:
        signal = raw.contrastive if self.contrastive else raw.target
        height, width = images.shape[-2:]
        if self.layer is None:
            maps = signal.sum(1)
        else:
            if signal.dim() != 4:
                raise ExcitationBPError(
                    f"the map layer must have a spatial output (N, K, h, w), got {tuple(signal.shape)}"
                )
            maps = signal.sum(1, keepdim=True).clamp(min=0)
            maps = F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
        return normalise_maps(maps).to(images.dtype).to(images.device)
