"""
Persistence of the event journal and of what the reducer derives from it.

- `append_batches()` / `append_frames()`: store validated event frames and apply them to the
  transcript, all in ONE short transaction with a fixed number of queries (bulk inserts and
  updates, never one round trip per row). Seqs already stored are skipped, so resending is safe.
- `rebuild()`: re-derive utterances, usage and totals of a conversation from its journal with
  the current reducer — the same code path as live, so the same result; idempotent.

Concurrent writers to one conversation (two tabs, or two server processes) are serialized by
locking the conversation rows (`SELECT … FOR UPDATE` in id order on PostgreSQL; SQLite's
IMMEDIATE transactions already admit one writer at a time), so the "already stored?" check and
the next position cannot race. The same transaction decides which new frames are admitted
(`_admit`): none once a conversation has been closed for CONVERSATION_LATE_EVENTS_SECONDS
(`conversation_closed`), and none past the stored-bytes bounds per conversation and per user
and day (`quota_exceeded`); the per-day rows are locked after the conversations, in user order,
so the counts cannot race either and two transactions cannot deadlock.

Two streams share the journal: the browser's (the transcript socket) and, for a witnessed call,
the server's own (`Frame.source == "server"`, written by the witness through the same writer).
Each has its own seqs ((conversation, source, seq) is unique). The journal's order is the order of
storage (`Event.id`): a transaction inserts its frames in the order the reducer folds them, and
`rebuild()` folds by id, so both see the two streams interleaved the same way. The witness's
frames are not the user's to spend: they are never refused for the storage bounds (they are
counted in them, so a user's own frames meet the bounds sooner), only for the late-events window
(docs/security.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, Max, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from conversations.models import (
    Conversation,
    DailyStorage,
    Event,
    ResponseUsage,
    TokenUsage,
    TranscriptionUsage,
    Utterance,
)
from conversations.transcript import order, reducer
from conversations.transcript.frames import Frame, FrameError
from conversations.transcript.reducer import (
    BROWSER,
    SERVER,
    TranscriptionRecord,
    TranscriptState,
    UsageRecord,
    UtteranceState,
    saturating_add,
)

logger = logging.getLogger(__name__)

TRANSCRIPTION_FIELDS = ["item_id", "created_at", "source", *TranscriptionUsage.USAGE_FIELDS]
UTTERANCE_UPDATE_FIELDS = [name for name in Utterance.FIELDS if name not in Utterance.SET_ONCE_FIELDS]
CONVERSATION_UPDATE_FIELDS = [
    "title", "started_at", "last_activity_at", "transcription_tokens", "conflicts", *TokenUsage.USAGE_FIELDS,
]  # fmt: skip
# A reviewed conversation that changes is no longer reviewed: staff saw something else.
REVIEW_CLEARED = {"reviewed": False, "reviewed_at": None, "reviewed_by": None}


@dataclass
class AppendResult:
    """The outcome of one conversation's batch."""

    conversation_id: int
    seqs: list[int] = field(default_factory=list)  # every seq of the batch: all may be acked
    stored: int = 0  # how many of them were new
    changed: list[UtteranceState] = field(default_factory=list)  # new or changed, by position
    found: bool = True  # False: the conversation does not exist (any more)
    failed: bool = False  # the database refused the batch: nothing of it was written
    # Seqs refused for good (not stored; their error replaces the ack): quota_exceeded,
    # conversation_closed. The other seqs may be acked. Of the browser's stream; the witness's
    # are in `refused_server` (the writer hands each caller those of its own source as `refused`).
    refused: dict[int, FrameError] = field(default_factory=dict)
    refused_server: dict[int, FrameError] = field(default_factory=dict)

    def refused_of(self, source: str) -> dict[int, FrameError]:
        return self.refused_server if source == SERVER else self.refused


def to_state(u: Utterance) -> UtteranceState:
    return UtteranceState(**{name: getattr(u, name) for name in UtteranceState.FIELDS})


# --- appending -----------------------------------------------------------------------------------


def append_frames(conversation_id: int, frames: Sequence[Frame]) -> AppendResult:
    """Store one conversation's frames in one transaction (see `append_batches`)."""
    return append_batches([(conversation_id, frames)])[conversation_id]


