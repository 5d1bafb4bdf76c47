"""Staff-only analysis pages: a study's live analysis, an imported result set's, figures, report,
and the upload of a results CSV.

Each view asks `access` who may see what, reads its data through `sources`, runs the analysis
once and hands the result to `presenters` (the page) or `report` (the HTML report).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

import studyapp
from stats import clustering, figures
from stats.analyse import CLUSTERING, AnalysisSettings, hypothesis
from stats.schema import AnalysisInputError
from studyapp.analysis import (
    comparison,
    datapackage,
    frames,
    importing,
    presenters,
    presenters_gate,
    presenters_sequential,
    report,
    services,
)
from studyapp.analysis.access import (
    access_import_upload,
    access_imported,
    access_studies,
    access_study,
    can_change,
)
from studyapp.analysis.forms import AlphaForm, ComparisonForm, PowerForm, TestFormSet, UploadForm
from studyapp.analysis.models import ImportedResults
from studyapp.analysis.presenters_bias import bias_section as _bias_section
from studyapp.analysis.presenters_decision import decision_section as _decision_section
from studyapp.analysis.presenters_hive import hive_section as _hive_section
from studyapp.analysis.presenters_metrics_people import (
    metrics_people_section as _metrics_people_section,
)
from studyapp.analysis.presenters_simulation import simulation_section as _simulation_section
from studyapp.analysis.sources import Source, imported_source, run_analysis, study_source
from studyapp.studies import exports
from studyapp.studies.models import Study

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


# --------------------------------------------------------------------------- pages


def _include_test(request: HttpRequest) -> bool:
    """``?test=1``: the analysis also reads the staff test runs (pilots, previews)."""
    return request.GET.get("test") == "1"


def study_analysis(request: HttpRequest, pk: int) -> HttpResponse:
    if request.method == "POST":
        return _post_tests(request, study_source(access_study(request, pk, change=True)))
    return _render_page(request, study_source(access_study(request, pk), include_test=_include_test(request)))


def imported_analysis(request: HttpRequest, pk: int) -> HttpResponse:
    if request.method == "POST":
        return _post_tests(request, imported_source(access_imported(request, pk, change=True)))
    return _render_page(request, imported_source(access_imported(request, pk)))


def _post_tests(request: HttpRequest, source: Source) -> HttpResponse:
    """Save the planned comparisons and alpha, or show the page again with the form's errors."""
    formset = TestFormSet(request.POST, form_kwargs={"levels": source.levels}, prefix="tests")
    alpha_form = AlphaForm(request.POST)
    if not (formset.is_valid() and alpha_form.is_valid()):
        return _render_page(request, source, formset=formset, alpha_form=alpha_form)
    pairs = [
        [f.cleaned_data["level1"], f.cleaned_data["level2"], f.cleaned_data["alternative"]]
        for f in formset.forms
        if f.cleaned_data.get("level1") and not f.cleaned_data.get("DELETE")
    ]
    alpha = alpha_form.cleaned_data["alpha"]
    if source.kind == "study":
        services.study_set_tests(study=source.obj, pairs=pairs, alpha=alpha)
    else:
        services.imported_set_tests(imported=source.obj, pairs=pairs, alpha=alpha)
    messages.success(request, f"Saved {len(pairs)} planned comparison(s) at α = {alpha:g}.")
    return redirect(source.url())


def _power_target(request: HttpRequest) -> float | None:
    """The power the pilot sample sizes aim at, when the power form asks for a valid one."""
    try:
        target = float(request.GET["pw-power"]) if request.GET.get("pw-power") else None
    except ValueError:
        return None
    return target if target is not None and 0.05 <= target <= 0.999 else None


