"""Benchmark (d): a gallery PNG of real Kannada-MNIST test images and their explanations.

One row per image: the input; the CDeepEx difference (red = add, blue = remove, to move from
true towards probe); the xGEMs difference (the same without the inequality constraints);
contrastive Grad-CAM (§3.2.1, same colours: ``-map``); the Grad-CAM overlay for the true class
(what the study's GCAM arm shows); then frames of the CDeepEx morph from the input (frame 0)
to the explanation. The text on the left says true -> probe and the top classes at the end.

Writes benchmarks/out/gallery.png, plus gallery_morph0.gif / .webp (row 0's animation); with
``--generator X`` other than mlp, gallery_X.png etc.

    python benchmarks/gallery.py [--rows 10] [--pair 3 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablation_cdeepex_xgems import (  # noqa: E402
    GENERATORS,
    OUT,
    generator_kwargs,
    load_or_train_models,
    load_splits,
)

from explainers import render  # noqa: E402
from explainers.cdeepex import explain  # noqa: E402
from explainers.datasets.common import to_tensor  # noqa: E402
from explainers.gradcam import GradCAM, contrastive_gradcam  # noqa: E402
from explainers.metrics import top2_is_pair  # noqa: E402
from explainers.targets import ClassTarget  # noqa: E402

SCALE = 4
TILE = 28 * SCALE
GAP = 6
LABEL_W = 150
HEADER_H = 34


def pick_images(test, D, pair: tuple[int, int], rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Half from the look-alike pair (probe = the partner), half from other classes (probe = 2nd)."""
    rng = np.random.default_rng(seed)
    a, b = pair
    pair_idx = rng.permutation(np.flatnonzero(np.isin(test.labels, pair)))[:200]
    other_idx = rng.permutation(np.flatnonzero(~np.isin(test.labels, pair)))[:200]
    x_pair, x_other = to_tensor(test.images[pair_idx]), to_tensor(test.images[other_idx])
    with torch.no_grad():
        lp, lo = D(x_pair), D(x_other)
    pred_pair = lp.argmax(1)
    keep = ((pred_pair == a) | (pred_pair == b)).nonzero().flatten()
    # alternate the two classes of the pair
    first = keep[pred_pair[keep] == a][: (rows + 1) // 4 + 1]
    second = keep[pred_pair[keep] == b][: (rows + 1) // 4 + 1]
    chosen_pair = torch.stack([first, second], 1).flatten()[: (rows + 1) // 2]
    n_other = rows - len(chosen_pair)
    chosen_other = torch.arange(n_other)
    x = torch.cat([x_pair[chosen_pair], x_other[chosen_other]])
    true = torch.cat([pred_pair[chosen_pair], lo[chosen_other].argmax(1)])
    probe_pair = torch.where(pred_pair[chosen_pair] == a, b, a)
    probe_other = lo[chosen_other].topk(2, 1).indices[:, 1]
    return x, true, torch.cat([probe_pair, probe_other])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--pair", type=int, nargs=2, default=(3, 7))
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--generator", choices=GENERATORS, default="mlp")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    D, G, info = load_or_train_models(args.generator)
    _, test = load_splits()
    x, true, probe = pick_images(test, D, tuple(args.pair), args.rows, args.seed)
    common = dict(true_labels=true, probe_labels=probe, seed=args.seed, **generator_kwargs(G))
    cd = explain(D, images=x, inequality=True, **common)
    xg = explain(D, images=x, inequality=False, **common)
    cam = GradCAM(D, D.features_layer)(x, ClassTarget(true))
    ccam = contrastive_gradcam(D, D.features_layer, x, true, probe)
    pair_cd, pair_xg = top2_is_pair(cd), top2_is_pair(xg)

    frame_ids = np.linspace(0, cd.frames.shape[1] - 1, args.frames).round().astype(int)
    headers = ["input", "CDeepEx", "xGEMs", "contrast. GCAM", "Grad-CAM"] + [f"morph {k}" for k in frame_ids]
    cols = len(headers)
    width = LABEL_W + cols * (TILE + GAP)
    height = HEADER_H + len(x) * (TILE + GAP)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for c, title in enumerate(headers):
        draw.text((LABEL_W + c * (TILE + GAP) + 4, 10), title, fill=(0, 0, 0), font=font)

    for i in range(len(x)):
        img = x[i]
        tiles = [
            render.to_pil(render.gray_rgb(img), SCALE),
            render.to_pil(render.difference_rgb(img, cd.difference[i]), SCALE),
            render.to_pil(render.difference_rgb(img, xg.difference[i]), SCALE),
            render.to_pil(render.difference_rgb(img, -ccam[i]), SCALE),
            render.to_pil(render.heatmap_rgb(img, cam[i]), SCALE),
        ] + [render.to_pil(render.gray_rgb(cd.frames[i, k]), SCALE) for k in frame_ids]
        top = HEADER_H + i * (TILE + GAP)
        for c, tile in enumerate(tiles):
            sheet.paste(tile.convert("RGB"), (LABEL_W + c * (TILE + GAP), top))
        llh_cd, llh_xg = cd.llh[i, -1], xg.llh[i, -1]
        p_cd, p_xg = llh_cd.exp(), llh_xg.exp()
        lines = [
            f"why {int(true[i])} not {int(probe[i])}?",
            "CDeepEx top-2: " + ",".join(str(int(k)) for k in llh_cd.topk(2).indices),
            f"  p={p_cd[true[i]]:.2f}/{p_cd[probe[i]]:.2f} {'ok' if pair_cd[i] else 'FAIL'}",
            "xGEMs top-2: " + ",".join(str(int(k)) for k in llh_xg.topk(2).indices),
            f"  p={p_xg[true[i]]:.2f}/{p_xg[probe[i]]:.2f} {'ok' if pair_xg[i] else 'FAIL'}",
            f"z0 rms {float(cd.z0_recon_error[i]):.2f}",
        ]
        for k, line in enumerate(lines):
            draw.text((6, top + 4 + 16 * k), line, fill=(0, 0, 0), font=font)

    OUT.mkdir(exist_ok=True)
    suffix = "" if args.generator == "mlp" else f"_{args.generator}"
    path = OUT / f"gallery{suffix}.png"
    sheet.save(path)
    (OUT / f"gallery{suffix}_morph0.gif").write_bytes(render.morph_gif(cd.frames[0]))
    (OUT / f"gallery{suffix}_morph0.webp").write_bytes(render.morph_webp(cd.frames[0]))
    print(f"D: {info['D']}")
    print(f"G: {info['G']}")
    print(f"wrote {path} ({sheet.width}x{sheet.height}, {len(x)} rows) and {path.stem}_morph0.gif/.webp")
    print(f"CDeepEx: {int(pair_cd.sum())}/{len(x)} rows with top-2 = {{true, probe}}, converged {int(cd.converged.sum())}")
    print(f"xGEMs:   {int(pair_xg.sum())}/{len(x)} rows with top-2 = {{true, probe}}, converged {int(xg.converged.sum())}")


if __name__ == "__main__":
    main()
