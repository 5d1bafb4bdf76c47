"""The field's protocols on the demo's data and models: one study per template, ready to take.

    python manage.py demo --no-serve            # first: the learning demo's data and models
    python manage.py demo_protocols             # then: simulation, decision, HIVE and bias studies
    python manage.py demo --protocols           # both in one go (then serves, as the demo does)

After the learning demo (``manage.py demo``) has imported Kannada-MNIST and trained its
classifier and VAE, this makes, from the templates and with no code, one study per protocol on
the same data: ``simulation``, ``decision`` and ``hive`` with the demo's classifier (and its VAE for
a CDeepEx arm), ``bias`` with a classifier trained here like the demo's but with the
dissertation's planted cue (a 6x6 grey square on every training 8, ``train_models --plant-cue``).
Each study's stimuli are selected, its explanations precomputed through a real Celery worker (the
demo's own precompute) and it is opened; the participant links are printed.

A second run reuses what exists: the studies by their slugs, the biased classifier by its
parameters, the stored explanations. A separate command rather than only a ``demo`` option, so
that the protocols can be added to a demo that is already built (and served) without rebuilding or
restarting it; ``demo --protocols`` calls this one.
"""

from __future__ import annotations

import time

from django.core.management import call_command
from django.core.management.base import CommandError

from studyapp.pipeline import stimuli, training
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import TrainedModel
from studyapp.studies import services
from studyapp.studies.designs import TemplateError, template_design
from studyapp.studies.designs.create import study_from_template
from studyapp.studies.management.commands import demo
from studyapp.studies.models import Study

#: The dissertation's biased 8 (§3.2.2), as README "Bias discovery" trains it.
PLANTED_CUE = "square:6@0,0=0.5"
CUE_CLASS = 8
#: The biased classifier: like the demo's, but quicker (the cue is learnt in one pass; 3 epochs
#: over 12000 images keep the clean accuracy near the demo classifier's).
BIAS_EPOCHS = 3
BIAS_MAX_TRAIN = 12000

#: (template, slug) in the order they are built; each template's own classes, names and arms.
PROTOCOLS = (
    ("simulation", "kannada-simulation"),
    ("decision", "kannada-decision"),
    ("hive", "kannada-hive"),
    ("bias", "kannada-bias"),
)


class Command(demo.Command):
    help = "Make one study per protocol template (simulation, decision, HIVE, bias) on the demo's data and models (see README)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Host of the printed participant links.")
        parser.add_argument("--port", type=int, default=8000, help="Port of the printed participant links.")
        parser.add_argument("--bias-epochs", type=int, default=BIAS_EPOCHS, help="Epochs of the biased classifier.")
        parser.add_argument("--bias-max-train", type=int, default=BIAS_MAX_TRAIN, help="Training images of the biased classifier.")

    def handle(self, *args, **opts):
        self.t0 = time.monotonic()
        call_command("migrate", interactive=False, verbosity=0)  # as the demo does: a pulled migration is applied
        classifier, generator = self.demo_models()
        dataset = classifier.dataset
        biased = self.bias_classifier(dataset, opts)
        cue = biased.metadata.get("planted_cue") or {}
        if cue:
            self.stdout.write(f"  biased classifier #{biased.pk}: test accuracy {biased.test_accuracy:.4f}; "
                              f"{cue['reliance']:.1%} of the other classes' test images are called {cue['cue_class']} with the square drawn")
        studies = [self.protocol_study(template, slug, dataset=dataset, classifier=biased if template == "bias" else classifier,
                                       generator=generator) for template, slug in PROTOCOLS]
        self.step("Precomputing explanations on a real Celery worker")
        self.precompute(studies)
        for study in studies:
            if study.status != Study.Status.OPEN:
                services.study_open(study=study)
        base = f"http://{opts['host']}:{opts['port']}"
        self.step("Ready")
        for study in studies:
            arms = ", ".join(study.arms.order_by("position").values_list("name", flat=True))
            self.stdout.write(self.style.SUCCESS(f"  {study.design:<11} {base}/s/{study.public_code}/  ({study.slug}; arms {arms})"))

    def bias_classifier(self, dataset, opts) -> TrainedModel:
        """The bias study's classifier when the study exists, else one trained (or found) with the planted square."""
        study = Study.objects.filter(slug=dict(PROTOCOLS)["bias"]).first()
        if study is not None:
            used = TrainedModel.objects.filter(pk=study.parsed_config.classifier_id, status=TrainedModel.Status.READY).first()
            if used is not None:
                self.step(f"Reusing the bias study's classifier #{used.pk}")
                return used
        params = {"epochs": opts["bias_epochs"], "max_train": opts["bias_max_train"], "seed": 0,
                  "plant_cue": PLANTED_CUE, "cue_class": CUE_CLASS}
        # stored with the cue spelled out (as model_create stores it), so that a rerun finds it
        params["plant_cue"] = training.planted_cue_of(params, dataset=dataset, role="classifier").as_dict()
        return self.ready_model(dataset, "classifier", params)

    def demo_models(self) -> tuple[TrainedModel, TrainedModel | None]:
        """The learning demo's classifier and VAE, or a clear refusal naming the command that makes them."""
        study = Study.objects.filter(slug=demo.SLUG).first()
        config = study.parsed_config if study is not None else None
        ids = {"classifier": getattr(config, "classifier_id", None), "generator": getattr(config, "generator_id", None)}
        models = {role: TrainedModel.objects.filter(pk=pk, status=TrainedModel.Status.READY).select_related("dataset").first()
                  for role, pk in ids.items() if pk}
        if models.get("classifier") is None:
            raise CommandError(
                "The demo's models are missing: the protocol studies use the learning demo's Kannada-MNIST classifier "
                f"(study '{demo.SLUG}', config classifier_id). Build it first: `python manage.py demo --no-serve` "
                "(or scripts/demo.sh). Nothing was changed."
            )
        return models["classifier"], models.get("generator")

    def protocol_study(self, template: str, slug: str, *, dataset, classifier: TrainedModel, generator) -> Study:
        study = Study.objects.filter(slug=slug).first()
        if study is None:
            self.step(f"Making '{slug}' from the {template} template on {dataset.name} (classifier #{classifier.pk})")
            spec = template_design(template)["study"]
            try:
                study = study_from_template(
                    template=template, slug=slug, datasets=[dataset], classes=spec["classes"], names=spec["class_names"],
                    classifiers=[classifier], generator=generator,
                )
            except TemplateError as exc:
                raise CommandError(f"Could not make '{slug}': {exc}") from exc
        elif study.design != template:
            raise CommandError(f"A study '{slug}' exists already but is a {study.get_design_display()} study, not {template}; "
                               "rename or delete it (nothing was changed).")
        else:
            self.step(f"Reusing the study '{slug}'")
        if not study.stimuli.exists():
            try:
                chosen = stimuli.stimuli_select(study=study, classifier=classifier)
            except PipelineError as exc:
                raise CommandError(f"{slug}: {exc}") from exc
            self.stdout.write(f"  {len(chosen)} stimuli")
        return study