def append_batches(batches: Iterable[tuple[int, Sequence[Frame]]]) -> dict[int, AppendResult]:
    """Store the frames of one or more conversations, and apply them, in ONE transaction.

    Returns a result per conversation id. If the transaction fails as a whole, each conversation
    is retried in a transaction of its own, so that one bad batch cannot hold back the others;
    a batch that still fails is reported `failed` (and nothing of it is written).
    """
    merged: dict[int, list[Frame]] = {}
    for conversation_id, frames in batches:
        merged.setdefault(conversation_id, []).extend(frames)
    if not merged:
        return {}
    try:
        with transaction.atomic():
            return _append_locked(merged)
    except Exception:  # a database error, or a bug: never a partial write, never a dead writer
        if len(merged) == 1:
            logger.exception("Could not store the frames of conversation %s", next(iter(merged)))
            return {cid: _failed(cid, frames) for cid, frames in merged.items()}
    results = {}
    for conversation_id, frames in merged.items():
        try:
            with transaction.atomic():
                results.update(_append_locked({conversation_id: frames}))
        except Exception:
            logger.exception("Could not store the frames of conversation %s", conversation_id)
            results[conversation_id] = _failed(conversation_id, frames)
    return results


def _failed(conversation_id, frames):
    return AppendResult(conversation_id, seqs=[f.seq for f in frames], failed=True)


def _prepared(model, names, rows):
    """Rows of Python values → database parameters (each distinct value of a field prepared once:
    a batch shares its timestamp, and Django's per-value preparation is the costly part)."""
    fields = [model._meta.get_field(name) for name in names]
    cache: dict = {}
    out = []
    for row in rows:
        params = []
        for f, value in zip(fields, row):
            if isinstance(value, (dict, list)):  # JSON: unhashable, and unique per row anyway
                params.append(f.get_db_prep_save(value, connection))
                continue
            key = (f.name, type(value), value)
            if key not in cache:
                cache[key] = f.get_db_prep_save(value, connection)
            params.append(cache[key])
        out.append(params)
    return out


