"""The read-only live socket of a transcript page: /ws/conversations/<uuid>/live/."""

import asyncio
import io
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.utils import timezone

from conversations import actions
from conversations.models import Conversation
from conversations.transcript import live
from tests.support.events import transcribed, user_audio, user_text
from tests.support.factories import make_talk, make_user, signed_in
from voiceproject.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

TIMEOUT = 5


def session_headers(user):
    client = signed_in(user)
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


# --- Actions tell the watchers: deleting, reviewing, ending ------------------------------------


def reviewer_user():
    user = make_user("reviewer", is_staff=True)
    for codename in ("view_conversation", "change_conversation"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


async def watch(conversation, user):
    socket = await open_socket(live_path(conversation), user)
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
    return socket


async def test_deleting_the_conversation_tells_its_watchers_and_closes_their_sockets(alice, talk):
    owner_tab = await watch(talk, alice)
    reviewer = await watch(talk, await sync_to_async(reviewer_user)())

    def delete():
        client = signed_in(alice)
        return client.post(f"/conversations/{talk.uuid}/delete/")

    assert (await sync_to_async(delete)()).status_code == 302
    for socket in (owner_tab, reviewer):
        message = await socket.receive_json_from(timeout=TIMEOUT)
        assert message == {"type": "conversation.deleted", "conversation": str(talk.uuid)}
        assert await closed_with(socket) == 4404


async def test_deleting_an_ended_conversation_publishes_nothing(alice, talk, monkeypatch):
    """Only active conversations have watchers: a purge of old ones sends no messages."""
    await Conversation.objects.filter(pk=talk.pk).aupdate(status=Conversation.Status.ENDED)
    sent = []

    async def record(conversation_uuid, message):
        sent.append(message)

    monkeypatch.setattr(live, "publish", record)
    await sync_to_async(actions.delete_conversations)(Conversation.objects.filter(pk=talk.pk))
    assert sent == []
    assert not await Conversation.objects.filter(pk=talk.pk).aexists()


async def test_a_review_reaches_reviewers_but_not_the_owner(alice, talk):
    owner_tab = await watch(talk, alice)
    staff = await sync_to_async(reviewer_user)()
    reviewer = await watch(talk, staff)

    def mark_reviewed_and_flag():
        client = signed_in(staff)
        for action in ("mark_reviewed", "flag"):
            response = client.post(
                "/admin/conversations/conversation/", {"action": action, "_selected_action": [talk.pk]}
            )
            assert response.status_code == 302

    await sync_to_async(mark_reviewed_and_flag)()
    first = await reviewer.receive_json_from(timeout=TIMEOUT)
    second = await reviewer.receive_json_from(timeout=TIMEOUT)
    expected = {"type": "conversation.reviewed", "conversation": str(talk.uuid)}
    assert first == {**expected, "reviewed": True, "flagged": False}
    assert second == {**expected, "reviewed": True, "flagged": True}
    # The owner's socket got nothing: the next thing it hears is the answer to a ping.
    await owner_tab.send_json_to({"type": "ping"})
    assert await owner_tab.receive_json_from(timeout=TIMEOUT) == {"type": "pong"}
    await owner_tab.disconnect()
    await reviewer.disconnect()


async def test_the_idle_sweep_tells_the_watchers(alice, talk, settings):
    old = timezone.now() - timedelta(hours=2)
    await Conversation.objects.filter(pk=talk.pk).aupdate(created_at=old, last_activity_at=old)
    socket = await watch(talk, alice)
    await sync_to_async(call_command)("end_idle_conversations", "--timeout", "60", stderr=io.StringIO())
    message = await socket.receive_json_from(timeout=TIMEOUT)
    assert message == {"type": "conversation.ended", "conversation": str(talk.uuid), "ended_at": old.isoformat()}
    await socket.disconnect()


async def test_coming_back_ends_the_users_idle_conversations_and_tells_their_watchers(alice, talk, settings):
    settings.CONVERSATION_IDLE_TIMEOUT = 60
    old = timezone.now() - timedelta(hours=2)
    await Conversation.objects.filter(pk=talk.pk).aupdate(created_at=old, last_activity_at=old)
    watcher = await watch(talk, alice)
    new = await sync_to_async(make_talk)(alice, [])
    talking = await open_socket(f"/ws/conversations/{new.uuid}/", alice)
    assert (await talking.receive_json_from(timeout=TIMEOUT))["type"] == "ready"
    message = await watcher.receive_json_from(timeout=TIMEOUT)
    assert message == {"type": "conversation.ended", "conversation": str(talk.uuid), "ended_at": old.isoformat()}
    await talking.disconnect()
    await watcher.disconnect()


async def test_ending_twice_tells_the_watchers_once(alice, talk):
    socket = await watch(talk, alice)
    conversation = await Conversation.objects.only("id", "uuid").aget(pk=talk.pk)
    assert await actions.aend_conversation(conversation)
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "conversation.ended"
    assert not await actions.aend_conversation(conversation)
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from(timeout=TIMEOUT) == {"type": "pong"}
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
