"""
The seqs of the server's stream: handed out so that no two witnesses ever number two events alike.

The journal skips a (conversation, source, seq) it already holds, which makes a resend harmless,
and would just as silently drop an event of one witness numbered like another's. Two witnesses may
number one conversation's server stream at the same time, in different processes: a new call of
the conversation while its older call still runs, or a take-over while the old holder has not yet
noticed that its lease ran out. So the numbering can live neither in a process's memory nor start
from what is stored (another process may have numbered events it has not stored yet).

Each witness therefore takes its seqs from blocks it reserved on the conversation's row
(`Conversation.server_seqs_reserved`, the highest seq handed out), raised by one UPDATE in a
transaction of its own: the row lock on PostgreSQL, the single writer on SQLite, serialize two
reservations, so blocks never overlap, and each block lies above every block reserved before it.
A witness numbers its call's events in the order OpenAI sent them, from increasing blocks, so
they keep that order in the journal (a transaction stores each stream's frames by seq). A block
rather than a seq at a time: one reservation costs a transaction, and a call sends hundreds of
events. A take-over's first block lies above whatever the witness before it stored or reserved.

The reservation also starts above the server seqs already stored, when they are higher than the
counter: conversations journaled before it existed, or restored from an export, stored their
seqs without it. Seqs reserved but never used (a witness that ended mid-block, an event that
could not be stored) leave gaps in the server's stream, which nothing expects to be contiguous
(only the page's stream is: its `ready.last_seq`).
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import transaction
from django.db.models import F, OuterRef, Subquery
from django.db.models.functions import Coalesce, Greatest

from conversations.models import Conversation, Event

# Seqs reserved at once: one reservation per this many events of a call.
BLOCK = 64


def reserve(conversation_id: int, count: int) -> range:
    """`count` seqs of the conversation's server stream that no other reservation gets, above
    every seq stored or reserved before (Conversation.DoesNotExist: the conversation is gone)."""
    stored = (
        Event.objects.filter(conversation=OuterRef("pk"), source=Event.Source.SERVER)
        .order_by("-seq")
        .values("seq")[:1]
    )
    with transaction.atomic():
        # The UPDATE takes the row's lock, held until the commit: no one raises it between the two queries.
        Conversation.objects.filter(pk=conversation_id).update(
            server_seqs_reserved=Greatest(F("server_seqs_reserved"), Coalesce(Subquery(stored), 0)) + count
        )
        top = Conversation.objects.values_list("server_seqs_reserved", flat=True).get(pk=conversation_id)
    return range(top - count + 1, top + 1)


class Numbering:
    """One witness's seqs of its conversation's server stream, increasing, from its own blocks."""

    def __init__(self, conversation_id: int, block: int = BLOCK):
        self.conversation_id = conversation_id
        self.block = block
        self._free: list[int] = []  # reserved, not yet handed out

    async def take(self, count: int) -> list[int]:
        """The next `count` seqs (reserving another block when this one has too few)."""
        short = count - len(self._free)
        if short > 0:
            self._free += await sync_to_async(reserve)(self.conversation_id, max(self.block, short))
        seqs, self._free = self._free[:count], self._free[count:]
        return seqs
