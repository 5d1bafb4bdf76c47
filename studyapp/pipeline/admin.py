"""Staff side of the pipeline: data sets, training with progress, stimuli and explanation validity."""

from __future__ import annotations

import tempfile
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html

from studyapp.lib.archives import MAX_BYTES, MAX_FILES, ArchiveError, extract_zip
from studyapp.pipeline import datasets, registry, selectors, tasks
from studyapp.pipeline.errors import PipelineError
from studyapp.pipeline.models import (
    Dataset,
    ExplanationAsset,
    PrecomputeJob,
    Stimulus,
    TrainedModel,
)
from studyapp.pipeline.storage import media_url


class ImportForm(forms.Form):
    SOURCES = [
        ("directory", "A directory on the server (npz, IDX .gz or Kaggle CSV)"),
        ("download", "Download the official files (checksummed)"),
        ("lookalike", "Generate the offline look-alike stand-in"),
    ]
    source = forms.ChoiceField(choices=SOURCES)
    directory = forms.CharField(required=False, help_text="Path on the server, e.g. /data/kannada_mnist")
    name = forms.SlugField(initial="kannada-mnist")

    def clean(self):
        data = super().clean()
        if data.get("source") == "directory" and not data.get("directory"):
            raise forms.ValidationError("Give the directory to import from.")
        return data


class ImageImportForm(forms.Form):
    """A researcher's own labelled images: a zip upload (small sets) or a folder on the server."""

    archive = forms.FileField(
        required=False, label="Zip of class folders",
        help_text=f"Small sets: a zip of one folder per class (or of train/ and test/ folders), at most "
        f"{MAX_FILES} files and {MAX_BYTES // 2**20} MiB unpacked; a single top folder is fine.",
    )
    directory = forms.CharField(
        required=False, label="Or a folder on the server",
        help_text="Large sets: e.g. /data/gulls holding gulls/herring/*.png, gulls/slaty/*.png, ...",
    )
    name = forms.CharField(max_length=100, help_text="The data set's name, e.g. gulls.")
    test_fraction = forms.FloatField(
        initial=0.2, min_value=0.01, max_value=0.99,
        help_text="Share of each class held out for testing (class folders only; train/ and test/ keep their split).",
    )
    size = forms.IntegerField(
        required=False, min_value=8, max_value=1024,
        help_text="Store at SIZE x SIZE pixels; empty: the images' own size when all share one square size of at most 256, else 64.",
    )
    seed = forms.IntegerField(initial=0, help_text="Seed of the held-out draw.")

    def clean(self):
        data = super().clean()
        if bool(data.get("archive")) == bool(data.get("directory")):
            raise forms.ValidationError("Give either a zip to upload or a folder on the server, not both.")
        return data


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "standin", "n_train", "n_test", "source", "created_at")
    readonly_fields = [f.name for f in Dataset._meta.fields]
    change_list_template = "admin/pipeline/dataset/change_list.html"

    @admin.display(description="Stand-in?", boolean=False)
    def standin(self, obj: Dataset) -> str:
        return "STAND-IN (not the published data)" if obj.is_standin else "real"

    def has_add_permission(self, request) -> bool:
        return False  # through the import view below: all or nothing

    def get_urls(self):
        return [path("import/", self.admin_site.admin_view(self.import_view), name="dataset-import")] + super().get_urls()

    def import_view(self, request):
        posted = request.POST if request.method == "POST" else None
        wants_images = posted is not None and "images-name" in posted
        form = ImportForm(None if wants_images else posted)
        images_form = ImageImportForm(posted if wants_images else None, request.FILES or None, prefix="images")
        if wants_images and images_form.is_valid():
            dataset = self._import_images(request, images_form.cleaned_data)
            if dataset is not None:
                self.message_user(
                    request, f"Imported '{dataset.name}': {selectors.dataset_contents_text(dataset)}.", messages.SUCCESS,
                )
                return redirect("admin:pipeline_dataset_changelist")
        elif not wants_images and posted is not None and form.is_valid():
            data = form.cleaned_data
            try:
                if data["source"] == "directory":
                    dataset = datasets.dataset_import_kannada(name=data["name"], directory=data["directory"])
                elif data["source"] == "download":
                    dataset = datasets.dataset_download_kannada(name=data["name"], dest=settings.VAR_DIR / "downloads" / "kannada")
                else:
                    dataset = datasets.dataset_make_lookalike(name=data["name"])
            except Exception as exc:  # shown to staff; nothing was imported
                form.add_error(None, f"Nothing was imported: {exc}")
            else:
                self.message_user(request, f"Imported {dataset}: {dataset.n_train} train / {dataset.n_test} test.", messages.SUCCESS)
                return redirect("admin:pipeline_dataset_changelist")
        context = {
            **self.admin_site.each_context(request), "form": form, "images_form": images_form,
            "title": "Import a data set", "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/pipeline/dataset/import.html", context)

    def _import_images(self, request, data: dict) -> Dataset | None:
        """Import from the uploaded zip (unpacked into a temporary folder, removed afterwards) or
        the named folder; a refusal becomes an error message and None, with nothing stored."""
        options = {"name": data["name"], "test_fraction": data["test_fraction"], "size": data["size"], "seed": data["seed"]}
        try:
            if data["archive"]:
                upload = data["archive"]
                if upload.size > MAX_BYTES:
                    raise ArchiveError(f"the zip is larger than {MAX_BYTES // 2**20} MiB; import a set this large from a folder on the server")
                with tempfile.TemporaryDirectory(prefix="xai-import-") as tmp:
                    folder = Path(tmp).resolve()
                    root = extract_zip(upload, folder)
                    try:
                        return datasets.dataset_import_images(directory=root, origin=f"uploaded {upload.name}", **options)
                    except PipelineError as exc:  # name files as they are inside the zip, not the temporary folder
                        raise PipelineError(str(exc).replace(f"{folder}/", "").replace(str(folder), "the zip")) from exc
            return datasets.dataset_import_images(directory=data["directory"], **options)
        except ArchiveError as exc:
            self.message_user(request, f"Nothing was imported: {exc}.", messages.ERROR)
        except PipelineError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        return None


