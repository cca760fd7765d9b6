"""The `call` frame of the transcript socket: the page reports the OpenAI call it made, and the
call id is bound to that conversation once (conversations/realtime/calls.py)."""

import json

import pytest
from channels.db import database_sync_to_async

from conversations.models import RealtimeCall
from tests.support.factories import make_conversation, make_user
from tests.support.sockets import open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

db = database_sync_to_async
CALL = "rtc_u1_AbC-123"


@pytest.fixture
def conversation(alice):
    return make_conversation(alice)


@db
def bound():
    return list(RealtimeCall.objects.values_list("call_id", "conversation__uuid", "source"))


def call_frame(call_id=CALL):
    return {"type": "call", "call_id": call_id}


async def test_a_call_is_bound_to_its_conversation(alice, conversation):
    socket = await open_socket(alice, conversation.uuid)
    assert await socket.request(call_frame()) == {"type": "call", "call_id": CALL, "status": "bound"}
    assert await bound() == [(CALL, conversation.uuid, "browser")]
    await socket.close()


async def test_reporting_it_again_changes_nothing(alice, conversation):
    """After a reconnect the page sends its call again: the same answer, still one row."""
    for _ in range(2):
        socket = await open_socket(alice, conversation.uuid)
        assert (await socket.request(call_frame()))["status"] == "bound"
        await socket.close()
    assert await bound() == [(CALL, conversation.uuid, "browser")]


async def test_another_conversation_cannot_take_it(alice, conversation):
    socket = await open_socket(alice, conversation.uuid)
    await socket.request(call_frame())
    await socket.close()
    for owner in (alice, await db(make_user)("bob")):
        other = await db(make_conversation)(owner)
        socket = await open_socket(owner, other.uuid)
        reply = await socket.request(call_frame())
        assert reply["type"] == "error" and reply["code"] == "call_taken" and reply["call_id"] == CALL
        assert reply["seq"] is None and reply["message"]
        assert await socket.request({"type": "ping"}) == {"type": "pong"}  # the socket stays usable
        await socket.close()
    assert await bound() == [(CALL, conversation.uuid, "browser")]


async def test_a_conversation_may_have_several_calls(alice, conversation):
    """Continue makes a new call for the same conversation."""
    socket = await open_socket(alice, conversation.uuid)
    for call_id in ("rtc_first", "rtc_second"):
        assert (await socket.request(call_frame(call_id)))["status"] == "bound"
    await socket.close()
    assert sorted(c for c, _, _ in await bound()) == ["rtc_first", "rtc_second"]


@pytest.mark.parametrize(
    "call_id",
    [None, "", 17, ["rtc_x"], "rtc_", "ek_abc", "RTC_abc", "rtc_a/b", "rtc_a b", "rtc_é", "rtc_" + "a" * 101,
     "/v1/realtime/calls/rtc_abc"],
)
async def test_a_malformed_call_id_is_refused(alice, conversation, call_id):
    socket = await open_socket(alice, conversation.uuid)
    frame = {"type": "call"} if call_id is None else call_frame(call_id)
    reply = await socket.request(frame)
    assert reply == {"type": "error", "seq": None, "code": "invalid_call", "message": reply["message"]}
    assert "rtc_" in reply["message"]
    assert await socket.request({"type": "ping"}) == {"type": "pong"}
    await socket.close()
    assert await bound() == []


async def test_the_longest_call_id_is_accepted(alice, conversation):
    socket = await open_socket(alice, conversation.uuid)
    call_id = "rtc_" + "a" * 100
    assert (await socket.request(call_frame(call_id)))["status"] == "bound"
    await socket.close()


async def test_the_call_waits_its_turn_behind_earlier_events(alice, conversation):
    socket = await open_socket(alice, conversation.uuid)
    await socket.send({"type": "event", "seq": 1, "event": {"type": "session.created"}})
    await socket.send(json.dumps(call_frame()))
    assert [await socket.receive(), await socket.receive()] == [
        {"type": "ack", "seq": 1},
        {"type": "call", "call_id": CALL, "status": "bound"},
    ]
    await socket.close()


async def test_a_call_frame_counts_against_the_frame_rate(alice, conversation, settings):
    settings.TRANSCRIPT_FRAMES_PER_SECOND_PER_USER = 1
    socket = await open_socket(alice, conversation.uuid)
    assert (await socket.request(call_frame("rtc_one")))["status"] == "bound"
    reply = await socket.request(call_frame("rtc_two"))
    assert reply["code"] == "rate_limited" and reply["seq"] is None
    await socket.close()
    assert [c for c, _, _ in await bound()] == ["rtc_one"]


async def test_a_call_for_a_deleted_conversation_closes_the_socket(alice, conversation):
    socket = await open_socket(alice, conversation.uuid)
    await db(conversation.delete)()
    reply = await socket.request(call_frame())
    assert reply["code"] == "conversation_closed"
    assert await socket.closed_with() == 4404
    assert await bound() == []
