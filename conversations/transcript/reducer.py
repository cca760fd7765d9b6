"""
The transcript reducer: OpenAI Realtime server events → utterances, usage and conversation facts.

`reduce(state, event, at)` is pure: it reads the current transcript state and one event and
returns the `Changes` that event causes, without touching the database or mutating the state.
`advance(state, changes)` folds those changes into the state, and `fold()` runs a whole sequence.
The live path (`journal.append_batches`) and `rebuild_transcripts` both go through `fold()`, so
they cannot disagree. The journal loads only the part of the state a batch refers to
(`referenced_ids()`), and the reducer is written so that a partial state gives the same result as
the full one: every decision depends only on the utterances and responses the event names.

The voice page's live transcript (static/voice/transcript.js, `TranscriptModel`) follows the
same rules, so that what the page shows at the end is what is stored (tests/test_reducer_parity.py
runs every recorded fixture through both). The page also sees the deltas, which are never
forwarded: they only fill a line's text until its final text arrives.

What each event means (see also docs/architecture.md; GA and beta spellings of the events and content
parts are accepted):
- one utterance per conversation item (`type: "message"`, role user or assistant); it enters
  the transcript at the end when the first event names it, never when its transcript arrives.
  Its role is fixed by that first event. The item it follows (`previous_item_id` of the item
  events and of `input_audio_buffer.committed`) is kept in `previous_item_id`: the first event
  that names one sets it, and the witness's word replaces the browser's (a conflict when they
  differ). The journal and a rebuild then place the lines by those links (order.py), which moves
  a line only when the streams interleaved out of order;
- a user audio item is `pending` until `…input_audio_transcription.completed` (text) or
  `.failed` (reason kept in `error`); typed user input (`input_text`) is a completed text item;
- an assistant item is completed by its final transcript/text, or `interrupted` when it is
  done `incomplete` or the response that lists it in `output` ended `cancelled`/`incomplete`/
  `failed` (keeping what was generated, also when the transcript arrives after that). A failed
  response keeps its reason in `error`; it is "interrupted", not "failed": `failed` means "no
  transcript of what was said" (a failed transcription), and every reader of the transcript (the
  page's badge, the admin filter, the exports) relies on that;
- `conversation.item.truncated` (the user barged in while the reply was still playing: its audio
  was cut at `audio_end_ms`) marks the assistant item `interrupted`. The text stays what was
  generated: the events carry no word timings, so what was heard cannot be cut out of it, and a
  transcript that keeps the unheard end, marked interrupted, hides nothing from a reader;
- `conversation.item.deleted` (the item was removed from the model's context) marks the line
  `deleted` and keeps it, text and all: it was said, and a record that could be erased by one
  forwarded event would not be a record. A deleted line changes no more;
- usage of `response.done` is recorded once per response id; the input transcription usage once
  per item (`TranscriptionRecord`, when the item first becomes completed);
- the title comes from the first user utterance to get text, if the conversation has none.

Closed lines stay closed. A line's role never changes: an event that names an existing line with
the other role changes nothing and counts as a conflict. Once a line is no longer pending and has
a text, a different final text for it changes nothing and counts as a conflict (`Changes.conflicts`,
summed into `Conversation.conflicts` for staff to see; each such event counts, a repeat too); the
event stays in the journal. (Clearing the review mark of a changed conversation is the journal's job.)

Two streams, one transcript. The journal holds the browser's events and, for a witnessed call,
the events the server's own sideband connection saw (`source="server"`); they are folded
together in journal order. What the witness saw wins:
- a server event that names a line the browser made with the other role, or (for a user line)
  the other kind, replaces it with a fresh line of the witness's role and kind at the same
  position; a server event whose final text differs from the browser's final text replaces it.
  Each counts as a conflict. A browser event never replaces what the server set: once the witness
  saw a line's final text (or its failed transcription) the line is `verified`, and a browser
  event that contradicts it changes nothing and counts as a conflict;
- a response's usage is the witness's when it saw the response.done: a browser's response.done
  for a response the witness recorded counts nothing, and a witness's response.done replaces the
  browser's recorded earlier (`Changes.replaced_usages` come off the totals). So with an item's
  transcription usage: the witness's completion replaces the browser's record of it
  (`Changes.replaced_transcriptions`), and a browser's completion after the witness's counts nothing.
A browser-only stream is reduced exactly as before (the page's reducer sees only that stream).

Malformed or unknown events are never an error here: whatever cannot be understood changes nothing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from conversations.models import Source, Utterance

USER = Utterance.Role.USER.value
ASSISTANT = Utterance.Role.ASSISTANT.value
AUDIO = Utterance.Kind.AUDIO.value
TEXT = Utterance.Kind.TEXT.value
PENDING = Utterance.Status.PENDING.value
COMPLETED = Utterance.Status.COMPLETED.value
FAILED = Utterance.Status.FAILED.value
INTERRUPTED = Utterance.Status.INTERRUPTED.value
DELETED = Utterance.Status.DELETED.value
BROWSER = Source.BROWSER.value  # who saw an event (Event.source)
SERVER = Source.SERVER.value

# Longest item/response id stored (the model's CharField); longer "ids" are treated as absent
# rather than truncated, because two truncated ids could collide.
MAX_ID_LENGTH = 100
# PositiveIntegerField's ceiling on PostgreSQL: counts saturate instead of overflowing.
MAX_COUNT = 2**31 - 1
MAX_TITLE_LENGTH = 200
MAX_ERROR_LENGTH = 500
MAX_STATUS_LENGTH = 32
# TranscriptionUsage.seconds: max_digits=12, decimal_places=3.
MAX_SECONDS = Decimal("999999999.999")
MILLISECOND = Decimal("0.001")

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
ITEM_TRUNCATED = "conversation.item.truncated"
ITEM_DELETED = "conversation.item.deleted"
# A committed input buffer becomes a user audio item: when the item event itself is missing,
# this is the earliest event that names it.
BUFFER_COMMITTED = "input_audio_buffer.committed"

AUDIO_PARTS = frozenset({"input_audio", "output_audio", "audio"})
TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
UNFINISHED_RESPONSE = frozenset({"cancelled", "incomplete", "failed"})
TRANSCRIPTION_FAILED_ERROR = "Transcription failed."
RESPONSE_FAILED_ERROR = "The reply failed."


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
    verified: bool = False  # the witness saw its final text (or its failed transcription)
    previous_item_id: str = ""  # the item OpenAI placed it after (order.py)

    FIELDS = Utterance.FIELDS


@dataclass(frozen=True)
class UsageRecord:
    """The usage of one response (`ResponseUsage`); `counts` is keyed by `TokenUsage.USAGE_FIELDS`."""

    response_id: str
    status: str
    counts: Mapping[str, int]
    created_at: datetime
    source: str = BROWSER  # whose response.done it is (the witness's replaces the browser's)


@dataclass(frozen=True)
class TranscriptionRecord:
    """The usage of one item's input transcription (`TranscriptionUsage`): `counts` keyed by
    `TranscriptionUsage.COUNT_FIELDS`, `seconds` of audio for duration-billed models."""

    item_id: str
    counts: Mapping[str, int]
    seconds: Decimal
    created_at: datetime
    source: str = BROWSER  # whose completion it is (the witness's replaces the browser's)

    @property
    def tokens(self) -> int:
        """What it adds to `Conversation.transcription_tokens`."""
        return saturating_add(self.counts["input_tokens"], self.counts["output_tokens"])


@dataclass
class TranscriptState:
    """What the reducer needs to know about a conversation (possibly only the relevant part).

    `utterances` by item_id; `responses` maps the response ids whose usage is already recorded
    to that record (its final status, counts and source); `transcriptions` maps the item ids
    whose transcription usage is recorded to that record; `next_position` is one past the
    highest position in use.
    """

    utterances: dict[str, UtteranceState] = field(default_factory=dict)
    responses: dict[str, UsageRecord] = field(default_factory=dict)
    transcriptions: dict[str, TranscriptionRecord] = field(default_factory=dict)
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
    transcriptions: list[TranscriptionRecord] = field(default_factory=list)
    # What `transcriptions` add to the conversation's transcription tokens, less what
    # `replaced_transcriptions` take off (negative when the witness counted fewer than the browser).
    transcription_tokens: int = 0
    title: str | None = None
    started_at: datetime | None = None
    last_activity_at: datetime | None = None
    conflicts: int = 0  # events that contradicted a line (applied only when the witness contradicted the browser)
    relinked: bool = False  # a line's link was replaced (the witness's over the browser's): place them all again
    # Recorded usages (the browser's) that `usages` replace: their counts come off the totals.
    replaced_usages: list[UsageRecord] = field(default_factory=list)
    # Recorded transcription usages (the browser's) that `transcriptions` replace.
    replaced_transcriptions: list[TranscriptionRecord] = field(default_factory=list)

    def merge(self, later: Changes) -> None:
        """Add the changes of a later event to these."""
        self.utterances.update(later.utterances)
        for old in later.replaced_usages:
            if old in self.usages:  # recorded within these changes: it is never written at all
                self.usages.remove(old)
            else:
                self.replaced_usages.append(old)
        self.usages.extend(later.usages)
        for old in later.replaced_transcriptions:
            if old in self.transcriptions:
                self.transcriptions.remove(old)
            else:
                self.replaced_transcriptions.append(old)
        self.transcriptions.extend(later.transcriptions)
        self.transcription_tokens = saturating_add(self.transcription_tokens, later.transcription_tokens)
        self.conflicts = saturating_add(self.conflicts, later.conflicts)
        self.relinked = self.relinked or later.relinked
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


def transcription_usage(usage) -> tuple[dict[str, int], Decimal]:
    """`…input_audio_transcription.completed.usage` → (`TranscriptionUsage` token counts, seconds).

    Token-billed (`{"type": "tokens", …}`, the default) or duration-billed (`{"type": "duration",
    "seconds": …}`); anything else, or bad values, counts 0.
    """
    usage = _dict(usage)
    counts = {"input_tokens": 0, "input_text_tokens": 0, "input_audio_tokens": 0, "output_tokens": 0}
    seconds = Decimal(0)
    kind = usage.get("type", "tokens")
    if kind == "tokens":
        details = _dict(usage.get("input_token_details"))
        output = _count(usage.get("output_tokens"))
        # A total without the split (never seen, but cheap to honour) counts as input.
        total_input = max(_count(usage.get("total_tokens")) - output, 0)
        counts |= {
            "input_tokens": _count(usage.get("input_tokens")) or total_input,
            "input_text_tokens": _count(details.get("text_tokens")),
            "input_audio_tokens": _count(details.get("audio_tokens")),
            "output_tokens": output,
        }
    elif kind == "duration":
        value = usage.get("seconds")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and math.isfinite(value) and value > 0:
            seconds = min(Decimal(str(value)).quantize(MILLISECOND), MAX_SECONDS)
    return counts, seconds


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
        items.add(_id(event.get("previous_item_id")))
    elif kind in (TRANSCRIPTION_COMPLETED, TRANSCRIPTION_FAILED, BUFFER_COMMITTED, ITEM_TRUNCATED, ITEM_DELETED):
        items.add(_id(event.get("item_id")))
        if kind == BUFFER_COMMITTED:
            items.add(_id(event.get("previous_item_id")))
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


def _rewrites(u: UtteranceState, text: str) -> bool:
    """Would `text` replace the final text of a closed line? (That is a conflict, never applied.)"""
    return u.status != PENDING and u.text != "" and text != u.text


class _Step:
    """The changes of one event, built on top of a state that is only read."""

    def __init__(self, state: TranscriptState, at: datetime, source: str = BROWSER):
        self.state = state
        self.at = at
        self.server = source == SERVER  # the witness's event: what it says wins over the browser's
        self.source = SERVER if self.server else BROWSER
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

    def line(self, item_id: str, role: str, kind: str) -> UtteranceState | None:
        """The open line of `item_id` (created as `role` if new), or None when the event must
        leave it alone: it is deleted, or it has the other role (a conflict)."""
        u = self.get(item_id) or self.create(item_id, role, kind)
        if u.role != role:
            self.conflict()
            if not self.server or u.verified:
                return None
            u = self.fresh(u, role, kind)
        return None if u.status == DELETED else u

    def fresh(self, u: UtteranceState, role: str, kind: str) -> UtteranceState:
        """The witness's line in place of one the browser made up: same item and position, and
        nothing of what the browser said of it."""
        return UtteranceState(u.item_id, role, kind, u.position, u.created_at)

    def keeps(self, u: UtteranceState, text: str) -> bool:
        """May an event with this final `text` go on with the line? A different text than a closed
        line's is a conflict; only the witness's replaces the text, and only a text the witness
        did not see itself."""
        if not _rewrites(u, text):
            return True
        self.conflict()
        return self.server and not u.verified

    def witnessed(self, u: UtteranceState) -> UtteranceState:
        """`u` as this event leaves it once it carries the line's final state."""
        return dataclasses.replace(u, verified=True) if self.server and not u.verified else u

    def conflict(self) -> None:
        self.changes.conflicts = saturating_add(self.changes.conflicts, 1)

    def follow(self, item_id: str | None, previous) -> None:
        """Keep the item the event says this line follows: the first one said, or the witness's."""
        previous = _id(previous)
        u = self.get(item_id) if item_id else None
        if u is None or previous is None or previous in (item_id, u.previous_item_id) or u.status == DELETED:
            return
        if u.previous_item_id:
            if not self.server:
                return
            self.conflict()
            self.changes.relinked = True
        self.put(dataclasses.replace(u, previous_item_id=previous))

    def finish(self, u: UtteranceState, status: str, **fields) -> UtteranceState:
        return dataclasses.replace(u, status=status, completed_at=u.completed_at or self.at, **fields)

    def response_status(self, response_id: str) -> str | None:
        recorded = self.state.responses.get(response_id) if response_id else None
        return recorded.status if recorded else None

    def unfinished(self, u: UtteranceState) -> bool:
        return u.status == INTERRUPTED or self.response_status(u.response_id) in UNFINISHED_RESPONSE

    # --- event handlers

    def item(self, item: _Item) -> bool:
        """Returns False when the event had to leave the line alone (deleted, or a conflict)."""
        u = self.line(item.id, item.role, item.kind or (TEXT if item.role == USER else AUDIO))
        if u is None:
            return False
        if item.kind and item.kind != u.kind and u.role == USER and self.server and not u.verified:
            # Spoken, not typed (or the reverse): the browser's version of the line is not this one.
            self.conflict()
            u = self.fresh(u, u.role, item.kind)
        if not u.verified or self.server:
            u = dataclasses.replace(u, kind=item.kind or u.kind)
        # The text an item event would apply: a typed user message's, or an assistant's when not
        # empty (an empty part is a transcript not there yet; spoken user input ignores it).
        if item.text is not None and (u.kind == TEXT if u.role == USER else item.text) and not self.keeps(u, item.text):
            return False
        if u.role == USER:
            # Spoken input is completed by its transcription events alone (they carry the usage).
            if u.kind == TEXT and item.text is not None:
                u = self.witnessed(self.finish(u, COMPLETED, text=item.text, error=""))
        else:
            if item.text is not None and (item.text or not u.text):
                u = dataclasses.replace(u, text=item.text)
            if item.status == "incomplete" or self.unfinished(u):
                u = self.finish(u, INTERRUPTED)
            elif item.status == "completed" and u.status == PENDING:
                u = self.finish(u, COMPLETED)
            if item.text and u.status != PENDING:
                u = self.witnessed(u)
        self.put(u)
        return True

    def transcription(self, event: dict, completed: bool) -> None:
        item_id = _id(event.get("item_id"))
        if item_id is None:
            return
        transcript = _str(event.get("transcript"))
        if completed and transcript is None:
            return
        u = self.line(item_id, USER, AUDIO)
        if u is None or u.kind != AUDIO:
            return  # deleted, not a user line (a conflict), or typed input
        if u.verified and not self.server:
            # The witness saw how it ended: the browser can repeat it, not change it.
            if (u.status, u.text) != ((COMPLETED, transcript) if completed else (FAILED, "")):
                self.conflict()
            return
        if u.status == COMPLETED:
            if not self.server:
                if completed and _rewrites(u, transcript):
                    self.conflict()
                return  # already transcribed: a duplicate, or a contradiction (counted above)
            # The witness on a line the browser completed: it confirms it, or its version wins.
            if not completed or _rewrites(u, transcript):
                self.conflict()
        if completed:
            u = self.finish(u, COMPLETED, text=transcript, error="")
            self.transcription_usage(item_id, event.get("usage"))
        else:
            u = self.finish(u, FAILED, text="", error=_error_text(event.get("error"), TRANSCRIPTION_FAILED_ERROR))
        self.put(self.witnessed(u))

    def transcription_usage(self, item_id: str, usage) -> None:
        """Record the usage of an item's completed transcription: once per item, and the witness's
        in place of the browser's (the browser's never replaces the witness's)."""
        recorded = self.state.transcriptions.get(item_id)
        if recorded is not None and (not self.server or recorded.source == SERVER):
            return
        counts, seconds = transcription_usage(usage)
        record = TranscriptionRecord(item_id, counts, seconds, self.at, self.source)
        if recorded is not None:
            self.changes.replaced_transcriptions.append(recorded)
            self.changes.transcription_tokens -= recorded.tokens
        self.changes.transcriptions.append(record)
        self.changes.transcription_tokens = saturating_add(self.changes.transcription_tokens, record.tokens)

    def assistant_text(self, event: dict, kind: str, key: str) -> None:
        item_id = _id(event.get("item_id"))
        text = _str(event.get(key))
        if item_id is None or text is None:
            return
        response_id = _id(event.get("response_id")) or ""
        u = self.line(item_id, ASSISTANT, kind)
        if u is None or not self.keeps(u, text) or (u.verified and not self.server):
            return  # deleted, a conflict (counted), or the witness's line repeated by the browser
        u = dataclasses.replace(u, kind=kind, text=text, response_id=u.response_id or response_id)
        self.put(self.witnessed(self.finish(u, INTERRUPTED if self.unfinished(u) else COMPLETED)))

    def response_done(self, event: dict) -> None:
        response = _dict(event.get("response"))
        response_id = _id(response.get("id"))
        status = (_str(response.get("status")) or "")[:MAX_STATUS_LENGTH]
        recorded = self.state.responses.get(response_id) if response_id else None
        # The witness's response.done replaces the browser's (usage and outcome); otherwise a
        # response ends once: a later, contradicting response.done does not change its outcome.
        replaces = recorded is not None and self.server and recorded.source != SERVER
        if recorded is not None and not replaces:
            status = recorded.status
        named = []
        for raw in _list(response.get("output")):
            item = _parse_item(raw)
            if item is None or item.role != ASSISTANT or not self.item(item):
                continue
            named.append(item.id)
            if response_id:
                u = self.get(item.id)
                self.put(dataclasses.replace(u, response_id=u.response_id or response_id))
        for item_id in named:
            u = self.get(item_id)
            if status in UNFINISHED_RESPONSE:
                error = ""
                if status == "failed":
                    error = _error_text(_dict(response.get("status_details")).get("error"), RESPONSE_FAILED_ERROR)
                self.put(self.finish(u, INTERRUPTED, error=u.error or error))
            elif status == "completed" and u.status == PENDING:
                self.put(self.finish(u, COMPLETED))
        if response_id and (recorded is None or replaces):
            # Once per response id: a resent or duplicated response.done never counts twice.
            counts = usage_counts(response.get("usage"))
            if replaces:
                self.changes.replaced_usages.append(recorded)
            self.changes.usages.append(UsageRecord(response_id, status, counts, self.at, self.source))

    def truncated(self, event: dict) -> None:
        item_id = _id(event.get("item_id"))
        u = self.get(item_id) if item_id else None
        # Only an assistant line can be cut; an unknown item has nothing to mark.
        if u is not None and u.role == ASSISTANT and u.status != DELETED:
            self.put(self.finish(u, INTERRUPTED))

    def deleted(self, event: dict) -> None:
        item_id = _id(event.get("item_id"))
        u = self.get(item_id) if item_id else None
        if u is not None:
            self.put(self.finish(u, DELETED))


