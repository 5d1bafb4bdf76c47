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
  own checkpoints from benchmarks/train_generators.py (MnistNet + VAE(400) / WGAN);
  ``--generator demo``: **the study's own configuration**, the models the demo site trains
  (``manage.py demo``'s defaults, re-done here without Django): MnistNet(10) on 24000 training
  images x 2 epochs and ``VAE(latent_dim=400, width=16)`` on ``--demo-vae-train`` images x
  ``--demo-vae-epochs`` (the demo's values by default), all ten classes, so the training time of
  the demo's models is measured too.

``--generator-classes pair`` trains G on the pair's two classes only (the option
``generator_classes: "study"``): then no third class is ever generated and xGEMs and CDeepEx
coincide, which is why the site's default is all classes.

Figure 3.5(b) (``result.llh``): for the pair run, the mean probability of every class along the
morph (true, probe, then each other class), CDeepEx against xGEMs, printed at a few frames and
saved as benchmarks/out/fig3_5b_<generator>.png. Also the morph size the participant would see:
the median over images of the mean |change| per pixel of the last frame, clipped to [0, 1].

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
from torch import Tensor, nn

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


def cached_mnistnet(path: Path, x: torch.Tensor, y: torch.Tensor, *, seed: int) -> tuple[MnistNet, float | None]:
    """MnistNet(10) from ``path``, else trained on ``x, y`` (2 epochs, lr 2e-3) and saved there;
    with the training seconds (``None`` when loaded)."""
    D = MnistNet(10)
    if path.is_file():
        D.load_state_dict(torch.load(path, weights_only=True))
        return D, None
    start = time.perf_counter()
    torch.manual_seed(seed)
    train_classifier(D, x, y, epochs=2, lr=2e-3, seed=seed)
    torch.save(D.state_dict(), path)
    seconds = time.perf_counter() - start
    log.info("trained D in %.0f s", seconds)
    return D, seconds


def load_splits() -> tuple[KannadaSplit, KannadaSplit]:
    return load_kannada(DATA, "train"), load_kannada(DATA, "test")


GENERATORS = ("mlp", "vae", "site-vae", "site-wgan", "demo")
#: manage.py demo's classifier and VAE training (studyapp/studies/management/commands/demo.py).
DEMO_CLASSIFIER = {"epochs": 8, "max_train": 24000, "seed": 0}
DEMO_VAE = {"epochs": 6, "max_train": 8000, "seed": 0, "latent_dim": 400, "width": 16}


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


def site_subset(n: int, y: np.ndarray, *, classes: list[int] | None, limit: int | None, seed: int) -> np.ndarray:
    """The rows ``studyapp.pipeline.training.training_subset`` picks (same rule, no Django)."""
    idx = np.arange(n)
    if classes:
        idx = idx[np.isin(y, classes)]
    if limit and len(idx) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=limit, replace=False))
    return idx


