"""Abuse of the sockets, carried out: too many sockets, a frame flood, sockets that outlive their
session, foreign origins. Both socket kinds (transcript, live), through the real ASGI stack
(Origin check, session cookie). Runs on both legs: in-memory counters and channel layer, and
Redis (REDIS_URL), where the slots and the revocations go through Redis.
"""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.urls import reverse

from conversations.models import Event
from conversations.transcript import sockets
from tests.support.events import user_text
from tests.support.factories import PASSWORD, make_conversation, signed_in
from voiceproject.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

TIMEOUT = 10
ORIGIN = "http://testserver"


class Browser:
    """One signed-in browser: its own session, as a tab would hold it."""

    def __init__(self, user):
        self.client = signed_in(user)
        self.cookie = self.client.cookies["sessionid"].value

    async def open(self, path, origin=ORIGIN, extra_headers=()):
        headers = [(b"host", b"testserver"), (b"cookie", f"sessionid={self.cookie}".encode()), *extra_headers]
        if origin:
            headers.append((b"origin", origin.encode()))
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        communicator.connected = connected
        return communicator

    async def transcript_socket(self, conversation):
        socket = await self.open(f"/ws/conversations/{conversation.uuid}/")
        assert socket.connected
        first = await receive(socket)
        return socket, first

    async def live_socket(self, conversation):
        socket = await self.open(f"/ws/conversations/{conversation.uuid}/live/")
        assert socket.connected
        return socket, await receive(socket)


async def browser(user):
    return await sync_to_async(Browser)(user)


async def receive(socket):
    message = await socket.receive_output(timeout=TIMEOUT)
    if message["type"] == "websocket.close":
        return {"closed": message.get("code")}
    return json.loads(message["text"])


async def send(socket, frame):
    await socket.send_to(text_data=json.dumps(frame))


async def still_open(socket):
    await send(socket, {"type": "ping"})
    reply = await receive(socket)
    return reply.get("type") == "pong"


async def replies_by_seq(socket, count):
    replies = [await receive(socket) for _ in range(count)]
    return {r["seq"]: r["type"] for r in replies}


@pytest.fixture
def conversation(alice):
    return make_conversation(alice)


@database_sync_to_async
def stored_seqs(conversation):
    return sorted(Event.objects.filter(conversation=conversation).values_list("seq", flat=True))


@database_sync_to_async
def refreshed_status(conversation):
    conversation.refresh_from_db()
    return conversation.status


def event(seq):
    return {"type": "event", "seq": seq, "event": user_text(f"t{seq}", f"line {seq}")}


# --- sockets per user and per conversation ---------------------------------------------------------------


async def test_sockets_past_the_per_user_bound_are_refused_with_4429(alice, settings):
    settings.MAX_SOCKETS_PER_USER = 3
    conversations = [await database_sync_to_async(make_conversation)(alice) for _ in range(3)]
    tab = await browser(alice)
    held = [
        (await tab.transcript_socket(conversations[0]))[0],
        (await tab.live_socket(conversations[1]))[0],  # live sockets count too
        (await tab.live_socket(conversations[2]))[0],
    ]
    for path in (f"/ws/conversations/{conversations[0].uuid}/", f"/ws/conversations/{conversations[1].uuid}/live/"):
        refused = await tab.open(path)
        assert await receive(refused) == {"closed": 4429}
    # Closing one frees its slot.
    await held[0].disconnect()
    socket, ready = await tab.transcript_socket(conversations[0])
    assert ready["type"] == "ready"
    for s in (socket, *held[1:]):
        await s.disconnect()


async def test_another_user_is_not_affected(alice, bob, settings):
    settings.MAX_SOCKETS_PER_USER = 2
    mine = [await database_sync_to_async(make_conversation)(alice) for _ in range(2)]
    tab = await browser(alice)
    held = [(await tab.live_socket(c))[0] for c in mine]
    assert await receive(await tab.open(f"/ws/conversations/{mine[0].uuid}/")) == {"closed": 4429}
    theirs = await database_sync_to_async(make_conversation)(bob)
    socket, ready = await (await browser(bob)).transcript_socket(theirs)
    assert ready["type"] == "ready"
    for s in (socket, *held):
        await s.disconnect()


async def test_sockets_past_the_per_conversation_bound_are_refused(alice, conversation, settings):
    settings.MAX_SOCKETS_PER_CONVERSATION = 2
    tab = await browser(alice)
    held = [(await tab.live_socket(conversation))[0], (await tab.transcript_socket(conversation))[0]]
    assert await receive(await tab.open(f"/ws/conversations/{conversation.uuid}/live/")) == {"closed": 4429}
    # Another conversation of the same user still opens.
    other = await database_sync_to_async(make_conversation)(alice)
    socket, _ = await tab.live_socket(other)
    for s in (socket, *held):
        await s.disconnect()