def reduce(state: TranscriptState, event, at: datetime, source: str = BROWSER) -> Changes:
    """The changes one OpenAI server event (received at `at`, seen by `source`: "browser" or
    "server") makes to the transcript.

    Pure: `state` is only read. Never raises on any JSON value.
    """
    step = _Step(state, at, source)
    step.changes.started_at = at if state.started_at is None else None
    step.changes.last_activity_at = at if state.last_activity_at is None or at > state.last_activity_at else None
    event = _dict(event)
    kind = _str(event.get("type"))
    if kind in ITEM_EVENTS:
        item = _parse_item(event.get("item"))
        if item is not None and step.item(item):
            step.follow(item.id, event.get("previous_item_id"))
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
    elif kind == ITEM_TRUNCATED:
        step.truncated(event)
    elif kind == ITEM_DELETED:
        step.deleted(event)
    elif kind == BUFFER_COMMITTED:
        item_id = _id(event.get("item_id"))
        if item_id and step.get(item_id) is None:
            step.put(step.create(item_id, USER, AUDIO))
        if item_id and step.get(item_id).role == USER:
            step.follow(item_id, event.get("previous_item_id"))
    # Anything else (deltas, `error`, session events, unknown types) is journaled only.
    return step.changes


def advance(state: TranscriptState, changes: Changes) -> None:
    """Fold `changes` into `state` (the caller's own state object is updated)."""
    for item_id, u in changes.utterances.items():
        if item_id not in state.utterances:
            state.next_position = max(state.next_position, u.position + 1)
        state.utterances[item_id] = u
    for usage in changes.usages:
        state.responses[usage.response_id] = usage
    for record in changes.transcriptions:
        state.transcriptions[record.item_id] = record
    state.has_title = state.has_title or changes.title is not None
    state.started_at = state.started_at or changes.started_at
    state.last_activity_at = changes.last_activity_at or state.last_activity_at


def fold(state: TranscriptState, events: Iterable[tuple]) -> Changes:
    """Apply `(event, received_at)` pairs, or `(event, received_at, source)` triples, in order;
    returns their combined changes.

    `state` is advanced as it goes, so it ends up describing the transcript after the events.
    """
    total = Changes()
    for event, at, *source in events:
        changes = reduce(state, event, at, *source)
        advance(state, changes)
        total.merge(changes)
    return total
