from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from studyapp.pipeline import datasets
from studyapp.pipeline.errors import PipelineError


class Command(BaseCommand):
    help = (
        "Import Kannada-MNIST (npz, IDX .gz or Kaggle CSV) from a directory, or download it, or "
        "generate the clearly labelled offline look-alike stand-in. All or nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dir", default=None, help="Directory with the files (default: $KANNADA_MNIST_DIR).")
        parser.add_argument("--download", action="store_true", help="Download the official files (checksummed).")
        parser.add_argument("--lookalike", action="store_true", help="Generate the offline look-alike stand-in.")
        parser.add_argument("--auto", action="store_true", help="Directory, else download, else look-alike.")
        parser.add_argument("--name", default=None)
        parser.add_argument("--lookalike-per-class", type=int, default=600)

    def handle(self, *args, **opts):
        directory = opts["dir"] or settings.KANNADA_MNIST_DIR
        try:
            if opts["lookalike"]:
                dataset = datasets.dataset_make_lookalike(name=opts["name"] or "kannada-lookalike", n_per_class=opts["lookalike_per_class"])
            elif opts["download"]:
                dataset = datasets.dataset_download_kannada(name=opts["name"] or "kannada-mnist", dest=settings.VAR_DIR / "downloads" / "kannada")
            elif directory:
                dataset = datasets.dataset_import_kannada(name=opts["name"] or "kannada-mnist", directory=directory)
            elif opts["auto"]:
                dataset = datasets.dataset_auto(name=opts["name"], echo=lambda m: self.stdout.write(m))
            else:
                raise CommandError("Say where the data comes from: --dir, --download, --lookalike or --auto.")
        except PipelineError as exc:
            raise CommandError(str(exc)) from exc
        label = " (STAND-IN, not the real data set)" if dataset.is_standin else ""
        self.stdout.write(self.style.SUCCESS(
            f"Data set '{dataset.name}'{label}: {dataset.n_train} train / {dataset.n_test} test images from {dataset.source}"
        ))
