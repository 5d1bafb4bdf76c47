"""explainers.nets.classifiers: the dissertation's MnistNet, torchvision models (never
downloaded), seeded training and mode-preserving evaluation."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from explainers.datasets.common import DatasetError, to_tensor
from explainers.datasets.kannada import load_kannada
from explainers.nets.classifiers import (
    MnistNet,
    evaluate,
    predict,
    torchvision_classifier,
    train_classifier,
)

SHARED_KANNADA = Path(__file__).resolve().parents[4] / "shared" / "data" / "kannada_mnist"
CLASSES = (3, 7)  # two Kannada digits that look alike (both resemble a handwritten "2")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The test machine's cores are shared: one intra-op thread avoids OpenMP thrashing.
    (Tests may set this; library code never does.)"""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def real_dir() -> Path:
    configured = os.environ.get("KANNADA_MNIST_DIR")
    for candidate in ([Path(configured)] if configured else []) + [SHARED_KANNADA]:
        if candidate.is_dir() and any(candidate.glob("X_kannada_MNIST_*")):
            return candidate
    pytest.skip("real Kannada-MNIST files not available (set KANNADA_MNIST_DIR)")


def two_classes(split: str, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` images of each of CLASSES, relabelled 0/1, drawn at random (seeded) from
    the whole split: the files are ordered by writer, so a prefix would hold few writers."""
    s = load_kannada(real_dir(), split)
    rng = np.random.default_rng(0)
    idx = np.sort(
        np.concatenate(
            [rng.choice(np.flatnonzero(s.labels == c), per_class, replace=False) for c in CLASSES]
        )
    )
    return to_tensor(s.images[idx]), torch.from_numpy(
        (s.labels[idx] == CLASSES[1]).astype(np.int64)
    )


def toy_data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 3, (n,), generator=g)


def fresh_net(num_classes: int = 3, seed: int = 0) -> MnistNet:
    torch.manual_seed(seed)
    return MnistNet(num_classes)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


# ---------------------------------------------------------------------------------------------
# MnistNet


def test_mnistnet_layout_follows_the_dissertation():
    net = MnistNet(10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [c.kernel_size for c in convs] == [(5, 5), (5, 5)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(3380, 50), (50, 10)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 2
    assert net.features_layer is net.conv2 and net.features_layer_name == "conv2"


def test_mnistnet_resizes_28_to_64_internally():
    net = fresh_net(2).eval()
    x = torch.rand(4, 1, 28, 28)
    up = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(net(x), net(up))
    seen = {}

    def record(module, inputs, output):
        seen["shape"] = output.shape

    handle = net.features_layer.register_forward_hook(record)
    try:
        net(x)
    finally:
        handle.remove()
    assert seen["shape"] == (4, 20, 26, 26)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        net(torch.rand(2, 3, 28, 28))


# ---------------------------------------------------------------------------------------------
# training on real data


def test_training_on_two_real_classes_reaches_90_percent():
    x, y = two_classes("train", per_class=600)
    x_test, y_test = two_classes("test", per_class=500)
    net = fresh_net(2)
    events = []
    train_classifier(net, x, y, epochs=1, batch_size=32, seed=0, progress=events.append)
    accuracy = evaluate(net, x_test, y_test)
    assert accuracy > 0.9, accuracy
    assert len(events) == 38 and events[-1]["step"] == events[-1]["total"] == 38
    assert {"stage", "step", "total", "epoch", "loss"} <= set(events[0])
    assert events[0]["stage"] == "train_classifier"
    first = np.mean([e["loss"] for e in events[:5]])
    last = np.mean([e["loss"] for e in events[-5:]])
    assert last < 0.5 * first, (first, last)


# ---------------------------------------------------------------------------------------------
# determinism


def test_training_is_deterministic_for_a_seed_and_leaves_global_rng_alone():
    x, y = toy_data(64)
    net = fresh_net()
    state = torch.random.get_rng_state()
    a = train_classifier(net, x, y, epochs=1, batch_size=16, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = train_classifier(fresh_net(), x, y, epochs=1, batch_size=16, seed=5)
    c = train_classifier(fresh_net(), x, y, epochs=1, batch_size=16, seed=6)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert any(
        not torch.equal(pa, pc)
        for pa, pc in zip(a.state_dict().values(), c.state_dict().values(), strict=True)
    )


def test_training_restores_mode_and_respects_frozen_parameters():
    x, y = toy_data(32)
    net = fresh_net().eval()
    net.conv1.weight.requires_grad_(False)
    frozen = net.conv1.weight.detach().clone()
    train_classifier(net, x, y, epochs=1, batch_size=16, seed=0)
    assert not net.training
    assert net.conv1.weight.requires_grad is False
    assert torch.equal(net.conv1.weight, frozen)
    assert not torch.equal(net.conv2.weight, fresh_net().conv2.weight)


def test_training_accepts_uint8_numpy_and_validates():
    images = np.random.default_rng(0).integers(0, 256, (16, 28, 28), dtype=np.uint8)
    labels = np.arange(16) % 3
    train_classifier(fresh_net(), images, labels, epochs=1, batch_size=8)
    with pytest.raises(ValueError, match=r"labels must have shape \(16,\)"):
        train_classifier(fresh_net(), images, labels[:5], epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        train_classifier(fresh_net(), images, labels, epochs=0)
    with pytest.raises(DatasetError, match="uint8"):
        train_classifier(fresh_net(), images.astype(np.float32), labels, epochs=1)


# ---------------------------------------------------------------------------------------------
# evaluate / predict never change the caller's model


def snapshot(model: nn.Module) -> tuple[list[bool], list[bool]]:
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


@pytest.mark.parametrize("start_training", [True, False])
def test_predict_and_evaluate_preserve_modes_and_requires_grad(start_training):
    net = fresh_net()
    net.train(start_training)
    net.fc1.eval()  # mixed modes must come back exactly as they were
    net.conv1.weight.requires_grad_(False)
    before = snapshot(net)
    x, y = toy_data(10)
    pred, probs = predict(net, x)
    assert snapshot(net) == before
    assert pred.dtype == torch.int64 and pred.shape == (10,) and probs.shape == (10, 3)
    torch.testing.assert_close(probs.sum(1), torch.ones(10))
    assert torch.equal(pred, probs.argmax(1))
    assert not probs.requires_grad
    accuracy = evaluate(net, x, y)
    assert snapshot(net) == before
    assert accuracy == pytest.approx((pred == y).double().mean().item())
    assert all(p.grad is None for p in net.parameters())


def test_predict_restores_modes_after_an_error():
    net = fresh_net().train()
    before = snapshot(net)
    with pytest.raises(ValueError):
        predict(net, torch.rand(2, 3, 28, 28))
    assert snapshot(net) == before


def test_predict_uses_eval_mode():
    class ModeSpy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(784, 2)
            self.seen = []

        def forward(self, x):
            self.seen.append(self.training)
            return self.lin(x.flatten(1))

    spy = ModeSpy().train()
    predict(spy, torch.rand(3, 1, 28, 28))
    assert spy.seen == [False] and spy.training


# ---------------------------------------------------------------------------------------------
# torchvision models, never downloaded


def test_torchvision_classifier_replaces_the_head():
    model = torchvision_classifier("resnet18", 4, use_cache=False)
    assert model.fc.out_features == 4
    assert model.eval()(torch.rand(2, 3, 64, 64)).shape == (2, 4)
    squeeze = torchvision_classifier("squeezenet1_1", 3, use_cache=False)
    assert squeeze.eval()(torch.rand(1, 3, 96, 96)).shape == (1, 3)
    with pytest.raises(ValueError, match="unknown torchvision model 'resnet_nope'"):
        torchvision_classifier("resnet_nope", 2)


def test_torchvision_classifier_loads_a_local_state_dict(tmp_path):
    torch.manual_seed(1)
    imagenet = torchvision_classifier("resnet18", 1000, use_cache=False)
    torch.save(imagenet.state_dict(), tmp_path / "imagenet.pth")
    model = torchvision_classifier("resnet18", 4, weights_path=tmp_path / "imagenet.pth")
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight)
    assert model.fc.out_features == 4

    torch.save({"state_dict": model.state_dict()}, tmp_path / "fine_tuned.pth")
    again = torchvision_classifier("resnet18", 4, weights_path=tmp_path / "fine_tuned.pth")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), model.eval()(x))
    with pytest.raises(FileNotFoundError):
        torchvision_classifier("resnet18", 4, weights_path=tmp_path / "none.pth")


def test_torchvision_classifier_uses_the_cache_but_never_downloads(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    fresh = torchvision_classifier("resnet18", 2)  # nothing cached: random init, no download
    assert fresh.fc.out_features == 2
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    torch.manual_seed(2)
    cached = torchvision_classifier("resnet18", 1000, use_cache=False)
    (tmp_path / "checkpoints").mkdir()
    torch.save(cached.state_dict(), tmp_path / "checkpoints" / os.path.basename(url))
    model = torchvision_classifier("resnet18", 2)
    assert torch.equal(model.layer1[0].conv1.weight, cached.layer1[0].conv1.weight)
    assert not torch.equal(
        torchvision_classifier("resnet18", 2, use_cache=False).conv1.weight, cached.conv1.weight
    )


def test_backbone_classifier_loads_imagenet_features_and_folds_the_normalisation(tmp_path):
    import torchvision

    from explainers.datasets.common import IMAGENET_MEAN, IMAGENET_STD
    from explainers.nets.classifiers import BackboneClassifier, backbone_classifier

    torch.manual_seed(0)
    reference = torchvision.models.vgg11(weights=None).eval()
    path = tmp_path / "vgg11.pth"
    torch.save(reference.state_dict(), path)
    net, source = backbone_classifier("vgg11", 4, weights_path=path)
    assert source == str(path) and isinstance(net, BackboneClassifier)
    x = torch.rand(2, 3, 32, 32)
    normalised = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ours, theirs = net.features[0](x), reference.features[0](normalised)
    # Exact away from the border (zero padding now stands for black, not the mean colour).
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], theirs[..., 1:-1, 1:-1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(net.features[3].weight, reference.features[3].weight)
    assert net(x).shape == (2, 4)
    with pytest.raises(FileNotFoundError):
        backbone_classifier("vgg11", 4, weights_path=tmp_path / "missing.pth")
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), tmp_path / "alexnet.pth")
    with pytest.raises(ValueError, match="not vgg11 weights"):
        backbone_classifier("vgg11", 4, weights_path=tmp_path / "alexnet.pth")
    with pytest.raises(ValueError, match="no `features` chain"):
        BackboneClassifier("resnet18", 4)


def test_convnet_takes_colour_images_of_its_size_and_round_trips_a_checkpoint(tmp_path):
    from explainers.gradcam import GradCAM
    from explainers.nets.checkpoints import load_checkpoint, save_checkpoint
    from explainers.nets.classifiers import ConvNet
    from explainers.targets import ClassTarget

    torch.manual_seed(0)
    net = ConvNet(2, channels=3, size=32)
    x = torch.rand(4, 3, 32, 32)
    assert net(x).shape == (4, 2) and net.features_layer is net.conv3
    maps = GradCAM(net, net.features_layer)(x, ClassTarget(torch.zeros(4, dtype=torch.long)))
    assert maps.shape == (4, 32, 32)
    save_checkpoint(tmp_path / "c.pt", net, arch="ConvNet", arch_kwargs={"num_classes": 2, "channels": 3, "size": 32})
    again, _ = load_checkpoint(tmp_path / "c.pt")
    with torch.no_grad():
        assert torch.equal(again(x), net.eval()(x))
    with pytest.raises(ValueError, match=r"ConvNet expects \(N, 3, 32, 32\) images, got shape \(4, 1, 32, 32\)"):
        net(torch.rand(4, 1, 32, 32))
    with pytest.raises(ValueError, match="at least 16x16 pixels, got 3 channels at 8x8"):
        ConvNet(2, channels=3, size=8)
