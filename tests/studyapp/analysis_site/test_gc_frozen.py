"""Opening an analysis page leaves the garbage collector as the worker's boot left it (issue 24).

A gunicorn worker freezes what its boot made (studyapp/wsgi.py); the analysis once wrapped its
work in ``gc.freeze()`` / ``gc.unfreeze()``, and the unfreeze put the boot's objects back into
every full collection for the rest of the worker's life.
"""

from __future__ import annotations

import gc

import pytest

from studyapp.analysis import sources
from tests.studyapp.analysis_site.conftest import run_bots
from tests.studyapp.factories import learning_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def frozen_like_a_worker():
    gc.freeze()
    try:
        yield gc.get_freeze_count()
    finally:
        unfreeze()


unfreeze = gc.unfreeze  # the real one (the test replaces the module's to see whether anything calls it)


def test_opening_an_analysis_page_leaves_the_collector_frozen(owner, frozen_like_a_worker, monkeypatch):
    study = learning_study()
    run_bots(study.public_code, 3, seed=4)
    analysed, thawed = [], []
    monkeypatch.setattr(gc, "unfreeze", lambda: thawed.append(1))
    run = sources._run_analysis
    monkeypatch.setattr(sources, "_run_analysis", lambda *a, **k: analysed.append(1) or run(*a, **k))
    for url in (f"/admin/analysis/study/{study.pk}/", f"/admin/analysis/study/{study.pk}/report.html"):
        assert owner.get(url).status_code == 200, url
    assert analysed  # the pages ran the analysis
    assert not thawed
    # Objects the boot froze may still be freed (reference counts), so the count may fall a
    # little; an unfreeze would have emptied it.
    assert frozen_like_a_worker > 0 and gc.get_freeze_count() > 0.9 * frozen_like_a_worker
