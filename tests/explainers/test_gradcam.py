"""Grad-CAM: closed-form answers on a toy CNN, targets, batching, pytorch-grad-cam agreement,
and the contrastive variant of CDeepEx §3.2.1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from explainers.gradcam import GradCAM, contrastive_gradcam, default_contrast_weights
from explainers.hooks import ExplainerInputError
from explainers.targets import ClassTarget, ContrastTarget, LogProbTarget

pytestmark = pytest.mark.usefixtures("single_thread")


def expected_cam(model, x: torch.Tensor, class_weights: torch.Tensor, *, at: str) -> np.ndarray:
    """Grad-CAM written out by hand for ToyCNN (see its docstring), one image at a time."""
    with torch.no_grad():
        pre = model.conv(x).numpy()  # (N, K, H, W)
    out = []
    for n in range(x.shape[0]):
        a = np.maximum(pre[n], 0.0)
        h, w = a.shape[1:]
        cam = np.zeros((h, w))
        for k in range(a.shape[0]):
            wk = float(class_weights[n, k])
            if at == "relu":
                alpha = wk / (h * w)
                act = a[k]
            else:  # conv: the gradient is masked by the ReLU
                alpha = wk * float((pre[n, k] > 0).mean()) / (h * w)
                act = pre[n, k]
            cam += alpha * act
        cam = np.maximum(cam, 0.0)
        cam = cam - cam.min()
        out.append(cam / (cam.max() + 1e-7))
    return np.stack(out)


def test_toy_cnn_matches_hand_computed_map(toy_cnn):
    x = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 1])
    for layer in ("relu", "conv"):
        maps = GradCAM(toy_cnn, layer)(x, ClassTarget(labels))
        want = expected_cam(toy_cnn, x, toy_cnn.fc.weight.detach()[labels], at=layer)
        assert maps.shape == (4, 6, 6)
        np.testing.assert_allclose(maps.numpy(), want, atol=1e-5)


def test_contrast_target_is_the_difference_of_class_weights(toy_cnn):
    x = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    true, probe = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])
    w = toy_cnn.fc.weight.detach()
    maps = GradCAM(toy_cnn, toy_cnn.relu)(x, ContrastTarget(true, probe))
    np.testing.assert_allclose(maps.numpy(), expected_cam(toy_cnn, x, w[true] - w[probe], at="relu"), atol=1e-5)


def test_a_2x2_example_by_hand():
    """One channel, identity conv, GAP, fc weight 2: alpha = 2/4, map = minmax(relu(x / 2))."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 1, bias=False)
            with torch.no_grad():
                self.conv.weight.fill_(1.0)

        def forward(self, x):
            return 2.0 * self.conv(x).mean(dim=(2, 3))

    x = torch.tensor([[[[0.0, 1.0], [-2.0, 3.0]]]])
    got = GradCAM(Net(), "conv")(x, ClassTarget(0))[0]
    # cam = relu(0.5 * x) = [[0, .5], [0, 1.5]] -> minmax -> [[0, 1/3], [0, 1]]
    torch.testing.assert_close(got, torch.tensor([[0.0, 1 / 3], [0.0, 1.0]]), atol=1e-6, rtol=0)


