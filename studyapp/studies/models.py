"""Studies, arms, participants and everything a participant answers.

The server is the source of truth for where a participant is: ``Participant.plan`` is the list
of steps drawn for them at enrolment, ``Participant.step_index`` points at the current one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
import string

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.signals import pre_save
from django.dispatch import receiver

from studyapp.lib.study_config import StudyConfig, StudyConfigError, read_config, validate_config

#: The alphabet of a study's public code: lower-case letters and digits (a URL slug's characters).
PUBLIC_CODE_ALPHABET = string.ascii_lowercase + string.digits
PUBLIC_CODE_LENGTH = 16  # 36**16: about 82 bits, not guessable


def new_public_code() -> str:
    """A fresh random public code (the participant link is ``/s/<code>/``)."""
    return "".join(secrets.choice(PUBLIC_CODE_ALPHABET) for _ in range(PUBLIC_CODE_LENGTH))


class Study(models.Model):
    class Design(models.TextChoices):
        LEARNING = "learning", "Learning (Kannada-MNIST, between-subject arms)"
        CLUSTERING = "clustering", "Clustering (CUB/CEL, within-subject stages)"
        SIMULATION = "simulation", "Forward simulation (pre-test, learning, post-test; between-subject arms)"
        DECISION = "decision", "AI-assisted decision (answer alone, then with the model's answer and explanation)"
        HIVE = "hive", "HIVE agreement and distinction (confidence in a prediction; pick the model's answer)"
        BIAS = "bias", "Bias discovery (what does the model rely on? scored against a planted cue)"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    class CorrectMode(models.TextChoices):
        PREDICTION = "prediction", "The model's prediction (learn to predict the network)"
        TRUTH = "truth", "The ground-truth label"

    class StimulusOrder(models.TextChoices):
        FIXED = "fixed", "The same fixed sequence for everyone"
        SEEDED = "seeded", "A per-participant shuffled order (seeded by participant)"

    slug = models.SlugField(
        unique=True, help_text="The researcher's name for the study (admin, exports); participants never see it.",
    )
    public_code = models.CharField(
        max_length=32, unique=True, default=new_public_code, editable=False,
        help_text="Random and opaque: the participant link is /s/<public code>/ (it names nothing about the study).",
    )
    title = models.CharField(max_length=200)
    language = models.CharField(
        max_length=10, default="en",
        help_text="The language of the participant pages (settings.LANGUAGES); enter the study's own texts in it.",
    )
    design = models.CharField(max_length=20, choices=Design.choices, default=Design.LEARNING)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)

    # What the participant reads. All editable in the admin.
    consent_text = models.TextField()
    cover_story = models.TextField(help_text="Shown at the top of the instructions page.")
    instructions = models.JSONField(default=list, help_text="List of instruction steps shown as a numbered list.")
    completion_text = models.TextField(default="Thank you for taking part.")
    prolific_completion_code = models.CharField(max_length=40, blank=True)
    completion_redirect_url = models.URLField(
        blank=True, help_text="e.g. https://app.prolific.com/submissions/complete?cc=CODE"
    )

    # Learning design.
    classes = models.JSONField(default=list, help_text="Data-set class ids used by the study, e.g. [3, 7].")
    class_names = models.JSONField(default=list, help_text='Made-up names, e.g. ["Ternal", "Peat"].')
    n_trials = models.PositiveSmallIntegerField(default=20)
    correct_mode = models.CharField(max_length=12, choices=CorrectMode.choices, default=CorrectMode.PREDICTION)
    stimulus_order = models.CharField(max_length=10, choices=StimulusOrder.choices, default=StimulusOrder.FIXED)
    rating_question = models.CharField(max_length=300, default="How did you find the feedback?")
    rating_scale = models.JSONField(default=list, help_text="Ordered labels, lowest first.")

    dropout_minutes = models.PositiveIntegerField(
        default=60, help_text="An unfinished run idle this long no longer holds its arm slot."
    )
    config = models.JSONField(
        default=dict, blank=True, help_text="Further settings (data set, stimulus selection, exclusions...)."
    )
    config_hash = models.CharField(max_length=64, editable=False, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.title

    @property
    def parsed_config(self) -> StudyConfig:
        """``config`` read through the one typed reader (every key's default and parsing)."""
        return read_config(self.config)

    def clean(self) -> None:
        super().clean()
        try:
            validate_config(self.config)
        except StudyConfigError as e:
            raise ValidationError({"config": str(e)}) from None

    def design_snapshot(self) -> dict:
        """The study's design as a version freezes it: `DESIGN_FIELDS` and its arms (with ids)."""
        design = {field: copy.deepcopy(getattr(self, field)) for field in DESIGN_FIELDS}
        design["arms"] = [
            {"id": a.pk, **{field: getattr(a, field) for field in ARM_FIELDS}} for a in self.arms.order_by("position", "pk")
        ] if self.pk else []
        return design

    def compute_config_hash(self) -> str:
        """The configuration hash new runs get (`config_hash_of`): the latest version's stored hash
        when the design is still that version's (so that a run's hash names its version, also for
        versions stored before the hash had one definition), else the hash of the design now."""
        design = self.design_snapshot()
        digest = config_hash_of(design)
        if self.pk:
            latest = self.versions.order_by("-number").values_list("config_hash", "design").first()
            if latest is not None and (latest[0] == digest or config_hash_of(latest[1]) == digest):
                return latest[0]
        return digest


#: The study fields a version freezes and the configuration hash covers: everything a participant
#: reads or an answer is scored by.
DESIGN_FIELDS = (
    "design", "language", "consent_text", "cover_story", "instructions", "completion_text", "classes",
    "class_names", "n_trials", "correct_mode", "stimulus_order", "rating_question", "rating_scale", "config",
)
ARM_FIELDS = ("name", "feedback", "instruction", "cap")


def config_hash_of(design: dict) -> str:
    """The configuration hash, the one definition: sha256 of a design (`Study.design_snapshot`,
    a `StudyVersion.design`) as sorted JSON, over `DESIGN_FIELDS` and each arm's `ARM_FIELDS` in
    their order, without the arms' database ids (a copied study of the same design has the same
    hash). Fields missing from an old stored design are left out."""
    payload = {field: design[field] for field in DESIGN_FIELDS if field in design}
    payload["arms"] = [{field: a.get(field) for field in ARM_FIELDS} for a in design.get("arms", [])]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class Arm(models.Model):
    class Feedback(models.TextChoices):
        CONTROL = "control", "Correct / incorrect only"
        GRADCAM = "gradcam", "Grad-CAM heatmap"
        CDEEPEX = "cdeepex", "CDeepEx morph animation"
        XGEMS = "xgems", "xGEMs morph animation (ablation)"
        GAD = "gad", "GAD heatmap (what sets the two classes apart)"
        NEAREST = "nearest", "Nearest training examples of the predicted class"
        WITHIN = "within", "Within-subject stages (clustering design)"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="arms")
    name = models.CharField(max_length=50)
    feedback = models.CharField(max_length=20, choices=Feedback.choices)
    instruction = models.TextField(help_text="The arm's bullet on the instructions page (Table 5.1).")
    cap = models.PositiveIntegerField(null=True, blank=True, help_text="Maximum participants; blank = no cap.")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["study", "position", "pk"]
        constraints = [models.UniqueConstraint(fields=["study", "name"], name="arm_unique_name")]

    def __str__(self) -> str:
        return f"{self.study.slug}/{self.name}"


