"""Every question of "who may touch this participant run" (and "who may see this file") goes here.

What acts as a credential:

- **The browser session** (the ``sessionid`` cookie). A participant is bound to the session that
  enrolled them, or that proved a resume (below). Every participant request, withdrawal
  included, needs that binding. Knowing another participant's code gives nothing: the API never
  takes a code from the client.
- **The enrolment's Prolific ``SESSION_ID``**, to resume from a new browser. Prolific gives one
  per attempt at a study; the run stores the one it was enrolled with. A new browser that brings
  the run's ``PROLIFIC_PID`` together with that same ``SESSION_ID`` is bound to the run, like the
  enrolling browser.

What is **not** a credential: the ``PROLIFIC_PID``. It travels in links and the researcher and
Prolific see it. A PID alone, or with another (or no) ``SESSION_ID``, or a run enrolled without a
``SESSION_ID``, gets ``ResumeRefused`` (403, a sentence saying what to do) and changes nothing:
no binding, no write. So every binding is proven, and withdrawal, the one destructive action,
cannot be reached with a PID alone.

Files: ``/media/`` serves only what participants are shown, the stimulus images and explanation
assets (:data:`PARTICIPANT_MEDIA_FOLDERS`). Trained models, imported data sets and anything else
under ``MEDIA_ROOT`` are not served to anybody, and a request for one gets the same 404 as a
file that does not exist.
"""

from __future__ import annotations

import hmac
import posixpath
from pathlib import Path

from django.conf import settings
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext_lazy

from studyapp.lib.perf import prepared
from studyapp.studies.errors import FlowError, NoParticipant
from studyapp.studies.models import Participant, Study

#: The MEDIA_ROOT folders that /media/ serves: ``stimuli/`` (stimulus images, stored by the
#: pipeline with ``folder="stimuli"``) and ``assets/`` (explanation assets, ``store_bytes``'s
#: default folder). Not ``models/`` (checkpoints) or ``datasets/`` (imported images and labels).
PARTICIPANT_MEDIA_FOLDERS = frozenset({"stimuli", "assets"})

RESUME_REFUSED = gettext_lazy(
    "This Prolific ID has already started this study in another browser or Prolific session, so it "
    "cannot be continued from here. Please go back to the browser and the Prolific session you "
    "started in, or contact the researcher through Prolific."
)


class ResumeRefused(FlowError):
    """A known PROLIFIC_PID arrived without the SESSION_ID its run was enrolled with."""

    status = 403
    code = "resume_refused"


SESSION_PREFIX = "participant:"


def _session_key(study: Study) -> str:
    return f"{SESSION_PREFIX}{study.pk}"


def access_study(study_code: str) -> Study:
    """The study of a participant URL: by its opaque public code (the slug is the admin's only)."""
    return get_object_or_404(Study, public_code=study_code)


def _bound_codes(request: HttpRequest) -> list[str]:
    return [code for key, code in request.session.items() if key.startswith(SESSION_PREFIX) and isinstance(code, str)]


RUN_PREFIX = "run:"


def _run_key(study_code: str) -> str:
    return f"{RUN_PREFIX}{study_code}"


def access_run(request: HttpRequest, study_code: str) -> int:
    """The primary key of the run this browser is bound to in study ``study_code`` (its public
    code), for the service that locks and acts on it; ``NoParticipant`` when the session binds none.

    No query: :func:`bind_participant` keeps the run's key in the session under the study's public
    code (the session lives on the server; only a proven binding writes it). A session bound before
    runs were kept that way holds only the run's code: it is looked up once (one query) and kept.
    """
    pk = request.session.get(_run_key(study_code))
    if isinstance(pk, int):
        return pk
    codes = _bound_codes(request)
    if not codes:
        raise NoParticipant()
    pk = Participant.objects.filter(study__public_code=study_code, code__in=codes).values_list("pk", flat=True).first()
    if pk is None:
        raise NoParticipant()
    request.session[_run_key(study_code)] = pk
    return pk


