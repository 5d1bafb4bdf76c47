"""Train MnistNet, the VAE and the WGAN on real Kannada-MNIST and show what they generate.

Usage::

    python3 benchmarks/train_generators.py [--data-dir DIR] [--out benchmarks/out] [--quick]

Writes to ``--out`` (gitignored): ``generators_grid.png`` (rows: real test images, their VAE
reconstructions, VAE samples from the prior, WGAN samples), ``report.json`` (accuracies,
timings) and the checkpoints ``mnistnet.pt``, ``vae.pt``, ``wgan_generator.pt``.

Besides the classifier's test accuracy, the report measures whether the generated images are
recognisable *to the classifier*: its accuracy on VAE reconstructions of test images, and the
classes it assigns to prior samples (all ten should occur, with high confidence).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explainers.datasets.common import to_tensor  # noqa: E402
from explainers.datasets.kannada import load_kannada  # noqa: E402
from explainers.nets.checkpoints import fingerprint, save_checkpoint  # noqa: E402
from explainers.nets.classifiers import MnistNet, evaluate, predict, train_classifier  # noqa: E402
from explainers.nets.vae import VAE, train_vae  # noqa: E402
from explainers.nets.wgan import DCGANGenerator, WGANCritic, train_wgan  # noqa: E402

logger = logging.getLogger("train_generators")
DEFAULT_DATA = Path(os.environ.get("KANNADA_MNIST_DIR", "/work/shared/data/kannada_mnist"))


def subset(
    images: np.ndarray, labels: np.ndarray, n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images drawn at random: the official files are ordered by writer and class."""
    idx = np.sort(np.random.default_rng(seed).permutation(len(labels))[:n])
    return to_tensor(images[idx]), torch.from_numpy(labels[idx])


