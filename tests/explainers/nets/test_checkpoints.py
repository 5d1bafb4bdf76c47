"""explainers.nets.checkpoints: self-describing checkpoints round-trip exactly (MnistNet and a
torchvision model), their errors name the file, the registry rebuilds new architectures, and
data fingerprints are stable and sensitive."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from explainers.nets.checkpoints import (
    CheckpointError,
    build_model,
    fingerprint,
    load_checkpoint,
    register_architecture,
    save_checkpoint,
)
from explainers.nets.classifiers import MnistNet, torchvision_classifier, train_classifier

pytestmark = pytest.mark.usefixtures("single_thread")


def toy_data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 3, (n,), generator=g)


def fresh_net(num_classes: int = 3, seed: int = 0) -> MnistNet:
    torch.manual_seed(seed)
    return MnistNet(num_classes)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    x, y = toy_data(32)
    net = train_classifier(fresh_net(), x, y, epochs=1, batch_size=16)
    path = save_checkpoint(
        tmp_path / "sub" / "d.pt",
        net,
        arch="MnistNet",
        arch_kwargs={"num_classes": 3},
        metadata={"data_fingerprint": fingerprint(x, y), "test_accuracy": 0.5, "classes": [3, 7]},
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["d.pt"]  # no temporary file left
    assert path.stat().st_mode & 0o777 == 0o644
    loaded, meta = load_checkpoint(path)
    assert isinstance(loaded, MnistNet) and not loaded.training
    net.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert meta["arch"] == "MnistNet" and meta["arch_kwargs"] == {"num_classes": 3}
    assert meta["data_fingerprint"] == fingerprint(x, y)
    assert meta["test_accuracy"] == 0.5 and meta["classes"] == [3, 7]
    assert meta["torch_version"] == torch.__version__
    assert meta["created_at"].endswith("+00:00")


def test_checkpoint_defaults_and_errors(tmp_path):
    net = fresh_net()
    save_checkpoint(tmp_path / "a.pt", net, arch="MnistNet", arch_kwargs={"num_classes": 3})
    _, meta = load_checkpoint(tmp_path / "a.pt")
    assert meta["data_fingerprint"] is None and meta["test_accuracy"] is None
    with pytest.raises(CheckpointError, match="unknown architecture 'Nope'"):
        save_checkpoint(tmp_path / "b.pt", net, arch="Nope", arch_kwargs={})
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(
            tmp_path / "c.pt",
            net,
            arch="MnistNet",
            arch_kwargs={"num_classes": 3},
            metadata={"x": object()},
        )
    assert not (tmp_path / "c.pt").exists()
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"bad\.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(
        CheckpointError, match=r"other\.pt: not a checkpoint written by save_checkpoint"
    ):
        load_checkpoint(tmp_path / "other.pt")
    save_checkpoint(
        tmp_path / "wrong.pt", fresh_net(5), arch="MnistNet", arch_kwargs={"num_classes": 3}
    )
    with pytest.raises(CheckpointError, match=r"wrong\.pt: weights do not fit MnistNet"):
        load_checkpoint(tmp_path / "wrong.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_registered_architectures_can_be_rebuilt(tmp_path):
    class Tiny(nn.Module):
        def __init__(self, width: int):
            super().__init__()
            self.lin = nn.Linear(width, 2)

    register_architecture("TinyForTest", Tiny)
    model = Tiny(4)
    save_checkpoint(tmp_path / "t.pt", model, arch="TinyForTest", arch_kwargs={"width": 4})
    loaded, _ = load_checkpoint(tmp_path / "t.pt")
    assert torch.equal(loaded.lin.weight, model.lin.weight)
    assert isinstance(build_model("MnistNet", {"num_classes": 4}), MnistNet)


def test_fingerprint_is_stable_and_sensitive():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert fingerprint(a) == fingerprint(a.copy()) == fingerprint(torch.from_numpy(a))
    assert len(fingerprint(a)) == 64
    assert fingerprint(a) != fingerprint(a.reshape(4, 3))
    assert fingerprint(a) != fingerprint(a.astype(np.int64))
    b = a.copy()
    b[0, 0] = 1
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(a, b) != fingerprint(b, a)
    assert fingerprint(a.T) == fingerprint(np.ascontiguousarray(a.T))


def test_torchvision_checkpoint_round_trip(tmp_path):
    model = torchvision_classifier("resnet18", 4, use_cache=False).eval()
    save_checkpoint(
        tmp_path / "r.pt",
        model,
        arch="torchvision",
        arch_kwargs={"name": "resnet18", "num_classes": 4},
    )
    loaded, meta = load_checkpoint(tmp_path / "r.pt")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert meta["arch_kwargs"] == {"name": "resnet18", "num_classes": 4}
