from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from studyapp.pipeline import precompute
from studyapp.pipeline import selectors as pipeline_selectors
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import PrecomputeJob, TrainedModel
from studyapp.pipeline.stimuli import stimuli_select
from studyapp.studies.models import Study
from studyapp.studies.selectors import study_methods


class Command(BaseCommand):
    help = "Select stimuli (clustering: train the XNNs and draw the image sets) if needed, and queue the study's explanations on Celery; optionally wait."
    # The admin action "Precompute explanations" does the same for staff (studies/admin.py).

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Study slug.")
        parser.add_argument("--classifier", type=int, default=None, help="TrainedModel id (default: config.classifier_id).")
        parser.add_argument("--generator", type=int, default=None, help="TrainedModel id of the VAE/WGAN.")
        parser.add_argument("--reselect", action="store_true", help="Select the stimuli again.")
        parser.add_argument("--wait", action="store_true", help="Wait for the job, printing progress.")
        parser.add_argument("--timeout", type=int, default=1800)
        parser.add_argument("--xnn-epochs", type=int, default=300, help="Clustering: epochs of an XNN trained here.")

    def handle(self, *args, **opts):
        study = Study.objects.filter(slug=opts["study"]).first()
        if study is None:
            raise CommandError(f"No study {opts['study']!r}.")
        config = dict(study.config or {})
        if opts["generator"]:
            config["generator_id"] = opts["generator"]
        if opts["classifier"]:
            config["classifier_id"] = opts["classifier"]
        study.config = config
        study.save(update_fields=["config", "updated_at"])
        if study.design == Study.Design.CLUSTERING:
            self.prepare_clustering(study, opts)
        else:
            self.select_stimuli(study, opts)
        with transaction.atomic():
            job = precompute.start(study=study, methods=study_methods(study=study))
        self.stdout.write(f"Job {job.pk}: {job.total} explanations queued.")
        if opts["wait"]:
            self.wait(job, opts["timeout"])

    def prepare_clustering(self, study: Study, opts) -> None:
        """Each data set's XNN (trained here unless one exists) and image sets (drawn unless drawn)."""
        from studyapp.pipeline.clustering import clustering_prepare

        try:
            clustering_prepare(study=study, echo=lambda m: self.stdout.write("  " + m), xnn_epochs=opts["xnn_epochs"])
        except PipelineError as exc:
            raise CommandError(str(exc)) from exc

    def select_stimuli(self, study: Study, opts) -> None:
        classifier = TrainedModel.objects.filter(pk=study.parsed_config.classifier_id, role="classifier", status="ready").first()
        if classifier is None:
            raise CommandError("No ready classifier: pass --classifier ID (see train_models).")
        if opts["reselect"] or not study.stimuli.exists():
            try:
                chosen = stimuli_select(study=study, classifier=classifier)
            except PipelineError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"Selected {len(chosen)} stimuli.")

    def wait(self, job: PrecomputeJob, timeout: int) -> None:
        start = time.monotonic()
        warned = False
        while True:
            job.refresh_from_db()
            self.stdout.write(f"\r  {job.done}/{job.total} stored, {job.failed} failed batch(es)   ", ending="")
            self.stdout.flush()
            if job.status in (PrecomputeJob.Status.DONE, PrecomputeJob.Status.FAILED):
                break
            if time.monotonic() - start > timeout:
                raise CommandError(f"Timed out after {timeout}s: is a worker running? (celery -A studyapp worker -Q default,explain)")
            if not warned and time.monotonic() - start > 20 and job.done == 0:
                status = pipeline_selectors.broker_status(timeout=0.5)
                if status["detail"]:
                    self.stdout.write("\n  " + status["detail"])
                warned = True
            time.sleep(1)
        self.stdout.write("")
        if job.status == PrecomputeJob.Status.FAILED:
            raise CommandError(f"Precompute failed: {job.message}")
        self.stdout.write(self.style.SUCCESS(f"Job {job.pk} done."))