def grid_png(rows: list[tuple[str, torch.Tensor]], path: Path, scale: int = 3) -> None:
    """One labelled row of 28x28 images per entry, each image upscaled ``scale`` times."""
    label_w, pad, cell = 150, 2, 28 * scale + 2
    width = label_w + max(len(images) for _, images in rows) * cell + pad
    canvas = Image.new("L", (width, len(rows) * cell + pad), 40)
    draw = ImageDraw.Draw(canvas)
    for r, (title, images) in enumerate(rows):
        draw.text((6, r * cell + cell // 2 - 6), title, fill=255)
        pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).squeeze(1).numpy()
        for c, img in enumerate(pixels):
            tile = Image.fromarray(img).resize((28 * scale, 28 * scale), Image.Resampling.NEAREST)
            canvas.paste(tile, (label_w + c * cell + pad, r * cell + pad))
    canvas.save(path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument("--classifier-train", type=int, default=12000)
    parser.add_argument("--classifier-epochs", type=int, default=1)
    parser.add_argument("--vae-train", type=int, default=12000)
    parser.add_argument("--vae-epochs", type=int, default=6)
    parser.add_argument("--vae-lr", type=float, default=2e-3)
    parser.add_argument("--vae-width", type=int, default=32)
    parser.add_argument("--vae-batch", type=int, default=64)
    parser.add_argument("--vae-kl-warmup", type=int, default=500, help="steps of KL annealing")
    parser.add_argument("--wgan-iterations", type=int, default=1000)
    parser.add_argument("--wgan-width", type=int, default=16)
    parser.add_argument("--wgan-lr", type=float, default=5e-4, help="Adam lr of critic and G")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.classifier_train, args.vae_train, args.vae_epochs, args.wgan_iterations = (
            2000,
            2000,
            1,
            5,
        )
    if args.threads:
        torch.set_num_threads(args.threads)  # a script may; library code never does
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)

    train = load_kannada(args.data_dir, "train")
    test = load_kannada(args.data_dir, "test")
    x_test, y_test = to_tensor(test.images), torch.from_numpy(test.labels)
    report: dict = {
        "torch_threads": torch.get_num_threads(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }

    # --- classifier D ---------------------------------------------------------------------------
    x, y = subset(train.images, train.labels, args.classifier_train, args.seed)
    torch.manual_seed(args.seed)
    net = MnistNet(10)
    started = time.perf_counter()
    train_classifier(net, x, y, epochs=args.classifier_epochs, seed=args.seed)
    report["classifier_train_seconds"] = round(time.perf_counter() - started, 1)
    report["classifier_test_accuracy"] = evaluate(net, x_test, y_test)
    save_checkpoint(
        args.out / "mnistnet.pt",
        net,
        arch="MnistNet",
        arch_kwargs={"num_classes": 10},
        metadata={
            "data_fingerprint": fingerprint(x, y),
            "test_accuracy": report["classifier_test_accuracy"],
            "train_images": len(y),
        },
    )
    logger.info("MnistNet: test accuracy %.4f", report["classifier_test_accuracy"])

    # --- VAE ------------------------------------------------------------------------------------
    xv, _ = subset(train.images, train.labels, args.vae_train, args.seed + 1)
    torch.manual_seed(args.seed)
    vae = VAE(latent_dim=400, width=args.vae_width)
    started = time.perf_counter()
    losses: list[float] = []
    train_vae(
        vae,
        xv,
        epochs=args.vae_epochs,
        batch_size=args.vae_batch,
        lr=args.vae_lr,
        seed=args.seed,
        kl_warmup_steps=args.vae_kl_warmup,
        progress=lambda e: losses.append(e["loss"]),
    )
    report["vae_train_seconds"] = round(time.perf_counter() - started, 1)
    report["vae_loss_first_last"] = [
        round(float(np.mean(losses[:20])), 1),
        round(float(np.mean(losses[-20:])), 1),
    ]
    vae.eval()
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        recon_test = torch.cat([vae(x_test[i : i + 1000])[0] for i in range(0, len(x_test), 1000)])
        prior = vae.decode(torch.randn(400, vae.latent_dim, generator=gen))
    report["vae_test_recon_mse"] = float(((recon_test - x_test) ** 2).mean())
    report["classifier_accuracy_on_vae_reconstructions"] = evaluate(net, recon_test, y_test)
    pred, probs = predict(net, prior)
    report["vae_prior_samples_class_counts"] = torch.bincount(pred, minlength=10).tolist()
    report["vae_prior_samples_mean_confidence"] = float(probs.max(1).values.mean())
    save_checkpoint(
        args.out / "vae.pt",
        vae,
        arch="VAE",
        arch_kwargs={"latent_dim": 400, "width": args.vae_width},
        metadata={
            "data_fingerprint": fingerprint(xv),
            "test_recon_mse": report["vae_test_recon_mse"],
        },
    )

    # --- WGAN -----------------------------------------------------------------------------------
    torch.manual_seed(args.seed)
    G, critic = DCGANGenerator(z_dim=100, width=args.wgan_width), WGANCritic(width=args.wgan_width)
    started = time.perf_counter()
    w_est: list[float] = []
    train_wgan(
        G,
        critic,
        xv,
        iterations=args.wgan_iterations,
        lr=args.wgan_lr,
        seed=args.seed,
        progress=lambda e: w_est.append(e["wasserstein"]),
    )
    report["wgan_train_seconds"] = round(time.perf_counter() - started, 1)
    report["wgan_wasserstein_estimate_last"] = round(float(np.mean(w_est[-20:])), 4)
    G.eval()
    with torch.no_grad():
        gan_samples = G(torch.randn(400, G.z_dim, generator=gen))
    pred, probs = predict(net, gan_samples)
    report["wgan_samples_class_counts"] = torch.bincount(pred, minlength=10).tolist()
    report["wgan_samples_mean_confidence"] = float(probs.max(1).values.mean())
    save_checkpoint(
        args.out / "wgan_generator.pt",
        G,
        arch="DCGANGenerator",
        arch_kwargs={"z_dim": 100, "width": args.wgan_width},
        metadata={"data_fingerprint": fingerprint(xv), "iterations": args.wgan_iterations},
    )

    # --- picture --------------------------------------------------------------------------------
    order = torch.arange(20)  # test images 0..19: two of each class (labels are k % 10)
    grid_png(
        [
            ("real test 0-9, 0-9", x_test[order]),
            ("VAE reconstruction", recon_test[order]),
            ("VAE prior samples", prior[:20]),
            ("VAE prior samples", prior[20:40]),
            ("WGAN samples", gan_samples[:20]),
            ("WGAN samples", gan_samples[20:40]),
        ],
        args.out / "generators_grid.png",
    )
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