class StudyVersion(models.Model):
    """A frozen copy of a study's design, made when a participant enrols under it.

    Rows are never edited: an edit of the study makes the next version (with the list of what
    changed) and runs enrolled under an earlier version keep reading theirs
    (`studyapp.studies.versions`).
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    config_hash = models.CharField(max_length=64)
    design = models.JSONField(help_text="The study's design fields and arms as they were.")
    changes = models.JSONField(default=list, blank=True, help_text="What differs from the previous version.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "number"]
        constraints = [models.UniqueConstraint(fields=["study", "number"], name="study_version_unique_number")]

    def __str__(self) -> str:
        return f"{self.study.slug} v{self.number}"


class Participant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        FAILED_CHECKS = "failed_checks", "Ended: failed the comprehension checks"
        TIMED_OUT = "timed_out", "Ended: past the time limit"
        REJECTED = "rejected", "Rejected by the researcher (data kept)"

    #: The runs that hold an arm or order slot are completed or active (and not stale); the
    #: others have ended without a usable run and free theirs.
    ENDED = (Status.FAILED_CHECKS, Status.TIMED_OUT, Status.REJECTED)

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="participants")
    code = models.CharField(max_length=32, unique=True, help_text="Opaque, unguessable.")
    arm = models.ForeignKey(Arm, on_delete=models.PROTECT, related_name="participants")
    prolific_pid = models.CharField(max_length=64, blank=True)
    prolific_study_id = models.CharField(max_length=64, blank=True)
    prolific_session_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    is_test = models.BooleanField(
        default=False, help_text="A preview or pilot run by staff: no arm slot, left out of analyses and exports.",
    )
    rejected_reason = models.TextField(blank=True, help_text="Why the researcher rejected this run (data kept).")
    plan = models.JSONField(help_text="The steps drawn for this participant, in order.")
    order_cell = models.CharField(
        max_length=120, blank=True, default="",
        help_text="Clustering design: the counterbalancing cell of the plan (stage and data-set order).",
    )
    step_index = models.PositiveIntegerField(default=0)
    step_shown_at = models.DateTimeField(null=True, blank=True)
    consent_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    completion_code = models.CharField(max_length=40, blank=True)
    config_hash = models.CharField(max_length=64, help_text="The study configuration this run was drawn under.")
    time_extensions = models.JSONField(
        default=dict, blank=True,
        help_text='More time the participant asked for (WCAG 2.2.1): {"study": n, "steps": {"<step index>": n}}.',
    )
    version = models.ForeignKey(
        StudyVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="participants",
        help_text="The frozen design this run reads (null only for runs enrolled before versions existed).",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["study", "prolific_pid"],
                condition=~models.Q(prolific_pid=""),
                name="participant_one_run_per_prolific_pid",
            ),
        ]
        indexes = [models.Index(fields=["study", "status", "last_seen_at"])]

    def __str__(self) -> str:
        return f"{self.code[:8]}… ({self.arm.name})"

    @property
    def current_step(self) -> dict:
        return self.plan[self.step_index]


class TrialAnswer(models.Model):
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="answers")
    trial_index = models.PositiveSmallIntegerField()
    stimulus = models.ForeignKey("pipeline.Stimulus", on_delete=models.PROTECT, related_name="answers")
    choice = models.PositiveSmallIntegerField(help_text="Data-set class id chosen.")
    correct_label = models.PositiveSmallIntegerField(help_text="The class counted as correct for this study.")
    correct = models.BooleanField()
    shown_at = models.DateTimeField()
    answered_at = models.DateTimeField()
    response_ms = models.PositiveIntegerField()
    client_response_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="The browser's own response time (image shown to click), as it reported it.",
    )

    class Meta:
        ordering = ["participant", "trial_index"]
        constraints = [
            models.UniqueConstraint(fields=["participant", "trial_index"], name="answer_once_per_trial"),
        ]

    def __str__(self) -> str:
        return f"{self.participant_id} trial {self.trial_index}"


class CheckAnswer(models.Model):
    """One attempt at a comprehension quiz or one catch trial: what was answered and whether it
    passed (the ``attention_check`` the exclusion rules read)."""

    class Kind(models.TextChoices):
        QUIZ = "quiz", "Comprehension quiz"
        CATCH = "catch", "Catch trial (instructed response)"

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="checks")
    step_index = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    attempt = models.PositiveSmallIntegerField(default=1)
    answers = models.JSONField()
    passed = models.BooleanField()
    shown_at = models.DateTimeField()
    answered_at = models.DateTimeField()

    class Meta:
        ordering = ["participant", "step_index", "attempt"]
        constraints = [
            models.UniqueConstraint(fields=["participant", "step_index", "attempt"], name="check_attempt_once"),
        ]

    def __str__(self) -> str:
        return f"{self.participant_id} {self.kind} step {self.step_index} attempt {self.attempt}"


class QuestionAnswer(models.Model):
    """Ratings, demographics, confidence, comments: one row per question and participant."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="questions")
    key = models.CharField(max_length=60, help_text="e.g. 'feedback_rating', 'confidence:XNN', 'age_band'.")
    value = models.JSONField()
    shown_at = models.DateTimeField(null=True, blank=True, help_text="When the question's step was shown.")
    answered_at = models.DateTimeField()

    class Meta:
        ordering = ["participant", "answered_at"]
        constraints = [models.UniqueConstraint(fields=["participant", "key"], name="question_once")]

    def __str__(self) -> str:
        return f"{self.participant_id} {self.key}"