async def test_the_slot_of_a_process_that_died_lapses(alice, conversation, settings):
    """Slots taken by a process that never gave them back (killed) are free after their TTL."""
    settings.MAX_SOCKETS_PER_USER = 1
    storage = sockets.registry().storage
    keys = [(sockets.user_key(alice.pk), 1), (sockets.conversation_key(conversation.uuid), 10)]
    assert await storage.take(keys, "socket-of-a-dead-process", ttl=1) is None
    tab = await browser(alice)
    assert await receive(await tab.open(f"/ws/conversations/{conversation.uuid}/")) == {"closed": 4429}
    await asyncio.sleep(1.2)
    socket, ready = await tab.transcript_socket(conversation)
    assert ready["type"] == "ready"
    await socket.disconnect()


async def test_the_slot_of_an_open_socket_is_kept_alive(alice, conversation, settings):
    settings.SOCKET_SLOT_TTL = 3  # refreshed every second
    settings.MAX_SOCKETS_PER_USER = 1
    tab = await browser(alice)
    socket, _ = await tab.transcript_socket(conversation)
    await asyncio.sleep(4)
    assert await receive(await tab.open(f"/ws/conversations/{conversation.uuid}/live/")) == {"closed": 4429}
    assert await still_open(socket)
    await socket.disconnect()
    assert await sockets.registry().storage.count(sockets.user_key(alice.pk)) == 0


async def test_sockets_still_open_when_the_slot_store_fails(alice, conversation, monkeypatch):
    """Redis down: the transcript is worth more than the bound, as for the frame limit."""

    async def unavailable(*args, **kwargs):
        raise ConnectionError("slot store down")

    monkeypatch.setattr(sockets.registry().storage, "take", unavailable)
    socket, ready = await (await browser(alice)).transcript_socket(conversation)
    assert ready["type"] == "ready"
    await send(socket, event(1))
    assert await receive(socket) == {"type": "ack", "seq": 1}
    await socket.disconnect()


# --- frames per user --------------------------------------------------------------------------------------


async def test_a_frame_flood_is_refused_with_rate_limited_and_nothing_of_it_is_stored(alice, conversation, settings):
    settings.TRANSCRIPT_FRAMES_PER_SECOND_PER_USER = 5
    tab = await browser(alice)
    socket, _ = await tab.transcript_socket(conversation)
    for seq in range(1, 13):
        await send(socket, event(seq))
    await send(socket, "not even JSON")
    replies = [await receive(socket) for _ in range(6)]
    assert [r["seq"] for r in replies if r["type"] == "ack"] == [1, 2, 3, 4, 5]
    [refused] = [r for r in replies if r["type"] == "error"]
    assert (refused["seq"], refused["code"]) == (6, "rate_limited") and refused["retry_after"] >= 1
    # The rest of the flood is dropped unread: no reply, nothing stored (the page resends it).
    assert await still_open(socket)  # pings are not counted, and still answered
    assert await stored_seqs(conversation) == [1, 2, 3, 4, 5]

    # As the page does: wait, then resend from the refused frame. Everything arrives once.
    await asyncio.sleep(refused["retry_after"])
    for seq in range(6, 11):
        await send(socket, event(seq))
    assert [(await receive(socket))["type"] for _ in range(5)] == ["ack"] * 5
    await socket.disconnect()
    assert await stored_seqs(conversation) == list(range(1, 11))


async def test_after_a_refusal_later_frames_wait_for_the_refused_one(alice, conversation, settings):
    """Otherwise frame 7 could be stored while 6 is not, and `ready.last_seq` = 7 after a
    reconnect would make the page drop 6 from its outbox."""
    settings.TRANSCRIPT_FRAMES_PER_SECOND_PER_USER = 1
    tab = await browser(alice)
    socket, _ = await tab.transcript_socket(conversation)
    await send(socket, event(1))
    await send(socket, event(2))
    assert await replies_by_seq(socket, 2) == {1: "ack", 2: "error"}  # an error goes out before an ack
    await asyncio.sleep(1.1)
    await send(socket, event(3))  # the window is open again, but 2 is missing: dropped
    await send(socket, {"type": "end"})  # and the end waits for it too
    assert await still_open(socket)
    assert await stored_seqs(conversation) == [1]
    await send(socket, event(2))
    assert await receive(socket) == {"type": "ack", "seq": 2}
    await socket.disconnect()
    assert (await refreshed_status(conversation)) == "active"


