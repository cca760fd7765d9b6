"""
What happens to a stored conversation: it ends, it is reviewed, it is deleted.

Each action writes and then tells the conversation's live watchers (transcript/live.py), so
no caller — the transcript socket, `manage.py end_idle_conversations`, the admin, the history
views, `purge_sessions` — has to remember the second half. Sync actions publish once their
transaction commits (at once outside one): a rolled-back change is never announced.
Only active conversations are announced: a transcript page opens its live socket only while
its conversation is active and stops at its end, so no one watches the others.

Deleting goes in batches. A batch deletes the recordings' rows (their files once it commits),
the journal, the utterances and the usages (of the responses and of the transcriptions) of its
conversations with one DELETE each (`conversation_id IN (…)`), then the conversations through
Django's collector, which handles whatever else may point at a conversation and sweeps up a
child row written meanwhile. No row is loaded to be deleted, so a conversation with 100 000
events costs what one with ten does. Each batch is its own short transaction: under SQLite the
live app's writers get their turn between batches instead of waiting for a whole purge.
"""

import datetime
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from conversations import budget
from conversations.models import (
    Conversation,
    DailyStorage,
    Event,
    Recording,
    RecordingChunk,
    ResponseUsage,
    TranscriptionUsage,
    Utterance,
)
from conversations.recordings import store as recording_store
from conversations.transcript import live

ACTIVE, ENDED = Conversation.Status.ACTIVE, Conversation.Status.ENDED


# --- telling live watchers ----------------------------------------------------------------------


async def _publish_all(messages: list[tuple]) -> None:
    for conversation_uuid, message in messages:
        await live.publish(conversation_uuid, message)


def _announce(messages: list[tuple]) -> None:
    """Publish (uuid, message) pairs from sync code once the current transaction commits."""
    if messages:
        transaction.on_commit(lambda: async_to_sync(_publish_all)(messages))


# --- ending -------------------------------------------------------------------------------------


def _mark_ended(conversation: Conversation, at: datetime.datetime) -> bool:
    changed = Conversation.objects.filter(pk=conversation.pk, status=ACTIVE).update(status=ENDED, ended_at=at)
    if changed:
        conversation.status, conversation.ended_at = ENDED, at
    budget.release(conversation.pk)  # its session is over: so is what it held of the budget
    return bool(changed)


async def aend_conversation(conversation: Conversation, at: datetime.datetime | None = None) -> bool:
    """
    The user stopped: mark an active conversation ended and tell its watchers. False (and no
    message) when it was not active. `conversation` needs only its pk and uuid loaded.
    """
    at = at or timezone.now()
    if not await database_sync_to_async(_mark_ended)(conversation, at):
        return False
    await live.publish(conversation.uuid, live.ended_message(conversation.uuid, at))
    return True


def inactive_before(cutoff: datetime.datetime) -> Q:
    """Conversations last active before `cutoff` (by creation time when nothing was received)."""
    return Q(last_activity_at__lt=cutoff) | Q(last_activity_at__isnull=True, created_at__lt=cutoff)


def _end_idle(now, timeout, user, exclude) -> list[tuple]:
    timeout = settings.CONVERSATION_IDLE_TIMEOUT if timeout is None else timeout
    if timeout <= 0:
        return []
    cutoff = (now or timezone.now()) - datetime.timedelta(seconds=timeout)
    idle = Conversation.objects.filter(inactive_before(cutoff), status=ACTIVE)
    if user is not None:
        idle = idle.filter(user=user)
    if exclude:
        idle = idle.exclude(pk__in=exclude)
    found = [
        (uuid, last_activity_at or created_at)
        for uuid, last_activity_at, created_at in idle.values_list("uuid", "last_activity_at", "created_at")
    ]
    if found:
        # The same filter again: a conversation that spoke since the SELECT stays active.
        idle.filter(uuid__in=[uuid for uuid, _ in found]).update(
            status=ENDED, ended_at=Coalesce("last_activity_at", "created_at")
        )
        budget.release_ended([uuid for uuid, _ in found])
    return found


def end_idle_conversations(*, now=None, timeout: int | None = None, user=None, exclude=()) -> list[tuple]:
    """
    End the active conversations silent for too long and tell their watchers; returns their
    (uuid, ended_at). Silent = no event received (or, with none ever, created) for `timeout`
    seconds (CONVERSATION_IDLE_TIMEOUT; 0 turns automatic ending off). `ended_at` is the last
    activity, when the conversation actually went quiet, not the time of the sweep.
    (The transcript socket calls it in its database thread, in the same hop as its other
    queries on connect: with nothing to publish, the usual case, it costs one query.)
    """
    ended = _end_idle(now, timeout, user, exclude)
    _announce([(uuid, live.ended_message(uuid, at)) for uuid, at in ended])
    return ended


# --- review -------------------------------------------------------------------------------------


def review_values(reviewed: bool, reviewer) -> dict:
    """The review fields for a conversation marked reviewed by `reviewer` now (or unmarked)."""
    if reviewed:
        return {"reviewed": True, "reviewed_at": timezone.now(), "reviewed_by": reviewer}
    return {"reviewed": False, "reviewed_at": None, "reviewed_by": None}