def load_or_train_demo_models(
    *, vae_epochs: int, vae_train: int, classes: list[int] | None, vae_options: dict | None = None, classifier: dict | None = None,
) -> tuple[nn.Module, nn.Module, dict]:
    """The demo site's classifier and VAE, trained as ``model_train`` trains them (cached).

    ``vae_options`` (``batch_size``, ``lr``, ``kl_warmup_steps``) go to ``train_vae``;
    ``classifier`` overrides :data:`DEMO_CLASSIFIER` (``epochs``, ``max_train``, ``batch_size``,
    ``lr``). Settings other than the defaults are cached under their own file names."""
    from explainers.nets.vae import VAE, train_vae

    vae_options = dict(vae_options or {})
    c = {**DEMO_CLASSIFIER, **(classifier or {})}
    tag_d = "".join(f"_{k}{c[k]}" for k in sorted(c))  # every setting in the name: no stale cache
    tag_g = "".join(f"_{k}{vae_options[k]}" for k in sorted(vae_options))

    OUT.mkdir(exist_ok=True)
    train, test = load_splits()
    x_test, y_test = to_tensor(test.images), torch.from_numpy(test.labels)
    info: dict = {}
    D = MnistNet(10)
    path_d = OUT / f"bench_D_demo{tag_d}.pt"
    if path_d.is_file():
        D.load_state_dict(torch.load(path_d, weights_only=True))
    else:
        idx = site_subset(len(train.labels), train.labels, classes=None, limit=c["max_train"], seed=c["seed"])
        torch.manual_seed(c["seed"])
        D = MnistNet(10)
        start = time.perf_counter()
        train_classifier(
            D, to_tensor(train.images[idx]), torch.from_numpy(train.labels[idx]).long(), epochs=c["epochs"], seed=c["seed"],
            batch_size=c.get("batch_size", 128), lr=c.get("lr", 1e-3),
        )
        info["D_seconds"] = time.perf_counter() - start
        torch.save(D.state_dict(), path_d)
    D.eval()
    info["D_accuracy"] = evaluate(D, x_test[:5000], y_test[:5000])
    info["D"] = f"MnistNet(10) as the demo trains it ({c}), test acc {info['D_accuracy']:.3f}"
    v = {**DEMO_VAE, "epochs": vae_epochs, "max_train": vae_train}
    which = "all" if not classes else "-".join(map(str, classes))
    path_g = OUT / f"bench_G_demo_{which}_{vae_epochs}x{vae_train}{tag_g}.pt"
    torch.manual_seed(v["seed"])
    G = VAE(latent_dim=v["latent_dim"], width=v["width"])
    idx = site_subset(len(train.labels), train.labels, classes=classes, limit=v["max_train"], seed=v["seed"])
    if path_g.is_file():
        G.load_state_dict(torch.load(path_g, weights_only=True))
    else:
        start = time.perf_counter()
        train_vae(G, to_tensor(train.images[idx]), epochs=v["epochs"], seed=v["seed"], **vae_options)
        info["G_seconds"] = time.perf_counter() - start
        torch.save(G.state_dict(), path_g)
    G.eval()
    with torch.no_grad():
        mu, _ = G.encode(x_test[:2000])
        rms = (G.decode(mu) - x_test[:2000]).pow(2).flatten(1).mean(1).sqrt().mean()
    info["G_rms"] = float(rms)
    seconds = "".join(f", {k[0]} trained in {info[k]:.0f} s" for k in ("D_seconds", "G_seconds") if k in info)
    info["G"] = (
        f"VAE(latent_dim={v['latent_dim']}, width={v['width']}) as the demo trains it: {len(idx)} images of "
        f"{'all classes' if not classes else f'classes {classes}'} x {v['epochs']} epochs {vae_options or ''}, "
        f"test reconstruction RMS {float(rms):.3f}{seconds}"
    )
    return D, G, info


def load_or_train_models(generator: str = "mlp", *, seed: int = 0, classes: list[int] | None = None) -> tuple[nn.Module, nn.Module, dict]:
    """(D, G, info). ``mlp``/``vae``: trained here, cached as benchmarks/out/bench_D.pt and
    bench_G_<kind>.pt (G on ``classes`` only when given); ``site-vae``/``site-wgan``: the
    checkpoints of train_generators.py; ``demo``: see :func:`load_or_train_demo_models`."""
    from explainers.nets.vae import VAE, train_vae

    if generator.startswith("site-"):
        return load_site_models(generator)
    if generator == "demo":
        return load_or_train_demo_models(vae_epochs=DEMO_VAE["epochs"], vae_train=DEMO_VAE["max_train"], classes=classes)
    OUT.mkdir(exist_ok=True)
    train, test = load_splits()
    x_test, y_test = to_tensor(test.images), torch.from_numpy(test.labels)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(train.labels))[:12000]
    x, y = to_tensor(train.images[idx]), torch.from_numpy(train.labels[idx])
    info: dict = {}

    D, _ = cached_mnistnet(OUT / "bench_D.pt", x, y, seed=seed)
    D.eval()
    info["D_accuracy"] = evaluate(D, x_test[:5000], y_test[:5000])
    info["D"] = f"MnistNet(10), 12000 train images x 2 epochs, test acc {info['D_accuracy']:.3f}"

    path_g = OUT / (f"bench_G_{generator}.pt" if not classes else f"bench_G_{generator}_{'-'.join(map(str, classes))}.pt")
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
        xg = x if not classes else x[torch.isin(y, torch.tensor(classes))]
        train_vae(G, xg, epochs=10 if generator == "mlp" else 6, lr=2e-3, seed=seed, batch_size=128)
        torch.save(G.state_dict(), path_g)
        log.info("trained G in %.0f s", time.perf_counter() - start)
    G.eval()
    with torch.no_grad():
        mu, _ = G.encode(x_test[:2000])
        rms = (G.decode(mu) - x_test[:2000]).pow(2).flatten(1).mean(1).sqrt().mean()
    info["G_rms"] = float(rms)
    info["G"] = (
        f"{type(G).__name__}(latent {G.latent_dim}), 12000 train images "
        f"({'all classes' if not classes else f'classes {classes} only'}), "
        f"test reconstruction RMS {float(rms):.3f}"
    )
    return D, G, info


