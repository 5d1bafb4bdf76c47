"""One generated test over every method: the caller's models come back exactly as they were
(train/eval mode of every submodule, requires_grad and value of every parameter, buffers, no
hooks, no .grad, grad mode), after a normal run *and* after an exception inside the run, and
seeded runs repeat exactly.

Methods: Grad-CAM, contrastive Grad-CAM, DeepLIFT, ExcitationBP (class maps and XNN x-feature
maps), XNN contributions (``XNN.explain``) and XNN training (the classifier it reads), CDeepEx
and xGEMs, APEM on gradient, SmoothGrad and LRP maps (LRP through Captum, which sets attributes
on the layers), GAD's support-model training and GAD maps with a plain and a hook-based gradient
method (guided backpropagation registers hooks on every ReLU). Every one runs on the same classifier, built from the layers they all support
(conv, BatchNorm, ReLU, max pool, dropout, two FC layers), with a generator for CDeepEx and an
XNN attached to the classifier's first FC layer, all three in *mixed* caller states.

Failures are raised where the caller's code or data enters a method: the target callable, the
model's forward pass (a later call, so inside the method's loop), the progress callback, labels
out of range (found inside the run), and a layer the method does not support.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from explainers import gad
from explainers.apem import APEM
from explainers.cdeepex import CDeepExConfig, explain
from explainers.deeplift import DeepLift
from explainers.excitation_bp import ExcitationBP
from explainers.gradcam import GradCAM, contrastive_gradcam
from explainers.targets import ClassTarget
from explainers.xnn import XNN, XNNConfig, extract_z, fit_xnn, train_xnn

pytestmark = pytest.mark.usefixtures("single_thread")


class Boom(RuntimeError):
    pass


class Net(nn.Module):
    """(N, 1, 8, 8) -> 4 logits; raises :class:`Boom` on forward call ``fail_at`` (1-based)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flat = nn.Flatten()
        self.fc1 = nn.Linear(4 * 4 * 4, 16)
        self.relu1 = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, 4)
        with torch.no_grad():  # non-trivial running statistics: a train-mode BatchNorm shows
            self.bn.running_mean.uniform_(-0.1, 0.1)
            self.bn.running_var.uniform_(0.8, 1.2)
        self.fail_at: int | None = None
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise Boom("forward failed")
        x = self.pool(self.relu(self.bn(self.conv(x))))
        return self.fc2(self.drop(self.relu1(self.fc1(self.flat(x)))))


@dataclass
class Models:
    D: Net
    G: nn.Module
    xnn: XNN

    def all(self) -> tuple[nn.Module, ...]:
        return self.D, self.G, self.xnn


def raising(*_args: object) -> None:
    raise Boom("callback failed")


def failing_target(logits: torch.Tensor) -> torch.Tensor:
    raise Boom("target failed")


CFG = CDeepExConfig(z0_steps=20, outer_iterations=6, num_frames=4)
XNN_CFG = XNNConfig(n_features=3, hidden=(8,), epochs=3)
LABELS = torch.tensor([0, 1, 2])
PROBES = torch.tensor([1, 2, 3])
BAD = torch.tensor([0, 1, 9])  # 9 is no class of a 4-class net


def images() -> torch.Tensor:
    return torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(11))


def fail_forward(m: Models, fail: str | None, at: int) -> None:
    if fail == "forward":
        m.D.fail_at = m.D.calls + at


def progress(fail: str | None) -> Callable[[dict], None] | None:
    return raising if fail == "progress" else None


def labels(fail: str | None) -> torch.Tensor:
    return BAD if fail == "labels" else LABELS


# ------------------------------------------------------------------------- one runner per method


def run_gradcam(m: Models, x: torch.Tensor, fail: str | None):
    fail_forward(m, fail, 1)
    target = failing_target if fail == "target" else ClassTarget(labels(fail))
    return GradCAM(m.D, m.D.conv)(x, target, progress=progress(fail))


def run_contrastive(m: Models, x: torch.Tensor, fail: str | None):
    fail_forward(m, fail, 2)  # the batched evaluation of the imposed maps
    return contrastive_gradcam(
        m.D, "conv", x, labels(fail), PROBES, torch.tensor([0.5, 1.0]), progress=progress(fail)
    )


