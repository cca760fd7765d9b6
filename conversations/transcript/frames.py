"""
Parsing and validation of the frames the browser sends on the transcript socket.

Client → server (docs/socket.md):
    {"type": "event", "seq": <int ≥ 1>, "event": {"type": "<OpenAI server event type>", …}}
    {"type": "ping"}
    {"type": "end"}
    {"type": "call", "call_id": "rtc_…"}   (the OpenAI call the page made, for this conversation)

`parse_frame()` either returns a `Frame` that can be stored as it is, or raises `FrameError`
with a snake_case code for the `error` reply. Nothing it returns can fail a transaction that also
carries good frames: it rejects non-finite numbers and absurd nesting, and it repairs — rather
than rejects — text the database cannot store: NUL characters and lone surrogates become U+FFFD
and transcript fields longer than TRANSCRIPT_MAX_CHARS are cut. A repaired event is still
stored (a `response.done` keeps its token usage), with what was changed in `Frame.repairs`.
It also bounds what an event carries besides its text (TRANSCRIPT_MAX_EVENT_NON_TEXT_BYTES):
the journal is for transcripts, not for arbitrary blobs.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from conversations.realtime.upstream import valid_call_id

MAX_SEQ = 2**63 - 1  # PositiveBigIntegerField
MAX_EVENT_TYPE_LENGTH = 100  # Event.type
MAX_DEPTH = 32  # real events nest about 6 deep
# Fields whose length TRANSCRIPT_MAX_CHARS limits, wherever they appear in the event.
TEXT_FIELDS = frozenset({"transcript", "text", "delta"})
# What PostgreSQL cannot store in text or jsonb: NUL, and surrogates (json.loads joins valid
# pairs into one character, so any left are lone ones).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class Frame:
    type: str  # "event" | "ping" | "end" | "call"
    seq: int | None = None
    event: dict | None = None
    size: int = 0  # UTF-8 bytes of the frame as received (back-pressure and storage quotas)
    # What was changed to make the event storable, or None: {"replaced": <characters replaced by
    # U+FFFD>, "truncated": [{"field": <name>, "chars": <original length>}, …]}.
    repairs: dict | None = None
    call_id: str | None = None  # of a "call" frame (after the others: callers build frames positionally)
    # Whose stream the event frame belongs to: "browser" (the transcript socket) or "server" (the
    # witness's sideband connection). Each numbers its own seqs: the page after journal.last_seq(),
    # the witnesses from blocks they reserve (witness/seqs.py).
    source: str = "browser"


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


def _clean(text: str, repairs: dict) -> str:
    cleaned, count = _UNSTORABLE.subn(REPLACEMENT, text)
    if count:
        repairs["replaced"] = repairs.get("replaced", 0) + count
    return cleaned


def _repair(event: dict, seq: int, max_chars: int) -> tuple[dict | None, int]:
    """Make the event storable in place, walking it once (iteratively: no recursion limit to hit).

    Returns (repairs or None, UTF-8 bytes of its text fields as stored). Raises `FrameError` only
    for nesting deeper than MAX_DEPTH.
    """
    repairs: dict = {}
    text_bytes = 0
    stack = [(event, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FrameError("invalid_event", f"The event is nested deeper than {MAX_DEPTH} levels.", seq)
        if isinstance(value, dict):
            if any(_UNSTORABLE.search(key) for key in value):
                renamed = {_clean(key, repairs): child for key, child in value.items()}
                value.clear()
                value.update(renamed)
            for key, child in value.items():
                if isinstance(child, str):
                    child = value[key] = _clean(child, repairs)
                    if key in TEXT_FIELDS:
                        if len(child) > max_chars:
                            repairs.setdefault("truncated", []).append({"field": key, "chars": len(child)})
                            child = value[key] = child[:max_chars]
                        text_bytes += len(child) if child.isascii() else len(child.encode("utf-8"))
                elif isinstance(child, (dict, list)):
                    stack.append((child, depth + 1))
        else:
            for index, child in enumerate(value):
                if isinstance(child, str):
                    value[index] = _clean(child, repairs)
                elif isinstance(child, (dict, list)):
                    stack.append((child, depth + 1))
    return repairs or None, text_bytes


# The page writes its frames as {"type":"event","seq":N,"event":…}: a frame refused before it is
# parsed still names its seq, so that the page can drop it instead of resending it forever.
_LEADING_SEQ = re.compile(r'\s*\{\s*"type"\s*:\s*"event"\s*,\s*"seq"\s*:\s*([0-9]{1,19})\s*[,}]')


def _leading_seq(text: str) -> int | None:
    found = _LEADING_SEQ.match(text[:80])
    return valid_seq(int(found.group(1))) if found else None


def parse_frame(
    text: str | None,
    *,
    max_bytes: int,
    max_chars: int,
    max_non_text_bytes: int | None = None,
) -> Frame:
    """Validate one text frame. Raises `FrameError`, and nothing else, for any input."""
    if text is None:
        raise FrameError("binary_not_supported", "Send JSON text frames, not binary frames.")
    # A character is at least 1 byte: only encode (at most 4 × max_bytes) when that does not decide.
    size = len(text)
    if size <= max_bytes and not text.isascii():
        size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise FrameError(
            "frame_too_large", f"The frame has {size} bytes; the limit is {max_bytes}.", _leading_seq(text)
        )
    try:
        data = _loads(text)
    except (ValueError, RecursionError):
        raise FrameError("invalid_json", "The frame is not valid JSON.", _leading_seq(text)) from None
    if not isinstance(data, dict):
        raise FrameError("invalid_frame", "The frame must be a JSON object.")

    frame_type = data.get("type")
    if frame_type in ("ping", "end"):
        return Frame(type=frame_type, size=size)
    if frame_type == "call":
        call_id = valid_call_id(data.get("call_id"))
        if call_id is None:
            raise FrameError("invalid_call", "call_id must be an OpenAI call id: rtc_ and up to 100 letters, "
                             "digits, _ or -.")  # fmt: skip
        return Frame(type="call", call_id=call_id, size=size)
    seq = valid_seq(data.get("seq"))
    if frame_type != "event":
        raise FrameError("invalid_frame", 'The frame type must be "event", "ping", "end" or "call".', seq)
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
    repairs = None
    if _may_need_checking(text, max_chars) or (max_non_text_bytes is not None and size > max_non_text_bytes):
        # (The type stays a non-empty string of the same length: one character for one.)
        repairs, text_bytes = _repair(event, seq, max_chars)
        if max_non_text_bytes is not None and size - text_bytes > max_non_text_bytes:
            raise FrameError(
                "frame_too_large",
                f"The event has {size - text_bytes} bytes besides its transcript text; "
                f"the limit is {max_non_text_bytes}.",
                seq,
            )
    return Frame(type="event", seq=seq, event=event, size=size, repairs=repairs)


def server_frame(seq: int, text: str, *, max_chars: int) -> Frame:
    """A frame of the witness's stream from the raw text of one sideband server event, made
    storable as the socket's frames are (NUL characters and lone surrogates replaced, transcripts
    cut at `max_chars`): a user can type a NUL into a message the model echoes, and one
    unstorable event would fail every batch it is in. Raises ValueError for text that is not a
    JSON object with a type. Nothing else is bounded: what OpenAI sends is what was said."""
    event = _loads(text)
    if not isinstance(event, dict) or not isinstance(event.get("type"), str) or not event["type"]:
        raise ValueError("not an OpenAI server event")
    if len(event["type"]) > MAX_EVENT_TYPE_LENGTH:
        raise ValueError(f"the event type is longer than {MAX_EVENT_TYPE_LENGTH} characters")
    repairs = None
    if _may_need_checking(text, max_chars):
        try:
            repairs, _ = _repair(event, seq, max_chars)
        except FrameError as error:
            raise ValueError(error.message) from None
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return Frame(type="event", seq=seq, event=event, size=size, repairs=repairs, source="server")


def _may_need_checking(text: str, max_chars: int) -> bool:
    """False when the raw text alone proves the content needs no repair (the common case): no
    string can be longer than the whole text; in valid JSON a NUL can only come from a \\u escape,
    and so can a surrogate unless the text itself holds one (it cannot once decoded from UTF-8
    off the wire; `isascii` is free); and the nesting cannot exceed the number of brackets."""
    return (
        len(text) > max_chars
        or "\\u0000" in text
        or "\\ud" in text
        or "\\uD" in text
        or (not text.isascii() and _SURROGATE.search(text) is not None)
        or text.count("{") + text.count("[") > MAX_DEPTH
    )
