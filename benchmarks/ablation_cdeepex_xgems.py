"""Benchmark (a): the ablation of CDeepEx's inequality constraints (= xGEMs), on real
Kannada-MNIST test images.

Dissertation §3.2.1 / Figure 3.5: without the inequality constraints "the found z results in
equal likelihood for y_true and y_probe, but a third class consistently has even higher
likelihood". Here both methods run on the same images, classifier, generator and settings
(``explain(..., inequality=True|False)``, true = D's prediction, probe = the second most likely
class) and the table counts how often the final top-2 is {true, probe} and how often a third
class is the most likely.

This module also holds the helpers the other benchmarks share: the data, and the models
(trained here in a minute or two and cached in benchmarks/out/, gitignored):

* D: ``MnistNet(10)`` (the dissertation's classifier), 12000 training images, 2 epochs;
* G: a VAE over all ten classes (D and G cover all classes, where the third-class effect can
  show). ``--generator mlp`` (default): an MLP VAE 784-400-32, quick to train on a CPU;
  ``--generator vae``: ``explainers.nets.vae.VAE(latent_dim=16, width=32)`` (conv), 6 epochs,
  ~15 minutes on a busy 2-core machine; ``--generator site-vae`` / ``site-wgan``: the site's
  own checkpoints from benchmarks/train_generators.py (MnistNet + VAE(400) / WGAN).

    python benchmarks/ablation_cdeepex_xgems.py [--images 128] [--pair 3 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explainers.cdeepex import CDeepExConfig, CDeepExResult, explain  # noqa: E402
from explainers.datasets.common import to_tensor  # noqa: E402
from explainers.datasets.kannada import KannadaSplit, load_kannada  # noqa: E402
from explainers.metrics import cdeepex_validity, third_class_wins, top2_is_pair  # noqa: E402
from explainers.nets.classifiers import MnistNet, evaluate, train_classifier  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
DATA = Path("/work/shared/data/kannada_mnist")
log = logging.getLogger("benchmarks")


class MlpVAE(nn.Module):
    """A small MLP VAE (784-hidden-latent): ``encode -> (mu, logvar)``, ``decode -> (N,1,28,28)``."""

    def __init__(self, latent_dim: int = 32, hidden: int = 400) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU())
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 784), nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, 1, 28, 28)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decode(z), mu, logvar


def load_splits() -> tuple[KannadaSplit, KannadaSplit]:
    return load_kannada(DATA, "train"), load_kannada(DATA, "test")


GENERATORS = ("mlp", "vae", "site-vae", "site-wgan")


def generator_kwargs(G: nn.Module) -> dict:
    """How to pass G to ``explain``: a VAE as ``decode`` + encoder, a GAN with Procedure 2."""
    if hasattr(G, "encode"):
        return {"G": G.decode, "encoder": G, "generator_kind": "vae"}
    return {"G": G, "generator_kind": "gan"}


def load_site_models(generator: str) -> tuple[nn.Module, nn.Module, dict]:
    """The checkpoints of benchmarks/train_generators.py (the site's models), if present."""
    from explainers.nets.checkpoints import load_checkpoint

    name = {"site-vae": "vae.pt", "site-wgan": "wgan_generator.pt"}[generator]
    missing = [p for p in ("mnistnet.pt", name) if not (OUT / p).is_file()]
    if missing:
        raise SystemExit(f"{missing} not in {OUT}: run benchmarks/train_generators.py first")
    D, meta_d = load_checkpoint(OUT / "mnistnet.pt")
    G, meta_g = load_checkpoint(OUT / name)
    info = {
        "D": f"MnistNet(10) from benchmarks/out/mnistnet.pt, test acc {meta_d.get('test_accuracy')}",
        "G": f"{type(G).__name__}({meta_g.get('arch_kwargs')}) from benchmarks/out/{name}",
    }
    return D.eval(), G.eval(), info


def load_or_train_models(generator: str = "mlp", *, seed: int = 0) -> tuple[nn.Module, nn.Module, dict]:
    """(D, G, info). ``mlp``/``vae``: trained here, cached as benchmarks/out/bench_D.pt and
    bench_G_<kind>.pt; ``site-vae``/``site-wgan``: the checkpoints of train_generators.py."""
    from explainers.nets.vae import VAE, train_vae

    if generator.startswith("site-"):
        return load_site_models(generator)
    OUT.mkdir(exist_ok=True)
    train, test = load_splits()
    x_test, y_test = to_tensor(test.images), torch.from_numpy(test.labels)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(train.labels))[:12000]
    x, y = to_tensor(train.images[idx]), torch.from_numpy(train.labels[idx])
    info: dict = {}

    D = MnistNet(10)
    path_d = OUT / "bench_D.pt"
    if path_d.is_file():
        D.load_state_dict(torch.load(path_d, weights_only=True))
    else:
        start = time.perf_counter()
        torch.manual_seed(seed)
        train_classifier(D, x, y, epochs=2, lr=2e-3, seed=seed)
        torch.save(D.state_dict(), path_d)
        log.info("trained D in %.0f s", time.perf_counter() - start)
    D.eval()
    info["D_accuracy"] = evaluate(D, x_test[:5000], y_test[:5000])
    info["D"] = f"MnistNet(10), 12000 train images x 2 epochs, test acc {info['D_accuracy']:.3f}"

    path_g = OUT / f"bench_G_{generator}.pt"
    if generator == "mlp":
        G: nn.Module = MlpVAE()
    elif generator == "vae":
        G = VAE(latent_dim=16, width=32)
    else:
        raise ValueError(f"unknown generator {generator!r}")
    if path_g.is_file():
        G.load_state_dict(torch.load(path_g, weights_only=True))
    else:
        start = time.perf_counter()
        torch.manual_seed(seed)
        train_vae(G, x, epochs=10 if generator == "mlp" else 6, lr=2e-3, seed=seed, batch_size=128)
        torch.save(G.state_dict(), path_g)
        log.info("trained G in %.0f s", time.perf_counter() - start)
    G.eval()
    with torch.no_grad():
        mu, _ = G.encode(x_test[:2000])
        rms = (G.decode(mu) - x_test[:2000]).pow(2).flatten(1).mean(1).sqrt().mean()
    info["G_rms"] = float(rms)
    info["G"] = (
        f"{type(G).__name__}(latent {G.latent_dim}), 12000 train images (all classes), "
        f"test reconstruction RMS {float(rms):.3f}"
    )
    return D, G, info


