"""
The transcript reducer: OpenAI Realtime server events → utterances, usage and conversation facts.

`reduce(state, event, at)` is pure: it reads the current transcript state and one event and
returns the `Changes` that event causes, without touching the database or mutating the state.
`advance(state, changes)` folds those changes into the state, and `fold()` runs a whole sequence.
The live path (`journal.append_batches`) and `rebuild_transcripts` both go through `fold()`, so
they cannot disagree. The journal loads only the part of the state a batch refers to
(`referenced_ids()`), and the reducer is written so that a partial state gives the same result as
the full one: every decision depends only on the utterances and responses the event names.

Rules (see DESIGN.md "Data model" and realtime-api.md §3):
- one utterance per conversation item (`type: "message"`, role user or assistant); its position
  is the order in which the item entered the conversation — the first event that names it —
  never the order in which its transcript arrived;
- a user audio item is `pending` until `…input_audio_transcription.completed` (text) or
  `.failed` (reason kept in `error`); typed user input (`input_text`) is a completed text item;
- an assistant item is completed by its final transcript/text, or `interrupted` when it is
  done `incomplete` or the response that lists it in `output` ended `cancelled`/`incomplete`/
  `failed` (keeping what was transcribed, also when the transcript arrives after that);
- usage of `response.done` is recorded once per response id; the input transcription usage is
  counted once per item (when the item first becomes completed);
- the title comes from the first user utterance to get text, if the conversation has none.

Both the GA and the beta spellings of the events and content parts are accepted. Malformed or
unknown events are never an error here: whatever cannot be understood changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from conversations.models import Utterance

USER = Utterance.Role.USER.value
ASSISTANT = Utterance.Role.ASSISTANT.value
AUDIO = Utterance.Kind.AUDIO.value
TEXT = Utterance.Kind.TEXT.value
PENDING = Utterance.Status.PENDING.value
COMPLETED = Utterance.Status.COMPLETED.value
FAILED = Utterance.Status.FAILED.value
INTERRUPTED = Utterance.Status.INTERRUPTED.value

# Longest item/response id stored (the model's CharField); longer "ids" are treated as absent
# rather than truncated, because two truncated ids could collide.
MAX_ID_LENGTH = 100
# PositiveIntegerField's ceiling on PostgreSQL: counts saturate instead of overflowing.
MAX_COUNT = 2**31 - 1
MAX_TITLE_LENGTH = 200
MAX_ERROR_LENGTH = 500
MAX_STATUS_LENGTH = 32

ITEM_EVENTS = frozenset(
    {
        "conversation.item.added",  # GA
        "conversation.item.done",  # GA
        "conversation.item.created",  # beta
        "conversation.item.retrieved",
    }
)
TRANSCRIPTION_COMPLETED = "conversation.item.input_audio_transcription.completed"
TRANSCRIPTION_FAILED = "conversation.item.input_audio_transcription.failed"
AUDIO_TRANSCRIPT_DONE = frozenset({"response.output_audio_transcript.done", "response.audio_transcript.done"})
TEXT_DONE = frozenset({"response.output_text.done", "response.text.done"})
RESPONSE_DONE = "response.done"
# A committed input buffer becomes a user audio item: when the item event itself is missing,
# this is the earliest event that names it.
BUFFER_COMMITTED = "input_audio_buffer.committed"

AUDIO_PARTS = frozenset({"input_audio", "output_audio", "audio"})
TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
UNFINISHED_RESPONSE = frozenset({"cancelled", "incomplete", "failed"})


@dataclass(frozen=True)
class UtteranceState:
    """One utterance as the reducer sees it; same field names as the `Utterance` model."""

    item_id: str
    role: str
    kind: str
    position: int
    created_at: datetime
    text: str = ""
    status: str = PENDING
    error: str = ""
    response_id: str = ""
    completed_at: datetime | None = None

    FIELDS = Utterance.FIELDS


@dataclass(frozen=True)
class UsageRecord:
    """The usage of one response (`ResponseUsage`); `counts` is keyed by `TokenUsage.USAGE_FIELDS`."""

    response_id: str
    status: str
    counts: Mapping[str, int]
    created_at: datetime


@dataclass
class TranscriptState:
    """What the reducer needs to know about a conversation (possibly only the relevant part).

    `utterances` by item_id; `responses` maps the response ids whose usage is already recorded
    to their final status; `next_position` is one past the highest position in use.
    """

    utterances: dict[str, UtteranceState] = field(default_factory=dict)
    responses: dict[str, str] = field(default_factory=dict)
    next_position: int = 0
    has_title: bool = False
    started_at: datetime | None = None
    last_activity_at: datetime | None = None


@dataclass
class Changes:
    """What one event (or a folded sequence of events) changed.

    `utterances` holds the latest version of every new or changed utterance, by item_id.
    """

    utterances: dict[str, UtteranceState] = field(default_factory=dict)
    usages: list[UsageRecord] = field(default_factory=list)
    transcription_tokens: int = 0
    title: str | None = None
    started_at: datetime | None = None
    last_activity_at: datetime | None = None

    def merge(self, later: Changes) -> None:
        """Add the changes of a later event to these."""
        self.utterances.update(later.utterances)
        self.usages.extend(later.usages)
        self.transcription_tokens = saturating_add(self.transcription_tokens, later.transcription_tokens)
        self.title = self.title if self.title is not None else later.title
        self.started_at = self.started_at or later.started_at
        self.last_activity_at = later.last_activity_at or self.last_activity_at


# --- small pure helpers -------------------------------------------------------------------------


def saturating_add(a: int, b: int) -> int:
    return min(a + b, MAX_COUNT)


def make_title(text: str) -> str:
    """A one-line title: whitespace collapsed, at most MAX_TITLE_LENGTH characters."""
    line = " ".join(text.split())
    if len(line) > MAX_TITLE_LENGTH:
        line = line[: MAX_TITLE_LENGTH - 1].rstrip() + "…"
    return line


def _id(value) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH:
        return value
    return None


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _str(value) -> str | None:
    return value if isinstance(value, str) else None


def _count(value) -> int:
    # bool is an int subclass; a JSON `true` is not a token count.
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return min(value, MAX_COUNT)
    return 0


def usage_counts(usage) -> dict[str, int]:
    """`response.done.response.usage` → the `TokenUsage` fields (missing or bad values are 0)."""
    usage = _dict(usage)
    inp = _dict(usage.get("input_token_details"))
    out = _dict(usage.get("output_token_details"))
    return {
        "input_tokens": _count(usage.get("input_tokens")),
        "output_tokens": _count(usage.get("output_tokens")),
        "input_text_tokens": _count(inp.get("text_tokens")),
        "input_audio_tokens": _count(inp.get("audio_tokens")),
        "cached_tokens": _count(inp.get("cached_tokens")),
        "output_text_tokens": _count(out.get("text_tokens")),
        "output_audio_tokens": _count(out.get("audio_tokens")),
    }


def transcription_tokens(usage) -> int:
    """Tokens of `…input_audio_transcription.completed.usage` (duration-billed models: 0)."""
    usage = _dict(usage)
    if usage.get("type", "tokens") != "tokens":
        return 0
    total = _count(usage.get("total_tokens"))
    return total or saturating_add(_count(usage.get("input_tokens")), _count(usage.get("output_tokens")))


def _error_text(error, default: str) -> str:
    error = _dict(error)
    text = _str(error.get("message")) or _str(error.get("code")) or default
    return text[:MAX_ERROR_LENGTH]


@dataclass(frozen=True)
class _Item:
    """The parts of a conversation item the transcript cares about."""

    id: str
    role: str
    kind: str | None  # None: no content parts yet (an assistant item as it is added)
    text: str | None  # None: no part carried a transcript or text yet
    status: str | None


def _parse_item(item) -> _Item | None:
    item = _dict(item)
    item_id = _id(item.get("id"))
    role = item.get("role")
    if item_id is None or item.get("type", "message") != "message" or role not in (USER, ASSISTANT):
        return None  # function calls, system messages, garbage
    kind, texts = None, []
    for part in _list(item.get("content")):
        part = _dict(part)
        part_type = _str(part.get("type"))
        if part_type in AUDIO_PARTS:
            kind = AUDIO
            value = _str(part.get("transcript"))
        elif part_type in TEXT_PARTS:
            kind = kind or TEXT
            value = _str(part.get("text"))
        else:
            continue
        if value is not None:
            texts.append(value)
    text = "\n".join(t for t in texts if t) if texts else None
    return _Item(item_id, role, kind, text, _str(item.get("status")))


# --- the reducer ---------------------------------------------------------------------------------


def referenced_ids(event) -> tuple[set[str], set[str]]:
    """The item ids and response ids an event names.

    The state the reducer needs for a batch of events is: the utterances with those item ids, and
    the recorded responses with those ids or the response ids of the utterances loaded (a
    transcript may name only its item, whose response ended earlier). Every rule of the reducer
    looks only at what its event names, so this partial state decides as the full one would.
    """
    items: set[str] = set()
    responses: set[str] = set()
    event = _dict(event)
    kind = _str(event.get("type"))
    if kind in ITEM_EVENTS:
        items.add(_id(_dict(event.get("item")).get("id")))
    elif kind in (TRANSCRIPTION_COMPLETED, TRANSCRIPTION_FAILED, BUFFER_COMMITTED):
        items.add(_id(event.get("item_id")))
    elif kind in AUDIO_TRANSCRIPT_DONE or kind in TEXT_DONE:
        items.add(_id(event.get("item_id")))
        responses.add(_id(event.get("response_id")))
    elif kind == RESPONSE_DONE:
        response = _dict(event.get("response"))
        responses.add(_id(response.get("id")))
        items.update(_id(_dict(item).get("id")) for item in _list(response.get("output")))
    items.discard(None)
    responses.discard(None)
    return items, responses


class _Step:
    """The changes of one event, built on top of a state that is only read."""

    def __init__(self, state: TranscriptState, at: datetime):
        self.state = state
        self.at = at
        self.changes = Changes()

    def get(self, item_id: str) -> UtteranceState | None:
        return self.changes.utterances.get(item_id) or self.state.utterances.get(item_id)

    def put(self, new: UtteranceState) -> None:
        if new == self.state.utterances.get(new.item_id):
            # Back to what is stored (an event that says one thing, then undoes it, e.g. one
            # item listed twice in a response's output): nothing to write.
            self.changes.utterances.pop(new.item_id, None)
        elif new != self.get(new.item_id):
            self.changes.utterances[new.item_id] = new
        if new.role == USER and new.text.strip() and not self.state.has_title and self.changes.title is None:
            self.changes.title = make_title(new.text)

    def create(self, item_id: str, role: str, kind: str) -> UtteranceState:
        """A new utterance at the next free position (the item enters the conversation now)."""
        created = sum(1 for i in self.changes.utterances if i not in self.state.utterances)
        return UtteranceState(item_id, role, kind, self.state.next_position + created, self.at)

    def finish(self, u: UtteranceState, status: str, **fields) -> UtteranceState:
        return dataclasses.replace(u, status=status, completed_at=u.completed_at or self.at, **fields)

    def response_status(self, response_id: str) -> str | None:
        return self.state.responses.get(response_id) if response_id else None

    # --- event handlers

    def item(self, item: _Item) -> None:
        u = self.get(item.id)
        if u is None:
            kind = item.kind or (TEXT if item.role == USER else AUDIO)
            u = self.create(item.id, item.role, kind)
        u = dataclasses.replace(u, role=item.role, kind=item.kind or u.kind)
        if u.role == USER:
            # Spoken input is completed by its transcription events alone (they carry the usage).
            if u.kind == TEXT and item.text is not None:
                u = self.finish(u, COMPLETED, text=item.text, error="")
        else:
            if item.text is not None and (item.text or not u.text):
                u = dataclasses.replace(u, text=item.text)
            if item.status == "incomplete" or self.response_status(u.response_id) in UNFINISHED_RESPONSE:
                u = self.finish(u, INTERRUPTED)
            elif item.status == "completed" and u.status == PENDING:
                u = self.finish(u, COMPLETED)
        self.put(u)

    def transcription(self, event: dict, completed: bool) -> None:
        item_id = _id(event.get("item_id"))
        if item_id is None:
            return
        u = self.get(item_id) or self.create(item_id, USER, AUDIO)
        if u.role != USER or u.kind != AUDIO or u.status == COMPLETED:
            return  # not spoken user input, or already transcribed (a duplicate event)
        if completed:
            transcript = _str(event.get("transcript"))
            if transcript is None:
                return
            u = self.finish(u, COMPLETED, text=transcript, error="")
            self.changes.transcription_tokens = transcription_tokens(event.get("usage"))
        else:
            u = self.finish(u, FAILED, error=_error_text(event.get("error"), "transcription failed"))
        self.put(u)

    def assistant_text(self, event: dict, kind: str, key: str) -> None:
        item_id = _id(event.get("item_id"))
        text = _str(event.get(key))
        if item_id is None or text is None:
            return
        response_id = _id(event.get("response_id")) or ""
        u = self.get(item_id) or self.create(item_id, ASSISTANT, kind)
        if u.role != ASSISTANT:
            return
        u = dataclasses.replace(u, kind=kind, text=text, response_id=u.response_id or response_id)
        if self.response_status(u.response_id) in UNFINISHED_RESPONSE or u.status == INTERRUPTED:
            u = self.finish(u, INTERRUPTED)
        else:
            u = self.finish(u, COMPLETED)
        self.put(u)

    def response_done(self, event: dict) -> None:
        response = _dict(event.get("response"))
        response_id = _id(response.get("id"))
        status = (_str(response.get("status")) or "")[:MAX_STATUS_LENGTH]
        # A response ends once: a later, contradicting response.done does not change its outcome.
        status = self.state.responses.get(response_id, status) if response_id else status
        named = []
        for raw in _list(response.get("output")):
            item = _parse_item(raw)
            if item is None or item.role != ASSISTANT:
                continue
            self.item(item)
            named.append(item.id)
            if response_id:
                u = self.get(item.id)
                self.put(dataclasses.replace(u, response_id=u.response_id or response_id))
        for item_id in named:
            u = self.get(item_id)
            if status in UNFINISHED_RESPONSE:
                error = _error_text(_dict(response.get("status_details")).get("error"), "") if status == "failed" else ""
                self.put(self.finish(u, INTERRUPTED, error=u.error or error))
            elif status == "completed" and u.status == PENDING:
                self.put(self.finish(u, COMPLETED))
        if response_id and response_id not in self.state.responses:
            # Once per response id: a resent or duplicated response.done never counts twice.
            counts = usage_counts(response.get("usage"))
            self.changes.usages.append(UsageRecord(response_id, status, counts, self.at))


def reduce(state: TranscriptState, event, at: datetime) -> Changes:
    """The changes one OpenAI server event (received at `at`) makes to the transcript.

    Pure: `state` is only read. Never raises on any JSON value.
    """
    step = _Step(state, at)
    step.changes.started_at = at if state.started_at is None else None
    step.changes.last_activity_at = at if state.last_activity_at is None or at > state.last_activity_at else None
    event = _dict(event)
    kind = _str(event.get("type"))
    if kind in ITEM_EVENTS:
        item = _parse_item(event.get("item"))
        if item is not None:
            step.item(item)
    elif kind == TRANSCRIPTION_COMPLETED:
        step.transcription(event, completed=True)
    elif kind == TRANSCRIPTION_FAILED:
        step.transcription(event, completed=False)
    elif kind in AUDIO_TRANSCRIPT_DONE:
        step.assistant_text(event, AUDIO, "transcript")
    elif kind in TEXT_DONE:
        step.assistant_text(event, TEXT, "text")
    elif kind == RESPONSE_DONE:
        step.response_done(event)
    elif kind == BUFFER_COMMITTED:
        item_id = _id(event.get("item_id"))
        if item_id and step.get(item_id) is None:
            step.put(step.create(item_id, USER, AUDIO))
    # Anything else (deltas, `error`, session events, unknown types) is journaled only.
    return step.changes


def advance(state: TranscriptState, changes: Changes) -> None:
    """Fold `changes` into `state` (the caller's own state object is updated)."""
    for item_id, u in changes.utterances.items():
        if item_id not in state.utterances:
            state.next_position = max(state.next_position, u.position + 1)
        state.utterances[item_id] = u
    for usage in changes.usages:
        state.responses[usage.response_id] = usage.status
    state.has_title = state.has_title or changes.title is not None
    state.started_at = state.started_at or changes.started_at
    state.last_activity_at = changes.last_activity_at or state.last_activity_at


def fold(state: TranscriptState, events: Iterable[tuple[object, datetime]]) -> Changes:
    """Apply `(event, received_at)` pairs in order; returns their combined changes.

    `state` is advanced as it goes, so it ends up describing the transcript after the events.
    """
    total = Changes()
    for event, at in events:
        changes = reduce(state, event, at)
        advance(state, changes)
        total.merge(changes)
    return total