async def test_the_frame_rate_is_per_user_across_sockets(alice, bob, settings):
    settings.TRANSCRIPT_FRAMES_PER_SECOND_PER_USER = 4
    first, second = [await database_sync_to_async(make_conversation)(alice) for _ in range(2)]
    tab = await browser(alice)
    a, _ = await tab.transcript_socket(first)
    b, _ = await tab.transcript_socket(second)
    for seq in (1, 2, 3):
        await send(a, event(seq))
    assert [(await receive(a))["type"] for _ in range(3)] == ["ack"] * 3
    for seq in (1, 2):
        await send(b, event(seq))
    assert await replies_by_seq(b, 2) == {1: "ack", 2: "error"}
    # Bob has his own allowance.
    theirs = await database_sync_to_async(make_conversation)(bob)
    c, _ = await (await browser(bob)).transcript_socket(theirs)
    await send(c, event(1))
    assert (await receive(c))["type"] == "ack"
    for s in (a, b, c):
        await s.disconnect()


# --- log-out and password change ---------------------------------------------------------------------------


async def test_logging_out_closes_that_sessions_sockets_only(alice, conversation):
    laptop, phone = await browser(alice), await browser(alice)
    transcript, _ = await laptop.transcript_socket(conversation)
    live, _ = await laptop.live_socket(conversation)
    other, _ = await phone.transcript_socket(conversation)
    response = await sync_to_async(laptop.client.post)(reverse("logout"))
    assert response.status_code == 302
    assert await receive(transcript) == {"closed": 4401}
    assert await receive(live) == {"closed": 4401}
    # What the closed socket receives after that is not stored.
    await send(transcript, event(1))
    await asyncio.sleep(0.3)
    assert await stored_seqs(conversation) == []
    # The phone's session is still signed in: its socket keeps working.
    assert await still_open(other)
    await send(other, event(1))
    assert await receive(other) == {"type": "ack", "seq": 1}
    for s in (transcript, live, other):
        await s.disconnect()


async def test_a_password_change_closes_all_the_users_sockets(alice, bob, conversation):
    laptop, phone = await browser(alice), await browser(alice)
    sockets_of_alice = [(await laptop.transcript_socket(conversation))[0], (await phone.live_socket(conversation))[0]]
    theirs = await database_sync_to_async(make_conversation)(bob)
    bobs, _ = await (await browser(bob)).transcript_socket(theirs)
    new = "a-new-long-passphrase-42"
    response = await sync_to_async(laptop.client.post)(
        reverse("password_change"), {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    )
    assert response.status_code == 302
    for socket in sockets_of_alice:
        assert await receive(socket) == {"closed": 4401}
    assert await still_open(bobs)
    for s in (*sockets_of_alice, bobs):
        await s.disconnect()


# --- Origin ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin, extra, accepted",
    [
        ("http://testserver", [], True),
        ("https://testserver", [], False),  # plain ws: the page would be http
        ("http://testserver:8443", [], False),
        ("http://evil.example", [], False),
        # Behind the TLS proxy (SECURE_PROXY_SSL_HEADER): only https, on the default port.
        ("https://testserver", [(b"x-forwarded-proto", b"https")], True),
        ("https://testserver:443", [(b"x-forwarded-proto", b"https")], True),
        ("http://testserver", [(b"x-forwarded-proto", b"https")], False),
        ("https://testserver:8443", [(b"x-forwarded-proto", b"https")], False),
        ("https://app.example.com", [(b"x-forwarded-proto", b"https")], True),  # CSRF_TRUSTED_ORIGINS
        ("http://app.example.com", [(b"x-forwarded-proto", b"https")], False),
        ("https://eu.voice.example.org", [], True),  # a wildcard trusted origin
        ("https://voice.example.org.evil.example", [], False),
        ("null", [], False),
    ],
)
async def test_only_the_sites_own_origins_may_open_a_socket(alice, conversation, settings, origin, extra, accepted):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com", "https://*.voice.example.org"]
    tab = await browser(alice)
    socket = await tab.open(f"/ws/conversations/{conversation.uuid}/", origin=origin, extra_headers=extra)
    assert socket.connected is accepted
    if accepted:
        assert (await receive(socket))["type"] == "ready"
    await socket.disconnect()


async def test_a_handshake_without_origin_or_with_a_foreign_host_is_refused(alice, conversation):
    tab = await browser(alice)
    assert not (await tab.open(f"/ws/conversations/{conversation.uuid}/", origin=None)).connected
    communicator = WebsocketCommunicator(
        application,
        f"/ws/conversations/{conversation.uuid}/",
        headers=[(b"host", b"evil.example"), (b"origin", b"http://evil.example"), (b"cookie", f"sessionid={tab.cookie}".encode())],
    )
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert not connected
