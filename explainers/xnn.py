"""XNN: an explanation network with the sparse reconstruction autoencoder (SRAE).

Paper: Z. Qi, S. Khorram, L. Fuxin, "Embedding Deep Networks into Visual Explanations"
(XNN), section 2, equation 5. The XNN is attached to a fully connected layer ``Z`` of a frozen
classifier. It embeds ``Z`` into a few *x-features* ``E`` and predicts the classifier's logits
``ŷ`` linearly from them, ``ŷ ≈ vᵀE``, so each x-feature's *contribution* to class ``c`` is
``v_ci · E_i``. A decoder reconstructs ``Z`` from ``E``. Training minimises (equation 5)::

    L = 1/M Σ_m ||vᵀE(Z_m) - ŷ_m||²                                  faithfulness (on logits)
      + β · 1/S_z Σ_k log(1 + q · Q_k),  Q_k = 1/M Σ_m (Z̃_mk - Z_mk)²     sparse reconstruction
      + η · 1/(n(n-1)) Σ_{l≠l'} (E_lᵀE_l' / (||E_l|| ||E_l'||))²           pull-away

where ``E_l`` is the column of x-feature ``l`` over the training examples. The baselines of the
paper's ablation (section 4.2, Table 1) are ``mode="nn"`` (no reconstruction term) and
``mode="sae"`` (plain reconstruction, ``β · 1/S_z Σ_k Q_k``); pass ``eta=0`` for them (the
paper's NN and SAE have no pull-away term). Settings: :class:`XNNConfig`.

Architecture (section 4.2, "800, 100, n hidden units"): encoder
``S_z -> 800 -> ReLU -> 100 -> ReLU -> n -> softplus``, ``v``: ``n -> C`` linear *without bias*
(the contributions add up to the approximated logit exactly), decoder
``n -> 100 -> ReLU -> 800 -> ReLU -> S_z``.

Choices the paper leaves open (the reasons: docs/DECISIONS.md, "XNN"):

* the x-layer ends in a softplus (``x_activation="softplus"``), so ``E > 0``; ``"relu"`` and
  ``"linear"`` are there too;
* every encoder layer followed by a ReLU is rescaled on the training ``Z`` (median 0, standard
  deviation 1 per unit) and ``v`` starts at zero;
* ``Q_k`` and the pull-away cosines are estimated per mini-batch (``batch_size=None``: the whole
  set, as in the paper); ``Z`` in its own units, so ``q`` is in ``1/Z²``;
* defaults ``beta = q = eta = 1``, Adam ``lr = 1e-3``, 1000 full-batch epochs, seeded inside
  ``torch.random.fork_rng``; ``Z`` with more than two dims is flattened.

The layer ``Z`` is named like a submodule (``"relu3"``: its output) or ``"name:input"`` (e.g.
``"fc:input"`` for a torchvision ResNet); :func:`penultimate_layer` gives the input of the last
``nn.Linear``. :func:`normalise_contributions` divides ``v_ci E_i`` by ``Σ_i |v_ci E_i|`` per
image (signs kept, absolute values add up to 1).

Shapes: ``Z`` ``(N, S_z)``, logits ``(N, C)``, ``E`` ``(N, n)``, contributions ``(N, n)``.

Example::

    >>> net = MnistNet(4)                                                   # doctest: +SKIP
    >>> cfg = XNNConfig(n_features=7, epochs=500, seed=0)                   # doctest: +SKIP
    >>> xnn = train_xnn(net, "relu3", images, config=cfg)                   # doctest: +SKIP
    >>> out = xnn.explain(net, images[:5])                                  # doctest: +SKIP
    >>> out.contributions.shape, out.normalised.abs().sum(1)                # doctest: +SKIP
    (torch.Size([5, 7]), tensor([1., 1., 1., 1., 1.]))
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from explainers.hooks import (
    ExplainerInputError,
    Progress,
    check_images,
    check_labels,
    model_device,
    model_guard,
    resolve_layer,
)
from explainers.nets.checkpoints import register_architecture

__all__ = [
    "XNN",
    "XNNConfig",
    "XNNExplanation",
    "capture_z",
    "extract_z",
    "faithfulness_loss",
    "fit_xnn",
    "normalise_contributions",
    "penultimate_layer",
    "pull_away",
    "reconstruction_loss",
    "train_xnn",
    "xnn_loss",
]

logger = logging.getLogger(__name__)

Mode = Literal["srae", "nn", "sae"]
MODES = ("srae", "nn", "sae")
XActivation = Literal["softplus", "relu", "linear"]
X_ACTIVATIONS = ("softplus", "relu", "linear")


def _one_of(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclass(frozen=True)
class XNNConfig:
    """Settings of :func:`fit_xnn` and :func:`train_xnn` (equation 5 and its optimiser).

    Attributes:
        n_features: ``n``, the number of x-features (7 in the human study, 5 for the metrics).
        epochs: passes over the training ``Z``.
        beta: weight of the reconstruction term.
        q: the sparsity scale of SRAE's ``log(1 + q Q_k)``, in units of ``1/Z²``.
        eta: weight of the pull-away term (0 for the paper's NN and SAE baselines).
        mode: ``"srae"`` (the paper's), ``"nn"`` (no reconstruction term) or ``"sae"`` (plain
            reconstruction).
        seed: initialisation and shuffling, inside ``torch.random.fork_rng``.
        lr: Adam's step size.
        batch_size: examples per step; ``None`` trains full-batch (exact ``Q_k`` and pull-away).
        hidden: encoder hidden sizes (decoder mirrored), the paper's ``(800, 100)``.
        x_activation: activation of the x-layer, ``"softplus"`` (``E > 0``), ``"relu"`` or
            ``"linear"``.
    """

    n_features: int = 7
    epochs: int = 1000
    beta: float = 1.0
    q: float = 1.0
    eta: float = 1.0
    mode: Mode = "srae"
    seed: int = 0
    lr: float = 1e-3
    batch_size: int | None = None
    hidden: tuple[int, ...] = (800, 100)
    x_activation: XActivation = "softplus"

    def __post_init__(self) -> None:
        _one_of("mode", self.mode, MODES)
        _one_of("x_activation", self.x_activation, X_ACTIVATIONS)
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.n_features < 1:
            raise ValueError(f"n_features must be at least 1, got {self.n_features}")
        if self.beta < 0 or self.q <= 0 or self.eta < 0:
            raise ValueError(f"need beta >= 0, q > 0, eta >= 0; got beta={self.beta}, q={self.q}, eta={self.eta}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))


# ----------------------------------------------------------------------------------------------
# The layer Z


def layer_name(model: nn.Module, layer: nn.Module | str) -> str:
    """Normalise a layer given as a module or a name (``"fc1"``, ``"fc2:input"``) to a name."""
    if isinstance(layer, str):
        name, _, part = layer.partition(":")
        if part not in ("", "input", "output"):
            raise ExplainerInputError(f"layer {layer!r}: the suffix must be ':input' or ':output'")
        resolve_layer(model, name) if name else None
        return name + (":input" if part == "input" else "")
    module = resolve_layer(model, layer)
    for name, m in model.named_modules():
        if m is module:
            return name
    raise ExplainerInputError("layer is not a submodule of model")  # pragma: no cover


def penultimate_layer(model: nn.Module) -> str:
    """``"<last nn.Linear>:input"``: the features entering the classification head.

    The last ``nn.Linear`` in registration order, which is the head for MnistNet
    (``"fc2:input"``), VGG/AlexNet (``"classifier.6:input"``) and ResNet (``"fc:input"``).
    """
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ExplainerInputError("model has no nn.Linear layer")
    return f"{last}:input"


class _ZValue:
    value: Tensor | None = None


@contextlib.contextmanager
def capture_z(model: nn.Module, layer: str) -> Iterator[_ZValue]:
    """Forward hook storing ``Z`` (the layer's output, or its first input for ``"name:input"``)
    in ``.value`` without detaching it; removed on exit."""
    name = layer_name(model, layer)
    base, _, part = name.partition(":")
    module = model.get_submodule(base) if base else model
    box = _ZValue()

    def on_output(mod: nn.Module, args: tuple, output: Any) -> None:
        if not isinstance(output, Tensor):
            raise ExplainerInputError(f"layer {name!r} must output a tensor, got {type(output).__name__}")
        box.value = output

    def on_input(mod: nn.Module, args: tuple) -> None:
        box.value = args[0]

    handle = module.register_forward_pre_hook(on_input) if part == "input" else module.register_forward_hook(on_output)
    try:
        yield box
    finally:
        handle.remove()


@torch.no_grad()
def extract_z(
    classifier: nn.Module, layer: nn.Module | str, images: Tensor, *, batch_size: int = 256
) -> tuple[Tensor, Tensor]:
    """``(Z (N, S_z), logits (N, C))`` of the frozen classifier, in eval mode, batched.

    The classifier's modes and ``requires_grad`` flags are restored afterwards.
    """
    check_images(images)
    name = layer_name(classifier, layer)
    device = model_device(classifier)
    zs: list[Tensor] = []
    ys: list[Tensor] = []
    with model_guard(classifier), capture_z(classifier, name) as box:
        for chunk in images.split(batch_size):
            box.value = None
            logits = classifier(chunk.to(device))
            if box.value is None:
                raise ExplainerInputError(f"layer {name!r} was not called by the classifier's forward")
            zs.append(box.value.detach().flatten(1).cpu().float())
            ys.append(logits.detach().cpu().float())
    return torch.cat(zs), torch.cat(ys)


# ----------------------------------------------------------------------------------------------
# The network


class XNN(nn.Module):
    """Explanation network: encoder ``θ`` (Z -> E), linear ``v`` (E -> ŷ), decoder ``θ̃`` (E -> Z).

    Args:
        z_dim: ``S_z``, the size of the (flattened) layer ``Z``.
        num_classes: ``C``, the number of logits explained.
        n_features: ``n``, the number of x-features (7 in the human study, 5 for the metrics).
        hidden: encoder hidden sizes (decoder mirrored), the paper's ``(800, 100)``.
        x_activation: activation of the x-layer: ``"softplus"`` (``E > 0``), ``"relu"`` or
            ``"linear"``.
        layer: name of ``Z`` in the classifier (set by :func:`train_xnn`), used by
            :meth:`explain` and :class:`explainers.excitation_bp.ExcitationBP`.

    ``forward(z)`` returns the approximated logits ``vᵀE`` ``(N, C)``.
    """

    def __init__(
        self,
        z_dim: int,
        num_classes: int,
        n_features: int = 7,
        hidden: Sequence[int] = (800, 100),
        x_activation: XActivation = "softplus",
        layer: str | None = None,
    ) -> None:
        super().__init__()
        _one_of("x_activation", x_activation, X_ACTIVATIONS)
        if z_dim < 1 or num_classes < 1 or n_features < 1:
            raise ValueError(f"z_dim, num_classes and n_features must be positive, got {z_dim}, {num_classes}, {n_features}")
        hidden = [int(h) for h in hidden]
        self.z_dim, self.num_classes, self.n_features = int(z_dim), int(num_classes), int(n_features)
        self.hidden, self.x_activation, self.layer = hidden, x_activation, layer
        sizes = [self.z_dim, *hidden, self.n_features]
        enc: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            enc.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                enc.append(nn.ReLU())
            elif x_activation != "linear":
                enc.append(nn.Softplus() if x_activation == "softplus" else nn.ReLU())
        self.encoder = nn.Sequential(*enc)
        self.v = nn.Linear(self.n_features, self.num_classes, bias=False)
        back = sizes[::-1]
        dec: list[nn.Module] = []
        for i in range(len(back) - 1):
            dec.append(nn.Linear(back[i], back[i + 1]))
            if i < len(back) - 2:
                dec.append(nn.ReLU())
        self.decoder = nn.Sequential(*dec)

    @property
    def arch_kwargs(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (for ``save_checkpoint(arch="XNN")``)."""
        return {
            "z_dim": self.z_dim, "num_classes": self.num_classes, "n_features": self.n_features,
            "hidden": list(self.hidden), "x_activation": self.x_activation, "layer": self.layer,
        }

    def _z(self, z: Tensor) -> Tensor:
        z = z.flatten(1)
        if z.shape[1] != self.z_dim:
            raise ExplainerInputError(f"Z must have {self.z_dim} features, got {z.shape[1]}")
        return z

    def embed(self, z: Tensor) -> Tensor:
        """x-features ``E`` ``(N, n)``."""
        return self.encoder(self._z(z))

    def forward(self, z: Tensor) -> Tensor:
        return self.v(self.embed(z))

    def contributions(self, z: Tensor, classes: Tensor | Sequence[int] | int | None = None) -> Tensor:
        """``v_ci · E_i`` ``(N, n)`` for class ``c = classes[m]`` of each image (default: the
        XNN's own prediction ``argmax vᵀE``). Rows sum to the approximated logit of that class."""
        e = self.embed(z)
        if classes is None:
            cls = self.v(e).argmax(1)
        else:
            cls = check_labels(classes, e.shape[0], self.num_classes, name="classes").to(e.device)
        return self.v.weight[cls] * e

    @torch.no_grad()
    def explain(
        self, classifier: nn.Module, images: Tensor, classes: Tensor | Sequence[int] | int | None = None,
        *, batch_size: int = 256,
    ) -> XNNExplanation:
        """Everything the XNN stage shows for ``images``: contributions for the classifier's
        predicted class (or ``classes``), normalised for display. Modes are restored."""
        if self.layer is None:
            raise ExplainerInputError("this XNN has no layer name; train it with train_xnn or set .layer")
        z, logits = extract_z(classifier, self.layer, images, batch_size=batch_size)
        predicted = logits.argmax(1)
        cls = predicted if classes is None else check_labels(classes, z.shape[0], self.num_classes, name="classes")
        with model_guard(self):
            device = next(self.parameters()).device
            e = self.embed(z.to(device)).cpu()
            approx = (e @ self.v.weight.detach().cpu().T)
            contrib = self.v.weight.detach().cpu()[cls] * e
        return XNNExplanation(
            logits=logits, predicted=predicted, classes=cls, features=e, approx=approx,
            contributions=contrib, normalised=normalise_contributions(contrib),
        )


register_architecture("XNN", XNN)


@dataclass(frozen=True)
class XNNExplanation:
    """Per image (batch first): classifier ``logits (N, C)`` and ``predicted (N,)``; the explained
    ``classes (N,)``; x-features ``features (N, n)``; ``approx (N, C) = vᵀE``;
    ``contributions (N, n) = v_c,i E_i``; ``normalised (N, n)`` (see
    :func:`normalise_contributions`)."""

    logits: Tensor
    predicted: Tensor
    classes: Tensor
    features: Tensor
    approx: Tensor
    contributions: Tensor
    normalised: Tensor


def normalise_contributions(contributions: Tensor) -> Tensor:
    """``c_i / Σ_i |c_i|`` per row: signs kept, absolute values sum to 1 (zero rows stay zero).

    >>> normalise_contributions(torch.tensor([[3.0, -1.0, 0.0]]))
    tensor([[ 0.7500, -0.2500,  0.0000]])
    """
    total = contributions.abs().sum(-1, keepdim=True)
    return torch.where(total > 0, contributions / total.clamp(min=1e-30), torch.zeros_like(contributions))


# ----------------------------------------------------------------------------------------------
# Loss (equation 5)


def pull_away(e: Tensor, eps: float = 1e-8) -> Tensor:
    """Mean over ordered pairs ``l ≠ l'`` of the squared cosine between columns of ``e (M, n)``.

    A column that is zero everywhere has cosine 0 with every other column.

    >>> pull_away(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    tensor(0.)
    >>> pull_away(torch.tensor([[1.0, 2.0], [1.0, 2.0]]))
    tensor(1.0000)
    """
    n = e.shape[1]
    if n < 2:
        return e.new_zeros(())
    unit = e / e.norm(dim=0, keepdim=True).clamp(min=eps)
    gram = unit.T @ unit
    off = gram.pow(2).sum() - gram.diagonal().pow(2).sum()
    return off / (n * (n - 1))


def faithfulness_loss(approx: Tensor, logits: Tensor) -> Tensor:
    """``1/M Σ_m ||ȳ_m - ŷ_m||²`` (squared error summed over classes, mean over examples).

    >>> faithfulness_loss(torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
    tensor(3.)
    """
    return (approx - logits).pow(2).sum(1).mean()


def reconstruction_loss(z_tilde: Tensor, z: Tensor, *, q: float, mode: Mode = "srae") -> Tensor:
    """``1/S_z Σ_k log(1 + q Q_k)`` (SRAE) or ``1/S_z Σ_k Q_k`` (SAE), ``Q_k = 1/M Σ_m (Z̃_mk - Z_mk)²``;
    0 for NN.

    >>> z, zt = torch.tensor([[0.0, 0.0], [2.0, 0.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    >>> reconstruction_loss(zt, z, q=3.0, mode="sae")      # Q = (1, 0)
    tensor(0.5000)
    >>> reconstruction_loss(zt, z, q=3.0, mode="srae")     # (log 4 + log 1) / 2
    tensor(0.6931)
    """
    _one_of("mode", mode, MODES)
    if mode == "nn":
        return z.new_zeros(())
    q_k = (z_tilde - z).pow(2).mean(0)
    return torch.log1p(q * q_k).mean() if mode == "srae" else q_k.mean()


def xnn_loss(
    xnn: XNN, z: Tensor, logits: Tensor, *, beta: float, q: float, eta: float, mode: Mode = "srae"
) -> dict[str, Tensor]:
    """The terms of equation 5 on one batch: ``{"loss", "faithfulness", "reconstruction",
    "pull_away"}`` (``reconstruction`` is the un-weighted sparsity (SRAE) or mean squared error
    (SAE) term, 0 for NN); ``loss = faithfulness + beta * reconstruction + eta * pull_away``."""
    _one_of("mode", mode, MODES)
    z = xnn._z(z)
    e = xnn.encoder(z)
    faithfulness = faithfulness_loss(xnn.v(e), logits)
    recon = e.new_zeros(()) if mode == "nn" else reconstruction_loss(xnn.decoder(e), z, q=q, mode=mode)
    pt = pull_away(e)
    loss = faithfulness + beta * recon + eta * pt
    return {"loss": loss, "faithfulness": faithfulness, "reconstruction": recon, "pull_away": pt}


# ----------------------------------------------------------------------------------------------
# Training


@torch.no_grad()
def _init_alive(xnn: XNN, z: Tensor) -> None:
    """Data-dependent start (in the spirit of LSUV): every encoder layer followed by a ReLU is
    rescaled so that, on the training ``Z``, each unit's pre-activation has median 0 and
    standard deviation 1. Each unit then starts active on about half of the examples with a
    spread that Adam's first steps cannot wipe out; with the default initialisation, x-features
    that are zero on every example (and so can never learn) are common."""
    h = z
    layers = list(xnn.encoder)
    for i, module in enumerate(layers):
        h = module(h)
        if isinstance(module, nn.Linear) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU):
            median = h.median(dim=0).values
            std = h.std(dim=0).clamp(min=1e-6)
            module.weight /= std[:, None]
            module.bias.sub_(median).div_(std)
            h = (h - median) / std
    xnn.v.weight.zero_()


def fit_xnn(
    z: Tensor,
    logits: Tensor,
    *,
    config: XNNConfig = XNNConfig(),  # noqa: B008 (frozen dataclass)
    layer: str | None = None,
    progress: Progress | None = None,
) -> XNN:
    """Train an :class:`XNN` on precomputed ``Z (M, S_z)`` and logits ``ŷ (M, C)``.

    Deterministic for the same inputs and ``config.seed``. ``config.batch_size=None`` trains
    full-batch (one step per epoch, exact ``Q_k`` and pull-away). ``layer`` is stored on the XNN
    (the name of ``Z`` in the classifier). ``progress`` gets ``{"stage": "train_xnn", "step",
    "total", "epoch", "loss", "faithfulness", "reconstruction", "pull_away"}`` once per epoch.
    Returns the XNN in eval mode on CPU.
    """
    cfg = config
    z = z.detach().flatten(1).float().cpu()
    logits = logits.detach().float().cpu()
    if z.dim() != 2 or logits.dim() != 2 or z.shape[0] != logits.shape[0] or z.shape[0] < 2:
        raise ExplainerInputError(f"need Z (M, S_z) and logits (M, C) with M >= 2, got {tuple(z.shape)}, {tuple(logits.shape)}")
    if not (torch.isfinite(z).all() and torch.isfinite(logits).all()):
        raise ExplainerInputError("Z or logits contain NaN or infinite values")
    m = z.shape[0]
    bs = m if cfg.batch_size is None else max(2, min(int(cfg.batch_size), m))
    steps = (m + bs - 1) // bs
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        xnn = XNN(z.shape[1], logits.shape[1], cfg.n_features, cfg.hidden, cfg.x_activation, layer)
        _init_alive(xnn, z)
        generator = torch.Generator().manual_seed(cfg.seed)
        optimiser = torch.optim.Adam(xnn.parameters(), lr=cfg.lr)
        xnn.train()
        for epoch in range(cfg.epochs):
            order = torch.randperm(m, generator=generator) if bs < m else torch.arange(m)
            totals = {"loss": 0.0, "faithfulness": 0.0, "reconstruction": 0.0, "pull_away": 0.0}
            for start in range(0, m, bs):
                idx = order[start : start + bs]
                if idx.numel() < 2:  # a lone last example: cosines are meaningless
                    continue
                terms = xnn_loss(xnn, z[idx], logits[idx], beta=cfg.beta, q=cfg.q, eta=cfg.eta, mode=cfg.mode)
                optimiser.zero_grad(set_to_none=True)
                terms["loss"].backward()
                optimiser.step()
                for k in totals:
                    totals[k] += float(terms[k].detach()) * idx.numel() / m
            if progress is not None:
                progress({"stage": "train_xnn", "step": (epoch + 1) * steps, "total": cfg.epochs * steps, "epoch": epoch, **totals})
            if not torch.isfinite(torch.tensor(totals["loss"])):
                raise FloatingPointError(f"XNN loss became {totals['loss']} at epoch {epoch}; lower lr or q")
    xnn.eval()
    logger.info(
        "train_xnn (%s, n=%d): %d epochs in %.1f s, final loss %.4f (faithfulness %.4f)",
        cfg.mode, cfg.n_features, cfg.epochs, time.perf_counter() - started, totals["loss"], totals["faithfulness"],
    )
    return xnn


def train_xnn(
    classifier: nn.Module,
    layer: nn.Module | str,
    images: Tensor,
    *,
    config: XNNConfig = XNNConfig(),  # noqa: B008 (frozen dataclass)
    progress: Progress | None = None,
) -> XNN:
    """Attach an XNN to ``layer`` of the frozen ``classifier`` and train it on ``images``.

    ``Z`` and the logits are computed once (eval mode, no gradients; the classifier's modes and
    ``requires_grad`` flags are left as they were), then :func:`fit_xnn` trains the XNN with
    ``config``. The returned XNN remembers ``layer`` (as a name) for :meth:`XNN.explain` and
    ExcitationBP.
    """
    name = layer_name(classifier, layer)
    z, logits = extract_z(classifier, name, images)
    return fit_xnn(z, logits, config=config, layer=name, progress=progress)
