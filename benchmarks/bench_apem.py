"""Reproduction: APEM (thesis Tables 4.2, 5.1, Fig. 4.4) for every heatmap method on Kannada-MNIST.

The classifier is MnistNet on real Kannada-MNIST (benchmarks/bench_gad.py's loader: the
12 000-image, 2-epoch recipe cached as benchmarks/out/bench_D.pt); the images are
``--per-class`` correctly classified test images of each class of the pair 3 / 7 (the thesis
scores correctly classified images; the pair, because GAD's support models are trained for it),
so every method is scored on the same images.

Methods: the thesis's gradient, SmoothGrad (n = 100, σ = 0.2) and LRP (ε = 1), as its step-3 maps
(|R|, 99th-percentile clip, x image, normalised); the platform's Grad-CAM (``features_layer``),
ExcitationBP (c-MWP at the input, as the pipeline computes it) and DeepLIFT maps as they are
shown; integrated gradients (|IG| / max) and GAD on integrated gradients (the four support models
of bench_gad.py). ``--stage2`` adds the thesis's step-2 maps (no multiplication by the image) of
its three methods (Table 4.4).

APEM settings: unit ε steps up to 1000, no clipping of the perturbed image, ``search="bisect"``
(the exact scan takes ~8x longer; the script checks on ``--check`` images that both agree and
prints the agreement), shuffled maps with ``--shuffles`` permutations (thesis: 10).

Prints Table 4.2 (mean / median APEM, ε⁻, ε⁺), Table 5.1 (APEM_norm, and the APEM of the shuffled
maps, which the thesis finds ~0), the pairwise wins of Fig. 4.4 and the Spearman correlation of
APEM with the loss (Table 5.3), and writes one gallery PNG per method
(benchmarks/out/apem_gallery_<method>.png: image, map, x + ε⁻ R_dir, x + ε⁺ R⁻_dir; for the
gradient also the map after the Explanation Filter).

    KANNADA_MNIST_DIR=/work/shared/data/kannada_mnist python benchmarks/bench_apem.py \
        [--per-class 32] [--shuffles 10] [--check 8] [--stage2] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gad import (  # noqa: E402
    OUT,
    PAIR,
    load_or_train_classifier,
    load_or_train_supports,
    load_splits,
    parse_and_start,
)

from explainers.apem import APEM, APEMResult, apem_norm, directed, loss_gradient_sign, relevance_map  # noqa: E402
from explainers.datasets.common import to_tensor  # noqa: E402
from explainers.deeplift import DeepLift  # noqa: E402
from explainers.excitation_bp import ExcitationBP  # noqa: E402
from explainers.gad import GAD, attribute, importance  # noqa: E402
from explainers.gradcam import GradCAM  # noqa: E402
from explainers.targets import ClassTarget  # noqa: E402

log = logging.getLogger("bench_apem")

def correct_pair_images(split, net, per_class: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in PAIR:
        idx = rng.permutation(np.nonzero(split.labels == c)[0])[: 4 * per_class]
        x = to_tensor(split.images[idx])
        with torch.no_grad():
            ok = net(x).argmax(1) == c
        kept = x[ok][:per_class]
        xs.append(kept)
        ys.append(torch.full((kept.shape[0],), c))
    return torch.cat(xs), torch.cat(ys)


def unit(maps: torch.Tensor) -> torch.Tensor:
    peak = maps.flatten(1).amax(1).view(-1, 1, 1)
    return torch.where(peak > 0, maps / peak.clamp_min(1e-30), torch.zeros_like(maps))


def methods(net, supports, *, ig_steps: int, stage2: bool) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    out: dict[str, Callable] = {
        "gradient": lambda x, p: relevance_map("gradient", net, x, p),
        "smoothgrad": lambda x, p: relevance_map("smoothgrad", net, x, p, samples=100, sigma=0.2),
        "lrp": lambda x, p: relevance_map("lrp", net, x, p, epsilon=1.0),
    }
    if stage2:
        out.update({
            "gradient (step 2)": lambda x, p: relevance_map("gradient", net, x, p, multiply_by_image=False),
            "smoothgrad (step 2)": lambda x, p: relevance_map("smoothgrad", net, x, p, multiply_by_image=False, samples=100),
            "lrp (step 2)": lambda x, p: relevance_map("lrp", net, x, p, multiply_by_image=False),
        })
    out.update({
        "grad-cam": lambda x, p: GradCAM(net, net.features_layer)(x, ClassTarget(p)),
        "excitation-bp": lambda x, p: ExcitationBP(net, None)(x, p),
        "deeplift": lambda x, p: DeepLift(net)(x, p),
        "integrated-gradients": lambda x, p: unit(importance(attribute("integrated_gradients", net, x, p, ig_steps=ig_steps))),
        "gad (IG)": GAD(net, supports, method="integrated_gradients", ig_steps=ig_steps),
    })
    return out


def stats(v: torch.Tensor) -> tuple[float, float]:
    a = v.double().cpu().numpy()
    return float(a.mean()), float(np.median(a))


def shown(y: torch.Tensor) -> list[int]:
    """The gallery's images: the first three of each class of the pair."""
    return [i for c in PAIR for i in (y == c).nonzero().flatten()[:3].tolist()]


