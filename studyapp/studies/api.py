"""The participant API (DRF). Thin: parse, call one service, answer with the participant's state.

Every response about a run carries `state.participant_state`, the errors' included: the flow's
errors (`errors.FlowError`) name the participant they concern, and `exception_handler` (wired as
DRF's ``EXCEPTION_HANDLER`` in settings) turns them into ``{"error", "detail", "state"}``.
"""

from __future__ import annotations

from functools import wraps

import orjson
from django.db import transaction
from django.http import Http404
from django.middleware.csrf import get_token
from django.utils.decorators import method_decorator
from django.utils.translation import gettext
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.authentication import BaseAuthentication, CSRFCheck
from rest_framework.exceptions import PermissionDenied
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from studyapp.lib.perf import timing
from studyapp.lib.perf.throttle import LiveRateThrottle, SessionRateThrottle
from studyapp.studies import access, i18n, services, state
from studyapp.studies.errors import FlowError, NoParticipant, StudyFull
from studyapp.studies.models import Study


class EnforceCsrf(BaseAuthentication):
    """CSRF protection for anonymous participants too (DRF only checks logged-in users)."""

    def authenticate(self, request):
        check = CSRFCheck(lambda req: None)
        check.process_request(request)
        reason = check.process_view(request, None, (), {})
        if reason:
            raise PermissionDenied(f"CSRF failed: {reason}")
        return None


class EnforceCsrfScheme(OpenApiAuthenticationExtension):
    """OpenAPI: participants are identified by the session cookie and must send X-CSRFToken."""

    target_class = "studyapp.studies.api.EnforceCsrf"
    name = "participantSession"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}


def exception_handler(exc, context):
    """A ``FlowError`` becomes its status with ``{"error", "detail"}``, plus ``"state"`` (the
    participant's current state) when the error names a participant; anything else is DRF's,
    with an ``"error"`` code added."""
    if isinstance(exc, FlowError):
        body = {"error": exc.code, "detail": exc.message}
        if exc.participant is not None:
            # The service's transaction has rolled back: this is the state the server holds.
            body["state"] = state.participant_state(participant=exc.participant)
        return Response(body, status=exc.status)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data.setdefault("error", getattr(exc, "default_code", "error"))
    return response


State = inline_serializer("State", fields={"kind": serializers.CharField(), "step": serializers.IntegerField(required=False)})
Error = inline_serializer("Error", fields={"error": serializers.CharField(), "detail": serializers.CharField()})
ERRORS = {400: Error, 403: Error, 404: Error, 409: Error, 413: Error, 429: Error}
RESUME_PARAMETERS = [
    OpenApiParameter("PROLIFIC_PID", str, description="Resume this Prolific participant's run (with SESSION_ID)."),
    OpenApiParameter("SESSION_ID", str, description="The Prolific SESSION_ID the run was enrolled with."),
]


_encoder = JSONEncoder()


class ORJSONRenderer(JSONRenderer):
    """DRF's JSON renderer through orjson: the same bytes (compact UTF-8, datetimes in ISO 8601
    with ``Z`` for UTC, U+2028 and U+2029 escaped) several times faster; what orjson does not know
    goes to DRF's encoder."""

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        out = orjson.dumps(data, default=_encoder.default, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS)
        if b"\xe2\x80\xa8" in out or b"\xe2\x80\xa9" in out:
            out = out.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
        return out


