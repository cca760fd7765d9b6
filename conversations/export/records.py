"""
The record: what one exported conversation is, in both directions.

A record is a JSON-ready dict per conversation: a `schema` version, the public id, the owner's
username, metadata, usage totals, the staff review (in backups and staff exports only), the usage
of each response and of each item's input transcription, the utterances in conversation order
and, when asked for, the raw journal. The field tables below are the one list of what is
exported; `make_record()` builds a record from column values (`queries.iter_records()` reads them
from a queryset), `parse_record()` checks one read back from a file and builds its unsaved rows
(`restore.py` writes them). Bump `SCHEMA` when the record's shape changes (a list added later
that older records lack, like `transcriptions`, imports as empty: `LISTS_ADDED_LATER`).

Records are built from column values rather than from model instances: building a model
instance per utterance made the export three times slower (see bench/README.md).
"""

import datetime
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from django.core.exceptions import ValidationError
from django.db import models

from conversations.models import (
    Conversation,
    Event,
    Recording,
    ResponseUsage,
    TokenUsage,
    TranscriptionUsage,
    Utterance,
)

SCHEMA = 1


# --- The exported fields: one list per model, read by every format and by the importer -------
class Fields:
    """The exported fields of one model, in record order."""

    def __init__(self, model, names: tuple[str, ...]):
        self.model, self.names = model, names

    @cached_property
    def _datetimes(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if isinstance(self.model._meta.get_field(n), models.DateTimeField))

    def to_json(self, values: Sequence) -> dict:
        """The column values (in `names` order; any extra ones after them are ignored) as a
        JSON-ready dict."""
        row = dict(zip(self.names, values))  # zip() stops at the last name
        for name in self._datetimes:
            row[name] = format_datetime(row[name])
        for name in self._decimals:  # JSON has no decimals: a string keeps every digit
            row[name] = str(row[name])
        return row

    @cached_property
    def _decimals(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if isinstance(self.model._meta.get_field(n), models.DecimalField))

    def pick(self, mapping: Mapping) -> dict:
        return self.to_json([mapping[name] for name in self.names])


# Conversation metadata ("id" is the public uuid, "user" the owner's username).
CONVERSATION = Fields(
    Conversation,
    (
        "title",
        "model",
        "voice",
        "turn_detection",
        # ISO-639-1 code of the language it was held in; "" = detected automatically.
        "language",
        "status",
        "segments",
        "created_at",
        "started_at",
        "last_activity_at",
        "ended_at",
        # Events that contradicted a closed line (kept in the journal, not applied).
        "conflicts",
    ),
)
# Fields added to the record after it was first written: a record without them gets the default.
# (Records written before a field existed still import, so SCHEMA stays 1.)
ADDED_LATER = {"conflicts": 0, "language": ""}
# The same for the rows of a record's lists: `verified` (the server's witness saw the line end
# itself), `previous_item_id` (the item a line follows), and whose `source` a response's usage
# and a journal event are (the browser's before the server witnessed calls).
ADDED_LATER_TO = {
    "utterances": {"verified": False, "previous_item_id": ""},
    "responses": {"source": "browser"},
    "events": {"source": "browser"},
}
# Lists added to the record later: a record without one has none of its rows.
LISTS_ADDED_LATER = ("transcriptions",)
# The conversation's usage totals ("usage" in the record).
USAGE_TOTALS = Fields(Conversation, TokenUsage.USAGE_FIELDS + ("transcription_tokens",))
# Staff review ("review" in the record, with "reviewed_by" as a username). Only in exports for
# staff and backups: what users download leaves it out, staff notes are not theirs to read.
REVIEW = Fields(Conversation, ("reviewed", "reviewed_at", "flagged", "review_note"))
UTTERANCE = Fields(Utterance, Utterance.FIELDS)
RESPONSE = Fields(ResponseUsage, ("response_id", "status", "created_at") + TokenUsage.USAGE_FIELDS + ("source",))
TRANSCRIPTION = Fields(
    TranscriptionUsage, ("item_id", "created_at", "source") + TranscriptionUsage.USAGE_FIELDS
)
# The audio of each session, in session order: what there is, not the audio itself
# (`export_sessions --include-recordings` writes the files beside the export). Not imported:
# a restored conversation has no audio.
RECORDING = Fields(Recording, ("segment", "mime_type", "bytes", "duration_ms", "started_at"))
# In the journal's order (storage order: the two streams interleaved as they were folded).
EVENT = Fields(Event, ("seq", "type", "payload", "received_at", "source"))


