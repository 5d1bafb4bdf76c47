"""APEM (thesis ch. 3, §5.2, Algorithm 2) on toy models whose ε⁻ and ε⁺ are worked out by hand,
the relevance methods (gradient, SmoothGrad, Captum's LRP, the visualisation), heatmap methods as
callables, and the model hygiene of every entry point.

The toy classifier: images ``(N, 1, 1, 3)``, logits ``z = (0, x1 + 2 x2 + 0 x3 - 5.5)``. At
``x = 0`` it predicts class 0; the loss gradient there is ``σ(z1 - z0) · (1, 2, 0)``, so
``sign ∇J = (+1, +1, 0)``, and ``x + ε R_dir`` changes the prediction once
``ε (r1 + 2 r2) / (r1 + r2 + r3) > 5.5`` (ties keep class 0).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from explainers.apem import APEM, apem_norm, gradient, lrp, relevance_map, smoothgrad, visualise
from explainers.hooks import ExplainerInputError

pytestmark = pytest.mark.usefixtures("single_thread")


def toy() -> nn.Module:
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 0.0]]))
        lin.bias.copy_(torch.tensor([0.0, -5.5]))
    return nn.Sequential(nn.Flatten(), lin)


def zeros(n: int) -> torch.Tensor:
    return torch.zeros(n, 1, 1, 3)


def maps(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).view(len(rows), 1, 3)


def test_eps_by_hand():
    # R = (0, 1, 0): R_dir = (0, 1, 0): 2ε > 5.5 -> ε⁻ = 3.
    #   1 - R = (1, 0, 1) -> /2 = (.5, 0, .5), directed (.5, 0, 0): .5 ε > 5.5 -> ε⁺ = 12.
    # R = (1, 0, 0): ε > 5.5 -> ε⁻ = 6;  1 - R = (0, 1, 1)/2 -> effect 2·.5 = 1 -> ε⁺ = 6.
    # R = (1, .5, 0): /1.5 -> effect (1 + 1)/1.5 = 4/3 -> ε > 4.125 -> ε⁻ = 5;
    #   1 - R = (0, .5, 1)/1.5 -> effect 1/1.5 -> ε > 8.25 -> ε⁺ = 9.
    # R = (0, 0, 1): sign ∇J is 0 on x3, no perturbation ever: ε⁻ at the ceiling (50);
    #   1 - R = (1, 1, 0)/2 -> effect 1.5 -> ε > 3.67 -> ε⁺ = 4.
    scorer = APEM(toy(), ceiling=50)
    res = scorer(zeros(4), maps([0, 1, 0], [1, 0, 0], [1, 0.5, 0], [0, 0, 1]))
    assert res.eps_minus.tolist() == [3, 6, 5, 50]
    assert res.eps_plus.tolist() == [12, 6, 9, 4]
    assert res.apem.tolist() == [9, 0, 4, -46]
    assert res.minus_at_ceiling.tolist() == [False, False, False, True]
    assert res.plus_at_ceiling.tolist() == [False] * 4
    assert res.hit_ceiling.tolist() == [False, False, False, True]
    assert res.predicted.tolist() == [0, 0, 0, 0]
    assert res.mean() == pytest.approx((9 + 0 + 4 - 46) / 4)
    assert res.median() == pytest.approx(2.0)


def test_other_class_is_pushed_the_other_way():
    # x = (6, 0, 0): z1 = .5 > 0, class 1; sign ∇J = (-1, -1, 0). R = (1, 0, 0): 6 - ε < 5.5
    # -> ε⁻ = 1; 1 - R = (0, .5, .5): 6 - ε < 5.5 -> ε⁺ = 1.
    x = torch.tensor([6.0, 0.0, 0.0]).view(1, 1, 1, 3)
    res = APEM(toy(), ceiling=10)(x, maps([1, 0, 0]))
    assert res.predicted.tolist() == [1]
    assert res.eps_minus.tolist() == [1] and res.eps_plus.tolist() == [1]


def test_step_grid_and_ceiling():
    scorer = APEM(toy(), step=0.5, ceiling=5)
    assert scorer.grid().tolist() == [0.5 * k for k in range(1, 11)]
    # R = (0, 1, 0): 2ε > 5.5 -> ε⁻ = 3.0 on the half grid; ε⁺ = 12 is beyond the ceiling
    res = scorer(zeros(1), maps([0, 1, 0]))
    assert res.eps_minus.tolist() == [3.0]
    assert res.eps_plus.tolist() == [5.0] and res.plus_at_ceiling.tolist() == [True]


def test_clamp_keeps_pixels_in_range():
    # clipped to [0, 1] the largest reachable z1 is 1 + 2 - 5.5 < 0: never flips
    res = APEM(toy(), ceiling=20, clamp=(0.0, 1.0))(zeros(1), maps([0, 1, 0]))
    assert res.minus_at_ceiling.tolist() == [True] and res.plus_at_ceiling.tolist() == [True]


@pytest.mark.parametrize("chunk_size", [1, 3, 4096])
@pytest.mark.parametrize("search", ["scan", "bisect"])
def test_batching_and_search_do_not_change_the_result(chunk_size, search):
    m = maps([0, 1, 0], [1, 0, 0], [1, 0.5, 0], [0, 0, 1])
    res = APEM(toy(), ceiling=50, chunk_size=chunk_size, search=search)(zeros(4), m)
    assert res.eps_minus.tolist() == [3, 6, 5, 50]
    assert res.eps_plus.tolist() == [12, 6, 9, 4]


def test_scan_finds_the_first_flip_where_bisection_may_not():
    """Logits ``(-s, s - 10 + 20 · [1.5 < s < 2.5])`` with ``s`` the pixel sum: class 0 at s = 0,
    class 1 inside the band and again for s > 5. Along ``x + ε`` the prediction flips at ε = 2
    and flips back at ε = 3: the scan reports 2, the galloping search (ε = 1, 3, 4) never sees
    the band."""

    class Band(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = x.flatten(1).sum(1)
            band = ((s > 1.5) & (s < 2.5)).float()
            return torch.stack([-s, s - 10 + 20 * band], 1)

    x, m = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1)
    assert APEM(Band(), ceiling=4, search="scan")(x, m).eps_minus.tolist() == [2.0]
    res = APEM(Band(), ceiling=4, search="bisect")(x, m)
    assert res.eps_minus.tolist() == [4.0] and res.minus_at_ceiling.tolist() == [True]


def test_shuffled_and_norm_by_hand():
    # a uniform map is the same after any shuffle: R = 1 - R = (.5, .5, .5) -> effect 1:
    # ε > 5.5 -> 6, for the map and its shuffles alike; APEM_norm = 6/6 - 6/6 = 0
    scorer = APEM(toy(), ceiling=50)
    m = maps([0.5, 0.5, 0.5])
    res, shuf = scorer(zeros(1), m), scorer.shuffled(zeros(1), m, shuffles=10)
    assert shuf.eps_minus.tolist() == [6] and shuf.eps_plus.tolist() == [6]
    assert apem_norm(res, shuf).tolist() == [0.0]
    # R = (0, 1, 0): the 10 shuffles put the 1 on x2 (ε 3, 1 - R: 12), on x1 (6, 6) or on x3
    # (ceiling, 4). Any shuffle that flips first sets the value: with x2 and x3 among them,
    # ε-shuffle⁻ = 3 and ε-shuffle⁺ = 4 -> APEM_norm = 12/4 - 3/3 = 2.
    m = maps([0, 1, 0])
    res, shuf = scorer(zeros(1), m), scorer.shuffled(zeros(1), m, shuffles=10, seed=0)
    assert shuf.eps_minus.tolist() == [3] and shuf.eps_plus.tolist() == [4]
    assert apem_norm(res, shuf).tolist() == [2.0]
    # seeded: the same permutations again; one shuffle is one of the three cases
    one = scorer.shuffled(zeros(1), m, shuffles=1, seed=3)
    assert (one.eps_minus.item(), one.eps_plus.item()) in {(3, 12), (6, 6), (50, 4)}
    assert scorer.shuffled(zeros(1), m, shuffles=1, seed=3).eps_minus.tolist() == one.eps_minus.tolist()


def test_explanation_filter_by_hand():
    scorer = APEM(toy(), ceiling=50)
    # R = (0, 1, .2): /1.2 -> effect 2/1.2: ε > 3.3 -> 4; 1 - R = (1, 0, .8)/1.8 -> effect
    # 1/1.8: ε > 9.9 -> 10; APEM 6. Zeroing the .2 gives (0, 1, 0): APEM 12 - 3 = 9 >= 6, kept;
    # zeroing the 1 would leave no relevance: stop.
    # R = (.5, 1, 0): /1.5 -> effect 5/3: ε -> 4; 1 - R = (.5, 0, 1)/1.5 -> effect 1/3: ε > 16.5
    # -> 17; APEM 13. Zeroing the .5 gives (0, 1, 0), APEM 9 < 13: stop, keep the input map.
    out = scorer.filter(zeros(2), maps([0, 1, 0.2], [0.5, 1, 0]))
    assert out.initial_apem.tolist() == [6, 13]
    assert out.apem.tolist() == [9, 13]
    assert out.iterations.tolist() == [1, 0]
    assert torch.equal(out.maps, maps([0, 1, 0], [0.5, 1, 0]))
    assert out.kept_fraction.tolist() == pytest.approx([0.5, 1.0])
    # max_iterations=0 returns the input
    assert torch.equal(scorer.filter(zeros(2), maps([0, 1, 0.2], [0.5, 1, 0]), max_iterations=0).maps,
                       maps([0, 1, 0.2], [0.5, 1, 0]))


def test_maps_from_a_callable_get_the_prediction():
    seen = {}

    def method(images: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
        seen["predicted"] = predicted.tolist()
        return maps([0, 1, 0]).expand(images.shape[0], -1, -1)

    x = torch.tensor([[0.0, 0, 0], [6, 0, 0]]).view(2, 1, 1, 3)
    res = APEM(toy(), ceiling=50)(x, method)
    assert seen["predicted"] == [0, 1]
    assert res.eps_minus[0].item() == 3


def test_bad_maps_are_refused():
    scorer = APEM(toy(), ceiling=10)
    with pytest.raises(ExplainerInputError, match=r"\[0, 1\]"):
        scorer(zeros(1), maps([0, 2, 0]))
    with pytest.raises(ExplainerInputError, match="shape"):
        scorer(zeros(2), maps([0, 1, 0]))
    with pytest.raises(ExplainerInputError, match="unknown relevance method"):
        scorer(zeros(1), "lime")
    with pytest.raises(ValueError):
        APEM(toy(), step=2, ceiling=1)


# ------------------------------------------------------------------------ relevance methods


def test_gradient_and_smoothgrad_of_a_linear_model():
    x = torch.rand(2, 1, 1, 3)
    g = gradient(toy(), x, torch.tensor([1, 0]))
    assert torch.equal(g, torch.tensor([[1.0, 2, 0], [0, 0, 0]]).view(2, 1, 1, 3))
    # the gradient of a linear model is the same at every noisy copy
    sg = smoothgrad(toy(), x, torch.tensor([1, 0]), samples=7, sigma=0.3)
    assert torch.allclose(sg, g)


def test_smoothgrad_is_seeded_and_chunk_independent():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))  # smooth: noise matters
    x = torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2])
    a = smoothgrad(net, x, y, samples=6, seed=4, chunk_size=6)
    b = smoothgrad(net, x, y, samples=6, seed=4, chunk_size=1000)
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, smoothgrad(net, x, y, samples=6, seed=5))
    # Fewer copies per pass than samples: captum draws each pass's noise separately, so the draw
    # may differ from a single pass's, but the same seed still gives the same maps.
    assert torch.equal(smoothgrad(net, x, y, samples=6, seed=4, chunk_size=4),
                       smoothgrad(net, x, y, samples=6, seed=4, chunk_size=4))
    # The global generator is left as it was.
    state = torch.get_rng_state()
    smoothgrad(net, x, y, samples=2, seed=4)
    assert torch.equal(torch.get_rng_state(), state)


# The hand-written gradient and SmoothGrad that captum's Saliency and NoiseTunnel replaced (kept
# here as the reference: captum must give the same maps, the same noise included, on a fixed seed).


def _reference_gradient(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    leaf = x.detach().requires_grad_(True)
    score = model(leaf).gather(1, labels[:, None]).sum()
    (grad,) = torch.autograd.grad(score, leaf)
    return grad


def _reference_smoothgrad(model, x, labels, *, samples, sigma, seed):
    generator = torch.Generator().manual_seed(seed)
    spread = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).clamp_min(1e-12) * sigma
    noise = torch.stack([torch.randn((samples, *x.shape[1:]), generator=generator) for _ in range(x.shape[0])])
    noisy = x[:, None] + noise * spread.view(-1, 1, 1, 1, 1)
    grads = _reference_gradient(model, noisy.flatten(0, 1), labels.repeat_interleave(samples))
    return grads.view(x.shape[0], samples, *x.shape[1:]).mean(1)


@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (3, 3, 8, 8), (3, 1, 2, 2)])
def test_gradient_and_smoothgrad_match_the_hand_written_reference(shape):
    torch.manual_seed(0)
    c = shape[1]
    net = nn.Sequential(
        nn.Conv2d(c, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * shape[2] * shape[3], 3)
    ).eval()
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 2 - 0.5  # not [0, 1]: σ is relative
    y = torch.arange(shape[0]) % 3
    g = gradient(net, x, y, chunk_size=2)
    assert torch.allclose(g, _reference_gradient(net, x, y), atol=1e-6)
    assert g.abs().sum() > 0
    ref = _reference_smoothgrad(net, x, y, samples=9, sigma=0.2, seed=3)
    for chunk_size in (10, 1000):
        sg = smoothgrad(net, x, y, samples=9, sigma=0.2, seed=3, chunk_size=chunk_size)
        assert torch.allclose(sg, ref, rtol=1e-5, atol=1e-6), (chunk_size, (sg - ref).abs().max())
    assert not torch.allclose(ref, g, atol=1e-3)  # the noise matters for this net


def test_lrp_epsilon_rule_by_hand():
    # x = (1, 2); h = relu((x1 + x2, x1 - 2 x2)) = (3, 0); z2 = 3. Top relevance z2 with the ε-rule:
    # R_h = h ⊙ w2 · z2 / (z2 + 1) = (2.25, 0); R_x = x ⊙ W1ᵀ (R_h / (z1 + ε sign z1)) =
    # (1, 2) ⊙ (1, 1) · 2.25 / 4 = (0.5625, 1.125).
    l1, l2 = nn.Linear(2, 2), nn.Linear(2, 1)
    with torch.no_grad():
        l1.weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -2.0]]))
        l1.bias.zero_()
        l2.weight.copy_(torch.tensor([[1.0, 1.0]]))
        l2.bias.zero_()
    net = nn.Sequential(nn.Flatten(), l1, nn.ReLU(), l2)
    r = lrp(net, torch.tensor([1.0, 2.0]).view(1, 1, 1, 2), torch.tensor([0]), epsilon=1.0)
    assert torch.allclose(r.flatten(), torch.tensor([0.5625, 1.125]))


def test_lrp_runs_on_mnistnet_and_leaves_it_clean():
    from explainers.nets.classifiers import MnistNet

    torch.manual_seed(0)
    net = MnistNet(10)
    with torch.no_grad():  # without biases and with ε -> 0, LRP conserves relevance exactly:
        for m in net.modules():  # Σ R = the logit, through max pooling and MnistNet's resize
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.zero_()
    net.fc1.rule = "mine"  # a caller's attribute of that name is put back
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([3, 4])
    r = lrp(net, x, labels, epsilon=1e-9)
    assert r.shape == (2, 1, 28, 28) and bool(torch.isfinite(r).all())
    with torch.no_grad():
        logits = net(x)[torch.arange(2), labels]
    assert torch.allclose(r.flatten(1).sum(1), logits, rtol=1e-3, atol=1e-5)
    assert net.fc1.rule == "mine"
    for m in net.modules():
        assert not hasattr(m, "activations")
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        if m is not net.fc1:
            assert not hasattr(m, "rule")


def test_visualise_by_hand():
    raw = torch.tensor([-4.0, 1.0, 2.0, 100.0]).view(1, 1, 2, 2)
    # |R| = (4, 1, 2, 100); 50th percentile (linear) = 3: clipped (3, 1, 2, 3); / 3
    assert torch.allclose(visualise(raw, percentile=50).flatten(), torch.tensor([1, 1 / 3, 2 / 3, 1]))
    pixels = torch.tensor([1.0, 1.0, 0.5, 0.0]).view(1, 1, 2, 2)
    # x pixels: (3, 1, 1, 0) / 3
    assert torch.allclose(visualise(raw, pixels=pixels, percentile=50).flatten(), torch.tensor([1, 1 / 3, 1 / 3, 0]))
    assert torch.equal(visualise(torch.zeros(1, 1, 2, 2)), torch.zeros(1, 2, 2))


def test_relevance_map_names_give_maps_in_range():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 16, 3))
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 2])
    for name, kw in (("gradient", {}), ("smoothgrad", {"samples": 4}), ("lrp", {})):
        m = relevance_map(name, net, x, y, **kw)
        assert m.shape == (2, 4, 4) and float(m.min()) >= 0 and float(m.max()) == pytest.approx(1.0)


# --------------------------------------------------------------------------- project methods


def test_every_heatmap_method_of_the_project_can_be_scored():
    from explainers.deeplift import DeepLift
    from explainers.excitation_bp import ExcitationBP
    from explainers.gradcam import GradCAM
    from explainers.nets.classifiers import MnistNet

    torch.manual_seed(0)
    net = MnistNet(10)
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    scorer = APEM(net, ceiling=2000, search="bisect")
    for method in (GradCAM(net, net.features_layer), ExcitationBP(net, "relu1"), DeepLift(net), "gradient"):
        res = scorer(x, method)
        assert res.eps_minus.shape == (2,) and bool((res.eps_minus >= 1).all())


# ------------------------------------------------------------------------------- hygiene


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flat = nn.Flatten()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(3 * 4 * 4, 4)
        self.fail = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail:
            raise RuntimeError("boom")
        return self.fc(self.drop(self.flat(self.pool(self.relu(self.bn(self.conv(x)))))))


def snapshot(model: nn.Module) -> dict[str, object]:
    state: dict[str, object] = {"grad": torch.is_grad_enabled()}
    for name, m in model.named_modules():
        state[f"{name}:training"] = m.training
        state[f"{name}:attrs"] = sorted(m.__dict__)
        for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            state[f"{name}:{kind}"] = len(getattr(m, kind))
    for name, p in model.named_parameters():
        state[f"{name}:rg"] = p.requires_grad
        state[f"{name}:grad"] = p.grad is None
        state[f"{name}:value"] = p.detach().clone()
    for name, b in model.named_buffers():
        state[f"{name}:buffer"] = b.detach().clone()
    return state


def same(a: dict[str, object], b: dict[str, object]) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(v, b[k]) if isinstance(v, torch.Tensor) else v == b[k] for k, v in a.items()
    )


RUNS = {
    "apem": lambda s, x, m: s(x, m).apem,
    "gradient": lambda s, x, m: s(x, "gradient").apem,
    "smoothgrad": lambda s, x, m: s(x, lambda i, p: relevance_map("smoothgrad", s.model, i, p, samples=3)).apem,
    "lrp": lambda s, x, m: s(x, "lrp").apem,
    "shuffled": lambda s, x, m: s.shuffled(x, m, shuffles=3).apem,
    "filter": lambda s, x, m: s.filter(x, m, max_iterations=3).maps,
}


@pytest.mark.parametrize("run", sorted(RUNS))
def test_models_are_restored(run):
    net = Net()
    net.train()
    net.bn.eval()
    net.conv.bias.requires_grad_(False)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    m = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(1))
    scorer = APEM(net, ceiling=300, search="bisect", chunk_size=64)
    before = snapshot(net)
    first = RUNS[run](scorer, x, m)
    assert same(before, snapshot(net))
    assert torch.equal(first, RUNS[run](scorer, x, m))  # eval mode inside: repeatable
    net.fail = True
    with pytest.raises(RuntimeError, match="boom"):
        RUNS[run](scorer, x, m)
    net.fail = False
    assert same(before, snapshot(net))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_result_on_cuda():
    m = maps([0, 1, 0], [1, 0.5, 0])
    cpu = APEM(toy(), ceiling=50)(zeros(2), m)
    gpu = APEM(toy().cuda(), ceiling=50)(zeros(2).cuda(), m.cuda())
    assert gpu.eps_minus.device.type == "cuda"
    assert gpu.eps_minus.tolist() == cpu.eps_minus.tolist() and gpu.eps_plus.tolist() == cpu.eps_plus.tolist()
