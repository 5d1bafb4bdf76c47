"""GAD (§4-5 of the GAD paper): the distanced targets, the support regressions, the gradient
methods against hand-computed values, the intersection of hand-made maps, the convex-hull
complexity RC and the occlusion sensitivity RS by hand, and model hygiene."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from explainers.gad import (
    GAD,
    METHODS,
    attribute,
    complexity,
    convex_hull,
    distanced_targets,
    gad_metrics,
    importance,
    sensitivity,
    top_fraction,
    train_support_models,
)
from explainers.hooks import ExplainerInputError
from explainers.targets import ClassTarget

pytestmark = pytest.mark.usefixtures("single_thread")


def linear(*rows: list[float]) -> nn.Module:
    """``(N, 1, 2, 2) -> logits``: logit k = rows[k] · flatten(x); saliency of class k = |rows[k]|."""
    lin = nn.Linear(4, len(rows), bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(rows, dtype=torch.float32))
    return nn.Sequential(nn.Flatten(), lin)


# ---------------------------------------------------------------------------- distancing


def test_distanced_targets_subtract_alpha_from_the_other_class():
    logits = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    labels = torch.tensor([0, 2, 1])  # class a = 0, class b = 2; the third row is neither
    out = distanced_targets(logits, labels, 0, 2, 4.0)
    assert out.tolist() == [[1, 2, -1], [0, 5, 6], [7, 8, 9]]
    assert logits[0, 2] == 3  # the input is not changed


def test_support_models_fit_the_distance_and_leave_the_classifier_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    net.train()
    y = torch.arange(40) % 3  # class 1 is not in the pair and is dropped
    x = 0.3 * torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    x[:, 0, 0] += (y == 0).float()[:, None]  # the classes differ in what they show: top row
    x[:, 0, 3] += (y == 2).float()[:, None]  # for class 0, bottom row for class 2
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    sup = train_support_models(net, x, y, 0, 2, alphas=(2.0, 8.0), epochs=60, lr=1e-2, batch_size=8, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert net.training and all(p.requires_grad for p in net.parameters())
    assert [s.alpha for s in sup] == [2.0, 8.0]
    assert all(not s.model.training for s in sup)
    # the pair moved apart by about α (the toy is easy to fit)
    assert sup[0].achieved_gap == pytest.approx(2.0, abs=0.3)
    assert sup[1].achieved_gap == pytest.approx(8.0, abs=0.5)
    assert sup[1].final_mse < 0.1
    again = train_support_models(net, x, y, 0, 2, alphas=(2.0,), epochs=60, lr=1e-2, batch_size=8, seed=3)
    for a, b in zip(sup[0].model.parameters(), again[0].model.parameters(), strict=True):
        assert torch.equal(a, b)  # seeded
    with pytest.raises(ExplainerInputError, match="both classes"):
        train_support_models(net, x[y == 0], y[y == 0], 0, 2, alphas=(2.0,), epochs=1)


# ----------------------------------------------------------------------- gradient methods


def relu_net() -> nn.Module:
    """x = (1, 2): z = W1 x = (-1, 4), h = relu(z) = (0, 4), y = (1, 1) · h."""
    l1, l2 = nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        l1.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 1.0]]))
        l2.weight.copy_(torch.tensor([[1.0, 1.0]]))
    return nn.Sequential(nn.Flatten(), l1, nn.ReLU(), l2)


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("saliency", [2.0, 1.0]),  # |W1ᵀ (relu'(z) ⊙ (1, 1))| = |W1ᵀ (0, 1)| = (2, 1)
        ("gradient_x_input", [2.0, 2.0]),  # (2, 1) ⊙ (1, 2)
        ("guided_backprop", [2.0, 1.0]),  # relu(1, 1) masked by z > 0 -> (0, 1) -> (2, 1)
        ("deconvolution", [3.0, 0.0]),  # relu(1, 1) without the forward mask -> W1ᵀ (1, 1) = (3, 0)
        # y is linear along the path t·x for t in (0, 1] (the ReLU pattern does not change), so
        # IG = x ⊙ ∇y = gradient x input
        ("integrated_gradients", [2.0, 2.0]),
    ],
)
def test_gradient_methods_by_hand(method, expected):
    x = torch.tensor([1.0, 2.0]).view(1, 1, 1, 2)
    a = attribute(method, relu_net(), x, torch.tensor([0]), ig_steps=8)
    assert a.shape == x.shape
    assert torch.allclose(a.flatten(), torch.tensor(expected), atol=1e-5)


def test_attribute_refuses_callable_targets_and_unknown_methods():
    x = torch.zeros(1, 1, 1, 2)
    with pytest.raises(ExplainerInputError, match="class indices"):
        attribute("saliency", relu_net(), x, lambda logits: logits[:, 0])
    with pytest.raises(ExplainerInputError, match="unknown gradient method"):
        attribute("lime", relu_net(), x, 0)
    # a ClassTarget is read as its labels
    assert torch.equal(attribute("saliency", relu_net(), x, ClassTarget(0)), attribute("saliency", relu_net(), x, 0))


def test_importance_and_top_fraction():
    a = torch.tensor([[[[1.0, -3.0], [0.0, 2.0]], [[-2.0, 0.5], [0.0, 0.0]]]])  # (1, 2, 2, 2)
    assert importance(a).tolist() == [[[1.0, 2.5], [0.0, 2.0]]]  # |sum over channels|
    v = torch.tensor([[[4.0, 3.0], [0.0, 1.0]]])
    assert top_fraction(v, 0.5).tolist() == [[[True, True], [False, False]]]
    # zeros never count as important, even inside the top half
    z = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    assert top_fraction(z, 0.5).tolist() == [[[True, False], [False, False]]]
    assert top_fraction(torch.zeros(1, 2, 2), 0.5).sum() == 0
    # the top half of the non-zero pixels (default) or of all pixels
    w = torch.tensor([[[4.0, 3.0], [0.0, 0.0]]])
    assert top_fraction(w, 0.5).tolist() == [[[True, False], [False, False]]]
    assert top_fraction(w, 0.5, among="all").tolist() == [[[True, True], [False, False]]]
    # per map, ties at the threshold kept
    two = torch.tensor([[[1.0, 1.0], [1.0, 0.0]], [[5.0, 4.0], [3.0, 2.0]]])
    assert top_fraction(two, 0.5).tolist() == [[[True, True], [True, False]], [[True, True], [False, False]]]


# --------------------------------------------------------------------------------- GAD


# saliency of class 0 = |row 0|, pixels in (0,0) (0,1) (1,0) (1,1) order; top 50 % = top 2:
ORIGINAL = [4.0, 3.0, 2.0, 1.0]  # {0, 1}
SUPPORTS = [
    [3.0, 4.0, 1.0, 2.0],  # {0, 1}
    [1.0, 4.0, 3.0, 2.0],  # {1, 2}
    [4.0, 3.0, 1.0, 2.0],  # {0, 1}
    [2.0, 3.0, 1.0, 4.0],  # {1, 3}
]  # in all five: {1}


def hand_gad() -> GAD:
    other = [0.0, 0.0, 0.0, 0.0]
    return GAD(linear(ORIGINAL, other), [linear(s, other) for s in SUPPORTS], method="saliency")


def test_gad_keeps_the_pixels_important_in_every_map():
    x = torch.ones(1, 1, 2, 2)
    res = hand_gad().explain(x, torch.tensor([0]))
    assert res.original_mask.flatten().tolist() == [True, True, False, False]
    assert res.masks.shape == (1, 5, 2, 2)
    assert res.gad_mask.flatten().tolist() == [False, True, False, False]
    assert torch.allclose(res.maps.flatten(), torch.tensor([0.0, 1.0, 0.0, 0.0]))  # 3 · mask / 3
    assert torch.allclose(res.original_maps.flatten(), torch.tensor(ORIGINAL) / 4)
    # default target: the classifier's prediction (class 0: 10 > 0); a GAD is a heatmap method
    assert torch.equal(hand_gad()(x), res.maps)


def test_convex_hull_by_hand():
    m = np.zeros((4, 4), bool)
    assert convex_hull(m)[0] == 0.0
    m[1, 2] = True
    area, filled = convex_hull(m)
    assert area == pytest.approx(1.0) and filled.sum() == 1 and filled[1, 2]
    m[:] = False
    m[0, 0] = m[3, 3] = m[0, 3] = m[3, 0] = True  # the four corners: the whole 4x4 square
    area, filled = convex_hull(m)
    assert area == pytest.approx(16.0) and filled.all()
    m[:] = False
    m[0, 0] = m[0, 3] = True  # one row: a 1x4 strip
    area, filled = convex_hull(m)
    assert area == pytest.approx(4.0) and filled[0].all() and not filled[1:].any()


def test_complexity_by_hand():
    orig = torch.zeros(4, 4, 4, dtype=torch.bool)
    orig[:, 0, 0] = orig[:, 3, 3] = orig[:, 0, 3] = orig[:, 3, 0] = True  # area 16
    gad = torch.zeros_like(orig)
    gad[0, 0, 0] = True  # area 1
    gad[1, 0, 0] = gad[1, 0, 1] = True  # area 2
    gad[2] = orig[2]  # the same hull: RC = 1 (counts for the original method)
    # gad[3] empty: RC = 0
    rc = complexity(gad, orig)
    assert rc.tolist() == pytest.approx([1 / 16, 2 / 16, 1.0, 0.0])
    assert torch.isnan(complexity(gad[:1], torch.zeros_like(orig[:1]))).all()


def test_sensitivity_by_hand():
    net = linear([1.0, 2.0, 3.0, 4.0])
    x = torch.ones(2, 1, 2, 2)
    masks = torch.tensor([[[False, False], [False, True]], [[True, True], [False, False]]])
    # occluding pixel 3 removes 4 (one pixel); occluding pixels 0, 1 removes 3 (two pixels)
    assert sensitivity(net, x, masks, 0).tolist() == pytest.approx([4.0, 1.5])
    # grey occlusion (fill 0.5) removes half as much from an all-ones image
    assert sensitivity(net, x, masks, 0, fill=0.5).tolist() == pytest.approx([2.0, 0.75])
    assert torch.isnan(sensitivity(net, x[:1], torch.zeros(1, 2, 2, dtype=torch.bool), 0)).all()


def test_gad_metrics_by_hand():
    x = torch.ones(1, 1, 2, 2)
    res = hand_gad().explain(x, torch.tensor([0]))
    m = gad_metrics(linear(ORIGINAL, [0.0] * 4), x, res)
    # original {(0,0), (0,1)}: a 1x2 strip, area 2; GAD {(0,1)}: area 1
    assert m.area_orig.tolist() == [2.0] and m.area_gad.tolist() == [1.0]
    assert m.rc.tolist() == [0.5]
    # N_0 = 4 x00 + 3 x01 + 2 x10 + x11: occluding (0,1) costs 3 per pixel, the supplementary
    # (0,0) costs 4
    assert m.rs_gad.tolist() == [3.0] and m.rs_sup.tolist() == [4.0]
    assert m.empty_gad.tolist() == [False]


# ------------------------------------------------------------------------------ hygiene


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.flat = nn.Flatten()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(3 * 4 * 4, 4)
        self.fail = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail:
            raise RuntimeError("boom")
        return self.fc(self.drop(self.flat(self.pool(self.relu(self.bn(self.conv(x)))))))


def mixed(net: Net) -> Net:
    net.train()
    net.bn.eval()
    net.conv.bias.requires_grad_(False)
    return net


def snapshot(*models: nn.Module) -> dict[str, object]:
    state: dict[str, object] = {"grad": torch.is_grad_enabled()}
    for k, model in enumerate(models):
        for name, m in model.named_modules():
            state[f"{k}{name}:training"] = m.training
            state[f"{k}{name}:attrs"] = sorted(m.__dict__)
            for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
                state[f"{k}{name}:{kind}"] = len(getattr(m, kind))
        for name, p in model.named_parameters():
            state[f"{k}{name}:rg"] = p.requires_grad
            state[f"{k}{name}:grad"] = p.grad is None
            state[f"{k}{name}:value"] = p.detach().clone()
        for name, b in model.named_buffers():
            state[f"{k}{name}:buffer"] = b.detach().clone()
    return state


def same(a: dict[str, object], b: dict[str, object]) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(v, b[k]) if isinstance(v, torch.Tensor) else v == b[k] for k, v in a.items()
    )


@pytest.mark.parametrize("method", METHODS)
def test_gad_restores_every_model(method):
    nets = [mixed(Net()) for _ in range(3)]
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    gad = GAD(nets[0], nets[1:], method=method, ig_steps=4, chunk_size=2)
    before = snapshot(*nets)
    first = gad.explain(x, torch.tensor([0, 1, 2]))
    assert same(before, snapshot(*nets))
    again = gad.explain(x, torch.tensor([0, 1, 2]))
    assert torch.equal(first.maps, again.maps) and not first.maps.requires_grad
    nets[2].fail = True
    with pytest.raises(RuntimeError, match="boom"):
        gad.explain(x, torch.tensor([0, 1, 2]))
    nets[2].fail = False
    assert same(before, snapshot(*nets))
    m = gad_metrics(nets[0], x, first)
    assert same(before, snapshot(*nets))
    assert m.rc.shape == (3,) and bool(((m.rc >= 0) & (m.rc <= 1 + 1e-9)).all())


def test_gad_on_mnistnet_with_every_method():
    from explainers.nets.classifiers import MnistNet

    torch.manual_seed(0)
    nets = [MnistNet(10) for _ in range(2)]
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    for method in METHODS:
        res = GAD(nets[0], nets[1:], method=method, ig_steps=4).explain(x, torch.tensor([3, 7]))
        assert res.maps.shape == (2, 28, 28) and float(res.maps.max()) <= 1.0
        assert bool((res.gad_mask <= res.original_mask).all())  # a subset of the original's


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_masks_on_cuda():
    x = torch.ones(1, 1, 2, 2)
    cpu = hand_gad().explain(x, torch.tensor([0]))
    gad = hand_gad()
    gad.model.cuda()
    for s in gad.supports:
        s.cuda()
    gpu = gad.explain(x.cuda(), torch.tensor([0]))
    assert gpu.maps.device.type == "cuda" and torch.equal(gpu.gad_mask.cpu(), cpu.gad_mask)
