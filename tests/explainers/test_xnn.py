"""explainers.xnn (SRAE, equation 5) and explainers.xnn_metrics (section 4.2): loss terms by
hand, deterministic training, faithfulness, contributions, MnistNet and torchvision layers,
checkpoints and errors (model hygiene: test_hygiene.py); metrics on hand-computed cases."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from explainers.hooks import ExplainerInputError
from explainers.nets.checkpoints import load_checkpoint, save_checkpoint
from explainers.nets.classifiers import MnistNet, torchvision_classifier
from explainers.xnn import (
    XNN,
    XNNConfig,
    extract_z,
    faithfulness_loss,
    fit_xnn,
    normalise_contributions,
    penultimate_layer,
    pull_away,
    reconstruction_loss,
    train_xnn,
    xnn_loss,
)
from explainers.xnn_metrics import f_cls, f_reg, locality, orthogonality

SMALL = XNNConfig(hidden=(32, 16), epochs=150, lr=3e-3)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mnist():
    torch.manual_seed(0)
    net = MnistNet(4).eval()
    images = torch.rand(64, 1, 28, 28) * (torch.rand(64, 1, 28, 28) > 0.5)
    with torch.no_grad():  # an untrained net's logits barely vary: give them a trained net's
        net.fc1.weight *= 5  # spread (~2) and centre them so that all four classes are predicted
        net.fc2.weight *= 100
        net.fc2.bias -= net(images).mean(0)
    return net, images


# ----------------------------------------------------------------------------------------------
# Loss terms by hand


def test_pull_away_by_hand():
    torch.testing.assert_close(pull_away(torch.tensor([[1.0, 0.0], [0.0, 1.0]])), torch.tensor(0.0))
    torch.testing.assert_close(pull_away(torch.tensor([[1.0, 2.0], [1.0, 2.0]])), torch.tensor(1.0))
    # columns (1, 0), (1, 1), (0, 1): cos² = 1/2, 0, 1/2 for the three pairs; mean over 6 ordered pairs
    e = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    torch.testing.assert_close(pull_away(e), torch.tensor(2 * (0.5 + 0.0 + 0.5) / 6))
    # a dead column is uncorrelated with the rest
    torch.testing.assert_close(pull_away(torch.tensor([[1.0, 0.0], [2.0, 0.0]])), torch.tensor(0.0))


def test_faithfulness_and_reconstruction_by_hand():
    torch.testing.assert_close(
        faithfulness_loss(torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 1.0]])),
        torch.tensor((1 + 4 + 1) / 2),
    )
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    z_tilde = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # Q = (1, 0)
    torch.testing.assert_close(reconstruction_loss(z_tilde, z, q=3.0, mode="srae"), torch.tensor(math.log(4) / 2))
    torch.testing.assert_close(reconstruction_loss(z_tilde, z, q=3.0, mode="sae"), torch.tensor(0.5))
    torch.testing.assert_close(reconstruction_loss(z_tilde, z, q=3.0, mode="nn"), torch.tensor(0.0))


def test_xnn_loss_combines_the_terms():
    torch.manual_seed(0)
    xnn = XNN(5, 3, n_features=4, hidden=(6, 5))
    z, y = torch.rand(8, 5), torch.randn(8, 3)
    t = xnn_loss(xnn, z, y, beta=0.7, q=2.0, eta=0.3, mode="srae")
    e = xnn.embed(z)
    torch.testing.assert_close(t["faithfulness"], ((e @ xnn.v.weight.T - y) ** 2).sum(1).mean())
    torch.testing.assert_close(t["reconstruction"], torch.log1p(2.0 * ((xnn.decoder(e) - z) ** 2).mean(0)).mean())
    torch.testing.assert_close(t["pull_away"], pull_away(e))
    torch.testing.assert_close(t["loss"], t["faithfulness"] + 0.7 * t["reconstruction"] + 0.3 * t["pull_away"])
    assert float(xnn_loss(xnn, z, y, beta=0.7, q=2.0, eta=0.3, mode="nn")["reconstruction"]) == 0.0


def test_architecture():
    xnn = XNN(50, 4, n_features=7)
    linears = [m for m in xnn.encoder if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(50, 800), (800, 100), (100, 7)]
    assert isinstance(xnn.encoder[-1], nn.Softplus)
    assert xnn.v.bias is None and tuple(xnn.v.weight.shape) == (4, 7)
    dec = [m for m in xnn.decoder if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in dec] == [(7, 100), (100, 800), (800, 50)]
    assert isinstance(XNN(5, 2, x_activation="relu").encoder[-1], nn.ReLU)
    assert isinstance(XNN(5, 2, x_activation="linear").encoder[-1], nn.Linear)
    with pytest.raises(ValueError, match="x_activation"):
        XNN(5, 2, x_activation="tanh")


# ----------------------------------------------------------------------------------------------
# Training


def test_training_is_deterministic_and_seeded(mnist):
    net, images = mnist
    a = train_xnn(net, "relu3", images, config=replace(SMALL, n_features=3, seed=3, epochs=20))
    b = train_xnn(net, "relu3", images, config=replace(SMALL, n_features=3, seed=3, epochs=20))
    c = train_xnn(net, "relu3", images, config=replace(SMALL, n_features=3, seed=4, epochs=20))
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_training_leaves_the_global_rng_alone(mnist):
    net, images = mnist
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_xnn(net, "relu3", images, config=replace(SMALL, n_features=2, epochs=3))
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize(("mode", "eta"), [("srae", 1.0), ("nn", 0.0), ("sae", 0.0)])
def test_every_mode_becomes_faithful(mnist, mode, eta):
    net, images = mnist
    z, logits = extract_z(net, "relu3", images)
    calls = []
    assert len(set(logits.argmax(1).tolist())) == 4
    config = replace(SMALL, epochs=300, n_features=5, mode=mode, eta=eta, beta=0.1, q=1.0)
    xnn = fit_xnn(z, logits, config=config, progress=calls.append)
    with torch.no_grad():
        approx = xnn(z)
    constant = f_reg(logits, logits.mean(0).expand_as(logits))  # predicting the mean logits
    assert f_reg(logits, approx) < 0.25 * constant
    assert f_cls(logits, approx) >= 0.85
    assert len(calls) == config.epochs and calls[-1]["stage"] == "train_xnn"
    assert calls[-1]["faithfulness"] < calls[0]["faithfulness"]
    assert not xnn.training


def test_minibatches(mnist):
    net, images = mnist
    z, logits = extract_z(net, "relu3", images)
    calls = []
    fit_xnn(z, logits, config=replace(SMALL, n_features=3, batch_size=20, epochs=2), progress=calls.append)
    assert [c["step"] for c in calls] == [4, 8] and calls[-1]["total"] == 8


def test_contributions_add_up_to_the_approximated_logit(mnist):
    net, images = mnist
    xnn = train_xnn(net, "relu3", images, config=replace(SMALL, n_features=7, epochs=30))
    out = xnn.explain(net, images[:10])
    assert out.features.shape == (10, 7) and out.contributions.shape == (10, 7)
    torch.testing.assert_close(out.predicted, net(images[:10]).argmax(1))
    torch.testing.assert_close(out.classes, out.predicted)
    torch.testing.assert_close(out.contributions.sum(1), out.approx.gather(1, out.classes[:, None])[:, 0])
    torch.testing.assert_close(out.normalised.abs().sum(1), torch.ones(10))
    assert bool((out.features > 0).all())  # softplus x-layer
    z, _ = extract_z(net, "relu3", images[:10])
    with torch.no_grad():
        torch.testing.assert_close(xnn.contributions(z, out.classes), out.contributions)
    other = xnn.explain(net, images[:10], classes=0)
    assert other.classes.tolist() == [0] * 10


def test_normalise_contributions():
    c = torch.tensor([[3.0, -1.0, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(normalise_contributions(c), torch.tensor([[0.75, -0.25, 0.0], [0.0, 0.0, 0.0]]))


# ----------------------------------------------------------------------------------------------
# Layers: MnistNet and a torchvision backbone


def test_mnistnet_layer_names(mnist):
    net, images = mnist
    assert penultimate_layer(net) == "fc2:input"
    z_relu, logits = extract_z(net, "relu3", images[:5])
    z_in, _ = extract_z(net, "fc2:input", images[:5])
    z_mod, _ = extract_z(net, net.relu3, images[:5])
    z_pre, _ = extract_z(net, "fc1", images[:5])
    assert z_relu.shape == (5, 50)
    torch.testing.assert_close(z_relu, z_in)
    torch.testing.assert_close(z_relu, z_mod)
    torch.testing.assert_close(z_relu, z_pre.clamp(min=0))
    torch.testing.assert_close(logits, net(images[:5]))
    xnn = train_xnn(net, net.relu3, images, config=replace(SMALL, n_features=2, epochs=2))
    assert xnn.layer == "relu3"


def test_torchvision_penultimate_features():
    net = torchvision_classifier("resnet18", 4, use_cache=False).eval()
    assert penultimate_layer(net) == "fc:input"
    torch.manual_seed(0)
    images = torch.randn(12, 3, 32, 32)
    z, logits = extract_z(net, "fc:input", images)
    assert z.shape == (12, 512) and logits.shape == (12, 4)
    z_pool, _ = extract_z(net, "avgpool", images)  # (N, 512, 1, 1), flattened
    torch.testing.assert_close(z_pool, z)
    xnn = train_xnn(net, "fc:input", images, config=replace(SMALL, n_features=3, epochs=5))
    assert xnn.explain(net, images[:2]).contributions.shape == (2, 3)


def test_checkpoint_round_trip(tmp_path, mnist):
    net, images = mnist
    xnn = train_xnn(net, "relu3", images, config=replace(SMALL, n_features=3, epochs=3))
    path = save_checkpoint(tmp_path / "xnn.pt", xnn, arch="XNN", arch_kwargs=xnn.arch_kwargs, metadata={"mode": "srae"})
    loaded, meta = load_checkpoint(path)
    assert isinstance(loaded, XNN) and loaded.layer == "relu3" and meta["mode"] == "srae"
    z, _ = extract_z(net, "relu3", images[:4])
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), xnn(z))


# ----------------------------------------------------------------------------------------------
# Errors


def test_errors(mnist):
    net, images = mnist
    z, y = extract_z(net, "relu3", images[:8])
    with pytest.raises(ValueError, match="mode"):
        fit_xnn(z, y, config=XNNConfig(mode="cae"))
    with pytest.raises(ValueError, match="epochs"):
        fit_xnn(z, y, config=XNNConfig(epochs=0))
    with pytest.raises(ValueError, match="q > 0"):
        fit_xnn(z, y, config=XNNConfig(q=0.0))
    with pytest.raises(ExplainerInputError, match="M >= 2"):
        fit_xnn(z[:1], y[:1])
    with pytest.raises(ExplainerInputError, match="NaN"):
        fit_xnn(torch.full_like(z, float("nan")), y)
    with pytest.raises(ExplainerInputError, match="no submodule"):
        train_xnn(net, "fc9", images[:8])
    with pytest.raises(ExplainerInputError, match="suffix"):
        extract_z(net, "fc2:weights", images[:8])
    with pytest.raises(ExplainerInputError, match="50 features"):
        XNN(50, 4).embed(torch.rand(2, 49))
    with pytest.raises(ExplainerInputError, match="layer name"):
        XNN(50, 4).explain(net, images[:2])


# ----------------------------------------------------------------------------------------------
# Metrics (section 4.2)


def test_f_reg_and_f_cls_by_hand():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    approx = torch.tensor([[2.0, 1.5, 0.0], [0.0, 0.5, 1.0]])  # second image flips to class 2
    assert f_reg(logits, approx) == pytest.approx((1 + 0.5 + 1.5) / 6)
    assert f_cls(logits, approx) == 0.5
    # one-vs-all: only column 0 replaced
    assert f_cls(logits, torch.tensor([[0.5], [5.0]]), columns=[0]) == 0.0
    assert f_cls(logits, torch.tensor([[2.5], [0.0]]), columns=[0]) == 1.0
    with pytest.raises(ValueError):
        f_reg(logits, approx[:, :2])
    with pytest.raises(ValueError):
        f_cls(logits, torch.ones(2, 2), columns=[0])


def test_orthogonality_by_hand():
    # two features, one image of 3 pixels: a = (1, 0, 0), b = (0, 1, 0): correlation -1/2
    maps = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]).view(1, 2, 1, 3)
    o = orthogonality(maps)
    torch.testing.assert_close(o.correlation, torch.tensor([[1.0, -0.5], [-0.5, 1.0]]))
    assert o.o1 == pytest.approx(math.sqrt(2.5) - math.sqrt(2))
    assert o.o2 == pytest.approx(-math.log(0.75))
    same = orthogonality(torch.rand(4, 1, 5, 5).expand(4, 3, 5, 5))
    assert same.o1 == pytest.approx(3 - math.sqrt(3)) and same.o2 == math.inf


def test_orthogonality_reports_dead_features():
    torch.manual_seed(0)
    maps = torch.rand(6, 3, 4, 4)
    maps[:, 1] = 0
    o = orthogonality(maps)
    assert o.dead == (1,)
    assert math.isnan(float(o.correlation[1, 0]))
    live = orthogonality(maps[:, [0, 2]])
    assert o.o1 == pytest.approx(live.o1) and o.o2 == pytest.approx(live.o2)


def test_locality_by_hand():
    maps = torch.zeros(1, 3, 10, 10)
    maps[0, 0, 2, 2] = 1.0                      # on part 0
    maps[0, 1, 2, 2] = maps[0, 1, 7, 7] = 1.0   # half on part 0, half on part 1
    maps[0, 2, 5, 0] = 1.0                      # equidistant-ish, far from both
    parts = torch.tensor([[[2.0, 2.0], [7.0, 7.0]]])
    loc = locality(maps, parts, radius=3.0)
    assert float(loc.entropy[0]) == pytest.approx(0.0)
    assert float(loc.entropy[1]) == pytest.approx(math.log(2))
    torch.testing.assert_close(loc.histogram[1, :2], torch.tensor([0.5, 0.5]))
    assert float(loc.histogram[2].sum()) == 0.0  # beyond the radius of every part
    assert loc.mean == pytest.approx(math.log(2) / 2)  # over features with mass


def test_locality_context_and_visibility():
    maps = torch.zeros(1, 1, 10, 10)
    maps[0, 0, 2, 2] = 1.0
    maps[0, 0, 9, 9] = 1.0  # outside the box: context
    parts = torch.tensor([[[2.0, 2.0], [4.0, 4.0]]])
    loc = locality(maps, parts, torch.tensor([[True, False]]), boxes=torch.tensor([[0.0, 0.0, 5.0, 5.0]]))
    torch.testing.assert_close(loc.histogram[0], torch.tensor([0.5, 0.0, 0.5]))
    assert float(loc.entropy[0]) == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="non-negative"):
        locality(-maps, parts)
