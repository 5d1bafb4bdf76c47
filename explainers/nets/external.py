"""Networks trained elsewhere: load a whole-model file of any architecture and adapt it to the platform.

Three formats (:func:`load_network`):

* ``"export"``: a ``torch.export`` program (``.pt2``, saved with ``torch.export.save``, exported
  with a dynamic batch dimension). Loaded with ``torch.export.load`` and given its module
  hierarchy back with ``torch.export.unflatten``, so that forward hooks on inner layers work
  (Grad-CAM). Its layers are ``InterpreterModule`` graphs of operators, not ``nn.Conv2d`` and
  friends, so the layer-rule methods (ExcitationBP, DeepLIFT) refuse it.
* ``"torchscript"``: a TorchScript file (``torch.jit.load``; deprecated in torch 2.14, the
  FutureWarning it raises is silenced here and logged once). TorchScript modules accept no forward
  hooks (``register_forward_hook`` raises ``NotImplementedError``). Grad-CAM still works when the
  scripted ``forward`` is a chain of its children: :func:`trace_chain` evaluates the chain
  (recursively, a child whose own forward is a chain is opened too) on real images and keeps it
  only where it reproduces the module's output; the chain is then split at the chosen layer (the
  prefix gives the activations, the suffix the scores). A layer that is not on a verified chain
  is refused with a sentence (export the model with ``torch.export`` instead).
* ``"torchvision"``: a torchvision architecture by name and a state dict (``weights_only``).
  An ordinary ``nn.Module``: every method applies where its architecture allows.

:class:`ExternalClassifier` wraps any of them: it takes the platform's images, float
``(N, C, H, W)`` in [0, 1] at the data set's stored size (``explainers.datasets.common.to_tensor``),
resizes them to the input size the network expects (bilinear, antialiased when shrinking),
normalises them with the declared mean and std and returns the network's logits ``(N, K)``. It
exposes the layer Grad-CAM hooks (:meth:`ExternalClassifier.gradcam_view`), found as the last
convolution the forward pass runs (:func:`last_conv_layer`) or named by the researcher.

Every error a researcher can cause is an :class:`ExternalModelError` whose message is one sentence
saying what was expected and what was found.

Example (``x``: float images (N, 3, 32, 32) in [0, 1]; not run as a doctest)::

    net, fmt = load_network("lab_model.pt2")
    clf = ExternalClassifier(net, fmt=fmt, channels=3, input_size=(64, 64),
                             mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), sample=x[:16])
    logits = clf(x)
    model, layer, name = clf.gradcam_view()       # GradCAM(model, layer)(x, targets)
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from explainers.hooks import LayerCapture

__all__ = [
    "FORMATS",
    "ChainUnit",
    "ExternalClassifier",
    "ExternalGenerator",
    "ExternalModelError",
    "LAYERWISE_REFUSAL",
    "gradcam_view",
    "last_conv_layer",
    "load_network",
    "sniff_format",
    "trace_chain",
]

logger = logging.getLogger(__name__)

FORMATS = ("export", "torchscript", "torchvision")

#: Why ExcitationBP and DeepLIFT refuse a whole-model file: they apply a rule per layer type.
LAYERWISE_REFUSAL = (
    "{method} applies a rule per layer type (Conv2d, Linear, ReLU, ...) and a {fmt} file does not say "
    "which type its layers are; register the weights of a torchvision architecture (--arch NAME "
    "--weights FILE) to use it"
)

_CONV_OPS = {"aten.conv2d.default", "aten.convolution.default", "aten._convolution.default", "aten.conv2d.padding"}


class ExternalModelError(ValueError):
    """A model file or setting the platform cannot use; the message is a sentence for the researcher."""


# ----------------------------------------------------------------------------------------------
# Loading


def sniff_format(path: str | os.PathLike) -> str:
    """``"export"``, ``"torchscript"`` or ``"state_dict"`` from the file's contents (all are zips)."""
    path = Path(path)
    if not path.is_file():
        raise ExternalModelError(f"Expected a model file at {path}, but there is no such file.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        raise ExternalModelError(
            f"Expected a PyTorch model file (torch.export .pt2, TorchScript or a state dict saved with "
            f"torch.save), but {path.name} is not one (not a PyTorch archive)."
        ) from None
    if any(n.endswith("/archive_format") for n in names):
        return "export"
    if any("/code/" in n for n in names) and any(n.endswith("/data.pkl") for n in names):
        return "torchscript"
    if any(n.endswith("/data.pkl") for n in names):
        return "state_dict"
    raise ExternalModelError(
        f"Expected a PyTorch model file (torch.export .pt2, TorchScript or a state dict), but {path.name} "
        "is a zip archive of something else."
    )


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """torch 2.14 deprecates TorchScript with a FutureWarning on every load; still what many labs have."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*")
        yield


def load_network(
    path: str | os.PathLike, *, arch: str | None = None, num_classes: int | None = None
) -> tuple[nn.Module, str]:
    """The network in ``path`` in eval mode with frozen parameters, and its format.

    With ``arch`` (a torchvision model name) ``path`` is a state dict for it with ``num_classes``
    outputs (or the original 1000-class heads, which are then replaced); without, ``path`` is a
    ``.pt2`` program or a TorchScript file.
    """
    path = Path(path)
    found = sniff_format(path)
    if arch is not None:
        net = _load_torchvision(path, found, arch, num_classes)
        fmt = "torchvision"
    elif found == "export":
        try:
            program = torch.export.load(path)
            net = torch.export.unflatten(program)
        except Exception as exc:  # torch raises many types for a damaged archive
            raise ExternalModelError(f"Expected a torch.export program, but {path.name} could not be loaded ({type(exc).__name__}: {exc}).") from None
        _check_dynamic_batch(program, path.name)
        fmt = "export"
    elif found == "torchscript":
        try:
            with _quiet_jit():
                net = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise ExternalModelError(f"Expected a TorchScript file, but {path.name} could not be loaded ({type(exc).__name__}: {exc}).") from None
        logger.info("%s: TorchScript is deprecated in torch 2.14; torch.export (.pt2) is the format it recommends", path.name)
        fmt = "torchscript"
    else:
        raise ExternalModelError(
            f"Expected a whole-model file (torch.export .pt2 or TorchScript), but {path.name} holds only weights "
            "(a state dict); give its torchvision architecture with --arch NAME --weights FILE."
        )
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net, fmt


def _load_torchvision(path: Path, found: str, arch: str, num_classes: int | None) -> nn.Module:
    from explainers.nets.classifiers import _torchvision_builder, build_torchvision

    if found != "state_dict":
        raise ExternalModelError(
            f"Expected a state dict for torchvision's {arch} (saved with torch.save(model.state_dict())), "
            f"but {path.name} is a {'torch.export program' if found == 'export' else 'TorchScript file'}; register it without --arch."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ExternalModelError(f"Expected a state dict of tensors, but {path.name} could not be read safely ({type(exc).__name__}).") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ExternalModelError(f"Expected a state dict (names to tensors) in {path.name}, but found a {type(state).__name__} of other things.")
    try:
        imagenet = _torchvision_builder(arch)(weights=None)
    except ValueError:
        raise ExternalModelError(f"Expected a torchvision model name (e.g. resnet18, vgg11_bn), but found {arch!r}.") from None
    try:
        imagenet.load_state_dict(state, strict=True)
    except RuntimeError:
        pass  # not the 1000-class original: built for num_classes below
    else:
        if num_classes not in (None, 1000):
            raise ExternalModelError(
                f"Expected weights with {num_classes} outputs, one per class of the data set, but the state dict in "
                f"{path.name} has torchvision's 1000-class ImageNet head; train the network on the data set first."
            )
    try:
        return build_torchvision(arch, int(num_classes or 1000), state)
    except ValueError as exc:
        raise ExternalModelError(f"Expected weights of torchvision's {arch}, but {path.name} does not fit it ({exc}).") from None
    except RuntimeError:
        own = set(imagenet.state_dict())
        missing, unexpected = sorted(own - set(state))[:3], sorted(set(state) - own)[:3]
        if missing or unexpected:
            raise ExternalModelError(
                f"Expected the weights of torchvision's {arch}, but the state dict in {path.name} is of another "
                f"architecture (missing {missing}, unexpected {unexpected})."
            ) from None
        shaped = build_torchvision(arch, int(num_classes or 1000)).state_dict()
        key = next((k for k in state if k in shaped and shaped[k].shape != state[k].shape), None)
        found = f"{key} has shape {tuple(state[key].shape)}" if key else "its shapes differ"
        expected = tuple(shaped[key].shape) if key else ""
        raise ExternalModelError(
            f"Expected the weights of torchvision's {arch} with {num_classes} outputs (one per class of the data set; "
            f"{key} of shape {expected}), but in {path.name} {found}."
        ) from None


def _check_dynamic_batch(program: torch.export.ExportedProgram, name: str) -> None:
    """A program exported with a fixed batch size cannot take the platform's batches: refuse it."""
    inputs = set(program.graph_signature.user_inputs)
    shapes = [n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder" and n.name in inputs]
    tensors = [v for v in shapes if isinstance(v, Tensor)]
    if len(tensors) != 1:
        raise ExternalModelError(f"Expected a program that takes one image tensor, but {name} takes {len(tensors)} tensor inputs.")
    batch = tensors[0].shape[0]
    if not isinstance(batch, torch.SymInt):
        raise ExternalModelError(
            f"Expected a program exported with a dynamic batch dimension, but {name} was exported for batches of "
            f"exactly {int(batch)}; export it with dynamic_shapes={{'x': {{0: torch.export.Dim('batch')}}}}."
        )


def export_input_shape(net: nn.Module) -> tuple[int, ...] | None:
    """``(C, H, W)`` an unflattened program was exported for (static sizes only), else None."""
    graph = getattr(net, "graph", None)
    if not isinstance(graph, torch.fx.Graph):
        return None
    for node in graph.nodes:
        if node.op == "placeholder":
            val = node.meta.get("val")
            if isinstance(val, Tensor) and val.dim() == 4 and all(isinstance(s, int) for s in val.shape[1:]):
                return tuple(int(s) for s in val.shape[1:])
            return None
    return None


# ----------------------------------------------------------------------------------------------
# Layers


def _type_name(module: nn.Module) -> str:
    """``Conv2d`` for an eager or scripted conv; ``InterpreterModule`` for an exported layer."""
    original = getattr(module, "original_name", None)  # TorchScript keeps the Python class name
    return original if isinstance(original, str) else type(module).__name__


def is_conv(module: nn.Module) -> bool:
    """A 2-d convolution: ``nn.Conv2d`` (or a subclass), a scripted ``Conv2d``, or an exported leaf
    whose graph calls a convolution operator."""
    if isinstance(module, nn.Conv2d) or _type_name(module) == "Conv2d":
        return True
    graph = getattr(module, "graph", None)
    if not isinstance(graph, torch.fx.Graph) or next(module.children(), None) is not None:
        return False
    return any(node.op == "call_function" and str(node.target) in _CONV_OPS for node in graph.nodes)


def last_conv_layer(net: nn.Module, sample: Tensor) -> str | None:
    """Dotted name of the convolution that ``net(sample)`` runs last (forward hooks record the
    order), or None. For hookable networks (eager modules, unflattened programs)."""
    order: list[str] = []
    handles = []
    try:
        for name, module in net.named_modules():
            if name and is_conv(module):
                handles.append(module.register_forward_hook(lambda m, i, o, name=name: order.append(name)))
        with torch.no_grad():
            net(sample)
    finally:
        for handle in handles:
            handle.remove()
    return order[-1] if order else None


@dataclass(frozen=True)
class ChainUnit:
    """One step of a verified chain: a submodule (dotted name), called after flattening its input
    when ``flatten`` (a ``torch.flatten(x, 1)`` the scripted forward does between children)."""

    name: str
    module: nn.Module
    flatten: bool = False


def _close(a: object, b: object) -> bool:
    if not isinstance(a, Tensor) or not isinstance(b, Tensor) or a.shape != b.shape:
        return False
    scale = float(b.abs().max()) if b.numel() else 0.0
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, scale)))