def run_deeplift(m: Models, x: torch.Tensor, fail: str | None):
    fail_forward(m, fail, 2)  # the second chunk
    targets = failing_target if fail == "target" else labels(fail)
    return DeepLift(m.D, batch_size=2).attribute(x, targets).attributions


def run_excitation_bp(m: Models, x: torch.Tensor, fail: str | None):
    fail_forward(m, fail, 2)  # the second chunk
    return ExcitationBP(m.D, "relu", batch_size=2)(x, labels(fail))


def run_excitation_bp_xnn(m: Models, x: torch.Tensor, fail: str | None):
    fail_forward(m, fail, 2)  # the second chunk
    return ExcitationBP(m.D, "relu", batch_size=2).xnn_maps(m.xnn, x, progress=progress(fail))


def run_xnn_explain(m: Models, x: torch.Tensor, fail: str | None):
    fail_forward(m, fail, 1)
    out = m.xnn.explain(m.D, x, classes=BAD if fail == "labels" else None)
    return [out.features, out.contributions, out.normalised]


def run_train_xnn(m: Models, x: torch.Tensor, fail: str | None):
    fail_forward(m, fail, 1)
    xnn = train_xnn(m.D, "relu1", x, config=XNN_CFG, progress=progress(fail))
    return list(xnn.state_dict().values())


def run_cdeepex(m: Models, x: torch.Tensor, fail: str | None, inequality: bool = True):
    fail_forward(m, fail, 5)  # inside the augmented-Lagrangian loop
    r = explain(
        m.D, m.G, x, true_labels=labels(fail), probe_labels=PROBES, inequality=inequality,
        generator_kind="gan", config=CFG, seed=3, progress=progress(fail),
    )
    return [r.z0, r.z_path, r.frames, r.llh, r.converged]


def run_xgems(m: Models, x: torch.Tensor, fail: str | None):
    return run_cdeepex(m, x, fail, inequality=False)


def run_apem(m: Models, x: torch.Tensor, fail: str | None, maps: str = "gradient"):
    fail_forward(m, fail, 4)  # inside the ε scan
    r = APEM(m.D, ceiling=6.0)(x, maps, progress=progress(fail))
    return [r.eps_minus, r.eps_plus, r.apem, r.predicted]


def run_apem_smoothgrad(m: Models, x: torch.Tensor, fail: str | None):
    return run_apem(m, x, fail, "smoothgrad")


def run_apem_lrp(m: Models, x: torch.Tensor, fail: str | None):
    return run_apem(m, x, fail, "lrp")


def run_gad_supports(m: Models, x: torch.Tensor, fail: str | None):
    fail_forward(m, fail, 1)
    supports = gad.train_support_models(
        m.D, x, torch.tensor([0, 1, 0]), 0, 1, alphas=(2.0, 4.0), epochs=1, seed=1, progress=progress(fail),
    )
    return [p.detach() for s in supports for p in s.model.parameters()]


def run_gad(m: Models, x: torch.Tensor, fail: str | None, method: str = "saliency"):
    with torch.enable_grad():  # training needs gradients (like train_xnn); the maps must not
        supports = gad.train_support_models(m.D, x, torch.tensor([0, 1, 0]), 0, 1, alphas=(2.0,), epochs=1, seed=1)
    fail_forward(m, fail, 1)
    r = gad.GAD(m.D, supports, method=method, ig_steps=4).explain(x, labels(fail), progress=progress(fail))
    return [r.importance, r.maps, r.gad_mask]


def run_gad_guided(m: Models, x: torch.Tensor, fail: str | None):
    return run_gad(m, x, fail, "guided_backprop")


Runner = Callable[..., object]

