"""
The session cap across two server processes (two daphne, PostgreSQL + Redis): both supervisors
sweep, exactly one hangs the call up, and the page is told on its sockets in both processes (the
channel layer carries `call_ended` to whichever process holds them).
"""

import asyncio
import json

import aiohttp
import pytest
from channels.db import database_sync_to_async

from conversations.models import RealtimeCall
from tests.realtime_standin.clients import BrowserPeer
from tests.support.processes import cluster_marks, two_servers
from tests.support.witness import eventually
from tests.test_cluster import log_in, mint, receive

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
    cookies = await log_in(a, "alice")
    minted = (await mint(a, cookies)).json()
    realtime_standin.calls.script_next([{"gate": "never"}])

    async with BrowserPeer() as browser, aiohttp.ClientSession() as session:
        answer = await browser.call(realtime_standin.url, minted["client_secret"])
        assert answer.status == 201, answer.body
        call = realtime_standin.calls.find(answer.call_id)
        headers = {"Origin": a.url, "Cookie": f"sessionid={cookies['sessionid']}"}
        on_a = await session.ws_connect(a.ws_url + minted["socket_url"], headers=headers)
        assert (await receive(on_a))["type"] == "ready"
        await on_a.send_str(json.dumps({"type": "call", "call_id": answer.call_id}))
        assert (await receive(on_a))["status"] == "bound"
        # A second socket of the page on B (a second tab): B's supervisor runs and sweeps too.
        on_b = await session.ws_connect(b.ws_url + minted["socket_url"], headers={**headers, "Origin": b.url})
        assert (await receive(on_b))["type"] == "ready"

        told = [await _receive(on_a), await _receive(on_b)]
        for frame in told:
            assert frame == {"type": "call_ended", "reason": "session_cap",
                             "message": f"This session reached its {CAP}-second limit."}  # fmt: skip
        assert call.ended_by == "hangup"
        await asyncio.sleep(3)  # further sweeps of both processes
        assert len(hangups(realtime_standin, answer.call_id)) == 1
        row = await eventually(lambda: _row(answer.call_id), 5)
        assert row["hangup_reason"] == "session_cap" and row["hung_up_at"] is not None
        await on_a.close()
        await on_b.close()


async def _receive(ws) -> dict:
    message = await ws.receive(timeout=CAP + 15)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


@database_sync_to_async
def _row(call_id):
    return RealtimeCall.objects.filter(call_id=call_id).values("hangup_reason", "hung_up_at").first()
