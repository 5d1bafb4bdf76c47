"""Reproduction rows for Study B's classifier: APEM (thesis Table 4.2, 5.1) and GAD (paper Tables
1-2) on the torchvision backbone Study B trains on real photographs.

The network is :class:`explainers.nets.classifiers.BackboneClassifier` (``--backbone``, default
``vgg11_bn``: VGG features + AdaptiveAvgPool + FC 256 + FC 4), as the platform builds it for CUB
and CEL. Its features come from ImageNet weights when ``IMAGENET_WEIGHTS`` names a torchvision
state dict (or torchvision's cache has them), else from random initialisation; nothing is ever
downloaded.

Data:

* ``CUB_DIR`` set: the four gulls of the XNN paper, cropped to their boxes, at ``--size`` px, the
  official train/test split (:func:`explainers.datasets.cub.load_cub`).
* otherwise a **stand-in**: four Kannada-MNIST classes (3, 6, 7, 9; the digits of the other
  Study B benchmarks), upscaled to ``--size`` px and repeated to three channels. These are
  printed as stand-in rows: the numbers say how the methods behave on this architecture, not on
  birds.

The backbone is trained from its start point on ``--train-per-class`` images per class (Adam,
lr 5e-4, batch 32, ``--epochs``; cached in benchmarks/out/). Then, on ``--per-class`` correctly
classified test images of each class:

* APEM (unit ε steps up to 1000, no clipping, bisection; ``--shuffles`` shuffled maps) for the
  thesis's gradient, SmoothGrad (``--smooth-samples``, σ = 0.2) and LRP (ε = 1, Captum), and
  the platform's ExcitationBP (c-MWP at the input) and DeepLIFT maps as Study B shows them, and
  GAD on integrated gradients for the first two classes;
* GAD Tables 1-2 for the five gradient methods on the first two classes (support models at the
  paper's α = 2, 4, 6, 8, fine-tuned on the training images of those classes).

    KANNADA_MNIST_DIR=/work/shared/data/kannada_mnist python benchmarks/bench_apem_gad_backbone.py \
        [--size 64] [--per-class 8] [--epochs 4] [--train-per-class 150] [--threads 2]
    CUB_DIR=/data/CUB_200_2011 IMAGENET_WEIGHTS=vgg11_bn.pth python benchmarks/bench_apem_gad_backbone.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gad import OUT, SHORT, load_splits, nanmean100, parse_and_start  # noqa: E402

from explainers.apem import APEM, apem_norm, relevance_map  # noqa: E402
from explainers.datasets.common import to_tensor  # noqa: E402
from explainers.deeplift import DeepLift  # noqa: E402
from explainers.excitation_bp import ExcitationBP  # noqa: E402
from explainers.gad import GAD, METHODS, gad_metrics, train_support_models  # noqa: E402
from explainers.nets.classifiers import backbone_classifier, evaluate, train_classifier  # noqa: E402

STANDIN_CLASSES = (3, 6, 7, 9)


def standin(size: int, train_per_class: int, seed: int):
    """Four Kannada classes at ``size`` px RGB: (x_train, y_train, x_test, y_test, description)."""
    train, test = load_splits()
    rng = np.random.default_rng(seed)

    def take(split, limit):
        idx = np.concatenate([rng.permutation(np.flatnonzero(split.labels == c))[:limit] for c in STANDIN_CLASSES])
        x = F.interpolate(to_tensor(split.images[idx]), size=(size, size), mode="bilinear", align_corners=False)
        remap = {c: k for k, c in enumerate(STANDIN_CLASSES)}
        y = torch.tensor([remap[int(v)] for v in split.labels[idx]])
        return x.clamp(0, 1).repeat(1, 3, 1, 1), y

    x_train, y_train = take(train, train_per_class)
    x_test, y_test = take(test, 200)
    return x_train, y_train, x_test, y_test, f"STAND-IN: Kannada-MNIST classes {STANDIN_CLASSES} at {size} px RGB"


def cub(root: str, size: int, train_per_class: int):
    from explainers.datasets.cub import images_tensor, load_cub

    sub = load_cub(root)
    x = images_tensor(sub, size=size, crop_to_box=True, normalise=False)
    y = torch.from_numpy(sub.labels).long()
    tr = torch.from_numpy(sub.is_train)
    keep = torch.cat([torch.nonzero(tr & (y == c)).flatten()[:train_per_class] for c in range(len(sub.class_names))])
    return x[keep], y[keep], x[~tr], y[~tr], f"CUB-200-2011 {', '.join(sub.class_names)} at {size} px (cropped to boxes)"


def load_or_train(args, x_train, y_train, tag: str):
    weights = os.environ.get("IMAGENET_WEIGHTS") or None
    net, source = backbone_classifier(args.backbone, 4, weights_path=weights)
    path = OUT / f"backbone_{tag}_{args.backbone}_{args.size}_{len(y_train)}_{args.epochs}.pt"
    if path.is_file():
        net.load_state_dict(torch.load(path, weights_only=True))
    else:
        t0 = time.perf_counter()
        train_classifier(net, x_train, y_train, epochs=args.epochs, batch_size=32, lr=5e-4, seed=args.seed)
        print(f"trained {args.backbone} in {time.perf_counter() - t0:.0f} s")
        OUT.mkdir(exist_ok=True)
        torch.save(net.state_dict(), path)
    return net.eval(), source


def correct_images(net, x, y, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        pred = torch.cat([net(x[s : s + 64]).argmax(1) for s in range(0, len(y), 64)])
    idx = torch.cat([torch.nonzero((y == c) & (pred == c)).flatten()[:per_class] for c in range(4)])
    return x[idx], y[idx]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="vgg11_bn")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--per-class", type=int, default=8, help="correct test images per class for APEM")
    parser.add_argument("--train-per-class", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--shuffles", type=int, default=3)
    parser.add_argument("--smooth-samples", type=int, default=25)
    parser.add_argument("--ig-steps", type=int, default=16)
    args, started = parse_and_start(parser)

    root = os.environ.get("CUB_DIR")
    x_train, y_train, x_test, y_test, what = cub(root, args.size, args.train_per_class) if root else standin(
        args.size, args.train_per_class, args.seed
    )
    net, source = load_or_train(args, x_train, y_train, "cub" if root else "standin")
    acc = evaluate(net, x_test, y_test)
    x, y = correct_images(net, x_test, y_test, args.per_class)
    print(f"{what}\n{args.backbone} (features: {source}), test accuracy {acc:.3f}; {len(y)} correct test images")

    pair = y < 2  # GAD contrasts two classes: the first two of the four
    supports = train_support_models(net, x_train, y_train, 0, 1, seed=args.seed, batch_size=32)
    print("support models (alpha: MSE, gap): " + ", ".join(f"{s.alpha:g}: {s.final_mse:.3f}, {s.achieved_gap:.2f}" for s in supports))

    maps_of: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        "gradient": lambda a, p: relevance_map("gradient", net, a, p),
        "smoothgrad": lambda a, p: relevance_map("smoothgrad", net, a, p, samples=args.smooth_samples, sigma=0.2),
        "lrp": lambda a, p: relevance_map("lrp", net, a, p, epsilon=1.0),
        "excitation-bp": lambda a, p: ExcitationBP(net, None)(a, p),
        "deeplift": lambda a, p: DeepLift(net)(a, p),
        "gad (IG)": GAD(net, supports, method="integrated_gradients", ig_steps=args.ig_steps),
    }
    scorer = APEM(net, search="bisect")
    print(f"\nAPEM (Table 4.2 / 5.1 rows), {args.shuffles} shuffles; GAD on classes 0/1 only")
    print(f"{'method':16}{'images':>7}{'APEM mean':>10}{'median':>8}{'ε⁻':>8}{'ε⁺':>8}{'norm':>8}{'shuffled':>9}{'s':>6}")
    for name, fn in maps_of.items():
        t0 = time.perf_counter()
        xs, ys = (x[pair], y[pair]) if name.startswith("gad") else (x, y)
        try:
            maps = fn(xs, ys)
        except (TypeError, ValueError) as exc:  # a layer the method has no rule for
            print(f"{name:16}  not applicable to {args.backbone}: {exc}")
            continue
        if maps.dim() == 4:
            maps = maps.sum(1)
        res = scorer(xs, maps)
        shuf = scorer.shuffled(xs, maps, shuffles=args.shuffles, seed=args.seed)
        norm = apem_norm(res, shuf)
        print(f"{name:16}{len(ys):7d}{res.mean():10.2f}{res.median():8.1f}{float(res.eps_minus.mean()):8.1f}"
              f"{float(res.eps_plus.mean()):8.1f}{float(norm.double().mean()):8.3f}{shuf.mean():9.2f}{time.perf_counter() - t0:6.0f}")

    xp, yp = x[pair], y[pair]
    head = "".join(f"{SHORT[m]:>10}" for m in METHODS)
    t1: dict[str, list[str]] = {k: [] for k in ("Orig.1", "GAD 1", "Orig.2", "GAD 2")}
    t2: dict[str, list[str]] = {k: [] for k in ("Sup.1", "GAD 1", "Sup.2", "GAD 2")}
    for method in METHODS:
        gad = GAD(net, supports, method=method, ig_steps=args.ig_steps)
        for k, cls in enumerate((0, 1), start=1):
            res = gad.explain(xp, torch.full((len(yp),), cls))
            met = gad_metrics(net, xp, res)
            rc = met.rc.numpy()
            t1[f"Orig.{k}"].append(str(int(np.sum(~(rc < 1)))))
            t1[f"GAD {k}"].append(str(int(np.sum(rc < 1))))
            t2[f"Sup.{k}"].append(nanmean100(met.rs_sup))
            t2[f"GAD {k}"].append(nanmean100(met.rs_gad))
    print(f"\nGAD Table 1 on {args.backbone}: images with RC < 1 (GAD) and RC >= 1 (Orig.), {len(yp)} images, classes 0/1\n{'':8}{head}")
    for row, values in t1.items():
        print(f"{row:8}" + "".join(f"{v:>10}" for v in values))
    print(f"\nGAD Table 2 on {args.backbone}: mean RS x 10^2\n{'':8}{head}")
    for row, values in t2.items():
        print(f"{row:8}" + "".join(f"{v:>10}" for v in values))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