#: method -> (runner, the failures it can meet)
METHODS: dict[str, tuple[Runner, tuple[str, ...]]] = {
    "gradcam": (run_gradcam, ("target", "forward", "progress", "labels")),
    "contrastive_gradcam": (run_contrastive, ("forward", "progress", "labels")),
    "deeplift": (run_deeplift, ("target", "forward", "labels", "unsupported")),
    "excitation_bp": (run_excitation_bp, ("forward", "labels", "unsupported")),
    "excitation_bp_xnn_maps": (run_excitation_bp_xnn, ("forward", "progress", "unsupported")),
    "xnn_explain": (run_xnn_explain, ("forward", "labels")),
    "train_xnn": (run_train_xnn, ("forward", "progress")),
    "cdeepex": (run_cdeepex, ("forward", "progress", "labels")),
    "xgems": (run_xgems, ("forward", "progress", "labels")),
    "apem_gradient": (run_apem, ("forward", "progress")),
    "apem_smoothgrad": (run_apem_smoothgrad, ("forward", "progress")),
    "apem_lrp": (run_apem_lrp, ("forward", "progress")),
    "gad_support_models": (run_gad_supports, ("forward", "progress")),
    "gad_saliency": (run_gad, ("forward", "progress", "labels")),
    "gad_guided_backprop": (run_gad_guided, ("forward", "progress", "labels")),
}
#: the explainers proper (train_xnn and the GAD support models train, so they need gradients
#: from their caller)
EXPLAINERS = sorted(name for name in METHODS if name not in ("train_xnn", "gad_support_models"))
FAILURES = [(name, fail) for name, (_, fails) in sorted(METHODS.items()) for fail in fails]
RAISES: dict[str, type[Exception]] = {
    "target": Boom, "forward": Boom, "progress": Boom, "labels": ValueError, "unsupported": ValueError,
}


@contextmanager
def unsupported_layer(m: Models, fail: str | None) -> Iterator[None]:
    """For ``fail="unsupported"``: a LayerNorm (which neither DeepLIFT nor ExcitationBP has a
    rule for) sits in the classifier during the run; it is never called by ``forward``."""
    if fail != "unsupported":
        yield
        return
    m.D.extra = nn.LayerNorm(2)
    try:
        yield
    finally:
        del m.D.extra


def run(method: str, m: Models, fail: str | None = None) -> list[torch.Tensor]:
    runner, _ = METHODS[method]
    with unsupported_layer(m, fail):
        result = runner(m, images(), fail)
    return result if isinstance(result, list) else [result]


@pytest.fixture
def models(toy_models) -> Models:
    """The classifier, a generator and an XNN on the classifier's ``relu1``, in mixed states."""
    _, G = toy_models
    D = Net()
    z, logits = extract_z(D, "relu1", torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(5)))
    xnn = fit_xnn(z, logits, config=XNN_CFG, layer="relu1")
    D.train()
    D.bn.eval()  # mixed modes inside one model
    D.conv.bias.requires_grad_(False)  # mixed requires_grad
    G.eval()
    G.dec[0].train()
    G.enc.weight.requires_grad_(False)
    xnn.train()
    xnn.decoder.eval()
    xnn.v.weight.requires_grad_(False)
    return Models(D, G, xnn)


def snapshot(m: Models) -> dict[str, object]:
    state: dict[str, object] = {"grad_enabled": torch.is_grad_enabled()}
    for k, model in enumerate(m.all()):
        for name, module in model.named_modules():
            state[f"{k}:{name}:training"] = module.training
            for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
                state[f"{k}:{name}:{kind}"] = len(getattr(module, kind))
        for name, p in model.named_parameters():
            state[f"{k}:{name}:requires_grad"] = p.requires_grad
            state[f"{k}:{name}:grad"] = p.grad is None
            state[f"{k}:{name}:value"] = p.detach().clone()
        for name, b in model.named_buffers():
            state[f"{k}:{name}:buffer"] = b.detach().clone()
    return state


def assert_same(before: dict[str, object], after: dict[str, object]) -> None:
    assert before.keys() == after.keys()
    for key, value in before.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, after[key]), key
        else:
            assert value == after[key], key


@pytest.mark.parametrize("method", sorted(METHODS))
def test_models_are_restored_and_runs_repeat(method, models):
    before = snapshot(models)
    first = run(method, models)
    assert_same(before, snapshot(models))
    second = run(method, models)
    assert_same(before, snapshot(models))
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
        assert not a.requires_grad  # results are detached: no graph reaches the parameters


@pytest.mark.parametrize(("method", "fail"), FAILURES)
def test_models_are_restored_after_an_error(method, fail, models):
    before = snapshot(models)
    with pytest.raises(RAISES[fail]):  # the caller's exception comes through, never swallowed
        run(method, models, fail)
    models.D.fail_at = None
    assert_same(before, snapshot(models))
    run(method, models)  # and the models still work
    assert_same(before, snapshot(models))


@pytest.mark.parametrize("method", EXPLAINERS)
def test_explainers_work_under_the_callers_no_grad(method, models):
    before = snapshot(models)
    with torch.no_grad():
        run(method, models)
        assert not torch.is_grad_enabled()
    assert_same(before, snapshot(models))
