"""Participant pages (one link per study, ``/s/<public code>/``: the code names nothing) and the asset view. Thin: the JS talks to the API."""

from __future__ import annotations

import hashlib
import mimetypes
from functools import cache

from django.conf import settings
from django.db import connection
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation.trans_real import DjangoTranslation
from django.views.decorators.cache import cache_control
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import etag, require_GET
from django.views.i18n import JavaScriptCatalog

from studyapp.studies import access, i18n


@require_GET
@ensure_csrf_cookie
def study_page(request: HttpRequest, study_code: str) -> HttpResponse:
    study = access.access_study(study_code)
    prolific = {
        "prolific_pid": request.GET.get("PROLIFIC_PID", "")[:64],
        "study_id": request.GET.get("STUDY_ID", "")[:64],
        "session_id": request.GET.get("SESSION_ID", "")[:64],
    }
    # The study's language, not the browser's: its own texts are written in it (studies.i18n).
    language = i18n.remember(study.public_code, study.language)
    with i18n.study_language(language=language):
        return render(
            request,
            "studies/study.html",
            {"study": study, "prolific": prolific, "catalog_version": catalog_version(language)},
        )


class StudyJavaScriptCatalog(JavaScriptCatalog):
    """The participant script's catalog (locale/<lang>/LC_MESSAGES/djangojs.po) for one language
    named in the URL, whatever the browser asks for: the page links the study's."""

    domain = "djangojs"

    def get(self, request, *args, **kwargs):
        language = kwargs["lang"]
        with translation.override(language):
            self.translation = DjangoTranslation(
                language, domain=self.domain, localedirs=[str(p) for p in settings.LOCALE_PATHS]
            )
            context = self.get_context_data(**kwargs)
            return self.render_to_response(context)


@cache
def catalog_version(language: str) -> str:
    """A hash of the language's compiled JS catalog: the page's link to the catalog carries it,
    so a cached catalog is never served after a new one is deployed (a restart reads it again)."""
    digest = hashlib.sha256(language.encode())
    for folder in settings.LOCALE_PATHS:
        mo = folder / language / "LC_MESSAGES" / "djangojs.mo"
        if mo.exists():
            digest.update(mo.read_bytes())
    return digest.hexdigest()[:16]


_catalog_view = StudyJavaScriptCatalog.as_view()


def _catalog_languages() -> set[str]:  # read on each call: tests override the settings
    return {code for code, _ in settings.LANGUAGES}


@require_GET
@etag(lambda request, lang: catalog_version(lang) if lang in _catalog_languages() else None)
@cache_control(public=True, max_age=60 * 60 * 24)
def javascript_catalog(request: HttpRequest, lang: str) -> HttpResponse:
    """``/jsi18n/<lang>/``: cacheable (public, a day, an ETag; the page's link adds ``?v=`` the
    catalog's hash); only the languages in settings.LANGUAGES."""
    if lang not in _catalog_languages():
        raise Http404("No such language")
    return _catalog_view(request, lang=lang)


@require_GET
def media(request: HttpRequest, path: str) -> FileResponse:
    """Stimulus images and explanation assets (nothing else: see ``access.access_media_file``).

    Their names are content hashes: cache forever. This view is how media is served under
    runserver and gunicorn alike; nothing else (whitenoise serves static files only) reads
    MEDIA_ROOT for the web.
    """
    full = access.access_media_file(path)
    try:
        handle = open(full, "rb")  # noqa: SIM115 - FileResponse closes it
    except OSError:
        raise Http404("No such file") from None
    response = FileResponse(handle, content_type=mimetypes.guess_type(full.name)[0] or "application/octet-stream")
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness and the database; the broker is reported but does not fail the check."""
    from studyapp.pipeline.selectors import broker_status

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        db_ok = True
    except Exception:  # pragma: no cover - reported, not raised
        db_ok = False
    broker = broker_status(timeout=0.5) if request.GET.get("broker") else {"checked": False}
    return JsonResponse({"ok": db_ok, "database": db_ok, "broker": broker}, status=200 if db_ok else 503)


@require_GET
def bare(request: HttpRequest) -> JsonResponse:
    """A bare JSON view for load-test baselines."""
    return JsonResponse({"ok": True})
