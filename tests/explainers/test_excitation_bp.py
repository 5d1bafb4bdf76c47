"""explainers.excitation_bp: contrastive MWP checked against hand computations on toy networks,
batching, the XNN path, supported/unsupported layers (model hygiene: test_hygiene.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from explainers.excitation_bp import ExcitationBP, ExcitationBPError, normalise_maps, top_signals
from explainers.hooks import ExplainerInputError
from explainers.nets.classifiers import MnistNet, torchvision_classifier
from explainers.xnn import XNN, XNNConfig, fit_xnn


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy_mlp() -> nn.Sequential:
    """x (3) -> Linear W1 -> ReLU -> Linear W2 (2 logits), weights chosen for hand computation."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, -1.0, 2.0], [0.5, 1.0, -1.0]]))
        net[1].bias.copy_(torch.tensor([0.0, 1.0]))
        net[3].weight.copy_(torch.tensor([[1.0, -2.0], [-1.0, 3.0]]))
        net[3].bias.zero_()
    return net


X = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3)


# ----------------------------------------------------------------------------------------------
# Hand computations


def test_toy_two_layer_network_matches_hand_computation():
    # h = relu(W1 x + b1) = relu([1 - 2 + 6, 0.5 + 2 - 3 + 1]) = [5, 0.5]; class 0 has w = [1, -2].
    # Top: P = h w+ / sum = [5, 0] / 5 = [1, 0];  dual: h (-w)+ / sum = [0, 1] / 1 = [0, 1].
    # W1+ = [[1, 0, 2], [0.5, 1, 0]], Y+ = W1+ x = [7, 2.5].
    # P(x)  = x * W1+^T ([1, 0] / Y+) = [1/7, 0, 6/7]
    # P̄(x)  = x * W1+^T ([0, 1] / Y+) = [0.5/2.5, 2/2.5, 0] = [0.2, 0.8, 0]
    raw, predicted = ExcitationBP(toy_mlp(), None).class_mwp(X, [0])
    torch.testing.assert_close(raw.target.flatten(), torch.tensor([1 / 7, 0.0, 6 / 7]))
    torch.testing.assert_close(raw.dual.flatten(), torch.tensor([0.2, 0.8, 0.0]))
    torch.testing.assert_close(raw.contrastive.flatten(), torch.tensor([1 / 7 - 0.2, -0.8, 6 / 7]))
    torch.testing.assert_close(raw.mass, torch.tensor([1.0]))
    # maps: positive part, max = 1
    c_map = ExcitationBP(toy_mlp(), None)(X, [0])
    torch.testing.assert_close(c_map, torch.tensor([[[0.0, 0.0, 1.0]]]))
    plain = ExcitationBP(toy_mlp(), None, contrastive=False)(X, [0])
    torch.testing.assert_close(plain, torch.tensor([[[1 / 6, 0.0, 1.0]]]))


def test_toy_other_class_and_default_is_the_prediction():
    # logits = W2 h = [5 - 1, -5 + 1.5] = [4, -3.5]: predicted class 0.
    net = toy_mlp()
    raw_default, predicted = ExcitationBP(net, None).class_mwp(X)
    assert predicted.tolist() == [0]
    raw0, _ = ExcitationBP(net, None).class_mwp(X, [0])
    torch.testing.assert_close(raw_default.contrastive, raw0.contrastive)
    # class 1: w = [-1, 3]: P at h = [0, 1], dual = [1, 0]: the swap of class 0's signals.
    raw1, _ = ExcitationBP(net, None).class_mwp(X, [1])
    torch.testing.assert_close(raw1.target, raw0.dual)
    torch.testing.assert_close(raw1.dual, raw0.target)


def test_top_signals_rows_without_excitation_are_zero():
    h = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    w = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    p, pd = top_signals(h, w)
    torch.testing.assert_close(p, torch.tensor([[1 / 3, 2 / 3], [0.0, 0.0]]))
    torch.testing.assert_close(pd, torch.zeros(2, 2))


