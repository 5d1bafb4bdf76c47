"""The admin warns when a researcher's text would tell participants what the data is (issue 23,
item 1): a warning on save, not a refusal."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages

from studyapp.studies.disclosure import disclosure_warnings
from studyapp.studies.models import Study
from tests.studyapp.admin_forms import study_change_data, superuser_client
from tests.studyapp.factories import clustering_study, learning_study

pytestmark = pytest.mark.django_db


def test_a_text_naming_the_script_is_saved_with_a_warning_that_says_where():
    owner = superuser_client()
    study = learning_study(open_it=False)
    data = study_change_data(owner, study)
    data["cover_story"] = "You will learn two digits of the Kannada script."
    data["title"] = "Symbols"
    reply = owner.post(f"/admin/studies/study/{study.pk}/change/", data)
    assert reply.status_code == 302  # saved: a warning, not a refusal
    assert Study.objects.get(pk=study.pk).cover_story == data["cover_story"]
    warnings = [str(m) for m in get_messages(reply.wsgi_request) if m.level_tag == "warning"]
    cover = [w for w in warnings if "The cover story" in w]
    assert len(cover) == 1 and "“kannada”" in cover[0] and "“digits”" in cover[0], warnings
    assert not any("The title" in w for w in warnings)


def test_the_published_templates_texts_name_nothing_of_the_data():
    """Only the slugs (the researcher's names, never shown to participants) name the data."""
    for study in (learning_study(open_it=False), clustering_study(open_it=False)):
        found = disclosure_warnings(Study.objects.get(pk=study.pk))
        assert all(w.startswith("The slug") for w in found), found


def test_data_set_and_class_names_are_giveaways_too():
    study = clustering_study(open_it=False)
    study.cover_story = "Sort the gulls: a California gull looks like a Western gull."
    study.instructions = ["Group the Lamellipodia cells apart."]
    found = disclosure_warnings(study)
    assert any(w.startswith("The cover story") and "“california”" in w and "“gull”" in w for w in found), found
    assert any(w.startswith("Instruction 1") and "“lamellipodia”" in w for w in found), found
