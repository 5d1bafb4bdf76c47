"""Errors the participant flow raises; the API maps each to one 4xx status."""

from __future__ import annotations


class FlowError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message: str, *, state: dict | None = None):
        super().__init__(message)
        self.message = message
        self.state = state


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


class NoParticipant(FlowError):
    status = 403
    code = "no_participant"
