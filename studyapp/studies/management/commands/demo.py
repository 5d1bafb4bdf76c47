"""The main job: a demo site with the Kannada-MNIST learning study ready to take.

migrate -> make Study A from the published learning template -> import Kannada-MNIST (KANNADA_MNIST_DIR, else download,
else the offline look-alike) -> train the classifier and the VAE (on all ten classes, unless the
study's ``generator_classes`` is "study") -> select stimuli -> precompute
the explanations through a real Celery worker -> open the study -> serve with gunicorn and a
Celery worker beside it (so the admin's train and precompute actions work; Ctrl-C stops both).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from studyapp.pipeline import precompute, stimuli, training
from studyapp.pipeline import selectors as selectors_pipeline
from studyapp.pipeline.datasets import dataset_auto
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import PrecomputeJob, TrainedModel
from studyapp.studies import selectors, services
from studyapp.studies.designs.create import study_from_template
from studyapp.studies.models import Arm, Study

SLUG = "kannada-learning"
SLUG_B = "xnn-clustering"
#: The demo VAE's training (all ten classes by default): 6 epochs over 8000 images, as many image
#: passes as the former 12 x 4000 of two classes, so no slower. Measured with
#: benchmarks/ablation_cdeepex_xgems.py --generator demo on real Kannada-MNIST (3/7, 32 test
#: images): CDeepEx converges on 97% with 8000 x 6, against 50% with 4000 x 12 over ten classes.
VAE_EPOCHS = 6
VAE_MAX_TRAIN = 8000
#: The demo classifier's epochs over 24000 images. The morph's size is set by how far the
#: classifier's boundary lies from the image, not by the generator's training (6, 12 or 24 VAE
#: epochs gave the same median): with 2 epochs the median served morph changed 0 pixels by more
#: than 0.25 (mean |change| 0.008), with 8 epochs 11 pixels (0.018), measured with
#: benchmarks/displayed_morphs.py. 8 epochs take about 60 s on 2 cores.
CLASSIFIER_EPOCHS = 8


class Command(BaseCommand):
    help = "Build the demo study end to end and serve it (see README)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--no-serve", action="store_true", help="Stop after the study is ready.")
        parser.add_argument("--serve-only", action="store_true",
                            help="Skip the build (already done): migrate, then serve with a worker beside it.")
        parser.add_argument("--classifier-epochs", type=int, default=int(os.environ.get("DEMO_CLASSIFIER_EPOCHS", CLASSIFIER_EPOCHS)))
        parser.add_argument("--classifier-max-train", type=int, default=24000)
        parser.add_argument("--vae-epochs", type=int, default=int(os.environ.get("DEMO_VAE_EPOCHS", VAE_EPOCHS)))
        parser.add_argument("--vae-max-train", type=int, default=int(os.environ.get("DEMO_VAE_MAX_TRAIN", VAE_MAX_TRAIN)),
                            help="Training images of the VAE (a seeded subset of the classes it models).")
        parser.add_argument("--xnn-epochs", type=int, default=int(os.environ.get("DEMO_XNN_EPOCHS", 300)))
        parser.add_argument("--backbone-epochs", type=int, default=int(os.environ.get("DEMO_BACKBONE_EPOCHS", 12)),
                            help="Epochs of the Study B backbone on real CUB/CEL images.")
        parser.add_argument("--standin-epochs", type=int, default=2,
                            help="Epochs of the Study B stand-in classifiers (digit classes in place of CUB/CEL).")
        parser.add_argument("--skip-clustering", action="store_true", help="Only build Study A.")
        parser.add_argument("--language", default="en", choices=[code for code, _ in settings.LANGUAGES],
                            help="The participant pages' language (Study.language); German also puts in the "
                            "studies' own texts in German (fixtures/study_texts_de.json).")
        parser.add_argument("--gad-arm", action="store_true",
                            help="Add a fourth Study A arm whose feedback is the GAD map (not in the published design).")
        parser.add_argument("--protocols", action="store_true",
                            help="Also make the simulation, decision, HIVE and bias studies on the same data and models "
                            "(the demo_protocols command; it can also be run on its own once the demo is built).")

    def set_language(self, studies: list[Study], language: str) -> None:
        """The studies' language and, where the demo ships them (fixtures/study_texts_<lang>.json),
        their own texts in it; English keeps the fixtures' texts."""
        texts_file = Path(settings.BASE_DIR) / "fixtures" / f"study_texts_{language}.json"
        texts = json.loads(texts_file.read_text(encoding="utf-8")) if texts_file.exists() else {}
        for study in studies:
            own = texts.get(study.slug, {})
            if study.language == language and not own:
                continue
            self.step(f"Study {study.slug}: participant pages in {dict(settings.LANGUAGES)[language]}")
            study.language = language
            for field in ("title", "consent_text", "cover_story", "instructions", "completion_text", "rating_question", "rating_scale"):
                if field in own:
                    setattr(study, field, own[field])
            study.save()
            for arm in study.arms.all():
                if arm.name in own.get("arms", {}):
                    arm.instruction = own["arms"][arm.name]
                    arm.save(update_fields=["instruction"])

    def step(self, message: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"[{time.monotonic() - self.t0:6.1f}s] {message}"))

    def handle(self, *args, **opts):
        self.t0 = time.monotonic()
        self.step("Migrating the database")
        call_command("migrate", interactive=False, verbosity=0)
        if opts["serve_only"]:
            self.step(f"Serving on http://{opts['host']}:{opts['port']}/ with a Celery worker (Ctrl-C stops both)")
            self.serve(opts)
            return
        if not Study.objects.filter(slug=SLUG).exists():
            self.step("Making Study A from the published learning template (Table 5.1 arms, 20 trials, 5-level rating)")
            study_from_template(template="learning", slug=SLUG)
        study = Study.objects.get(slug=SLUG)
        if opts["gad_arm"] and not study.arms.filter(feedback=Arm.Feedback.GAD).exists():
            self.step("Adding a GAD arm (feedback: the GAD map contrasting the two classes)")
            Arm.objects.create(
                study=study, name="GAD", feedback=Arm.Feedback.GAD, cap=15, position=study.arms.count(),
                instruction="Then, the system's feedback will be the highlighted parts that tell this symbol apart from the other one.",
            )

        self.step("Importing Kannada-MNIST")
        dataset = dataset_auto(echo=lambda m: self.stdout.write("  " + m))
        if dataset.is_standin:
            self.stdout.write(self.style.WARNING("  Using the offline LOOK-ALIKE stand-in, not the real Kannada-MNIST."))
        self.stdout.write(f"  {dataset.name}: {dataset.n_train} train / {dataset.n_test} test")

        classifier = self.ready_model(dataset, "classifier", {
            "epochs": opts["classifier_epochs"], "max_train": opts["classifier_max_train"], "seed": 0,
        })
        self.stdout.write(f"  classifier #{classifier.pk}: test accuracy {classifier.test_accuracy:.4f}")
        vae = self.ready_model(dataset, "vae", training.generator_params(
            study_config=study.parsed_config, study_classes=study.classes,
            epochs=opts["vae_epochs"], width=16, max_train=opts["vae_max_train"],
        ))
        study.config = {**(study.config or {}), "classifier_id": classifier.pk, "generator_id": vae.pk}
        study.save(update_fields=["config", "updated_at"])

        if not study.stimuli.exists():
            self.step("Selecting stimuli (half from each class, at random: the model's own right/wrong mix)")
            try:
                chosen = stimuli.stimuli_select(study=study, classifier=classifier)
            except PipelineError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"  {len(chosen)} stimuli")

        studies = [study]
        if not opts["skip_clustering"]:
            studies.append(self.build_clustering(dataset, opts))

        self.step("Precomputing explanations on a real Celery worker")
        self.precompute(studies)

        self.set_language(studies, opts["language"])
        for s in studies:
            if s.status != Study.Status.OPEN:
                services.study_open(study=s)
        if opts["protocols"]:
            call_command("demo_protocols", host=opts["host"], port=opts["port"])
        password = self.admin_login()
        base = f"http://{opts['host']}:{opts['port']}"
        self.step("Ready")
        self.stdout.write(self.style.SUCCESS(f"\n  Participant link: {base}/s/{study.public_code}/"))
        self.stdout.write(self.style.SUCCESS(f"  Admin:            {base}/admin/   user 'admin', password '{password}'"))
        self.stdout.write(f"  Study status:     {base}/admin/studies/study/{study.pk}/dashboard/")
        if len(studies) > 1:
            kinds = ", ".join(f"{d.name}{' (stand-in)' if d.is_standin else ''}" for d in selectors_pipeline.study_datasets(studies[1]))
            self.stdout.write(self.style.SUCCESS(f"  Clustering study: {base}/s/{studies[1].public_code}/  ({kinds})"))
        self.stdout.write("")
        if opts["no_serve"]:
            return
        self.step(f"Serving with gunicorn on {base}, with a Celery worker beside it (Ctrl-C stops both)")
        sys.stdout.flush()
        self.serve(opts)

    def start_worker(self) -> subprocess.Popen:
        """A real Celery worker on both queues, as on a server (the admin's train and precompute
        actions need one)."""
        return subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            [sys.executable, "-m", "celery", "-A", "studyapp", "worker", "-Q", f"default,{settings.CELERY_EXPLAIN_QUEUE}",
             "-c", "1", "--loglevel", "WARNING", "-n", f"demo-{secrets.token_hex(3)}@%h"],
            cwd=settings.BASE_DIR,
        )

    @staticmethod
    def gunicorn_command(host: str, port: int) -> list[str]:
        """gunicorn with the settings every launcher uses (gunicorn.conf.py: WEB_CONCURRENCY ...)."""
        return [sys.executable, "-m", "gunicorn", "--config", str(Path(settings.BASE_DIR) / "gunicorn.conf.py"),
                "--bind", f"{host}:{port}", "--access-logfile", "-"]

    @staticmethod
    def stop(*processes: subprocess.Popen) -> None:
        for proc in processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in processes:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)

    def serve(self, opts) -> None:
        """gunicorn and a worker until either exits, Ctrl-C or SIGTERM; then both are stopped.
        Static files are collected first (also for ``--serve-only``: gunicorn serves the manifest)."""
        call_command("collectstatic", interactive=False, verbosity=0)

        def interrupted(signum, frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupted)
        signal.signal(signal.SIGINT, interrupted)
        worker = self.start_worker()
        web = subprocess.Popen(self.gunicorn_command(opts["host"], opts["port"]), cwd=settings.BASE_DIR)  # noqa: S603
        try:
            while web.poll() is None and worker.poll() is None:
                time.sleep(0.5)
            which = "gunicorn" if web.poll() is not None else "The Celery worker"
            code = web.returncode if web.poll() is not None else worker.returncode
            raise CommandError(f"{which} exited with code {code}.")
        except KeyboardInterrupt:
            self.stdout.write("\nStopping the web server and the worker")
        finally:
            self.stop(web, worker)

    def ready_model(self, dataset, role: str, params: dict) -> TrainedModel:
        existing = TrainedModel.objects.filter(dataset=dataset, role=role, status="ready", params=params).order_by("-pk").first()
        if existing is not None:
            self.step(f"Reusing the trained {role} #{existing.pk}")
            return existing
        self.step(f"Training the {role} ({params})")
        trained = training.model_create(dataset=dataset, role=role, params=params)
        return training.model_train(trained_id=trained.pk, echo=self.echo)

    def echo(self, info: dict) -> None:
        loss = f" loss {info['loss']:.4f}" if "loss" in info else ""
        self.stdout.write(f"\r  {info.get('stage', '')} {info.get('step', 0)}/{info.get('total', 0)}{loss}      ", ending="")
        self.stdout.flush()
        if info.get("step") == info.get("total"):
            self.stdout.write("")

    def build_clustering(self, base, opts) -> Study:
        from studyapp.pipeline import clustering

        if not Study.objects.filter(slug=SLUG_B).exists():
            self.step("Making Study B from the published clustering template (XNN paper section 4.1)")
            study_from_template(template="clustering", slug=SLUG_B)
        study = Study.objects.get(slug=SLUG_B)
        real = {label: d for label, d in (("CUB", settings.CUB_DIR), ("CEL", settings.CEL_DIR)) if d}
        if real:
            self.step(f"Building Study B on real images ({', '.join(f'{k}={v}' for k, v in real.items())}); "
                      "stand-ins for any data set not configured")
        else:
            self.step("Building Study B from four digit classes per data set (stand-ins for CUB and CEL; "
                      "set CUB_DIR / CEL_DIR for the real images)")
        if not study.stimuli.exists() or not study.parsed_config.models:
            echo = lambda m: self.stdout.write("  " + m)  # noqa: E731
            try:
                datasets = clustering.clustering_datasets(
                    study=study, base=base, cub_dir=settings.CUB_DIR, cel_dir=settings.CEL_DIR, size=settings.STUDY_B_IMAGE_SIZE,
                )
            except PipelineError as exc:
                raise CommandError(str(exc)) from exc
            options = {"standin_epochs": opts["standin_epochs"], "backbone": settings.STUDY_B_BACKBONE,
                       "backbone_epochs": opts["backbone_epochs"]}
            clustering.clustering_build(study=study, datasets=datasets, echo=echo, classifier_options=options, xnn_epochs=opts["xnn_epochs"])
        study.refresh_from_db()
        return study

    def precompute(self, studies: list[Study]) -> None:
        jobs = []
        for study in studies:
            with transaction.atomic():
                jobs.append(precompute.start(study=study, methods=selectors.study_methods(study=study)))
        if all(job.total == 0 for job in jobs):
            self.stdout.write("  every explanation is already stored")
            return
        worker = self.start_worker()
        try:
            while True:
                for job in jobs:
                    job.refresh_from_db()
                done, total = sum(j.done for j in jobs), sum(j.total for j in jobs)
                self.stdout.write(f"\r  {done}/{total} explanations stored      ", ending="")
                self.stdout.flush()
                if all(j.status in (PrecomputeJob.Status.DONE, PrecomputeJob.Status.FAILED) for j in jobs):
                    break
                if worker.poll() is not None:
                    raise CommandError(f"The Celery worker exited with code {worker.returncode}.")
                time.sleep(1)
        finally:
            self.stop(worker)
        self.stdout.write("")
        for job, study in zip(jobs, studies, strict=True):
            if job.status == PrecomputeJob.Status.FAILED:
                raise CommandError(f"Precompute for {study.slug} failed: {job.message}")
            problems = selectors.study_readiness(study=study)
            if problems:
                raise CommandError(f"{study.slug} is not ready: " + "; ".join(problems))

    def admin_login(self) -> str:
        password = secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return password

