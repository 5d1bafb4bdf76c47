"""Errors the participant flow raises; the API maps each to one 4xx status.

The write layer raises them with what it knows: a message and, where the client asked about a
step that is not (or no longer) its current one, the participant. The API's exception handler
(`studyapp.studies.api.exception_handler`) turns one into ``{"error", "detail"}`` and, when the
error names a participant, adds ``"state"``: that participant's current state, so the client can
go where the server says it is. The services never build that state themselves.

Messages are sentences for the participant, translated when raised (``gettext``): the API view
has activated the study's language (``studies.i18n``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils.translation import gettext

if TYPE_CHECKING:
    from studyapp.studies.models import Participant


class FlowError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message: str, *, participant: Participant | None = None):
        super().__init__(message)
        self.message = message
        self.participant = participant


class InvalidInput(FlowError):
    status = 400
    code = "invalid"


class WrongStep(FlowError):
    """A request for a step that is not the participant's current one."""

    status = 409
    code = "wrong_step"


class AlreadyAnswered(FlowError):
    status = 409
    code = "already_answered"


class StudyUnavailable(FlowError):
    status = 403
    code = "study_unavailable"


class StudyFull(FlowError):
    status = 403
    code = "study_full"


class RunEnded(FlowError):
    """A write to a run that has ended (failed checks, timed out, rejected): the state says how."""

    status = 409
    code = "run_ended"


class TimedOut(FlowError):
    """A write to a run past its time limit; the run is ended as timed out."""

    status = 409
    code = "timed_out"


class NoParticipant(FlowError):
    status = 403
    code = "no_participant"

    def __init__(self, message: str | None = None, **kw):
        if message is None:
            message = gettext("No run of this study belongs to this browser. Open the study link to start.")
        super().__init__(message, **kw)
