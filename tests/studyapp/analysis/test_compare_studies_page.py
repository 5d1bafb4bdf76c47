"""The comparison of clustering studies in the admin (XNN paper Fig. 4 across studies): the main
study's NoVis, 1-Heatmap (ExcitationBP) and XNN beside a complementary study's 1-Heatmap (DeepLIFT),
each with its own (synthetic) participants, through the admin action and the analysis page."""

from __future__ import annotations

import io
import random
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.html import escape
from PIL import Image

from stats.clustering import BETWEEN_STUDIES_NOTE, purity
from studyapp.pipeline.models import Stimulus
from studyapp.studies.designs.create import study_copy
from studyapp.studies.models import Grouping, Participant, Study
from tests.studyapp.analysis_site.conftest import (  # noqa: F401 (the personas)
    owner,
    page_tables,
    staff_without_permissions,
    value,
)
from tests.studyapp.factories import clustering_study, learning_study

pytestmark = pytest.mark.django_db

STAGES = ("NoVis", "1-Heatmap", "XNN")
MAIN = {"NoVis": 0.3, "1-Heatmap": 0.6, "XNN": 0.9}
#: The complementary study's heatmap helps far less; its other stages are as the main study's.
DEEPLIFT = {"NoVis": 0.3, "1-Heatmap": 0.05, "XNN": 0.9}


def _complementary(main: Study) -> Study:
    """A second study of the same design with the DeepLIFT heatmap: a copy, as the admin makes it."""
    copy = study_copy(study=main, slug="xnn-deeplift", title="Complementary: DeepLIFT")
    copy.config = {**copy.config, "heatmap_method": "deeplift"}
    copy.save()
    return copy


def _participants(study: Study, accuracy: dict[str, float], *, n: int, seed: int) -> None:
    """`n` completed runs of synthetic participants: per data set and stage, a batch of 10 images
    each put in the group of its predicted class with probability ``accuracy[stage]``, else at random."""
    rng = random.Random(seed)
    arm = study.arms.get()
    images = {d: list(Stimulus.objects.filter(group=d).values_list("pk", "model_prediction")) for d in ("CUB", "CEL")}
    now = timezone.now()
    for i in range(n):
        p = Participant.objects.create(
            study=study, code=f"{study.slug}-{i:03d}", arm=arm, plan=[{"kind": "done"}], status=Participant.Status.COMPLETED,
            started_at=now - timedelta(minutes=20), last_seen_at=now, finished_at=now, config_hash=study.config_hash,
        )
        step = 0
        for dataset in ("CUB", "CEL"):
            for stage in STAGES:
                batch = rng.sample(images[dataset], 10)
                relabel = rng.sample(range(4), 4)
                assignment = {
                    str(pk): relabel[pred] if rng.random() < accuracy[stage] else rng.randrange(4) for pk, pred in batch
                }
                Grouping.objects.create(
                    participant=p, step_index=step, stage=stage, dataset=dataset, set_index=0, assignment=assignment,
                    purity=purity(list(assignment.values()), [pred for _, pred in batch]),
                    shown_at=now - timedelta(minutes=10 - step), saved_at=now - timedelta(minutes=9 - step),
                )
                step += 1


@pytest.fixture
def two_studies():
    main = clustering_study(n_sets=3, n_xfeatures=1, open_it=False)
    other = _complementary(main)
    _participants(main, MAIN, n=20, seed=1)
    _participants(other, DEEPLIFT, n=20, seed=2)
    return main, other


@pytest.fixture
def two_empty_studies():
    main = clustering_study(n_sets=3, n_xfeatures=1, open_it=False)
    return main, _complementary(main)


def _compare_url(*studies: Study) -> str:
    return "/admin/analysis/compare/?" + "&".join(f"studies={s.pk}" for s in studies)