def morph_size(r: CDeepExResult) -> Tensor:
    """(N,) mean |change| per pixel of the last frame as displayed (clipped to [0, 1])."""
    return (r.final.clamp(0, 1) - r.frames[:, 0].clamp(0, 1)).abs().flatten(1).mean(1)


def summarise(name: str, r: CDeepExResult, seconds: float) -> dict[str, float]:
    pair = top2_is_pair(r)
    third = third_class_wins(r)
    valid = cdeepex_validity(r)
    # a third class the most likely at *any* frame of the morph (not only the last)
    llh = r.llh
    idx = torch.arange(len(r))
    best_other = llh.clone()
    best_other[idx, :, r.true_labels] = float("-inf")
    best_other[idx, :, r.probe_labels] = float("-inf")
    pair_max = torch.maximum(llh[idx, :, r.true_labels], llh[idx, :, r.probe_labels])
    third_any = (best_other.amax(2) > pair_max).any(1)
    return {
        "third_any": float(third_any.double().mean()),
        "morph": float(morph_size(r).median()),
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
    print("| method  | converged | top-2 = {true, probe} | third class wins | third class in top-2 | third wins at some frame | valid | median gap | median dist | median morph |Δ| | evals/img | seconds |")
    print("|---------|----------:|----------------------:|-----------------:|---------------------:|------------------------:|------:|-----------:|------------:|----------------:|----------:|--------:|")
    for r in rows:
        print(
            f"| {r['method']:7s} | {r['converged']:9.1%} | {r['top2_pair']:21.1%} | {r['third_wins']:16.1%} | "
            f"{r['third_in_top2']:20.1%} | {r['third_any']:23.1%} | {r['valid']:5.0%} | {r['gap']:10.3f} | {r['dist']:11.2f} | "
            f"{r['morph']:15.3f} | {r['evals']:9.1f} | {r['seconds']:7.1f} |"
        )
    print()


def run(D: nn.Module, G: nn.Module, x: torch.Tensor, *, probe: torch.Tensor | None, config: CDeepExConfig) -> tuple[list[dict], dict[str, CDeepExResult]]:
    rows, results = [], {}
    for name, inequality in (("CDeepEx", True), ("xGEMs", False)):
        start = time.perf_counter()
        r = explain(D, images=x, true_labels=None, probe_labels=probe, inequality=inequality, config=config, **generator_kwargs(G))
        rows.append(summarise(name, r, time.perf_counter() - start))
        results[name] = r
    return rows, results


def class_curves(r: CDeepExResult) -> dict[str, np.ndarray]:
    """Figure 3.5(b)'s data: the mean probability along the morph (T frames) of the true class,
    the probe class and each other class (by label), over the images of ``r``."""
    p = r.llh.exp()  # (N, T, C)
    n, _, c = p.shape
    idx = torch.arange(n)
    curves = {"true": p[idx, :, r.true_labels].mean(0).numpy(), "probe": p[idx, :, r.probe_labels].mean(0).numpy()}
    for k in range(c):
        other = (r.true_labels != k) & (r.probe_labels != k)
        if other.any():
            curves[f"class {k}"] = p[other, :, k].mean(0).numpy()
    return curves


def print_curves(results: dict[str, CDeepExResult]) -> None:
    """The Figure 3.5(b) numbers at a few frames: true, probe and the most likely other class."""
    frames = next(iter(results.values())).llh.shape[1]
    at = sorted({0, frames // 4, frames // 2, (3 * frames) // 4, frames - 1})
    print("Figure 3.5(b): mean probability along the morph (frame index; others = the most likely other class on average)")
    print()
    print("| method | class | " + " | ".join(f"frame {t}" for t in at) + " |")
    print("|---|---|" + "---:|" * len(at))
    for name, r in results.items():
        curves = class_curves(r)
        others = {k: v for k, v in curves.items() if k.startswith("class")}
        top = max(others, key=lambda k: others[k][-1]) if others else None
        for label in ("true", "probe", top):
            if label is not None:
                print(f"| {name} | {label} | " + " | ".join(f"{curves[label][t]:.3f}" for t in at) + " |")
    print()


def figure_3_5b(results: dict[str, CDeepExResult], path: Path, title: str) -> Path:
    """Save Figure 3.5(b): one panel per method, the mean probability of every class per frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 3.8), sharey=True)
    for ax, (name, r) in zip(np.atleast_1d(axes), results.items(), strict=True):
        curves = class_curves(r)
        t = np.arange(len(curves["true"]))
        for label, values in curves.items():
            style = {"true": dict(color="tab:blue", lw=2.5), "probe": dict(color="tab:red", lw=2.5)}.get(
                label, dict(color="grey", lw=1, alpha=0.7)
            )
            ax.plot(t, values, label=label if label in ("true", "probe") else None, **style)
        ax.set_title(f"{name} ({len(r)} images)")
        ax.set_xlabel("frame of the morph")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("mean p(class)")
    np.atleast_1d(axes)[0].plot([], [], color="grey", lw=1, label="each other class")
    np.atleast_1d(axes)[0].legend(loc="upper right", fontsize=8)
    import textwrap

    fig.suptitle("\n".join(textwrap.wrap(title, 140)), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--pair", type=int, nargs=2, default=(3, 7))
    parser.add_argument("--generator", choices=GENERATORS, default="mlp")
    parser.add_argument("--generator-classes", choices=("all", "pair"), default="all",
                        help="train G on all classes (the site's default) or on the pair only")
    parser.add_argument("--demo-vae-epochs", type=int, default=DEMO_VAE["epochs"])
    parser.add_argument("--demo-vae-train", type=int, default=DEMO_VAE["max_train"])
    parser.add_argument("--skip-all", action="store_true", help="only the pair run (2)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    classes = sorted(args.pair) if args.generator_classes == "pair" else None
    if args.generator == "demo":
        D, G, info = load_or_train_demo_models(vae_epochs=args.demo_vae_epochs, vae_train=args.demo_vae_train, classes=classes)
    else:
        D, G, info = load_or_train_models(args.generator, seed=args.seed, classes=classes)
    _, test = load_splits()
    rng = np.random.default_rng(args.seed + 1)
    config = CDeepExConfig()
    print(f"D: {info['D']}")
    print(f"G: {info['G']}")
    print(f"config: {config}")
    print(f"true = D's prediction, {args.threads} thread(s)")
    print()

    idx = rng.permutation(len(test.labels))[: args.images]
    if not args.skip_all:
        x = to_tensor(test.images[idx])
        print_table("(1) all ten classes, probe = second most likely class", run(D, G, x, probe=None, config=config)[0], len(idx))

    a, b = args.pair
    pair_idx = rng.permutation(np.flatnonzero(np.isin(test.labels, (a, b))))
    xp = to_tensor(test.images[pair_idx])
    with torch.no_grad():
        pred = D(xp).argmax(1)
    keep = ((pred == a) | (pred == b)).nonzero().flatten()[: args.images // 2]
    xp, pred = xp[keep], pred[keep]
    probe = torch.where(pred == a, b, a)
    rows, results = run(D, G, xp, probe=probe, config=config)
    print_table(f"(2) look-alike pair {a}/{b}, probe = the other class of the pair", rows, len(keep))
    print_curves(results)
    suffix = args.generator + ("" if classes is None else "_pair")
    if args.generator == "demo" and (args.demo_vae_epochs, args.demo_vae_train) != (DEMO_VAE["epochs"], DEMO_VAE["max_train"]):
        suffix += f"_{args.demo_vae_train}x{args.demo_vae_epochs}"
    path = figure_3_5b(results, OUT / f"fig3_5b_{suffix}.png", f"Figure 3.5(b): pair {a}/{b}, probe = the other class; D: {info['D']}\nG: {info['G']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
