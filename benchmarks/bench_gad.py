"""Reproduction: GAD (Gradient Artificial Distancing) on Kannada-MNIST 3 vs 7, GAD paper §6.

The classifier is the dissertation's MnistNet trained on real Kannada-MNIST (the recipe of the
other benchmarks: 12 000 random training images, 2 epochs, lr 2e-3, seed 0, cached as
benchmarks/out/bench_D.pt). The four support regressions (α = 2, 4, 6, 8) are fine-tuned copies
on ``--train-per-class`` training images of each class (:func:`explainers.gad.train_support_models`
defaults: Adam, lr 1e-3, 3 epochs, seed 0; cached in benchmarks/out/gad_support_3_7.pt).

On ``--per-class`` test images of each class, for each of the five gradient methods, the maps of
both classes are computed (the paper's "1" and "2": class 3 and class 7 as the explained output
``a``) and the paper's two tables are printed:

* Table 1: how many images have RC < 1 (GAD's hull smaller: "GAD") and RC >= 1 ("Orig.");
* Table 2: mean RS (x 10², as in the paper) of the GAD mask and of the supplementary mask.

and one gallery PNG per method (benchmarks/out/gad_gallery_<method>.png): image, original map,
GAD map, and the two convex hulls (red: original, green: GAD), as in the paper's Figs. 5-6.

    KANNADA_MNIST_DIR=/work/shared/data/kannada_mnist python benchmarks/bench_gad.py \
        [--per-class 64] [--train-per-class 150] [--ig-steps 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explainers.datasets.common import to_tensor  # noqa: E402
from explainers.datasets.kannada import KannadaSplit, load_kannada  # noqa: E402
from explainers.gad import (  # noqa: E402
    GAD,
    METHODS,
    PAPER_ALPHAS,
    SupportModel,
    convex_hull,
    gad_metrics,
    train_support_models,
)
from explainers.nets.classifiers import MnistNet, evaluate, train_classifier  # noqa: E402

log = logging.getLogger("bench_gad")
OUT = Path(__file__).resolve().parent / "out"
DATA = Path(os.environ.get("KANNADA_MNIST_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "kannada_mnist"))
PAIR = (3, 7)
SHORT = {"saliency": "S", "deconvolution": "D", "gradient_x_input": "GxI", "guided_backprop": "GB", "integrated_gradients": "IG"}


def parse_and_start(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, float]:
    """Add ``--threads`` and ``--seed``, parse, set up logging and torch's threads; the
    arguments and the start time (``time.perf_counter()``)."""
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    return args, started


def load_splits() -> tuple[KannadaSplit, KannadaSplit]:
    return load_kannada(DATA, "train"), load_kannada(DATA, "test")


def load_or_train_classifier(train: KannadaSplit, test: KannadaSplit, *, seed: int = 0) -> tuple[MnistNet, float]:
    """MnistNet(10): 12 000 random training images, 2 epochs, lr 2e-3 (cached as bench_D.pt, the
    file and recipe of benchmarks/ablation_cdeepex_xgems.py). Returns (net in eval mode, test acc)."""
    OUT.mkdir(exist_ok=True)
    net = MnistNet(10)
    path = OUT / "bench_D.pt"
    if path.is_file():
        net.load_state_dict(torch.load(path, weights_only=True))
    else:
        idx = np.random.default_rng(seed).permutation(len(train.labels))[:12000]
        start = time.perf_counter()
        torch.manual_seed(seed)
        train_classifier(net, to_tensor(train.images[idx]), torch.from_numpy(train.labels[idx]), epochs=2, lr=2e-3, seed=seed)
        torch.save(net.state_dict(), path)
        log.info("trained MnistNet in %.0f s", time.perf_counter() - start)
    net.eval()
    acc = evaluate(net, to_tensor(test.images[:5000]), torch.from_numpy(test.labels[:5000]))
    return net, acc


def pair_images(split: KannadaSplit, per_class: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` random images of each class of the pair (the arrays are not shuffled)."""
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.permutation(np.nonzero(split.labels == c)[0])[:per_class] for c in PAIR])
    return to_tensor(split.images[idx]), torch.from_numpy(split.labels[idx]).long()


