"""
The upstream client: starts Realtime sessions with OpenAI's GA API, with the real API key.

Two ways (REALTIME_CONNECT): `create_client_secret()` mints a short-lived key (`ek_…`,
`POST {OPENAI_BASE_URL}/realtime/client_secrets`) with which the browser makes its WebRTC call;
`create_call()` makes the call itself with the browser's SDP offer (`POST …/realtime/calls`, the
unified interface) and returns the answer and the call id. Either way the real key never leaves
the server.
The session configuration is chosen here, by the server, not by the browser: model (from the
allow-list), instructions, voice, input transcription (always on: without it OpenAI sends no
user transcripts; in the user's language when one is set) and turn detection. Facts about the API: docs/realtime.md.

The body builders are plain functions so that other code (tests, a future server-side call)
builds exactly the same shapes. Failures are typed exceptions carrying a message a person can
read; OpenAI's own message is passed on, but never the API key, even masked.
"""

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field

import httpx
from django.conf import settings

from accounts import languages
from voiceproject.loopbound import PerLoop

log = logging.getLogger(__name__)

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")

SERVER_VAD, SEMANTIC_VAD, MANUAL = "server_vad", "semantic_vad", "manual"
TURN_DETECTION_MODES = (SERVER_VAD, SEMANTIC_VAD, MANUAL)
# What the voice page calls them: push-to-talk is a switch of its own, the others say when a turn ends.
TURN_DETECTION_LABELS = {SERVER_VAD: "After a pause", SEMANTIC_VAD: "When you finish", MANUAL: "Push-to-talk"}

# Hands-free defaults. 500 ms of silence ends a turn: shorter cuts people off mid-thought,
# longer makes the assistant feel slow. The model answers by itself and can be interrupted.
SERVER_VAD_CONFIG = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "create_response": True,
    "interrupt_response": True,
}
SEMANTIC_VAD_CONFIG = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}

# OpenAI's messages can quote the key they were given, masked ("sk-proj-****abcd"): anything
# shaped like a key is cut out of every message we pass on or log.
_KEY_LIKE = re.compile(r"\b(?:sk|ek|rk)[-_][A-Za-z0-9_*\-]{3,}")
MAX_MESSAGE_LENGTH = 500

# OpenAI's call ids, as in `Location: /v1/realtime/calls/rtc_…`.
CALL_ID = re.compile(r"rtc_[A-Za-z0-9_-]{1,100}")
# A browser's offer is a few kilobytes (more with many ICE candidates); far more is not an offer.
MAX_SDP_BYTES = 64 * 1024


class RealtimeError(Exception):
    """Minting a key failed; str(error) is safe to show and to log."""


class NotConfigured(RealtimeError):
    def __init__(self):
        super().__init__("Voice conversations are not set up on this server: it has no OpenAI API key.")


class UpstreamError(RealtimeError):
    """OpenAI refused, failed, could not be reached, or answered something unreadable."""

    def __init__(self, status: int | None, message: str, code: str | None = None):
        self.status = status  # OpenAI's HTTP status; None when there was no answer at all
        self.code = code  # OpenAI's error code, e.g. "insufficient_quota"
        super().__init__(message)


class UpstreamTimeout(RealtimeError):
    def __init__(self, message="OpenAI did not answer in time. Please try again."):
        super().__init__(message)


@dataclass(frozen=True)
class ClientSecret:
    """A freshly minted ephemeral key. It is handed to the browser, never stored or logged."""

    value: str = field(repr=False)
    expires_at: int  # unix seconds
    session: dict = field(repr=False, default_factory=dict)  # the effective configuration


@dataclass(frozen=True)
class Call:
    """A call OpenAI accepted: its id (certain: we made it) and the SDP answer for the browser."""

    call_id: str
    sdp: str = field(repr=False)


# --- pure helpers -------------------------------------------------------------------------------


def is_configured() -> bool:
    return bool(settings.OPENAI_API_KEY)


def calls_url() -> str:
    """Where the browser posts its WebRTC offer (with the ephemeral key)."""
    return f"{settings.OPENAI_BASE_URL}/realtime/calls"


def hangup_url(call_id: str) -> str:
    return f"{settings.OPENAI_BASE_URL}/realtime/calls/{call_id}/hangup"


def client_secrets_url() -> str:
    return f"{settings.OPENAI_BASE_URL}/realtime/client_secrets"


def validate_voice(voice: str) -> str:
    if voice not in VOICES:
        raise ValueError(f"Unknown voice {voice!r}; choose one of: {', '.join(VOICES)}.")
    return voice


def validate_model(model: str) -> str:
    """Only allow-listed models: client_secrets may accept a bad name that fails at connect time."""
    if model not in settings.REALTIME_MODELS:
        raise ValueError(f"Model {model!r} is not allowed here ({', '.join(settings.REALTIME_MODELS)}).")
    return model


