"""Import a results CSV in the tidy schema, so that data collected elsewhere is analysed the same way.

All or nothing: the files are parsed and checked completely before anything is stored, and a
problem anywhere raises `ResultsImportError` listing what is wrong, by line and column.
The csv module reads the file; frictionless validates every cell against a Table Schema: the
data dictionary's field (`studyapp.studies.codebook`, the descriptor ``datapackage.json``
carries: type, range, allowed values, pattern) of the matching export (tidy, groupings, wide for
the participants file), except for the columns listed below, whose fields also accept what other
tools write (true/false, text labels, ``900.0``). Columns no dictionary knows are ignored.

Two files:

1. The results file (required), one row per observation:

   - learning design (Study A), one row per answered trial: ``participant``, ``arm``,
     ``trial_index`` (0, 1, 2, ... per participant, no gaps), ``correct`` (0/1 or true/false);
     optional ``response_ms``, ``choice``, ``true_label``, ``model_prediction``, ``completed``,
     ``attention_check``, ``rating`` (1..5, the same on every row of a participant),
     ``config_hash``, ``software_version``. The tidy export of a study
     (`studyapp.studies.exports.tidy_rows`) is such a file; its other columns are ignored.
   - clustering design (Study B), one row per image placed: ``participant``, ``stage``,
     ``dataset``, ``image_id``, ``cluster``, ``predicted_class``; optional ``batch`` (cluster
     numbers are then local to a batch), ``arm``, ``config_hash``, ``software_version``. The
     groupings export (`studyapp.studies.exports.grouping_rows`) is such a file.

2. A participants file (optional), one row per participant: ``participant`` plus any of
   ``feedback_rating`` or ``rating`` (1..5), ``status`` ("completed"/"active") or ``completed``,
   ``confidence:<stage>`` or ``confidence:<stage>:<dataset>`` (0..6), ``agent_rating:<agent>``
   (1..7, 7 = Very Good), ``arm``. The wide export of a study is such a file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import frictionless
import numpy as np
import pandas as pd
from django.db import transaction
from django.utils import timezone

from stats import clustering, learning
from stats.schema import AnalysisInputError
from studyapp.analysis.models import ImportedResults
from studyapp.studies import codebook

MAX_BYTES = 50 * 1024 * 1024
MAX_LISTED = 20
LEARNING, CLUSTERING = ImportedResults.Design.LEARNING.value, ImportedResults.Design.CLUSTERING.value
CONFIDENCE_PREFIX, AGENT_PREFIX = "confidence:", "agent_rating:"


class ResultsImportError(ValueError):
    """The file cannot be imported; ``errors`` says why, one message per problem."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("; ".join(self.errors[:3]) + (" ..." if len(self.errors) > 3 else ""))


# --------------------------------------------------------------------------- the Table Schema
# Every column is validated by frictionless against a Table Schema field: the data dictionary's
# (`codebook.Column.field`, the same descriptor `datapackage.json` carries), except for the columns
# the analysis reads, where the import accepts what other tools write (true/false, text labels).

_TRUE, _FALSE = ("1", "true", "t", "yes", "y"), ("0", "false", "f", "no", "n")
_WHOLE_FLOAT = re.compile(r"[+-]?[0-9]+\.0*")  # "900.0": pandas writes whole numbers so in a column with blanks


def _cases(words: tuple[str, ...]) -> list[str]:
    return sorted({v for w in words for v in (w, w.upper(), w.title())})


def _boolean(name: str, *, required: bool = False) -> dict:
    return {"name": name, "type": "boolean", "trueValues": _cases(_TRUE), "falseValues": _cases(_FALSE),
            "constraints": {"required": required}}


def _text(name: str, *, required: bool = True) -> dict:
    return {"name": name, "type": "string", "constraints": {"required": required, "maxLength": 200}}


