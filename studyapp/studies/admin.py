"""Staff side: configure studies and arms, open/close, precompute, watch progress, export CSV."""

from __future__ import annotations

import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from studyapp.lib.study_config import StudyConfig
from studyapp.pipeline import precompute
from studyapp.pipeline import selectors as pipeline_selectors
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import Dataset, TrainedModel
from studyapp.pipeline.stimuli import stimuli_select
from studyapp.studies import (
    access,
    disclosure,
    exports,
    looks,
    plans,
    selectors,
    services,
    versions,
)
from studyapp.studies.designs import TEMPLATES, TemplateError, comma_list
from studyapp.studies.designs.create import study_copy, study_from_template
from studyapp.studies.errors import FlowError
from studyapp.studies.models import (
    Arm,
    InteractionEvent,
    Participant,
    QuestionAnswer,
    Study,
    StudyVersion,
    TrialAnswer,
)
from studyapp.studies.steps import registry


def _type_of(schema: dict, defs: dict) -> str:
    """A JSON Schema property in words: its type, allowed values and bounds."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1] + " (see below)"
    if "anyOf" in schema:
        return " or ".join(_type_of(s, defs) for s in schema["anyOf"])
    if "enum" in schema or "const" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema.get("enum", [schema.get("const")]))
    kind = schema.get("type", "any")
    if kind == "array":
        return "list of " + _type_of(schema.get("items", {}), defs)
    if kind == "object" and "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
        keys = schema.get("propertyNames", {}).get("enum")
        return ("object of " + (", ".join(keys) if keys else "keys") + " → "
                + _type_of(schema["additionalProperties"], defs))
    bounds = [f"{op} {schema[k]}" for k, op in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"),
                                                  ("exclusiveMaximum", "<")) if k in schema]
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def config_reference() -> list[dict]:
    """Every key of ``Study.config`` and of its nested parts, from the typed model's JSON Schema."""
    schema = StudyConfig.model_json_schema()
    defs = schema.get("$defs", {})
    rows = []

    def add(prefix: str, part: dict) -> None:
        required = set(part.get("required", []))
        for key, prop in part.get("properties", {}).items():
            default = json.dumps(prop["default"]) if "default" in prop else "(required)" if key in required else "(empty)"
            rows.append({"key": prefix + key, "type": _type_of(prop, defs), "default": default,
                         "description": prop.get("description", "")})

    add("", schema)
    for name, part in defs.items():
        add(name + ".", part)
    return rows


class PrettyJSONField(forms.JSONField):
    """The configuration as indented JSON, one key a line (what is typed back is parsed as usual)."""

    def prepare_value(self, value):
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


class ConfigEditor(forms.Textarea):
    """``Study.config`` as JSON, with a reference of every key generated from the typed model
    (`StudyConfig`); the model's check on save refuses an unknown key or a bad value, naming it."""

    def render(self, name, value, attrs=None, renderer=None):
        reference = render_to_string("admin/studies/study/config_reference.html", {
            "reference": config_reference(), "schema_url": reverse("admin:study-config-schema"),
        })
        editor = super().render(name, value, {**(attrs or {}), "style": "width: 100%; font-family: monospace"}, renderer)
        return mark_safe(f'<div class="config-editor" style="display: block; width: 100%">{editor}{reference}</div>')  # noqa: S308 - our own template, escaped


class ArmInline(admin.TabularInline):
    model = Arm
    extra = 0
    fields = ("position", "name", "feedback", "instruction", "cap")


class StudyVersionInline(admin.TabularInline):
    """The study's frozen versions, newest first, each with what it changed (read-only)."""

    model = StudyVersion
    extra = 0
    can_delete = False
    ordering = ("-number",)
    fields = ("number", "created_at", "short_hash", "n_runs", "what_changed")
    readonly_fields = fields
    verbose_name = "version (frozen design; runs read the version they were enrolled under)"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Hash")
    def short_hash(self, obj: StudyVersion) -> str:
        return obj.config_hash[:12]

    @admin.display(description="Runs")
    def n_runs(self, obj: StudyVersion) -> int:
        return obj.participants.count()

    @admin.display(description="What changed from the previous version")
    def what_changed(self, obj: StudyVersion) -> str:
        if obj.number == 1:
            return "(first version)"
        items = format_html_join(
            "", "<li><b>{}</b>: {} → {}</li>",
            ((c["field"], _short(c["before"]), _short(c["after"])) for c in obj.changes),
        )
        return format_html("<ul style='margin:0'>{}</ul>", items) if obj.changes else "(no change)"