def _run_units(units: Sequence[ChainUnit], x: Tensor) -> Tensor:
    for unit in units:
        x = unit.module(x.flatten(1) if unit.flatten else x)
    return x


def trace_chain(net: nn.Module, sample: Tensor, prefix: str = "") -> list[ChainUnit]:
    """The longest verified chain of submodules that computes ``net`` on ``sample``.

    A module with children is opened when calling its children one after another (each opened the
    same way; a ``torch.flatten(x, 1)`` is tried before a child that refuses a >2-d input) gives
    its own output on ``sample``; otherwise it stays one unit. The whole chain reproduces
    ``net(sample)`` by construction (checked with ``allclose``).
    """
    with torch.no_grad():
        return _open(net, sample, prefix)[0]


def _open(module: nn.Module, x: Tensor, name: str) -> tuple[list[ChainUnit], Tensor]:
    reference = module(x)
    children = list(module.named_children())
    if not children:
        return [ChainUnit(name, module)], reference
    units: list[ChainUnit] = []
    h = x
    try:
        for child_name, child in children:
            full = f"{name}.{child_name}" if name else child_name
            try:
                sub, out = _open(child, h, full)
            except Exception:
                if h.dim() <= 2:
                    raise
                sub, out = _open(child, h.flatten(1), full)
                sub = [ChainUnit(sub[0].name, sub[0].module, True), *sub[1:]]
            units += sub
            h = out
    except Exception:
        return [ChainUnit(name, module)], reference
    if _close(h, reference):
        return units, reference
    return [ChainUnit(name, module)], reference


