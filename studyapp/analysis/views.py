"""Staff-only analysis pages: a study's live analysis, an imported result set's, figures, report.

Every view is wrapped in ``admin.site.admin_view`` (urls.py): anyone not logged in as active
staff is sent to the admin login. Beyond that, each view asks one of the ``access_*`` functions
below, which check the model permission the admin itself would (view a study to see its
analysis, change it to set the tests; the same for imported result sets).
"""

from __future__ import annotations

import dataclasses
import gc
import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import pandas as pd
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.forms import formset_factory
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from matplotlib.figure import Figure

import studyapp
from studyapp.analysis import (
    data,
    exports_extra,
    figures,
    importing,
    power,
    report,
    services,
    summary,
)
from studyapp.analysis.models import ImportedResults
from studyapp.analysis.schema import (
    AGENT_RATING_LABELS,
    CONFIDENCE_LABELS,
    FEEDBACK_RATING_LABELS,
    AnalysisInputError,
    ordered_levels,
)
from studyapp.studies.models import Study

FIGURES = ("learning-curve", "ratings", "purity", "confidence", "agent-ratings", "power")
FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


# --------------------------------------------------------------------------- access


def access_study(request: HttpRequest, pk: int, *, change: bool = False) -> Study:
    """The study whose analysis `request` may see (or, with `change`, whose tests it may set)."""
    perm = "studies.change_study" if change else "studies.view_study"
    if not request.user.has_perm(perm):
        raise PermissionDenied("You may not see this study's analysis.")
    return get_object_or_404(Study, pk=pk)


def access_imported(request: HttpRequest, pk: int, *, change: bool = False) -> ImportedResults:
    perm = "analysis.change_importedresults" if change else "analysis.view_importedresults"
    if not request.user.has_perm(perm):
        raise PermissionDenied("You may not see imported result sets.")
    return get_object_or_404(ImportedResults, pk=pk)


def access_import_upload(request: HttpRequest) -> None:
    if not request.user.has_perm("analysis.add_importedresults"):
        raise PermissionDenied("You may not import result sets.")


# --------------------------------------------------------------------------- sources


@dataclass
class Source:
    """A study or an imported result set, reduced to what the analysis needs."""

    kind: str  # "study" or "imported"
    obj: Study | ImportedResults
    title: str
    design: str
    config: dict
    config_hash: str
    frames: dict[str, pd.DataFrame]
    levels: list[str]
    n_trials: int | None = None
    participants: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def url_name(self) -> str:
        return f"analysis-{self.kind}"

    def url(self, suffix: str = "", *args) -> str:
        name = self.url_name + (f"-{suffix}" if suffix else "")
        return reverse(name, args=[self.obj.pk, *args])

    @property
    def slug(self) -> str:
        return self.obj.slug if self.kind == "study" else f"imported-{self.obj.pk}"


def study_source(study: Study) -> Source:
    d = data.study_data(study=study)
    frames = {
        "trials": d.trials, "ratings": d.ratings, "groupings": d.groupings, "batches": d.batches,
        "confidence": d.confidence, "agent_ratings": d.agent_ratings,
    }
    if study.design == Study.Design.CLUSTERING:
        levels = summary.levels_of(summary.CLUSTERING, stages=d.groupings["stage"].unique())
        n_trials = None
    else:
        levels = list(study.arms.order_by("position", "pk").values_list("name", flat=True))
        n_trials = study.n_trials
    return Source(
        kind="study", obj=study, title=study.title, design=study.design, config=study.config or {},
        config_hash=study.config_hash, frames=frames, levels=levels, n_trials=n_trials,
        participants=d.participants, notes=list(d.problems),
    )