def _label(name: str, *, required: bool = True) -> dict:
    """A class or group label: a whole number or text (`_labels` types the column afterwards)."""
    return {"name": name, "type": "string", "constraints": {"required": required}}


def _dictionary(kind: str, name: str, *, rename: str = "", required: bool | None = None) -> dict:
    """The data dictionary's field of `name` in export `kind`, renamed and its `required` changed."""
    column = codebook.entry(kind, name)
    assert column is not None, (kind, name)  # noqa: S101 - a name of this module's own schemas
    field = column.field()
    if rename:
        field["name"] = rename
    if required is not None:
        field["constraints"] = {**field.get("constraints", {}), "required": required}
    return field


@dataclass(frozen=True)
class Schema:
    """The columns the analysis reads (name -> Table Schema field); the file's other columns are
    checked against the data dictionary of export `codebook` and otherwise ignored."""

    required: dict[str, dict]
    optional: dict[str, dict]
    #: columns whose values are labels: integers when every value is one, else text
    labels: tuple[str, ...] = ()
    #: the export whose data dictionary (`studyapp.studies.codebook`) checks the file's other columns
    codebook: str = ""


def _fields(*fields: dict) -> dict[str, dict]:
    return {f["name"]: f for f in fields}


LEARNING_SCHEMA = Schema(
    required=_fields(
        _text("participant"), _text("arm"), _dictionary("tidy", "trial_index"), _boolean("correct", required=True),
    ),
    optional=_fields(
        _dictionary("tidy", "response_ms"),
        _label("choice", required=False), _label("true_label", required=False),
        _label("model_prediction", required=False),
        _boolean("completed"), _boolean("attention_check"),
        _dictionary("wide", "feedback_rating", rename="rating"),
        _dictionary("tidy", "config_hash"), _dictionary("tidy", "software_version"),
    ),
    labels=("choice", "true_label", "model_prediction"),
    codebook="tidy",
)
CLUSTERING_SCHEMA = Schema(
    required=_fields(
        _text("participant"), _text("stage"), _text("dataset"),
        _label("image_id"), _label("cluster"), _label("predicted_class"),
    ),
    optional=_fields(
        _label("batch", required=False), _text("arm", required=False),
        _dictionary("groupings", "config_hash"), _dictionary("groupings", "software_version"),
    ),
    labels=("image_id", "cluster", "predicted_class", "batch"),
    codebook="groupings",
)
PARTICIPANTS_SCHEMA = Schema(
    required=_fields(_text("participant")),
    optional=_fields(
        _text("arm", required=False), _dictionary("wide", "status", required=False), _boolean("completed"),
        _dictionary("wide", "feedback_rating"), _dictionary("wide", "feedback_rating", rename="rating"),
    ),
    codebook="wide",
)


# --------------------------------------------------------------------------- reading


def _decode(content: bytes | str, what: str) -> str:
    if isinstance(content, str):
        return content
    if len(content) > MAX_BYTES:
        raise ResultsImportError([f"The {what} is larger than {MAX_BYTES // 2**20} MB."])
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ResultsImportError(
            [f"The {what} is not UTF-8 text (byte {exc.start} cannot be decoded). Save it as CSV UTF-8."]
        ) from None


