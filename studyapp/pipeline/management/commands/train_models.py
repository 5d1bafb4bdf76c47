from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from studyapp.pipeline import training
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import Dataset


class Command(BaseCommand):
    help = "Train a classifier, VAE or WGAN on an imported data set, with progress here and in the admin."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="Data set name.")
        parser.add_argument("--role", choices=["classifier", "vae", "wgan"], default="classifier")
        parser.add_argument(
            "--epochs", type=int, default=None,
            help="Passes over the training images (default: 2 on 28x28 grey images; on other images "
            "10 for a classifier and, for a VAE or WGAN, enough for 300 steps).",
        )
        parser.add_argument("--max-train", type=int, default=None, help="Train on a random subset of this size.")
        parser.add_argument("--classes", default="", help="Comma-separated class ids (default: all).")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--params", default="{}", help="Further parameters as JSON (e.g. latent_dim).")
        parser.add_argument(
            "--plant-cue", default=None,
            help="Classifier: plant a cue on the training images of --cue-class, e.g. square:6@0,0 (a 6-pixel "
            "square at column 0, row 0; append =0.5 for its grey level). Stored with the model; the bias template scores against it.",
        )
        parser.add_argument("--cue-class", type=int, default=None, help="Class id the planted cue goes with (e.g. 8).")

    def handle(self, *args, **opts):
        dataset = Dataset.objects.filter(name=opts["dataset"]).first()
        if dataset is None:
            raise CommandError(f"No data set named {opts['dataset']!r}; import one with import_kannada.")
        try:
            extra = json.loads(opts["params"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not JSON: {exc}") from exc
        params = {"epochs": opts["epochs"], "seed": opts["seed"], "max_train": opts["max_train"], **extra}
        params = {k: v for k, v in params.items() if v is not None}  # unset: the defaults for these images
        if opts["classes"]:
            params["classes"] = [int(c) for c in opts["classes"].split(",")]
        if bool(opts["plant_cue"]) != (opts["cue_class"] is not None):
            raise CommandError("Expected --plant-cue and --cue-class together (e.g. --plant-cue square:6@0,0 --cue-class 8), but found only one.")
        if opts["plant_cue"]:
            params |= {"plant_cue": opts["plant_cue"], "cue_class": opts["cue_class"]}
        try:
            trained = training.model_create(dataset=dataset, role=opts["role"], params=params)
        except PipelineError as exc:
            raise CommandError(f"Nothing was trained: {exc}") from exc
        trained = training.model_train(trained_id=trained.pk, echo=self._echo)
        self.stdout.write("")
        acc = f", test accuracy {trained.test_accuracy:.4f}" if trained.test_accuracy is not None else ""
        self.stdout.write(self.style.SUCCESS(f"{trained.get_role_display()} #{trained.pk} ready{acc}"))
        cue = trained.metadata.get("planted_cue")
        if cue:
            self.stdout.write(f"Planted cue {cue['shape']} {cue['size']} px at {cue['x']},{cue['y']} on class {cue['cue_class']}: "
                              f"{cue['reliance']:.1%} of the other classes' test images are called {cue['cue_class']} once it is drawn.")

    def _echo(self, info: dict) -> None:
        step, total = info.get("step", 0), info.get("total", 0)
        loss = f" loss {info['loss']:.4f}" if "loss" in info else ""
        self.stdout.write(f"\r  {info.get('stage', 'train')}: {step}/{total}{loss}   ", ending="")
        self.stdout.flush()

