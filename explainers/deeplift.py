"""DeepLIFT with the rescale rule: the 1-Heatmap baseline of the XNN paper's complementary study.

Paper: A. Shrikumar, P. Greenside, A. Kundaje, "Learning important features through propagating
activation differences", ICML 2017 (the XNN paper's reference [34], section 4.1).

Every quantity is taken as a difference from a reference (baseline) input ``x₀``:
``Δx = x - x₀``, ``Δy = f(x) - f(x₀)``. *Multipliers* ``m = Δy/Δx`` are chained like gradients:

* linear layers (``Linear``, ``Conv``, ``BatchNorm`` in eval mode, average pooling, ``Flatten``,
  additions, bilinear resizing ...): the ordinary gradient, which is exact for them;
* element-wise non-linearities (``ReLU``, ``LeakyReLU``, ``ELU``, ``Sigmoid``, ``Tanh``,
  ``Softplus``, ``SiLU``, ``GELU``): the **rescale rule** ``m = Δout / Δin``, with the
  gradient where ``|Δin| < 1e-10``;
* max pooling (``MaxPool1d/2d``): captum's rule: ``Δout`` is split into the part reached with the
  input's arg-max and the part reached with the reference's (``max(y, y₀) - y₀`` and
  ``y - max(y, y₀)``), each routed to its arg-max position and divided by ``Δin`` there.

Attributions are ``Δx ⊙ m``. *Completeness* (summation-to-delta):
``Σ attributions = target(f(x)) - target(f(x₀))`` for every target that is linear in the
logits (``ClassTarget``, ``ContrastTarget``); :class:`DeepLiftResult` reports the gap as
``delta``. It is exact up to float error when every non-linearity of the forward pass is one of
the modules above (non-linear functional calls such as ``F.relu`` inside ``forward`` fall back to
the gradient and show up in ``delta``).

Implementation: one forward pass on ``cat([x, x₀])``; forward hooks swap each non-linear
module's output for an autograd function that back-propagates the DeepLIFT multiplier, per call.
Hand-written rather than captum's ``DeepLift``, whose backward hooks break on a module used
twice in one forward (one ``nn.ReLU`` for two layers, as in torchvision's ResNet blocks); the
details and the comparison with captum: docs/DECISIONS.md, "DeepLIFT". Any other leaf module
that is not known to be linear raises :class:`DeepLiftError`.

Shapes: images ``(N, C, H, W)``; baselines broadcastable to it (default zeros: black for
MnistNet, the mean colour for ImageNet-normalised inputs) -> attributions ``(N, C, H, W)``.
The heatmap (``DeepLift(...)(images)``) sums over channels, keeps the positive part and divides
by the per-image maximum (all-zero stays zero), like :mod:`explainers.excitation_bp`.

Example::

    >>> dl = DeepLift(net)                                      # doctest: +SKIP
    >>> res = dl.attribute(images, ClassTarget(labels))          # doctest: +SKIP
    >>> res.delta                                                # doctest: +SKIP
    tensor([ 1.2e-07, -4.8e-07])                                 # Σ attributions - Δscore
    >>> maps = dl(images)                                        # doctest: +SKIP
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
    check_images,
    check_scores,
    model_device,
    model_guard,
)
from explainers.targets import ClassTarget, Target, as_target

__all__ = ["DeepLift", "DeepLiftError", "DeepLiftResult"]

_EPS = 1e-10

#: module type -> (that module -> its element-wise function); keyed by exact type, so each
#: factory gets a module of its key's type (hence ``Any``: the key fixes the attributes).
_ELEMENTWISE: dict[type[nn.Module], Callable[[Any], Callable[[Tensor], Tensor]]] = {
    nn.ReLU: lambda m: F.relu,
    nn.LeakyReLU: lambda m: lambda t: F.leaky_relu(t, m.negative_slope),
    nn.ELU: lambda m: lambda t: F.elu(t, m.alpha),
    nn.Sigmoid: lambda m: torch.sigmoid,
    nn.Tanh: lambda m: torch.tanh,
    nn.Softplus: lambda m: lambda t: F.softplus(t, m.beta, m.threshold),
    nn.SiLU: lambda m: F.silu,
    nn.GELU: lambda m: lambda t: F.gelu(t, approximate=m.approximate),
}
_POOLS = (nn.MaxPool1d, nn.MaxPool2d)
_LINEAR = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
    nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.ZeroPad2d, nn.ConstantPad2d,
)


class DeepLiftError(ValueError):
    """The model has a layer that DeepLIFT's rules here do not cover."""


# ----------------------------------------------------------------------------------------------
# Kernels


def _ratio(num: Tensor, den: Tensor) -> tuple[Tensor, Tensor]:
    """``(num / den where |den| > eps else 0, that mask)``: a DeepLIFT multiplier and where it
    is defined (elsewhere the caller falls back to the gradient)."""
    ok = den.abs() > _EPS
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(den)), ok


