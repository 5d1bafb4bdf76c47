"""Data sets, trained models, stimuli and their precomputed explanations."""

from __future__ import annotations

from django.db import models


class Dataset(models.Model):
    class Kind(models.TextChoices):
        KANNADA = "kannada", "Kannada-MNIST"
        LOOKALIKE = "lookalike", "Kannada look-alike (generated offline, stand-in)"
        CUB = "cub", "CUB-200-2011 gulls"
        CEL = "cel", "CEL cells (class per folder)"
        DIGIT_STANDIN = "digit_standin", "Digit stand-in for CUB/CEL"
        IMAGES = "images", "Image folders (your own)"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    source = models.CharField(
        max_length=500,
        help_text="Directory, URL or generator it came from; for image folders also the stored size, grey or colour, and the split.",
    )
    is_standin = models.BooleanField(
        default=False, help_text="Not the real data set of the published study. Shown to staff only."
    )
    file = models.CharField(max_length=300, help_text="npz under MEDIA_ROOT with x_train/y_train/x_test/y_test.")
    fingerprint = models.CharField(max_length=64)
    class_names = models.JSONField(default=list)
    n_train = models.PositiveIntegerField(default=0)
    n_test = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name}{' (stand-in)' if self.is_standin else ''}"


class TrainedModel(models.Model):
    class Role(models.TextChoices):
        CLASSIFIER = "classifier", "Classifier"
        VAE = "vae", "VAE generator"
        WGAN = "wgan", "WGAN generator"
        XNN = "xnn", "XNN / SRAE"
        GENERATOR = "generator", "Registered generator (decoder, no encoder)"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Training"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="models")
    role = models.CharField(max_length=20, choices=Role.choices)
    arch = models.CharField(max_length=100)
    params = models.JSONField(default=dict, blank=True, help_text="Training parameters.")
    checkpoint = models.CharField(max_length=300, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    test_accuracy = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    progress = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.get_role_display()} #{self.pk} on {self.dataset.name} ({self.status})"


class Stimulus(models.Model):
    """One image shown to participants, with what the study's classifier made of it."""

    study = models.ForeignKey("studies.Study", on_delete=models.CASCADE, related_name="stimuli")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT)
    split = models.CharField(max_length=10, default="test")
    index = models.PositiveIntegerField(help_text="Row of the image in the data set split.")
    position = models.PositiveIntegerField(help_text="Order in the study's fixed sequence.")
    group = models.CharField(
        max_length=20, blank=True, help_text="Clustering studies: the data set label shown in analyses, e.g. CUB or CEL."
    )
    set_index = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Clustering studies: which pre-drawn set of images it belongs to."
    )
    image = models.CharField(max_length=300, help_text="PNG under MEDIA_ROOT, named by content hash.")
    true_label = models.PositiveSmallIntegerField()
    model_prediction = models.PositiveSmallIntegerField()
    probabilities = models.JSONField(default=list)
    classifier = models.ForeignKey(TrainedModel, on_delete=models.PROTECT, related_name="stimuli")
    cued = models.BooleanField(
        default=False, help_text="Bias studies: the image carries the planted cue (drawn when selected; config.bias.cued_share)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "position"]
        constraints = [
            models.UniqueConstraint(fields=["study", "position"], name="stimulus_unique_position"),
        ]
        verbose_name_plural = "stimuli"

    def __str__(self) -> str:
        return f"stimulus {self.pk} (#{self.position}, label {self.true_label}, pred {self.model_prediction})"


class ExplanationAsset(models.Model):
    class Method(models.TextChoices):
        GRADCAM = "gradcam", "Grad-CAM"
        CDEEPEX = "cdeepex", "CDeepEx morph"
        XGEMS = "xgems", "xGEMs morph (ablation)"
        EXCITATION_BP = "excitation_bp", "ExcitationBP (c-MWP)"
        DEEPLIFT = "deeplift", "DeepLIFT"
        XNN = "xnn", "XNN x-feature heatmaps"
        GAD = "gad", "GAD map (two-class contrast)"
        NEAREST = "nearest", "Nearest training examples of the predicted class"

    stimulus = models.ForeignKey(Stimulus, on_delete=models.CASCADE, related_name="explanations")
    method = models.CharField(max_length=20, choices=Method.choices)
    params = models.JSONField(default=dict)
    params_hash = models.CharField(max_length=64)
    files = models.JSONField(default=dict, help_text="Role -> media path, e.g. {'gif': 'assets/ab/ab12.gif'}.")
    valid = models.BooleanField(default=False)
    reasons = models.JSONField(default=list, blank=True, help_text="Why it fails the validity metrics.")
    reason_codes = models.JSONField(
        default=list, blank=True,
        help_text="One code per reason (explainers.metrics.REASON_CODES), e.g. ['crossover']: which rule of this method's gate refused it.",
    )
    metrics = models.JSONField(default=dict, blank=True)
    morph_pixel_change = models.FloatField(
        null=True, blank=True, help_text="Morphs: mean absolute pixel change of the last displayed frame (0..1)."
    )
    morph_latent_distance = models.FloatField(null=True, blank=True, help_text="Morphs: latent distance ||z_T - z0||.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["stimulus", "method", "params_hash"], name="explanation_unique_per_params"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} for stimulus {self.stimulus_id} ({'valid' if self.valid else 'invalid'})"


class PrecomputeJob(models.Model):
    class Kind(models.TextChoices):
        TRAIN = "train", "Train models"
        EXPLAIN = "explain", "Precompute explanations"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    study = models.ForeignKey("studies.Study", on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0, help_text="Explanations to compute.")
    done = models.PositiveIntegerField(default=0, help_text="Explanations stored (recounted from assets).")
    failed = models.PositiveIntegerField(default=0, help_text="Batches that failed after all retries.")
    plan = models.JSONField(default=list, blank=True, help_text="The batches: method, params hash, stimulus ids.")
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.study} ({self.done}/{self.total}, {self.status})"
