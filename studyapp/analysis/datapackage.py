"""One study's data as one zip: the exports, their dictionary, the versions, the stimuli, the report.

The zip (`build_zip`; the admin serves it at ``/admin/analysis/study/<pk>/datapackage.zip``) holds:

- ``datapackage.json``: a Frictionless data package; every CSV is a tabular resource with its
  Table Schema (each column's type, description, unit, allowed values and Likert coding, from
  `studyapp.studies.codebook`), every other file a resource with its sha256 and size.
- ``dataset_description.json``: the Psych-DS description (a schema.org ``Dataset`` whose
  ``variableMeasured`` lists every column of the data files).
- ``data/study-<slug>_table-<kind>_data.csv``: every export (`studyapp.studies.exports.KINDS`:
  tidy, wide, groupings, events, checks; `studyapp.studies.exports.export_csv`), named the Psych-DS way, and ``json/<kind>.json``, the
  same rows as JSON (typed by the dictionary: numbers as numbers, a blank number or time as null).
- ``codebook.csv``: the dictionary as one table (one row per column of every data file).
- ``versions.json``: the study's versions (number, configuration hash, design, changes, time).
- ``stimuli.json``: the stimulus manifest: per stimulus the image's sha256, data set and its
  fingerprint, true label, model prediction, classifier, whether it carries a bias study's
  planted cue (``cued``), and every explanation asset with its
  content hash, file hashes, parameters and generator; the data sets and models with their
  checkpoint hashes.
- ``report.html``: the analysis report (as ``/admin/analysis/study/<pk>/report.html``); left
  out, with the reason in ``README.md``, when the data cannot be analysed yet.
- ``README.md``: what each file is.

External ids are kept, hashed or dropped as in the exports (``ids``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import PurePosixPath

from django.db.models import Q

import studyapp
from stats.schema import AnalysisInputError
from studyapp.analysis import presenters, report
from studyapp.analysis.presenters_metrics_people import metrics_people_section
from studyapp.analysis.sources import run_analysis, study_source
from studyapp.pipeline.models import Dataset, ExplanationAsset, Stimulus, TrainedModel
from studyapp.studies import codebook, exports
from studyapp.studies.models import Study
from studyapp.studies.steps import registry

PSYCH_DS_VERSION = "Psych-DS 0.1.0"


def _sha256(path: str) -> str:
    """The sha256 a stored file is named by (``<folder>/<h[:2]>/<sha256>.<ext>``), or ``""``."""
    return PurePosixPath(path).stem if path else ""


def _json(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False, default=str, ensure_ascii=False) + "\n").encode()


def data_path(study: Study, kind: str) -> str:
    keyword = re.sub(r"[^A-Za-z0-9]", "", study.slug) or str(study.pk)
    return f"data/study-{keyword}_table-{kind}_data.csv"


# --------------------------------------------------------------------------- the parts


def _typed(text: str, entries: list[codebook.Column]) -> list[dict]:
    """The rows of a CSV as JSON objects, each cell cast by its column's type (blank = null)."""
    types = {c.name: c.type for c in entries}
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        typed: dict = {}
        for name, cell in row.items():
            kind = types[name]
            if cell == "" and kind != "string":
                typed[name] = None
            elif kind == "integer":
                typed[name] = int(float(cell))
            elif kind == "number":
                typed[name] = float(cell)
            else:
                typed[name] = cell
        out.append(typed)
    return out


def versions(study: Study) -> list[dict]:
    """The study's versions (`studies.StudyVersion`), oldest first."""
    manager = getattr(study, "versions", None)
    if manager is None:
        return []
    return [
        {"number": v.number, "config_hash": v.config_hash, "created_at": v.created_at.isoformat(),
         "changes": v.changes, "design": v.design}
        for v in manager.order_by("number")
    ]


