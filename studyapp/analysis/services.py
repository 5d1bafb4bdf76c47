"""Writes of the analysis app: the tests and alpha a researcher sets on the analysis page.

(Importing a results file is `importing.imported_results_create`.)
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from stats.analyse import ALTERNATIVES
from studyapp.analysis.models import ImportedResults
from studyapp.studies.models import Study
from studyapp.studies.services import study_refresh_config_hash


def _clean(pairs: Sequence[Sequence[str]], alpha: float) -> tuple[list[list[str]], float]:
    cleaned = []
    for pair in pairs:
        a, b, alternative = (str(x) for x in pair)
        if alternative not in ALTERNATIVES or a == b:
            raise ValueError(f"invalid test {pair!r}")
        if [a, b, alternative] not in cleaned:
            cleaned.append([a, b, alternative])
    if not 0 < float(alpha) < 1:
        raise ValueError("alpha must be between 0 and 1")
    return cleaned, float(alpha)


def study_set_tests(*, study: Study, pairs: Sequence[Sequence[str]], alpha: float) -> Study:
    """Save the planned comparisons into ``study.config["tests"]`` and ``config["alpha"]``.

    The study's configuration hash covers ``config``, so it changes too: participants who
    enrolled before keep the old hash, and the analysis page shows that the tests were changed
    after they took part.
    """
    tests, alpha = _clean(pairs, alpha)
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        locked.config = {**(locked.config or {}), "tests": tests, "alpha": alpha}
        locked.save(update_fields=["config", "updated_at"])
        study_refresh_config_hash(study=locked)
    return locked


def imported_set_tests(
    *, imported: ImportedResults, pairs: Sequence[Sequence[str]], alpha: float
) -> ImportedResults:
    """The same for an imported result set (its ``config_hash`` is the file's and stays)."""
    tests, alpha = _clean(pairs, alpha)
    with transaction.atomic():
        locked = ImportedResults.objects.select_for_update().get(pk=imported.pk)
        locked.config = {**(locked.config or {}), "tests": tests, "alpha": alpha}
        locked.save(update_fields=["config"])
    return locked
