"""explainers.nets.external on toy networks: chains of TorchScript children, layers, formats."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from explainers.nets.external import (
    ExternalClassifier,
    ExternalModelError,
    is_conv,
    last_conv_layer,
    load_network,
    sniff_format,
    trace_chain,
)


def _scripted(net: nn.Module, path) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(net.eval()).save(str(path))
    return load_network(path)[0]


class Flattening(nn.Module):
    """conv -> ReLU -> pool, then ``torch.flatten`` in forward (not a child), then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


def test_a_scripted_chain_is_opened_down_to_its_layers_and_reproduces_the_output(tmp_path):
    torch.manual_seed(0)
    net = Flattening()
    scripted = _scripted(net, tmp_path / "f.ts")
    x = torch.rand(5, 1, 8, 8)
    chain = trace_chain(scripted, x)
    assert [(u.name, u.flatten) for u in chain] == [("features.0", False), ("features.1", False), ("features.2", False), ("fc", True)]
    h = x
    for unit in chain:
        h = unit.module(h.flatten(1) if unit.flatten else h)
    torch.testing.assert_close(h, net(x))
    assert is_conv(chain[0].module) and not is_conv(chain[1].module)


class Resizing(nn.Module):
    """Resizes to 16 px before its first conv (as MnistNet does): no chain of children gives its output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        x = nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
        return self.fc(self.conv(x).mean((2, 3)))


def test_a_forward_that_is_not_its_children_in_order_stays_one_unit(tmp_path):
    scripted = _scripted(Resizing(), tmp_path / "m.ts")
    assert [u.name for u in trace_chain(scripted, torch.rand(2, 1, 28, 28))] == [""]
    clf = ExternalClassifier(scripted, fmt="torchscript", channels=1, input_size=None, mean=None, std=None, sample=torch.rand(2, 1, 28, 28))
    assert clf.gradcam_layer_name is None and "export the model with torch.export" in clf.gradcam_refusal
    with pytest.raises(ExternalModelError, match="TorchScript modules take no forward hooks"):
        clf.gradcam_view()


def test_the_last_convolution_is_the_last_one_run_not_the_last_one_declared():
    class Reordered(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.late = nn.Conv2d(4, 4, 3, padding=1)  # declared first, run second
            self.early = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.late(self.early(x)).mean((2, 3)))

    assert last_conv_layer(Reordered(), torch.rand(1, 1, 8, 8)) == "late"
    net = Reordered()
    clf = ExternalClassifier(net, fmt="torchvision", channels=1, input_size=(16, 16), mean=[0.5], std=[0.5], sample=torch.rand(2, 1, 8, 8))
    assert clf.gradcam_layer_name == "late"
    x = torch.rand(3, 1, 8, 8)
    resized = nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(clf(x), net((resized - 0.5) / 0.5))


def test_formats_are_told_by_their_contents(tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "state.pt2")
    assert sniff_format(tmp_path / "state.pt2") == "state_dict"
    (tmp_path / "notes.ts").write_text("hello")
    with pytest.raises(ExternalModelError, match="notes.ts is not one"):
        sniff_format(tmp_path / "notes.ts")
    with pytest.raises(ExternalModelError, match="holds only weights"):
        load_network(tmp_path / "state.pt2")