class RegisterForm(forms.Form):
    """A model trained elsewhere (see ``registry.model_register`` and ``manage.py register_model``)."""

    dataset = forms.ModelChoiceField(queryset=Dataset.objects.order_by("name"))
    role = forms.ChoiceField(choices=[("classifier", "Classifier"), ("generator", "Generator (decoder, no encoder)")])
    file = forms.FileField(help_text="A torch.export program (.pt2, dynamic batch), a TorchScript file, or a state dict with the architecture below.")
    arch = forms.CharField(required=False, help_text="torchvision architecture of a state dict, e.g. resnet18 (blank for a whole-model file).")
    input_size = forms.IntegerField(required=False, min_value=1, help_text="Side in pixels the network expects (blank: the data set's).")
    mean = forms.CharField(required=False, help_text="Input normalisation mean: one value or one per channel, e.g. 0.485,0.456,0.406.")
    std = forms.CharField(required=False, help_text="Input normalisation std, the same way.")
    layer = forms.CharField(required=False, help_text="Grad-CAM layer's dotted name (blank: the last convolution).")
    latent = forms.IntegerField(required=False, min_value=1, help_text="Generator: its latent size.")


@admin.register(TrainedModel)
class TrainedModelAdmin(admin.ModelAdmin):
    list_display = ("pk", "role", "arch", "dataset", "status", "progress_text", "test_accuracy", "updated_at")
    list_filter = ("role", "status")
    readonly_fields = ("checkpoint", "metadata", "test_accuracy", "status", "progress", "error", "created_at", "updated_at")
    actions = ["train"]
    change_list_template = "admin/pipeline/trainedmodel/change_list.html"

    def get_urls(self):
        return [path("register/", self.admin_site.admin_view(self.register_view), name="trainedmodel-register")] + super().get_urls()

    def register_view(self, request):
        """Upload a model trained elsewhere; a refusal is an error message and changes nothing."""
        form = RegisterForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            upload = data["file"]
            try:
                trained = registry.model_register(
                    dataset=data["dataset"], data=upload.read(), filename=upload.name, role=data["role"],
                    arch=data["arch"] or None, input_size=data["input_size"],
                    mean=registry.parse_floats(data["mean"], what="the mean"), std=registry.parse_floats(data["std"], what="the std"),
                    layer=data["layer"] or None, latent_dim=data["latent"],
                )
            except PipelineError as exc:
                self.message_user(request, f"Nothing was registered: {exc}", messages.ERROR)
            else:
                self.message_user(request, registered_text(trained), messages.SUCCESS)
                return redirect("admin:pipeline_trainedmodel_changelist")
        context = {**self.admin_site.each_context(request), "form": form, "title": "Register a trained model", "opts": self.model._meta}
        return TemplateResponse(request, "admin/pipeline/trainedmodel/register.html", context)

    @admin.display(description="Progress")
    def progress_text(self, obj: TrainedModel) -> str:
        p = obj.progress or {}
        if not p:
            return "-"
        parts = [f"{p.get('stage', '')} {int(float(p.get('step', 0)))}/{int(float(p.get('total', 0)))}"]
        if "loss" in p:
            parts.append(f"loss {float(p['loss']):.4f}")
        return " · ".join(parts)

    @admin.action(description="Train on a Celery worker")
    def train(self, request, queryset) -> None:
        for trained in queryset:
            with transaction.atomic():
                TrainedModel.objects.filter(pk=trained.pk).update(status=TrainedModel.Status.PENDING, progress={})
                transaction.on_commit(lambda pk=trained.pk: tasks.train_model.delay(pk))
        self.message_user(request, f"Queued {queryset.count()} training job(s).", messages.SUCCESS)