def _contains_conv(module: nn.Module) -> bool:
    return any(is_conv(m) for m in module.modules())


# ----------------------------------------------------------------------------------------------
# The adapters


def _channel_values(values: Sequence[float] | None, channels: int, default: float, what: str) -> Tensor:
    if values is None:
        values = [default]
    values = [float(v) for v in values]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ExternalModelError(f"Expected {channels} {what} value(s), one per image channel, but found {len(values)}.")
    return torch.tensor(values, dtype=torch.float32).view(1, channels, 1, 1)


class ExternalClassifier(nn.Module):
    """A network trained elsewhere, taking the platform's images; see the module docstring.

    Args:
        net: from :func:`load_network`; ``fmt`` its format.
        channels: the data set's channels (1 or 3); the network gets the same number.
        input_size: ``(H, W)`` the network expects; None keeps the stored size.
        mean, std: per channel (or one value for all) of the normalisation the network was trained
            with: it receives ``(x - mean) / std``.
        layer: the Grad-CAM layer's dotted name in ``net`` (None: the last convolution).
        sample: a few of the data set's images, to find the layer and, for TorchScript, the chain.
        program: the ``.pt2`` file's bytes (format ``"export"``): ``copy.deepcopy`` (GAD's support
            models are fine-tuned copies) reloads the program from them, because an unflattened
            program's graphs hold fake tensors that cannot be deep-copied.

    Shapes: ``(N, channels, H0, W0)`` in [0, 1] -> logits ``(N, K)``.
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        net: nn.Module,
        *,
        fmt: str,
        channels: int,
        input_size: tuple[int, int] | None,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        sample: Tensor,
        layer: str | None = None,
        program: bytes | None = None,
    ) -> None:
        super().__init__()
        if fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
        self.net, self.fmt, self.channels = net, fmt, channels
        self._program = program
        self.input_size = tuple(input_size) if input_size is not None else None
        self.register_buffer("mean", _channel_values(mean, channels, 0.0, "mean"))
        self.register_buffer("std", _channel_values(std, channels, 1.0, "std"))
        if bool((self.std <= 0).any()):
            raise ExternalModelError(f"Expected std values above 0, but found {self.std.flatten().tolist()}.")
        self.tap = nn.Identity()  # hooked by Grad-CAM when the network itself cannot be (TorchScript)
        self._chain: list[ChainUnit] | None = None
        self._split: int | None = None
        prepared = self.prepare(sample)
        if fmt == "torchscript":
            self._chain = trace_chain(net, prepared)
        self.gradcam_layer_name, self.gradcam_refusal = self._choose_layer(layer, prepared)
        if self._chain is not None and self.gradcam_layer_name is not None:
            self._split = next(k for k, u in enumerate(self._chain) if u.name == self.gradcam_layer_name)
        if layer is not None and self.gradcam_layer_name is not None:
            self._check_layer_output(sample[:2])

    def _check_layer_output(self, sample: Tensor) -> None:
        """A named layer must give Grad-CAM a feature map ``(N, K, h, w)``."""
        model, module, name = self.gradcam_view()
        with LayerCapture(model, module) as capture, torch.no_grad():
            model(sample)
        shape = tuple(capture.activation.shape) if capture.activation is not None else None
        if shape is None or len(shape) != 4:
            raise ExternalModelError(
                f"Expected --layer to name a layer with a feature map (N, channels, height, width) for Grad-CAM, "
                f"but {name!r} gives {shape if shape is not None else 'nothing'}."
            )

    def __deepcopy__(self, memo: dict) -> ExternalClassifier:
        """A deep copy; an exported network is reloaded from its bytes with the current weights."""
        if self.fmt == "export":
            if self._program is None:
                raise ExternalModelError("Expected the program's bytes to copy a torch.export network, but none were given.")
            memo[id(self.net)] = _reload_program(self._program, self.net)
        return copy._reconstruct(self, memo, *self.__reduce_ex__(4))  # type: ignore[attr-defined]

    # -- the forward pass

    def prepare(self, x: Tensor) -> Tensor:
        """Resize to the network's input size and normalise: what the network itself receives."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ExternalModelError(
                f"Expected images of shape (N, {self.channels}, H, W), but found {tuple(x.shape)}."
            )
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            shrink = x.shape[-1] > self.input_size[1] or x.shape[-2] > self.input_size[0]
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=shrink)
        return (x - self.mean) / self.std

    def forward(self, x: Tensor) -> Tensor:
        x = self.prepare(x)
        if self._split is None or self._chain is None:
            out = self.net(x)
        else:
            h = self.tap(_run_units(self._chain[: self._split + 1], x))
            out = _run_units(self._chain[self._split + 1 :], h)
        if not isinstance(out, Tensor) or out.dim() != 2:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ExternalModelError(f"Expected the network to return logits of shape (N, classes), but it returned {got}.")
        return out

    # -- Grad-CAM's layer

    def _layer_names(self) -> list[str]:
        if self._chain is not None:
            return [u.name for u in self._chain]
        return [n for n, _ in self.net.named_modules() if n]

    def _choose_layer(self, layer: str | None, prepared: Tensor) -> tuple[str | None, str | None]:
        if layer is not None:
            if layer not in [n for n, _ in self.net.named_modules() if n]:
                convs = [n for n, m in self.net.named_modules() if n and is_conv(m)]
                raise ExternalModelError(
                    f"Expected --layer to name a layer of the network (its convolutions: {', '.join(convs) or 'none'}), "
                    f"but found {layer!r}."
                )
            if self._chain is not None and layer not in self._layer_names():
                return None, self._not_on_chain(layer)
            return layer, None
        if self._chain is not None:
            for unit in reversed(self._chain):
                if unit.name and _contains_conv(unit.module):  # a layer, not the whole network
                    return unit.name, None
            return None, self._not_on_chain(None)
        found = last_conv_layer(self.net, prepared[:2])
        if found is None:
            return None, "Grad-CAM needs a convolutional layer, and the network's forward pass runs none"
        return found, None

    def _not_on_chain(self, layer: str | None) -> str:
        what = f"layer {layer!r}" if layer else "its last convolution"
        units = [u.name for u in self._chain or [] if u.name and _contains_conv(u.module)]
        choice = f" or name one of the layers on the chain ({', '.join(units)})" if units else ""
        return (
            f"Grad-CAM cannot read {what} in this TorchScript file: TorchScript modules take no forward hooks, and "
            f"the layer is not on a chain of submodules that reproduces the network's output; export the model "
            f"with torch.export (.pt2) instead{choice}"
        )

    def gradcam_view(self, layer: str | None = None) -> tuple[nn.Module, nn.Module, str]:
        """``(model, layer module, layer name)`` for :class:`explainers.gradcam.GradCAM`: the layer
        registered (None) or ``layer``. Raises :class:`ExternalModelError` with the reason when
        Grad-CAM cannot read that layer of this file."""
        view = self
        if layer is not None and layer != self.gradcam_layer_name:
            view = _ClassifierView(self, layer)
        if view.gradcam_layer_name is None:
            raise ExternalModelError(view.gradcam_refusal or "Grad-CAM has no layer to read")
        if view._chain is not None:
            return view, view.tap, view.gradcam_layer_name
        return view, view.net.get_submodule(view.gradcam_layer_name), view.gradcam_layer_name

    @property
    def features_layer(self) -> nn.Module:
        """The module Grad-CAM hooks for the registered layer (as ``MnistNet.features_layer``)."""
        return self.gradcam_view()[1]

    def layerwise_refusal(self, method: str) -> str | None:
        """Why ExcitationBP or DeepLIFT cannot run on this file (None: let the method decide)."""
        if self.fmt == "torchvision":
            return None
        name = "torch.export" if self.fmt == "export" else "TorchScript"
        return LAYERWISE_REFUSAL.format(method=method, fmt=name)


