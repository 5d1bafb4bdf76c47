"""Participant pages (one link per study) and the asset view. Thin: the JS talks to the API."""

from __future__ import annotations

import mimetypes

from django.db import connection
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from studyapp.studies import access


@require_GET
@ensure_csrf_cookie
def study_page(request: HttpRequest, slug: str) -> HttpResponse:
    study = access.access_study(slug)
    prolific = {
        "prolific_pid": request.GET.get("PROLIFIC_PID", "")[:64],
        "study_id": request.GET.get("STUDY_ID", "")[:64],
        "session_id": request.GET.get("SESSION_ID", "")[:64],
    }
    return render(request, "studies/study.html", {"study": study, "prolific": prolific})


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
