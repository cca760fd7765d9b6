"""
The seqs of the server's stream (conversations/witness/seqs.py): reserved in blocks on the
conversation's row, so that witnesses in different processes never number two events alike.
"""

import threading

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from conversations.transcript import journal
from conversations.transcript.frames import Frame
from conversations.witness import seqs
from tests.support.factories import make_conversation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def conversation(alice):
    return make_conversation(alice)


def test_blocks_reserved_at_once_by_several_connections_never_overlap(conversation):
    """Four connections (four processes' witnesses) reserving at the same moment, five times each."""
    start = threading.Barrier(4)
    blocks: dict[int, list[range]] = {}

    def witness(n):
        try:
            start.wait()
            blocks[n] = [seqs.reserve(conversation.pk, 3) for _ in range(5)]
        finally:
            connection.close()

    threads = [threading.Thread(target=witness, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    handed = sorted(seq for mine in blocks.values() for block in mine for seq in block)
    assert handed == list(range(1, 61))  # each seq once
    for mine in blocks.values():  # each witness's blocks lie above its earlier ones
        assert [block.start for block in mine] == sorted(block.start for block in mine)


def test_a_reservation_starts_above_the_server_seqs_stored_without_one(conversation):
    """Journaled before the counter existed, or restored from an export: the counter is behind."""
    events = [Frame("event", seq, {"type": "session.updated"}, source="server") for seq in (1, 2, 7)]
    journal.append_frames(conversation.pk, events)
    journal.append_frames(conversation.pk, [Frame("event", 40, {"type": "session.updated"})])  # the page's
    assert seqs.reserve(conversation.pk, 2) == range(8, 10)
    assert seqs.reserve(conversation.pk, 1) == range(10, 11)


@pytest.mark.asyncio
async def test_a_witness_numbers_in_order_from_its_own_blocks(conversation):
    numbering = seqs.Numbering(conversation.pk, block=3)
    assert await numbering.take(2) == [1, 2]
    assert await sync_to_async(seqs.reserve)(conversation.pk, 3) == range(4, 7)  # another witness's
    assert await numbering.take(2) == [3, 7]  # the rest of its block, then one above the other's
    assert await numbering.take(5) == [8, 9, 10, 11, 12]  # more than a block at once
