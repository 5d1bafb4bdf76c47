"""CDeepEx / xGEMs: result invariants, batching, seeding, the role of the inequality
constraints, bad inputs, and the real Kannada run."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from explainers.cdeepex import CDeepExConfig, choose_frames_by_gap, displayed, explain, xgems
from explainers.hooks import ExplainerInputError
from explainers.metrics import cdeepex_validity, third_class_wins, top2_is_pair

pytestmark = pytest.mark.usefixtures("single_thread")

FAST = CDeepExConfig(z0_steps=60, outer_iterations=40, num_frames=6)


def test_result_fields_are_consistent(toy_models, toy_images):
    D, G = toy_models
    r = explain(D, G, toy_images, true_labels=None, encoder=G, config=FAST)
    n, t = toy_images.shape[0], FAST.num_frames
    assert r.z0.shape == (n, G.z_dim) and r.z_path.shape == (n, t, G.z_dim)
    assert r.frames.shape == (n, t, 1, 8, 8) and r.llh.shape == (n, t, 4)
    for name in ("converged", "eq_residual", "ineq_residual", "z0_recon_error", "steps"):
        assert getattr(r, name).shape == (n,)
    shown = displayed(toy_images, FAST)  # clipped, 8-bit: the image as displayed
    assert torch.equal(r.frames[:, 0], shown)  # frame 0 is the (displayed) input
    assert torch.equal(r.frames, (r.frames * 255).round() / 255) and float(r.frames.min()) >= 0 and float(r.frames.max()) <= 1
    assert torch.equal(r.z_path[:, 0], r.z0)
    assert torch.equal(r.final, r.frames[:, -1])
    assert torch.equal(r.difference, r.final - toy_images)
    with torch.no_grad():
        g0 = G(r.z0)
        torch.testing.assert_close(g0 + r.residual, toy_images)  # the residual reproduces I
        torch.testing.assert_close(r.z0, G.encode(toy_images)[0])  # VAE: encoder mean
        morph = toy_images[:, None] + G(r.z_path[:, 1:].flatten(0, 1)).view(n, t - 1, 1, 8, 8) - g0[:, None]
        # equal up to one 8-bit level (a rounding tie decided differently in another batch)
        torch.testing.assert_close(r.frames[:, 1:], (morph.clamp(0, 1) * 255).round() / 255, atol=1 / 255 + 1e-6, rtol=0)
        torch.testing.assert_close(r.llh, torch.log_softmax(D.eval()(r.frames.flatten(0, 1)), 1).view(n, t, 4))
    torch.testing.assert_close(r.z0_recon_error, (g0 - toy_images).pow(2).flatten(1).mean(1).sqrt())
    # the probe defaults to the most likely class other than true (= D's prediction here)
    with torch.no_grad():
        logits = D.eval()(toy_images)
    assert torch.equal(r.true_labels, logits.argmax(1))
    assert torch.equal(r.probe_labels, logits.topk(2, 1).indices[:, 1])


def test_a_whole_vae_as_generator_means_decode_plus_encode(toy_models, toy_images):
    D, G = toy_models
    whole = explain(D, G, toy_images, true_labels=None, config=FAST)
    parts = explain(D, G.decode, toy_images, true_labels=None, encoder=G.encode, config=FAST)
    assert torch.equal(whole.z0, parts.z0) and torch.equal(whole.frames, parts.frames)


def test_converged_images_are_on_the_boundary_with_true_and_probe_on_top(toy_models, toy_images):
    D, G = toy_models
    r = explain(D, G, toy_images, true_labels=None, encoder=G, config=FAST)
    assert bool(r.converged.any())
    conv = r.converged
    assert bool((r.eq_residual[conv] <= FAST.eq_tol + 1e-4).all())
    assert bool(top2_is_pair(r)[conv].all())
    assert bool((r.ineq_residual[conv] <= FAST.ineq_tol + 1e-4).all())


@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_an_image_gets_the_same_explanation_alone_or_in_a_batch(toy_models, toy_images, kind):
    D, G = (copy.deepcopy(m).double() for m in toy_models)
    x = toy_images[:4].double()
    encoder = G if kind == "vae" else None
    # 8-bit rounding is discontinuous: batch-order float differences of 1e-16 can flip a pixel
    # at a rounding tie and change the path. Without quantisation it is exact to 1e-5.
    cfg = dataclasses.replace(FAST, display_levels=None)
    probe = torch.tensor([1, 2, 3, 0])
    true = torch.tensor([0, 0, 1, 2])
    batch = explain(D, G, x, true_labels=true, probe_labels=probe, encoder=encoder, generator_kind=kind, config=cfg, seed=5)
    assert len(set(batch.steps.tolist())) > 1  # images finish at different times
    for i in range(x.shape[0]):
        one = explain(D, G, x[i : i + 1], true_labels=true[i : i + 1], probe_labels=probe[i : i + 1], encoder=encoder, generator_kind=kind, config=cfg, seed=5)
        for name in ("z0", "z_path", "frames", "llh", "eq_residual", "z0_recon_error"):
            torch.testing.assert_close(getattr(batch, name)[i], getattr(one, name)[0], atol=1e-5, rtol=0)
        assert bool(batch.converged[i]) == bool(one.converged[0])
        assert int(batch.steps[i]) == int(one.steps[0])


def test_seeded_runs_repeat_exactly_and_the_seed_matters_for_procedure_2(toy_models, toy_images):
    D, G = toy_models
    runs = [explain(D, G, toy_images, true_labels=None, generator_kind="gan", config=FAST, seed=s) for s in (1, 1, 2)]
    for name in ("z0", "z_path", "frames", "llh", "converged", "steps"):
        assert torch.equal(getattr(runs[0], name), getattr(runs[1], name))
    assert not torch.equal(runs[0].z0, runs[2].z0)


def test_procedure_2_fits_z0_by_gradient_descent(toy_models, toy_images):
    D, G = toy_models
    r = explain(D, G, toy_images, true_labels=None, generator_kind="gan", config=CDeepExConfig(z0_steps=200, outer_iterations=1))
    start = explain(D, G, toy_images, true_labels=None, generator_kind="gan", config=CDeepExConfig(z0_steps=0, outer_iterations=1))
    assert bool((r.z0_recon_error < start.z0_recon_error).all())
    assert float(r.z0_recon_error.max()) < 0.1


def test_xgems_is_the_same_code_without_the_inequalities(toy_models, toy_images):
    D, G = toy_models
    a = xgems(D, G, toy_images, true_labels=None, encoder=G, config=FAST)
    b = explain(D, G, toy_images, true_labels=None, encoder=G, config=FAST, inequality=False)
    assert not a.inequality
    assert torch.equal(a.z_path, b.z_path) and torch.equal(a.llh, b.llh)


class Identity2(nn.Module):
    """G(z) = z as a (N, 1, 1, 2) "image"; its own encoder."""

    z_dim = 2

    def forward(self, z):
        return z.view(-1, 1, 1, 2)

    def encode(self, x):
        return x.flatten(1), torch.zeros_like(x.flatten(1))


class ThirdClassOnTheWay(nn.Module):
    """Logits l0 = -z1, l1 = z1 - 2, l2 = 4 z1 - 3 - 2 z2². From z0 = (0, 0.1) the nearest point
    with l0 = l1 is ~(1, 0.1), where class 2 is on top (l2 ≈ 1 > -1); a boundary point with
    classes 0 and 1 on top needs |z2| >= ~1.05."""

    def forward(self, x):
        z1, z2 = x.flatten(1).unbind(1)
        return torch.stack([-z1, z1 - 2, 4 * z1 - 3 - 2 * z2**2], dim=1)


def test_without_inequalities_a_third_class_wins_and_with_them_it_does_not():
    D, G = ThirdClassOnTheWay(), Identity2()
    x = torch.tensor([[[[0.0, 0.1]]]])
    # the "image" is the latent itself (values beyond [0, 1]): no display clipping or rounding
    cfg = CDeepExConfig(outer_iterations=100, clip=False, display_levels=None)
    kwargs = dict(true_labels=torch.tensor([0]), probe_labels=torch.tensor([1]), encoder=G, config=cfg)
    xg = explain(D, G, x, inequality=False, **kwargs)
    cd = explain(D, G, x, inequality=True, **kwargs)
    assert bool(xg.converged[0]) and bool(third_class_wins(xg)[0])
    assert bool(cd.converged[0]) and bool(top2_is_pair(cd)[0]) and not bool(third_class_wins(cd)[0])
    assert float(cd.z_path[0, -1, 1].abs()) > 1.0  # it went around class 2
    assert float(cd.eq_residual[0]) <= cfg.eq_tol + 1e-6


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(images=torch.rand(1, 8, 8)), r"\(N, C, H, W\)"),
        (dict(images=torch.full((2, 1, 8, 8), float("inf"))), "NaN or infinite"),
        (dict(true_labels=torch.tensor([0, 9])), "out of range"),
        (dict(true_labels=torch.tensor([0, -1])), "out of range"),
        (dict(true_labels=torch.tensor([0, 1, 2])), "shape"),
        (dict(true_labels=torch.tensor([0.0, 1.0])), "integer"),
        (dict(probe_labels=torch.tensor([1, 1])), "equal true_labels"),
        (dict(images=torch.rand(2, 1, 9, 9)), "generator output"),
        (dict(generator_kind="flow"), "generator_kind"),
    ],
)
def test_bad_inputs_raise_clear_errors(toy_models, change, message):
    D, G = toy_models
    kwargs = dict(images=torch.rand(2, 1, 8, 8), true_labels=torch.tensor([0, 1]), encoder=None, config=FAST)
    kwargs.update(change)
    if "9, 9" in repr(kwargs["images"].shape):
        D = nn.Sequential(nn.Flatten(), nn.Linear(81, 4))
    with pytest.raises(ExplainerInputError, match=message):
        explain(D, G.decode, kwargs.pop("images"), **kwargs)  # decode only: Procedure 2


def test_config_is_validated():
    with pytest.raises(ValueError, match="num_frames"):
        CDeepExConfig(num_frames=1)
    with pytest.raises(ValueError, match="lr"):
        CDeepExConfig(lr=0)


def test_latent_size_must_be_known_for_procedure_2(toy_models, toy_images):
    D, G = toy_models
    with pytest.raises(ExplainerInputError, match="latent size"):
        explain(D, lambda z: G(z), toy_images, true_labels=None, config=FAST)
    r = explain(D, lambda z: G(z), toy_images, true_labels=None, config=CDeepExConfig(latent_dim=6, z0_steps=5, outer_iterations=1))
    assert r.z0.shape == (6, 6)


# ----------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_real_kannada_explanations_reach_the_boundary(kannada_models, pair_test):
    D, vae = kannada_models
    x, true, probe = pair_test
    assert x.shape[0] == 16
    r = explain(D, vae.decode, x, true_labels=true, probe_labels=probe, encoder=vae)
    ok = r.converged & top2_is_pair(r)
    assert float(ok.double().mean()) >= 0.8, (r.converged, r.eq_residual, r.llh[:, -1].topk(3, 1))
    validity = cdeepex_validity(r)
    assert sum(v.ok for v in validity) >= 12, [v.reasons for v in validity]
    # the explanation actually changes the image, and the morph starts at the input
    assert float(r.difference.abs().mean()) > 1e-3
    assert torch.equal(r.frames[:, 0], x)  # Kannada images are 8-bit already: frame 0 is the input


# ----------------------------------------------------------------------------- frames by the gap


def test_frames_are_chosen_by_the_gap_never_past_the_end_and_monotone():
    # a path that overshoots to the probe side (-1.5) and comes back to the boundary (0.01)
    gaps = np.array([4.0, 3.5, 2.9, 2.0, 1.2, 0.4, -0.8, -1.5, -0.6, 0.3, 0.05, 0.01])
    idx = choose_frames_by_gap(gaps, 6)
    assert idx[0] == 0 and idx[-1] == len(gaps) - 1 and idx == sorted(idx)
    shown = gaps[idx]
    assert (shown >= gaps[-1]).all()  # no frame beyond the end point: no crossover
    assert (np.diff(shown) <= 0).all()  # monotone
    assert 6 not in idx and 7 not in idx and 8 not in idx  # the excursion is not shown
    # the frames follow evenly spaced levels of the gap, not the step count
    assert idx[1:5] == [2, 3, 4, 5] or np.abs(shown[1:-1] - np.linspace(4.0, 0.01, 6)[1:-1]).max() < 0.6
    # a path that goes back up (the gap grows): those points are never used
    assert choose_frames_by_gap(np.array([2.0, 2.5, 1.0, 1.5, 0.0]), 4) == [0, 2, 2, 4]
    assert choose_frames_by_gap(np.array([1.0]), 3) == [0, 0, 0]
    # a path from the probe side (gap rising towards 0) works the same way, mirrored
    up = choose_frames_by_gap(np.array([-3.0, -2.0, 0.5, -1.0, 0.0]), 4)
    assert up[-1] == 4 and 2 not in up and list(np.diff(np.array([-3.0, -2.0, 0.5, -1.0, 0.0])[up]) >= 0) == [True] * 3


def test_the_old_step_count_morph_crosses_over_where_the_gap_choice_does_not():
    """On a classifier with a sharp boundary and a long fixed step, the optimiser overshoots onto
    the probe side; frames by step count show it, frames by the gap do not."""
    D, G = ThirdClassOnTheWay(), Identity2()
    x = torch.tensor([[[[0.0, 0.1]]]])
    base = dict(outer_iterations=60, lr=0.6, max_step=1.5, clip=False, display_levels=None, num_frames=10)
    kw = dict(true_labels=torch.tensor([0]), probe_labels=torch.tensor([1]), encoder=G, inequality=False)
    steps = explain(D, G, x, config=CDeepExConfig(**base, frame_choice="steps"), **kw)
    gap = explain(D, G, x, config=CDeepExConfig(**base), **kw)
    assert torch.equal(steps.z_path[:, -1], gap.z_path[:, -1])  # same optimisation, same end
    assert float(gap.path_overshoot[0]) > 0.1  # the optimiser did go past the boundary
    g = (gap.llh[0, :, 0] - gap.llh[0, :, 1]).numpy()
    assert float(-g.min()) <= max(0.0, float(-g[-1])) + 1e-9 and (np.diff(g) <= 1e-9).all()
    assert float(gap.frame_overshoot[0]) <= FAST.eq_tol + 1e-6