class _PairRule(torch.autograd.Function):
    """A layer on ``cat([x, x₀])`` whose forward output ``out`` is kept and whose backward is a
    DeepLIFT rule; ``fn`` (the layer as a function of its input) is kept on ``ctx.fn``."""

    @staticmethod
    def forward(ctx: Any, inp: Tensor, out: Tensor, fn: Callable[[Tensor], Any]) -> Tensor:
        ctx.save_for_backward(inp, out)
        ctx.fn = fn
        return out.clone()


class _Rescale(_PairRule):
    """Element-wise non-linearity on ``cat([x, x₀])``: backward multiplies by ``Δout/Δin``."""

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        inp, out = ctx.saved_tensors
        n = inp.shape[0] // 2
        d_in = inp[:n] - inp[n:]
        d_out = out[:n] - out[n:]
        with torch.enable_grad():
            leaf = inp.detach().requires_grad_(True)
            (plain,) = torch.autograd.grad(ctx.fn(leaf), leaf, grad)
        multiplier, ok = _ratio(d_out, d_in)
        return torch.where(torch.cat([ok, ok]), grad * torch.cat([multiplier, multiplier]), plain), None, None


def _scatter_add_pool(values: Tensor, indices: Tensor, input_shape: torch.Size) -> Tensor:
    """Sum ``values`` into the flat spatial positions ``indices`` (overlapping windows add up,
    unlike ``max_unpool``, which overwrites)."""
    n, c = input_shape[:2]
    flat = values.new_zeros(n, c, int(torch.tensor(input_shape[2:]).prod()))
    flat.scatter_add_(2, indices.flatten(2), values.flatten(2))
    return flat.view(input_shape)


class _MaxPool(_PairRule):
    """Max pooling on ``cat([x, x₀])`` with captum's DeepLIFT rule (see module docstring);
    ``fn`` is the pooling with ``return_indices=True``."""

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        inp, out = ctx.saved_tensors
        n = inp.shape[0] // 2
        d_in = inp[:n] - inp[n:]
        _, indices = ctx.fn(inp)
        y, y0 = out[:n], out[n:]
        ymax = torch.maximum(y, y0)
        g, g0 = grad[:n], grad[n:]
        routed = _scatter_add_pool(g * (ymax - y0), indices[:n], d_in.shape) + _scatter_add_pool(
            g0 * (y - ymax), indices[n:], d_in.shape
        )
        plain = _scatter_add_pool(grad, indices, inp.shape)
        multiplier, ok = _ratio(routed, d_in)
        return torch.where(torch.cat([ok, ok]), torch.cat([multiplier, multiplier]), plain), None, None


def _pool_fn(module: nn.MaxPool1d | nn.MaxPool2d) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    pool = F.max_pool1d if isinstance(module, nn.MaxPool1d) else F.max_pool2d
    return lambda t: pool(
        t, module.kernel_size, module.stride, module.padding, module.dilation,
        ceil_mode=module.ceil_mode, return_indices=True,
    )


class _Hooks:
    """Forward pre-hooks copy the input of in-place modules; forward hooks swap the output."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.handles: list[Any] = []
        self._saved: dict[int, Tensor] = {}

    def _pre(self, module: nn.Module, args: tuple) -> tuple:
        # keep the true input: an in-place module would overwrite it
        self._saved[id(module)] = args[0]
        return (args[0].clone(), *args[1:])

    def _post(self, module: nn.Module, args: tuple, output: Any) -> Tensor:
        inp = self._saved.pop(id(module), args[0])
        if isinstance(module, _POOLS):
            return _MaxPool.apply(inp, output.detach(), _pool_fn(module))
        fn = _ELEMENTWISE[type(module)](module)
        return _Rescale.apply(inp, output.detach(), fn)

    def __enter__(self) -> _Hooks:
        bad = []
        for name, module in self.model.named_modules():
            if next(module.children(), None) is not None:
                continue
            if type(module) in _ELEMENTWISE or isinstance(module, _POOLS):
                self.handles.append(module.register_forward_pre_hook(self._pre))
                self.handles.append(module.register_forward_hook(self._post))
            elif not isinstance(module, _LINEAR):
                bad.append(f"{name or '<model>'} ({type(module).__name__})")
        if bad:
            self.__exit__()
            raise DeepLiftError(
                "DeepLIFT has no rule for these layers: " + ", ".join(bad[:10])
                + f". Non-linear: {', '.join(t.__name__ for t in _ELEMENTWISE)}, MaxPool1d/2d; "
                "linear (gradient): Linear, Conv, BatchNorm (eval), AvgPool, Flatten, Dropout (eval)"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        self._saved.clear()


@contextlib.contextmanager
def _deeplift_hooks(model: nn.Module) -> Iterator[None]:
    with _Hooks(model):
        yield


# ----------------------------------------------------------------------------------------------
# Public


@dataclass(frozen=True)
class DeepLiftResult:
    """``attributions (N, C, H, W)``; ``scores (N,)`` = target(f(x)); ``baseline_scores (N,)`` =
    target(f(x₀)); ``delta (N,)`` = Σ attributions - (scores - baseline_scores), ~0 when
    completeness holds; ``predicted (N,)`` the classes predicted for ``x``. All detached."""

    attributions: Tensor
    scores: Tensor
    baseline_scores: Tensor
    delta: Tensor
    predicted: Tensor


class _RowsOf:
    """A target for the whole batch applied to one chunk of it. Targets score each image from
    its own row of logits only (:mod:`explainers.targets`), so the chunk's logits are placed at
    their rows of an otherwise zero ``(N, C)`` tensor and the chunk's scores are read back."""

    def __init__(self, target: Target, chunk: slice, n_total: int) -> None:
        self.target, self.chunk, self.n_total = target, chunk, n_total

    def __call__(self, logits: Tensor) -> Tensor:
        start = self.chunk.start
        before = logits.new_zeros(start, logits.shape[1])
        after = logits.new_zeros(self.n_total - start - logits.shape[0], logits.shape[1])
        scores = check_scores(self.target(torch.cat([before, logits, after])), self.n_total)
        return scores[start : start + logits.shape[0]]


