"""Benchmark (e): the bias check of dissertation §3.2.2 ("why not 8?"), with a gallery.

The classifier is trained on Kannada-MNIST where every "8" carries a 6x6 grey square in the
top-left corner (rows 0-5, columns 0-5: 36 of 784 pixels, 4.6% of the image); the generator is
trained on the same (biased) training data, all ten classes, as the dissertation's generators
model the whole data set. Then:

1. the bias: recall of clean test 8s (no square; paper: 5%) and the share of test images of the
   other nine classes that the classifier calls "8" once the square is added (paper: 77%);
2. "why not 8?" for clean test 8s the biased classifier does not call 8 (true = its
   prediction, probe = 8), explained by CDeepEx, xGEMs (CDeepEx without the inequality
   constraints) and contrastive Grad-CAM (§3.2.1), each with the share of its explanation's
   mass (sum of |map|, and of the part that pushes towards 8) inside the square, against the
   square's 4.6% of the image. An explanation that finds the bias puts far more than 4.6% there.

The explanations: CDeepEx / xGEMs ``difference = final - input`` (positive = added on the way
to 8, so the "towards 8" mass is the positive part); contrastive Grad-CAM's signed map
(positive = why the prediction, negative = why 8: the "towards 8" mass is the negative part).

Small on purpose (a 2-core machine): ``--train`` training images (default 12000 of 60000,
shuffled with the seed), MnistNet(10) for 2 epochs, the benchmarks' MLP VAE (784-400-32) for
8 epochs (batch 256), ``--images`` explained 8s (default 24). Models are cached in benchmarks/out/
(bias8_D.pt, bias8_G.pt; delete them to retrain). Writes benchmarks/out/bias8_gallery.png.

    nice -n 10 python benchmarks/bias_eight.py [--train 12000] [--images 24] [--rows 8]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablation_cdeepex_xgems import OUT, MlpVAE, cached_mnistnet, generator_kwargs, load_splits  # noqa: E402

from explainers import render  # noqa: E402
from explainers.cdeepex import CDeepExConfig, explain  # noqa: E402
from explainers.datasets.common import to_tensor  # noqa: E402
from explainers.datasets.cue import PlantedCue  # noqa: E402
from explainers.gradcam import contrastive_gradcam  # noqa: E402
from explainers.nets.classifiers import MnistNet  # noqa: E402
from explainers.nets.vae import train_vae  # noqa: E402

log = logging.getLogger("benchmarks")

EIGHT = 8
SQUARE = 6  # side, pixels, from the top-left corner
GREY = 0.5
SQUARE_SHARE = SQUARE * SQUARE / (28 * 28)  # 0.0459
#: the planting, shared with the platform (train_models --plant-cue square:6@0,0 --cue-class 8)
CUE = PlantedCue(cue_class=EIGHT, shape="square", size=SQUARE, x=0, y=0, value=GREY)
G_EPOCHS = 8
SCALE = 4
TILE = 28 * SCALE
GAP = 6
LABEL_W = 170
HEADER_H = 34


def add_square(x: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` (N, 1, 28, 28) with the grey square in the top-left corner."""
    return CUE.add(x)


def square_mask() -> torch.Tensor:
    return CUE.mask(28, 28)


