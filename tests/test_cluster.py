"""
Two server processes on one PostgreSQL database and one Redis — what must hold when the
application is scaled out (docs/deploy.md). Two real daphne processes, A and B, are driven over
real HTTP and WebSocket connections, as a browser behind a load balancer would:

(a) a key minted through A and the transcript socket on B belong to one conversation;
(b) a live-update subscriber on A sees the transcript written through B (Redis channel layer);
(c) a burst of key requests split across A and B is limited as one (counters in Redis);
(d) a session from logging in on A is valid on B, and logging out on B ends it on A;
(e) the sockets a user holds on A and B count against one bound, and logging out on B closes
    that session's socket on A.

PostgreSQL + Redis leg only (`.ci/run`): with SQLite, the in-memory channel layer and in-process
counters, (b) and (c) do not hold by design. Both processes use DATABASE_POOL=true, as the
production recipe does.
"""

import asyncio
from collections import Counter
from contextlib import asynccontextmanager

import aiohttp
import pytest
from channels.db import database_sync_to_async
from channels_redis.core import RedisChannelLayer

from conversations.models import Conversation
from tests.support.cluster import TIMEOUT, http, log_in, mint, receive
from tests.support.events import assistant, audio_done, transcribed, user_audio
from tests.support.factories import make_conversation
from tests.support.processes import cluster_marks, two_servers

pytestmark = cluster_marks()

LIMIT = 5  # keys per user per minute, on both servers
SOCKETS = 4  # open sockets per user, on both servers together


# --- The cluster -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(django_db_setup, django_db_blocker, _realtime_standin_server):
    yield from two_servers(
        "cluster",
        django_db_blocker,
        _realtime_standin_server,
        KEY_RATE_LIMIT_PER_USER=f"{LIMIT}/minute",
        MAX_SOCKETS_PER_USER=str(SOCKETS),
    )


@asynccontextmanager
async def socket(server, path, cookies):
    async with aiohttp.ClientSession() as session:
        headers = {"Origin": server.url, "Cookie": f"sessionid={cookies['sessionid']}"}
        async with session.ws_connect(server.ws_url + path, headers=headers) as ws:
            yield ws


async def send_events(ws, events, first_seq=1):
    """Send OpenAI events as numbered frames; wait for every ack."""
    for seq, event in enumerate(events, start=first_seq):
        await ws.send_json({"type": "event", "seq": seq, "event": event})
    acks = [await receive(ws) for _ in events]
    assert acks == [{"type": "ack", "seq": seq} for seq in range(first_seq, first_seq + len(events))]


A_TURN = [
    user_audio("item_u1"),
    assistant("item_a1"),
    audio_done("item_a1", "resp_1", "Hello from the assistant."),
    transcribed("item_u1", "Hello from the user."),
]


@database_sync_to_async  # closes its connection: the test database must be droppable at the end
def stored(conversation_uuid):
    conversation = Conversation.objects.get(uuid=conversation_uuid)
    return (
        list(conversation.events.values_list("seq", flat=True)),
        [(u.role, u.text) for u in conversation.utterances.order_by("position")],
    )


# --- The checks --------------------------------------------------------------------------------


async def test_both_processes_are_healthy(cluster):
    for server in cluster:
        async with http(server) as client:
            response = await client.get("/healthz")
        assert response.status_code == 200
        assert response.json()["checks"] == {"database": "ok", "channel_layer": "ok"}


async def test_a_key_minted_on_a_and_the_socket_on_b_are_one_conversation(cluster, alice, realtime_standin):
    a, b = cluster
    cookies = await log_in(a, "alice")
    response = await mint(a, cookies)
    assert response.status_code == 201, response.text
    minted = response.json()
    assert list(realtime_standin.issued) == [minted["client_secret"]]
    conversation = minted["conversation"]["id"]

    async with socket(b, minted["socket_url"], cookies) as ws:
        assert await receive(ws) == {"type": "ready", "conversation": conversation, "last_seq": 0}
        await send_events(ws, A_TURN)
    assert await stored(conversation) == (
        [1, 2, 3, 4],
        [("user", "Hello from the user."), ("assistant", "Hello from the assistant.")],
    )
    # Back on A (a reconnect may land anywhere): it knows what B stored, and a resend is a no-op.
    async with socket(a, minted["socket_url"], cookies) as ws:
        assert await receive(ws) == {"type": "ready", "conversation": conversation, "last_seq": 4}
        await send_events(ws, A_TURN[-1:], first_seq=4)
    assert (await stored(conversation))[0] == [1, 2, 3, 4]