def gallery(
    path: Path, net, x: torch.Tensor, rows: list[int], maps: torch.Tensor, res: APEMResult, title: str,
    filtered: torch.Tensor | None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sign = loss_gradient_sign(net, x[rows], res.predicted[rows])
    m = maps[rows][:, None]
    d_minus, d_plus = directed(m, sign), directed(1 - m, sign)
    x_minus = x[rows] + res.eps_minus[rows].view(-1, 1, 1, 1).float() * d_minus
    x_plus = x[rows] + res.eps_plus[rows].view(-1, 1, 1, 1).float() * d_plus
    cols = 5 if filtered is not None else 4
    fig, axes = plt.subplots(len(rows), cols, figsize=(2 * cols, 2 * len(rows)))
    for r, i in enumerate(rows):
        panels = [
            (x[i, 0], "gray", (0, 1), f"class {int(res.predicted[i])}"),
            (maps[i], "hot", (0, 1), "relevance R"),
            (x_minus[r, 0], "gray", None, f"x + ε⁻ R_dir, ε⁻={res.eps_minus[i]:.0f}"),
            (x_plus[r, 0], "gray", None, f"x + ε⁺ R⁻_dir, ε⁺={res.eps_plus[i]:.0f}"),
        ]
        if filtered is not None:
            panels.append((filtered[i], "hot", (0, 1), "after the filter"))
        for c, (data, cmap, rng, name) in enumerate(panels):
            kw = {"vmin": rng[0], "vmax": rng[1]} if rng else {}
            axes[r, c].imshow(data.detach().cpu().numpy(), cmap=cmap, **kw)
            axes[r, c].set_title(name, fontsize=7)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=32)
    parser.add_argument("--shuffles", type=int, default=10)
    parser.add_argument("--check", type=int, default=8, help="images on which scan and bisect are compared")
    parser.add_argument("--ig-steps", type=int, default=32)
    parser.add_argument("--stage2", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated subset of the methods")
    args, started = parse_and_start(parser)

    train, test = load_splits()
    net, acc = load_or_train_classifier(train, test, seed=args.seed)
    supports = load_or_train_supports(net, train, 150, seed=args.seed)
    x, y = correct_pair_images(test, net, args.per_class, seed=args.seed + 3)
    with torch.no_grad():
        loss = F.cross_entropy(net(x), y, reduction="none")
    scorer = APEM(net, search="bisect")
    print(f"MnistNet(10) on Kannada-MNIST, test accuracy {acc:.3f}; {len(y)} correctly classified test images of {PAIR}")
    print(f"APEM: step {scorer.step:g}, ceiling {scorer.ceiling:g}, no clipping, search {scorer.search}, {args.shuffles} shuffles")

    rows, results = [], {}
    all_methods = methods(net, supports, ig_steps=args.ig_steps, stage2=args.stage2)
    chosen = [m for m in args.only.split(",") if m] or list(all_methods)
    for name in chosen:
        t0 = time.perf_counter()
        maps = all_methods[name](x, y)
        t_maps = time.perf_counter() - t0
        res = scorer(x, maps)
        shuf = scorer.shuffled(x, maps, shuffles=args.shuffles, seed=args.seed)
        norm = apem_norm(res, shuf)
        results[name] = (maps, res)
        from scipy.stats import spearmanr

        rho = spearmanr(res.apem.numpy(), loss.numpy()).statistic
        rows.append((name, res, shuf, norm, rho))
        log.info("%s: maps %.0f s, APEM %.0f s", name, t_maps, time.perf_counter() - t0 - t_maps)
        filtered = None
        if name == "gradient":
            t1 = time.perf_counter()
            pick = shown(y)
            filt = scorer.filter(x[pick], maps[pick], levels=64)
            filtered = torch.zeros_like(maps)
            filtered[pick] = filt.maps
            log.info("Explanation Filter on 6 gradient maps: %.0f s; APEM %s -> %s, kept %s", time.perf_counter() - t1,
                     filt.initial_apem.tolist(), filt.apem.tolist(), [round(k, 2) for k in filt.kept_fraction.tolist()])
        gallery(OUT / f"apem_gallery_{name.split(' ')[0]}{'_step2' if 'step 2' in name else ''}.png", net, x, shown(y), maps, res,
                f"APEM, {name}: mean {res.mean():.1f}, median {res.median():.1f}", filtered)

    # bisect vs the exact scan, on the first --check images of the gradient and Grad-CAM maps
    agree = []
    if args.check:
        exact = APEM(net, search="scan")
        for name in [n for n in ("gradient", "grad-cam") if n in results]:
            maps, res = results[name]
            k = min(args.check, len(y))
            ref = exact(x[:k], maps[:k])
            same = (ref.eps_minus == res.eps_minus[:k]) & (ref.eps_plus == res.eps_plus[:k])
            agree.append(f"{name}: {int(same.sum())}/{k}")

    print("\nTable 4.2: APEM = mean(ε⁺ - ε⁻), higher is better (thesis, VGG-16/ImageNet: gradient 127.79/81, "
          "SmoothGrad 44.38/16, LRP 66.07/41)")
    print(f"{'method':22}{'APEM mean':>10}{'median':>8}{'ε⁻ mean':>9}{'median':>8}{'ε⁺ mean':>9}{'median':>8}{'ceiling':>8}")
    for name, res, _, _, _ in rows:
        am, amed = stats(res.apem)
        mm, mmed = stats(res.eps_minus)
        pm, pmed = stats(res.eps_plus)
        print(f"{name:22}{am:10.2f}{amed:8.1f}{mm:9.2f}{mmed:8.1f}{pm:9.2f}{pmed:8.1f}{int(res.hit_ceiling.sum()):8d}")
    print(f"\nTable 5.1: APEM_norm = mean(ε⁺/ε-shuffle⁺ - ε⁻/ε-shuffle⁻) and the APEM of the shuffled maps "
          f"({args.shuffles} shuffles; thesis step 3: gradient 0.66, SmoothGrad 0.21, LRP 0.40; shuffled ~0)")
    print(f"{'method':22}{'norm mean':>10}{'median':>8}{'shuf mean':>10}{'median':>8}{'ε-sh⁻':>8}{'ε-sh⁺':>8}{'ρ(loss)':>9}")
    for name, _, shuf, norm, rho in rows:
        nm, nmed = stats(norm)
        sm, smed = stats(shuf.apem)
        print(f"{name:22}{nm:10.3f}{nmed:8.3f}{sm:10.2f}{smed:8.1f}{stats(shuf.eps_minus)[0]:8.1f}{stats(shuf.eps_plus)[0]:8.1f}{rho:9.3f}")
    base = [n for n in ("gradient", "smoothgrad", "lrp") if n in results]
    if len(base) > 1:
        print("\nFig. 4.4: pairwise, share of images where A's APEM is higher / equal / lower than B's")
        for i, a in enumerate(base):
            for b in base[i + 1 :]:
                da, db = results[a][1].apem, results[b][1].apem
                print(f"  {a} vs {b}: {float((da > db).double().mean()):.2f} / {float((da == db).double().mean()):.2f} / "
                      f"{float((da < db).double().mean()):.2f}")
    if agree:
        print("\nbisect == exact scan (ε⁻ and ε⁺ both equal): " + ", ".join(agree))
    print(f"\ngalleries: {OUT}/apem_gallery_<method>.png; total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