def _render_page(request: HttpRequest, source: Source, *, formset=None, alpha_form=None) -> HttpResponse:
    result = run_analysis(source, power_target=_power_target(request))
    settings = result.settings
    test_query = "?test=1" if source.include_test else ""
    if formset is None:
        formset = TestFormSet(
            initial=[{"level1": a, "level2": b, "alternative": alt} for a, b, alt in settings.pairs],
            form_kwargs={"levels": source.levels}, prefix="tests",
        )
        alpha_form = AlphaForm(initial={"alpha": settings.alpha})
    ctx = {
        **admin.site.each_context(request),
        "title": f"Analysis: {source.title}",
        "is_nav_sidebar_enabled": False,  # the tables and figures need the width
        "source": source,
        "obj": source.obj,
        "design": source.design,
        "version": studyapp.__version__,
        **presenters.sections(result, levels=source.levels, participant_url=source.participant_url),
        "participants": presenters.participants(
            source.participants, levels=source.levels, design=source.design, config_hash=source.config_hash
        ),
        "notes": source.notes,
        "settings": settings,
        "hypotheses": [hypothesis(p) for p in settings.pairs],
        "formset": formset,
        "alpha_form": alpha_form,
        "can_change": can_change(request, source.kind),
        "power": _power_context(request, source, settings),
        **presenters_sequential.page_context(request, source, result),
        "figures": {name.replace("-", "_"): {"png": source.url("figure", name, "png"), "svg": source.url("figure", name, "svg"),
                                             "query": test_query}
                    for name in presenters.FIGURES},
        "figure_template": "admin/analysis/_figure.html",
        "report_url": source.url("report") + test_query,
        "opts": (Study if source.kind == "study" else ImportedResults)._meta,
    }
    if source.kind == "study":
        ctx["test_runs"] = {
            "included": source.include_test,
            "n": source.n_test if source.include_test else frames.study_test_runs(study=source.obj),
            "url": source.url() + ("" if source.include_test else "?test=1"),
        }
        ctx["exports"] = _export_links(source.obj)
        ctx["gate_report"] = presenters_gate.gate_report(source.obj)
        if source.obj.design == Study.Design.SIMULATION:
            ctx["simulation"] = _simulation_section(source.obj, include_test=source.include_test)
        if source.obj.design == Study.Design.DECISION:
            ctx["decision"] = _decision_section(source.obj, include_test=source.include_test)
        if source.obj.design == Study.Design.BIAS:  # issue 25, protocol 4
            ctx["bias"] = _bias_section(source.obj, include_test=source.include_test)
        if source.obj.design == Study.Design.HIVE:  # issue 25, protocol 3
            ctx["hive"] = _hive_section(source.obj, include_test=source.include_test)
        # A protocol study's own section is its analysis: the learning design's sections (curve,
        # final counts, Welch tests on correct answers, the trial model) would pool its answers as
        # if they were learning trials (a decision item's two halves, a simulation's pre and post).
        ctx["protocol"] = source.obj.design in (Study.Design.SIMULATION, Study.Design.DECISION, Study.Design.BIAS, Study.Design.HIVE)
        ctx["stimulus_mix"] = presenters_gate.stimulus_mix(source.obj, include_test=source.include_test)
        ctx["metrics_people"] = _metrics_people_section(source.obj, include_test=source.include_test)
    return TemplateResponse(request, "admin/analysis/analysis.html", ctx)


def _power_form(request: HttpRequest, initial: dict | None = None) -> PowerForm:
    values = {f"pw-{k}": str(v) for k, v in (initial or {}).items()}
    values.update({k: v for k, v in request.GET.items() if k.startswith("pw-")})
    return PowerForm(values, prefix="pw")


def _power_context(request: HttpRequest, source: Source, settings: AnalysisSettings) -> dict:
    form = _power_form(request, {
        "d": 0.5, "alpha": settings.alpha, "power": 0.8,
        "alternative": "two-sided" if source.design == CLUSTERING else "greater",
    })
    ctx: dict = {"form": form}
    if not form.is_valid():
        return ctx
    d, alpha, target, alternative = (form.cleaned_data[k] for k in ("d", "alpha", "power", "alternative"))
    ctx.update(presenters.sample_size(design=source.design, d=d, alpha=alpha, target=target, alternative=alternative))
    if source.design != CLUSTERING:
        query = request.GET.copy()
        for k, v in (("d", d), ("alpha", alpha), ("power", target), ("alternative", alternative)):
            query[f"pw-{k}"] = str(v)
        ctx["figure"] = {"query": "?" + query.urlencode()}
    return ctx


