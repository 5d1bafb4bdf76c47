"""One generated test over every method: the caller's models come back exactly as they were
(train/eval mode of every submodule, requires_grad of every parameter, no hooks, no .grad),
after a normal run *and* after an exception inside the run, and seeded runs repeat exactly.

Failures are injected where a caller's code runs inside the method: the target callable
(Grad-CAM), the model's forward pass (contrastive Grad-CAM's batched evaluation, CDeepEx's
optimisation), and the progress callback.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from explainers.cdeepex import CDeepExConfig, explain
from explainers.gradcam import GradCAM, contrastive_gradcam
from explainers.targets import ClassTarget

pytestmark = pytest.mark.usefixtures("single_thread")


class Boom(RuntimeError):
    pass


def flaky(base: type[nn.Module]) -> type[nn.Module]:
    """A subclass of ``base`` that raises :class:`Boom` on forward call ``fail_at`` (1-based)."""

    class Flaky(base):
        def __init__(self) -> None:
            super().__init__()
            self.fail_at: int | None = None
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.fail_at is not None and self.calls == self.fail_at:
                raise Boom("forward failed")
            return super().forward(x)

    return Flaky


def raising(*_args: object) -> None:
    raise Boom("callback failed")


def failing_target(logits: torch.Tensor) -> torch.Tensor:
    raise Boom("target failed")


CFG = CDeepExConfig(z0_steps=20, outer_iterations=6, num_frames=4)
LABELS = torch.tensor([0, 1, 2])
PROBES = torch.tensor([1, 2, 3])


def run_gradcam(D, G, x, fail):
    target = failing_target if fail == "target" else ClassTarget(LABELS)
    return GradCAM(D, D.conv)(x, target, progress=raising if fail == "progress" else None)


def run_contrastive(D, G, x, fail):
    if fail == "target":
        D.fail_at = D.calls + 2  # the batched evaluation of the imposed maps
    return contrastive_gradcam(
        D, "conv", x, LABELS, PROBES, torch.tensor([0.5, 1.0]),
        progress=raising if fail == "progress" else None,
    )


def run_cdeepex(D, G, x, fail, inequality=True):
    if fail == "target":
        D.fail_at = D.calls + 5  # inside the augmented-Lagrangian loop
    return explain(
        D, G, x, true_labels=LABELS, probe_labels=PROBES, inequality=inequality,
        generator_kind="gan", config=CFG, seed=3, progress=raising if fail == "progress" else None,
    )


def run_xgems(D, G, x, fail):
    return run_cdeepex(D, G, x, fail, inequality=False)


METHODS: dict[str, Callable] = {
    "gradcam": run_gradcam,
    "contrastive_gradcam": run_contrastive,
    "cdeepex": run_cdeepex,
    "xgems": run_xgems,
}


@pytest.fixture
def models(toy_classes) -> tuple[nn.Module, nn.Module]:
    """A flaky toy classifier and a toy generator, both in *mixed* caller states."""
    classifier, generator = toy_classes
    D, G = flaky(classifier)(), generator()
    D.train()
    D.bn.eval()  # mixed modes inside one model
    D.conv.bias.requires_grad_(False)  # mixed requires_grad
    G.eval()
    G.dec[0].train()
    G.enc.weight.requires_grad_(False)
    return D, G


def snapshot(*models: nn.Module) -> dict[str, object]:
    state: dict[str, object] = {}
    for k, model in enumerate(models):
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


def images() -> torch.Tensor:
    return torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(11))


def outputs(result: object) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    return [result.z0, result.z_path, result.frames, result.llh, result.converged]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_models_are_restored_and_runs_repeat(method, models):
    D, G = models
    before = snapshot(D, G)
    first = METHODS[method](D, G, images(), None)
    assert_same(before, snapshot(D, G))
    second = METHODS[method](D, G, images(), None)
    assert_same(before, snapshot(D, G))
    for a, b in zip(outputs(first), outputs(second), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("fail", ["target", "progress"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_models_are_restored_after_an_error(method, fail, models):
    D, G = models
    before = snapshot(D, G)
    with pytest.raises(Boom):  # the caller's exception comes through, never swallowed
        METHODS[method](D, G, images(), fail)
    D.fail_at = None
    assert_same(before, snapshot(D, G))
    METHODS[method](D, G, images(), None)  # and the models still work
    assert_same(before, snapshot(D, G))


def test_caller_grad_mode_is_untouched(models):
    D, G = models
    with torch.no_grad():
        maps = run_gradcam(D, G, images(), None)  # Grad-CAM still works under no_grad
        run_cdeepex(D, G, images(), None)
        assert not torch.is_grad_enabled()
    assert maps.shape == (3, 8, 8) and torch.is_grad_enabled()
