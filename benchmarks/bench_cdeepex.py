"""Benchmark (b): CDeepEx throughput, batched vs a per-image loop, and against the bare limit.

For batch sizes 1, 16 and 64 (real Kannada test images, D's prediction vs the second most
likely class, default ``CDeepExConfig``):

* batched: one ``explain`` call on the whole batch;
* loop: the same code called once per image (what a naive worker would do);
* bare limit: the time of the forward+backward passes of ``D∘G`` that the run needed
  (``sum(result.evaluations)`` image-passes), done at full batch size with nothing else, plus
  the one encoder pass and the one frames pass. ``share = bare / batched``.

Goals (printed, never asserted): batched >= 30x the loop at 64; share >= 50%.

    python benchmarks/bench_cdeepex.py [--threads 1] [--generator mlp|vae] [--sizes 64] [--no-loop]

``--no-loop`` skips the per-image loop (its columns show ``nan``): the share of the limit alone.
``--repeats k`` alternates k batched runs with k bare-limit runs and prints the medians (the share
is the median of the k ratios): on a shared machine the load changes between the two timings.
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

from explainers.cdeepex import CDeepExConfig, explain  # noqa: E402
from explainers.datasets.common import to_tensor  # noqa: E402
from explainers.hooks import model_guard  # noqa: E402


def bare_limit(D, G, x: torch.Tensor, image_passes: int, config: CDeepExConfig) -> tuple[float, float]:
    """Seconds for ``image_passes`` forward+backward passes of D∘G at batch size len(x), plus
    one encoder pass and one pass of D and G over the frames; and the seconds of one
    forward+backward per image at this batch size."""
    n = x.shape[0]
    with model_guard(D, G):
        with torch.no_grad():
            z = G.encode(x)[0]
        z = z.clone().requires_grad_(True)

        def step() -> None:
            out = torch.log_softmax(D(G.decode(z)), 1)
            torch.autograd.grad(out[:, 0].sum(), z)

        step()
        reps = max(3, min(20, image_passes // n))
        start = time.perf_counter()
        for _ in range(reps):
            step()
        per_pass = (time.perf_counter() - start) / reps
        start = time.perf_counter()
        with torch.no_grad():
            G.encode(x)
            zf = z.detach().repeat_interleave(config.num_frames - 1, 0)
            D(G.decode(zf))
        extra = time.perf_counter() - start
    return per_pass * image_passes / n + extra, per_pass / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--generator", choices=("mlp", "vae", "site-vae"), default="mlp")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--no-loop", action="store_true", help="skip the per-image loop")
    parser.add_argument("--repeats", type=int, default=1, help="batched and bare runs, alternating; medians shown")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    D, G, info = load_or_train_models(args.generator)
    _, test = load_splits()
    idx = np.random.default_rng(2).permutation(len(test.labels))[: max(args.sizes)]
    x_all = to_tensor(test.images[idx])
    config = CDeepExConfig()

    def run(x: torch.Tensor):
        return explain(D, G.decode, x, true_labels=None, encoder=G, config=config)

    run(x_all[:2])  # warm up
    print(f"D: {info['D']}")
    print(f"G: {info['G']}")
    print(f"CDeepEx defaults {config}")
    print(f"{args.threads} thread(s); expl/min = explanations per minute")
    print()
    print("| batch | batched s | expl/min | loop s | expl/min (loop) | speed-up | converged | evals/img | bare limit s | share of limit |")
    print("|------:|----------:|---------:|-------:|----------------:|---------:|----------:|----------:|-------------:|---------------:|")
    per_image: dict[int, float] = {}
    for n in args.sizes:
        x = x_all[:n]
        batch_times, bare_times, shares = [], [], []
        for _ in range(args.repeats):  # batched and bare alternate: a busy machine slows both alike
            start = time.perf_counter()
            r = run(x)
            batch_times.append(time.perf_counter() - start)
            bare, per_image[n] = bare_limit(D, G, x, int(r.evaluations.sum()), config)
            bare_times.append(bare)
            shares.append(bare / batch_times[-1])
        t_batch, t_bare, share = (float(statistics.median(v)) for v in (batch_times, bare_times, shares))
        start = time.perf_counter()
        for i in range(n if not args.no_loop else 0):
            run(x[i : i + 1])
        t_loop = time.perf_counter() - start if not args.no_loop else float("nan")
        print(
            f"| {n:5d} | {t_batch:9.2f} | {60 * n / t_batch:8.0f} | {t_loop:6.2f} | {60 * n / t_loop:15.0f} | "
            f"{t_loop / t_batch:7.1f}x | {float(r.converged.double().mean()):9.0%} | "
            f"{float(r.evaluations.double().mean()):9.1f} | {t_bare:12.2f} | {share:14.0%} |"
        )
    lo, hi = min(per_image), max(per_image)
    print()
    print(
        f"one forward+backward of D∘G costs {1e3 * per_image[lo]:.2f} ms per image at batch {lo} and "
        f"{1e3 * per_image[hi]:.2f} ms at batch {hi}: batching alone can gain at most "
        f"{per_image[lo] / per_image[hi]:.1f}x over the loop here (the network is compute-bound)."
    )


if __name__ == "__main__":
    main()
