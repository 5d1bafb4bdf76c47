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
    assert config.heatmap_method == "excitation_bp" and config.alpha == 0.05


def test_stored_values_are_parsed_and_unknown_keys_of_old_rows_still_load():
    config = read_config({"max_groups": "6", "datasets": ["CEL"], "legacy_key": 1})
    assert config.max_groups == 6 and config.datasets == ("CEL",)


@pytest.mark.parametrize(("raw", "field"), [
    ({"max_groups": 1}, "max_groups"),
    ({"wrong_share": 1.5}, "wrong_share"),
    ({"alpha": "often"}, "alpha"),
    ({"datasets": "CUB"}, "datasets"),
    ({"spare_stimulli": 3}, "spare_stimulli"),
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


def test_no_module_reads_a_config_key_with_its_own_default():
    """``study.config.get(...)`` / ``(study.config or {})`` outside the reader would give a key a
    second default: the typed reader is the one place."""
    offenders = []
    for path in (ROOT / "studyapp").rglob("*.py"):
        if "migrations" in path.parts or path.name == "study_config.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr == "get" and isinstance(node.value, ast.Attribute)
                    and node.value.attr == "config"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if (isinstance(node, ast.BoolOp) and isinstance(node.values[0], ast.Attribute)
                    and node.values[0].attr == "config"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