class _ClassifierView(ExternalClassifier):
    """The same network and preprocessing with the Grad-CAM split at another layer (no copy)."""

    def __init__(self, base: ExternalClassifier, layer: str) -> None:
        nn.Module.__init__(self)
        self.net, self.fmt, self.channels, self.input_size = base.net, base.fmt, base.channels, base.input_size
        self._program = base._program
        self.register_buffer("mean", base.mean)
        self.register_buffer("std", base.std)
        self.tap = nn.Identity()
        self._chain = base._chain
        self._split = None
        self.gradcam_layer_name, self.gradcam_refusal = self._choose_layer(layer, torch.empty(0))
        if self._chain is not None and self.gradcam_layer_name is not None:
            self._split = next(k for k, u in enumerate(self._chain) if u.name == self.gradcam_layer_name)


def _reload_program(program: bytes, like: nn.Module) -> nn.Module:
    """A fresh unflattened network from ``program`` with ``like``'s weights, flags and mode."""
    fresh = torch.export.unflatten(torch.export.load(io.BytesIO(program)))
    with torch.no_grad():
        for old, new in zip(like.parameters(), fresh.parameters(), strict=True):
            new.copy_(old)
            new.requires_grad_(old.requires_grad)
        for old_buffer, new_buffer in zip(like.buffers(), fresh.buffers(), strict=True):
            new_buffer.copy_(old_buffer)
    return fresh.train(like.training)


