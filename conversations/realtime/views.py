"""
POST /api/realtime/sessions — hands the browser an ephemeral OpenAI key for one voice session:
parse the body, call `issuing.aissue_key()`, turn its answer or refusal into JSON.
POST /api/realtime/calls — the same, but the server makes the call with the browser's SDP offer
(`issuing.astart_call()`) and answers with OpenAI's SDP answer: no key leaves the server.

Only a signed-in caller's well-formed request counts against the rate limits: a typo in the
body is refused here, before the service, and costs nothing. What the service refuses is
mapped by one table, `REFUSALS` (exception type → status, code).
"""

import json
import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.http.request import RawPostDataException
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from accounts import consent, languages, preferences
from conversations import budget, witness
from conversations.history import selectors
from conversations.realtime import issuing, upstream
from voiceproject import ratelimit
from voiceproject.api import api_view, error_response, json_response

MAX_BODY_BYTES = 4096  # the largest valid body is about 140 bytes
FIELDS = ("voice", "conversation", "turn_detection", "language")
# An offer as JSON: escaped line ends (\r\n → 4 characters) can double its size, plus the options.
MAX_CALL_BODY_BYTES = 2 * upstream.MAX_SDP_BYTES + MAX_BODY_BYTES
CALL_FIELDS = ("sdp", *FIELDS)
# How long past the cap the page waits for the server's hang-up (its sweep runs every 2 s or so,
# plus the hang-up request) before it ends the session itself.
SESSION_GRACE_SECONDS = 10


class InvalidRequest(ValueError):
    pass


def _read_body(request) -> bytes:
    try:
        return request.body
    except RequestDataTooBig:
        raise InvalidRequest("The request body is too large.") from None
    except RawPostDataException:  # a multipart form, already consumed by the CSRF check
        raise InvalidRequest("Send a JSON body (Content-Type: application/json), not a form.") from None


def _json_object(body: bytes, fields: tuple[str, ...], max_bytes: int, example: str) -> dict:
    """The JSON object of a request body, with only `fields` (an empty body is {})."""
    if not body.strip():
        return {}
    if len(body) > max_bytes:
        raise InvalidRequest("The request body is too large.")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested arrays
        raise InvalidRequest(f"The request body is not valid JSON. Send an object like {example}.") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"The request body must be a JSON object, like {example}.")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InvalidRequest(
            f"Unknown field {', '.join(map(repr, unknown))}; the fields are: {', '.join(fields)}."
        )
    return data


def _session_request(data: dict) -> issuing.SessionRequest:
    """
    The session options of a parsed body: "voice", "conversation", "turn_detection", "language",
    each may be null ("language": "" asks for automatic detection).
    """
    voice, turn_detection = data.get("voice"), data.get("turn_detection")
    conversation, language = data.get("conversation"), data.get("language")
    try:
        if voice is not None:
            upstream.validate_voice(voice)
        if turn_detection is not None:
            upstream.validate_turn_detection(turn_detection)
        if language is not None:
            languages.validate(language)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if conversation is not None:
        try:
            conversation = uuid.UUID(conversation) if isinstance(conversation, str) else None
        except ValueError:
            conversation = None
        if conversation is None:
            raise InvalidRequest("conversation must be the id (a UUID) of one of your conversations.")
    return issuing.SessionRequest(
        voice=voice, turn_detection=turn_detection, language=language, conversation=conversation
    )


def parse_session_request(body: bytes) -> issuing.SessionRequest:
    """The optional JSON body: {"voice", "conversation", "turn_detection", "language"}, each may be absent or null."""
    return _session_request(_json_object(body, FIELDS, MAX_BODY_BYTES, '{"voice": "marin"}'))