def test_the_admin_action_opens_fig_4_and_the_between_study_tests(two_studies, owner):  # noqa: F811
    main, other = two_studies
    reply = owner.post("/admin/studies/study/", {"action": "compare_studies", "_selected_action": [main.pk, other.pk]})
    assert reply.status_code == 302 and reply["Location"] == _compare_url(*sorted([main, other], key=lambda s: s.pk))
    page = owner.get(reply["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert escape(BETWEEN_STUDIES_NOTE) in html  # the comparison is between groups of people
    assert "xnn-clustering: 20 participants analysed." in html and "xnn-deeplift: 20 participants analysed." in html

    summary = page_tables(html)["study-comparison-summary"]
    conditions = {(r[0][0], r[1][0], r[2][0]) for r in summary}
    for dataset in ("CUB", "CEL"):
        assert {(main.slug, dataset, "NoVis"), (main.slug, dataset, "1-Heatmap (ExcitationBP)"), (main.slug, dataset, "XNN"),
                (other.slug, dataset, "1-Heatmap (DeepLIFT)")} <= conditions

    tests = {(r[0][0], r[1][0], r[2][0], r[3][0]): r for r in page_tables(html)["study-comparison"]}
    heatmaps = ("1-Heatmap (ExcitationBP) [xnn-clustering]", "1-Heatmap (DeepLIFT) [xnn-deeplift]")
    for dataset in ("CUB", "CEL"):
        for measure in ("Purity", "Adjusted Rand index", "Purity minus chance"):
            row = tests[(dataset, measure, *heatmaps)]
            assert value(row[10]) > 0 and value(row[14]) < 0.05, (dataset, measure)  # the planted difference, Holm-adjusted
        same = tests[(dataset, "Purity", "NoVis [xnn-clustering]", "NoVis [xnn-deeplift]")]
        assert value(same[13]) > 0.05  # NoVis was planted the same in both groups

    png = owner.get("/admin/analysis/compare/figure.png?" + reply["Location"].split("?")[1])
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert image.width > image.height > 500  # two data sets side by side, purity over ARI


def test_a_wrong_choice_is_said_in_a_sentence_and_staff_without_permission_are_refused(
    two_empty_studies, owner, staff_without_permissions  # noqa: F811
):
    main, other = two_empty_studies
    one = owner.get(_compare_url(main))
    assert one.status_code == 400 and "Choose two or more studies of the clustering design; 1 chosen." in one.content.decode()
    learning = learning_study()
    mixed = owner.get(_compare_url(main, learning))
    assert mixed.status_code == 400
    assert f"{learning.slug} is a learning study" in mixed.content.decode()
    missing = owner.get("/admin/analysis/compare/?studies=9999&studies=" + str(main.pk))
    assert missing.status_code == 400 and "There is no study with id 9999." in missing.content.decode()
    bad = owner.get("/admin/analysis/compare/figure.png?studies=" + str(main.pk))
    assert bad.status_code == 400 and bad.content.decode().startswith("This figure cannot be drawn:")
    assert owner.get("/admin/analysis/compare/").status_code == 200  # the form, nothing chosen yet
    # A clustering study's analysis page links to the form with the study ticked.
    link = f"/admin/analysis/compare/?with={main.pk}"
    assert f'href="{link}"' in owner.get(f"/admin/analysis/study/{main.pk}/").content.decode()
    form = owner.get(link)
    boxes = {tag: "checked" in tag for tag in re.findall(r'<input type="checkbox"[^>]*>', form.content.decode())}
    ticked = [t for t, on in boxes.items() if on]
    assert form.status_code == 200 and len(boxes) == 3 and len(ticked) == 1 and f'value="{main.pk}"' in ticked[0]
    assert staff_without_permissions.get(_compare_url(main, other)).status_code == 403
    empty = owner.get(_compare_url(main, other)).content.decode()  # chosen right, no groupings yet: said
    assert "Fewer than two of the chosen studies have analysed groupings: nothing to compare yet." in empty
