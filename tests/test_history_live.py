"""The read-only live socket of a transcript page: /ws/conversations/<uuid>/live/."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.test import Client

from conversations.models import Conversation
from conversations.transcript import live
from tests.factories import make_user
from tests.history_data import make_talk
from tests.realtime_events import transcribed, user_audio, user_text
from voiceproject.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

TIMEOUT = 5


def session_headers(user):
    client = Client()
    client.force_login(user)
    return [
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
        (b"origin", b"http://testserver"),
        (b"host", b"testserver"),  # the Origin check compares the two, as for HTTP
    ]


async def open_socket(path, user=None):
    headers = await sync_to_async(session_headers)(user) if user else [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    return communicator


def live_path(conversation):
    return f"/ws/conversations/{conversation.uuid}/live/"


async def closed_with(communicator):
    message = await communicator.receive_output(timeout=TIMEOUT)
    assert message["type"] == "websocket.close"
    return message.get("code")


@pytest.fixture
def talk(alice):
    return make_talk(alice, [("user", "Hello"), ("assistant", "Hi there")])


async def test_the_owner_gets_the_transcript_on_connect(alice, talk):
    socket = await open_socket(live_path(talk), alice)
    snapshot = await socket.receive_json_from(timeout=TIMEOUT)
    assert snapshot["type"] == "snapshot"
    assert snapshot["status"] == "active"
    assert [(u["position"], u["role"], u["text"]) for u in snapshot["utterances"]] == [
        (0, "user", "Hello"),
        (1, "assistant", "Hi there"),
    ]
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from(timeout=TIMEOUT) == {"type": "pong"}
    await socket.send_to(text_data="not json")
    assert (await socket.receive_json_from(timeout=TIMEOUT))["code"] == "read_only"
    await socket.disconnect()


async def test_anonymous_is_closed_with_4401(talk):
    socket = await open_socket(live_path(talk))
    assert await closed_with(socket) == 4401


async def test_another_user_is_closed_with_4404(talk):
    bob = await sync_to_async(make_user)("bob")
    socket = await open_socket(live_path(talk), bob)
    assert await closed_with(socket) == 4404


async def test_an_unknown_conversation_is_closed_with_4404(alice):
    socket = await open_socket("/ws/conversations/00000000-0000-0000-0000-000000000000/live/", alice)
    assert await closed_with(socket) == 4404


async def test_staff_need_the_permission_to_view_conversations(talk):
    intern = await sync_to_async(make_user)("intern", is_staff=True)
    socket = await open_socket(live_path(talk), intern)
    assert await closed_with(socket) == 4404

    def reviewer():
        user = make_user("reviewer", is_staff=True)
        user.user_permissions.add(Permission.objects.get(codename="view_conversation"))
        return user

    socket = await open_socket(live_path(talk), await sync_to_async(reviewer)())
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
    await socket.disconnect()


async def test_turns_sent_on_the_transcript_socket_reach_the_owners_second_tab_and_a_reviewer(alice):
    conversation = await sync_to_async(make_talk)(alice, [])
    superuser = await sync_to_async(make_user)("admin", is_staff=True, is_superuser=True)
    tab = await open_socket(live_path(conversation), alice)
    reviewer = await open_socket(live_path(conversation), superuser)
    for socket in (tab, reviewer):
        assert (await socket.receive_json_from(timeout=TIMEOUT))["utterances"] == []

    # The first tab, talking: its transcript socket stores events and publishes the changes.
    talking = await open_socket(f"/ws/conversations/{conversation.uuid}/", alice)
    assert (await talking.receive_json_from(timeout=TIMEOUT))["type"] == "ready"
    events = [user_audio("item_a"), user_text("item_b", "typed words"), transcribed("item_a", "spoken words")]
    for seq, event in enumerate(events, start=1):
        await talking.send_json_to({"type": "event", "seq": seq, "event": event})
        assert await talking.receive_json_from(timeout=TIMEOUT) == {"type": "ack", "seq": seq}

    for socket in (tab, reviewer):
        seen = {}
        while len(seen) < 2 or seen["item_a"]["status"] != "completed":
            message = await socket.receive_json_from(timeout=TIMEOUT)
            assert message["type"] == "transcript.changed"
            assert message["conversation"] == str(conversation.uuid)
            seen.update({u["item_id"]: u for u in message["utterances"]})
        assert (seen["item_a"]["position"], seen["item_a"]["text"]) == (0, "spoken words")
        assert (seen["item_b"]["position"], seen["item_b"]["text"], seen["item_b"]["kind"]) == (
            1,
            "typed words",
            "text",
        )

    # The end of the conversation reaches them too.
    await talking.send_json_to({"type": "end"})
    assert (await talking.receive_json_from(timeout=TIMEOUT))["type"] == "ended"
    for socket in (tab, reviewer):
        message = await socket.receive_json_from(timeout=TIMEOUT)
        assert message["type"] == "conversation.ended"
        await socket.disconnect()
    await talking.disconnect()


async def test_a_message_published_to_the_group_is_relayed_as_it_is(alice, talk):
    socket = await open_socket(live_path(talk), alice)
    await socket.receive_json_from(timeout=TIMEOUT)
    utterance = await sync_to_async(lambda: talk.utterances.get(position=1))()
    await live.publish(talk.uuid, live.changed_message(talk.uuid, [utterance]))
    message = await socket.receive_json_from(timeout=TIMEOUT)
    assert message == json.loads(json.dumps(live.changed_message(talk.uuid, [utterance])))
    await socket.disconnect()


async def test_an_ended_conversation_says_so_on_connect(alice, talk):
    await Conversation.objects.filter(pk=talk.pk).aupdate(status=Conversation.Status.ENDED)
    socket = await open_socket(live_path(talk), alice)
    assert (await socket.receive_json_from(timeout=TIMEOUT))["status"] == "ended"
    await socket.disconnect()


# --- Redis: the live socket reads its channel in a loop of 5-second blocking pops ----------------


@pytest.fixture
def redis_layer(settings):
    if "RedisChannelLayer" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        pytest.skip("only the Redis channel layer blocks on a socket")
    return get_channel_layer()


async def test_an_idle_live_socket_still_gets_updates(redis_layer, alice, talk):
    """An idle reader outlives several blocking pops (redis-py 8's default 5 s read timeout
    used to kill it: see CHANNEL_LAYERS in settings)."""
    socket = await open_socket(live_path(talk), alice)
    await socket.receive_json_from(timeout=TIMEOUT)
    await asyncio.sleep(redis_layer.brpop_timeout + 1.5)
    await live.publish(talk.uuid, live.ended_message(talk.uuid, None))
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "conversation.ended"
    await socket.disconnect()


async def test_a_closing_socket_always_lets_go_of_its_redis_reader(redis_layer):
    """A socket that closes cancels its channel-layer read, at whatever point that read is.

    With a client-side socket timeout, one cancellation in a few dozen was swallowed and the
    reader polled Redis forever, so the server process could never shut down.
    """
    for attempt in range(200):
        channel = await redis_layer.new_channel()
        reader = asyncio.ensure_future(redis_layer.receive(channel))
        await asyncio.sleep(0.001 * (attempt % 20))  # cancel at every stage of the read
        reader.cancel()
        # asyncio.wait, not wait_for: it must not cancel the reader a second time.
        _, still_running = await asyncio.wait([reader], timeout=3)
        if still_running:
            await redis_layer.flush()  # closes its connections, which ends the stuck reader
            pytest.fail(f"attempt {attempt}: the cancelled reader kept running")