def parse_call_request(body: bytes) -> tuple[issuing.SessionRequest, str]:
    """The JSON body {"sdp": "<the browser's SDP offer>", and the options of a session request}."""
    data = _json_object(body, CALL_FIELDS, MAX_CALL_BODY_BYTES, '{"sdp": "v=0\\r\\n…"}')
    sdp = data.get("sdp")
    if sdp is None:
        raise InvalidRequest('sdp is missing: send the browser\'s SDP offer as {"sdp": "v=0\\r\\n…"}.')
    if not isinstance(sdp, str) or len(sdp.encode("utf-8", "surrogatepass")) > upstream.MAX_SDP_BYTES:
        raise InvalidRequest(f"sdp must be an SDP offer (text) of at most {upstream.MAX_SDP_BYTES} bytes.")
    if not upstream.is_sdp(sdp):
        raise InvalidRequest('sdp is not an SDP offer: it must start with "v=0".')
    return _session_request(data), sdp


def session_body(issued: issuing.IssuedKey) -> dict:
    """The 201 body: the contract's fields, plus turn_detection, language, segment and key_ttl."""
    conversation, plan = issued.conversation, issued.plan
    return {
        "conversation": {"id": str(conversation.uuid), "url": conversation.get_absolute_url()},
        "client_secret": issued.secret.value,
        "expires_at": issued.secret.expires_at,
        "model": plan.model,
        "voice": plan.voice,
        "turn_detection": plan.turn_detection,
        "language": plan.language,
        "calls_url": upstream.calls_url(),
        "socket_url": f"/ws/conversations/{conversation.uuid}/",
        "segment": conversation.segments,
        "key_ttl": settings.REALTIME_KEY_TTL,
    }


def call_body(started: issuing.StartedCall) -> dict:
    """The 201 body of /api/realtime/calls: no key, the answer instead (and language, segment)."""
    conversation, plan = started.conversation, started.plan
    return {
        "conversation": {"id": str(conversation.uuid), "url": conversation.get_absolute_url()},
        "sdp": started.call.sdp,
        "model": plan.model,
        "voice": plan.voice,
        "turn_detection": plan.turn_detection,
        "language": plan.language,
        "socket_url": f"/ws/conversations/{conversation.uuid}/",
        "segment": conversation.segments,
    }


# What the service may refuse with, as (HTTP status, error code); the message is str(error).
# Looked up along the exception's class hierarchy, so a subclass maps like its base.
REFUSALS = {
    issuing.EphemeralKeysDisabled: (403, "ephemeral_keys_disabled"),
    issuing.NotConfigured: (503, "not_configured"),
    issuing.RateLimited: (429, "rate_limited"),
    issuing.BudgetExhausted: (429, "budget_exhausted"),
    issuing.LimitsUnavailable: (503, "unavailable"),
    issuing.ConversationNotFound: (404, "not_found"),
    issuing.SessionLimitReached: (409, "session_limit_reached"),
    issuing.UpstreamTimeout: (504, "upstream_timeout"),
    issuing.UpstreamError: (502, "upstream_error"),
}


def refusal_response(error: Exception):
    """The JSON error for a refusal of the service (Retry-After when it says when to retry)."""
    status, code = next(REFUSALS[kind] for kind in type(error).__mro__ if kind in REFUSALS)
    retry_after = getattr(error, "retry_after", None)
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    # A budget refusal says where the user stands, for the page's meter and its message.
    details = {"budget": budget.as_json(error.standing)} if isinstance(error, issuing.BudgetExhausted) else {}
    return error_response(status, code, str(error), headers=headers, **details)


@api_view("POST")
async def realtime_sessions(request):
    try:
        wanted = parse_session_request(_read_body(request))
    except InvalidRequest as exc:
        return error_response(400, "invalid_request", str(exc))
    try:
        issued = await issuing.aissue_key(request.user, ratelimit.client_ip(request), wanted)
    except tuple(REFUSALS) as error:
        return refusal_response(error)
    return json_response(session_body(issued), status=201)


@api_view("POST")
async def realtime_calls(request):
    try:
        wanted, sdp = parse_call_request(_read_body(request))
    except InvalidRequest as exc:
        return error_response(400, "invalid_request", str(exc))
    try:
        started = await issuing.astart_call(request.user, ratelimit.client_ip(request), wanted, sdp)
    except tuple(REFUSALS) as error:
        return refusal_response(error)
    return json_response(call_body(started), status=201)


@api_view("GET")
async def realtime_budget(request):
    """GET /api/realtime/budget: where the caller stands against their daily budget (the page's meter)."""
    return json_response({"budget": budget.as_json(await budget.astanding(request.user.pk))})