def test_max_pool_winner_takes_all_hand_computation():
    # conv 1x1 (weight 1) -> maxpool 2 -> linear (w = 2 for class 0): all MWP to the arg-max pixel
    net = nn.Sequential(nn.Conv2d(1, 1, 1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
        net[3].weight.copy_(torch.tensor([[2.0], [-1.0]]))
        net[3].bias.zero_()
    x = torch.tensor([[1.0, 3.0], [2.0, 0.0]]).view(1, 1, 2, 2)
    raw, _ = ExcitationBP(net, None).class_mwp(x, [0])
    torch.testing.assert_close(raw.target[0, 0], torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    torch.testing.assert_close(raw.dual, torch.zeros_like(raw.dual))  # no negative weight


def test_avg_pool_distributes_in_proportion_to_activation():
    net = nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net[2].bias.zero_()
    x = torch.tensor([[1.0, 3.0], [0.0, 4.0]]).view(1, 1, 2, 2)
    raw, _ = ExcitationBP(net, None).class_mwp(x, [0])
    torch.testing.assert_close(raw.target[0, 0], x[0, 0] / 8.0)


def test_batchnorm_with_positive_scale_equals_no_batchnorm():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 3, 3)
    plain = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 2.0, 1.5]))
        bn.bias.zero_()  # a shift changes the ReLU mask, a scale alone does not
        bn.running_var.copy_(torch.tensor([1.0, 4.0, 0.25]))
    with_bn = nn.Sequential(conv, bn, nn.ReLU(), nn.Flatten(), plain[3]).eval()
    x = torch.rand(2, 1, 6, 6)
    a, _ = ExcitationBP(plain, None).class_mwp(x, [0, 1])
    b, _ = ExcitationBP(with_bn, None).class_mwp(x, [0, 1])
    torch.testing.assert_close(a.target, b.target)
    torch.testing.assert_close(a.dual, b.dual)


# ----------------------------------------------------------------------------------------------
# MnistNet, batching, layers


@pytest.fixture(scope="module")
def mnist():
    torch.manual_seed(0)
    net = MnistNet(4)
    images = torch.rand(6, 1, 28, 28) * (torch.rand(6, 1, 28, 28) > 0.6)
    return net, images


@pytest.mark.parametrize("layer", ["relu1", "conv2", "relu2"])
def test_mnistnet_mass_is_conserved_down_to_conv_layers(mnist, layer):
    net, images = mnist
    raw, predicted = ExcitationBP(net, layer).class_mwp(images)
    torch.testing.assert_close(raw.mass, torch.ones(6), atol=1e-4, rtol=0)
    torch.testing.assert_close(raw.contrastive.flatten(1).sum(1), torch.zeros(6), atol=1e-4, rtol=0)
    maps = ExcitationBP(net, layer)(images)
    assert maps.shape == (6, 28, 28)
    assert float(maps.min()) >= 0 and torch.allclose(maps.flatten(1).amax(1), torch.ones(6))


def test_pixel_level_maps_on_mnistnet(mnist):
    net, images = mnist
    maps = ExcitationBP(net, None)(images)
    assert maps.shape == (6, 28, 28) and float(maps.max()) == 1.0
    raw, _ = ExcitationBP(net, None).class_mwp(images)
    assert bool((raw.mass <= 1 + 1e-4).all()) and bool((raw.mass > 0.5).all())


