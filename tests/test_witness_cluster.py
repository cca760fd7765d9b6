"""
The witness across two server processes (two daphne, PostgreSQL + Redis): the process that holds a
call's witness is killed; the other takes the call over within 15 s, and the events OpenAI sends
after that are journaled once.
"""

import asyncio

import pytest
from channels.db import database_sync_to_async

from conversations.models import Event, RealtimeCall
from tests.support.cluster import a_call_seen_by_both
from tests.support.events import assistant, audio_done
from tests.support.processes import cluster_marks, two_servers
from tests.support.witness import eventually, send

pytestmark = cluster_marks()

TAKE_OVER_WITHIN = 15.0


@pytest.fixture
def servers(django_db_setup, django_db_blocker, realtime_standin):
    yield from two_servers("witness-cluster", django_db_blocker, realtime_standin)


@database_sync_to_async
def call_row(call_id):
    return RealtimeCall.objects.filter(call_id=call_id).values("witness_holder", "witness_state").first()


@database_sync_to_async
def journaled_ids(conversation_uuid):
    return list(
        Event.objects.filter(conversation__uuid=conversation_uuid).order_by("seq").values_list("payload__event_id", flat=True)
    )


def attaches(standin, call_id):
    return [r for r in standin.requests if r.path == "/v1/realtime" and f"call_id={call_id}" in r.query]


async def test_killing_the_holder_hands_the_call_to_the_other_process(servers, alice, realtime_standin):
    a, b = servers
    async with a_call_seen_by_both(a, b, realtime_standin) as (minted, call, _on_a, on_b):
        conversation = minted["conversation"]["id"]
        row = await eventually(lambda: _attached(call.id), 10)
        assert row["witness_holder"].split(":")[1] == str(a.process.pid)
        await asyncio.sleep(4)  # B's supervisor scans and heartbeats meanwhile: it must leave the call alone
        assert len(attaches(realtime_standin, call.id)) == 1

        await send(call, assistant("item_1", transcript=None))
        before = await eventually(lambda: _journaled(conversation, 1), 10)

        a.stop()  # SIGKILL: no lease is released
        await eventually(lambda: _held_by(call.id, b.process.pid), TAKE_OVER_WITHIN)
        await eventually(lambda: _sideband_count(call, 1), 5)

        later = [assistant("item_1", "completed", "After the take-over."),
                 audio_done("item_1", "resp_1", "After the take-over.")]
        for event in later:
            await send(call, event)
        ids = await eventually(lambda: _journaled(conversation, 3), 10)
        await asyncio.sleep(1)
        assert await journaled_ids(conversation) == ids and len(set(ids)) == 3 and ids[:1] == before
        assert len(attaches(realtime_standin, call.id)) == 2
        await on_b.close()


async def _attached(call_id):
    row = await call_row(call_id)
    return row if row and row["witness_state"] == "attached" and row["witness_holder"] else None


async def _held_by(call_id, pid):
    row = await call_row(call_id)
    return row and row["witness_holder"].split(":")[1] == str(pid) and row["witness_state"] == "attached"


async def _journaled(conversation, n):
    ids = await journaled_ids(conversation)
    return ids if len(ids) >= n else None


async def _sideband_count(call, n):
    return len(call.sidebands) >= n

