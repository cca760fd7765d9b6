"""
Selecting conversations for export, and reading them as records in constant memory.

`iter_records()` reads a filtered queryset chunk by chunk, seeking past the last primary key
seen (keyset pagination: each chunk is an index range scan, however deep into the table), and
fetches each chunk's utterances and usages (of the responses and of the transcriptions), and
its journal when asked, with one query per kind, ordered by the (conversation, position)
indexes and the journal's order (id); and its recordings' summaries, by segment. The number
of queries grows with the number of chunks, memory with the size of one chunk, and neither with
the size of the table.
(`.iterator()` over the conversations would stream them but cannot bring their children;
`prefetch_related()` on the whole queryset would load everything at once.)

Rows are read as column values (`values_list`), not model instances: a record needs
nothing else, and it is three times faster.

No transaction is held around the walk: under SQLite's IMMEDIATE mode it would take the write
lock for the whole export. Conversations that exist throughout the export are all seen once;
one written meanwhile may or may not be.
"""

import datetime
import itertools
import operator
import uuid
from collections.abc import Iterable, Iterator

from django.contrib.auth import get_user_model
from django.db.models import F, QuerySet

from conversations.export import records
from conversations.models import Conversation, Event, Recording, ResponseUsage, TranscriptionUsage, Utterance

DEFAULT_CHUNK_SIZE = 500
# A conversation's journal holds every event received (hundreds, with payloads of kilobytes):
# fewer conversations per chunk keep the chunk's memory in the same range.
DEFAULT_CHUNK_SIZE_WITH_EVENTS = 50


def select_conversations(
    *,
    users: Iterable | None = None,
    since: datetime.datetime | None = None,
    until: datetime.datetime | None = None,
    conversation_ids: Iterable[uuid.UUID] | None = None,
    statuses: Iterable[str] | None = None,
) -> QuerySet:
    """
    Conversations matching every filter given; a filter left as None does not restrict.
    `since` (inclusive) and `until` (exclusive) bound the creation time, so consecutive ranges
    (`--since 2025-01-01 --until 2025-02-01`, then from 2025-02-01) never overlap.
    """
    queryset = Conversation.objects.all()
    if users is not None:
        queryset = queryset.filter(user__in=list(users))
    if since is not None:
        queryset = queryset.filter(created_at__gte=since)
    if until is not None:
        queryset = queryset.filter(created_at__lt=until)
    if conversation_ids is not None:
        queryset = queryset.filter(uuid__in=list(conversation_ids))
    if statuses is not None:
        queryset = queryset.filter(status__in=list(statuses))
    return queryset


def _conversation_rows(queryset: QuerySet) -> QuerySet:
    """The columns `records.make_record()` reads, owner and reviewer joined in."""
    username = get_user_model().USERNAME_FIELD
    names = records.CONVERSATION.names + records.USAGE_TOTALS.names + records.REVIEW.names
    return queryset.order_by("pk").values(
        "pk", "uuid", *names, username=F(f"user__{username}"), reviewer=F(f"reviewed_by__{username}")
    )


def _children(model, fields: records.Fields, ids: list, *order: str) -> dict[int, list[tuple]]:
    """Each conversation's child rows, in conversation order, by conversation pk."""
    # The conversation id goes last: Fields.to_json() reads the row as it is and stops before it.
    rows = (
        model.objects.filter(conversation_id__in=ids)
        .order_by("conversation_id", *order)
        .values_list(*fields.names, "conversation_id")
    )
    return {pk: list(group) for pk, group in itertools.groupby(rows, key=operator.itemgetter(-1))}


def iter_chunks(
    queryset: QuerySet,
    *,
    chunk_size: int | None = None,
    include_events: bool = False,
    include_review: bool = False,
) -> Iterator[list[dict]]:
    """
    Lists of at most `chunk_size` records of `queryset`'s conversations, in primary-key order
    (creation order). Review fields only with `include_review` (staff exports, backups).
    """
    if chunk_size is None:
        chunk_size = DEFAULT_CHUNK_SIZE_WITH_EVENTS if include_events else DEFAULT_CHUNK_SIZE
    rows = _conversation_rows(queryset)
    last_pk = None
    while True:
        page = rows if last_pk is None else rows.filter(pk__gt=last_pk)
        conversations = list(page[:chunk_size])
        if not conversations:
            return
        ids = [conversation["pk"] for conversation in conversations]
        utterances = _children(Utterance, records.UTTERANCE, ids, "position")
        responses = _children(ResponseUsage, records.RESPONSE, ids, "created_at", "response_id")
        transcriptions = _children(TranscriptionUsage, records.TRANSCRIPTION, ids, "created_at", "item_id")
        events = _children(Event, records.EVENT, ids, "id") if include_events else {}
        recordings = _children(Recording, records.RECORDING, ids, "segment")
        yield [
            records.make_record(
                conversation,
                utterances.get(conversation["pk"], ()),
                responses.get(conversation["pk"], ()),
                events.get(conversation["pk"], ()) if include_events else None,
                include_review=include_review,
                transcriptions=transcriptions.get(conversation["pk"], ()),
                recordings=recordings.get(conversation["pk"], ()),
            )
            for conversation in conversations
        ]
        if len(conversations) < chunk_size:
            return
        last_pk = ids[-1]


def iter_records(queryset: QuerySet, **options) -> Iterator[dict]:
    """The records of `queryset`'s conversations one by one, read as `iter_chunks()` does."""
    for chunk in iter_chunks(queryset, **options):
        yield from chunk
