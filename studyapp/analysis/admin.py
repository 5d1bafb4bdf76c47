"""Imported result sets in the admin: list, rename, edit analysis settings, open the analysis.

Adding one goes through the upload form (`views.import_upload`), which validates the file.
"""

from __future__ import annotations

from django.contrib import admin
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html

from studyapp.analysis.models import ImportedResults


@admin.register(ImportedResults)
class ImportedResultsAdmin(admin.ModelAdmin):
    list_display = ("name", "study_design", "n_participants", "n_rows", "short_hash", "uploaded_at", "analysis_link")
    list_filter = ("study_design",)
    search_fields = ("name", "config_hash")
    fields = (
        "name", "study_design", "config", "config_hash", "n_participants", "n_rows", "source",
        "uploaded_at", "uploaded_by", "analysis_link",
    )
    readonly_fields = (
        "study_design", "config_hash", "n_participants", "n_rows", "source", "uploaded_at",
        "uploaded_by", "analysis_link",
    )

    @admin.display(description="Config hash")
    def short_hash(self, obj: ImportedResults) -> str:
        return obj.config_hash[:12] or "-"

    @admin.display(description="Source")
    def source(self, obj: ImportedResults) -> str:
        meta = obj.meta or {}
        hashes = ", ".join(f"{h[:12]} ({n})" for h, n in meta.get("config_hashes", {}).items()) or "none"
        return format_html(
            "{} (sha256 {}…); participants file: {}; config hashes in the file: {}; software: {}",
            meta.get("filename") or "-", (meta.get("file_sha256") or "")[:16],
            meta.get("participants_filename") or "-", hashes,
            ", ".join(meta.get("software_versions", [])) or "-",
        )

    @admin.display(description="Analysis")
    def analysis_link(self, obj: ImportedResults) -> str:
        if not obj.pk:
            return "-"
        return format_html('<a href="{}">open the analysis</a>', reverse("analysis-imported", args=[obj.pk]))

    def add_view(self, request, form_url="", extra_context=None):
        return redirect("analysis-import")
