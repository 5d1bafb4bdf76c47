"""The participant pages speak the study's language (``Study.language``), not the browser's.

A study's own texts (cover story, instructions, class names, questions) are written in one
language, so the interface around them (buttons, prompts, errors, progress) must be in that one
too: the page view and every participant API request activate it with :func:`study_language`.
The browser's Accept-Language is never read (no ``LocaleMiddleware``).

The API knows only the study's public code (its URL) when a request starts, and its query budgets
have no room for a read of the study: the language is kept in this process per public code, written by the page view (which reads
the study anyway) and by every save of a study in this process, and read again from the database
at most every :data:`LANGUAGE_TTL_SECONDS` (a change made in another process shows after that).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.utils import translation

from studyapp.lib.perf.caches import ProcessCache

#: How long a process trusts the language it read of a study (a change shows after at most this).
LANGUAGE_TTL_SECONDS = 60.0
#: Study public code -> (its language, when it was read).
_languages: ProcessCache[str, tuple[str, float]] = ProcessCache("study languages", maxsize=1024)


def supported(code: str | None) -> str:
    """``code`` if it is one of settings.LANGUAGES, else the site's default language."""
    codes = {c for c, _ in settings.LANGUAGES}
    if code in codes:
        return str(code)
    return translation.get_supported_language_variant(settings.LANGUAGE_CODE)


def remember(code: str, language: str) -> str:
    """Keep study ``code``'s language (as read with its study) in this process; returns it, supported."""
    language = supported(language)
    _languages.put(code, (language, time.monotonic()))
    return language


def language_of(code: str | None) -> str:
    """The language of the study of public code ``code``: kept, or read (one query) when not kept or too old."""
    if not code:
        return supported(None)
    kept = _languages.get(code)
    if kept is not None and time.monotonic() - kept[1] < LANGUAGE_TTL_SECONDS:
        return kept[0]
    from studyapp.studies.models import Study

    found = Study.objects.filter(public_code=code).values_list("language", flat=True).first()
    if found is None:  # an unknown study (its 404 is the view's): not kept
        return supported(None)
    return remember(code, found)


@contextmanager
def study_language(study_code: str | None = None, *, language: str | None = None) -> Iterator[str]:
    """Activate the language of the study of public code ``study_code`` (or ``language``, given) for the block."""
    code = supported(language) if language is not None else language_of(study_code)
    with translation.override(code):
        yield code


def _study_saved(sender, instance, **kwargs) -> None:
    remember(instance.public_code, instance.language)


def _study_deleted(sender, instance, **kwargs) -> None:
    _languages.pop(instance.public_code)


post_save.connect(_study_saved, sender="studies.Study", dispatch_uid="studies.i18n.saved")
post_delete.connect(_study_deleted, sender="studies.Study", dispatch_uid="studies.i18n.deleted")