def registered_text(trained: TrainedModel) -> str:
    """One line on a registered model: what it is, and for a classifier its test accuracy,
    confusion matrix (rows: true class) and Grad-CAM layer or why Grad-CAM is refused."""
    meta = trained.metadata
    head = f"Registered {trained.get_role_display().lower()} #{trained.pk} ({meta['format']}, sha256 {meta['sha256'][:12]}…)"
    if trained.role == TrainedModel.Role.GENERATOR:
        return f"{head}: latent size {meta['latent_dim']}, images {tuple(meta['output_shape'])}."
    layer = f"Grad-CAM layer {meta['gradcam_layer']}" if meta["gradcam_layer"] else f"Grad-CAM refused: {meta['gradcam_refusal']}"
    return f"{head}: test accuracy {meta['test_accuracy']:.4f}, confusion matrix {meta['confusion']}; {layer}."


def apem_text(asset: ExplanationAsset) -> str:
    """APEM, eps- and eps+ of a heatmap asset ("-" for other assets); per x-feature for XNN."""
    numbers = asset.metrics or {}
    if "apem" not in numbers:
        return "-"

    def one(apem, minus, plus, ceiling) -> str:
        return f"{apem:.1f} (eps- {minus:.0f}, eps+ {plus:.0f}{', at ceiling' if ceiling else ''})"

    keys = ("apem", "eps_minus", "eps_plus", "apem_at_ceiling")
    if isinstance(numbers["apem"], list):
        return "; ".join(f"x{j + 1}: {one(*v)}" for j, v in enumerate(zip(*(numbers[k] for k in keys), strict=True)))
    return one(*(numbers[k] for k in keys))


def morph_size_text(asset: ExplanationAsset) -> str:
    """A morph's size: mean |pixel change| of the last displayed frame and ``||z_T - z0||``."""
    if asset.morph_pixel_change is None:
        return "-"
    latent = f", latent {asset.morph_latent_distance:.2f}" if asset.morph_latent_distance is not None else ""
    return f"{asset.morph_pixel_change:.4f}{latent}"