def _announce_review(watched: QuerySet) -> None:
    rows = watched.filter(status=ACTIVE).order_by().values_list("uuid", "reviewed", "flagged")
    _announce([(u, live.reviewed_message(u, reviewed=r, flagged=f)) for u, r, f in rows])


def _review(conversations: QuerySet, values: dict) -> int:
    with transaction.atomic():
        # Looked up before the update: `conversations` may be filtered on what it changes.
        watched = list(conversations.filter(status=ACTIVE).values_list("pk", flat=True))
        count = conversations.update(**values)
        if watched:
            _announce_review(Conversation.objects.filter(pk__in=watched))
    return count


def set_reviewed(conversations: QuerySet, reviewer, reviewed: bool = True) -> int:
    """Mark a queryset of conversations reviewed by `reviewer` (or not); returns how many."""
    return _review(conversations, review_values(reviewed, reviewer))


def set_flagged(conversations: QuerySet, flagged: bool) -> int:
    """Flag a queryset of conversations for attention (or clear the flag); returns how many."""
    return _review(conversations, {"flagged": flagged})


def save_review(conversation: Conversation, reviewer, changed: Iterable[str]) -> None:
    """
    Save the fields of `conversation` that a reviewer edited (`changed`, e.g. a form's
    changed_data) and only those: a full save would write back totals and times the transcript
    socket may have updated since the page loaded. Ticking "reviewed" records who and when.
    """
    changed = set(changed)
    if "reviewed" in changed:
        values = review_values(conversation.reviewed, reviewer)
        for name, value in values.items():
            setattr(conversation, name, value)
        changed |= set(values)
    with transaction.atomic():
        conversation.save(update_fields=sorted(changed))
        if changed & {"reviewed", "flagged"}:
            _announce_review(Conversation.objects.filter(pk=conversation.pk))


# --- deleting -----------------------------------------------------------------------------------

DEFAULT_BATCH_SIZE = 500
# What hangs off a conversation, deleted ahead of it.
CHILDREN = (Event, Utterance, ResponseUsage, TranscriptionUsage)
# The recordings' rows go first too, and their files after the batch commits (recordings/store.py).
RECORDING_MODELS = (Recording, RecordingChunk)
MODELS = (Conversation,) + CHILDREN + RECORDING_MODELS


def _empty_counts() -> Counter:
    return Counter({model._meta.label: 0 for model in MODELS})


def count_conversations(queryset: QuerySet) -> Counter:
    """What `delete_conversations(queryset)` would delete, per model label."""
    counts = _empty_counts()
    counts[Conversation._meta.label] = queryset.count()
    ids = queryset.values("pk")
    for model in CHILDREN + (Recording,):
        counts[model._meta.label] = model.objects.filter(conversation__in=ids).count()
    counts[RecordingChunk._meta.label] = RecordingChunk.objects.filter(recording__conversation__in=ids).count()
    return counts


def delete_conversations(queryset: QuerySet, *, batch_size: int = DEFAULT_BATCH_SIZE) -> Counter:
    """
    Delete the conversations of `queryset` and their children, and tell the watchers of the
    active ones (their live sockets close); returns the number of rows deleted per model label
    ("conversations.Conversation", "conversations.Utterance", …), as `QuerySet.delete()` does.
    Batches that completed stay deleted if a later one fails.
    """
    counts = _empty_counts()
    rows_query = queryset.order_by("pk").values_list("pk", "uuid", "status")
    last_pk = None
    while True:
        page = rows_query if last_pk is None else rows_query.filter(pk__gt=last_pk)
        rows = list(page[:batch_size])
        if not rows:
            return counts
        ids = [pk for pk, _, _ in rows]
        with transaction.atomic():
            # Their files are deleted once this batch commits; one that cannot be is left to
            # `clean_recordings` (a row is never deleted after its file).
            counts.update(recording_store.delete_rows(ids))
            for model in CHILDREN:
                counts.update(model.objects.filter(conversation_id__in=ids).delete()[1])
            counts.update(Conversation.objects.filter(pk__in=ids).delete()[1])
            budget.release_uuids([uuid for _, uuid, _ in rows])  # a deleted conversation's session is over
            _announce([(uuid, live.deleted_message(uuid)) for _, uuid, status in rows if status == ACTIVE])
        last_pk = ids[-1]


@dataclass(frozen=True)
class Purge:
    cutoff: datetime.datetime
    counts: Counter
    dry_run: bool


def purge_inactive(
    *, older_than_days: int, users=None, dry_run: bool = False, batch_size: int = DEFAULT_BATCH_SIZE
) -> Purge:
    """Delete (or, dry run, count) the conversations of `users` (None: everyone's) inactive for that
    many days, their daily storage counters from before then, and budget holds that lapsed."""
    cutoff = timezone.now() - datetime.timedelta(days=older_than_days)
    queryset = Conversation.objects.filter(inactive_before(cutoff))
    if users is not None:
        queryset = queryset.filter(user__in=list(users))
    if dry_run:
        return Purge(cutoff, count_conversations(queryset), True)
    counts = delete_conversations(queryset, batch_size=batch_size)
    # The daily storage counters only bound the current day: older ones are dead weight.
    counters = DailyStorage.objects.filter(day__lt=cutoff.date())
    if users is not None:
        counters = counters.filter(user__in=list(users))
    counters.delete()
    budget.prune_lapsed(users)
    return Purge(cutoff, counts, False)