def validate_turn_detection(mode: str) -> str:
    if mode not in TURN_DETECTION_MODES:
        choices = ", ".join(TURN_DETECTION_MODES)
        raise ValueError(f"Unknown turn detection {mode!r}; choose one of: {choices}.")
    return mode


def turn_detection_config(mode: str) -> dict | None:
    """The `audio.input.turn_detection` value of a mode; manual (push-to-talk) is null."""
    validate_turn_detection(mode)
    return {SERVER_VAD: SERVER_VAD_CONFIG, SEMANTIC_VAD: SEMANTIC_VAD_CONFIG, MANUAL: None}[mode]


def session_config(
    *,
    model: str,
    voice: str,
    turn_detection: str = SERVER_VAD,
    language: str = languages.AUTOMATIC,
    instructions: str | None = None,
    transcription_model: str | None = None,
) -> dict:
    """
    The GA `session` object of a new Realtime session. `language` (ISO-639-1, "" = detect) sets
    the transcription's language and, as the API has no field for the replies' language, adds
    a sentence saying so to the instructions.
    """
    detection = turn_detection_config(turn_detection)
    instructions = settings.REALTIME_INSTRUCTIONS if instructions is None else instructions
    transcription = {"model": transcription_model or settings.REALTIME_TRANSCRIPTION_MODEL}
    if languages.validate(language):
        transcription["language"] = language
        instructions = " ".join(filter(None, (instructions.strip(), languages.instruction(language))))
    return {
        "type": "realtime",
        "model": validate_model(model),
        "instructions": instructions,
        "audio": {
            "input": {
                # Off unless set: without it there are no user transcripts to store.
                "transcription": transcription,
                "turn_detection": dict(detection) if detection else None,
            },
            "output": {"voice": validate_voice(voice)},
        },
    }


def client_secret_request(session: dict, ttl: int | None = None) -> dict:
    """The body of POST /realtime/client_secrets."""
    return {
        "expires_after": {"anchor": "created_at", "seconds": ttl or settings.REALTIME_KEY_TTL},
        "session": session,
    }


def valid_call_id(value) -> str | None:
    return value if isinstance(value, str) and CALL_ID.fullmatch(value) else None


def call_id_from_location(location: str | None) -> str | None:
    """The call id in a `Location` header (`/v1/realtime/calls/rtc_…`: its last path segment)."""
    if not location:
        return None
    path = location.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    return valid_call_id(path.rsplit("/", 1)[-1])


def is_sdp(text) -> bool:
    """Shaped like a session description: starts with its version line, holds no NUL, not huge."""
    return (
        isinstance(text, str)
        and text.startswith("v=0")
        and "\x00" not in text
        and len(text.encode("utf-8", "surrogatepass")) <= MAX_SDP_BYTES
    )


def safety_identifier(user_id) -> str:
    """OpenAI-Safety-Identifier: tells OpenAI which of our users it is without saying who."""
    return hashlib.sha256(str(user_id).encode()).hexdigest()


def redact(text: str) -> str:
    """`text` without the API key or anything shaped like a key, cut to a readable length."""
    key = settings.OPENAI_API_KEY
    if key:
        text = text.replace(key, "[redacted]")
    text = _KEY_LIKE.sub("[redacted]", text)
    if len(text) > MAX_MESSAGE_LENGTH:
        text = text[: MAX_MESSAGE_LENGTH - 1] + "…"
    return text


def _error_from_response(response: httpx.Response, doing: str = "start a session") -> UpstreamError:
    message, code = None, None
    try:
        error = response.json().get("error")
        if isinstance(error, dict):
            message, code = error.get("message"), error.get("code")
    except (ValueError, AttributeError):
        pass
    if not isinstance(message, str) or not message.strip():
        message = f"OpenAI answered HTTP {response.status_code}."
    code = redact(code) if isinstance(code, str) else None
    return UpstreamError(response.status_code, redact(f"OpenAI could not {doing}: {message}"), code)


def parse_call(response: httpx.Response) -> Call:
    """A 2xx answer of /realtime/calls as a Call; UpstreamError without an SDP answer or a call id."""
    call_id = call_id_from_location(response.headers.get("Location"))
    content_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    try:
        answer = response.text
    except (UnicodeDecodeError, LookupError):
        answer = None
    if call_id is None or content_type not in ("application/sdp", "") or not is_sdp(answer):
        raise UpstreamError(response.status_code, "OpenAI sent an answer that could not be read.")
    return Call(call_id=call_id, sdp=answer)


