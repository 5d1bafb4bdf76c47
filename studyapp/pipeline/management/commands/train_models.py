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
        try:
            trained = training.model_create(dataset=dataset, role=opts["role"], params=params)
        except PipelineError as exc:
            raise CommandError(f"Nothing was trained: {exc}") from exc
        trained = training.model_train(trained_id=trained.pk, echo=self._echo)
        self.stdout.write("")
        acc = f", test accuracy {trained.test_accuracy:.4f}" if trained.test_accuracy is not None else ""
        self.stdout.write(self.style.SUCCESS(f"{trained.get_role_display()} #{trained.pk} ready{acc}"))

    def _echo(self, info: dict) -> None:
        step, total = info.get("step", 0), info.get("total", 0)
        loss = f" loss {info['loss']:.4f}" if "loss" in info else ""
        self.stdout.write(f"\r  {info.get('stage', 'train')}: {step}/{total}{loss}   ", ending="")
        self.stdout.flush()

