"""Issue 27: CDeepEx on a researcher's own colour images at a realistic size (3x64x64).

Everything goes through the platform, as a researcher's commands would: the colourised digits
of ``tests/owndata.py`` (two classes, 357 images, every fifth held out) are stored as an imported
data set, the classifier and the conv VAE are trained by ``training.model_create`` +
``model_train`` with the platform's defaults for these images (ConvNet; VAE latent 128, width
16, 300 steps), the stimuli are selected as for a study and the CDeepEx morphs are computed by
``explain.explanations_compute`` (what the Celery task calls), stored as the page shows them (a
colour morph: one lossless WebP of its 8-bit frames). Then, from the file the page shows (the
GIF if there is one, else the WebP: ``static/study/study.js``), decoded with Pillow as a browser
shows it:

* pass: share of the morphs that the displayed-frame gate lets through (served);
* crossovers: served morphs with a decoded frame where llh(probe) - llh(true) > the tolerance;
* mean |Δpixel|: mean absolute change (over pixels and channels, in [0, 1]) from the first to the
  last decoded frame of the served morphs;
* training times: wall clock and CPU seconds (all threads) of each model;
* a contact sheet: per served morph, first | last | |last - first| (the difference's mean over
  channels, scaled so that each morph's largest change is white), written to ``--sheet``.

    python benchmarks/rgb_morphs.py [--size 64] [--stimuli 24] [--threads 2] [--sheet docs/images/rgb_morphs_sheet.png]
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup(tmp: Path, threads: int) -> None:
    os.environ.update({
        "STUDY_VAR_DIR": str(tmp), "DJANGO_SECRET_KEY": secrets.token_urlsafe(40), "DJANGO_DEBUG": "0",
        "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "studyapp.settings", "TORCH_THREADS": str(threads),
    })
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def echo(info: dict) -> None:
    """Training progress every 50 steps (the run takes minutes)."""
    if info.get("step", 0) % 50 == 0 or info.get("step") == info.get("total"):
        print(f"  {info.get('stage')} {info.get('step')}/{info.get('total')}", flush=True)


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def contact_sheet(rows: list[tuple[np.ndarray, np.ndarray]], per_line: int = 4, gap: int = 2) -> bytes:
    """first | last | |difference| per morph, ``per_line`` morphs side by side; uint8 PNG."""
    from PIL import Image

    size = rows[0][0].shape[-1]
    tiles = []
    for first, last in rows:
        diff = np.abs(last - first).mean(axis=0)
        diff = np.repeat((diff / max(float(diff.max()), 1e-6))[None], 3, axis=0)
        tiles.append([first, last, diff])
    lines = -(-len(tiles) // per_line)
    width = per_line * (3 * (size + gap) + 3 * gap)
    sheet = np.full((lines * (size + gap) + gap, width, 3), 0.5, dtype=np.float32)
    for k, triple in enumerate(tiles):
        top = gap + (k // per_line) * (size + gap)
        left = (k % per_line) * (3 * (size + gap) + 3 * gap) + gap
        for j, tile in enumerate(triple):
            sheet[top : top + size, left + j * (size + gap) : left + j * (size + gap) + size] = tile.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(np.round(sheet * 255).astype(np.uint8), "RGB").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--stimuli", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sheet", default=str(ROOT / "docs" / "images" / "rgb_morphs_sheet.png"))
    parser.add_argument("--reuse", default="", help="The folder of an earlier run: its trained models are reused.")
    args = parser.parse_args()
    tmp = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix="rgb-morphs-"))
    print(f"working folder {tmp}", flush=True)
    setup(tmp, args.threads)

    import torch
    from django.core.management import call_command

    from explainers import render
    from studyapp.pipeline import datasets, explain, loading, training
    from studyapp.pipeline.models import Dataset
    from studyapp.pipeline.stimuli import stimuli_select
    from studyapp.pipeline.storage import media_path
    from studyapp.studies.models import Study
    from tests.owndata import digit_arrays

    x, y = digit_arrays(size=args.size, rgb=True)
    test = np.arange(len(y)) % 5 == 0
    split = lambda rows: SimpleNamespace(images=x[rows], labels=y[rows])  # noqa: E731
    dataset = datasets.dataset_store(
        name="own-colour", kind=Dataset.Kind.DIGIT_STANDIN, source="tests/owndata.py", is_standin=True,
        class_names=["curl", "loop"], train=split(~test), test=split(test),
    )
    from studyapp.pipeline.models import TrainedModel

    def ready(role: str):
        old = TrainedModel.objects.filter(dataset=dataset, role=role, status="ready").first()
        if old is not None:
            return old
        return training.model_train(trained_id=training.model_create(dataset=dataset, role=role, params={}).pk, echo=echo)

    classifier, c_wall, c_cpu = timed(lambda: ready("classifier"))
    vae, v_wall, v_cpu = timed(lambda: ready("vae"))
    print(f"images {x.shape} ({int((~test).sum())} train / {int(test.sum())} test), torch threads {args.threads}")
    print(f"classifier {classifier.arch}: test accuracy {classifier.test_accuracy:.3f}, {c_wall:.0f} s wall, {c_cpu:.0f} s CPU ({classifier.metadata['params']})")
    print(f"VAE: {v_wall:.0f} s wall, {v_cpu:.0f} s CPU ({vae.metadata['params']})")

    if not Study.objects.filter(slug="kannada-learning").exists():
        call_command("loaddata", str(ROOT / "fixtures" / "study_a_kannada.json"), verbosity=0)
    study = Study.objects.get(slug="kannada-learning")
    from studyapp.pipeline.models import ExplanationAsset

    ExplanationAsset.objects.filter(stimulus__study=study).delete()  # a rerun computes them again
    config = {**study.config, "spare_stimuli": 0, "classifier_id": classifier.pk, "generator_id": vae.pk}
    Study.objects.filter(pk=study.pk).update(classes=[0, 1], n_trials=args.stimuli, config=config)
    study.refresh_from_db()
    stimuli = stimuli_select(study=study, classifier=classifier)
    assets, e_wall, e_cpu = timed(lambda: explain.explanations_compute(stimulus_ids=[s.pk for s in stimuli], method="cdeepex"))
    D = loading.load_model(classifier).eval()
    served, crossovers, changes, rows, reasons = 0, 0, [], [], []
    for asset in sorted(assets, key=lambda a: a.stimulus.position):
        gate = asset.params["gate"]
        shown = asset.files.get("gif") or asset.files["webp"]  # what the page shows
        frames = render.decode_animation_frames(media_path(shown).read_bytes(), scale=gate["scale"], channels=3)
        with torch.no_grad():
            llh = torch.log_softmax(D(torch.from_numpy(frames)), 1).double()
        true = asset.stimulus.model_prediction
        gap = (llh[:, true] - llh[:, 1 - true]).numpy()
        if not asset.valid:
            reasons += asset.reason_codes
            continue
        served += 1
        crossovers += float(-gap.min()) > gate["llh_tol"]
        changes.append(float(np.abs(frames[-1] - frames[0]).mean()))
        rows.append((frames[0], frames[-1]))
    gate = assets[0].params["gate"]
    print(f"CDeepEx: {len(assets)} morphs in {e_wall:.0f} s wall ({e_cpu:.0f} s CPU), scale {gate['scale']}, shown and decoded: {gate['decoded']}")
    print(f"pass (served) {served}/{len(assets)} = {served / len(assets):.0%}; refused: {sorted(set(reasons)) or 'none'}")
    print(f"crossovers among served (decoded): {crossovers}")
    if changes:
        print(f"mean |Δpixel| of served morphs: {np.mean(changes):.4f} (median {np.median(changes):.4f}, min {min(changes):.4f}, max {max(changes):.4f})")
        Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
        Path(args.sheet).write_bytes(contact_sheet(rows))
        print(f"contact sheet: {args.sheet}")


if __name__ == "__main__":
    main()
