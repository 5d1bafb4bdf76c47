"""explainers.deeplift: the rescale rule by hand, completeness (sum = f(x) - f(x0) to 1e-4) on
toy nets, MnistNet and a torchvision ResNet, reused and in-place modules (model hygiene:
test_hygiene.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from explainers.deeplift import DeepLift, DeepLiftError
from explainers.hooks import ExplainerInputError
from explainers.nets.classifiers import MnistNet, torchvision_classifier
from explainers.targets import ClassTarget, ContrastTarget


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _complete(result, atol=1e-4):
    total = result.attributions.flatten(1).sum(1)
    torch.testing.assert_close(total, result.scores - result.baseline_scores, atol=atol, rtol=0)
    assert float(result.delta.abs().max()) < atol


# ----------------------------------------------------------------------------------------------
# Hand computations


def test_rescale_rule_single_relu_by_hand():
    # f(x) = relu(2 x1 + x2 - 1); x = (1, 1), x0 = (0, 0)
    # pre: 2 vs -1, out: 2 vs 0 -> multiplier 2/3; attributions (2*1, 1*1) * 2/3 = (4/3, 2/3)
    # (gradient x input would give (2, 1), which sums to 3, not f(x) - f(x0) = 2)
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 1), nn.ReLU())
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[2.0, 1.0]]))
        net[1].bias.fill_(-1.0)
    res = DeepLift(net).attribute(torch.tensor([[[[1.0, 1.0]]]]), 0)
    torch.testing.assert_close(res.attributions.flatten(), torch.tensor([4 / 3, 2 / 3]))
    torch.testing.assert_close(res.scores, torch.tensor([2.0]))
    torch.testing.assert_close(res.baseline_scores, torch.tensor([0.0]))


def test_zero_difference_falls_back_to_the_gradient():
    net = nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor([[3.0, 5.0]]))
        net[2].bias.zero_()
    res = DeepLift(net).attribute(torch.tensor([[[[2.0, 0.0]]]]), 0)  # second input equals x0
    torch.testing.assert_close(res.attributions.flatten(), torch.tensor([6.0, 0.0]))


@pytest.mark.parametrize(
    ("x", "x0", "expected"),
    [
        # y = max(1, 3) = 3, y0 = max(2, 0) = 2: Δy = 1 goes to x's arg-max (index 1)
        ([1.0, 3.0], [2.0, 0.0], [0.0, 1.0]),
        # y = 2, y0 = 3: Δy = -1 goes to the reference's arg-max (index 0), Δx there = -2
        ([1.0, 2.0], [3.0, 0.0], [-1.0, 0.0]),
    ],
)
def test_max_pool_rule_by_hand(x, x0, expected):
    net = nn.Sequential(nn.MaxPool2d((1, 2)), nn.Flatten())
    res = DeepLift(net).attribute(torch.tensor(x).view(1, 1, 1, 2), 0, baselines=torch.tensor(x0).view(1, 1, 1, 2))
    torch.testing.assert_close(res.attributions.flatten(), torch.tensor(expected))
    _complete(res)


# ----------------------------------------------------------------------------------------------
# Completeness


def mlp(act: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), act, nn.Linear(8, 6), act, nn.Linear(6, 3)).eval()


@pytest.mark.parametrize(
    "act", [nn.ReLU(), nn.LeakyReLU(0.1), nn.ELU(), nn.Sigmoid(), nn.Tanh(), nn.Softplus(), nn.SiLU(), nn.GELU()]
)
def test_completeness_for_every_elementwise_nonlinearity(act):
    torch.manual_seed(1)
    x, x0 = torch.randn(4, 1, 3, 4), torch.randn(4, 1, 3, 4)
    _complete(DeepLift(mlp(act)).attribute(x, ClassTarget(torch.tensor([0, 1, 2, 0])), baselines=x0))


def test_completeness_on_mnistnet_with_maxpool_and_resize():
    torch.manual_seed(0)
    net = MnistNet(4).eval()
    x = torch.rand(5, 1, 28, 28)
    _complete(DeepLift(net).attribute(x, [0, 1, 2, 3, 0]))
    _complete(DeepLift(net).attribute(x, ContrastTarget([0, 1, 2, 3, 0], [1, 2, 3, 0, 1]), baselines=torch.rand(5, 1, 28, 28)))


class SharedRelu(nn.Module):
    """One nn.ReLU (in place) used twice, and an overlapping max pool (3, stride 2)."""

    def __init__(self, shared: bool = True) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3)
        self.relu = nn.ReLU(inplace=shared)
        self.relu_b = self.relu if shared else nn.ReLU()
        self.pool = nn.MaxPool2d(3, 2)
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        x = self.pool(self.relu(self.c1(x)))
        return self.fc(self.relu_b(self.c2(x)).flatten(1))


def test_reused_inplace_relu_is_handled():
    torch.manual_seed(0)
    shared = SharedRelu(True).eval()
    separate = SharedRelu(False).eval()
    separate.load_state_dict(shared.state_dict())
    x, x0 = torch.rand(3, 1, 16, 16), torch.rand(3, 1, 16, 16)
    a = DeepLift(shared).attribute(x, 1, baselines=x0)
    b = DeepLift(separate).attribute(x, 1, baselines=x0)
    _complete(a)
    torch.testing.assert_close(a.attributions, b.attributions)


def test_completeness_on_a_torchvision_resnet():
    # BasicBlock calls one in-place nn.ReLU twice; residual additions are linear
    net = torchvision_classifier("resnet18", 4, use_cache=False).eval()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    _complete(DeepLift(net).attribute(x, [0, 3]), atol=1e-4)


def test_batched_equals_one_by_one():
    torch.manual_seed(0)
    net = MnistNet(3).eval()
    x = torch.rand(4, 1, 28, 28)
    together = DeepLift(net).attribute(x, [0, 1, 2, 0]).attributions
    alone = torch.cat([DeepLift(net).attribute(x[i : i + 1], [c]).attributions for i, c in enumerate([0, 1, 2, 0])])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=1e-4)


def test_results_do_not_depend_on_batch_size():
    torch.manual_seed(0)
    net = MnistNet(3).eval()
    x, x0 = torch.rand(5, 1, 28, 28), torch.rand(5, 1, 28, 28)
    for targets in (None, [0, 1, 2, 0, 1], 2, ContrastTarget([0, 1, 2, 0, 1], [1, 2, 0, 1, 2])):
        small = DeepLift(net, batch_size=2).attribute(x, targets, baselines=x0)
        large = DeepLift(net).attribute(x, targets, baselines=x0)
        torch.testing.assert_close(small.attributions, large.attributions, atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(small.scores, large.scores)
        _complete(small)


def test_matches_captum_where_captum_works():
    captum_attr = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    x, x0 = torch.rand(3, 1, 12, 12), torch.rand(3, 1, 12, 12)
    ours = DeepLift(net).attribute(x, 1, baselines=x0).attributions
    theirs = captum_attr.DeepLift(net).attribute(x, baselines=x0, target=1)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Heatmap, defaults, errors


def test_heatmap_for_the_predicted_class():
    torch.manual_seed(0)
    net = MnistNet(3).eval()
    x = torch.rand(3, 1, 28, 28)
    maps = DeepLift(net)(x)
    res = DeepLift(net).attribute(x)
    assert maps.shape == (3, 28, 28)
    assert bool((maps >= 0).all()) and bool((maps <= 1).all())
    torch.testing.assert_close(res.predicted, net(x).argmax(1))
    expected = res.attributions.sum(1).clamp(min=0)
    expected = expected / expected.flatten(1).amax(1)[:, None, None]
    torch.testing.assert_close(maps, expected)


def test_scalar_baseline():
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 1))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, -2.0]]))
        net[1].bias.zero_()
    res = DeepLift(net, baseline=0.5).attribute(torch.tensor([[[[1.0, 1.0]]]]), 0)
    torch.testing.assert_close(res.attributions.flatten(), torch.tensor([0.5, -1.0]))


def test_unsupported_layer_is_refused():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))
    with pytest.raises(DeepLiftError, match="LayerNorm"):
        DeepLift(net).attribute(torch.rand(1, 1, 2, 2), 0)


@pytest.mark.parametrize(
    ("images", "baselines", "match"),
    [
        (torch.rand(2, 4), None, "shape"),
        (torch.rand(2, 1, 2, 2), torch.rand(3, 1, 2, 2), "broadcast"),
        (torch.rand(2, 1, 2, 2), torch.full((1, 1, 2, 2), float("inf")), "infinite"),
    ],
)
def test_bad_inputs(images, baselines, match):
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ExplainerInputError, match=match):
        DeepLift(net).attribute(images, 0, baselines=baselines)