def test_batched_equals_one_by_one(mnist):
    net, images = mnist
    ebp = ExcitationBP(net, "relu1")
    together = ebp(images, [0, 1, 2, 3, 0, 1])
    alone = torch.cat([ebp(images[i : i + 1], [c]) for i, c in enumerate([0, 1, 2, 3, 0, 1])])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_results_do_not_depend_on_batch_size(mnist, mnist_xnn):
    net, images = mnist
    small, large = ExcitationBP(net, "relu1", batch_size=4), ExcitationBP(net, "relu1")
    close = {"atol": 1e-4, "rtol": 1e-4}  # float noise of different matrix shapes only
    torch.testing.assert_close(small(images, [0, 1, 2, 3, 0, 1]), large(images, [0, 1, 2, 3, 0, 1]), **close)
    torch.testing.assert_close(small(images), large(images), **close)
    calls = []
    torch.testing.assert_close(small.xnn_maps(mnist_xnn, images, progress=calls.append), large.xnn_maps(mnist_xnn, images), **close)
    assert [c["step"] for c in calls] == [1, 2, 3, 4, 5, 6] and calls[-1]["total"] == 6


def test_layer_given_as_module_equals_name(mnist):
    net, images = mnist
    torch.testing.assert_close(ExcitationBP(net, net.relu1)(images), ExcitationBP(net, "relu1")(images))


def test_normalise_maps():
    m = torch.tensor([[[-1.0, 2.0], [4.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    torch.testing.assert_close(normalise_maps(m), torch.tensor([[[0.0, 0.5], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]))


# ----------------------------------------------------------------------------------------------
# From x-features of an XNN


def test_xnn_feature_hand_computation():
    # classifier: toy MLP, Z = its hidden ReLU output h = [5, 0.5]
    # XNN: Z -> A -> ReLU -> u -> B (x-layer, top)
    net = toy_mlp()
    xnn = XNN(2, 2, n_features=2, hidden=(2,), layer="2")
    with torch.no_grad():
        xnn.encoder[0].weight.copy_(torch.tensor([[1.0, 2.0], [1.0, -4.0]]))
        xnn.encoder[0].bias.zero_()
        xnn.encoder[2].weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 2.0]]))
        xnn.encoder[2].bias.zero_()
    # u = relu(A h) = relu([5 + 1, 5 - 2]) = [6, 3]
    # feature 0 (B_0 = [1, -1]): P(u) = [1, 0], dual = [0, 1]
    # A+ = [[1, 2], [1, 0]], Y+ = A+ h = [6, 5]
    # P(h)  = h * A+^T([1, 0] / Y+) = [5 * 1/6, 0.5 * 2/6] = [5/6, 1/6]
    # P̄(h)  = h * A+^T([0, 1] / Y+) = [5 * 1/5, 0] = [1, 0]
    # then into x through W1+ = [[1, 0, 2], [0.5, 1, 0]] with Y+ = [7, 2.5]
    def down(p_h):
        return torch.tensor([
            1 * (p_h[0] / 7 * 1 + p_h[1] / 2.5 * 0.5),
            2 * (p_h[0] / 7 * 0 + p_h[1] / 2.5 * 1),
            3 * (p_h[0] / 7 * 2 + p_h[1] / 2.5 * 0),
        ])

    raws = ExcitationBP(net, None).xnn_mwp(xnn, X, features=[0])
    torch.testing.assert_close(raws[0].target.flatten(), down([5 / 6, 1 / 6]))
    torch.testing.assert_close(raws[0].dual.flatten(), down([1.0, 0.0]))
    # feature 1 (B_1 = [0, 2]): P(u) = [0, 1], no dual (no negative weight)
    raws = ExcitationBP(net, None).xnn_mwp(xnn, X, features=[1])
    torch.testing.assert_close(raws[0].target.flatten(), down([1.0, 0.0]))
    torch.testing.assert_close(raws[0].dual, torch.zeros_like(raws[0].dual))


@pytest.fixture(scope="module")
def mnist_xnn(mnist):
    net, images = mnist
    from explainers.xnn import extract_z

    z, logits = extract_z(net, "relu3", images)
    return fit_xnn(z, logits, config=XNNConfig(n_features=3, hidden=(16, 8), epochs=20), layer="relu3")


def test_xnn_maps_shapes_and_normalisation(mnist, mnist_xnn):
    net, images = mnist
    calls = []
    maps = ExcitationBP(net, "relu1").xnn_maps(mnist_xnn, images, progress=calls.append)
    assert maps.shape == (6, 3, 28, 28)
    peaks = maps.flatten(2).amax(2)
    assert bool(((peaks == 1) | (peaks == 0)).all())
    assert [c["step"] for c in calls] == [1, 2, 3] and calls[0]["stage"] == "excitation_bp"
    raws = ExcitationBP(net, "relu1").xnn_mwp(mnist_xnn, images)
    for r in raws:
        torch.testing.assert_close(r.mass, torch.ones(6), atol=1e-4, rtol=0)
    one = ExcitationBP(net, "relu1").xnn_maps(mnist_xnn, images, features=[2])
    torch.testing.assert_close(one[:, 0], maps[:, 2])


def test_xnn_attached_before_the_relu_also_works(mnist):
    net, images = mnist
    from explainers.xnn import extract_z

    z, logits = extract_z(net, "fc1", images)
    xnn = fit_xnn(z, logits, config=XNNConfig(n_features=2, hidden=(8,), epochs=5), layer="fc1")
    maps = ExcitationBP(net, "relu2").xnn_maps(xnn, images)
    assert maps.shape == (6, 2, 28, 28) and bool(torch.isfinite(maps).all())


def test_xnn_bad_feature_index(mnist, mnist_xnn):
    net, images = mnist
    with pytest.raises(ExplainerInputError, match="features"):
        ExcitationBP(net, "relu1").xnn_maps(mnist_xnn, images, features=[3])


def test_map_layer_above_z_is_an_error(mnist, mnist_xnn):
    net, images = mnist
    with pytest.raises(ExcitationBPError, match="below"):
        ExcitationBP(net, "fc2").xnn_maps(mnist_xnn, images)


# ----------------------------------------------------------------------------------------------
# Supported and unsupported models


def vgg_like() -> nn.Module:
    """The layout of torchvision's VGG (features / avgpool / classifier), tiny."""

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            )
            self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
            self.classifier = nn.Sequential(
                nn.Linear(24, 16), nn.ReLU(inplace=True), nn.Dropout(), nn.Linear(16, 3)
            )

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    torch.manual_seed(1)
    return Tiny().eval()


