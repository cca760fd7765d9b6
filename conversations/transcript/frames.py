"""
Parsing and validation of the frames the browser sends on the transcript socket.

Client → server (docs/socket.md):
    {"type": "event", "seq": <int ≥ 1>, "event": {"type": "<OpenAI server event type>", …}}
    {"type": "ping"}
    {"type": "end"}

`parse_frame()` either returns a `Frame` that can be stored as it is, or raises `FrameError`
with a snake_case code for the `error` reply. Besides the shape it rejects what the database
would refuse later (NUL characters, lone surrogates, non-finite numbers, absurd nesting), so that
a bad frame can never fail a transaction that also carries good frames.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

MAX_SEQ = 2**63 - 1  # PositiveBigIntegerField
MAX_EVENT_TYPE_LENGTH = 100  # Event.type
MAX_DEPTH = 32  # real events nest about 6 deep
# Fields whose length TRANSCRIPT_MAX_CHARS limits, wherever they appear in the event.
TEXT_FIELDS = frozenset({"transcript", "text", "delta"})


@dataclass(frozen=True)
class Frame:
    type: str  # "event" | "ping" | "end"
    seq: int | None = None
    event: dict | None = None
    size: int = 0  # bytes of the frame as received (for back-pressure accounting)


class FrameError(Exception):
    def __init__(self, code: str, message: str, seq: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.seq = seq

    def reply(self) -> dict:
        return {"type": "error", "seq": self.seq, "code": self.code, "message": self.message}


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _loads(text: str):
    # Python's json accepts NaN/Infinity and turns 1e999 into inf; databases refuse both.
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def valid_seq(value) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SEQ:
        return value
    return None


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape
        return False
    return True


def _check_content(event: dict, seq: int, max_chars: int) -> None:
    """Walk the event once (iteratively: no recursion limit to hit)."""
    stack = [(event, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FrameError("invalid_event", f"The event is nested deeper than {MAX_DEPTH} levels.", seq)
        if isinstance(value, dict):
            for key, child in value.items():
                if not _storable(key):
                    raise FrameError("invalid_event", "The event contains characters that cannot be stored.", seq)
                if key in TEXT_FIELDS and isinstance(child, str) and len(child) > max_chars:
                    raise FrameError(
                        "transcript_too_long",
                        f"The field {key!r} has {len(child)} characters; the limit is {max_chars}.",
                        seq,
                    )
                if isinstance(child, (dict, list)):
                    stack.append((child, depth + 1))
                elif isinstance(child, str) and not _storable(child):
                    raise FrameError("invalid_event", "The event contains characters that cannot be stored.", seq)
        else:
            for child in value:
                if isinstance(child, (dict, list)):
                    stack.append((child, depth + 1))
                elif isinstance(child, str) and not _storable(child):
                    raise FrameError("invalid_event", "The event contains characters that cannot be stored.", seq)


def parse_frame(
    text: str | None,
    *,
    max_bytes: int,
    max_chars: int,
) -> Frame:
    """Validate one text frame. Raises `FrameError`, and nothing else, for any input."""
    if text is None:
        raise FrameError("binary_not_supported", "Send JSON text frames, not binary frames.")
    # A character is at most 4 bytes: only encode when the length alone does not decide.
    size = len(text) if len(text) * 4 <= max_bytes else len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise FrameError("frame_too_large", f"The frame has {size} bytes; the limit is {max_bytes}.")
    try:
        data = _loads(text)
    except (ValueError, RecursionError):
        raise FrameError("invalid_json", "The frame is not valid JSON.") from None
    if not isinstance(data, dict):
        raise FrameError("invalid_frame", "The frame must be a JSON object.")

    frame_type = data.get("type")
    if frame_type in ("ping", "end"):
        return Frame(type=frame_type, size=size)
    seq = valid_seq(data.get("seq"))
    if frame_type != "event":
        raise FrameError("invalid_frame", 'The frame type must be "event", "ping" or "end".', seq)
    if seq is None:
        raise FrameError("invalid_seq", f"seq must be an integer from 1 to {MAX_SEQ}.")
    event = data.get("event")
    if not isinstance(event, dict):
        raise FrameError("invalid_event", "event must be a JSON object (the OpenAI server event).", seq)
    event_type = event.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise FrameError("invalid_event", "The event has no type.", seq)
    if len(event_type) > MAX_EVENT_TYPE_LENGTH:
        raise FrameError("invalid_event", f"The event type is longer than {MAX_EVENT_TYPE_LENGTH} characters.", seq)
    if _may_need_checking(text, max_chars):
        _check_content(event, seq, max_chars)
    return Frame(type="event", seq=seq, event=event, size=size)


def _may_need_checking(text: str, max_chars: int) -> bool:
    """False when the raw text alone proves the content checks would pass (the common case):
    no string can be longer than the whole text; in valid JSON a NUL or a surrogate can only
    come from a \\u escape; and the nesting cannot exceed the number of brackets."""
    return (
        len(text) > max_chars
        or "\\u0000" in text
        or "\\ud" in text
        or "\\uD" in text
        or text.count("{") + text.count("[") > MAX_DEPTH
    )