def _rows(text: str, what: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line number, cells)`` of every non-blank data row."""
    # The delimiter is whichever of , ; or tab the header line uses most (spreadsheets in some
    # locales save CSV with semicolons); csv.Sniffer guesses wrongly on one-column files.
    first_line = text.split("\n", 1)[0]
    delimiter = max([",", ";", "\t"], key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise ResultsImportError([f"The {what} is empty: it needs a header line of column names."])
        header = [h.strip() for h in header]
        rows = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            rows.append((reader.line_num, [c.strip() for c in cells]))
    except csv.Error as exc:
        raise ResultsImportError([f"The {what} is not valid CSV: {exc}."]) from None
    duplicated = [name for name, n in Counter(header).items() if n > 1]
    if duplicated:
        raise ResultsImportError([f"The {what} has duplicate column(s) {duplicated}."])
    return header, rows


def _problem(error: frictionless.errors.CellError, field: dict) -> str:
    """A frictionless cell error in the words of the upload page."""
    if error.type == "type-error":
        return {
            "integer": "not a whole number", "number": "not a number", "boolean": "expected 0/1 or true/false",
            "datetime": "not an ISO 8601 date and time (e.g. 2026-01-31T14:05:00+00:00)",
        }.get(field["type"], f"not a {field['type']}")
    constraints = field.get("constraints", {})
    match = re.match(r'constraint "(\w+)"', error.note)
    constraint = match[1] if match else ""
    if constraint == "required":
        return "a value is required"
    if constraint in ("minimum", "maximum"):
        low, high = constraints.get("minimum"), constraints.get("maximum")
        return f"outside {low:g}..{high:g}" if low is not None and high is not None else (
            f"outside >= {low:g}" if low is not None else f"outside <= {high:g}")
    if constraint == "enum":
        shown = [f"{c['value']} ({c['label']})" for c in field["categories"]] if field.get("categories") else [
            str(v) for v in constraints["enum"]]
        return f"not one of the allowed values: {', '.join(shown)}"
    if constraint == "pattern":
        return f"does not match the pattern {constraints['pattern']}"
    if constraint == "maxLength":
        return f"at most {constraints['maxLength']} characters"
    return error.note


def _parse(text: str, schema: Schema, what: str, *, more: Mapping[str, dict] | None = None) -> pd.DataFrame:
    """The file's columns that `schema` (and `more`) name, typed, after frictionless validated every
    column; `ResultsImportError` lists each problem by line and column."""
    header, rows = _rows(text, what)
    missing = [c for c in schema.required if c not in header]
    if missing:
        raise ResultsImportError(
            [f"The {what} is missing the required column(s) {missing}; it has {header}."]
        )
    if not rows:
        raise ResultsImportError([f"The {what} has a header but no data rows."])
    read = {**schema.required, **schema.optional, **(more or {})}
    fields = []
    for name in header:
        column = codebook.entry(schema.codebook, name) if name not in read and schema.codebook else None
        fields.append(read.get(name) or (column.field() if column is not None else {"name": name, "type": "any"}))
    errors: list[str] = []
    data, lines = [header], []
    for line, cells in rows:
        if len(cells) != len(header):
            errors.append(f"line {line}: {len(cells)} fields, but the header has {len(header)}.")
            continue
        data.append([
            cell.split(".")[0] if field["type"] == "integer" and _WHOLE_FLOAT.fullmatch(cell) else cell
            for field, cell in zip(fields, cells, strict=True)
        ])
        lines.append(line)
    by_name = {f["name"]: f for f in fields}
    values: dict[str, list] = {name: [] for name in header if name in read}
    resource = frictionless.Resource(data=data, schema=frictionless.Schema.from_descriptor({"fields": fields}))
    with resource:
        for line, row in zip(lines, resource.row_stream, strict=True):
            for error in row.errors:
                errors.append(f"line {line}, column '{error.field_name}': {error.cell!r}: "
                              f"{_problem(error, by_name[error.field_name])}.")
            for name in values:
                values[name].append(row[name])
    _raise(errors)
    frame = pd.DataFrame(values)
    frame.insert(0, "_line", lines)
    for name in schema.labels:
        if name in frame.columns:
            frame[name] = _labels(frame[name])
    return frame


def _labels(column: pd.Series) -> pd.Series:
    """Whole numbers as integers (so that "3" from a CSV equals 3 from the database), else text."""
    present = column.dropna()
    try:
        numbers = present.astype(float)
    except (TypeError, ValueError):
        return column
    if len(present) and (numbers == numbers.round()).all():
        dtype = "int64" if len(present) == len(column) else "Int64"
        return pd.to_numeric(column).astype(dtype)
    return column


def _raise(errors: list[str]) -> None:
    if not errors:
        return
    listed = errors[:MAX_LISTED]
    if len(errors) > MAX_LISTED:
        listed.append(f"... and {len(errors) - MAX_LISTED} more problem(s).")
    raise ResultsImportError(listed)


def _one_per_participant(frame: pd.DataFrame, column: str, what: str) -> list[str]:
    values = frame.dropna(subset=[column]).groupby("participant")[column].nunique()
    bad = values[values > 1].index.tolist()
    if bad:
        return [f"The {what} gives participant(s) {bad[:5]} more than one {column}."]
    return []


# --------------------------------------------------------------------------- parsed result


@dataclass
class ParsedResults:
    design: str
    frames: dict[str, pd.DataFrame]
    config_hashes: dict[str, int]
    software_versions: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def main(self) -> pd.DataFrame:
        return self.frames["trials" if self.design == LEARNING else "groupings"]

    @property
    def n_participants(self) -> int:
        return int(self.main["participant"].nunique())

    @property
    def config_hash(self) -> str:
        return next(iter(self.config_hashes)) if len(self.config_hashes) == 1 else ""


def parse_results(
    content: bytes | str, *, design: str, participants: bytes | str | None = None
) -> ParsedResults:
    """Parse and check a results file (and the optional participants file) of `design`.

    Raises `ResultsImportError` with every problem found; returns the frames otherwise.
    """
    if design not in (LEARNING, CLUSTERING):
        raise ResultsImportError([f"Unknown design {design!r}; use {LEARNING} or {CLUSTERING}."])
    schema = LEARNING_SCHEMA if design == LEARNING else CLUSTERING_SCHEMA
    frame = _parse(_decode(content, "results file"), schema, "results file")
    errors = _one_per_participant(frame, "config_hash", "results file") if "config_hash" in frame else []
    if design == LEARNING:
        frames, more = _learning_frames(frame)
    else:
        frames, more = _clustering_frames(frame)
    errors += more
    _raise(errors)
    parsed = ParsedResults(
        design=design,
        frames=frames,
        config_hashes=_hashes(frame),
        software_versions=sorted(frame["software_version"].dropna().unique().tolist())
        if "software_version" in frame
        else [],
    )
    if participants is not None:
        _merge_participants(parsed, _decode(participants, "participants file"))
    return parsed


def _hashes(frame: pd.DataFrame) -> dict[str, int]:
    if "config_hash" not in frame:
        return {}
    per = frame.dropna(subset=["config_hash"]).drop_duplicates("participant")
    return {str(k): int(v) for k, v in per["config_hash"].value_counts().sort_index().items()}


def _structure_error(exc: AnalysisInputError) -> str:
    return f"The results file does not have the tidy structure: {exc}."


def _learning_frames(frame: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], list[str]]:
    errors = []
    try:
        learning.cumulative_correct(frame)  # one arm per participant, trial_index 0, 1, 2, ...
    except AnalysisInputError as exc:
        errors.append(_structure_error(exc))
    ratings = pd.DataFrame(columns=["participant", "arm", "rating"])
    if "rating" in frame:
        errors += _one_per_participant(frame, "rating", "results file")
        ratings = (
            frame.dropna(subset=["rating"]).drop_duplicates("participant")[["participant", "arm", "rating"]]
        )
        ratings["rating"] = ratings["rating"].astype("int64")
    trials = frame.drop(columns=["_line", "rating"], errors="ignore")
    trials = trials.sort_values(["participant", "trial_index"], kind="stable").reset_index(drop=True)
    return {"trials": trials, "ratings": ratings.reset_index(drop=True)}, errors


def _clustering_frames(frame: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], list[str]]:
    errors = []
    groupings = frame.drop(columns=["_line"])
    if "batch" in groupings and groupings["batch"].isna().any():
        errors.append("The results file leaves 'batch' blank on some rows: fill it on all or none.")
    else:
        try:
            clustering.purity_table(groupings)
        except AnalysisInputError as exc:
            errors.append(_structure_error(exc))
    if "arm" not in groupings:
        groupings["arm"] = "All"
    return {"groupings": groupings.reset_index(drop=True)}, errors


def _merge_participants(parsed: ParsedResults, text: str) -> None:
    """Add ratings, completion, confidence and agent ratings from a one-row-per-participant file."""
    what = "participants file"
    header, _ = _rows(text, what)
    rating_cols = [c for c in ("feedback_rating", "rating") if c in header]
    # The questionnaires' columns, typed by the data dictionary's patterns.
    questions = {
        c: _dictionary("wide", c) for c in header if c.startswith((CONFIDENCE_PREFIX, AGENT_PREFIX))
    }
    frame = _parse(text, PARTICIPANTS_SCHEMA, what, more=questions)
    if "status" in frame:  # completed or not: every other status of the dictionary (active, timed out...) is not
        frame["status"] = frame["status"].map(lambda s: None if s is None else s == "completed")
    errors = []
    dup = frame.loc[frame["participant"].duplicated(), "_line"].tolist()
    if dup:
        errors.append(f"The {what} lists a participant twice (line(s) {dup[:5]}).")
    main = parsed.main
    arm_of = main.drop_duplicates("participant").set_index("participant")["arm"]
    known = frame["participant"].isin(arm_of.index)
    if "arm" in frame:
        clash = frame[known & frame["arm"].notna()]
        clash = clash[clash["arm"].to_numpy() != arm_of.reindex(clash["participant"]).to_numpy()]
        errors += [
            f"{what}, line {r['_line']}: participant {r['participant']} is in arm {r['arm']}, "
            f"but in arm {arm_of[r['participant']]} in the results file."
            for r in clash.to_dict("records")
        ]
    _raise(errors)
    unknown = int((~known).sum())
    if unknown:
        parsed.notes.append(
            f"{unknown} participant(s) of the participants file have no rows in the results file "
            "(e.g. enrolled but answered nothing); they are left out."
        )
    frame = frame[known].reset_index(drop=True)
    frame["arm"] = frame["participant"].map(arm_of)

    completed = None
    for c in ("completed", "status"):
        if c in frame:
            completed = frame.set_index("participant")[c]
            break
    if completed is not None:
        _merge_completed(parsed, completed)
    if parsed.design == LEARNING and rating_cols:
        _merge_ratings(parsed, frame, rating_cols[0])
    if parsed.design == CLUSTERING:
        _merge_questionnaires(parsed, frame)


def _merge_completed(parsed: ParsedResults, completed: pd.Series) -> None:
    main = parsed.main
    merged = main["participant"].map(completed)
    if "completed" in main:
        both = main["completed"].notna() & merged.notna()
        clash = main.loc[both & (main["completed"] != merged), "participant"].unique().tolist()
        _raise([f"The two files disagree on whether participant(s) {clash[:5]} completed."] if clash else [])
        merged = main["completed"].where(main["completed"].notna(), merged)
    if merged.isna().any():
        parsed.notes.append("Some participants have no completion status; the 'incomplete' rule counts them as not completed.")
        main["completed"] = merged.astype("boolean")
    else:
        main["completed"] = merged.astype(bool)


def _merge_ratings(parsed: ParsedResults, frame: pd.DataFrame, column: str) -> None:
    extra = frame.dropna(subset=[column])[["participant", "arm", column]].rename(columns={column: "rating"})
    extra["rating"] = extra["rating"].astype("int64")
    ratings = parsed.frames["ratings"]
    if len(ratings):
        both = ratings.merge(extra, on="participant", suffixes=("", "_other"))
        clash = both.loc[both["rating"] != both["rating_other"], "participant"].tolist()
        _raise([f"The two files give different ratings for participant(s) {clash[:5]}."] if clash else [])
        extra = extra[~extra["participant"].isin(ratings["participant"])]
    parsed.frames["ratings"] = pd.concat([ratings, extra], ignore_index=True)


def _merge_questionnaires(parsed: ParsedResults, frame: pd.DataFrame) -> None:
    conf_rows, agent_rows, with_dataset = [], [], False
    for column in frame.columns:
        if column.startswith(CONFIDENCE_PREFIX):
            parts = column[len(CONFIDENCE_PREFIX):].split(":")
            with_dataset = with_dataset or len(parts) > 1
            for participant, value in frame[["participant", column]].dropna().itertuples(index=False):
                conf_rows.append((participant, parts[0], int(value), parts[1] if len(parts) > 1 else None))
        elif column.startswith(AGENT_PREFIX):
            agent = column[len(AGENT_PREFIX):]
            for participant, value in frame[["participant", column]].dropna().itertuples(index=False):
                agent_rows.append((participant, agent, int(value)))
    confidence = pd.DataFrame(conf_rows, columns=["participant", "stage", "confidence", "dataset"])
    if not with_dataset:
        confidence = confidence.drop(columns="dataset")
    parsed.frames["confidence"] = confidence
    parsed.frames["agent_ratings"] = pd.DataFrame(agent_rows, columns=["participant", "agent", "rating"])


# --------------------------------------------------------------------------- storage


def frame_to_json(frame: pd.DataFrame) -> dict:
    """A frame as ``{"columns": {name: [values]}, "dtypes": {name: dtype}}`` (NaN/NA as null)."""
    columns = {}
    for name in frame.columns:
        values = frame[name].astype(object).where(frame[name].notna(), None).tolist()
        columns[name] = [v.item() if isinstance(v, np.generic) else v for v in values]
    return {"columns": columns, "dtypes": {name: str(frame[name].dtype) for name in frame.columns}}


def frame_from_json(payload: Mapping) -> pd.DataFrame:
    frame = pd.DataFrame(payload.get("columns", {}))
    for name, dtype in payload.get("dtypes", {}).items():
        if name in frame and dtype != "object":
            frame[name] = frame[name].astype(dtype)
    return frame


def imported_frames(imported: ImportedResults) -> dict[str, pd.DataFrame]:
    """The stored frames of an imported result set, with their original dtypes."""
    return {name: frame_from_json(payload) for name, payload in (imported.data or {}).items()}


def imported_results_create(
    *,
    name: str,
    design: str,
    content: bytes | str,
    participants: bytes | str | None = None,
    config: Mapping | None = None,
    filename: str = "",
    participants_filename: str = "",
    user=None,
) -> ImportedResults:
    """Parse, check and store a result set. Raises `ResultsImportError`, storing nothing."""
    name = (name or "").strip()
    if not name:
        raise ResultsImportError(["Give the result set a name."])
    parsed = parse_results(content, design=design, participants=participants)
    raw = content.encode() if isinstance(content, str) else content
    meta = {
        "filename": filename,
        "file_sha256": hashlib.sha256(raw).hexdigest(),
        "participants_filename": participants_filename,
        "config_hashes": parsed.config_hashes,
        "software_versions": parsed.software_versions,
        "columns": list(parsed.main.columns),
        "notes": parsed.notes,
    }
    with transaction.atomic():
        return ImportedResults.objects.create(
            name=name[:200],
            study_design=design,
            config_hash=parsed.config_hash,
            config=dict(config or {}),
            data={k: frame_to_json(v) for k, v in parsed.frames.items()},
            meta=meta,
            n_rows=len(parsed.main),
            n_participants=parsed.n_participants,
            uploaded_at=timezone.now(),
            uploaded_by=user if getattr(user, "pk", None) else None,
        )