def load_or_train_supports(net: MnistNet, train: KannadaSplit, per_class: int, *, seed: int = 0) -> list[SupportModel]:
    path = OUT / f"gad_support_{PAIR[0]}_{PAIR[1]}.pt"
    recipe = f"v1 pair {PAIR} {per_class}/class seed {seed} alphas {PAPER_ALPHAS} defaults"
    if path.is_file():
        saved = torch.load(path, weights_only=False)
        if saved.get("recipe") == recipe:
            out = []
            for entry in saved["models"]:
                m = MnistNet(10)
                m.load_state_dict(entry["state"])
                out.append(SupportModel(m.eval(), entry["alpha"], entry["final_mse"], entry["achieved_gap"]))
            return out
    x, y = pair_images(train, per_class, seed=seed + 1)
    start = time.perf_counter()
    sup = train_support_models(net, x, y, *PAIR, seed=seed)
    log.info("fine-tuned %d support models in %.0f s", len(sup), time.perf_counter() - start)
    torch.save({"recipe": recipe, "models": [
        {"state": s.model.state_dict(), "alpha": s.alpha, "final_mse": s.final_mse, "achieved_gap": s.achieved_gap}
        for s in sup
    ]}, path)
    return sup


def gallery(path: Path, x: torch.Tensor, rows: list[tuple[object, int]], title: str) -> None:
    """One row per ``(GADResult, image index)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 4, figsize=(8, 2 * len(rows)))
    for r, (result, i) in enumerate(rows):
        img = x[i, 0].numpy()
        panels = [(img, "gray", "image"), (result.original_maps[i].numpy(), "hot", "original map"),
                  (result.maps[i].numpy(), "hot", "GAD map")]
        for c, (data, cmap, name) in enumerate(panels):
            axes[r, c].imshow(data, cmap=cmap, vmin=0, vmax=1)
            axes[r, c].set_title(name if r == 0 else "", fontsize=8)
        axes[r, 3].imshow(img, cmap="gray", vmin=0, vmax=1)
        for mask, colour in ((result.original_mask[i], "red"), (result.gad_mask[i], "lime")):
            _, filled = convex_hull(mask)
            if filled.any():
                axes[r, 3].contour(filled.astype(float), levels=[0.5], colors=colour, linewidths=1)
        axes[r, 3].set_title("hulls: orig red, GAD green" if r == 0 else "", fontsize=8)
        axes[r, 0].set_ylabel(f"target {int(result.targets[i])}", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def nanmean100(values: torch.Tensor) -> str:
    v = values.numpy()
    return "n/a" if np.isnan(v).all() else f"{100 * np.nanmean(v):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=64, help="test images per class (paper: 256)")
    parser.add_argument("--train-per-class", type=int, default=150, help="fine-tuning images per class")
    parser.add_argument("--ig-steps", type=int, default=32, help="integrated-gradients steps (Captum default 50)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--among", default="nonzero", choices=("nonzero", "all"),
                        help="top 50%% of the non-zero pixels (default) or of all pixels (the paper's wording)")
    args, started = parse_and_start(parser)

    train, test = load_splits()
    net, acc = load_or_train_classifier(train, test, seed=args.seed)
    sup = load_or_train_supports(net, train, args.train_per_class, seed=args.seed)
    x, y = pair_images(test, args.per_class, seed=args.seed + 2)
    with torch.no_grad():
        pred = net(x).argmax(1)
    lines = [
        f"MnistNet(10) on Kannada-MNIST, test accuracy {acc:.3f} (first 5000 test images)",
        f"important pixels: top 50% of the {'non-zero' if args.among == 'nonzero' else 'all'} pixels of each map",
        f"pair {PAIR}: {len(y)} test images ({args.per_class} per class), {int((pred == y).sum())} classified correctly",
        "support models (alpha: MSE, achieved gap own-other logit vs original): "
        + ", ".join(f"{s.alpha:g}: {s.final_mse:.3f}, {s.achieved_gap:.2f}" for s in sup),
    ]
    methods = [m for m in args.methods.split(",") if m]
    table1: dict[str, list[str]] = {k: [] for k in ("Orig.1", "GAD 1", "Orig.2", "GAD 2")}
    table2: dict[str, list[str]] = {k: [] for k in ("Sup.1", "GAD 1", "Sup.2", "GAD 2")}
    table2_grey: dict[str, list[str]] = {k: [] for k in ("Sup.1", "GAD 1", "Sup.2", "GAD 2")}
    extra = []
    for method in methods:
        t0 = time.perf_counter()
        gad = GAD(net, sup, method=method, ig_steps=args.ig_steps, among=args.among)
        shown: list[tuple[object, int]] = []
        for k, cls in enumerate(PAIR, start=1):
            res = gad.explain(x, torch.full((len(y),), cls))
            met = gad_metrics(net, x, res)
            rc = met.rc.numpy()
            table1[f"Orig.{k}"].append(str(int(np.sum(~(rc < 1)))))
            table1[f"GAD {k}"].append(str(int(np.sum(rc < 1))))
            table2[f"Sup.{k}"].append(nanmean100(met.rs_sup))
            table2[f"GAD {k}"].append(nanmean100(met.rs_gad))
            grey = gad_metrics(net, x, res, fill=0.5)
            table2_grey[f"Sup.{k}"].append(nanmean100(grey.rs_sup))
            table2_grey[f"GAD {k}"].append(nanmean100(grey.rs_gad))
            both = ~np.isnan(met.rs_sup.numpy()) & ~np.isnan(met.rs_gad.numpy())
            extra.append(
                f"{SHORT[method]:>3} class {cls}: mean RC {np.nanmean(rc):.3f}, RC = 1 for {int(np.sum(rc == 1))}, "
                f"empty GAD mask {int(met.empty_gad.sum())}, GAD pixels / original {float(res.gad_mask.sum() / res.original_mask.sum().clamp_min(1)):.2f}, "
                f"RS(GAD) > RS(Sup.) on {int(np.sum(met.rs_gad.numpy()[both] > met.rs_sup.numpy()[both]))}/{int(both.sum())}"
            )
            # three images of each class, each explained for its own class (x: the 3s, then the 7s)
            first = (k - 1) * args.per_class
            shown.extend((res, i) for i in range(first, first + 3))
        gallery(OUT / f"gad_gallery_{method}.png", x, shown,
                f"GAD with {method}: rows 1-3 true {PAIR[0]}, rows 4-6 true {PAIR[1]}, each for its class")
        log.info("%s done in %.0f s", method, time.perf_counter() - t0)

    head = "".join(f"{SHORT[m]:>10}" for m in methods)
    print("\n".join(lines))
    print(f"\nTable 1 (GAD paper): images with RC < 1 (GAD) and RC >= 1 (Orig.), {len(y)} images\n{'':8}{head}")
    for row, values in table1.items():
        print(f"{row:8}" + "".join(f"{v:>10}" for v in values))
    print(f"\nTable 2 (GAD paper): mean RS x 10^2 (logit change per occluded pixel)\n{'':8}{head}")
    for row, values in table2.items():
        print(f"{row:8}" + "".join(f"{v:>10}" for v in values))
    print(f"\nTable 2 with grey occlusion (pixels set to 0.5 instead of 0), mean RS x 10^2\n{'':8}{head}")
    for row, values in table2_grey.items():
        print(f"{row:8}" + "".join(f"{v:>10}" for v in values))
    print("\nPer method and class:\n" + "\n".join(extra))
    print(f"\ngalleries: {OUT}/gad_gallery_<method>.png; total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