def test_upsampling_to_the_input_size_is_bilinear(toy_cnn):
    toy_cnn.conv.stride = (2, 2)  # 8x8 input -> 4x4 activations
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    labels = torch.tensor([0, 2])
    maps = GradCAM(toy_cnn, "relu")(x, labels)  # integer labels mean ClassTarget
    with torch.no_grad():
        a = toy_cnn.relu(toy_cnn.conv(x))
    alpha = toy_cnn.fc.weight.detach()[labels] / 16.0
    cam = torch.relu((alpha[:, :, None, None] * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=(8, 8), mode="bilinear", align_corners=False)[:, 0]
    cam = cam - cam.amin(dim=(1, 2), keepdim=True)
    cam = cam / (cam.amax(dim=(1, 2), keepdim=True) + 1e-7)
    torch.testing.assert_close(maps, cam, atol=1e-6, rtol=0)


def test_batch_equals_one_image_at_a_time(toy_cnn):
    x = torch.rand(5, 1, 6, 6, generator=torch.Generator().manual_seed(5))
    labels = torch.tensor([0, 1, 2, 0, 1])
    cam = GradCAM(toy_cnn, "conv")
    batch = cam(x, ClassTarget(labels))
    for i in range(5):
        torch.testing.assert_close(batch[i], cam(x[i : i + 1], ClassTarget(labels[i : i + 1]))[0])


def test_maps_are_in_unit_range_and_target_independent_layer_gives_blank(toy_cnn):
    x = torch.rand(2, 1, 6, 6)
    maps = GradCAM(toy_cnn, "conv")(x, LogProbTarget(torch.tensor([0, 1])))
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    blank = GradCAM(toy_cnn, "conv")(x, lambda logits: torch.zeros(2) * logits.sum())
    assert float(blank.abs().max()) == 0.0


def test_bad_inputs_raise_clear_errors(toy_cnn):
    cam = GradCAM(toy_cnn, "conv")
    with pytest.raises(ExplainerInputError, match=r"\(N, C, H, W\)"):
        cam(torch.rand(1, 6, 6), ClassTarget(0))
    with pytest.raises(ExplainerInputError, match="NaN"):
        cam(torch.full((1, 1, 6, 6), float("nan")), ClassTarget(0))
    with pytest.raises(ExplainerInputError, match="shape"):
        cam(torch.rand(2, 1, 6, 6), lambda logits: logits)  # (N, C) instead of (N,)
    with pytest.raises(ValueError, match="out of range"):
        cam(torch.rand(2, 1, 6, 6), ClassTarget(torch.tensor([0, 7])))
    with pytest.raises(ExplainerInputError, match="no submodule"):
        GradCAM(toy_cnn, "nope")(torch.rand(1, 1, 6, 6), ClassTarget(0))


def test_matches_pytorch_grad_cam(toy_cnn):
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import GradCAM as ReferenceGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from explainers.nets.classifiers import MnistNet

    torch.manual_seed(0)
    net = MnistNet(10).eval()
    with torch.no_grad():  # untrained maps are ~1e-5, where the 1e-7 of minmax starts to show
        net.fc2.weight.mul_(1e3)
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(6))
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    ours = GradCAM(net, net.features_layer)(x, ClassTarget(labels)).numpy()
    with ReferenceGradCAM(model=net, target_layers=[net.features_layer]) as ref:
        theirs = ref(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in labels])
    for a, b in zip(ours, theirs, strict=True):
        if a.std() > 0 and b.std() > 0:
            assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999
        np.testing.assert_allclose(a, b, atol=1e-3)


# ----------------------------------------------------------------------------- contrastive


def test_default_weights_are_the_dissertations():
    w = default_contrast_weights()
    assert w.numel() == 400
    assert float(w[0]) == pytest.approx(0.005) and float(w[-1]) == pytest.approx(2.0)
    assert torch.allclose(w.diff(), torch.full((399,), 0.005, dtype=w.dtype))


def test_contrastive_gradcam_keeps_exactly_the_maps_that_move_probabilities(toy_cnn):
    x = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(7))
    true, probe = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])
    weights = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0])
    got, kept = contrastive_gradcam(toy_cnn, "conv", x, true, probe, weights, return_kept=True)
    cam = GradCAM(toy_cnn, "conv")
    m_true, m_probe = cam(x, ClassTarget(true)), cam(x, ClassTarget(probe))
    with torch.no_grad():
        p0 = torch.softmax(toy_cnn(x), 1)
    for i in range(3):
        maps = []
        for j, w in enumerate(weights.tolist()):
            m = m_true[i] - w * m_probe[i]
            with torch.no_grad():
                p = torch.softmax(toy_cnn((x[i] - m).clamp(0, 1)[None]), 1)[0]
            keep = bool(p[true[i]] < p0[i, true[i]]) and bool(p[probe[i]] > p0[i, probe[i]])
            assert bool(kept[i, j]) == keep
            if keep:
                maps.append(m)
        want = torch.stack(maps).mean(0) if maps else torch.zeros(6, 6)
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=0)


def test_contrastive_gradcam_on_real_kannada(kannada_models, pair_test):
    D, _ = kannada_models
    x, true, probe = pair_test
    maps, kept = contrastive_gradcam(D, D.features_layer, x[:4], true[:4], probe[:4], return_kept=True)
    assert maps.shape == (4, 28, 28) and kept.shape == (4, 400)
    assert bool(torch.isfinite(maps).all())
    assert int(kept.sum()) > 0  # at least some weights move p(true) down and p(probe) up


def test_contrastive_rejects_probe_equal_to_true(toy_cnn):
    with pytest.raises(ExplainerInputError, match="probe equals true"):
        contrastive_gradcam(toy_cnn, "conv", torch.rand(2, 1, 6, 6), [0, 1], [0, 2])