def format_datetime(value: datetime.datetime | None) -> str | None:
    """ISO 8601 in UTC with a trailing Z, microseconds kept (so a restore loses nothing)."""
    if value is None:
        return None
    if value.tzinfo is not datetime.UTC:  # the database's values are in UTC already
        value = value.astimezone(datetime.UTC)
    return value.isoformat()[:-6] + "Z"  # drops "+00:00"


# --- The record -----------------------------------------------------------------------------
def make_record(
    conversation: Mapping,
    utterances: Iterable[Sequence],
    responses: Iterable[Sequence],
    events: Iterable[Sequence] | None = None,
    *,
    include_review: bool = False,
    transcriptions: Iterable[Sequence] = (),
    recordings: Iterable[Sequence] = (),
) -> dict:
    """
    One conversation as a record. `conversation` maps "uuid", "username", "reviewer" (a
    username or None) and the field names of CONVERSATION, USAGE_TOTALS and REVIEW to their
    values; the children are rows of values in the order of UTTERANCE's, RESPONSE's and EVENT's
    names (values after those are ignored), already in conversation order; so are
    `transcriptions` (TRANSCRIPTION's names) and `recordings` (RECORDING's names). No "events"
    key when `events` is None.
    """
    record = {"schema": SCHEMA, "id": str(conversation["uuid"]), "user": conversation["username"]}
    record.update(CONVERSATION.pick(conversation))
    record["usage"] = USAGE_TOTALS.pick(conversation)
    if include_review:
        record["review"] = REVIEW.pick(conversation)
        record["review"]["reviewed_by"] = conversation["reviewer"]
    record["responses"] = [RESPONSE.to_json(row) for row in responses]
    record["transcriptions"] = [TRANSCRIPTION.to_json(row) for row in transcriptions]
    record["utterances"] = [UTTERANCE.to_json(row) for row in utterances]
    record["recordings"] = [RECORDING.to_json(row) for row in recordings]
    if events is not None:
        record["events"] = [EVENT.to_json(row) for row in events]
    return record


# --- Reading a record back (import) ---------------------------------------------------------
class RecordError(ValueError):
    """A record that cannot be restored; the message says where in the record."""


@dataclass
class ParsedConversation:
    conversation: Conversation  # unsaved; user and reviewed_by set from the given usernames
    utterances: list[Utterance]
    usages: list[ResponseUsage]
    events: list[Event] | None  # None when the record has no journal
    transcriptions: list[TranscriptionUsage] = field(default_factory=list)


def _path(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


_KIND_NAMES = {str: "a string", list: "a list", dict: "an object", (str, type(None)): "a string or null"}


def _require(record: dict, key: str, kind, where: str):
    if key not in record:
        raise RecordError(f"{_path(where, key)}: missing")
    value = record[key]
    if not isinstance(value, kind):
        raise RecordError(f"{_path(where, key)}: expected {_KIND_NAMES[kind]}")
    return value


def _type_ok(field, value) -> bool:
    """JSON types only as we write them: to_python() alone would turn 5.7 into 5, {} into "{}"."""
    kind = field.get_internal_type()
    if kind == "JSONField" or value is None:
        return True
    if kind == "BooleanField":
        return isinstance(value, bool)
    if kind.endswith("IntegerField"):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str)  # text, choices, UUIDs and datetimes