# --- the voice page -----------------------------------------------------------------------------


def home(request):
    """The chat for signed-in users; the log-in page for everyone else."""
    return redirect("chat" if request.user.is_authenticated else "login")


@login_required
def chat(request):
    """The voice page. What its script needs goes into a json_script block (CSP-safe)."""
    openai_configured = upstream.is_configured()
    chosen = preferences.for_user(request.user)
    return render(
        request,
        "conversations/chat.html",
        {
            "voice_config": {**page_config(openai_configured, chosen), **budget_config(request.user)},
            "openai_configured": openai_configured,
            "language_label": languages.label(chosen.language),
        },
    )


def budget_config(user) -> dict:
    """The page's budget meter: where the user stands now, and where to ask again."""
    return {"budget": budget.as_json(budget.standing(user.pk)), "budgetUrl": reverse("api_realtime_budget")}


def page_config(openai_configured: bool, chosen=None) -> dict:
    """
    The voice page's settings, for its script and its template alike: the session options are
    the server's (upstream.py), so a mode switched mid-session sends exactly what a new session gets.
    Its controls start from the user's preferences (`chosen`, accounts.preferences.for_user()),
    each only while the server still offers it.
    """
    # What a new session without options would get: the same rule as the API's (issuing.plan_session).
    start = issuing.plan_session(issuing.SessionRequest(), preferences=chosen)
    return {
        "apiUrl": reverse("api_realtime_sessions"),
        # browser: mint a key at apiUrl, call OpenAI, report the call id on the socket;
        # server: post the offer to callsApiUrl, the server makes the call.
        "connect": settings.REALTIME_CONNECT,
        "callsApiUrl": reverse("api_realtime_calls"),
        "openaiConfigured": openai_configured,
        # The session cap (REALTIME_MAX_SESSION_SECONDS): the page shows the time left in the last
        # two minutes (or half, for a short cap) and offers to continue. The server hangs the call up
        # at the cap when it can (a witness: caps.py); the page ends it itself after the grace, at
        # once when no server will.
        "sessionLimitSeconds": settings.REALTIME_MAX_SESSION_SECONDS,
        "warnBeforeSeconds": min(120, settings.REALTIME_MAX_SESSION_SECONDS // 2),
        "sessionGraceSeconds": SESSION_GRACE_SECONDS if witness.enabled() else 0,
        "voices": list(upstream.VOICES),
        "voice": start.voice,
        "mode": start.turn_detection,  # server_vad | semantic_vad | manual: the one the controls start with
        # mode -> {label, config: its `audio.input.turn_detection`, null for push-to-talk}
        "turnDetection": {
            mode: {"label": upstream.TURN_DETECTION_LABELS[mode], "config": upstream.turn_detection_config(mode)}
            for mode in upstream.TURN_DETECTION_MODES
        },
        # The transcript's words, and the clock its times are shown in, as on the history page.
        "labels": selectors.transcript_labels(),
        "timeZone": timezone.get_current_timezone_name(),
        "recording": recording_config(chosen),
    }


# The recording API's paths, filled in by the page ({conversation}: its uuid, {segment}: the
# session's number from the 201 answer, {index}: the chunk's). docs/api.md, "Recordings".
RECORDING_UPLOAD_URL = "/api/conversations/{conversation}/recordings/{segment}/chunks/{index}"
RECORDING_STATUS_URL = "/api/conversations/{conversation}/recordings/{segment}/"


def recording_config(chosen=None) -> dict:
    """
    What the page needs to record (static/voice/recorder.js): the site's mode (off | opt-in | on),
    whether the next session is recorded (opt-in: the user's saved "Record audio"), the chunk
    length, and where chunks go; switchUrl saves the switch.
    """
    return {
        "mode": consent.mode(),
        "enabled": consent.records(chosen) if chosen is not None else consent.mode() == consent.ON,
        "chunkMs": settings.RECORDING_CHUNK_MS,
        "uploadUrl": RECORDING_UPLOAD_URL,
        "statusUrl": RECORDING_STATUS_URL,
        "switchUrl": reverse("api_record_audio"),
    }

