"""The POST body of a study's admin change form, as the page would send it unchanged."""

from __future__ import annotations

import json

from django.test import Client

from studyapp.studies.models import Study


def study_change_data(client: Client, study: Study) -> dict:
    page = client.get(f"/admin/studies/study/{study.pk}/change/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    for key in ("instructions", "classes", "class_names", "rating_scale", "config"):
        data[key] = json.dumps(getattr(study, key))
    arms = list(study.arms.order_by("position", "pk"))
    versions = list(study.versions.order_by("-number"))
    data.update({
        "arms-TOTAL_FORMS": str(len(arms)), "arms-INITIAL_FORMS": str(len(arms)),
        "arms-MIN_NUM_FORMS": "0", "arms-MAX_NUM_FORMS": "1000",
        "versions-TOTAL_FORMS": str(len(versions)), "versions-INITIAL_FORMS": str(len(versions)),
        "versions-MIN_NUM_FORMS": "0", "versions-MAX_NUM_FORMS": "1000",
    })
    for i, version in enumerate(versions):
        data.update({f"versions-{i}-id": str(version.pk), f"versions-{i}-study": str(study.pk)})
    for i, arm in enumerate(arms):
        data.update({
            f"arms-{i}-id": str(arm.pk), f"arms-{i}-study": str(study.pk), f"arms-{i}-position": str(arm.position),
            f"arms-{i}-name": arm.name, f"arms-{i}-feedback": arm.feedback, f"arms-{i}-instruction": arm.instruction,
            f"arms-{i}-cap": "" if arm.cap is None else str(arm.cap),
        })
    return data


def superuser_client(username: str = "owner") -> Client:
    """A test client logged in as a new superuser (the researcher who owns the studies)."""
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.create_superuser(username, f"{username}@example.org", "pw"))
    return client