def stimulus_manifest(study: Study) -> dict:
    """Every stimulus of the study with its image, data set, prediction, models and explanations."""
    stimuli = list(Stimulus.objects.filter(study=study).order_by("position", "pk"))
    assets: dict[int, list[dict]] = {}
    generator_ids: set[int] = set()
    for a in ExplanationAsset.objects.filter(stimulus__study=study).order_by("stimulus_id", "method", "created_at", "pk"):
        generator_id = (a.params or {}).get("generator_id") if isinstance(a.params, dict) else None
        if isinstance(generator_id, int):
            generator_ids.add(generator_id)
        assets.setdefault(a.stimulus_id, []).append({
            "id": a.pk, "method": a.method, "valid": a.valid, "reasons": a.reasons,
            "params_hash": a.params_hash, "params": a.params,
            "colormap": exports.asset_colormap(a.method, a.params if isinstance(a.params, dict) else None),
            "content_hash": exports.content_hash(a.files),
            "files": {role: _sha256(path) for role, path in sorted((a.files or {}).items())},
            "metrics": a.metrics, "generator_id": generator_id, "created_at": a.created_at.isoformat(),
        })
    dataset_ids = {s.dataset_id for s in stimuli}
    models = list(
        TrainedModel.objects.filter(Q(dataset_id__in=dataset_ids) | Q(pk__in=generator_ids)
                                    | Q(pk__in={s.classifier_id for s in stimuli})).order_by("pk")
    )
    checkpoint = {m.pk: _sha256(m.checkpoint) for m in models}
    for rows in assets.values():
        for row in rows:
            row["generator_checkpoint_sha256"] = checkpoint.get(row["generator_id"], "") if row["generator_id"] else ""
    datasets = {d.pk: d for d in Dataset.objects.filter(pk__in=dataset_ids)}
    return {
        "study": study.slug,
        "datasets": [
            {"id": d.pk, "name": d.name, "kind": d.kind, "source": d.source, "fingerprint": d.fingerprint,
             "is_standin": d.is_standin, "class_names": d.class_names, "n_train": d.n_train, "n_test": d.n_test}
            for d in sorted(datasets.values(), key=lambda d: d.pk)
        ],
        "models": [
            {"id": m.pk, "role": m.role, "arch": m.arch, "dataset_id": m.dataset_id, "status": m.status,
             "checkpoint_sha256": checkpoint[m.pk], "params": m.params, "test_accuracy": m.test_accuracy}
            for m in models
        ],
        "stimuli": [
            {"id": s.pk, "position": s.position, "group": s.group, "set_index": s.set_index,
             "image_sha256": _sha256(s.image), "dataset_id": s.dataset_id,
             "dataset_fingerprint": datasets[s.dataset_id].fingerprint, "split": s.split, "dataset_index": s.index,
             "true_label": s.true_label, "model_prediction": s.model_prediction, "probabilities": s.probabilities,
             "cued": s.cued,
             "classifier_id": s.classifier_id, "classifier_checkpoint_sha256": checkpoint.get(s.classifier_id, ""),
             "explanations": assets.get(s.pk, [])}
            for s in stimuli
        ],
    }


def report_html(study: Study) -> tuple[str | None, str]:
    """The analysis report of the study, or None and why it cannot be made."""
    source = study_source(study)
    try:
        html = report.render_report(
            run_analysis(source), config_hash=presenters.config_hash_line(source.config_hash, source.data_hashes),
            software_version=studyapp.__version__, levels=source.levels, notes=source.notes,
            study_notes=study.parsed_config.notes, title=f"{source.title}: analysis report",
            metrics_people=metrics_people_section(study),
        )
    except (AnalysisInputError, ValueError) as exc:
        return None, str(exc)
    return html, ""


def _variables(tables: dict[str, list[codebook.Column]]) -> list[dict]:
    """Every column of the data files once (a column in several files lists each file's meaning)."""
    variables: dict[str, list[dict]] = {}
    meanings: dict[str, dict[str, list[str]]] = {}
    for kind, entries in tables.items():
        for c in entries:
            variables.setdefault(c.name, []).append(c.variable())
            meanings.setdefault(c.name, {}).setdefault(c.description, []).append(kind)
    out = []
    for name, found in variables.items():
        merged = {k: v for k, v in found[0].items() if all(f.get(k) == v for f in found)}  # what every file agrees on
        if len(meanings[name]) > 1:
            merged["description"] = " ".join(f"In {', '.join(kinds)}: {d}" for d, kinds in meanings[name].items())
        out.append(merged)
    return out


def _readme(study: Study, files: Iterable[str], *, ids: str, report_problem: str) -> str:
    lines = [
        f"# {study.title}: data package", "",
        f"Study `{study.slug}` ({study.design} design), configuration hash `{study.config_hash}`, "
        f"software version {studyapp.__version__}. External ids: {ids}.", "",
        "- `datapackage.json`: the Frictionless data package (a Table Schema per CSV: type, meaning, unit, "
        "allowed values and coding of every column; sha256 and size of every file).",
        "- `dataset_description.json`: the Psych-DS description (schema.org Dataset, variableMeasured).",
        "- `data/*_data.csv`: the exports: tidy (one row per trial), wide (one row per participant), "
        "groupings (one row per image placed), events (one row per interaction event), checks (one row per "
        "comprehension-quiz try and catch trial); test runs (staff previews, pilots) are left out.",
        "- `json/*.json`: the same rows as JSON (numbers as numbers, a blank number or time as null).",
        "- `codebook.csv`: the data dictionary as one table.",
        "- `versions.json`: the study's versions with their configuration hashes and what changed.",
        "- `stimuli.json`: the stimulus manifest (image, data set, prediction, explanation and model hashes).",
        "- `report.html`: the analysis report." if not report_problem else
        f"- No `report.html`: the data cannot be analysed yet ({report_problem}).",
        "", "Files:", "", *[f"- `{f}`" for f in files], "",
        *(["## The study's notes", "", "Where the published design is silent, and what this study chose:", "",
           study.parsed_config.notes, ""] if study.parsed_config.notes else []),
    ]
    return "\n".join(lines)


