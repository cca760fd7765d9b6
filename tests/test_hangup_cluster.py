"""
The session cap across two server processes (two daphne, PostgreSQL + Redis): both supervisors
sweep, exactly one hangs the call up, and the page is told on its sockets in both processes (the
channel layer carries `call_ended` to whichever process holds them).
"""

import asyncio

import pytest
from channels.db import database_sync_to_async

from conversations.models import RealtimeCall
from tests.support.cluster import a_call_seen_by_both, receive
from tests.support.processes import cluster_marks, two_servers
from tests.support.witness import eventually

pytestmark = cluster_marks()

CAP = 6


@pytest.fixture
def servers(django_db_setup, django_db_blocker, realtime_standin):
    yield from two_servers(
        "hangup-cluster", django_db_blocker, realtime_standin, REALTIME_MAX_SESSION_SECONDS=str(CAP)
    )


def hangups(standin, call_id):
    return [r for r in standin.requests if r.path.endswith(f"/{call_id}/hangup")]


async def test_one_process_hangs_up_and_every_socket_of_the_page_hears_why(
    servers, alice, realtime_standin
):
    a, b = servers
    # The page has a second socket on B (a second tab): B's supervisor runs and sweeps too.
    async with a_call_seen_by_both(a, b, realtime_standin) as (_minted, call, on_a, on_b):
        told = [await receive(on_a, CAP + 15), await receive(on_b, CAP + 15)]
        for frame in told:
            assert frame == {"type": "call_ended", "reason": "session_cap",
                             "message": f"This session reached its {CAP}-second limit."}  # fmt: skip
        assert call.ended_by == "hangup"
        await asyncio.sleep(3)  # further sweeps of both processes
        assert len(hangups(realtime_standin, call.id)) == 1
        row = await eventually(lambda: _row(call.id), 5)
        assert row["hangup_reason"] == "session_cap" and row["hung_up_at"] is not None
        await on_a.close()
        await on_b.close()


@database_sync_to_async
def _row(call_id):
    return RealtimeCall.objects.filter(call_id=call_id).values("hangup_reason", "hung_up_at").first()