def parse_client_secret(response: httpx.Response) -> ClientSecret:
    """A 2xx answer of client_secrets as a ClientSecret; UpstreamError if it is not one."""
    try:
        data = response.json()
        value, expires_at = data["value"], data["expires_at"]
        session = data.get("session") or {}
        valid = (
            isinstance(value, str)
            and value
            and isinstance(expires_at, (int, float))
            and not isinstance(expires_at, bool)
            and expires_at > 0
            and isinstance(session, dict)
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        valid = False
    if not valid:
        raise UpstreamError(response.status_code, "OpenAI sent an answer that could not be read.")
    return ClientSecret(value=value, expires_at=int(expires_at), session=session)


# --- the HTTP client ----------------------------------------------------------------------------


def _new_client() -> httpx.AsyncClient:
    # No base_url or timeouts bound here: both are read from settings at each request, so a
    # changed setting (tests, the stand-in) applies without rebuilding the pool.
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        follow_redirects=False,
        trust_env=False,  # no proxies or netrc picked up from the environment
    )


# One pooled client per event loop: under daphne, one for the whole process.
_clients = PerLoop(_new_client)


def http_client() -> httpx.AsyncClient:
    return _clients.get()


def _timeout() -> httpx.Timeout:
    return httpx.Timeout(settings.REALTIME_READ_TIMEOUT, connect=settings.REALTIME_CONNECT_TIMEOUT)


async def _post(
    what: str,
    url: str,
    *,
    client: httpx.AsyncClient | None,
    doing: str = "start a session",
    unlogged: tuple[int, ...] = (),
    **request,
) -> httpx.Response:
    """POST to OpenAI with the real key: its 2xx answer, or the typed error (logged, key-free,
    except for the statuses in `unlogged`, which the caller expects)."""
    if not is_configured():
        raise NotConfigured()
    client = client or http_client()
    headers = {"Authorization": f"Bearer {settings.OPENAI_API_KEY}", **request.pop("headers", {})}
    try:
        response = await client.post(url, headers=headers, timeout=_timeout(), **request)
    except httpx.TimeoutException:
        log.warning("OpenAI %s timed out (%s)", what, url)
        raise UpstreamTimeout() from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        # Connection refused, reset, DNS, a mistyped OPENAI_BASE_URL… The text names the host,
        # never headers.
        log.warning("OpenAI %s unreachable: %s", what, redact(f"{type(exc).__name__}: {exc}"))
        raise UpstreamError(None, "OpenAI could not be reached. Please try again.") from None
    if not response.is_success:
        error = _error_from_response(response, doing)
        if error.status in unlogged:
            raise error
        log.warning("OpenAI %s failed: HTTP %s %s: %s", what, error.status, error.code or "", error)
        raise error
    return response


async def create_client_secret(
    *,
    model: str,
    voice: str,
    turn_detection: str = SERVER_VAD,
    language: str = languages.AUTOMATIC,
    client: httpx.AsyncClient | None = None,
) -> ClientSecret:
    """Mint one ephemeral key (one per connection attempt: a key may not serve two calls)."""
    if not is_configured():
        raise NotConfigured()
    session = session_config(model=model, voice=voice, turn_detection=turn_detection, language=language)
    body = client_secret_request(session)
    response = await _post("client_secrets", client_secrets_url(), client=client, json=body)
    try:
        return parse_client_secret(response)
    except UpstreamError:
        log.warning("OpenAI client_secrets answered HTTP %s with an unreadable body", response.status_code)
        raise


async def create_call(
    sdp: str,
    session: dict,
    *,
    safety_id: str | None = None,
    client: httpx.AsyncClient | None = None,
) -> Call:
    """
    Make the browser's WebRTC call ourselves (the unified interface): its offer and the session
    (`session_config()`, as for a key) as multipart parts; no `?model=`, the session names it.
    """
    files = {
        "sdp": (None, sdp, "application/sdp"),
        "session": (None, json.dumps(session), "application/json"),
    }
    headers = {"OpenAI-Safety-Identifier": safety_id} if safety_id else {}
    response = await _post("calls", calls_url(), client=client, files=files, headers=headers)
    try:
        return parse_call(response)
    except UpstreamError:
        log.warning(
            "OpenAI calls answered HTTP %s without an SDP answer and a call id (Location: %r)",
            response.status_code, redact(response.headers.get("Location", ""))[:200],
        )  # fmt: skip
        raise


async def hangup(call_id: str, *, client: httpx.AsyncClient | None = None) -> None:
    """
    End a live call from the server (`POST …/realtime/calls/{call_id}/hangup`, the real key): the
    browser's WebRTC connection and every sideband of the call close. A 404 means the call is
    already over (it ended, or OpenAI forgot it): that is what was wanted, so it returns quietly.
    Other failures raise UpstreamError / UpstreamTimeout (NotConfigured without a key).
    """
    if valid_call_id(call_id) is None:
        raise ValueError(f"Not a call id: {call_id!r}")
    try:
        await _post("hangup", hangup_url(call_id), client=client, doing="end the call", unlogged=(404,))
    except UpstreamError as error:
        if error.status != 404:
            raise
        log.info("OpenAI hangup of %s: the call is already gone (404)", call_id)
