"""explainers.nearest: the k training images of the predicted class nearest in the classifier's
penultimate features. Toy models whose features are known by hand, a brute-force reference, and
the caller's model left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from explainers.hooks import ExplainerInputError
from explainers.nearest import NearestExamples, last_linear, nearest_of_class, penultimate_features
from explainers.nets.classifiers import MnistNet

pytestmark = pytest.mark.usefixtures("single_thread")


def flat_net() -> nn.Module:
    """(N, 1, 1, 2) -> 2 logits; its penultimate features are the two pixels themselves."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(2, 2))


def points(*xy: tuple[float, float]) -> torch.Tensor:
    return torch.tensor(xy, dtype=torch.float32).view(-1, 1, 1, 2)


def test_the_nearest_bank_images_of_the_predicted_class_by_hand():
    bank = points((0, 0), (1, 0), (5, 5), (0, 3), (4, 4), (9, 9))
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    query = points((0.9, 0.1), (4.6, 4.6))
    # query 0 predicted class 1: its class-1 points by distance are (0,3) 3.03, (4,4) 5.4, (9,9) 12.1
    # query 1 predicted class 0: (5,5) 0.57, (1,0) 5.8, (0,0) 6.5
    result = NearestExamples(flat_net(), k=2).explain(query, torch.tensor([1, 0]), bank, labels)
    assert result.indices.tolist() == [[3, 4], [2, 1]]
    expected = [[np.hypot(0.9, 2.9), np.hypot(3.1, 3.9)], [np.hypot(0.4, 0.4), np.hypot(3.6, 4.6)]]
    assert result.distances.numpy() == pytest.approx(np.array(expected), abs=1e-5)


def test_a_random_case_matches_a_brute_force_search_and_ties_go_by_bank_order():
    g = torch.Generator().manual_seed(1)
    query, bank = torch.randn(7, 5, generator=g), torch.randn(40, 5, generator=g)
    labels, classes = torch.randint(0, 3, (40,), generator=g), torch.randint(0, 3, (7,), generator=g)
    for metric in ("euclidean", "cosine"):
        got = nearest_of_class(query, bank, labels, classes, k=4, metric=metric)
        for i in range(7):
            candidates = [j for j in range(40) if labels[j] == classes[i]]
            if metric == "euclidean":
                d = {j: float(np.linalg.norm(query[i] - bank[j])) for j in candidates}
            else:
                d = {j: 1 - float(query[i] @ bank[j] / (query[i].norm() * bank[j].norm())) for j in candidates}
            assert got.indices[i].tolist() == sorted(candidates, key=lambda j: (d[j], j))[:4]
    twins = torch.zeros(5, 2)  # five identical bank rows: the first k win
    assert nearest_of_class(torch.zeros(1, 2), twins, torch.zeros(5, dtype=torch.long), torch.tensor([0]), k=3).indices.tolist() == [[0, 1, 2]]


def test_the_features_are_the_input_of_the_last_linear_layer_and_the_model_is_left_as_it_was():
    net = MnistNet(10)
    net.train()
    flags = [p.requires_grad for p in net.parameters()]
    images = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    assert last_linear(net) is net.fc2
    feats = penultimate_features(net, images, batch_size=2)
    with torch.no_grad():
        x = nn.functional.interpolate(images, size=(64, 64), mode="bilinear", align_corners=False)
        x = net.relu2(net.pool2(net.conv2(net.relu1(net.pool1(net.conv1(x))))))
        by_hand = net.relu3(net.fc1(torch.flatten(x, 1)))
    assert feats.shape == (5, 50) and torch.allclose(feats, by_hand, atol=1e-6)
    assert net.training and [p.requires_grad for p in net.parameters()] == flags
    assert not net.fc2._forward_pre_hooks and not any(m._forward_pre_hooks for m in net.modules())
    # a named layer: its input instead
    assert penultimate_features(net, images, layer="fc1").shape == (5, 3380)


def test_the_hook_is_removed_after_an_error_in_the_forward_pass():
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            self.fc(x.flatten(1))
            raise RuntimeError("boom")

    net = Broken()
    with pytest.raises(RuntimeError, match="boom"):
        penultimate_features(net, points((0, 0)))
    assert not net.fc._forward_pre_hooks and net.training


def test_bad_input_is_refused_with_a_message_that_names_it():
    bank, labels = points((0, 0), (1, 1)), torch.tensor([0, 1])
    with pytest.raises(ExplainerInputError, match="fewer than k=2 images of class"):
        NearestExamples(flat_net(), k=2).explain(points((0, 0)), torch.tensor([1]), bank, labels)
    with pytest.raises(ExplainerInputError, match="predicted"):
        nearest_of_class(torch.zeros(1, 2), torch.zeros(2, 2), labels, torch.tensor([0.5]), k=1)
    with pytest.raises(ExplainerInputError, match="share D"):
        nearest_of_class(torch.zeros(1, 3), torch.zeros(2, 2), labels, torch.tensor([0]), k=1)
    with pytest.raises(ExplainerInputError, match="nn.Linear"):
        penultimate_features(nn.Sequential(nn.Flatten()), points((0, 0)))