class Grouping(models.Model):
    """A participant's clustering of one batch of images (clustering design)."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="groupings")
    step_index = models.PositiveSmallIntegerField()
    stage = models.CharField(max_length=20)
    dataset = models.CharField(max_length=20)
    set_index = models.PositiveSmallIntegerField()
    assignment = models.JSONField(help_text="stimulus id -> cluster number")
    purity = models.FloatField()
    shown_at = models.DateTimeField()
    saved_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["participant", "step_index"], name="grouping_once_per_step"),
        ]

    def __str__(self) -> str:
        return f"{self.participant_id} step {self.step_index} ({self.stage}, {self.dataset})"


class InteractionEvent(models.Model):
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="events")
    step_index = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=40)
    payload = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["participant", "at"]

    def __str__(self) -> str:
        return f"{self.participant_id} {self.kind} at step {self.step_index}"


class FixtureOverwriteError(ValueError):
    """A fixture (``loaddata``) tried to write over a study or arm that exists."""


@receiver(pre_save, sender=Study)
@receiver(pre_save, sender=Arm)
def _fixtures_never_overwrite(sender, instance, raw: bool = False, **kwargs) -> None:
    """``loaddata`` saves rows "raw" with their primary keys, which would change a running study
    in place: refuse a taken primary key or slug (the whole fixture is then not loaded).
    New studies are made from templates (``studyapp.studies.designs``) instead."""
    if not raw:
        return
    taken = sender.objects.filter(pk=instance.pk).exists()
    if sender is Study and not taken and Study.objects.filter(slug=instance.slug).exists():
        raise FixtureOverwriteError(f"A study with the slug '{instance.slug}' exists already; the fixture was not loaded.")
    if taken:
        raise FixtureOverwriteError(
            f"{sender._meta.verbose_name} {instance.pk} exists already; a fixture never overwrites a study "
            "(make a new one with `manage.py create_study --template ...`). Nothing was loaded."
        )
