"""
POST /api/realtime/sessions — hands the browser an ephemeral OpenAI key for one voice session
(contract: DESIGN.md, "HTTP API").

The checks run cheapest first, and only a signed-in caller's well-formed request counts
against the rate limits: a typo in the body costs nothing, while everything that reaches
OpenAI — or could, such as a request for an unknown conversation — is counted before the
upstream call, failed mints included, so that retrying a failing upstream is throttled too.
"""

import json
import logging
import uuid

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http.request import RawPostDataException

from voiceproject import ratelimit
from voiceproject.api import api_view, error_response, json_response

from . import realtime, sessions
from .models import Conversation

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


def parse_session_request(body: bytes) -> sessions.SessionRequest:
    """The optional JSON body: {"voice", "conversation", "turn_detection"}, each may be absent or null."""
    if not body.strip():
        return sessions.SessionRequest()
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
            realtime.validate_voice(voice)
        if turn_detection is not None:
            realtime.validate_turn_detection(turn_detection)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if conversation is not None:
        try:
            conversation = uuid.UUID(conversation) if isinstance(conversation, str) else None
        except ValueError:
            conversation = None
        if conversation is None:
            raise InvalidRequest("conversation must be the id (a UUID) of one of your conversations.")
    return sessions.SessionRequest(voice=voice, turn_detection=turn_detection, conversation=conversation)


def session_body(
    conversation: Conversation, plan: sessions.SessionPlan, secret: realtime.ClientSecret
) -> dict:
    """The 201 body: the contract's fields, plus turn_detection, segment and key_ttl."""
    return {
        "conversation": {"id": str(conversation.uuid), "url": conversation.get_absolute_url()},
        "client_secret": secret.value,
        "expires_at": secret.expires_at,
        "model": plan.model,
        "voice": plan.voice,
        "turn_detection": plan.turn_detection,
        "calls_url": realtime.calls_url(),
        "socket_url": f"/ws/conversations/{conversation.uuid}/",
        "segment": conversation.segments,
        "key_ttl": settings.REALTIME_KEY_TTL,
    }


def _not_found():
    return error_response(404, "not_found", "You have no conversation with that id.")


@api_view("POST")
async def realtime_sessions(request):
    user = request.user
    if not realtime.is_configured():
        return error_response(503, "not_configured", str(realtime.NotConfigured()))
    try:
        wanted = parse_session_request(_read_body(request))
    except InvalidRequest as exc:
        return error_response(400, "invalid_request", str(exc))

    try:
        verdict = await sessions.acharge_key(user, ratelimit.client_ip(request))
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
            sessions.limit_message(verdict),
            headers={"Retry-After": str(verdict.retry_after)},
        )

    conversation = None
    if wanted.conversation is not None:
        try:
            conversation = await sessions.aget_own_conversation(user, wanted.conversation)
        except Conversation.DoesNotExist:
            return _not_found()
    plan = sessions.plan_session(wanted, conversation)

    try:
        secret = await realtime.create_client_secret(
            model=plan.model, voice=plan.voice, turn_detection=plan.turn_detection
        )
    except realtime.NotConfigured as exc:
        return error_response(503, "not_configured", str(exc))
    except realtime.UpstreamTimeout as exc:
        return error_response(504, "upstream_timeout", str(exc))
    except realtime.UpstreamError as exc:
        return error_response(502, "upstream_error", str(exc))

    try:
        conversation = await sessions.arecord_session(user, plan, conversation)
    except Conversation.DoesNotExist:
        return _not_found()
    log.info(
        "Realtime key issued: user %s, conversation %s, segment %s",
        user.pk, conversation.uuid, conversation.segments,
    )
    return json_response(session_body(conversation, plan, secret), status=201)