class DeepLift:
    """DeepLIFT (rescale rule) for a classifier ``(N, C, H, W) -> logits (N, C)``.

    Args:
        model: the classifier.
        baseline: default reference input: a float (every pixel) or a tensor broadcastable to
            the images.
        batch_size: images per forward pass (each is run with its baseline, so ``2 x`` rows);
            memory bound only, results do not depend on it.

    ``attribute(images, targets=None, baselines=None)`` -> :class:`DeepLiftResult`
    (``targets``: a callable ``logits -> (N,)`` from :mod:`explainers.targets`, integer labels,
    or ``None`` for the predicted classes). ``dl(images, targets=None)`` -> ``(N, H, W)``
    heatmaps in [0, 1].
    """

    def __init__(self, model: nn.Module, *, baseline: float | Tensor = 0.0, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = model
        self.baseline = baseline
        self.batch_size = int(batch_size)

    def __call__(self, images: Tensor, targets: Target | Tensor | Sequence[int] | int | None = None) -> Tensor:
        attributions = self.attribute(images, targets).attributions
        maps = attributions.sum(1).clamp(min=0)
        peak = maps.flatten(1).amax(1)[:, None, None]
        return torch.where(peak > 0, maps / peak.clamp(min=1e-30), torch.zeros_like(maps))

    def attribute(
        self,
        images: Tensor,
        targets: Target | Tensor | Sequence[int] | int | None = None,
        baselines: float | Tensor | None = None,
    ) -> DeepLiftResult:
        check_images(images)
        n = images.shape[0]
        device = model_device(self.model)
        base = self.baseline if baselines is None else baselines
        x = images.detach().to(device)
        try:
            x0 = torch.broadcast_to(torch.as_tensor(base, dtype=x.dtype, device=device), x.shape)
        except RuntimeError as exc:
            raise ExplainerInputError(
                f"baselines of shape {tuple(torch.as_tensor(base).shape)} do not broadcast to images {tuple(x.shape)}"
            ) from exc
        if not bool(torch.isfinite(x0).all()):
            raise ExplainerInputError("baselines contain NaN or infinite values")
        whole = None if targets is None else as_target(targets, n)
        parts = []
        with model_guard(self.model), _deeplift_hooks(self.model), torch.enable_grad():
            for start in range(0, n, self.batch_size):
                chunk = slice(start, start + self.batch_size)
                target = whole if whole is None or n <= self.batch_size else _RowsOf(whole, chunk, n)
                parts.append(self._chunk(x[chunk], x0[chunk], target))
        attributions, scores, baseline_scores, predicted = (torch.cat(t) for t in zip(*parts, strict=True))
        delta = attributions.flatten(1).sum(1) - (scores - baseline_scores)
        out_device = images.device
        return DeepLiftResult(
            attributions=attributions.to(out_device), scores=scores.to(out_device),
            baseline_scores=baseline_scores.to(out_device), delta=delta.to(out_device),
            predicted=predicted.to(out_device),
        )

    def _chunk(self, x: Tensor, x0: Tensor, targets: Target | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        n = x.shape[0]
        both = torch.cat([x, x0]).requires_grad_(True)
        logits = self.model(both)
        if logits.dim() != 2 or logits.shape[0] != 2 * n:
            raise ExplainerInputError(f"model must return logits (N, C), got {tuple(logits.shape)}")
        predicted = logits[:n].detach().argmax(1)
        target = ClassTarget(predicted) if targets is None else targets
        # the seed multiplier d target / d logits, the same for both halves (exact for targets
        # linear in the logits)
        head = logits[:n].detach().requires_grad_(True)
        scores = check_scores(target(head), n)
        (seed,) = torch.autograd.grad(scores.sum(), head)
        baseline_scores = target(logits[n:].detach())
        (grad,) = torch.autograd.grad(logits, both, torch.cat([seed, seed]))
        return ((x - x0) * grad[:n]).detach(), scores.detach(), baseline_scores.detach(), predicted