def biased_training_data(n_train: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    train, _ = load_splits()
    idx = np.random.default_rng(seed).permutation(len(train.labels))[:n_train]
    x, y = to_tensor(train.images[idx]), torch.from_numpy(train.labels[idx]).long()
    return CUE.plant(x, y), y


def load_or_train(n_train: int, seed: int) -> tuple[MnistNet, MlpVAE, dict]:
    OUT.mkdir(exist_ok=True)
    path_d, path_g = OUT / f"bias8_D_{n_train}.pt", OUT / f"bias8_G_{n_train}.pt"
    G = MlpVAE()
    info: dict = {}
    x, y = biased_training_data(n_train, seed)
    D, seconds = cached_mnistnet(path_d, x, y, seed=seed)
    if seconds is not None:
        info["D_seconds"] = seconds
    if path_g.is_file():
        G.load_state_dict(torch.load(path_g, weights_only=True))
    else:
        start = time.perf_counter()
        torch.manual_seed(seed)
        train_vae(G, x, epochs=G_EPOCHS, lr=2e-3, seed=seed, batch_size=256)
        info["G_seconds"] = time.perf_counter() - start
        torch.save(G.state_dict(), path_g)
        log.info("trained G in %.0f s", info["G_seconds"])
    with torch.no_grad():
        mu, _ = G.encode(x[:2000])
        info["G_rms"] = float((G.decode(mu) - x[:2000]).pow(2).flatten(1).mean(1).sqrt().mean())
        sq = y[:2000] == EIGHT
        # does G reproduce the square on the training 8s? (mean grey level it decodes there)
        info["G_square"] = float(G.decode(mu[sq])[:, 0, :SQUARE, :SQUARE].mean())
    return D.eval(), G.eval(), info


@torch.no_grad()
def predict(D: MnistNet, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([D(c).argmax(1) for c in x.split(1000)])


def mass_in_square(maps: torch.Tensor) -> torch.Tensor:
    """Per map (N, 28, 28), the share of sum |map| inside the square (nan where the map is 0)."""
    mags = maps.abs().flatten(1)
    inside = maps.abs()[:, square_mask()].sum(1)
    total = mags.sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.full_like(total, float("nan")))


def summary(name: str, maps: torch.Tensor, towards_8: torch.Tensor, extra: str = "") -> dict:
    """``maps``: signed (N, 28, 28); ``towards_8``: its part that moves the image to 8 (>= 0)."""
    share_abs = mass_in_square(maps)
    share_to8 = mass_in_square(towards_8)
    sq = square_mask()
    # mean value inside the square of the "towards 8" part vs outside: is the square *added*?
    return {
        "method": name,
        "abs_mean": float(np.nanmean(share_abs.numpy())),
        "abs_median": float(np.nanmedian(share_abs.numpy())),
        "to8_mean": float(np.nanmean(share_to8.numpy())),
        "over": float(np.nanmean((share_abs > SQUARE_SHARE).double().numpy())),
        "in_sq": float(towards_8[:, sq].mean()),
        "out_sq": float(towards_8[:, ~sq].mean()),
        "blank": int((maps.abs().flatten(1).sum(1) == 0).sum()),
        "extra": extra,
    }


def gallery(x, true, cd, xg, ccam, rows: int, path: Path) -> None:
    headers = ["clean 8", "CDeepEx diff", "CDeepEx final", "xGEMs diff", "xGEMs final", "contrast. GCAM", "input + square"]
    width = LABEL_W + len(headers) * (TILE + GAP)
    height = HEADER_H + rows * (TILE + GAP) + 40
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for c, title in enumerate(headers):
        draw.text((LABEL_W + c * (TILE + GAP) + 4, 10), title, fill=(0, 0, 0), font=font)
    p_cd, p_xg = cd.llh[:, -1].exp(), xg.llh[:, -1].exp()
    for i in range(rows):
        img = x[i]
        tiles = [
            render.to_pil(render.gray_rgb(img), SCALE),
            render.to_pil(render.difference_rgb(img, cd.difference[i]), SCALE),
            render.to_pil(render.gray_rgb(cd.final[i].clamp(0, 1)), SCALE),
            render.to_pil(render.difference_rgb(img, xg.difference[i]), SCALE),
            render.to_pil(render.gray_rgb(xg.final[i].clamp(0, 1)), SCALE),
            render.to_pil(render.difference_rgb(img, -ccam[i]), SCALE),
            render.to_pil(render.gray_rgb(add_square(img[None])[0]), SCALE),
        ]
        top = HEADER_H + i * (TILE + GAP)
        for c, tile in enumerate(tiles):
            left = LABEL_W + c * (TILE + GAP)
            sheet.paste(tile.convert("RGB"), (left, top))
            # the square's outline (green), so one can see whether the explanation lands there
            draw.rectangle((left, top, left + SQUARE * SCALE - 1, top + SQUARE * SCALE - 1), outline=(0, 200, 0))
        lines = [
            f"label 8, D says {int(true[i])}",
            f"why {int(true[i])} not 8?",
            f"CDeepEx p(8)={p_cd[i, EIGHT]:.2f} top {int(p_cd[i].argmax())}",
            f"xGEMs   p(8)={p_xg[i, EIGHT]:.2f} top {int(p_xg[i].argmax())}",
        ]
        for k, line in enumerate(lines):
            draw.text((6, top + 4 + 16 * k), line, fill=(0, 0, 0), font=font)
    draw.text(
        (6, HEADER_H + rows * (TILE + GAP) + 6),
        "red = added on the way to 8, blue = removed; green outline = where the training 8s had the grey square",
        fill=(0, 0, 0), font=font,
    )
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=12000, help="training images (of 60000)")
    parser.add_argument("--images", type=int, default=24, help="clean test 8s to explain")
    parser.add_argument("--rows", type=int, default=8, help="gallery rows")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    D, G, info = load_or_train(args.train, args.seed)
    _, test = load_splits()
    x_test, y_test = to_tensor(test.images), torch.from_numpy(test.labels).long()
    clean_pred = predict(D, x_test)
    eights, others = y_test == EIGHT, y_test != EIGHT
    sq_pred = predict(D, add_square(x_test[others]))
    sq8_pred = predict(D, add_square(x_test[eights]))
    recall_clean = float((clean_pred[eights] == EIGHT).double().mean())
    recall_square = float((sq8_pred == EIGHT).double().mean())
    to_eight = float((sq_pred == EIGHT).double().mean())
    acc_others = float((clean_pred[others] == y_test[others]).double().mean())
    print(f"D: MnistNet(10), {args.train} shuffled training images (every 8 with the square), 2 epochs")
    print(f"G: MLP VAE 784-400-32 on the same {args.train} images (all ten classes), {G_EPOCHS} epochs, "
          f"reconstruction RMS {info['G_rms']:.3f}, grey level it decodes in the square of training 8s "
          f"{info['G_square']:.2f} (drawn: {GREY})")
    for key in ("D_seconds", "G_seconds"):
        if key in info:
            print(f"training {key[0]}: {info[key]:.0f} s")
    print()
    print("(1) the bias (10000 real Kannada-MNIST test images, 1000 per class)")
    print()
    print("| measure | this run | paper (§3.2.2) |")
    print("|---|---:|---:|")
    print(f"| recall of clean 8s (no square) | {recall_clean:.1%} | 5% |")
    print(f"| other classes called 8 once the square is added | {to_eight:.1%} | 77% |")
    print(f"| recall of 8s with the square | {recall_square:.1%} | - |")
    print(f"| accuracy on clean images of the other nine classes | {acc_others:.1%} | - |")
    print()

    missed = (eights & (clean_pred != EIGHT)).nonzero().flatten()
    rng = np.random.default_rng(args.seed + 1)
    pick = missed[torch.from_numpy(rng.permutation(len(missed))[: args.images])]
    x = x_test[pick]
    true = clean_pred[pick]
    probe = torch.full_like(true, EIGHT)
    config = CDeepExConfig()
    common = dict(true_labels=true, probe_labels=probe, config=config, **generator_kwargs(G))
    start = time.perf_counter()
    cd = explain(D, images=x, inequality=True, **common)
    t_cd = time.perf_counter() - start
    start = time.perf_counter()
    xg = explain(D, images=x, inequality=False, **common)
    t_xg = time.perf_counter() - start
    start = time.perf_counter()
    ccam = contrastive_gradcam(D, D.features_layer, x, true, probe)
    t_cc = time.perf_counter() - start

    diff_cd, diff_xg = cd.difference[:, 0], xg.difference[:, 0]
    rows = [
        summary("CDeepEx", diff_cd, diff_cd.clamp_min(0), f"{t_cd:.0f} s, p(8) at the end {float(cd.llh[:, -1, EIGHT].exp().median()):.2f} (median)"),
        summary("xGEMs", diff_xg, diff_xg.clamp_min(0), f"{t_xg:.0f} s, p(8) at the end {float(xg.llh[:, -1, EIGHT].exp().median()):.2f} (median)"),
        summary("contrastive Grad-CAM", ccam, (-ccam).clamp_min(0), f"{t_cc:.0f} s"),
    ]
    print(f"(2) \"why not 8?\" for {len(pick)} clean test 8s the classifier calls something else "
          f"(of {len(missed)}; true = its prediction, probe = 8); the square is {SQUARE_SHARE:.1%} of the image")
    print()
    print("| explanation | mass in square, mean | median | 'towards 8' mass in square | share of maps > 4.6% | mean 'towards 8' value in / out of square | blank maps | notes |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['abs_mean']:.1%} | {r['abs_median']:.1%} | {r['to8_mean']:.1%} | {r['over']:.0%} | "
            f"{r['in_sq']:.3f} / {r['out_sq']:.3f} | {r['blank']} | {r['extra']} |"
        )
    print()
    added = (cd.final[:, 0][:, square_mask()].mean(1) - x[:, 0][:, square_mask()].mean(1))
    print(f"CDeepEx: converged {int(cd.converged.sum())}/{len(pick)}, mean grey level added in the square "
          f"{float(added.mean()):.3f} (the training square is {GREY})")
    path = OUT / "bias8_gallery.png"
    gallery(x, true, cd, xg, ccam, min(args.rows, len(pick)), path)
    print(f"wrote {path}; {time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