def gradcam_view(model: nn.Module, sample: Tensor, layer: str | None = None) -> tuple[nn.Module, nn.Module, str]:
    """``(model, layer, name)`` Grad-CAM should use on any classifier of the platform: the named
    ``layer``, else an :class:`ExternalClassifier`'s registered layer or a platform network's
    ``features_layer``, else the last convolution ``model(sample)`` runs. Raises
    :class:`ExternalModelError` (a sentence) when there is none Grad-CAM can read."""
    if isinstance(model, ExternalClassifier):
        return model.gradcam_view(layer)
    if layer is not None:
        try:
            return model, model.get_submodule(layer), layer
        except AttributeError:
            raise ExternalModelError(f"Expected a layer of the classifier for Grad-CAM, but it has no layer named {layer!r}.") from None
    own = getattr(model, "features_layer_name", None)
    if isinstance(own, str):
        return model, model.get_submodule(own), own
    found = last_conv_layer(model, sample[:1])
    if found is None:
        raise ExternalModelError("Grad-CAM needs a convolutional layer, and the classifier's forward pass runs none.")
    return model, model.get_submodule(found), found


class ExternalGenerator(nn.Module):
    """A decoder trained elsewhere: ``z (N, latent_dim) -> images (N, C, H, W)`` in [0, 1].

    Used as a generator without encoder (CDeepEx's ``generator_kind="gan"``); ``z_dim`` tells
    CDeepEx the latent size.
    """

    def __init__(self, net: nn.Module, *, latent_dim: int, fmt: str) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ExternalModelError(f"Expected a latent size of at least 1, but found {latent_dim}.")
        self.net, self.fmt = net, fmt
        self.z_dim = self.latent_dim = int(latent_dim)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)

    decode = forward
