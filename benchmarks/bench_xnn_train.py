"""Benchmark: CPU time to build the XNN stage of one 4-class study of 200 images (goal: training
the XNN <= 2 min), plus the heatmaps the study shows. Prints; never asserts a time.

Default (``--backbone mnistnet``): the Kannada-MNIST stand-in of benchmarks/xnn_ablation.py
(4 classes, 50 images each, MnistNet classifier cached in benchmarks/out/), Z = ``relu3``
(50 units), 7 x-features, the 800-100-7 embedding, 1000 full-batch epochs; then contrastive
ExcitationBP from each x-feature (7 maps per image), the 1-Heatmap (ExcitationBP from the
prediction) and DeepLIFT for all 200 images.

``--backbone vgg11_bn``: the platform's real CUB/CEL path (``BackboneClassifier``: VGG11-BN
features + 256-unit FC head, random weights, no download) on 200 random RGB ``--size`` images
in [0, 1] (default 64, ``STUDY_B_IMAGE_SIZE``), Z = ``head.3:input`` (256); every map is taken
down to the pixels, as the pipeline does.

``--backbone resnet18``: a torchvision ResNet-18 (random weights, no
download) on 200 random ImageNet-normalised ``--size`` images, Z = ``fc:input`` (512); ExcitationBP
refuses residual networks, so only DeepLIFT maps are timed there.

``--png PATH`` renders one image per class: the image, 1-Heatmap, DeepLIFT and the 7 x-feature
heatmaps with their normalised contributions (red positive, blue negative).

    python benchmarks/bench_xnn_train.py [--epochs 1000] [--threads 1] [--png /tmp/xnn_heatmaps.png]
    python benchmarks/bench_xnn_train.py --backbone resnet18 --size 224
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from xnn_ablation import DEFAULT_CLASSES, kannada_study, study_classifier  # noqa: E402

from explainers.deeplift import DeepLift  # noqa: E402
from explainers.excitation_bp import ExcitationBP  # noqa: E402
from explainers.nets.classifiers import BackboneClassifier, torchvision_classifier  # noqa: E402
from explainers.xnn import XNNConfig, extract_z, fit_xnn  # noqa: E402


def timed(label: str, fn, log):
    started = time.perf_counter()
    out = fn()
    log(f"  {label:<44} {time.perf_counter() - started:8.2f} s")
    return out


def render(path: Path, images, labels, one, deeplift, xmaps, normalised, predicted) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, n = len(images), xmaps.shape[1]
    fig, axes = plt.subplots(rows, n + 3, figsize=(1.45 * (n + 3), 1.6 * rows))
    for r in range(rows):
        grey = images[r].mean(0)
        panels = [("image", None), ("1-Heatmap (EBP)", one[r]), ("DeepLIFT", deeplift[r])]
        panels += [(f"x{i + 1}: {float(normalised[r, i]):+.2f}", xmaps[r, i]) for i in range(n)]
        for c, (title, heat) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(grey, cmap="gray")
            if heat is not None:
                ax.imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            colour = "black" if c < 3 else ("red" if float(normalised[r, c - 3]) > 0 else "blue")
            if c == 0:
                title = f"class {int(labels[r])}, pred {int(predicted[r])}"
            ax.set_title(title, fontsize=7, color=colour)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", choices=("mnistnet", "vgg11_bn", "resnet18"), default="mnistnet")
    parser.add_argument("--features", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--size", type=int, default=None, help="image size (vgg11_bn: 64, resnet18: 224)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    log = print

    if args.backbone == "mnistnet":
        x_tr, y_tr, x, y, _, _ = kannada_study(DEFAULT_CLASSES)
        net = study_classifier(DEFAULT_CLASSES, x_tr, y_tr, x, y)
        layer, map_layer = "relu3", "relu1"
    elif args.backbone == "vgg11_bn":
        torch.manual_seed(0)
        net = BackboneClassifier("vgg11_bn", 4).eval()
        size = args.size or 64
        x = torch.rand(200, 3, size, size, generator=torch.Generator().manual_seed(0))
        y = torch.arange(200) % 4
        layer, map_layer = "head.3:input", None
    else:
        args.size = args.size or 224
        net = torchvision_classifier("resnet18", 4, use_cache=False).eval()
        x = torch.randn(200, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
        y = torch.arange(200) % 4
        layer, map_layer = "fc:input", None
    log(f"{args.backbone}: {len(x)} images {tuple(x.shape[1:])}, Z = {layer}, n = {args.features}, "
        f"{args.epochs} full-batch epochs, {torch.get_num_threads()} thread(s)")

    total = time.perf_counter()
    z, logits = timed(f"extract Z and logits ({len(x)} images)", lambda: extract_z(net, layer, x), log)
    xnn = timed(f"train XNN (SRAE, {z.shape[1]}-800-100-{args.features})", lambda: fit_xnn(
        z, logits, config=XNNConfig(n_features=args.features, epochs=args.epochs, mode="srae", seed=0),
        layer=layer), log)
    train_seconds = time.perf_counter() - total
    explanation = timed("contributions (explain)", lambda: xnn.explain(net, x), log)
    deeplift = timed("DeepLIFT 1-Heatmaps", lambda: DeepLift(net)(x), log)
    if map_layer is not None or args.backbone == "vgg11_bn":
        ebp = ExcitationBP(net, map_layer)
        one = timed("ExcitationBP 1-Heatmaps (prediction)", lambda: ebp(x), log)
        xmaps = timed(f"ExcitationBP x-feature heatmaps ({args.features} per image)", lambda: ebp.xnn_maps(xnn, x), log)
    log(f"  {'total':<44} {time.perf_counter() - total:8.2f} s")
    with torch.no_grad():
        approx = xnn(z)
    log(f"XNN training (extract + fit): {train_seconds:.1f} s (goal <= 120 s); F_reg {float((approx - logits).abs().mean()):.4f}; "
        f"predictions kept {float((approx.argmax(1) == logits.argmax(1)).double().mean()):.1%}")

    if args.png is not None and args.backbone != "resnet18":
        rows = [int((y == c).nonzero()[0]) for c in range(4)]
        render(args.png, x[rows], y[rows], one[rows], deeplift[rows], xmaps[rows], explanation.normalised[rows],
               explanation.predicted[rows])
        log(f"wrote {args.png}")


if __name__ == "__main__":
    main()