def _export_links(study: Study) -> list[dict]:
    """The exports that have rows for this design, with each way of treating external ids."""
    if study.design == Study.Design.CLUSTERING:
        kinds = [("groupings", "Groupings (one row per image)")]
    else:
        kinds = [("tidy", "Tidy trials (one row per trial)")]
    kinds += [("wide", "Wide (one row per participant)"), ("events", "Interaction events")]
    links = []
    for ids in ("keep", "hash", "drop"):
        row = {"ids": ids, "links": []}
        for kind, label in kinds:
            row["links"].append({"label": label, "url": reverse("admin:study-export", args=[study.pk, kind]) + f"?ids={ids}"})
        row["links"].append({"label": "Data package (zip: all of these, JSON, dictionary, stimuli, report)",
                             "url": reverse("analysis-study-datapackage", args=[study.pk]) + f"?ids={ids}"})
        links.append(row)
    return links


# --------------------------------------------------------------------------- figures


def _figure_response(source: Source, request: HttpRequest, name: str, fmt: str) -> HttpResponse:
    if name not in presenters.FIGURES or fmt not in FORMATS:
        raise Http404(f"Figures: {', '.join(presenters.FIGURES)}; formats: png, svg.")
    try:
        if name == "power":
            form = _power_form(request)
            if not form.is_valid() or source.design == CLUSTERING:
                raise Http404("Give pw-d, pw-alpha, pw-power and pw-alternative.")
            c = form.cleaned_data
            fig = presenters.power_figure(d=c["d"], alpha=c["alpha"], target=c["power"], alternative=c["alternative"])
        else:
            fig = presenters.figure(run_analysis(source), name)
    except (AnalysisInputError, ValueError) as exc:
        return HttpResponse(f"This figure cannot be drawn: {exc}", status=409, content_type="text/plain")
    body = figures.figure_png(fig) if fmt == "png" else figures.figure_svg(fig)
    response = HttpResponse(body, content_type=FORMATS[fmt])
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="{source.slug}-{name}.{fmt}"'
    return response


def study_figure(request: HttpRequest, pk: int, name: str, fmt: str) -> HttpResponse:
    source = study_source(access_study(request, pk), include_test=_include_test(request))
    return _figure_response(source, request, name, fmt)


def imported_figure(request: HttpRequest, pk: int, name: str, fmt: str) -> HttpResponse:
    return _figure_response(imported_source(access_imported(request, pk)), request, name, fmt)


# --------------------------------------------------------------------------- report


def _report_response(source: Source) -> HttpResponse:
    result = run_analysis(source)
    try:
        html = report.render_report(
            result, config_hash=presenters.config_hash_line(source.config_hash, source.data_hashes),
            software_version=studyapp.__version__, levels=source.levels, notes=source.notes,
            study_notes=source.obj.parsed_config.notes if source.kind == "study" else "",
            title=f"{source.title}: analysis report",
            metrics_people=_metrics_people_section(source.obj, include_test=source.include_test) if source.kind == "study" else None,
        )
    except (AnalysisInputError, ValueError) as exc:
        return HttpResponse(f"The report cannot be made from these data: {exc}", status=409, content_type="text/plain")
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{source.slug}-report.html"'
    return response


def study_report(request: HttpRequest, pk: int) -> HttpResponse:
    return _report_response(study_source(access_study(request, pk), include_test=_include_test(request)))


def imported_report(request: HttpRequest, pk: int) -> HttpResponse:
    return _report_response(imported_source(access_imported(request, pk)))


