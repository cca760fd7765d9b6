"""
`POST /v1/realtime/client_secrets` as OpenAI's GA API answers it — strictly.

Pure functions: `effective_session(body)` validates a request body and returns the session
configuration OpenAI would report (defaults filled in), or raises `ApiError` with the error
OpenAI would send. Beta shapes fail with `beta_api_shape_disabled`, as they now do upstream.
Facts: docs/realtime.md.
"""

from typing import Any

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
MODELS = ("gpt-realtime-2.1", "gpt-realtime-2.1-mini", "gpt-realtime", "gpt-realtime-mini")
TRANSCRIPTION_MODELS = ("whisper-1", "gpt-4o-mini-transcribe", "gpt-4o-transcribe", "gpt-transcribe")
EAGERNESS = ("low", "medium", "high", "auto")

# Keys of the retired beta session object (and of the old /v1/realtime/sessions body).
BETA_SESSION_KEYS = {
    "modalities", "voice", "input_audio_format", "output_audio_format", "input_audio_transcription",
    "turn_detection", "temperature", "input_audio_noise_reduction", "speed", "max_response_output_tokens",
    "client_secret",
}
SESSION_KEYS = {
    "type", "model", "instructions", "audio", "output_modalities", "tools", "tool_choice",
    "max_output_tokens", "tracing", "truncation", "prompt", "include",
}
SERVER_VAD_KEYS = {
    "type", "threshold", "prefix_padding_ms", "silence_duration_ms", "create_response",
    "interrupt_response", "idle_timeout_ms",
}
SEMANTIC_VAD_KEYS = {"type", "eagerness", "create_response", "interrupt_response"}


