"""Request bodies: what the site accepts, and a clear 4xx for everything else.

Two layers, one rule set:

- :class:`RequestBodyLimitsMiddleware` (every endpoint: the participant API, the admin, the
  analysis pages) answers before any view runs: a body larger than
  ``DATA_UPLOAD_MAX_MEMORY_SIZE`` gets 413 (file uploads are not counted, as in Django), and a
  JSON body, or a form field holding JSON (the admin's JSON fields), nested deeper than
  :data:`MAX_JSON_DEPTH` gets 400. Python's JSON parser recurses once per level and fails with
  a ``RecursionError`` (a 500) a few hundred levels down; nothing here ever reaches it.
- :class:`SafeJSONParser` (the participant API's only parser, wired in ``REST_FRAMEWORK``) also
  caps an API body at ``STUDY_API_MAX_BODY_BYTES``, and turns a malformed body (not UTF-8, not
  JSON, ``NaN``) into a 400 whose ``detail`` says what is wrong.

A refused request changes nothing: the refusal comes before the view, or before the view has
read its input.
"""

from __future__ import annotations

import codecs

import numpy as np
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json

#: Arrays and objects nested deeper than this are refused. The site's own bodies nest 3 or 4
#: levels (a study's configuration in the admin a few more); Python's parser fails at ~1000.
MAX_JSON_DEPTH = 64


def json_depth(data: str | bytes) -> int:
    """How deeply the arrays and objects of ``data`` (JSON text, well formed or not) nest.

    Brackets inside strings do not count; a bracket never closed counts as a level (the parser
    would descend into it). Linear and in C (numpy) whatever the body: a scan written in Python,
    or a regular expression over the strings, would let a 1 MB body cost a second of CPU. UTF-8
    never uses the bytes of ``[]{}"\\`` inside a multi-byte character, so bytes will do.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    s = np.frombuffer(raw, dtype=np.uint8)
    if not s.size:
        return 0
    quote = s == ord('"')
    if b"\\" in raw:
        # A byte is escaped when an odd number of backslashes precedes it.
        position = np.arange(s.size)
        last_other = np.maximum.accumulate(np.where(s == ord("\\"), -1, position))
        escaped = np.zeros(s.size, dtype=bool)
        escaped[1:] = (position[:-1] - last_other[:-1]) % 2 == 1
        quote &= ~escaped
    # Inside a string: an odd number of (unescaped) quotes before this byte.
    outside = (np.cumsum(quote) - quote) % 2 == 0
    opens = outside & ((s == ord("[")) | (s == ord("{")))
    closes = outside & ((s == ord("]")) | (s == ord("}")))
    return int(max(0, np.cumsum(opens.astype(np.int64) - closes).max()))


def json_too_deep(data: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``data`` nests deeper than ``limit`` (see :func:`json_depth`); most bodies are
    answered by counting their brackets."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    return json_depth(raw) > limit


def too_large_message(limit: int) -> str:
    return f"The request body is too large: this site accepts at most {limit} bytes."


TOO_DEEP = f"The request body is nested too deeply: at most {MAX_JSON_DEPTH} levels of arrays and objects."


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class SafeJSONParser(JSONParser):
    """DRF's JSON parser with a size cap, a depth cap and messages a person can act on."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.STUDY_API_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestTooLarge(too_large_message(limit))
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            text = codecs.decode(raw, encoding)
        except (UnicodeDecodeError, LookupError):
            raise ParseError(f"The request body is not valid {encoding} text.") from None
        if json_too_deep(text):
            raise ParseError(TOO_DEEP, code="too_deep")
        try:
            return json.loads(text, parse_constant=json.strict_constant if self.strict else None)
        except RecursionError:  # pragma: no cover - json_too_deep answers first
            raise ParseError(TOO_DEEP, code="too_deep") from None
        except ValueError as exc:
            raise ParseError(f"The request body is not valid JSON: {exc}.") from None


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def _refusal(request: HttpRequest, status_code: int, code: str, detail: str) -> HttpResponse:
    if _is_json(request.content_type or "") or request.path.startswith("/api/"):
        return JsonResponse({"error": code, "detail": detail}, status=status_code)
    return HttpResponse(detail, status=status_code, content_type="text/plain; charset=utf-8")


class RequestBodyLimitsMiddleware:
    """Refuse an oversized body, or JSON nested too deeply, on every endpoint (see the module)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = self.check(request) if request.META.get("CONTENT_LENGTH") else None
        return refusal if refusal is not None else self.get_response(request)

    def check(self, request: HttpRequest) -> HttpResponse | None:
        content_type = request.content_type or ""
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            if _is_json(content_type):
                body = request.body  # RequestDataTooBig above the limit, before reading it
                if json_too_deep(body):
                    return _refusal(request, 400, "too_deep", TOO_DEEP)
            elif request.method == "POST" and content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
                # Django parses the form here rather than in the CSRF check: the same work, once.
                for values in request.POST.lists():
                    if any(v.lstrip()[:1] in ("[", "{") and json_too_deep(v) for v in values[1]):
                        return _refusal(request, 400, "too_deep", TOO_DEEP)
            elif limit is not None and int(request.META.get("CONTENT_LENGTH") or 0) > limit:
                return _refusal(request, 413, "too_large", too_large_message(limit))
        except RequestDataTooBig:
            return _refusal(request, 413, "too_large", too_large_message(limit))
        except (MultiPartParserError, SuspiciousOperation, ValueError, LookupError) as exc:
            return _refusal(request, 400, "malformed", f"The request body could not be read: {exc}")
        return None