def summarise(name: str, r: CDeepExResult, seconds: float) -> dict[str, float]:
    pair = top2_is_pair(r)
    third = third_class_wins(r)
    valid = cdeepex_validity(r)
    return {
        "method": name,
        "converged": float(r.converged.double().mean()),
        "top2_pair": float(pair.double().mean()),
        "third_wins": float(third.double().mean()),
        "third_in_top2": float((~pair).double().mean()),
        "valid": statistics.fmean(v.ok for v in valid),
        "gap": float(r.eq_residual.median()),
        "dist": float((r.z_path[:, -1] - r.z0).norm(dim=1).median()),
        "evals": float(r.evaluations.double().mean()),
        "seconds": seconds,
    }


def print_table(title: str, rows: list[dict[str, float]], n: int) -> None:
    print(f"{title} ({n} images)")
    print()
    print("| method  | converged | top-2 = {true, probe} | third class wins | third class in top-2 | valid | median gap | median dist | evals/img | seconds |")
    print("|---------|----------:|----------------------:|-----------------:|---------------------:|------:|-----------:|------------:|----------:|--------:|")
    for r in rows:
        print(
            f"| {r['method']:7s} | {r['converged']:9.1%} | {r['top2_pair']:21.1%} | {r['third_wins']:16.1%} | "
            f"{r['third_in_top2']:20.1%} | {r['valid']:5.0%} | {r['gap']:10.3f} | {r['dist']:11.2f} | "
            f"{r['evals']:9.1f} | {r['seconds']:7.1f} |"
        )
    print()


def run(D: nn.Module, G: nn.Module, x: torch.Tensor, *, probe: torch.Tensor | None, config: CDeepExConfig) -> list[dict]:
    rows = []
    for name, inequality in (("CDeepEx", True), ("xGEMs", False)):
        start = time.perf_counter()
        r = explain(D, images=x, true_labels=None, probe_labels=probe, inequality=inequality, config=config, **generator_kwargs(G))
        rows.append(summarise(name, r, time.perf_counter() - start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--pair", type=int, nargs=2, default=(3, 7))
    parser.add_argument("--generator", choices=GENERATORS, default="mlp")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    D, G, info = load_or_train_models(args.generator, seed=args.seed)
    _, test = load_splits()
    rng = np.random.default_rng(args.seed + 1)
    config = CDeepExConfig()
    print(f"D: {info['D']}")
    print(f"G: {info['G']}")
    print(f"config: {config}")
    print(f"true = D's prediction, {args.threads} thread(s)")
    print()

    idx = rng.permutation(len(test.labels))[: args.images]
    x = to_tensor(test.images[idx])
    print_table("(1) all ten classes, probe = second most likely class", run(D, G, x, probe=None, config=config), len(idx))

    a, b = args.pair
    pair_idx = rng.permutation(np.flatnonzero(np.isin(test.labels, (a, b))))
    xp = to_tensor(test.images[pair_idx])
    with torch.no_grad():
        pred = D(xp).argmax(1)
    keep = ((pred == a) | (pred == b)).nonzero().flatten()[: args.images // 2]
    xp, pred = xp[keep], pred[keep]
    probe = torch.where(pred == a, b, a)
    print_table(f"(2) look-alike pair {a}/{b}, probe = the other class of the pair", run(D, G, xp, probe=probe, config=config), len(keep))


if __name__ == "__main__":
    main()