def study_datapackage(request: HttpRequest, pk: int) -> HttpResponse:
    """The study's data package (`datapackage`) as a zip; ``?ids=keep|hash|drop`` (default hash)."""
    study = access_study(request, pk)
    ids = request.GET.get("ids", "hash")
    if ids not in exports.ID_MODES:
        return HttpResponse(f"ids must be one of {', '.join(exports.ID_MODES)}", status=400, content_type="text/plain")
    response = HttpResponse(datapackage.build_zip(study, ids=ids), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-datapackage-ids-{ids}.zip"'
    return response


# --------------------------------------------------------------------------- comparison of studies


def _comparison_form(request: HttpRequest) -> ComparisonForm:
    """Bound to ``?studies=...``; unbound with ``?with=<id>`` ticked (a study page's link)."""
    access_studies(request)
    if "studies" in request.GET:
        return ComparisonForm(request.GET)
    ticked = request.GET.get("with", "")
    return ComparisonForm(initial={"studies": [int(ticked)]} if ticked.isdigit() else None)


def study_comparison(request: HttpRequest) -> HttpResponse:
    """Two or more clustering studies side by side (``?studies=<id>&studies=<id>...``): Fig. 4
    with every condition of every study, and the between-study tests."""
    form = _comparison_form(request)
    ctx = {
        **admin.site.each_context(request),
        "title": "Comparison of studies (clustering design)",
        "is_nav_sidebar_enabled": False,
        "form": form,
        "note": clustering.BETWEEN_STUDIES_NOTE,
    }
    status = 200
    if form.is_bound and form.is_valid():
        result = comparison.compare(form.cleaned_data["studies"])
        ctx.update(
            comparison=result, tests=comparison.tests_table(result.tests),
            summary=comparison.summary_table(result.purities),
            figure={"png": reverse("analysis-compare-figure", args=["png"]),
                    "svg": reverse("analysis-compare-figure", args=["svg"]),
                    "query": "?" + request.GET.urlencode()},
        )
    elif form.is_bound:
        status = 400
    return TemplateResponse(request, "admin/analysis/compare.html", ctx, status=status)


def study_comparison_figure(request: HttpRequest, fmt: str) -> HttpResponse:
    form = _comparison_form(request)
    if fmt not in FORMATS:
        raise Http404("Formats: png, svg.")
    if not form.is_valid():
        message = " ".join(e for errors in form.errors.values() for e in errors) or "Choose two or more studies."
        return HttpResponse(f"This figure cannot be drawn: {message}", status=400, content_type="text/plain")
    fig = comparison.figure(comparison.compare(form.cleaned_data["studies"]))
    body = figures.figure_png(fig) if fmt == "png" else figures.figure_svg(fig)
    response = HttpResponse(body, content_type=FORMATS[fmt])
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="comparison-purity.{fmt}"'
    return response


# --------------------------------------------------------------------------- import


def import_upload(request: HttpRequest) -> HttpResponse:
    access_import_upload(request)
    form = UploadForm(request.POST or None, request.FILES or None)
    errors: list[str] = []
    if request.method == "POST" and form.is_valid():
        c = form.cleaned_data
        config = {}
        study = c.get("settings_from")
        if study is not None:
            config = study.parsed_config.analysis()
            if c["design"] == ImportedResults.Design.LEARNING and study.design == Study.Design.LEARNING:
                config["n_trials"] = study.n_trials
            config["settings_from"] = {"study": study.slug, "config_hash": study.config_hash}
        try:
            imported = importing.imported_results_create(
                name=c["name"], design=c["design"], content=c["results"].read(),
                participants=c["participants"].read() if c.get("participants") else None,
                config=config, filename=c["results"].name,
                participants_filename=c["participants"].name if c.get("participants") else "",
                user=request.user,
            )
        except importing.ResultsImportError as exc:
            errors = exc.errors
        else:
            messages.success(
                request, f"Imported {imported.n_rows} rows of {imported.n_participants} participants."
            )
            return redirect("analysis-imported", imported.pk)
    ctx = {
        **admin.site.each_context(request),
        "title": "Import a results CSV",
        "is_nav_sidebar_enabled": False,
        "form": form,
        "import_errors": errors,
        "opts": ImportedResults._meta,
        "learning_columns": list(importing.LEARNING_SCHEMA.required),
        "learning_optional": list(importing.LEARNING_SCHEMA.optional),
        "clustering_columns": list(importing.CLUSTERING_SCHEMA.required),
        "clustering_optional": list(importing.CLUSTERING_SCHEMA.optional),
    }
    return TemplateResponse(request, "admin/analysis/upload.html", ctx, status=400 if errors else 200)
