"""
POST /api/realtime/sessions — hands the browser an ephemeral OpenAI key for one voice session
(contract: docs/api.md).

The checks run cheapest first, and only a signed-in caller's well-formed request counts
against the rate limits: a typo in the body costs nothing, while everything that reaches
OpenAI — or could, such as a request for an unknown conversation — is counted before the
upstream call, failed mints included, so that retrying a failing upstream is throttled too.
"""

import json
import logging
import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.http.request import RawPostDataException
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from conversations.history import selectors
from conversations.models import Conversation
from conversations.realtime import issuing, upstream
from voiceproject import ratelimit
from voiceproject.api import api_view, error_response, json_response

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096  # the largest valid body is about 120 bytes
FIELDS = ("voice", "conversation", "turn_detection")


class InvalidRequest(ValueError):
    pass


def _read_body(request) -> bytes:
    try:
        return request.body
    except RequestDataTooBig:
        raise InvalidRequest("The request body is too large.") from None
    except RawPostDataException:  # a multipart form, already consumed by the CSRF check
        raise InvalidRequest("Send a JSON body (Content-Type: application/json), not a form.") from None


def parse_session_request(body: bytes) -> issuing.SessionRequest:
    """The optional JSON body: {"voice", "conversation", "turn_detection"}, each may be absent or null."""
    if not body.strip():
        return issuing.SessionRequest()
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequest("The request body is too large.")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested arrays
        raise InvalidRequest(
            'The request body is not valid JSON. Send an object like {"voice": "marin"}.'
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest('The request body must be a JSON object, like {"voice": "marin"}.')
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InvalidRequest(
            f"Unknown field {', '.join(map(repr, unknown))}; the fields are: {', '.join(FIELDS)}."
        )

    voice, turn_detection = data.get("voice"), data.get("turn_detection")
    conversation = data.get("conversation")
    try:
        if voice is not None:
            upstream.validate_voice(voice)
        if turn_detection is not None:
            upstream.validate_turn_detection(turn_detection)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if conversation is not None:
        try:
            conversation = uuid.UUID(conversation) if isinstance(conversation, str) else None
        except ValueError:
            conversation = None
        if conversation is None:
            raise InvalidRequest("conversation must be the id (a UUID) of one of your conversations.")
    return issuing.SessionRequest(voice=voice, turn_detection=turn_detection, conversation=conversation)


def session_body(
    conversation: Conversation, plan: issuing.SessionPlan, secret: upstream.ClientSecret
) -> dict:
    """The 201 body: the contract's fields, plus turn_detection, segment and key_ttl."""
    return {
        "conversation": {"id": str(conversation.uuid), "url": conversation.get_absolute_url()},
        "client_secret": secret.value,
        "expires_at": secret.expires_at,
        "model": plan.model,
        "voice": plan.voice,
        "turn_detection": plan.turn_detection,
        "calls_url": upstream.calls_url(),
        "socket_url": f"/ws/conversations/{conversation.uuid}/",
        "segment": conversation.segments,
        "key_ttl": settings.REALTIME_KEY_TTL,
    }


def _not_found():
    return error_response(404, "not_found", "You have no conversation with that id.")


@api_view("POST")
async def realtime_sessions(request):
    user = request.user
    if not upstream.is_configured():
        return error_response(503, "not_configured", str(upstream.NotConfigured()))
    try:
        wanted = parse_session_request(_read_body(request))
    except InvalidRequest as exc:
        return error_response(400, "invalid_request", str(exc))

    try:
        verdict = await issuing.acharge_key(user, ratelimit.client_ip(request))
    except ratelimit.StorageError as exc:
        # Refuse rather than hand out keys unmetered: every key costs money.
        log.error("Rate-limit storage unavailable, refusing keys: %s", exc)
        return error_response(
            503, "unavailable", "The server cannot issue keys right now. Please try again soon."
        )
    if not verdict.allowed:
        return error_response(
            429,
            "rate_limited",
            issuing.limit_message(verdict),
            headers={"Retry-After": str(verdict.retry_after)},
        )

    conversation = None
    if wanted.conversation is not None:
        try:
            conversation = await issuing.aget_own_conversation(user, wanted.conversation)
        except Conversation.DoesNotExist:
            return _not_found()
    plan = issuing.plan_session(wanted, conversation)

    try:
        secret = await upstream.create_client_secret(
            model=plan.model, voice=plan.voice, turn_detection=plan.turn_detection
        )
    except upstream.NotConfigured as exc:
        return error_response(503, "not_configured", str(exc))
    except upstream.UpstreamTimeout as exc:
        return error_response(504, "upstream_timeout", str(exc))
    except upstream.UpstreamError as exc:
        return error_response(502, "upstream_error", str(exc))

    try:
        conversation = await issuing.arecord_session(user, plan, conversation)
    except Conversation.DoesNotExist:
        return _not_found()
    log.info(
        "Realtime key issued: user %s, conversation %s, segment %s",
        user.pk, conversation.uuid, conversation.segments,
    )
    return json_response(session_body(conversation, plan, secret), status=201)


# --- the voice page -----------------------------------------------------------------------------


def home(request):
    """The chat for signed-in users; the log-in page for everyone else."""
    return redirect("chat" if request.user.is_authenticated else "login")


@login_required
def chat(request):
    """The voice page. What its script needs goes into a json_script block (CSP-safe)."""
    openai_configured = upstream.is_configured()
    return render(
        request,
        "conversations/chat.html",
        {"voice_config": page_config(openai_configured), "openai_configured": openai_configured},
    )


def page_config(openai_configured: bool) -> dict:
    """
    The voice page's settings, for its script and its template alike: the session options are
    the server's (upstream.py), so a mode switched mid-session sends exactly what a new session gets.
    """
    return {
        "apiUrl": reverse("api_realtime_sessions"),
        "openaiConfigured": openai_configured,
        # OpenAI ends a session after 60 minutes; the page offers to continue before that.
        "sessionLimitSeconds": 60 * 60,
        "warnBeforeSeconds": 5 * 60,
        "voices": list(upstream.VOICES),
        "voice": settings.REALTIME_VOICE,
        # mode -> {label, config: its `audio.input.turn_detection`, null for push-to-talk}
        "turnDetection": {
            mode: {"label": upstream.TURN_DETECTION_LABELS[mode], "config": upstream.turn_detection_config(mode)}
            for mode in upstream.TURN_DETECTION_MODES
        },
        # The transcript's words, and the clock its times are shown in, as on the history page.
        "labels": selectors.transcript_labels(),
        "timeZone": timezone.get_current_timezone_name(),
    }

