"""Benchmark (c): Grad-CAM throughput against pytorch-grad-cam, and agreement of the maps.

Same model (the dissertation's MnistNet trained on Kannada-MNIST, from benchmarks/out/ or
trained here), same layer (``features_layer``), same images and targets. Prints a table; never
asserts timings. Goal: >= 1.0x the images/s of pytorch-grad-cam, Pearson r >= 0.999.

    python benchmarks/bench_gradcam.py [--images 512] [--batch 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablation_cdeepex_xgems import load_or_train_models, load_splits  # noqa: E402

from explainers.datasets.common import to_tensor  # noqa: E402
from explainers.gradcam import GradCAM, contrastive_gradcam  # noqa: E402
from explainers.targets import ClassTarget  # noqa: E402


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from pytorch_grad_cam import GradCAM as ReferenceGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    D, _, meta = load_or_train_models()
    _, test = load_splits()
    x = to_tensor(test.images[: args.images])
    with torch.no_grad():
        labels = D(x).argmax(1)
    batches = [(x[i : i + args.batch], labels[i : i + args.batch]) for i in range(0, len(x), args.batch)]

    ours = GradCAM(D, D.features_layer)

    def run_ours() -> list[torch.Tensor]:
        return [ours(xb, ClassTarget(yb)) for xb, yb in batches]

    reference = ReferenceGradCAM(model=D, target_layers=[D.features_layer])

    def run_reference() -> list[np.ndarray]:
        return [
            reference(input_tensor=xb, targets=[ClassifierOutputTarget(int(c)) for c in yb])
            for xb, yb in batches
        ]

    run_ours(), run_reference()  # warm up
    t_ours = best_of(run_ours, args.repeats)
    t_ref = best_of(run_reference, args.repeats)
    maps_ours = torch.cat(run_ours()).numpy()
    maps_ref = np.concatenate(run_reference())
    corr = []
    for a, b in zip(maps_ours, maps_ref, strict=True):
        if a.std() > 0 and b.std() > 0:
            corr.append(float(np.corrcoef(a.ravel(), b.ravel())[0, 1]))
    blank = sum(1 for a, b in zip(maps_ours, maps_ref, strict=True) if a.std() == 0 or b.std() == 0)
    max_abs = float(np.abs(maps_ours - maps_ref).max())

    # contrastive Grad-CAM (400 probe weights each): throughput for the record
    n_contrast = min(32, len(x))
    with torch.no_grad():
        top2 = D(x[:n_contrast]).topk(2, 1).indices
    start = time.perf_counter()
    contrastive_gradcam(D, D.features_layer, x[:n_contrast], top2[:, 0], top2[:, 1])
    t_contrast = time.perf_counter() - start

    n = len(x)
    print(f"Grad-CAM on MnistNet ({meta['D']}), layer conv2, {n} Kannada test images, batch {args.batch}, "
          f"{args.threads} thread(s), best of {args.repeats}")
    print()
    print("| implementation            | seconds | images/s | speed-up |")
    print("|---------------------------|--------:|---------:|---------:|")
    print(f"| explainers.gradcam        | {t_ours:7.3f} | {n / t_ours:8.1f} | {t_ref / t_ours:7.2f}x |")
    print(f"| pytorch-grad-cam {_version():8s} | {t_ref:7.3f} | {n / t_ref:8.1f} |    1.00x |")
    print()
    print("| agreement                               | value    |")
    print("|-----------------------------------------|----------|")
    print(f"| Pearson r per image, mean               | {statistics.fmean(corr):.6f} |")
    print(f"| Pearson r per image, min                | {min(corr):.6f} |")
    print(f"| max |difference| of maps in [0, 1]      | {max_abs:.2e} |")
    print(f"| maps blank in either (excluded from r)  | {blank:8d} |")
    print()
    print(f"contrastive Grad-CAM (§3.2.1, 400 weights): {n_contrast} images in {t_contrast:.2f} s "
          f"= {n_contrast / t_contrast:.1f} images/s")


def _version() -> str:
    from importlib.metadata import version

    try:
        return version("grad-cam")
    except Exception:  # pragma: no cover
        return "?"


if __name__ == "__main__":
    main()
