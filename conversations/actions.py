"""
Deleting conversations with everything that hangs off them, in batches.

Used by `manage.py purge_sessions` and by the user's "delete this conversation" view. A batch
deletes the journal, the utterances and the usages of its conversations with one DELETE each
(`conversation_id IN (…)`), then the conversations through Django's collector, which handles
whatever else may point at a conversation and sweeps up a child row written meanwhile. No row
is loaded to be deleted, so a conversation with 100 000 events costs what one with ten does.
Each batch is its own short transaction: under SQLite the live app's writers get their turn
between batches instead of waiting for a whole purge.
"""

import datetime
from collections import Counter

from django.db import transaction
from django.db.models import Q, QuerySet

from conversations.models import Conversation, Event, ResponseUsage, Utterance

DEFAULT_BATCH_SIZE = 500
# What hangs off a conversation, deleted ahead of it.
CHILDREN = (Event, Utterance, ResponseUsage)
MODELS = (Conversation,) + CHILDREN


def inactive_before(cutoff: datetime.datetime) -> Q:
    """Conversations last active before `cutoff` (by creation time when nothing was received)."""
    return Q(last_activity_at__lt=cutoff) | Q(last_activity_at__isnull=True, created_at__lt=cutoff)


def _empty_counts() -> Counter:
    return Counter({model._meta.label: 0 for model in MODELS})


def count_conversations(queryset: QuerySet) -> Counter:
    """What `delete_conversations(queryset)` would delete, per model label."""
    counts = _empty_counts()
    counts[Conversation._meta.label] = queryset.count()
    ids = queryset.values("pk")
    for model in CHILDREN:
        counts[model._meta.label] = model.objects.filter(conversation__in=ids).count()
    return counts


def delete_conversations(queryset: QuerySet, *, batch_size: int = DEFAULT_BATCH_SIZE) -> Counter:
    """
    Delete the conversations of `queryset` and their children; returns the number of rows
    deleted per model label ("conversations.Conversation", "conversations.Utterance", …), as
    `QuerySet.delete()` does. Batches that completed stay deleted if a later one fails.
    """
    counts = _empty_counts()
    ids_query = queryset.order_by("pk").values_list("pk", flat=True)
    last_pk = None
    while True:
        page = ids_query if last_pk is None else ids_query.filter(pk__gt=last_pk)
        ids = list(page[:batch_size])
        if not ids:
            return counts
        with transaction.atomic():
            for model in CHILDREN:
                counts.update(model.objects.filter(conversation_id__in=ids).delete()[1])
            counts.update(Conversation.objects.filter(pk__in=ids).delete()[1])
        last_pk = ids[-1]
