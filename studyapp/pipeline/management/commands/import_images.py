from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from studyapp.pipeline import datasets, selectors
from studyapp.pipeline.errors import PipelineError


class Command(BaseCommand):
    help = (
        "Import your own labelled images: DIR/<class>/* (a share of each class held out for testing) "
        "or DIR/train/<class>/* and DIR/test/<class>/*. PNG or JPEG, grey or colour, any size; class "
        "names are the folder names. All or nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", metavar="DIR", help="The folder of class folders (or of train/ and test/).")
        parser.add_argument("--name", required=True, help="The data set's name, e.g. gulls.")
        parser.add_argument(
            "--test-fraction", type=float, default=0.2,
            help="Share of each class held out as the test split (class folders only; default 0.2).",
        )
        parser.add_argument(
            "--size", type=int, default=None,
            help="Store the images at SIZE x SIZE pixels (default: their own size when all share one square "
            "size of at most 256, else 64).",
        )
        parser.add_argument("--seed", type=int, default=0, help="Seed of the held-out draw (default 0).")

    def handle(self, *args, **opts):
        try:
            dataset = datasets.dataset_import_images(
                name=opts["name"], directory=opts["directory"], test_fraction=opts["test_fraction"],
                size=opts["size"], seed=opts["seed"],
            )
        except PipelineError as exc:
            raise CommandError(str(exc)) from exc
        contents = selectors.dataset_contents(dataset)
        height, width = contents["size"]
        self.stdout.write(self.style.SUCCESS(
            f"Data set '{dataset.name}': {dataset.n_train} train / {dataset.n_test} test images, "
            f"{height}x{width} {'colour' if contents['colour'] else 'grey'}"
        ))
        self.stdout.write(f"From {dataset.source}")
        wide = max(len("class"), *(len(name) for name, _, _ in contents["classes"]))
        self.stdout.write(f"  {'class':<{wide}}  {'train':>6}  {'test':>6}")
        for name, n_train, n_test in contents["classes"]:
            self.stdout.write(f"  {name:<{wide}}  {n_train:>6}  {n_test:>6}")