def _short(value: object, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class StudyForm(forms.ModelForm):
    """A study's design form: its language is fixed once runs exist (their interface must stay in
    the language their frozen texts are written in; a new language is a new study)."""

    class Meta:
        model = Study
        fields = "__all__"  # noqa: DJ007 - the admin's fieldsets choose what is shown

    def clean_language(self):
        language = self.cleaned_data["language"]
        if self.instance.pk and language != self.instance.language and self.instance.participants.exists():
            raise forms.ValidationError(
                "Participants have started this study, so its language can no longer change: copy the study for another language."
            )
        return language


class TemplateStudyForm(forms.Form):
    """The choices of ``create_study`` (the same service behind both)."""

    template = forms.ChoiceField(choices=[(t.name, f"{t.name}: {t.source}") for t in TEMPLATES.values()])
    slug = forms.SlugField(help_text="The study's name in the admin (participants never see it).")
    title = forms.CharField(required=False, help_text="Default: the template's.")
    dataset = forms.ModelChoiceField(Dataset.objects.order_by("name"), required=False,
                                     help_text="Your data set. Empty: the published study as published.")
    dataset2 = forms.ModelChoiceField(Dataset.objects.order_by("name"), required=False, help_text="Clustering: a second data set.")
    classes = forms.CharField(required=False, help_text="Learning: the two classes, by folder name or number, e.g. curl,loop.")
    names = forms.CharField(required=False, help_text="Learning: the made-up names participants see, e.g. Ternal,Peat.")
    classifier = forms.ModelChoiceField(TrainedModel.objects.filter(role="classifier", status="ready").select_related("dataset"),
                                        required=False, help_text="The classifier of the data set.")
    classifier2 = forms.ModelChoiceField(TrainedModel.objects.filter(role="classifier", status="ready").select_related("dataset"),
                                         required=False, help_text="Clustering: the classifier of the second data set.")
    generator = forms.ModelChoiceField(
        TrainedModel.objects.filter(status="ready").exclude(role__in=["classifier", "xnn"]).select_related("dataset"),
        required=False, help_text="Learning: the VAE/WGAN for the CDeepEx arm.",
    )
    arms = forms.CharField(required=False, help_text="Keep only these arms, e.g. Control,GCAM (default: all).")


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    form = StudyForm
    list_display = ("title", "slug", "design", "status", "participant_link", "n_participants", "dashboard_link")
    list_filter = ("status", "design")
    inlines = [ArmInline, StudyVersionInline]
    readonly_fields = ("config_hash", "created_at", "updated_at", "participant_link", "study_notes")
    actions = [
        "open_studies", "close_studies", "select_stimuli", "precompute_explanations", "copy_studies", "delete_test_runs",
        "compare_studies",
    ]
    change_list_template = "admin/studies/study/change_list.html"
    fieldsets = (
        (None, {"fields": ("title", "slug", "language", "design", "status", "participant_link")}),
        ("Texts shown to participants", {"fields": ("consent_text", "cover_story", "instructions", "completion_text")}),
        ("Trials", {"fields": ("classes", "class_names", "n_trials", "correct_mode", "stimulus_order")}),
        ("Rating", {"fields": ("rating_question", "rating_scale")}),
        ("Completion and recruitment", {"fields": ("prolific_completion_code", "completion_redirect_url", "dropout_minutes")}),
        ("Further configuration", {"fields": ("study_notes", "config", "config_hash", "created_at", "updated_at")}),
    )

    # A URL typed without a scheme means https (Django 6's default; 5.2 warns a deprecation without it).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "language":  # one of settings.LANGUAGES: the participant pages' language
            return forms.ChoiceField(choices=settings.LANGUAGES, initial=db_field.default, help_text=db_field.help_text)
        if db_field.name == "config":
            kwargs["form_class"] = PrettyJSONField
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "config" and field is not None:
            field.widget = ConfigEditor(attrs={"rows": 18, "cols": 100, "spellcheck": "false"})
        return field

    @admin.display(description="Participant link")
    def participant_link(self, obj: Study) -> str:
        if not obj.pk:
            return "-"
        url = reverse("study", kwargs={"study_code": obj.public_code})
        return format_html('<a href="{}" target="_blank">{}</a>', url, url)

    @admin.display(description="The study's notes")
    def study_notes(self, obj: Study) -> str:
        """``config.notes``: where the published design is silent and what was chosen (edit it in the configuration)."""
        return obj.parsed_config.notes or "(none: add \"notes\" to the configuration)"

    @admin.display(description="Participants")
    def n_participants(self, obj: Study) -> int:
        return obj.participants.count()

    @admin.display(description="Status")
    def dashboard_link(self, obj: Study) -> str:
        return format_html(
            '<a href="{}">status, progress &amp; exports</a> · <a href="{}">analysis</a>',
            reverse("admin:study-dashboard", args=[obj.pk]), reverse("analysis-study", args=[obj.pk]),
        )

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        services.study_refresh_config_hash(study=form.instance)
        # A warning, not a refusal: the study is saved as written (a study may mean to say so).
        for warning in disclosure.disclosure_warnings(form.instance):
            self.message_user(request, f"Check what participants learn: {warning}", messages.WARNING)
        before = form.instance.versions.order_by("-number").values_list("number", flat=True).first()
        version = versions.version_after_edit(study=form.instance)
        if version is not None and version.number != before:
            changed = ", ".join(c["field"] for c in version.changes) or "nothing"
            self.message_user(
                request,
                f"The study has runs, so this edit made version {version.number} (changed: {changed}). "
                "Runs already enrolled keep reading the version they started under.",
                messages.WARNING,
            )

    def get_urls(self):
        own = [
            path("<int:pk>/dashboard/", self.admin_site.admin_view(self.dashboard), name="study-dashboard"),
            path("<int:pk>/export/<str:kind>.csv", self.admin_site.admin_view(self.export), name="study-export"),
            path("<int:pk>/pilot/", self.admin_site.admin_view(self.pilot), name="study-pilot"),
            path("<int:pk>/colours/", self.admin_site.admin_view(self.colours), name="study-colours"),
            path("config-schema.json", self.admin_site.admin_view(self.config_schema), name="study-config-schema"),
            path("from-template/", self.admin_site.admin_view(self.from_template), name="study-from-template"),
        ]
        return own + super().get_urls()

    # -- actions -------------------------------------------------------------------------------
    @admin.action(description="Open for participants")
    def open_studies(self, request: HttpRequest, queryset) -> None:
        for study in queryset:
            try:
                services.study_open(study=study)
                self.message_user(request, f"{study}: open.", messages.SUCCESS)
            except FlowError as exc:
                self.message_user(request, f"{study}: {exc.message}", messages.ERROR)

    @admin.action(description="Close to new participants")
    def close_studies(self, request: HttpRequest, queryset) -> None:
        for study in queryset:
            services.study_close(study=study)
        self.message_user(request, f"Closed {queryset.count()} stud(ies).", messages.SUCCESS)

    @admin.action(description="Select stimuli (learning: same for all arms; clustering: train the XNNs, draw the sets)")
    def select_stimuli(self, request: HttpRequest, queryset) -> None:
        from studyapp.pipeline import tasks
        from studyapp.pipeline.models import TrainedModel

        for study in queryset:
            if study.design == Study.Design.CLUSTERING:
                transaction.on_commit(lambda pk=study.pk: tasks.prepare_clustering.delay(pk))
                self.message_user(
                    request, f"{study}: queued on a Celery worker: each data set's XNN and image sets "
                    "(then precompute the explanations).", messages.SUCCESS,
                )
                continue
            classifier = TrainedModel.objects.filter(pk=study.parsed_config.classifier_id).first()
            if classifier is None:
                self.message_user(request, f"{study}: set config.classifier_id to a ready classifier first.", messages.ERROR)
                continue
            try:
                chosen = stimuli_select(study=study, classifier=classifier)
                self.message_user(request, f"{study}: {len(chosen)} stimuli selected.", messages.SUCCESS)
            except PipelineError as exc:
                self.message_user(request, f"{study}: {exc}", messages.ERROR)

    @admin.action(description="Copy study (a new draft with the same design, texts and arms)")
    def copy_studies(self, request: HttpRequest, queryset) -> None:
        for study in queryset:
            slug = next(s for s in (f"{study.slug}-copy{'' if n == 1 else f'-{n}'}" for n in range(1, 1000))
                        if not Study.objects.filter(slug=s).exists())
            copy = study_copy(study=study, slug=slug)
            self.message_user(
                request, format_html('{}: copied to the draft <a href="{}">{}</a> (select its stimuli and precompute).',
                                     study, reverse("admin:studies_study_change", args=[copy.pk]), copy.slug),
                messages.SUCCESS,
            )

    def from_template(self, request: HttpRequest) -> HttpResponse:
        """New study from template: the same service as ``manage.py create_study``."""
        form = TemplateStudyForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            datasets = [d for d in (data["dataset"], data["dataset2"]) if d]
            try:
                study = study_from_template(
                    template=data["template"], slug=data["slug"], title=data["title"] or None, datasets=datasets,
                    classes=comma_list(data["classes"]), names=comma_list(data["names"]),
                    classifiers=[c for c in (data["classifier"], data["classifier2"]) if c],
                    generator=data["generator"], arms=comma_list(data["arms"]) or None,
                )
            except TemplateError as exc:
                form.add_error(None, f"No study was made: {exc}")
            else:
                self.message_user(
                    request, f"Made the draft study '{study.slug}'. Check its texts, then select its stimuli and precompute "
                    "(actions on the study list), and open it.", messages.SUCCESS,
                )
                return redirect("admin:studies_study_change", study.pk)
        context = {
            **self.admin_site.each_context(request), "form": form, "title": "New study from template",
            "opts": self.model._meta, "templates": TEMPLATES.values(),
        }
        return TemplateResponse(request, "admin/studies/study/from_template.html", context)

    @admin.action(description="Delete the test runs (previews and pilots)")
    def delete_test_runs(self, request: HttpRequest, queryset) -> None:
        for study in queryset:
            n = services.test_runs_delete(study=study)
            self.message_user(request, f"{study}: deleted {n} test run(s).", messages.SUCCESS)

    @admin.action(description="Compare the chosen studies (clustering design: Fig. 4 and between-study tests)")
    def compare_studies(self, request: HttpRequest, queryset) -> HttpResponse:
        # The page is the analysis app's (`analysis-compare`); it checks the choice and says what is wrong.
        query = urlencode([("studies", pk) for pk in queryset.order_by("pk").values_list("pk", flat=True)])
        return redirect(reverse("analysis-compare") + "?" + query)

    @admin.action(description="Precompute explanations (Celery)")
    def precompute_explanations(self, request: HttpRequest, queryset) -> None:
        for study in queryset:
            with transaction.atomic():
                job = precompute.start(study=study, methods=selectors.study_methods(study=study))
            self.message_user(request, f"{study}: queued {job.total} explanations (job {job.pk}).", messages.SUCCESS)
        status = pipeline_selectors.broker_status(timeout=0.5)
        if not status["broker"]:
            self.message_user(request, status["detail"], messages.WARNING)

    # -- pages ---------------------------------------------------------------------------------
    def dashboard(self, request: HttpRequest, pk: int) -> TemplateResponse:
        study = get_object_or_404(Study, pk=pk)
        participants = (
            Participant.objects.filter(study=study).select_related("arm").order_by("-last_seen_at")[:200]
        )
        context = {
            **self.admin_site.each_context(request),
            "title": f"{study.title}: status",
            "study": study,
            "opts": self.model._meta,
            "readiness": selectors.study_readiness(study=study),
            "fill": selectors.arm_fill(study=study),
            "order_fill": selectors.order_fill(study=study),
            "steps": registry.step_histogram(study=study),
            "explanations": pipeline_selectors.explanation_summary(study=study),
            "invalid": pipeline_selectors.invalid_explanations(study=study)[:50],
            "job": pipeline_selectors.latest_job(study=study),
            "broker": pipeline_selectors.broker_status(timeout=0.5),
            "participants": [
                {"p": p, "step": registry.kind_of(p.current_step), "index": p.step_index, "n": len(p.plan)} for p in participants
            ],
            "participant_url": request.build_absolute_uri(reverse("study", kwargs={"study_code": study.public_code})),
            "sequential": looks.dashboard_context(study=study),
        }
        return TemplateResponse(request, "admin/studies/study/dashboard.html", context)

    def colours(self, request: HttpRequest, pk: int) -> TemplateResponse:
        """The study's heatmap colour map as drawn and as seen with colour-vision deficiency."""
        from studyapp.studies.colour_preview import colour_preview

        study = get_object_or_404(Study, pk=pk)
        context = {
            **self.admin_site.each_context(request), "title": f"{study.title}: heatmap colours", "study": study,
            "opts": self.model._meta, "preview": colour_preview(study),
        }
        return TemplateResponse(request, "admin/studies/study/colour_preview.html", context)

    def config_schema(self, request: HttpRequest) -> HttpResponse:
        """The JSON Schema of ``Study.config`` (the typed model's), for editors and reviewers."""
        return JsonResponse(StudyConfig.model_json_schema(), json_dumps_params={"indent": 2})

    def pilot(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Staff take the study in an arm (and order) they choose, as a test run bound to this browser."""
        study = get_object_or_404(Study, pk=pk)
        if not self.has_change_permission(request, study):
            raise PermissionDenied("You may not pilot this study.")
        error = ""
        if request.method == "POST":
            arm = study.arms.filter(pk=request.POST.get("arm") or 0).first()
            try:
                if arm is None:
                    raise FlowError("Choose one of the study's arms.")
                run = services.participant_enroll_pilot(study=study, arm=arm, order=request.POST.get("order", ""))
            except FlowError as exc:
                error = exc.message
            else:
                access.bind_participant(request, run)
                return HttpResponseRedirect(reverse("study", kwargs={"study_code": study.public_code}))
        orders = [(c, plans.order_label(c)) for c in plans.order_cells(study.parsed_config.datasets)] \
            if study.design == Study.Design.CLUSTERING else []
        context = {
            **self.admin_site.each_context(request), "title": f"{study.title}: preview or pilot run", "study": study,
            "opts": self.model._meta, "arms": study.arms.all(), "orders": orders, "error": error,
            "n_test": study.participants.filter(is_test=True).count(),
        }
        return TemplateResponse(request, "admin/studies/study/pilot.html", context, status=400 if error else 200)

    def export(self, request: HttpRequest, pk: int, kind: str) -> HttpResponse:
        """Every CSV export (`exports.KINDS`), for staff who may view the study."""
        if not self.has_view_permission(request):
            raise PermissionDenied("You may not export this study's data.")
        study = get_object_or_404(Study, pk=pk)
        ids = request.GET.get("ids", "keep")
        if ids not in exports.ID_MODES:
            return HttpResponse(f"ids must be one of {', '.join(exports.ID_MODES)}", status=400)
        if kind not in exports.KINDS:
            return HttpResponse(f"Unknown export; use {', '.join(exports.KINDS)}.", status=404)
        body = exports.export_csv(study=study, kind=kind, ids=ids, include_test=request.GET.get("test") == "1")
        response = HttpResponse(body, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{study.slug}-{kind}-{study.config_hash[:8]}.csv"'
        return response


class AnswerInline(admin.TabularInline):
    model = TrialAnswer
    extra = 0
    can_delete = False
    readonly_fields = ("trial_index", "stimulus", "choice", "correct_label", "correct", "shown_at", "answered_at", "response_ms")
    fields = readonly_fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class QuestionInline(admin.TabularInline):
    model = QuestionAnswer
    extra = 0
    can_delete = False
    readonly_fields = ("key", "value", "answered_at")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Participant)
class ParticipantAdmin(admin.ModelAdmin):
    list_display = ("short_code", "study", "arm", "status", "is_test", "step", "started_at", "last_seen_at", "finished_at")
    list_filter = ("study", "arm", "status", "is_test")
    search_fields = ("code", "prolific_pid")
    inlines = [AnswerInline, QuestionInline]
    readonly_fields = [f.name for f in Participant._meta.fields]
    actions = ["reject_runs"]

    @admin.action(description="Reject with a reason (keep the data, free the slot)")
    def reject_runs(self, request: HttpRequest, queryset):
        if not self.has_change_permission(request):
            raise PermissionDenied("You may not reject runs.")
        if "apply" in request.POST:
            try:
                n = sum(services.participant_reject(participant=p, reason=request.POST.get("reason", "")) for p in queryset)
            except FlowError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                return None
            self.message_user(request, f"Rejected {n} run(s); their data are kept.", messages.SUCCESS)
            return None
        context = {**self.admin_site.each_context(request), "title": "Reject runs", "opts": self.model._meta,
                   "runs": list(queryset.select_related("study", "arm"))}
        return TemplateResponse(request, "admin/studies/participant/reject.html", context)

    @admin.display(description="Code")
    def short_code(self, obj: Participant) -> str:
        return obj.code[:10] + "…"

    @admin.display(description="Step")
    def step(self, obj: Participant) -> str:
        return f"{obj.step_index + 1}/{len(obj.plan)} {obj.current_step['kind']}"

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(InteractionEvent)
class InteractionEventAdmin(admin.ModelAdmin):
    list_display = ("participant", "step_index", "kind", "at")
    list_filter = ("kind",)
    readonly_fields = ("participant", "step_index", "kind", "payload", "at")

    def has_add_permission(self, request) -> bool:
        return False
