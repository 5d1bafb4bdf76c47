"""The one typed reader of Study.config: one default per key, bad values named on save."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from studyapp.lib.study_config import StudyConfig, StudyConfigError, read_config, validate_config
from tests.studyapp.factories import clustering_study, learning_study

ROOT = Path(__file__).resolve().parents[3]


def test_an_empty_configuration_gives_the_published_defaults():
    config = read_config(None)
    assert config == read_config({}) == StudyConfig()
    assert config.datasets == ("CUB", "CEL") and config.max_groups == 10 and config.spare_stimuli == 4
    assert config.heatmap_method == "excitation_bp" and config.analysis() == {}


def test_stored_values_are_parsed_and_unknown_keys_of_old_rows_still_load():
    config = read_config({"max_groups": "6", "datasets": ["CEL"], "legacy_key": 1})
    assert config.max_groups == 6 and config.datasets == ("CEL",)


@pytest.mark.parametrize(("raw", "field"), [
    ({"max_groups": 1}, "max_groups"),
    ({"wrong_share": 1.5}, "wrong_share"),
    ({"alpha": "often"}, "alpha"),
    ({"tests": [["CDeepEx", "Control", "bigger"]]}, "tests"),
    ({"exclusions": {"min_response_ms": 250}}, "exclusions"),
    ({"datasets": "CUB"}, "datasets"),
    ({"group_rule": "often"}, "group_rule"),
    ({"n_groups": 11}, "n_groups"),
    ({"demographics": "census"}, "demographics"),
    ({"spare_stimulli": 3}, "spare_stimulli"),
    ({"comprehension": {"questions": [{"key": "q", "label": "Q?", "options": ["a", "b"], "answer": 2}]}}, "comprehension.questions.0"),
    ({"comprehension": {"questions": [], "attempts": 3}}, "comprehension.questions"),
    ({"catch_trials": [{"after": 2, "options": ["x", "y"], "answer": 5}]}, "catch_trials.0"),
    ({"time_limits": {"step_minutes": {"trial": 0}}}, "time_limits"),
    ({"time_limits": {"step_minutes": {"lunch": 5}}}, "time_limits.step_minutes.lunch"),
    ({"exits": {"full": {"code": "has space"}}}, "exits.full.code"),
    ({"exits": {"finished": {"code": "X"}}}, "exits.finished"),
    ({"exits": {"completed": {"redirect_url": "javascript:alert(1)"}}}, "exits.completed.redirect_url"),
])
def test_a_bad_configuration_is_refused_with_the_field_named(raw, field):
    with pytest.raises(StudyConfigError, match=field):
        validate_config(raw)


@pytest.mark.django_db
def test_the_published_fixtures_validate_and_the_model_refuses_a_bad_save():
    for study in (learning_study(n_stimuli=2, open_it=False), clustering_study(n_sets=1, set_size=2, open_it=False)):
        validate_config(study.config)
        study.config = {**study.config, "n_sets": 0}
        with pytest.raises(ValidationError) as caught:
            study.full_clean()
        assert "n_sets" in str(caught.value.message_dict["config"])


# ``ImportedResults.config`` is an upload's analysis settings, handed as stored to the statistics
# package (its one parser); it is not a ``Study.config``.
NOT_STUDY_CONFIG = {"imported"}


def _own_default_reads(tree: ast.AST) -> list[int]:
    """Lines that read ``<x>.config`` with a default of their own: ``x.config.get(k, d)``,
    ``x.config[k]``, or ``x.config or {}`` used other than to merge (``{**(x.config or {}), ...}``)."""
    merged = {id(v) for node in ast.walk(tree) if isinstance(node, ast.Dict)
              for k, v in zip(node.keys, node.values, strict=True) if k is None}
    merged |= {id(a) for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
               and node.func.id == "dict" for a in node.args}

    def is_config(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "config"
                and not (isinstance(node.value, ast.Name) and node.value.id in NOT_STUDY_CONFIG))

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "get" and is_config(node.value):
            lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and is_config(node.value):
            lines.append(node.lineno)
        elif isinstance(node, ast.BoolOp) and is_config(node.values[0]) and id(node) not in merged:
            lines.append(node.lineno)
    return lines


def test_the_own_default_check_can_fail():
    tree = ast.parse("a = study.config.get('n', 3)\nb = (study.config or {})\nc = study.config['x']\n"
                     "study.config = {**(study.config or {}), 'k': 1}\nd = dict(study.config or {})\n")
    assert sorted(_own_default_reads(tree)) == [1, 2, 3]


def test_no_module_reads_a_config_key_with_its_own_default():
    """A key read past the typed reader would get a second default: the reader is the one place."""
    offenders = []
    for path in (ROOT / "studyapp").rglob("*.py"):
        if "migrations" in path.parts or path.name == "study_config.py":
            continue
        offenders += [f"{path.relative_to(ROOT)}:{n}" for n in _own_default_reads(ast.parse(path.read_text()))]
    assert offenders == [], offenders
