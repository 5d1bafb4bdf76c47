from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from studyapp.pipeline.models import Dataset, TrainedModel
from studyapp.studies.designs import TEMPLATES, TemplateError, comma_list
from studyapp.studies.designs.create import study_copy, study_from_template
from studyapp.studies.models import Study


class Command(BaseCommand):
    help = (
        "Make a draft study from a template (a published design) on your data set(s) and model(s), "
        "or copy a study. Never changes another study. The admin's 'New study from template' does the same."
    )

    def add_arguments(self, parser):
        parser.add_argument("--template", choices=sorted(TEMPLATES), help="The published design to start from.")
        parser.add_argument("--copy", metavar="SLUG", help="Copy this study instead (design, texts, arms, configuration).")
        parser.add_argument("--slug", help="The new study's name in the admin (default: the published study's).")
        parser.add_argument("--title")
        parser.add_argument("--dataset", help="Data set name (see import_images); without it, the published study as published.")
        parser.add_argument("--dataset2", help="Clustering: a second data set.")
        parser.add_argument("--classes", help="Learning: the two classes, by folder name or number, e.g. curl,loop.")
        parser.add_argument("--names", help="Learning: the made-up names participants see, e.g. Ternal,Peat.")
        parser.add_argument("--classifier", type=int, help="TrainedModel id of the classifier (of --dataset).")
        parser.add_argument("--classifier2", type=int, help="Clustering: the classifier of --dataset2.")
        parser.add_argument("--generator", type=int, help="Learning: TrainedModel id of the VAE/WGAN for the CDeepEx arm.")
        parser.add_argument("--arms", help="Keep only these arms of the template, e.g. Control,GCAM.")
        parser.add_argument("--language", help="The participant pages' language (default: the template's).")

    def handle(self, *args, **opts):
        try:
            study = self.make(opts)
        except TemplateError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Made the draft study '{study.slug}' (#{study.pk}, {study.get_design_display()})."))
        for arm in study.arms.all():
            self.stdout.write(f"  arm {arm.name}: {arm.get_feedback_display()}")
        self.stdout.write(f"  notes: {study.parsed_config.notes}")
        self.stdout.write(
            "Next: start a worker (celery -A studyapp worker -Q default,explain), then "
            f"`python manage.py precompute --study {study.slug} --wait`, check the texts in the admin "
            f"(/admin/studies/study/{study.pk}/change/), and open it."
        )

    def make(self, opts) -> Study:
        if opts["copy"]:
            source = Study.objects.filter(slug=opts["copy"]).first()
            if source is None:
                raise TemplateError(f"No study with the slug '{opts['copy']}'.")
            if not opts["slug"]:
                raise TemplateError("Give the copy a slug (--slug).")
            return study_copy(study=source, slug=opts["slug"], title=opts["title"])
        if not opts["template"]:
            raise TemplateError(f"Give --template ({' or '.join(sorted(TEMPLATES))}) or --copy SLUG.")
        datasets = [self.dataset(name) for name in (opts["dataset"], opts["dataset2"]) if name]
        if opts["dataset2"] and not opts["dataset"]:
            raise TemplateError("--dataset2 needs --dataset.")
        classifiers = [self.model(pk) for pk in (opts["classifier"], opts["classifier2"]) if pk is not None]
        generator = self.model(opts["generator"]) if opts["generator"] is not None else None
        if not datasets and (classifiers or generator or opts["classes"]):
            raise TemplateError("Models and classes belong to a data set: give --dataset too.")
        return study_from_template(
            template=opts["template"], slug=opts["slug"], title=opts["title"], datasets=datasets,
            classes=comma_list(opts["classes"]), names=comma_list(opts["names"]), classifiers=classifiers, generator=generator,
            arms=comma_list(opts["arms"]) or None, language=opts["language"],
        )

    @staticmethod
    def dataset(name: str) -> Dataset:
        found = Dataset.objects.filter(name=name).first()
        if found is None:
            known = ", ".join(Dataset.objects.order_by("name").values_list("name", flat=True)) or "none yet"
            raise TemplateError(f"No data set named '{name}' (data sets: {known}).")
        return found

    @staticmethod
    def model(pk: int) -> TrainedModel:
        found = TrainedModel.objects.filter(pk=pk).select_related("dataset").first()
        if found is None:
            raise TemplateError(f"No trained model #{pk}.")
        return found