def _resource(name: str, path: str, content: bytes, **more) -> dict:
    return {"name": name, "path": path, **more, "bytes": len(content), "hash": f"sha256:{hashlib.sha256(content).hexdigest()}"}


# --------------------------------------------------------------------------- the package


def package_files(study: Study, *, ids: str = "hash", created: datetime | None = None) -> dict[str, bytes]:
    """Every file of the package, path -> bytes (``datapackage.json`` first)."""
    created = created or datetime.now(UTC)
    extra = registry.study_entries(study)
    files: dict[str, bytes] = {}
    resources: list[dict] = []
    tables: dict[str, list[codebook.Column]] = {}
    for kind in exports.KINDS:
        text = exports.export_csv(study=study, kind=kind, ids=ids)
        header = next(csv.reader(io.StringIO(text)))
        entries = codebook.columns(kind, header, extra=extra)
        tables[kind] = entries
        path = data_path(study, kind)
        files[path] = text.encode()
        resources.append(_resource(
            kind, path, files[path], title=f"{kind} export", type="table", format="csv", mediatype="text/csv",
            encoding="utf-8", schema={"fields": [c.field() for c in entries]},
        ))
        files[f"json/{kind}.json"] = _json(_typed(text, entries))
    rows = [row for kind, entries in tables.items() for row in codebook.dictionary_rows(kind, entries)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=codebook.CODEBOOK_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    files["codebook.csv"] = buffer.getvalue().encode()
    resources.append(_resource(
        "codebook", "codebook.csv", files["codebook.csv"], title="data dictionary", type="table", format="csv",
        mediatype="text/csv", encoding="utf-8",
        schema={"fields": [{"name": n, "type": "string"} for n in codebook.CODEBOOK_COLUMNS]},
    ))
    files["versions.json"] = _json(versions(study))
    files["stimuli.json"] = _json(stimulus_manifest(study))
    html, problem = report_html(study)
    if html is not None:
        files["report.html"] = html.encode()
    named = {f"{kind}-json": f"json/{kind}.json" for kind in exports.KINDS}
    for name, path in {**named, "versions": "versions.json", "stimuli": "stimuli.json"}.items():
        resources.append(_resource(name, path, files[path], type="file", format="json", mediatype="application/json"))
    if html is not None:
        resources.append(_resource("report", "report.html", files["report.html"], type="file", format="html", mediatype="text/html"))
    description = {
        "@context": "https://schema.org/",
        "@type": "Dataset",
        "schemaVersion": PSYCH_DS_VERSION,
        "name": study.title,
        "description": f"Participant data of the study '{study.slug}' ({study.design} design), exported by the "
                       f"explainable-AI study platform {studyapp.__version__}. External ids: {ids}.",
        "dateCreated": created.isoformat(timespec="seconds"),
        "version": study.config_hash,
        "keywords": ["explainable AI", "user study", study.design],
        "variableMeasured": _variables(tables),
    }
    files["dataset_description.json"] = _json(description)
    files["README.md"] = _readme(
        study, ["datapackage.json", *files, "README.md"], ids=ids, report_problem=problem,
    ).encode()
    package = {
        "name": re.sub(r"[^a-z0-9._-]", "-", study.slug.lower()),
        "title": study.title,
        "description": description["description"],
        "version": studyapp.__version__,
        "created": created.isoformat(timespec="seconds"),
        "study": {"slug": study.slug, "design": study.design, "config_hash": study.config_hash, "ids": ids},
        "resources": resources,
    }
    return {"datapackage.json": _json(package), **files}


def build_zip(study: Study, *, ids: str = "hash", created: datetime | None = None) -> bytes:
    """The data package as zip bytes (the files of `package_files` at the zip's top level)."""
    created = created or datetime.now(UTC)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, content in package_files(study, ids=ids, created=created).items():
            info = zipfile.ZipInfo(path, date_time=created.astimezone(UTC).timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()
