"""Every analysis view is staff-only, and asks for the model permission the admin would."""

from __future__ import annotations

import pytest

from studyapp.analysis import importing
from studyapp.analysis.models import ImportedResults
from studyapp.studies.models import Study
from tests.studyapp.factories import learning_study

pytestmark = pytest.mark.django_db

CSV = "participant,arm,trial_index,correct\nP1,Control,0,1\nP1,Control,1,0\nP2,CDeepEx,0,1\nP2,CDeepEx,1,1\n"


@pytest.fixture
def objects():
    study = learning_study(open_it=False)
    imported = importing.imported_results_create(name="lab pilot", design="learning", content=CSV)
    return study, imported


def read_urls(study: Study, imported: ImportedResults) -> list[str]:
    s, i = study.pk, imported.pk
    return [
        f"/admin/analysis/study/{s}/",
        f"/admin/analysis/study/{s}/figure/learning-curve.png",
        f"/admin/analysis/study/{s}/figure/ratings.svg",
        f"/admin/analysis/study/{s}/report.html",
        f"/admin/studies/study/{s}/export/groupings.csv",
        f"/admin/studies/study/{s}/export/events.csv?ids=hash",
        f"/admin/analysis/imported/{i}/",
        f"/admin/analysis/imported/{i}/figure/learning-curve.png",
        f"/admin/analysis/imported/{i}/report.html",
    ]


def form_data(alpha: str = "0.05") -> dict:
    return {
        "tests-TOTAL_FORMS": "1", "tests-INITIAL_FORMS": "0", "tests-MIN_NUM_FORMS": "0", "tests-MAX_NUM_FORMS": "20",
        "tests-0-level1": "CDeepEx", "tests-0-alternative": "greater", "tests-0-level2": "Control", "alpha": alpha,
    }


def test_an_outsider_is_sent_to_the_login_page(objects, outsider):
    study, imported = objects
    for url in [*read_urls(study, imported), "/admin/analysis/imported/upload/"]:
        response = outsider.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url
    response = outsider.post(f"/admin/analysis/study/{study.pk}/", form_data())
    assert response.status_code == 302
    assert Study.objects.get(pk=study.pk).config.get("alpha") == 0.1


def test_a_member_who_is_not_staff_is_sent_to_the_login_page(objects, member):
    study, imported = objects
    for url in [*read_urls(study, imported), "/admin/analysis/imported/upload/"]:
        response = member.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url
    assert member.post(f"/admin/analysis/study/{study.pk}/", form_data()).status_code == 302
    assert Study.objects.get(pk=study.pk).config.get("alpha") == 0.1


def test_staff_without_permissions_are_refused(objects, staff_without_permissions):
    study, imported = objects
    for url in [*read_urls(study, imported), "/admin/analysis/imported/upload/"]:
        assert staff_without_permissions.get(url).status_code == 403, url


def test_a_viewer_sees_everything_but_changes_nothing(objects, viewer):
    study, imported = objects
    for url in read_urls(study, imported):
        assert viewer.get(url).status_code == 200, url
    page = viewer.get(f"/admin/analysis/study/{study.pk}/").content.decode()
    assert 'id="tests-form"' not in page  # the form is only for those who may change the study
    assert viewer.post(f"/admin/analysis/study/{study.pk}/", form_data()).status_code == 403
    assert viewer.post(f"/admin/analysis/imported/{imported.pk}/", form_data()).status_code == 403
    assert viewer.get("/admin/analysis/imported/upload/").status_code == 403
    assert Study.objects.get(pk=study.pk).config.get("alpha") == 0.1


def test_the_owner_sees_and_changes(objects, owner):
    study, imported = objects
    for url in [*read_urls(study, imported), "/admin/analysis/imported/upload/"]:
        assert owner.get(url).status_code == 200, url
    response = owner.post(f"/admin/analysis/study/{study.pk}/", form_data("0.05"))
    assert response.status_code == 302
    assert Study.objects.get(pk=study.pk).config["tests"] == [["CDeepEx", "Control", "greater"]]
    response = owner.post(f"/admin/analysis/imported/{imported.pk}/", form_data("0.2"))
    assert response.status_code == 302
    assert ImportedResults.objects.get(pk=imported.pk).config == {"tests": [["CDeepEx", "Control", "greater"]], "alpha": 0.2}


def test_unknown_figures_and_exports_are_not_found(objects, owner):
    study, _ = objects
    assert owner.get(f"/admin/analysis/study/{study.pk}/figure/nope.png").status_code == 404
    assert owner.get(f"/admin/analysis/study/{study.pk}/figure/learning-curve.gif").status_code == 404
    assert owner.get(f"/admin/studies/study/{study.pk}/export/nope.csv").status_code == 404
    assert owner.get(f"/admin/studies/study/{study.pk}/export/events.csv?ids=leak").status_code == 400
    assert owner.get("/admin/analysis/study/999999/").status_code == 404


def test_the_url_name_the_study_list_links():
    from django.urls import reverse

    assert reverse("analysis-study", args=[7]) == "/admin/analysis/study/7/"