def imported_source(imported: ImportedResults) -> Source:
    frames = importing.imported_frames(imported)
    if imported.study_design == ImportedResults.Design.CLUSTERING:
        groupings = frames.get("groupings", pd.DataFrame(columns=["participant", "stage"]))
        # Exclusion rules read one row per batch; an imported file has no batch times, so the
        # rules see one row per participant (with completion, when the participants file gave it).
        columns = [c for c in ("participant", "arm", "completed") if c in groupings.columns]
        batches = groupings.drop_duplicates("participant")[columns] if len(groupings) else None
        frames["batches"] = batches
        levels = summary.levels_of(summary.CLUSTERING, stages=groupings["stage"].unique())
    else:
        trials = frames.get("trials", pd.DataFrame(columns=["arm"]))
        levels = summary.levels_of(summary.LEARNING, arms=trials["arm"].unique())
    return Source(
        kind="imported", obj=imported, title=imported.name, design=imported.study_design,
        config=imported.config or {}, config_hash=imported.config_hash, frames=frames,
        levels=levels, notes=list((imported.meta or {}).get("notes", [])),
    )


@contextmanager
def quick_gc():
    """Keep the heap that exists already out of garbage collection for the duration.

    statsmodels' ``multipletests`` calls ``gc.collect()`` on every call; in a web process full of
    Django, pandas and matplotlib objects that is about 0.1-0.4 s each, and a clustering page
    makes six such calls. Freezing the existing objects makes those collections cheap; objects
    made inside are collected as usual.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_analysis(source: Source, *, power_target: float | None = None) -> summary.Analysis:
    with quick_gc():
        return _run_analysis(source, power_target=power_target)


def _run_analysis(source: Source, *, power_target: float | None = None) -> summary.Analysis:
    settings, problems = summary.settings_from_config(
        source.config, design=source.design, levels=source.levels, n_trials=source.n_trials
    )
    if power_target is not None:
        settings = dataclasses.replace(settings, power_target=power_target)
    f = source.frames
    result = summary.analyse(
        design=source.design, settings=settings, trials=f.get("trials"), ratings=f.get("ratings"),
        groupings=f.get("groupings"), batches=f.get("batches"), confidence=f.get("confidence"),
        agent_ratings=f.get("agent_ratings"),
    )
    source.notes.extend(problems)
    return result


# --------------------------------------------------------------------------- formatting


def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def cell(x, digits: int = 3, *, p: bool = False) -> dict:
    """A table cell: the text shown and the exact value (``data-value``) for machine reading."""
    if isinstance(x, str):
        # Labels read left-aligned; short verdicts ("yes", "–", "none: ...") stay with the numbers.
        return {"text": x, "value": None, "is_text": not (x in ("–", "yes", "no") or x.startswith("none"))}
    if isinstance(x, bool):
        return {"text": "yes" if x else "no", "value": None}
    if not _finite(x):
        return {"text": "–", "value": None}
    x = float(x)
    if p:
        text = "< 0.0001" if x < 0.0001 else f"{x:.4f}"
    elif x.is_integer() and digits == 0:
        text = f"{int(x)}"
    else:
        text = f"{x:.{digits}f}"
    return {"text": text, "value": repr(x)}


def count(x) -> dict:
    return cell(int(x), 0) if _finite(x) else cell(None)


def table(headers: list[str], rows: list[list[dict]], *, name: str = "") -> dict:
    return {"headers": headers, "rows": rows, "name": name}


def _exclusion_context(result: summary.Analysis, source: Source) -> dict:
    excl = result.exclusions
    ctx = {"rules": excl.rules, "error": excl.error, "ignored": excl.ignored}
    if excl.report is None:
        return ctx
    rep = excl.report
    ctx["summary"] = (
        f"{rep.n_excluded} of {rep.n_before} participants excluded, {rep.n_kept} analysed."
    )
    ctx["by_rule"] = rep.by_rule
    ctx["counts"] = table(
        ["Arm", "Before", "Excluded", "Analysed"],
        [[cell("Total" if i == len(rep.counts) - 1 else r.arm), count(r.n_before), count(r.n_excluded), count(r.n_kept)]
         for i, r in enumerate(rep.counts.itertuples())],
        name="exclusion-counts",
    )
    ctx["excluded"] = [
        {"participant": r.participant, "arm": r.arm, "rule": r.rule, "reason": r.reason,
         "url": (reverse("admin:studies_participant_changelist") + f"?q={r.participant}") if source.kind == "study" else ""}
        for r in rep.excluded.itertuples()
    ]
    return ctx


def _learning_context(res: summary.LearningResult, source: Source, settings: summary.AnalysisSettings) -> dict:
    curve = res.curve
    arms = ordered_levels(curve["arm"], source.levels) if len(curve) else []
    curve_rows = []
    for trial in sorted(curve["trial"].unique()) if len(curve) else []:
        row = [count(trial)]
        for arm in arms:
            hit = curve[(curve["arm"] == arm) & (curve["trial"] == trial)]
            if hit.empty:
                row.append(cell(None))
            else:
                r = hit.iloc[0]
                sd = f"{r['sd']:.3f}" if _finite(r["sd"]) else "–"
                row.append({"text": f"{r['mean']:.3f} ± {sd} ({int(r['n'])})", "value": repr(float(r["mean"]))})
        curve_rows.append(row)
    ctx = {
        "n_trials": res.n_trials,
        "has_trials": len(curve) > 0,
        "curve": table(["Trial", *arms], curve_rows, name="learning-curve"),
        "counts": table(
            ["Arm", "n", "Mean", "SD", "Fewer trials (not counted)"],
            [[cell(r.arm), count(r.n), cell(r.mean), cell(r.sd), count(r.n_short)] for r in res.counts.itertuples()],
            name="final-counts",
        ),
        "skipped": res.skipped,
        "errors": res.errors,
        "alpha": settings.alpha,
    }
    if res.family is not None:
        fam = res.family
        rows = []
        for test, p_adj in zip(fam.tests, fam.p_adjusted, strict=True):
            rows.append([
                cell(test.hypothesis),
                _group_cell(test.mean1, test.sd1, test.n1),
                _group_cell(test.mean2, test.sd2, test.n2),
                cell(test.t), cell(test.df, 2), cell(test.p, p=True), cell(p_adj, p=True),
                cell("yes" if test.p <= fam.alpha else "no"),
                cell(test.hedges_g),
                {"text": f"[{test.g_ci_low:.3f}, {test.g_ci_high:.3f}]" if _finite(test.g_ci_low) else "–", "value": None},
            ])
        sided = all(t.alternative != "two-sided" for t in fam.tests)
        ctx["tests"] = table(
            ["H1", "First: mean ± SD (n)", "Second: mean ± SD (n)", "Welch t", "df",
             "p (one-sided)" if sided else "p", f"p ({fam.adjust_method.capitalize()})", f"p ≤ {fam.alpha:g}",
             "Hedges' g", f"{fam.tests[0].ci_level:.0%} CI of g"],
            rows, name="welch-tests",
        )
        ctx["note"] = fam.note
    if res.rating_dist is not None:
        dist = res.rating_dist
        rarms = list(dict.fromkeys(dist["arm"]))
        rows = []
        for code, label in FEEDBACK_RATING_LABELS.items():
            row = [cell(f"{code}: {label}")]
            for arm in rarms:
                r = dist[(dist["arm"] == arm) & (dist["rating"] == code)].iloc[0]
                share = f" ({r['share']:.0%})" if _finite(r["share"]) else ""
                row.append({"text": f"{int(r['count'])}{share}", "value": repr(int(r["count"]))})
            rows.append(row)
        totals = [cell("n")] + [count(dist.loc[dist["arm"] == a, "count"].sum()) for a in rarms]
        ctx["ratings"] = table(["Rating", *rarms], [*rows, totals], name="ratings")
        ctx["rating_test"] = res.rating_test
    ctx["pilot"] = _pilot_table(res.pilot, paired=False)
    return ctx


def _group_cell(mean: float, sd: float, n: int) -> dict:
    sd_text = f"{sd:.3f}" if _finite(sd) else "–"
    return {"text": f"{mean:.3f} ± {sd_text} ({n})", "value": repr(float(mean))}


def _pilot_table(rows: list[summary.PilotPower], *, paired: bool) -> dict | None:
    if not rows:
        return None
    out = []
    for r in rows:
        row = [cell(r.comparison), cell(r.d)]
        if not paired:
            ci = f"[{r.g_ci[0]:.2f}, {r.g_ci[1]:.2f}]" if r.g_ci and _finite(r.g_ci[0]) else "–"
            row.append({"text": ci, "value": None})
        row.append(count(r.n_per_arm) if r.n_per_arm else cell(r.message or "–"))
        row.append(cell(r.achieved_power) if r.achieved_power is not None else cell("–"))
        out.append(row)
    if paired:
        headers = ["Comparison", "Observed d_z", "Participants needed", "Power at that n"]
    else:
        headers = ["Comparison", "Observed d", "Hedges' g 95% CI", "Participants per arm", "Power at that n"]
    return table(headers, out, name="pilot-power")


def _compact_tests(frame: pd.DataFrame | None, name: str) -> dict | None:
    if frame is None or frame.empty:
        return None
    rows = [
        [cell(r.group or "–"), cell(r.hypothesis), count(r.n_pairs), cell(r.mean1), cell(r.mean2),
         cell(r.cohen_dz), cell(r.t), cell(r.p_t, p=True), cell(r.p_t_adjusted, p=True),
         cell(r.wilcoxon_w, 1), cell(r.p_wilcoxon, p=True), cell(r.p_wilcoxon_adjusted, p=True)]
        for r in frame.itertuples()
    ]
    return table(
        ["Dataset", "H1", "Pairs", "Mean₁", "Mean₂", "Cohen d_z", "Paired t", "p (t)", "p (t, Holm)",
         "Wilcoxon W", "p (W)", "p (W, Holm)"],
        rows, name=name,
    )


def _distribution_table(dist: pd.DataFrame, group: str, value: str, scale: dict, name: str) -> dict:
    keys = [c for c in ("dataset",) if c in dist.columns] + [group]
    groups = dist[keys].drop_duplicates().itertuples(index=False)
    groups = list(groups)
    headers = [" / ".join(str(x) for x in g) for g in groups]
    rows = []
    for code, label in scale.items():
        row = [cell(f"{code}: {label}")]
        for g in groups:
            mask = (dist[value] == code)
            for k, v in zip(keys, g, strict=True):
                mask &= dist[k] == v
            n = int(dist.loc[mask, "count"].sum())
            row.append({"text": str(n), "value": repr(n)})
        rows.append(row)
    return table(["Answer", *headers], rows, name=name)


def _clustering_context(res: summary.ClusteringResult) -> dict:
    ctx = {"errors": res.errors}
    if res.purity_summary is not None:
        ctx["purity"] = table(
            ["Dataset", "Stage", "n", "Mean", "SD", "Median", "Q1", "Q3"],
            [[cell(r.dataset), cell(r.stage), count(r.n), cell(r.mean), cell(r.sd), cell(r.median), cell(r.q1), cell(r.q3)]
             for r in res.purity_summary.itertuples()],
            name="purity",
        )
    ctx["purity_tests"] = _compact_tests(res.purity_tests, "purity-tests")
    if res.confidence_dist is not None:
        ctx["confidence"] = _distribution_table(res.confidence_dist, "stage", "confidence", CONFIDENCE_LABELS, "confidence")
    ctx["confidence_tests"] = _compact_tests(res.confidence_tests, "confidence-tests")
    if res.agent_dist is not None:
        ctx["agents"] = _distribution_table(res.agent_dist, "agent", "rating", AGENT_RATING_LABELS, "agent-ratings")
    pref = res.agent_preference
    if pref is not None:
        ctx["preference"] = table(
            ["Agent vs baseline", "Pairs", "Prefer agent", "Prefer baseline", "Ties", "Median agent",
             "Median baseline", "Wilcoxon W", "p (W)", "p (sign test)"],
            [[cell(f"{pref.agent} vs {pref.baseline}"), count(pref.n_pairs), count(pref.n_prefer_agent),
              count(pref.n_prefer_baseline), count(pref.n_ties), cell(pref.median_agent, 1),
              cell(pref.median_baseline, 1), cell(pref.wilcoxon_w, 1), cell(pref.p_wilcoxon, p=True),
              cell(pref.p_sign, p=True)]],
            name="agent-preference",
        )
    ctx["pilot"] = _pilot_table(res.pilot, paired=True)
    return ctx


def _participants_context(source: Source) -> dict | None:
    p = source.participants
    if p is None:
        return None
    arms = ordered_levels(p["arm"], source.levels) if len(p) else []
    nothing = "No grouping saved" if source.design == summary.CLUSTERING else "No trial answered"
    rows = []
    for arm in arms:
        mine = p[p["arm"] == arm]
        rows.append([cell(arm), count(len(mine)), count(int(mine["completed"].sum())),
                     count(int((~mine["completed"]).sum())), count(int((mine["n_answers"] == 0).sum()))])
    hashes = p["config_hash"].value_counts().to_dict() if len(p) else {}
    return {
        "n": len(p),
        "table": table(["Arm", "Enrolled", "Completed", "Not finished", nothing], rows, name="participants"),
        "hashes": [{"hash": h, "n": n, "current": h == source.config_hash} for h, n in hashes.items()],
        "mixed": len(hashes) > 1 or bool(hashes and source.config_hash not in hashes),
    }


# --------------------------------------------------------------------------- forms


class TestForm(forms.Form):
    level1 = forms.ChoiceField(label="")
    alternative = forms.ChoiceField(
        label="", choices=[("greater", ">"), ("less", "<"), ("two-sided", "≠")]
    )
    level2 = forms.ChoiceField(label="")

    def __init__(self, *args, levels: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        choices = [("", "—")] + [(x, x) for x in levels]
        self.fields["level1"].choices = choices
        self.fields["level2"].choices = choices
        self.fields["level1"].required = self.fields["level2"].required = False

    def clean(self):
        data = super().clean()
        a, b = data.get("level1"), data.get("level2")
        if bool(a) != bool(b):
            raise forms.ValidationError("Choose both sides of the comparison (or neither, to leave the row out).")
        if a and a == b:
            raise forms.ValidationError(f"{a} cannot be compared with itself.")
        return data


TestFormSet = formset_factory(TestForm, extra=1, can_delete=True, max_num=20)


class AlphaForm(forms.Form):
    alpha = forms.FloatField(
        min_value=0.0001, max_value=0.5, label="Significance level α",
        help_text="The dissertation counted p ≤ 0.1 as significant.",
    )


class PowerForm(forms.Form):
    d = forms.FloatField(label="Effect size (Cohen's d)", initial=0.5, min_value=0.01, max_value=5)
    alpha = forms.FloatField(label="α", min_value=0.0001, max_value=0.5)
    power = forms.FloatField(label="Power", initial=0.8, min_value=0.05, max_value=0.999)
    alternative = forms.ChoiceField(
        label="Test", initial="greater",
        choices=[("greater", "one-sided"), ("two-sided", "two-sided")],
    )


def _power_context(request: HttpRequest, source: Source, settings: summary.AnalysisSettings) -> dict:
    initial = {"d": 0.5, "alpha": settings.alpha, "power": 0.8,
               "alternative": "two-sided" if source.design == summary.CLUSTERING else "greater"}
    values = {f"pw-{k}": str(v) for k, v in initial.items()}
    values.update({k: v for k, v in request.GET.items() if k.startswith("pw-")})
    form = PowerForm(values, prefix="pw")
    ctx: dict = {"form": form}
    if not form.is_valid():
        return ctx
    d, alpha, target, alternative = (form.cleaned_data[k] for k in ("d", "alpha", "power", "alternative"))
    if source.design == summary.CLUSTERING:
        n, achieved = summary.paired_sample_size(d, alpha=alpha, power_target=target, alternative=alternative)
        ctx["result"] = {"n": n, "unit": "participants (each takes every stage)", "achieved": achieved}
        ctx["assumptions"] = [
            "paired t-test on the within-participant difference between two stages (statsmodels TTestPower)",
            f"true standardised mean difference d_z = {d:g} (mean difference over the SD of the differences)",
            f"{'two-sided' if alternative == 'two-sided' else 'one-sided'} test at α = {alpha:g}, target power {target:g}",
            "no multiplicity adjustment and no attrition; the Wilcoxon test needs about 5% more",
        ]
    else:
        size = power.sample_size(d, alpha=alpha, power=target, alternative=alternative)
        ctx["result"] = {"n": size.n_per_arm, "unit": "participants per arm", "achieved": size.achieved_power,
                         "exact": size.n_exact}
        ctx["assumptions"] = list(size.assumptions)
        query = request.GET.copy()
        for k, v in (("d", d), ("alpha", alpha), ("power", target), ("alternative", alternative)):
            query[f"pw-{k}"] = str(v)
        ctx["figure"] = {"query": "?" + query.urlencode()}
    return ctx


# --------------------------------------------------------------------------- pages


def _render_page(request: HttpRequest, source: Source, *, formset=None, alpha_form=None, can_change=False):
    power_target = None
    try:
        power_target = float(request.GET.get("pw-power", "")) if request.GET.get("pw-power") else None
        if power_target is not None and not 0.05 <= power_target <= 0.999:
            power_target = None
    except ValueError:
        power_target = None
    result = run_analysis(source, power_target=power_target)
    settings = result.settings
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
        "exclusions": _exclusion_context(result, source),
        "participants": _participants_context(source),
        "notes": source.notes,
        "settings": settings,
        "hypotheses": [summary.hypothesis(p) for p in settings.pairs],
        "formset": formset,
        "alpha_form": alpha_form,
        "can_change": can_change,
        "power": _power_context(request, source, settings),
        "figures": {name.replace("-", "_"): {"png": source.url("figure", name, "png"), "svg": source.url("figure", name, "svg")}
                    for name in FIGURES},
        "report_url": source.url("report"),
        "opts": (Study if source.kind == "study" else ImportedResults)._meta,
    }
    if result.learning is not None:
        ctx["learning"] = _learning_context(result.learning, source, settings)
    if result.clustering is not None:
        ctx["clustering"] = _clustering_context(result.clustering)
        ctx["has_groupings"] = result.clustering.purities is not None
    ctx["pilot"] = (ctx.get("learning") or ctx.get("clustering") or {}).get("pilot")
    if source.kind == "study":
        ctx["exports"] = _export_links(source.obj)
    return TemplateResponse(request, "admin/analysis/analysis.html", ctx)


def _export_links(study: Study) -> list[dict]:
    """The exports that have rows for this design, with each way of treating external ids."""
    if study.design == Study.Design.CLUSTERING:
        kinds = [("groupings", "Groupings (one row per image)", True)]
    else:
        kinds = [("tidy", "Tidy trials (one row per trial)", False)]
    kinds += [("wide", "Wide (one row per participant)", False), ("events", "Interaction events", True)]
    links = []
    for ids in ("keep", "hash", "drop"):
        row = {"ids": ids, "links": []}
        for kind, label, ours in kinds:
            name = "analysis-study-export" if ours else "admin:study-export"
            row["links"].append({"label": label, "url": reverse(name, args=[study.pk, kind]) + f"?ids={ids}"})
        links.append(row)
    return links


def _save_tests(request: HttpRequest, source: Source):
    formset = TestFormSet(request.POST, form_kwargs={"levels": source.levels}, prefix="tests")
    alpha_form = AlphaForm(request.POST)
    if not (formset.is_valid() and alpha_form.is_valid()):
        return None, formset, alpha_form
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
    return redirect(source.url()), formset, alpha_form


def study_analysis(request: HttpRequest, pk: int) -> HttpResponse:
    if request.method == "POST":
        study = access_study(request, pk, change=True)
        response, formset, alpha_form = _save_tests(request, study_source(study))
        if response is not None:
            return response
        return _render_page(request, study_source(study), formset=formset, alpha_form=alpha_form, can_change=True)
    study = access_study(request, pk)
    return _render_page(request, study_source(study), can_change=request.user.has_perm("studies.change_study"))


def imported_analysis(request: HttpRequest, pk: int) -> HttpResponse:
    if request.method == "POST":
        imported = access_imported(request, pk, change=True)
        response, formset, alpha_form = _save_tests(request, imported_source(imported))
        if response is not None:
            return response
        return _render_page(request, imported_source(imported), formset=formset, alpha_form=alpha_form, can_change=True)
    imported = access_imported(request, pk)
    return _render_page(
        request, imported_source(imported), can_change=request.user.has_perm("analysis.change_importedresults")
    )


# --------------------------------------------------------------------------- figures, report


def _figure(source: Source, name: str, request: HttpRequest):
    if name == "power":
        form = PowerForm({k: v for k, v in request.GET.items()}, prefix="pw")
        if not form.is_valid() or source.design == summary.CLUSTERING:
            raise Http404("Give pw-d, pw-alpha, pw-power and pw-alternative.")
        c = form.cleaned_data
        n = power.sample_size(c["d"], alpha=c["alpha"], power=c["power"], alternative=c["alternative"]).n_per_arm
        top = max(20, int(n * 1.5))
        step = max(1, top // 60)
        curve = power.power_curve(c["d"], list(range(2, top + 1, step)), alpha=c["alpha"], alternative=c["alternative"])
        return figures.power_curve_figure(
            curve, target=c["power"], title=f"Power for d = {c['d']:g} at α = {c['alpha']:g} ({n} per arm needed)"
        )
    result = run_analysis(source)
    lres = result.learning
    cres = result.clustering or summary.ClusteringResult()
    if name == "learning-curve":
        if lres is None or lres.curve.empty:
            return _no_data_figure("No trials answered yet")
        return figures.learning_curve_figure(lres.curve)
    if name == "ratings":
        if lres is None or lres.rating_dist is None:
            return _no_data_figure("No ratings yet")
        return figures.rating_distribution_figure(lres.rating_dist)
    if name == "purity":
        if cres.purities is None:
            return _no_data_figure("No groupings yet")
        return figures.purity_boxplot_figure(cres.purities)
    if name == "confidence":
        if cres.confidence_dist is None:
            return _no_data_figure("No confidence answers yet")
        return figures.confidence_figure(cres.confidence_dist)
    if cres.agent_dist is None:
        return _no_data_figure("No agent ratings yet")
    return figures.agent_rating_figure(cres.agent_dist)


def _no_data_figure(message: str) -> Figure:
    """A small figure that says there is nothing to draw (the figure functions' own empty
    figures are sized for data, e.g. 0.6 inches wide without arms)."""
    fig = Figure(figsize=(6.4, 1.6), layout="constrained")
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12)
    ax.set_axis_off()
    return fig


def _legend_clear_of_bars(fig: Figure) -> Figure:
    """Bar figures put their legend top left, over the bars when the first levels are the tall
    ones: give the axes headroom and let matplotlib pick the emptiest corner."""
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None and ax.patches:
            bottom, top = ax.get_ylim()
            ax.set_ylim(bottom, top * 1.35)
            legend.set_loc("best")
    return fig


def _figure_response(source: Source, request: HttpRequest, name: str, fmt: str) -> HttpResponse:
    if name not in FIGURES or fmt not in FORMATS:
        raise Http404(f"Figures: {', '.join(FIGURES)}; formats: png, svg.")
    try:
        fig = _figure(source, name, request)
        if name in ("ratings", "confidence", "agent-ratings"):
            fig = _legend_clear_of_bars(fig)
    except (AnalysisInputError, ValueError) as exc:
        return HttpResponse(f"This figure cannot be drawn: {exc}", status=409, content_type="text/plain")
    body = figures.figure_png(fig) if fmt == "png" else figures.figure_svg(fig)
    response = HttpResponse(body, content_type=FORMATS[fmt])
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="{source.slug}-{name}.{fmt}"'
    return response


def study_figure(request: HttpRequest, pk: int, name: str, fmt: str) -> HttpResponse:
    return _figure_response(study_source(access_study(request, pk)), request, name, fmt)


def imported_figure(request: HttpRequest, pk: int, name: str, fmt: str) -> HttpResponse:
    return _figure_response(imported_source(access_imported(request, pk)), request, name, fmt)


def report_config_hash(source: Source) -> str:
    """The configuration hash for the report: the current one, and any others the data ran under."""
    current = source.config_hash or "(none recorded)"
    if source.kind == "study":
        hashes = source.participants["config_hash"].value_counts().to_dict() if source.participants is not None else {}
    else:
        hashes = (source.obj.meta or {}).get("config_hashes", {})
    others = {h: n for h, n in hashes.items() if h != source.config_hash}
    if not others:
        return current
    listed = ", ".join(f"{h} ({n} participants)" for h, n in hashes.items())
    return f"{current}; the data ran under {listed}"


def _report_response(source: Source) -> HttpResponse:
    result = run_analysis(source)
    kept = result.kept
    rep = result.exclusions.report
    kwargs = {}
    if source.design == summary.LEARNING:
        kwargs.update(trials=kept.get("trials"), ratings=kept.get("ratings"), pairs=result.settings.pairs)
    else:
        kwargs.update(
            groupings=kept.get("groupings"), confidence=kept.get("confidence"),
            agent_ratings=kept.get("agent_ratings"), stage_pairs=result.settings.pairs,
        )
    try:
        with quick_gc():
            html = report.render_report(
                config_hash=report_config_hash(source), software_version=studyapp.__version__,
                exclusion_report=rep, alpha=result.settings.alpha,
                power_target=result.settings.power_target, title=f"{source.title}: analysis report", **kwargs,
            )
    except (AnalysisInputError, ValueError) as exc:
        return HttpResponse(f"The report cannot be made from these data: {exc}", status=409, content_type="text/plain")
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{source.slug}-report.html"'
    return response


def study_report(request: HttpRequest, pk: int) -> HttpResponse:
    return _report_response(study_source(access_study(request, pk)))


def imported_report(request: HttpRequest, pk: int) -> HttpResponse:
    return _report_response(imported_source(access_imported(request, pk)))


def study_export(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    study = access_study(request, pk)
    ids = request.GET.get("ids", "keep")
    if ids not in exports_extra.ID_MODES:
        return HttpResponse(f"ids must be one of {', '.join(exports_extra.ID_MODES)}", status=400)
    if kind == "groupings":
        body = exports_extra.to_csv(exports_extra.GROUPING_COLUMNS, exports_extra.grouping_rows(study=study, ids=ids))
    elif kind == "events":
        body = exports_extra.to_csv(exports_extra.EVENT_COLUMNS, exports_extra.event_rows(study=study, ids=ids))
    else:
        raise Http404("Unknown export; use groupings or events.")
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-{kind}-{study.config_hash[:8]}.csv"'
    return response


# --------------------------------------------------------------------------- import


class UploadForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="e.g. “Pilot run at the lab, March”.")
    design = forms.ChoiceField(choices=ImportedResults.Design.choices, initial=ImportedResults.Design.LEARNING)
    results = forms.FileField(
        label="Results CSV",
        help_text="Learning: one row per trial (participant, arm, trial_index, correct, …), e.g. a study's tidy export. "
        "Clustering: one row per image (participant, stage, dataset, image_id, cluster, predicted_class), "
        "e.g. the groupings export.",
    )
    participants = forms.FileField(
        label="Participants CSV (optional)", required=False,
        help_text="One row per participant with ratings, status, confidence:<stage>, agent_rating:<agent> "
        "columns, e.g. a study's wide export.",
    )
    settings_from = forms.ModelChoiceField(
        queryset=Study.objects.order_by("title"), required=False, label="Analysis settings from",
        help_text="Copy this study's planned tests, α, exclusion rules and trial count (you can change the "
        "tests later on the analysis page).",
    )

    def clean(self):
        data = super().clean()
        for name in ("results", "participants"):
            f = data.get(name)
            if f is not None and f.size > importing.MAX_BYTES:
                self.add_error(name, f"The file is larger than {importing.MAX_BYTES // 2**20} MB.")
        return data


def import_upload(request: HttpRequest) -> HttpResponse:
    access_import_upload(request)
    form = UploadForm(request.POST or None, request.FILES or None)
    errors: list[str] = []
    if request.method == "POST" and form.is_valid():
        c = form.cleaned_data
        config = {}
        study = c.get("settings_from")
        if study is not None:
            config = {k: study.config[k] for k in ("tests", "alpha", "exclusions") if k in (study.config or {})}
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

