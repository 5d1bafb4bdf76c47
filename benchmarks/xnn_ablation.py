"""Ablation of the XNN paper's Table 1 on a Kannada-MNIST stand-in: SRAE vs NN vs SAE.

The XNN study's data (CUB gulls, CEL cells) is not available here, so four classes of the real
Kannada-MNIST play the four categories (``y[k] == k % 10`` in the files):

* classifier: the dissertation's MnistNet with 4 outputs, trained on ``--train-per-class``
  images per class (cached in benchmarks/out/);
* study set: 50 images per class (200, the human-study size), disjoint from the classifier's
  training images; the XNNs are trained on it ("train" columns);
* held-out set: another 50 per class ("test" columns).

Each XNN has ``n = 5`` x-features (the paper's metric setting), the 800-100-n embedding and
1000 full-batch Adam epochs. SRAE uses the pull-away term (``eta``); NN and SAE, as in the
paper, have none. Heatmaps: contrastive ExcitationBP from each x-feature, read at MnistNet's
``relu1`` and upsampled to 28x28; O1/O2 are computed on the study set. Locality needs part
annotations (CUB), which digits do not have, so it is not reported. Prints a table; asserts
nothing.

    python benchmarks/xnn_ablation.py [--classes 3 6 7 9] [--epochs 1000] [--seeds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explainers.datasets.common import to_tensor  # noqa: E402
from explainers.datasets.kannada import load_kannada  # noqa: E402
from explainers.excitation_bp import ExcitationBP  # noqa: E402
from explainers.nets.checkpoints import fingerprint, load_checkpoint, save_checkpoint  # noqa: E402
from explainers.nets.classifiers import MnistNet, evaluate, train_classifier  # noqa: E402
from explainers.xnn import XNNConfig, extract_z, fit_xnn  # noqa: E402
from explainers.xnn_metrics import f_cls, f_reg, orthogonality  # noqa: E402

KANNADA = ROOT.parent / "shared" / "data" / "kannada_mnist"
OUT = ROOT / "benchmarks" / "out"
#: Two pairs of look-alike Kannada digits: 3/7 (both like a handwritten "2") and 6/9.
DEFAULT_CLASSES = (3, 6, 7, 9)


def kannada_study(classes=DEFAULT_CLASSES, *, train_per_class: int = 500, study_per_class: int = 50, seed: int = 0):
    """``(x_train, y_train, x_study, y_study, x_heldout, y_heldout)``: disjoint random draws per
    class from the real training split (labels 0..3 in the order of ``classes``)."""
    split = load_kannada(KANNADA, "train")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    sizes = (train_per_class, study_per_class, study_per_class)
    for c in classes:
        pool = rng.permutation(np.flatnonzero(split.labels == c))
        start = 0
        for k, size in enumerate(sizes):
            parts[k].append(pool[start : start + size])
            start += size
    out = []
    for chunks in parts:
        idx = np.sort(np.concatenate(chunks))
        out.append(to_tensor(split.images[idx]))
        out.append(torch.from_numpy(np.searchsorted(np.asarray(classes), split.labels[idx]).astype(np.int64)))
    return tuple(out)


def study_classifier(classes, x_train, y_train, x_study, y_study, *, epochs: int = 4, log=print):
    """MnistNet(4) trained on ``x_train``; cached in benchmarks/out/ by data fingerprint."""
    path = OUT / f"xnn_mnistnet_{'_'.join(map(str, classes))}.pt"
    fp = fingerprint(x_train, y_train)
    if path.is_file():
        net, meta = load_checkpoint(path)
        if meta.get("data_fingerprint") == fp and meta.get("epochs") == epochs:
            log(f"classifier: cached {path.relative_to(ROOT)} (study-set accuracy {meta['study_accuracy']:.3f})")
            return net
    started = time.perf_counter()
    torch.manual_seed(0)
    net = train_classifier(MnistNet(len(classes)), x_train, y_train, epochs=epochs, seed=0)
    acc = evaluate(net, x_study, y_study)
    save_checkpoint(path, net, arch="MnistNet", arch_kwargs={"num_classes": len(classes)},
                    metadata={"data_fingerprint": fp, "epochs": epochs, "study_accuracy": acc, "classes": list(classes)})
    log(f"classifier: trained on {len(x_train)} images in {time.perf_counter() - started:.1f} s, "
        f"study-set accuracy {acc:.3f}")
    return net.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, nargs=4, default=DEFAULT_CLASSES)
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--features", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--q", type=float, default=1.0)
    parser.add_argument("--eta", type=float, default=1.0)
    parser.add_argument("--layer", default="relu1", help="MnistNet layer where the heatmaps are read")
    parser.add_argument("--seeds", type=int, default=3, help="XNN seeds 0..seeds-1; mean ± sd reported")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    x_tr, y_tr, x_st, y_st, x_ho, y_ho = kannada_study(tuple(args.classes), train_per_class=args.train_per_class)
    net = study_classifier(args.classes, x_tr, y_tr, x_st, y_st)
    z_st, logits_st = extract_z(net, "relu3", x_st)
    z_ho, logits_ho = extract_z(net, "relu3", x_ho)
    print(f"Kannada classes {tuple(args.classes)}; study set {len(x_st)} images, held-out {len(x_ho)}; "
          f"Z = MnistNet relu3 (fc1 after ReLU, {z_st.shape[1]} units); n = {args.features} x-features; "
          f"{args.epochs} epochs; beta = {args.beta}, q = {args.q}; heatmaps: c-MWP at {args.layer}")
    print(f"logits: mean |y| = {logits_st.abs().mean():.3f}, classifier accuracy on the study set "
          f"{float((logits_st.argmax(1) == y_st).double().mean()):.3f}")

    runs = [("SRAE", "srae", args.eta), ("NN", "nn", 0.0), ("SAE", "sae", 0.0)]
    columns = ("F_reg train", "F_reg test", "F_cls train", "F_cls test", "O1", "O2")
    ebp = ExcitationBP(net, args.layer)
    results: dict[str, dict[str, list[float]]] = {}
    for name, mode, eta in runs:
        stats = results.setdefault(name, {c: [] for c in (*columns, "dead", "seconds")})
        for seed in range(args.seeds):
            started = time.perf_counter()
            config = XNNConfig(n_features=args.features, epochs=args.epochs, beta=args.beta, q=args.q,
                               eta=eta, mode=mode, seed=seed)
            xnn = fit_xnn(z_st, logits_st, config=config, layer="relu3")
            stats["seconds"].append(time.perf_counter() - started)
            with torch.no_grad():
                approx_st, approx_ho = xnn(z_st), xnn(z_ho)
            orth = orthogonality(ebp.xnn_maps(xnn, x_st))
            for column, value in zip(columns, (
                f_reg(logits_st, approx_st), f_reg(logits_ho, approx_ho),
                100 * f_cls(logits_st, approx_st), 100 * f_cls(logits_ho, approx_ho), orth.o1, orth.o2,
            ), strict=True):
                stats[column].append(value)
            stats["dead"].append(len(orth.dead))

    def cell(values: list[float], digits: int) -> str:
        a = np.asarray(values, dtype=np.float64)
        return f"{a.mean():.{digits}f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.{digits}f}"

    width = 17
    header = f"{'method':<6} {'eta':>4} " + " ".join(f"{c:>{width}}" for c in columns) + f" {'dead':>4} {'s/run':>6}"
    print(f"\nmean ± sd over {args.seeds} XNN seeds (F_cls in %)")
    print(header)
    print("-" * len(header))
    for name, _, eta in runs:
        stats = results[name]
        cells = [cell(stats[c], 2 if c.startswith("F_cls") else 4) for c in columns]
        print(f"{name:<6} {eta:>4g} " + " ".join(f"{c:>{width}}" for c in cells)
              + f" {int(sum(stats['dead'])):>4} {np.mean(stats['seconds']):>6.1f}")
    print("\nF_reg: mean |logit - v.E| over images and classes (lower is better); F_cls: predictions "
          "unchanged; O1 = ||P||_F - sqrt(n), O2 = -log det P of the x-feature heatmap correlations "
          "(0 = orthogonal); dead: x-features whose heatmaps never vary (summed over seeds).")


if __name__ == "__main__":
    main()