def _build(model, data, fields, where: str, **extra):
    """An unsaved, validated instance from the record's `fields` of `data`."""
    if not isinstance(data, dict):
        raise RecordError(f"{where}: expected an object")
    values = {}
    for name in fields:
        if name not in data:
            raise RecordError(f"{_path(where, name)}: missing")
        field = model._meta.get_field(name)
        value = data[name]
        if value is None and not field.null:  # full_clean() lets None through on blank fields
            raise RecordError(f"{_path(where, name)}: may not be null")
        if not _type_ok(field, value):
            raise RecordError(f"{_path(where, name)}: {value!r} is not a valid {field.get_internal_type()}")
        try:
            value = field.to_python(value)
        except ValidationError as error:
            raise RecordError(f"{_path(where, name)}: {' '.join(error.messages)}") from None
        if isinstance(value, datetime.datetime) and value.tzinfo is None:
            raise RecordError(f"{_path(where, name)}: a time zone is required")
        values[name] = value
    instance = model(**values, **extra)
    # Uniqueness and constraints are checked by the caller and the database: here, one query
    # per row would make a large import crawl. A JSON field holds what json.loads() gave, which
    # is valid by construction; full_clean() would refuse an empty payload the table accepts.
    exclude = [
        f.name for f in model._meta.fields if f.name not in fields or f.get_internal_type() == "JSONField"
    ]
    try:
        instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        field, messages = next(iter(error.message_dict.items()))
        raise RecordError(f"{_path(where, field)}: {' '.join(messages)}") from None
    return instance


def _unique(items, key: str | tuple[str, ...], where: str):
    keys = (key,) if isinstance(key, str) else key
    seen = set()
    for index, item in enumerate(items):
        value = tuple(getattr(item, k) for k in keys)
        if value in seen:
            shown = value[0] if len(keys) == 1 else dict(zip(keys, value))
            raise RecordError(f"{where}[{index}].{keys[-1]}: {shown!r} appears twice")
        seen.add(value)


def parse_record(record, users: dict) -> ParsedConversation:
    """
    Validate one exported record (`make_record(..., include_review=True)` output) and
    build its unsaved rows. `users` maps usernames to user objects; a username missing from it
    is an error. Raises RecordError whose message starts with the offending key.
    """
    if not isinstance(record, dict):
        raise RecordError("expected a JSON object (one conversation per line)")
    if record.get("schema") != SCHEMA:
        raise RecordError(f"schema: expected {SCHEMA}, got {record.get('schema')!r}")
    try:
        public_id = uuid.UUID(_require(record, "id", str, ""))
    except ValueError:
        raise RecordError(f"id: {record['id']!r} is not a UUID") from None

    def user(username, where):
        if username not in users:
            raise RecordError(f"{where}: unknown user {username!r}")
        return users[username]

    conversation = _build(
        Conversation,
        ADDED_LATER | record,
        CONVERSATION.names,
        "",
        uuid=public_id,
        user=user(_require(record, "user", str, ""), "user"),
    )
    # The nested objects are checked field by field against the same model, then copied over.
    nested = [("usage", USAGE_TOTALS.names)]
    if "review" in record:
        review = _require(record, "review", dict, "")
        reviewer = _require(review, "reviewed_by", (str, type(None)), "review")
        conversation.reviewed_by = user(reviewer, "review.reviewed_by") if reviewer else None
        nested.append(("review", REVIEW.names))
    for key, fields in nested:
        checked = _build(Conversation, _require(record, key, dict, ""), fields, key)
        for name in fields:
            setattr(conversation, name, getattr(checked, name))

    def children(key, fields: Fields, unique):
        defaults = ADDED_LATER_TO.get(key, {})
        items = [
            _build(fields.model, defaults | data if isinstance(data, dict) else data, fields.names, f"{key}[{index}]")
            for index, data in enumerate(
                [] if key in LISTS_ADDED_LATER and key not in record else _require(record, key, list, "")
            )
        ]
        for name in unique:
            _unique(items, name, key)
        return items

    utterances = children("utterances", UTTERANCE, ("item_id", "position"))
    usages = children("responses", RESPONSE, ("response_id",))
    transcriptions = children("transcriptions", TRANSCRIPTION, ("item_id",))
    events = None
    if "events" in record:
        events = children("events", EVENT, (("source", "seq"),))
        for index, event in enumerate(events):
            if event.seq < 1:  # the table's check constraint, which full_clean() skipped
                raise RecordError(f"events[{index}].seq: must be at least 1")
    return ParsedConversation(conversation, utterances, usages, events, transcriptions)