class JSONOnly(DefaultContentNegotiation):
    """The participant API answers JSON whatever the request's Accept header says."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ParticipantView(APIView):
    authentication_classes = [EnforceCsrf]
    throttle_scope = "participant"
    throttle_classes = [SessionRateThrottle]
    renderer_classes = [ORJSONRenderer]
    content_negotiation_class = JSONOnly

    def dispatch(self, request, *args, **kwargs):
        # Everything the participant reads (states, refusals, DRF's own errors) in the study's
        # language, not the browser's (studies.i18n); rendered to bytes inside the block.
        with i18n.study_language(kwargs.get("study_code")) as language:
            response = super().dispatch(request, *args, **kwargs)
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                with timing.stage("render"):  # the Server-Timing stage (studyapp.lib.perf.timing)
                    response.render()
        response["Content-Language"] = language
        return response

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            # Parse the body before the handler, even where it ignores it (continue, a repeated
            # enter): a malformed, oversized or too deeply nested one is refused (studyapp.lib.bodies)
            # having changed nothing.
            request.data  # noqa: B018

    def handle_exception(self, exc):
        if isinstance(exc, NoParticipant) and "study_code" in self.kwargs:
            try:  # an unknown study is a 404, whether or not this browser is bound to a run elsewhere
                access.access_study(self.kwargs["study_code"])
            except Http404 as missing:
                exc = missing
        return super().handle_exception(exc)

    def state_response(self, participant, *, code: int = status.HTTP_200_OK, answer=state.UNKNOWN, **extra) -> Response:
        body = state.participant_state(participant=participant, answer=answer)
        return Response({**body, **extra}, status=code)


class EnterSerializer(serializers.Serializer):
    consent = serializers.BooleanField()
    prolific_pid = serializers.CharField(required=False, allow_blank=True, max_length=64)
    study_id = serializers.CharField(required=False, allow_blank=True, max_length=64)
    session_id = serializers.CharField(required=False, allow_blank=True, max_length=64)


class AnswerSerializer(serializers.Serializer):
    stimulus = serializers.IntegerField(min_value=0, max_value=2**31 - 1)
    choice = serializers.IntegerField(min_value=0, max_value=10_000)
    client_ms = serializers.IntegerField(
        required=False, min_value=0, max_value=86_400_000,
        help_text="The browser's response time (image shown to click), stored beside the server's.",
    )


class QuestionsSerializer(serializers.Serializer):
    answers = serializers.DictField(child=serializers.JSONField())


class EventSerializer(serializers.Serializer):
    kind = serializers.CharField(max_length=40, required=False)
    payload = serializers.DictField(required=False)
    events = serializers.ListField(
        child=serializers.DictField(), required=False, max_length=50,
        help_text="A batch: [{kind, payload, step, t}], saved all or none.",
    )


def _valid(serializer_class, request: Request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def csrf_cookie_if_missing(view):
    """``ensure_csrf_cookie`` for a browser that has no CSRF cookie yet (an API client that did not
    load the page first). One that has it keeps it: Django's decorator would mask a new token and
    send the cookie again on every state read, for nothing (CsrfViewMiddleware still checks every
    write)."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if "CSRF_COOKIE" not in request.META:  # set by CsrfViewMiddleware from a valid cookie
            get_token(request)  # a new secret; the middleware sets the cookie on the response
        return view(request, *args, **kwargs)

    return wrapped


@method_decorator(csrf_cookie_if_missing, name="get")
class StateView(ParticipantView):
    @extend_schema(parameters=RESUME_PARAMETERS, responses={200: State, **ERRORS})
    def get(self, request: Request, study_code: str) -> Response:
        participant = access.access_participant_or_none(request, study_code)
        if participant is None:
            study = access.access_study(study_code)
            access.unbind_participant(request, study)  # a binding left by a withdrawn or deleted run
            # A new browser resumes a run only with the SESSION_ID it was enrolled with.
            participant = access.access_resume_by_prolific_pid(
                request,
                study,
                prolific_pid=request.query_params.get("PROLIFIC_PID", ""),
                session_id=request.query_params.get("SESSION_ID", ""),
            )
        if participant is None:
            return Response(
                {
                    "kind": "consent" if study.status == Study.Status.OPEN else "unavailable",
                    "study": study.public_code,
                    "title": study.title,
                    "consent_text": study.consent_text if study.status == Study.Status.OPEN else "",
                    "detail": "" if study.status == Study.Status.OPEN else gettext("This study is not open at the moment."),
                }
            )
        services.participant_touch(participant=participant)
        return self.state_response(participant)