def _insert(model, names: list[str], rows: list[tuple], *, skip_duplicates_of: tuple[str, ...] = ()):
    """Multi-row INSERT of `rows` (tuples of values for `names`), chunked to the backend's limit.

    With `skip_duplicates_of` (the fields of a unique constraint), rows that would violate it are
    skipped — `ON CONFLICT DO NOTHING`, race-free — and the values of those fields of the rows
    actually inserted are returned (`RETURNING`; PostgreSQL and SQLite >= 3.35 both have it).
    """
    qn = connection.ops.quote_name
    opts = model._meta
    columns = ", ".join(qn(opts.get_field(name).column) for name in names)
    unique = ", ".join(qn(opts.get_field(name).column) for name in skip_duplicates_of)
    placeholder = "(" + ", ".join(["%s"] * len(names)) + ")"
    per_statement = max(1, min(500, (connection.features.max_query_params or 65535) // len(names)))
    inserted = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = _prepared(model, names, rows[start : start + per_statement])
            sql = f"INSERT INTO {qn(opts.db_table)} ({columns}) VALUES {', '.join([placeholder] * len(chunk))}"
            if skip_duplicates_of:
                sql += f" ON CONFLICT ({unique}) DO NOTHING RETURNING {unique}"
            cursor.execute(sql, [value for params in chunk for value in params])
            if skip_duplicates_of:
                inserted += [tuple(row) for row in cursor.fetchall()]
    return inserted


def _update_rows(model, updates: list[tuple[int, dict]]) -> None:
    """UPDATE rows by primary key, each with its own {field: value}: one executemany per set of
    fields changed. (Django's bulk_update builds a CASE WHEN per row and field: milliseconds a row.)
    """
    groups: dict[tuple[str, ...], list[tuple[int, dict]]] = {}
    for pk, values in updates:
        if values:
            groups.setdefault(tuple(values), []).append((pk, values))
    qn = connection.ops.quote_name
    opts = model._meta
    with connection.cursor() as cursor:
        for names, rows in groups.items():
            sql = "UPDATE {} SET {} WHERE {} = %s".format(
                qn(opts.db_table),
                ", ".join(f"{qn(opts.get_field(name).column)} = %s" for name in names),
                qn(opts.pk.column),
            )
            params = _prepared(model, names, [[values[name] for name in names] for _, values in rows])
            cursor.executemany(sql, [p + [pk] for p, (pk, _) in zip(params, rows)])


def _pairs(model, names: tuple[str, ...], pairs) -> RawSQL:
    """A condition matching rows whose fields equal one of `pairs` (tuples of values for `names`):
    `(a = x AND b = y) OR …`.

    Both PostgreSQL and SQLite turn it into one index probe per pair. (`a IN (…) AND b IN (…)`
    makes SQLite probe every combination; `(a, b) IN (VALUES …)` makes it scan.)
    """
    qn = connection.ops.quote_name
    match = " AND ".join(f"{qn(model._meta.get_field(name).column)} = %s" for name in names)
    sql = " OR ".join([f"({match})"] * len(pairs))
    return RawSQL(f"({sql})", [value for pair in pairs for value in pair], output_field=BooleanField())


def _chunks(items: list, size: int = 1000):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _load_state(conversations: dict[int, dict], new: dict[int, list[Frame]]):
    """The part of each conversation's transcript state its new events refer to.

    Returns ({(conversation_id, item_id): utterance pk}, {conversation_id: TranscriptState}).
    A few queries, whatever the size of the batch: the rows are looked up by exact (conversation,
    id) pairs, each an index probe. (`order_by()`: the models' default ordering would join and sort.)
    """
    items: dict[int, set[str]] = {}
    responses: dict[int, set[str]] = {}
    transcribed: list[tuple[int, str]] = []  # the items whose transcription usage may be recorded
    for cid, frames in new.items():
        items[cid], responses[cid] = set(), set()
        for f in frames:
            i, r = reducer.referenced_ids(f.event)
            items[cid] |= i
            responses[cid] |= r
            if f.event.get("type") == reducer.TRANSCRIPTION_COMPLETED:
                transcribed += [(cid, item_id) for item_id in i]
    loaded: dict[int, dict[str, UtteranceState]] = {cid: {} for cid in new}
    pks: dict[tuple[int, str], int] = {}
    wanted = [(cid, item_id) for cid, ids in items.items() for item_id in ids]
    for part in _chunks(wanted):
        # The lines named, and the lines that follow them (placed ahead of a line that comes late).
        named = _pairs(Utterance, ("conversation", "item_id"), part)
        following = _pairs(Utterance, ("conversation", "previous_item_id"), part)
        for pk, cid, *values in (
            Utterance.objects.filter(Q(named) | Q(following))
            .order_by()
            .values_list("pk", "conversation_id", *UtteranceState.FIELDS)
        ):
            u = UtteranceState(**dict(zip(UtteranceState.FIELDS, values)))
            loaded[cid][u.item_id] = u
            pks[cid, u.item_id] = pk
    for cid, utterances in loaded.items():
        responses[cid] |= {u.response_id for u in utterances.values() if u.response_id}
    recorded: dict[int, dict[str, UsageRecord]] = {cid: {} for cid in new}
    wanted = [(cid, rid) for cid, ids in responses.items() for rid in ids]
    for part in _chunks(wanted):
        for cid, rid, status, created_at, source, *counts in (
            ResponseUsage.objects.filter(_pairs(ResponseUsage, ("conversation", "response_id"), part))
            .order_by()
            .values_list("conversation_id", "response_id", "status", "created_at", "source", *TokenUsage.USAGE_FIELDS)
        ):
            recorded[cid][rid] = UsageRecord(rid, status, dict(zip(TokenUsage.USAGE_FIELDS, counts)), created_at, source)
    transcriptions: dict[int, dict[str, TranscriptionRecord]] = {cid: {} for cid in new}
    for part in _chunks(sorted(set(transcribed))):
        for cid, *values in (
            TranscriptionUsage.objects.filter(_pairs(TranscriptionUsage, ("conversation", "item_id"), part))
            .order_by()
            .values_list("conversation_id", *TRANSCRIPTION_FIELDS)
        ):
            record = transcription_record(dict(zip(TRANSCRIPTION_FIELDS, values)))
            transcriptions[cid][record.item_id] = record
    top = {}
    if any(items.values()):
        top = dict(
            Utterance.objects.filter(conversation_id__in=[cid for cid in new if items[cid]])
            .order_by()
            .values("conversation_id")
            .annotate(top=Max("position"))
            .values_list("conversation_id", "top")
        )
    states = {
        cid: TranscriptState(
            utterances=loaded[cid],
            responses=recorded[cid],
            transcriptions=transcriptions[cid],
            next_position=top[cid] + 1 if top.get(cid) is not None else 0,
            has_title=bool(conversations[cid]["title"]),
        )
        for cid in new
    }
    return pks, states


CONVERSATION_LOCK_FIELDS = (
    "id", "user_id", "title", "status", "created_at", "started_at", "last_activity_at", "ended_at",
    "stored_bytes", "transcription_tokens", "conflicts", "reviewed", *TokenUsage.USAGE_FIELDS,
)  # fmt: skip


def _journal_order(frames: dict[tuple[int, str, int], Frame]) -> list[tuple[tuple[int, str, int], Frame]]:
    """The order in which a transaction's frames are stored, which is the journal's order (ids
    follow the rows) and the order the reducer folds them in, as a rebuild does: per conversation,
    the two streams interleaved as they reached the writer, each stream by seq. Arrival order
    places items right when one stream saw what the other missed (a witness that attached late
    brings the next turn while the page's outbox still delivers the one before)."""
    by_conversation: dict[int, list] = {}
    for item in frames.items():  # in arrival order
        by_conversation.setdefault(item[0][0], []).append(item)
    ordered = []
    for cid in sorted(by_conversation):
        items = by_conversation[cid]
        for source in {key[1] for key, _ in items}:
            slots = [i for i, (key, _) in enumerate(items) if key[1] == source]
            in_seq = sorted((items[i] for i in slots), key=lambda item: item[0][2])
            for i, item in zip(slots, in_seq):
                items[i] = item
        ordered += items
    return ordered


def _append_locked(merged: dict[int, list[Frame]]) -> dict[int, AppendResult]:
    conversations = {
        row["id"]: row
        for row in Conversation.objects.select_for_update()
        .filter(id__in=merged)
        .order_by("id")  # rows are locked in this order: no deadlock between two processes
        .values(*CONVERSATION_LOCK_FIELDS)
    }
    results = {
        cid: AppendResult(cid, seqs=[f.seq for f in frames], found=cid in conversations)
        for cid, frames in merged.items()
    }
    # 1. Journal the frames; the seqs already stored are skipped: resending changes nothing.
    # All frames of a transaction share one received_at (the time they were stored).
    now = timezone.now()
    first: dict[tuple[int, str, int], Frame] = {}
    for cid, frames in merged.items():
        if cid in conversations:
            for f in frames:
                # A seq repeated within the batch: the first copy.
                first.setdefault((cid, SERVER if f.source == SERVER else BROWSER, f.seq), f)
    if first:
        days = _lock_days({row["user_id"] for row in conversations.values()}, now)
        for (cid, source, seq), error in _admit(conversations, days, first, now).items():
            results[cid].refused_of(source)[seq] = error
            del first[cid, source, seq]
    ordered = _journal_order(first)
    inserted = set(
        _insert(
            Event,
            ["conversation", "source", "seq", "type", "payload", "received_at", "repairs"],
            [(cid, source, seq, f.event["type"], f.event, now, f.repairs) for (cid, source, seq), f in ordered],
            skip_duplicates_of=("conversation", "source", "seq"),
        )
    )
    new: dict[int, list[Frame]] = {}
    for key, f in ordered:
        if key in inserted:
            new.setdefault(key[0], []).append(f)
    if not new:
        return results
    _count_days(days, conversations, new)

    # 2. Reduce the new events over the state they refer to, then write the changes in bulk.
    pks, states = _load_state(conversations, new)
    create_utterances, update_utterances, create_usages, update_conversations = [], [], [], []
    replaced_usages, create_transcriptions, replaced_transcriptions = [], [], []
    moves: list[tuple[int, int]] = []  # (pk, position): stored lines placed again
    above = 0  # a position above every one in use in those conversations
    for cid, frames in new.items():
        originals = dict(states[cid].utterances)
        changes = reducer.fold(states[cid], ((f.event, now, f.source) for f in frames))
        created = {item_id for item_id in changes.utterances if (cid, item_id) not in pks}
        moved = []
        if changes.relinked or order.misplaced(states[cid].utterances, changes.utterances, created):
            moved, top = _place(cid, changes, pks)
            moves += [(pks[cid, u.item_id], u.position) for u in moved]
            above = max(above, top + 1)
        # Lines that only moved: `moves` writes their position; they are sent live all the same.
        changed = [u for u in moved if u.item_id not in changes.utterances]
        for item_id, u in changes.utterances.items():
            if originals.get(item_id) == u:
                continue  # changed, then changed back within the batch
            changed.append(u)
            if (cid, item_id) in pks:
                update_utterances.append((pks[cid, item_id], {n: getattr(u, n) for n in UTTERANCE_UPDATE_FIELDS}))
            else:
                create_utterances.append((cid, *(getattr(u, n) for n in UtteranceState.FIELDS)))
        create_usages += [
            (cid, usage.response_id, usage.status, usage.created_at, usage.source,
             *(usage.counts[n] for n in TokenUsage.USAGE_FIELDS))
            for usage in changes.usages
        ]  # fmt: skip
        replaced_usages += [(cid, usage.response_id) for usage in changes.replaced_usages]
        create_transcriptions += [(cid, *transcription_values(record)) for record in changes.transcriptions]
        replaced_transcriptions += [(cid, record.item_id) for record in changes.replaced_transcriptions]
        # Every batch stamps its conversations with its own time, and counts their stored bytes,
        # in the same UPDATE as the totals: one round trip fewer per transaction than a separate
        # UPDATE … WHERE id IN.
        times = {"last_activity_at": now} | ({} if conversations[cid]["started_at"] else {"started_at": now})
        derived = roll_up(conversations[cid], changes)
        if conversations[cid]["reviewed"] and (changed or changes.usages or changes.replaced_usages
                                               or changes.transcriptions or derived):  # fmt: skip
            derived |= REVIEW_CLEARED
        stored = {"stored_bytes": conversations[cid]["stored_bytes"] + sum(f.size for f in frames)}
        update_conversations.append((cid, derived | times | stored))
        results[cid].stored = len(frames)
        results[cid].changed = sorted(changed, key=lambda u: u.position)
    if moves:
        # Through positions above every one in use, so that no two lines ever share one (the
        # unique constraint is checked row by row, on both backends).
        _update_rows(Utterance, [(pk, {"position": above + position}) for pk, position in moves])
        _update_rows(Utterance, [(pk, {"position": position}) for pk, position in moves])
    _insert(Utterance, ["conversation", *UtteranceState.FIELDS], create_utterances)
    _update_rows(Utterance, update_utterances)
    for part in _chunks(replaced_usages):  # the witness's usage replaces the browser's (rare: one query)
        ResponseUsage.objects.filter(_pairs(ResponseUsage, ("conversation", "response_id"), part)).delete()
    _insert(
        ResponseUsage,
        ["conversation", "response_id", "status", "created_at", "source", *TokenUsage.USAGE_FIELDS],
        create_usages,
    )
    for part in _chunks(replaced_transcriptions):  # the same for a transcription's usage
        TranscriptionUsage.objects.filter(
            _pairs(TranscriptionUsage, ("conversation", "item_id"), part)
        ).delete()
    _insert(TranscriptionUsage, ["conversation", *TRANSCRIPTION_FIELDS], create_transcriptions)
    _update_rows(Conversation, update_conversations)
    _update_rows(DailyStorage, [(pk, {"bytes": used}) for pk, used, counted in days.values() if counted])
    return results


def _place(
    cid: int, changes: reducer.Changes, pks: dict[tuple[int, str], int]
) -> tuple[list[UtteranceState], int]:
    """Place the lines of a conversation again by their links (order.py), the batch's changes
    included: gives the batch's lines their positions (in `changes`), and returns the stored lines
    that move, at their new positions, and the highest position in use."""
    lines = {}
    rows = Utterance.objects.filter(conversation_id=cid).order_by().values_list("pk", *UtteranceState.FIELDS)
    for pk, *values in rows:
        u = UtteranceState(**dict(zip(UtteranceState.FIELDS, values)))
        lines[u.item_id] = u
        pks[cid, u.item_id] = pk
    lines.update(changes.utterances)
    moved = []
    for item_id, u in order.placed(lines).items():
        if u is lines[item_id]:
            continue
        if item_id in changes.utterances:
            changes.utterances[item_id] = u
        if (cid, item_id) in pks:
            moved.append(u)
    return moved, max(u.position for u in lines.values())


# --- admission: the late-events window and the stored-bytes bounds ------------------------------


def _lock_days(users: set[int], now: datetime) -> dict[int, list]:
    """Each user's row of the day (created at 0 if need be), locked: {user_id: [pk, bytes, counted]}.

    One statement: the upsert's no-op update takes the row lock (PostgreSQL), in user order after
    the conversations' locks; SQLite's IMMEDIATE transaction holds the whole database anyway.
    """
    qn = connection.ops.quote_name
    table = qn(DailyStorage._meta.db_table)
    user, day, size, pk = (qn(DailyStorage._meta.get_field(name).column) for name in ("user", "day", "bytes", "id"))
    ordered = sorted(users)
    params = _prepared(DailyStorage, ["user", "day", "bytes"], [(u, now.date(), 0) for u in ordered])
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({user}, {day}, {size}) VALUES {', '.join(['(%s, %s, %s)'] * len(ordered))} "
            f"ON CONFLICT ({user}, {day}) DO UPDATE SET {size} = {table}.{size} RETURNING {user}, {pk}, {size}",
            [value for row in params for value in row],
        )
        return {row[0]: [row[1], row[2], False] for row in cursor.fetchall()}


def is_closed(conversation: dict, now: datetime) -> bool:
    """Ended (or failed) more than CONVERSATION_LATE_EVENTS_SECONDS ago. A new segment (key)
    makes a conversation active again, and so open again. (The recordings' uploads follow the
    same rule: conversations/recordings/store.py.)"""
    if conversation["status"] == Conversation.Status.ACTIVE:
        return False
    ended = conversation["ended_at"] or conversation["last_activity_at"] or conversation["created_at"]
    return now - ended > timedelta(seconds=settings.CONVERSATION_LATE_EVENTS_SECONDS)


def _admit(conversations: dict[int, dict], days: dict[int, list], frames: dict[tuple[int, str, int], Frame], now):
    """The frames refused for good, {(conversation id, source, seq): error}; the others may be stored.

    Only new frames count: a frame already stored is acked again, never refused. Knowing which
    are new costs a query, so it is asked only when admitting every frame of the batch would
    break a rule (the common case asks nothing). The witness's frames are counted in the bounds
    but never refused for them: what the server saw of a call is not the user's to spend.
    """
    per_conversation = settings.TRANSCRIPT_MAX_BYTES_PER_CONVERSATION
    per_day = settings.TRANSCRIPT_MAX_BYTES_PER_USER_PER_DAY
    closed = {cid for cid, row in conversations.items() if is_closed(row, now)}
    conversation_total: dict[int, int] = {}
    user_total: dict[int, int] = {}
    for (cid, _, _), f in frames.items():
        conversation_total[cid] = conversation_total.get(cid, 0) + f.size
        uid = conversations[cid]["user_id"]
        user_total[uid] = user_total.get(uid, 0) + f.size
    if (
        not closed
        and all(conversations[cid]["stored_bytes"] + n <= per_conversation for cid, n in conversation_total.items())
        and all(days[uid][1] + n <= per_day for uid, n in user_total.items())
    ):
        return {}

    stored = _already_stored(list(frames))
    conversation_used = {cid: row["stored_bytes"] for cid, row in conversations.items()}
    user_used = {uid: row[1] for uid, row in days.items()}
    refused = {}
    # The witness's frames first: they take their share of the bounds before the browser's.
    for (cid, source, seq), f in sorted(frames.items(), key=lambda item: (item[0][1] != SERVER, item[0])):
        uid = conversations[cid]["user_id"]
        if (cid, source, seq) in stored:
            continue
        if cid in closed:
            refused[cid, source, seq] = FrameError(
                "conversation_closed",
                f"This conversation ended more than {settings.CONVERSATION_LATE_EVENTS_SECONDS} seconds ago; "
                "start a new session of it to add to it.",
                seq,
            )
        elif source == SERVER:
            conversation_used[cid] += f.size
            user_used[uid] += f.size
        elif conversation_used[cid] + f.size > per_conversation:
            refused[cid, source, seq] = FrameError(
                "quota_exceeded",
                f"This conversation has reached its storage limit ({_megabytes(per_conversation)}); "
                "start a new conversation.",
                seq,
            )
        elif user_used[uid] + f.size > per_day:
            refused[cid, source, seq] = FrameError(
                "quota_exceeded",
                f"You have reached today's storage limit ({_megabytes(per_day)}); try again tomorrow (UTC).",
                seq,
            )
        else:  # admitted: later frames of the batch count it
            conversation_used[cid] += f.size
            user_used[uid] += f.size
    return refused


def _megabytes(n: int) -> str:
    return f"{n / 2**20:.1f}".removesuffix(".0") + " MiB"


def _already_stored(keys: list[tuple[int, str, int]]) -> set[tuple[int, str, int]]:
    found = set()
    for part in _chunks(keys):
        found.update(
            Event.objects.filter(_pairs(Event, ("conversation", "source", "seq"), part))
            .order_by()
            .values_list("conversation_id", "source", "seq")
        )
    return found


def _count_days(days: dict[int, list], conversations: dict[int, dict], new: dict[int, list[Frame]]) -> None:
    for cid, frames in new.items():
        day = days[conversations[cid]["user_id"]]
        day[1] += sum(f.size for f in frames)
        day[2] = True


def roll_up(current: dict, changes: reducer.Changes) -> dict:
    """The title and counts that `changes` alter, {name: new value}, given their `current` values.

    (The times are set apart: live, every batch stamps its conversations with its own time.)
    """
    fields = {}
    for usage in changes.replaced_usages:  # the browser's usage, replaced by the witness's
        for name, count in usage.counts.items():
            if count:
                fields[name] = max(0, fields.get(name, current[name]) - count)
    if changes.title and not current["title"]:
        fields["title"] = changes.title
    if changes.transcription_tokens:  # negative when the witness's replaced a bigger browser count
        fields["transcription_tokens"] = max(
            0, saturating_add(current["transcription_tokens"], changes.transcription_tokens)
        )
    if changes.conflicts:
        fields["conflicts"] = saturating_add(current["conflicts"], changes.conflicts)
    for usage in changes.usages:
        for name, count in usage.counts.items():
            if count:
                fields[name] = saturating_add(fields.get(name, current[name]), count)
    return fields


def last_seq(conversation_id: int, source: str = BROWSER) -> int:
    """The highest seq stored of one stream of a conversation (0 before any): the browser's (what
    the socket's `ready` reports) or the witness's (where it goes on numbering)."""
    return (
        Event.objects.filter(conversation_id=conversation_id, source=source).aggregate(top=Max("seq"))["top"] or 0
    )


# --- rebuilding ----------------------------------------------------------------------------------


@dataclass
class RebuildResult:
    status: str  # "rebuilt" | "unchanged" | "skipped" (utterances or usage but no journal)
    events: int = 0
    utterances: int = 0
    usages: int = 0
    transcriptions: int = 0


def rebuild(conversation: Conversation) -> RebuildResult:
    """Re-derive the transcript, usage and totals of a conversation from its journal.

    Runs the events in the journal's order (both streams, as stored) through the same reducer as the live path, from an empty state
    (the title is kept when the conversation already has one). Writes nothing when the result is
    what is stored already. A conversation with a transcript but no journal (e.g. imported
    without events) is left alone and reported "skipped": rebuilding it would erase it. A
    reviewed conversation whose transcript, usage or totals change loses its review mark.
    """
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
        events = Event.objects.filter(conversation=conversation).order_by("id")  # the journal's order
        count = events.count()
        current_utterances = {u.item_id: u for u in Utterance.objects.filter(conversation=conversation)}
        current_usages = {r.response_id: r for r in ResponseUsage.objects.filter(conversation=conversation)}
        current_transcriptions = {
            values["item_id"]: transcription_record(values)
            for values in TranscriptionUsage.objects.filter(conversation=conversation).values(
                *TRANSCRIPTION_FIELDS
            )
        }
        if not count:
            if current_utterances or current_usages or current_transcriptions:
                return RebuildResult(
                    "skipped", 0, len(current_utterances), len(current_usages), len(current_transcriptions)
                )
            return RebuildResult("unchanged")

        state = TranscriptState(has_title=bool(conversation.title))
        changes = reducer.fold(
            state, events.values_list("payload", "received_at", "source").iterator(chunk_size=2000)
        )
        state.utterances = order.placed(state.utterances)  # as the live path placed them
        usages = {
            r.response_id: ResponseUsage(
                conversation=conversation, response_id=r.response_id, status=r.status,
                created_at=r.created_at, source=r.source, **r.counts,
            )
            for r in changes.usages
        }  # fmt: skip
        before = {name: getattr(conversation, name) for name in CONVERSATION_UPDATE_FIELDS}
        start = {**dict.fromkeys(CONVERSATION_UPDATE_FIELDS, 0), "title": conversation.title,
                 "started_at": None, "last_activity_at": None}  # fmt: skip
        derived = {**start, **roll_up(start, changes), "started_at": state.started_at,
                   "last_activity_at": state.last_activity_at}  # fmt: skip
        result = RebuildResult(
            "rebuilt", count, len(state.utterances), len(usages), len(state.transcriptions)
        )

        same_utterances = {i: to_state(u) for i, u in current_utterances.items()} == state.utterances
        same_usages = {i: _usage_key(r) for i, r in current_usages.items()} == {
            i: _usage_key(r) for i, r in usages.items()
        }
        same_transcriptions = current_transcriptions == state.transcriptions
        if same_utterances and same_usages and same_transcriptions and before == derived:
            result.status = "unchanged"
            return result
        if not same_utterances:
            Utterance.objects.filter(conversation=conversation).delete()
            Utterance.objects.bulk_create(
                Utterance(conversation=conversation, **{n: getattr(u, n) for n in UtteranceState.FIELDS})
                for u in state.utterances.values()
            )
        if not same_usages:
            ResponseUsage.objects.filter(conversation=conversation).delete()
            ResponseUsage.objects.bulk_create(usages.values())
        if not same_transcriptions:
            TranscriptionUsage.objects.filter(conversation=conversation).delete()
            TranscriptionUsage.objects.bulk_create(
                TranscriptionUsage(
                    conversation=conversation, **dict(zip(TRANSCRIPTION_FIELDS, transcription_values(r)))
                )
                for r in state.transcriptions.values()
            )
        if conversation.reviewed:
            derived |= REVIEW_CLEARED
        for name, value in derived.items():
            setattr(conversation, name, value)
        conversation.save(update_fields=list(derived))
        return result


def _usage_key(r: ResponseUsage):
    return (r.status, r.created_at, r.source, *(getattr(r, n) for n in TokenUsage.USAGE_FIELDS))


def transcription_values(record: TranscriptionRecord) -> tuple:
    """A record as the values of `TRANSCRIPTION_FIELDS`."""
    counts = (record.counts[n] for n in TranscriptionUsage.COUNT_FIELDS)
    return (record.item_id, record.created_at, record.source, *counts, record.seconds)


def transcription_record(values: dict) -> TranscriptionRecord:
    """A `TranscriptionUsage` row's values (by `TRANSCRIPTION_FIELDS`) as the reducer's record."""
    return TranscriptionRecord(
        values["item_id"], {n: values[n] for n in TranscriptionUsage.COUNT_FIELDS}, values["seconds"],
        values["created_at"], values["source"],
    )  # fmt: skip
