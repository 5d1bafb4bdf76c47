"""Study templates: the published designs, as data, from which every new study is made.

A template is a published study's design (its fixture file under ``fixtures/``: the study's
fields and its arms) plus the texts to use when the study runs on other images than the
published ones (``fixtures/template_texts.json``: the published texts name the published
images, "symbols" or "birds and cells"). ``designs.create`` makes a draft study from a template;
the demo, ``create_study`` and the admin's "New study from template" all go through it, so the
published studies are loaded the same way as a researcher's own.

Example::

    >>> sorted(TEMPLATES)
    ['bias', 'clustering', 'decision', 'hive', 'learning', 'simulation']
    >>> template_design("learning")["study"]["design"]
    'learning'
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings

__all__ = ["TEMPLATES", "Template", "TemplateError", "comma_list", "neutral_texts", "template_design"]


class TemplateError(ValueError):
    """A template or the researcher's choices for it cannot make a study; the message says why."""


@dataclass(frozen=True)
class Template:
    """One published design: where its fixture lies, which data sets it was published on."""

    name: str
    design: str
    fixture: str
    published_slug: str
    #: ``Dataset.kind`` values of the published data (its texts fit only those images)
    published_kinds: tuple[str, ...]
    source: str


TEMPLATES: dict[str, Template] = {
    "learning": Template(
        name="learning", design="learning", fixture="study_a_kannada.json", published_slug="kannada-learning",
        published_kinds=("kannada", "lookalike"),
        source="CDeepEx dissertation, chapter 5: two look-alike classes with made-up names, 20 trials, feedback by arm",
    ),
    "clustering": Template(
        name="clustering", design="clustering", fixture="study_b_clustering.json", published_slug="xnn-clustering",
        published_kinds=("cub", "cel", "digit_standin"),
        source="XNN paper, section 4.1: grouping without visualisation, with one heatmap, with the XNN's x-feature heatmaps",
    ),
    "simulation": Template(
        name="simulation", design="simulation", fixture="study_simulation.json", published_slug="kannada-simulation",
        published_kinds=("kannada", "lookalike"),
        source="Forward simulation (Hase & Bansal, ACL 2020; Colin et al., NeurIPS 2022): pre-test, learning with the arm's explanation, post-test",
    ),
    "decision": Template(
        name="decision", design="decision", fixture="study_decision.json", published_slug="kannada-decision",
        published_kinds=("kannada", "lookalike"),
        source="AI-assisted decision (Nguyen et al., NeurIPS 2021; Schemmer et al., IUI 2023): answer alone, then with the model's answer and the arm's explanation",
    ),
}
TEMPLATES["bias"] = Template(  # issue 25, protocol 4
    name="bias", design="bias", fixture="study_bias.json", published_slug="kannada-bias",
    published_kinds=("kannada", "lookalike"),
    source="Bias discovery (dissertation §3.2.2, the biased 8; Sixt et al., ICLR 2022): explanations of a classifier "
    "with a planted cue, then a region marked on the image and a choice among candidate cues, scored against the planted cue",
)
# Issue 25, protocol 3.
TEMPLATES["hive"] = Template(
    name="hive", design="hive", fixture="study_hive.json", published_slug="kannada-hive", published_kinds=("kannada", "lookalike"),
    source="HIVE (Kim et al., ECCV 2022): agreement (confidence that the model's answer is correct, 4-point scale) "
           "and distinction (which of the maps of the model's top four classes is its answer's)",
)


def _fixtures() -> Path:
    return Path(settings.BASE_DIR) / "fixtures"


@lru_cache(maxsize=8)
def _read(filename: str) -> str:
    return (_fixtures() / filename).read_text(encoding="utf-8")


def template_design(name: str) -> dict:
    """``{"study": fields, "arms": [fields, ...]}`` of template ``name`` (a fresh copy; no pks)."""
    if name not in TEMPLATES:
        raise TemplateError(f"Unknown template {name!r}; the templates are: {', '.join(sorted(TEMPLATES))}.")
    rows = json.loads(_read(TEMPLATES[name].fixture))
    study = next(row["fields"] for row in rows if row["model"] == "studies.study")
    arms = sorted((row["fields"] for row in rows if row["model"] == "studies.arm"), key=lambda a: a.get("position", 0))
    study = {k: v for k, v in study.items() if k not in ("created_at", "updated_at", "status")}
    arms = [{k: v for k, v in arm.items() if k != "study"} for arm in arms]
    return copy.deepcopy({"study": study, "arms": arms})


def neutral_texts(name: str) -> dict:
    """The texts of template ``name`` for images other than the published ones (study fields,
    ``arms``: arm name -> instruction, and ``notes``)."""
    return copy.deepcopy(json.loads(_read("template_texts.json")).get(name, {}))


def comma_list(value: str | None) -> list[str]:
    """``"curl, loop"`` -> ``["curl", "loop"]``: how the command and the admin form take lists."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]
