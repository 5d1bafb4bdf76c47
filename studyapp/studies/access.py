"""Every question of "who may touch this participant run" goes through here.

A participant is bound to the browser session that enrolled (or resumed) them. Knowing another
participant's code gives nothing: the API never takes a code from the client.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from studyapp.studies.errors import NoParticipant
from studyapp.studies.models import Participant, Study


def _session_key(study: Study) -> str:
    return f"participant:{study.pk}"


def access_study(slug: str) -> Study:
    return get_object_or_404(Study, slug=slug)


def access_participant_or_none(request: HttpRequest, study: Study) -> Participant | None:
    code = request.session.get(_session_key(study))
    if not code:
        return None
    participant = Participant.objects.select_related("arm").filter(study=study, code=code)[:1]
    participant = participant[0] if participant else None
    if participant is None:
        # Withdrawn or deleted: forget the stale binding.
        request.session.pop(_session_key(study), None)
        return None
    participant.study = study  # already loaded by the view: no second read of its large fields
    return participant


def access_participant(request: HttpRequest, study: Study) -> Participant:
    participant = access_participant_or_none(request, study)
    if participant is None:
        raise NoParticipant("No run of this study belongs to this browser. Open the study link to start.")
    return participant


def bind_participant(request: HttpRequest, participant: Participant) -> None:
    request.session.cycle_key()
    request.session[_session_key(participant.study)] = participant.code


def unbind_participant(request: HttpRequest, study: Study) -> None:
    request.session.pop(_session_key(study), None)