def test_vgg_style_model_with_inplace_relu_and_batchnorm():
    net = vgg_like()
    x = torch.randn(3, 3, 16, 16)
    raw, _ = ExcitationBP(net, "features.2").class_mwp(x)
    torch.testing.assert_close(raw.mass, torch.ones(3), atol=1e-4, rtol=0)
    assert ExcitationBP(net, "features.2")(x).shape == (3, 16, 16)


def test_unsupported_layer_is_refused():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2))
    with pytest.raises(ExcitationBPError, match="Sigmoid"):
        ExcitationBP(net, None)(torch.rand(1, 1, 2, 2))


def test_residual_network_is_refused_with_a_clear_message():
    net = torchvision_classifier("resnet18", 3, use_cache=False).eval()
    with pytest.raises(ExcitationBPError, match="residual"):
        ExcitationBP(net, "layer1")(torch.randn(1, 3, 32, 32))


def test_non_spatial_layer_gives_raw_mwp_but_no_map():
    net = toy_mlp()
    raw, _ = ExcitationBP(net, "2").class_mwp(X, [0])
    torch.testing.assert_close(raw.target, torch.tensor([[1.0, 0.0]]))
    with pytest.raises(ExcitationBPError, match="spatial"):
        ExcitationBP(net, "2")(X, [0])


@pytest.mark.parametrize(
    ("images", "classes", "match"),
    [
        (torch.rand(1, 3), None, "shape"),
        (torch.full((1, 1, 1, 3), float("nan")), None, "NaN"),
        (X, [5], "out of range"),
        (X, [0, 1], "shape"),
    ],
)
def test_bad_inputs(images, classes, match):
    with pytest.raises(ExplainerInputError, match=match):
        ExcitationBP(toy_mlp(), None)(images, classes)