async def test_a_live_subscriber_on_a_sees_transcripts_written_through_b(cluster, alice):
    a, b = cluster
    conversation = await database_sync_to_async(make_conversation)(alice)
    cookies = await log_in(a, "alice")
    path = f"/ws/conversations/{conversation.uuid}/"

    async with socket(a, path + "live/", cookies) as watcher:
        assert (await receive(watcher))["type"] == "snapshot"
        # A page is open long before anyone talks: the subscriber must outlive the Redis
        # layer's blocking read (5 s), which once timed out every idle socket.
        await asyncio.sleep(RedisChannelLayer.brpop_timeout + 1)
        async with socket(b, path, cookies) as talker:
            assert (await receive(talker))["type"] == "ready"
            await send_events(talker, A_TURN)
            seen = {}
            while len(seen) < 2 or "" in seen.values():  # a line arrives whole, maybe in several updates
                update = await receive(watcher)
                assert update["type"] == "transcript.changed" and update["conversation"] == str(conversation.uuid)
                seen.update({u["item_id"]: u["text"] for u in update["utterances"]})
            assert seen == {"item_u1": "Hello from the user.", "item_a1": "Hello from the assistant."}

            await talker.send_json({"type": "end"})
            assert await receive(talker) == {"type": "ended", "conversation": str(conversation.uuid)}
            assert (await receive(watcher))["type"] == "conversation.ended"


async def test_a_burst_of_keys_split_across_a_and_b_is_limited_as_one(cluster, alice, realtime_standin):
    cookies = await log_in(cluster[0], "alice")
    responses = await asyncio.gather(*(mint(cluster[i % 2], cookies) for i in range(4 * LIMIT)))

    assert Counter(r.status_code for r in responses) == {201: LIMIT, 429: 3 * LIMIT}
    assert len(realtime_standin.issued) == LIMIT
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60


async def test_a_session_from_logging_in_on_a_is_valid_on_b(cluster, alice):
    a, b = cluster
    cookies = await log_in(a, "alice")

    async with http(b, cookies) as client:
        response = await client.get("/chat/")
        assert response.status_code == 200
        assert "alice" in response.text
        response = await client.post("/accounts/logout/", headers={"X-CSRFToken": cookies["csrftoken"]})
        assert response.status_code == 302

    async with http(a, cookies) as client:
        response = await client.get("/chat/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/accounts/login/")


async def test_sockets_on_a_and_b_count_against_one_bound(cluster, alice):
    a, b = cluster
    cookies = await log_in(a, "alice")
    conversation = await database_sync_to_async(make_conversation)(alice)
    path = f"/ws/conversations/{conversation.uuid}/live/"
    async with aiohttp.ClientSession() as session:
        headers = {"Cookie": f"sessionid={cookies['sessionid']}"}
        held = []
        for server in (a, b, a, b):
            ws = await session.ws_connect(server.ws_url + path, headers={**headers, "Origin": server.url})
            assert (await receive(ws))["type"] == "snapshot"
            held.append(ws)
        for server in (a, b):
            ws = await session.ws_connect(server.ws_url + path, headers={**headers, "Origin": server.url})
            message = await ws.receive(timeout=TIMEOUT)
            assert (message.type, ws.close_code) == (aiohttp.WSMsgType.CLOSE, 4429), (message, server.url)
        await held.pop().close()
        await asyncio.sleep(0.2)
        again = await session.ws_connect(b.ws_url + path, headers={**headers, "Origin": b.url})
        assert (await receive(again))["type"] == "snapshot"
        for ws in (*held, again):
            await ws.close()


async def test_logging_out_on_b_closes_the_sessions_socket_on_a(cluster, alice):
    a, b = cluster
    cookies = await log_in(a, "alice")
    other = await log_in(b, "alice")  # a second session of the same user: stays signed in
    conversation = await database_sync_to_async(make_conversation)(alice)
    path = f"/ws/conversations/{conversation.uuid}/"
    async with socket(a, path, cookies) as ws, socket(a, path, other) as kept:
        assert (await receive(ws))["type"] == "ready"
        assert (await receive(kept))["type"] == "ready"
        async with http(b, cookies) as client:
            response = await client.post("/accounts/logout/", headers={"X-CSRFToken": cookies["csrftoken"]})
            assert response.status_code == 302
        message = await ws.receive(timeout=TIMEOUT)
        assert (message.type, ws.close_code) == (aiohttp.WSMsgType.CLOSE, 4401)
        await kept.send_json({"type": "ping"})
        assert await receive(kept) == {"type": "pong"}