def access_participant_or_none(request: HttpRequest, study_code: str) -> Participant | None:
    """The run bound to this browser in study ``study_code`` (one query, the study and arm joined), or None."""
    try:
        pk = access_run(request, study_code)
    except NoParticipant:
        return None
    rows = _bound_run(pk, study_code)
    return rows[0] if rows else None


@prepared.read
def _bound_run(pk: int, study_code: str) -> QuerySet[Participant]:
    return Participant.objects.select_related("study", "arm").filter(pk=pk, study__public_code=study_code).order_by()[:1]


def access_participant(request: HttpRequest, study_code: str) -> Participant:
    participant = access_participant_or_none(request, study_code)
    if participant is None:
        raise NoParticipant()
    return participant


def access_resume(request: HttpRequest, study: Study, participant: Participant, *, session_id: object) -> Participant:
    """Bind ``participant`` (an existing run this request named by its PROLIFIC_PID) to this
    browser if ``session_id`` is the SESSION_ID the run was enrolled with; else raise
    ``ResumeRefused`` having changed nothing."""
    given = session_id.strip() if isinstance(session_id, str) else ""
    enrolled = participant.prolific_session_id
    if not (enrolled and given and hmac.compare_digest(enrolled.encode(), given.encode())):
        raise ResumeRefused(str(RESUME_REFUSED))
    participant.study = study
    bind_participant(request, participant)
    return participant


def access_resume_by_prolific_pid(
    request: HttpRequest, study: Study, *, prolific_pid: object, session_id: object
) -> Participant | None:
    """The run of ``prolific_pid`` in ``study``, bound to this browser if the resume is proven
    (see :func:`access_resume`); ``None`` when the PID has no run here (the caller offers consent)."""
    pid = prolific_pid.strip()[:64] if isinstance(prolific_pid, str) else ""
    if not pid:
        return None
    participant = Participant.objects.select_related("arm").filter(study=study, prolific_pid=pid).first()
    if participant is None:
        return None
    return access_resume(request, study, participant, session_id=session_id)


def bind_participant(request: HttpRequest, participant: Participant) -> None:
    """Bind the run to this browser. A session that already exists gets a new key first (so a
    session planted in the browser is not the one bound); a new session gets a fresh key when it
    is first saved, so it is written once, not created and then saved again."""
    session = request.session
    session.keys()  # loaded: a cookie that names no stored session leaves no key
    if session.session_key is not None:
        session.cycle_key()
    request.session[_session_key(participant.study)] = participant.code
    request.session[_run_key(participant.study.public_code)] = participant.pk


def unbind_participant(request: HttpRequest, study: Study) -> None:
    """Forget this browser's binding to ``study`` (withdrawn, or a run deleted since); a session
    without one is left unchanged (and unsaved)."""
    for key in (_session_key(study), _run_key(study.public_code)):
        if key in request.session:
            del request.session[key]


def access_media_file(path: str) -> Path:
    """The file under MEDIA_ROOT that ``/media/<path>`` may serve; ``Http404`` for anything else.

    The path is normalised first (``stimuli/../models/x.pt`` is ``models/x.pt``). A path outside
    :data:`PARTICIPANT_MEDIA_FOLDERS`, a hidden name (``.tmp-*`` files being written), a folder
    and a missing file all get the same 404, so a refusal does not tell that a file exists.
    """
    normalised = posixpath.normpath("/" + path.replace("\\", "/")).lstrip("/")
    parts = normalised.split("/")
    if len(parts) < 2 or parts[0] not in PARTICIPANT_MEDIA_FOLDERS or any(p.startswith(".") for p in parts):
        raise Http404("No such file")
    full = Path(settings.MEDIA_ROOT).joinpath(*parts)
    if not full.is_file():
        raise Http404("No such file")
    return full