class ApiError(Exception):
    """An OpenAI error answer: {"error": {"message", "type", "param", "code"}} with an HTTP status."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.type = status, message, code, param, type

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def beta_disabled(what: str) -> ApiError:
    return ApiError(
        400,
        f"{what} belongs to the Realtime API beta, which has been shut down. "
        "Use the GA interface: POST /v1/realtime/client_secrets with a session of type 'realtime'.",
        code="beta_api_shape_disabled",
    )


def _invalid(param: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def _object(value: Any, param: str, *, required: bool = False) -> dict:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise _invalid(param, f"Invalid type for '{param}': expected an object.", "invalid_type")
    return value


def _only(obj: dict, allowed: set, param: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _invalid(f"{param}.{key}", f"Unknown parameter: '{param}.{key}'.", "unknown_parameter")


def _number(obj: dict, key: str, param: str, lo: float, hi: float, *, integer: bool = False) -> None:
    if key not in obj or (key == "idle_timeout_ms" and obj[key] is None):
        return
    value = obj[key]
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not lo <= value <= hi:
        raise _invalid(f"{param}.{key}", f"Invalid value for '{param}.{key}': expected a number from {lo} to {hi}.")


def _boolean(obj: dict, key: str, param: str) -> None:
    if key in obj and not isinstance(obj[key], bool):
        raise _invalid(f"{param}.{key}", f"Invalid type for '{param}.{key}': expected a boolean.", "invalid_type")


def _turn_detection(value: Any, param: str) -> dict | None:
    if value is None:
        return None  # manual turns (push-to-talk)
    value = _object(value, param)
    kind = value.get("type")
    if kind == "server_vad":
        _only(value, SERVER_VAD_KEYS, param)
        _number(value, "threshold", param, 0.0, 1.0)
        _number(value, "prefix_padding_ms", param, 0, 10_000, integer=True)
        _number(value, "silence_duration_ms", param, 0, 10_000, integer=True)
        _number(value, "idle_timeout_ms", param, 5_000, 30_000, integer=True)
        for flag in ("create_response", "interrupt_response"):
            _boolean(value, flag, param)
        return {"type": kind, "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 200,
                "create_response": True, "interrupt_response": True, "idle_timeout_ms": None, **value}
    if kind == "semantic_vad":
        _only(value, SEMANTIC_VAD_KEYS, param)
        if value.get("eagerness", "auto") not in EAGERNESS:
            raise _invalid(f"{param}.eagerness", f"Invalid value for '{param}.eagerness': one of {', '.join(EAGERNESS)}.")
        for flag in ("create_response", "interrupt_response"):
            _boolean(value, flag, param)
        return {"type": kind, "eagerness": "auto", "create_response": True, "interrupt_response": True, **value}
    raise _invalid(f"{param}.type", f"Invalid value for '{param}.type': 'server_vad' or 'semantic_vad'.")


def effective_session(body: Any, *, models=MODELS) -> tuple[dict, int]:
    """Validate a client_secrets body; return (the effective session, the key's lifetime in seconds)."""
    body = _object(body, "body", required=True)
    if BETA_SESSION_KEYS & body.keys() or "model" in body:
        raise beta_disabled("A session configuration at the top level of the body")
    _only(body, {"session", "expires_after"}, "body")

    expires_after = _object(body.get("expires_after"), "expires_after")
    _only(expires_after, {"anchor", "seconds"}, "expires_after")
    if expires_after.get("anchor", "created_at") != "created_at":
        raise _invalid("expires_after.anchor", "Invalid value for 'expires_after.anchor': only 'created_at'.")
    seconds = expires_after.get("seconds", 600)
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 10 <= seconds <= 7200:
        raise _invalid("expires_after.seconds", "Invalid value for 'expires_after.seconds': an integer from 10 to 7200.")

    if "session" not in body:
        raise _invalid("session", "Missing required parameter: 'session'.", "missing_required_parameter")
    session = _object(body["session"], "session", required=True)
    beta_keys = sorted(BETA_SESSION_KEYS & session.keys())
    if beta_keys:
        raise beta_disabled(f"'session.{beta_keys[0]}'")
    _only(session, SESSION_KEYS, "session")
    if "type" not in session:
        raise _invalid("session.type", "Missing required parameter: 'session.type'.", "missing_required_parameter")
    if session["type"] != "realtime":
        raise _invalid("session.type", "Invalid value for 'session.type': this stand-in serves 'realtime' sessions.")
    model = session.get("model")
    if model not in models:
        raise _invalid("session.model", f"Invalid value for 'session.model': {model!r} is not a Realtime model.")
    instructions = session.get("instructions", "")
    if not isinstance(instructions, str):
        raise _invalid("session.instructions", "Invalid type for 'session.instructions': expected a string.", "invalid_type")

    audio = _object(session.get("audio"), "session.audio")
    _only(audio, {"input", "output"}, "session.audio")
    audio_in = _object(audio.get("input"), "session.audio.input")
    _only(audio_in, {"format", "noise_reduction", "transcription", "turn_detection"}, "session.audio.input")
    transcription = None
    if audio_in.get("transcription") is not None:
        transcription = _object(audio_in["transcription"], "session.audio.input.transcription")
        _only(transcription, {"model", "language", "prompt"}, "session.audio.input.transcription")
        if transcription.get("model") not in TRANSCRIPTION_MODELS:
            raise _invalid(
                "session.audio.input.transcription.model",
                f"Invalid value for 'session.audio.input.transcription.model': {transcription.get('model')!r}.",
            )
    detection = _turn_detection(
        audio_in.get("turn_detection", {"type": "server_vad"}), "session.audio.input.turn_detection"
    )
    audio_out = _object(audio.get("output"), "session.audio.output")
    _only(audio_out, {"format", "voice", "speed"}, "session.audio.output")
    voice = audio_out.get("voice", "alloy")
    if voice not in VOICES:
        raise _invalid(
            "session.audio.output.voice",
            f"Invalid value for 'session.audio.output.voice': {voice!r}. Supported values are: {', '.join(VOICES)}.",
        )
    _number(audio_out, "speed", "session.audio.output", 0.25, 1.5)

    pcm = {"type": "audio/pcm", "rate": 24000}
    effective = {
        "type": "realtime",
        "object": "realtime.session",
        "model": model,
        "output_modalities": session.get("output_modalities", ["audio"]),
        "instructions": instructions,
        "tools": session.get("tools", []),
        "tool_choice": session.get("tool_choice", "auto"),
        "max_output_tokens": session.get("max_output_tokens", "inf"),
        "tracing": session.get("tracing"),
        "truncation": session.get("truncation", "auto"),
        "prompt": session.get("prompt"),
        "include": session.get("include"),
        "audio": {
            "input": {
                "format": audio_in.get("format", pcm),
                "transcription": transcription,
                "noise_reduction": audio_in.get("noise_reduction"),
                "turn_detection": detection,
            },
            "output": {"format": audio_out.get("format", pcm), "voice": voice, "speed": audio_out.get("speed", 1.0)},
        },
    }
    return effective, seconds
