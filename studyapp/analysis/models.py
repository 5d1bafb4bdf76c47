"""Result sets imported from a CSV (data collected elsewhere), analysed like a study's own data."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ImportedResults(models.Model):
    """A validated results file in the tidy schema, stored column-wise as JSON.

    ``data`` holds the frames the analysis reads, each as ``{column: [values]}``: ``trials`` and
    ``ratings`` (learning design), or ``groupings``, ``confidence`` and ``agent_ratings``
    (clustering design). ``config`` holds the analysis settings (tests, alpha, exclusions), as
    a study's ``config`` does. ``config_hash`` is the study configuration hash the rows carry
    (blank when the file has none); ``meta`` records where the data came from.
    """

    class Design(models.TextChoices):
        LEARNING = "learning", "Learning (tidy trials: one row per trial)"
        CLUSTERING = "clustering", "Clustering (tidy groupings: one row per image)"

    name = models.CharField(max_length=200)
    study_design = models.CharField(max_length=20, choices=Design.choices, default=Design.LEARNING)
    config_hash = models.CharField(max_length=64, blank=True)
    config = models.JSONField(default=dict, blank=True, help_text="Analysis settings: tests, alpha, exclusions.")
    data = models.JSONField(default=dict, editable=False)
    meta = models.JSONField(default=dict, editable=False)
    n_rows = models.PositiveIntegerField(default=0)
    n_participants = models.PositiveIntegerField(default=0)
    uploaded_at = models.DateTimeField()
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-uploaded_at", "-pk"]
        verbose_name = "imported result set"
        verbose_name_plural = "imported result sets"

    def __str__(self) -> str:
        return f"{self.name} ({self.n_participants} participants)"