class EnterView(ParticipantView):
    """Enrolment is throttled per IP: floods of new entries get 429 and create nothing."""

    throttle_scope = "entry"
    throttle_classes = [LiveRateThrottle]

    @extend_schema(request=EnterSerializer, responses={200: State, 201: State, **ERRORS})
    def post(self, request: Request, study_code: str) -> Response:
        study = access.access_study(study_code)
        current = access.access_participant_or_none(request, study_code)
        if current is not None:
            return self.state_response(current)
        data = _valid(EnterSerializer, request)
        if data["consent"] is False and study.status == Study.Status.OPEN:
            return Response(state.exit_state(study, "no_consent"))  # "I do not consent": its own exit
        try:
            participant, created = services.participant_enroll(
                study=study,
                consent=data["consent"],
                prolific_pid=data.get("prolific_pid"),
                prolific_study_id=data.get("study_id"),
                prolific_session_id=data.get("session_id"),
            )
        except StudyFull as full:
            body = {"error": full.code, "detail": full.message, "state": state.exit_state(study, "full")}
            return Response(body, status=full.status)
        if created:
            access.bind_participant(request, participant)
        else:  # the PROLIFIC_PID already has a run: resuming it needs its SESSION_ID
            access.access_resume(request, study, participant, session_id=data.get("session_id"))
        return self.state_response(participant, code=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class StepView(ParticipantView):
    """An answer to a step: the request names the step and the action (`services.ACTIONS`); the
    step's class validates, stores and shapes the response (`studyapp.studies.steps`)."""

    action = ""
    serializer_class: type[serializers.Serializer] | None = None

    def answer(self, request: Request, study_code: str, step: int) -> Response:
        run = access.access_run(request, study_code)
        data = _valid(self.serializer_class, request) if self.serializer_class else {}
        done = services.step_submit(participant=run, step_index=step, action=self.action, payload=data)
        # The response is built only now, after the answer's transaction has committed, from the
        # run as the write left it (a trial's feedback from the saved answer).
        return self.state_response(done.participant, answer=done.answer, **done.extra)


class ContinueView(StepView):
    action = "continue"

    @extend_schema(request=None, responses={200: State, **ERRORS})
    def post(self, request: Request, study_code: str, step: int) -> Response:
        return self.answer(request, study_code, step)


class AnswerView(StepView):
    action, serializer_class = "answer", AnswerSerializer

    @extend_schema(request=AnswerSerializer, responses={200: State, **ERRORS})
    def post(self, request: Request, study_code: str, step: int) -> Response:
        return self.answer(request, study_code, step)


class QuestionsView(StepView):
    action, serializer_class = "questions", QuestionsSerializer

    @extend_schema(request=QuestionsSerializer, responses={200: State, **ERRORS})
    def post(self, request: Request, study_code: str, step: int) -> Response:
        return self.answer(request, study_code, step)


class GroupingSerializer(serializers.Serializer):
    assignment = serializers.DictField(child=serializers.IntegerField(min_value=0, max_value=99))


class GroupingView(StepView):
    action, serializer_class = "grouping", GroupingSerializer

    @extend_schema(request=GroupingSerializer, responses={200: State, **ERRORS})
    def post(self, request: Request, study_code: str, step: int) -> Response:
        return self.answer(request, study_code, step)


class CheckView(StepView):
    """The comprehension quiz and catch items: ``{"answers": {key: option index}}``."""

    action, serializer_class = "check", QuestionsSerializer

    @extend_schema(request=QuestionsSerializer, responses={200: State, **ERRORS})
    def post(self, request: Request, study_code: str, step: int) -> Response:
        return self.answer(request, study_code, step)


class TimeExtendView(ParticipantView):
    """More time on the current limit (WCAG 2.2.1), when the study allows it."""

    @extend_schema(request=None, responses={200: State, **ERRORS})
    def post(self, request: Request, study_code: str) -> Response:
        return self.state_response(services.time_limit_extend(participant=access.access_run(request, study_code)))


class EventView(ParticipantView):
    """Interaction events, one or a batch; throttled on their own scope ("events"), so that the
    page's timing events never use up the participant's request budget."""

    throttle_scope = "events"

    @extend_schema(request=EventSerializer, responses={201: None, **ERRORS})
    def post(self, request: Request, study_code: str) -> Response:
        participant = access.access_participant(request, study_code)
        data = _valid(EventSerializer, request)
        if "events" in data:
            n = services.events_log(participant=participant, events=request.data.get("events"))
            return Response({"logged": n}, status=status.HTTP_201_CREATED)
        if "kind" not in data:
            return Response({"error": "invalid", "detail": gettext("An event needs a 'kind'.")}, status=400)
        services.event_log(participant=participant, kind=data["kind"], payload=data.get("payload"))
        return Response({"logged": True}, status=status.HTTP_201_CREATED)


class WithdrawSerializer(serializers.Serializer):
    confirm = serializers.BooleanField()


class WithdrawView(ParticipantView):
    @extend_schema(request=WithdrawSerializer, responses={200: OpenApiResponse(description="Deleted"), **ERRORS})
    def post(self, request: Request, study_code: str) -> Response:
        participant = access.access_participant(request, study_code)
        data = _valid(WithdrawSerializer, request)
        if not data["confirm"]:
            return Response({"error": "invalid", "detail": gettext("Confirm to withdraw.")}, status=400)
        with transaction.atomic():
            services.participant_withdraw(participant=participant)
        access.unbind_participant(request, participant.study)
        return Response({
            "withdrawn": True, "detail": gettext("Your data has been deleted."),
            "state": state.exit_state(participant.study, "withdrew"),
        })
