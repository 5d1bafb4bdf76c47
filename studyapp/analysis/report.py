"""A self-contained HTML report of an analysis the caller has already run (no external files,
scripts or fonts).

The report is the template ``admin/analysis/report.html`` filled from the same presenters as the
analysis page (`presenters`), so its tables show the page's numbers, cell for cell. Figures are
embedded as base64 ``data:`` URIs (PNG, or SVG with ``image_format="svg"``; a data URI rather
than inline ``<svg>`` keeps matplotlib's element ids of different figures from clashing). The
template escapes every string, including those that come from outside (configuration hash,
version, arm and participant names).
"""

from __future__ import annotations

import base64
import platform
from collections.abc import Sequence
from datetime import UTC, datetime

import matplotlib
import pandas as pd
import scipy
import statsmodels
from django.template.loader import render_to_string

from stats import figures
from stats.analyse import Analysis
from studyapp.analysis import presenters

IMAGE_FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


def _data_uri(fig, image_format: str) -> str:
    data = figures.figure_svg(fig) if image_format == "svg" else figures.figure_png(fig)
    return f"data:{IMAGE_FORMATS[image_format]};base64,{base64.b64encode(data).decode('ascii')}"


def _figures_with_data(result: Analysis) -> list[str]:
    """The figures of `result` that have something to draw (the report leaves out the others)."""
    names = []
    if result.learning is not None:
        if not result.learning.curve.empty:
            names.append("learning-curve")
        if result.learning.rating_dist is not None:
            names.append("ratings")
    if result.clustering is not None:
        c = result.clustering
        for name, table in (("purity", c.purities), ("confidence", c.confidence_dist), ("agent-ratings", c.agent_dist)):
            if table is not None:
                names.append(name)
    return names


def render_report(
    result: Analysis,
    *,
    config_hash: str,
    software_version: str,
    levels: Sequence[str] = (),
    notes: Sequence[str] = (),
    study_notes: str = "",
    title: str = "Analysis report",
    generated_at: datetime | None = None,
    image_format: str = "png",
    metrics_people: dict | None = None,
) -> str:
    """The whole of `result` as one HTML document (a ``str``).

    `config_hash` is the text shown for the configuration (e.g. `presenters.config_hash_line`),
    `levels` the arms or stages in the order the tables show them, `notes` any problems with the
    analysis settings, `study_notes` the study's own notes (``config.notes``: where the published
    design is silent and what was chosen). `generated_at` must be timezone-aware; default now (UTC).
    `metrics_people`: the "Do the automatic metrics predict people?" section as
    `presenters_metrics_people.metrics_people_section` gives it (a study's report only).
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}, not {image_format!r}")
    generated_at = generated_at or datetime.now(UTC)
    if generated_at.tzinfo is None:
        raise ValueError("generated_at must be timezone-aware")
    settings = result.settings
    ctx: dict = {
        "title": title,
        "meta": [
            ("Configuration hash", config_hash),
            ("Software version", software_version),
            ("Generated", generated_at.isoformat(timespec="seconds")),
            ("Libraries", f"Python {platform.python_version()}, pandas {pd.__version__}, scipy {scipy.__version__}, "
                          f"statsmodels {statsmodels.__version__}, matplotlib {matplotlib.__version__}"),
            ("Alpha", f"{settings.alpha:g}"),
            *([("The study's notes", study_notes)] if study_notes else []),
        ],
        "notes": list(notes),
        "design": result.design,
        "settings": settings,
        **presenters.sections(result, levels=levels),
        "figure_template": "admin/analysis/_report_figure.html",
        "metrics_people": metrics_people,
        "figures": {
            name.replace("-", "_"): _data_uri(presenters.figure(result, name), image_format)
            for name in _figures_with_data(result)
        },
    }
    return render_to_string("admin/analysis/report.html", ctx)