def refusal_counts(queryset) -> list[dict]:
    """Refused assets per method and reason code (an asset with two reasons counts under both),
    with the method's total: ``[{"method", "code", "count", "total"}]``, methods in order."""
    totals = dict(queryset.values_list("method").annotate(n=Count("id")).values_list("method", "n"))
    counts: dict[tuple[str, str], int] = {}
    for method, codes in queryset.filter(valid=False).values_list("method", "reason_codes"):
        for code in sorted(set(codes or [])) or ["other"]:
            counts[(method, code)] = counts.get((method, code), 0) + 1
    return [
        {"method": m, "code": c, "count": n, "total": totals.get(m, 0)}
        for (m, c), n in sorted(counts.items())
    ]


class ExplanationInline(admin.TabularInline):
    model = ExplanationAsset
    extra = 0
    can_delete = False
    fields = ("method", "valid", "reasons", "reason_codes", "morph_size", "apem", "metrics", "preview")
    readonly_fields = fields

    @admin.display(description="Morph size (|Δpixel|, latent)")
    def morph_size(self, obj: ExplanationAsset) -> str:
        return morph_size_text(obj)

    @admin.display(description="APEM (eps-, eps+)")
    def apem(self, obj: ExplanationAsset) -> str:
        return apem_text(obj)

    @admin.display(description="Preview")
    def preview(self, obj: ExplanationAsset) -> str:
        path = obj.files.get("gif") or obj.files.get("webp") or obj.files.get("overlay") or next(iter(obj.files.values()), "")
        return format_html('<img src="{}" style="height:84px;image-rendering:pixelated">', media_url(path)) if path else "-"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Stimulus)
class StimulusAdmin(admin.ModelAdmin):
    list_display = ("position", "study", "thumb", "true_label", "model_prediction", "explanations_state")
    list_filter = ("study",)
    inlines = [ExplanationInline]
    readonly_fields = [f.name for f in Stimulus._meta.fields]

    @admin.display(description="Image")
    def thumb(self, obj: Stimulus) -> str:
        return format_html('<img src="{}" style="height:42px;image-rendering:pixelated">', media_url(obj.image))

    @admin.display(description="Explanations")
    def explanations_state(self, obj: Stimulus) -> str:
        return ", ".join(f"{e.method}: {'ok' if e.valid else 'REFUSED (' + '; '.join(e.reasons) + ')'}" for e in obj.explanations.all()) or "-"

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ExplanationAsset)
class ExplanationAssetAdmin(admin.ModelAdmin):
    list_display = (
        "stimulus", "method", "valid", "apem", "morph_pixel_change", "morph_latent_distance", "codes", "reason_text", "created_at",
    )
    list_filter = ("method", "valid", "stimulus__study")
    readonly_fields = [f.name for f in ExplanationAsset._meta.fields]
    change_list_template = "admin/pipeline/explanationasset/change_list.html"

    def changelist_view(self, request, extra_context=None):
        """Above the list: refusals per method and reason code, for the filtered assets."""
        response = super().changelist_view(request, extra_context)
        try:
            queryset = response.context_data["cl"].queryset
        except (AttributeError, KeyError):  # a redirect or an error page
            return response
        response.context_data["refusal_counts"] = refusal_counts(queryset)
        return response

    @admin.display(description="Reason codes")
    def codes(self, obj: ExplanationAsset) -> str:
        return ", ".join(obj.reason_codes or []) or "-"

    @admin.display(description="APEM (eps-, eps+)")
    def apem(self, obj: ExplanationAsset) -> str:
        return apem_text(obj)

    @admin.display(description="Why refused")
    def reason_text(self, obj: ExplanationAsset) -> str:
        return "; ".join(obj.reasons)


@admin.register(PrecomputeJob)
class PrecomputeJobAdmin(admin.ModelAdmin):
    list_display = ("pk", "study", "kind", "status", "done", "total", "failed", "updated_at")
    readonly_fields = [f.name for f in PrecomputeJob._meta.fields]
