"""The transcript socket end to end: consumer → writer → journal → reducer → rows, and back.

Runs on both legs (SQLite + in-memory layer, PostgreSQL + Redis). Sockets are driven with
`WebsocketCommunicator`; most tests put the user in the scope, the `application` tests go
through the real ASGI stack (Origin check, session cookie).
"""

import asyncio
import io
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from conversations import actions
from conversations.models import Conversation, Event, ResponseUsage, TokenUsage, Utterance
from conversations.transcript import journal, live
from tests.support.events import (
    SCENARIOS,
    assistant,
    audio_done,
    load_scenario,
    output_item,
    response_done,
    transcribed,
    transcription_failed,
    turn_events,
    user_audio,
    user_text,
)
from tests.support.factories import make_conversation, make_user, signed_in
from tests.support.sockets import TIMEOUT, Socket, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

db = database_sync_to_async


@pytest.fixture(autouse=True)
def _no_frame_rate_limit(settings):
    """These tests send thousands of frames at once; the rate limit has tests of its own
    (test_socket_limits.py)."""
    settings.TRANSCRIPT_FRAMES_PER_SECOND_PER_USER = 0


@pytest.fixture
def conversation(alice):
    return make_conversation(alice)


@db
def transcript(conversation):
    return [
        {k: getattr(u, k) for k in ("item_id", "role", "kind", "status", "text", "error", "response_id")}
        for u in Utterance.objects.filter(conversation=conversation).order_by("position")
    ]


@db
def refreshed(conversation):
    conversation.refresh_from_db()
    return conversation


@db
def count(model, **filters):
    return model.objects.filter(**filters).count()


# --- connecting ----------------------------------------------------------------------------------


async def test_anonymous_is_closed_with_4401(conversation):
    socket = await open_socket(AnonymousUser(), conversation.uuid, expect_ready=False)
    assert await socket.closed_with() == 4401


async def test_unknown_conversation_is_closed_with_4404(alice):
    socket = await open_socket(alice, uuid.uuid4(), expect_ready=False)
    assert await socket.closed_with() == 4404


async def test_someone_elses_conversation_is_closed_with_4404(conversation):
    bob = await db(make_user)("bob")
    socket = await open_socket(bob, conversation.uuid, expect_ready=False)
    assert await socket.closed_with() == 4404
    assert await count(Event) == 0


async def test_ready_tells_the_last_stored_seq(alice, conversation):
    socket = await open_socket(alice, conversation.uuid)
    assert socket.ready == {"type": "ready", "conversation": str(conversation.uuid), "last_seq": 0}
    await socket.events([{"type": "session.created"}, {"type": "x"}, {"type": "y"}])
    await socket.close()
    socket = await open_socket(alice, conversation.uuid)
    assert socket.ready["last_seq"] == 3
    await socket.close()


async def test_ping_pong(alice, conversation):
    socket = await open_socket(alice, conversation.uuid)
    assert await socket.request({"type": "ping"}) == {"type": "pong"}
    await socket.close()


# --- through the real ASGI application: Origin and the session cookie ---------------------------------


@db
def session_cookie(user):
    client = signed_in(user)
    return client.cookies["sessionid"].value


async def open_via_application(path, cookie=None, origin="http://testserver"):
    from voiceproject.asgi import application

    headers = [(b"host", b"testserver")]
    if origin:
        headers.append((b"origin", origin.encode()))
    if cookie:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=TIMEOUT)
    return communicator, connected, code


async def test_session_cookie_and_allowed_origin_get_ready(alice, conversation):
    cookie = await session_cookie(alice)
    communicator, connected, _ = await open_via_application(f"/ws/conversations/{conversation.uuid}/", cookie)
    assert connected
    socket = Socket(communicator)
    assert (await socket.receive())["type"] == "ready"
    await socket.events([user_text("t1", "Hello over the real stack")])
    await socket.close()
    assert await transcript(conversation) == [
        {"item_id": "t1", "role": "user", "kind": "text", "status": "completed",
         "text": "Hello over the real stack", "error": "", "response_id": ""}
    ]  # fmt: skip


async def test_foreign_origin_is_refused(alice, conversation):
    cookie = await session_cookie(alice)
    communicator, connected, _ = await open_via_application(
        f"/ws/conversations/{conversation.uuid}/", cookie, origin="http://evil.example"
    )
    assert not connected
    communicator, connected, _ = await open_via_application(f"/ws/conversations/{conversation.uuid}/", cookie, origin=None)
    assert not connected


async def test_no_session_cookie_is_closed_with_4401(conversation):
    communicator, connected, _ = await open_via_application(f"/ws/conversations/{conversation.uuid}/")
    assert connected
    assert await Socket(communicator).closed_with() == 4401


# --- the recorded scenarios, live and rebuilt ----------------------------------------------------------


async def check_expected(conversation, expected):
    assert await transcript(conversation) == expected["utterances"]
    conversation = await refreshed(conversation)
    assert {name: getattr(conversation, name) for name in TokenUsage.USAGE_FIELDS} == expected["usage"]
    assert conversation.transcription_tokens == expected["transcription_tokens"]
    assert conversation.title == expected["title"]
    assert conversation.started_at and conversation.last_activity_at >= conversation.started_at
    assert dict(await db(lambda: list(conversation.usages.values_list("response_id", "status")))()) == expected["responses"]
    positions = await db(lambda: list(conversation.utterances.order_by("position").values_list("position", flat=True)))()
    assert positions == list(range(len(expected["utterances"])))


@pytest.mark.parametrize("name", SCENARIOS)
async def test_recorded_scenario_live_then_rebuilt(name, alice, conversation):
    scenario = load_scenario(name)
    socket = await open_socket(alice, conversation.uuid)
    # One frame at a time, as a browser forwarding events one by one would.
    for seq, event in enumerate(scenario["events"], start=1):
        assert await socket.request({"type": "event", "seq": seq, "event": event}) == {"type": "ack", "seq": seq}
    await socket.close()
    await check_expected(conversation, scenario["expected"])
    assert await count(Event, conversation=conversation) == len(scenario["events"])

    # Rebuilding from the journal gives the same, and changes nothing when nothing is wrong.
    ids = await db(lambda: list(Utterance.objects.order_by("pk").values_list("pk", flat=True)))()
    err = io.StringIO()
    await db(call_command)("rebuild_transcripts", "--conversation", str(conversation.uuid), stderr=err)
    assert "1 unchanged" in err.getvalue()
    assert await db(lambda: list(Utterance.objects.order_by("pk").values_list("pk", flat=True)))() == ids

    # After damage (as a parser bug would do), a rebuild restores the expected transcript.
    await db(lambda: Utterance.objects.filter(conversation=conversation).update(text="garbled", status="pending"))()
    await db(lambda: ResponseUsage.objects.filter(conversation=conversation).delete())()
    await db(lambda: Conversation.objects.filter(pk=conversation.pk).update(input_tokens=1, transcription_tokens=0))()
    err = io.StringIO()
    await db(call_command)("rebuild_transcripts", stderr=err)
    assert "1 rebuilt" in err.getvalue()
    await check_expected(conversation, scenario["expected"])


async def test_all_scenarios_in_one_burst_batch_the_same_way(alice):
    """Sent without waiting for acks, the frames are written in batches: same transcripts."""
    for name in SCENARIOS:
        scenario = load_scenario(name)
        conversation = await db(make_conversation)(alice)
        socket = await open_socket(alice, conversation.uuid)
        await socket.events(scenario["events"])
        await socket.close()
        await check_expected(conversation, scenario["expected"])


# --- the transcript rules through the socket ------------------------------------------------------------


async def test_out_of_order_user_transcript_sits_before_the_reply(alice, conversation):
    socket = await open_socket(alice, conversation.uuid)
    await socket.events([user_audio("u1"), assistant("a1"), audio_done("a1", "r1", "Sure!"), response_done("r1")])
    assert [u["status"] for u in await transcript(conversation)] == ["pending", "completed"]
    await socket.events([transcribed("u1", "Can you help?", tokens=7)], first_seq=5)
    await socket.close()
    assert [(u["role"], u["text"]) for u in await transcript(conversation)] == [
        ("user", "Can you help?"), ("assistant", "Sure!")
    ]  # fmt: skip
    assert (await refreshed(conversation)).title == "Can you help?"


async def test_failed_transcription_and_interrupted_reply(alice, conversation):
    socket = await open_socket(alice, conversation.uuid)
    await socket.events([
        user_audio("u1"), transcription_failed("u1"), assistant("a1"), audio_done("a1", "r1", "Well, the"),
        response_done("r1", "cancelled", [output_item("a1", "Well, the", "incomplete")]),
    ])  # fmt: skip
    await socket.close()
    rows = await transcript(conversation)
    assert [(u["status"], u["error"], u["text"]) for u in rows] == [
        ("failed", "Audio is unintelligible.", ""), ("interrupted", "", "Well, the")
    ]  # fmt: skip


async def test_usage_is_counted_once(alice, conversation):
    socket = await open_socket(alice, conversation.uuid)
    done = response_done("r1", input_tokens=100, output_tokens=50)
    await socket.events([done, done, transcribed("u1", "hi", 9), transcribed("u1", "hi", 9)])
    # The same seqs again (a resend) and in another batch: still once.
    await socket.events([done, done], first_seq=1)
    await socket.events([done], first_seq=5)
    await socket.close()
    conversation = await refreshed(conversation)
    assert (conversation.input_tokens, conversation.output_tokens, conversation.transcription_tokens) == (100, 50, 9)
    assert await count(ResponseUsage, conversation=conversation) == 1


async def test_unknown_items_and_unknown_event_types_are_journaled_and_acked(alice, conversation):
    socket = await open_socket(alice, conversation.uuid)
    await socket.events([
        {"type": "some.future.event", "data": [1, 2, 3]},
        audio_done("never_announced", "r9", "Out of the blue"),
        transcribed("also_unknown", "Me too"),
        {"type": "conversation.item.added", "item": {"id": "fc1", "type": "function_call", "name": "f"}},
        {"type": "response.output_audio_transcript.delta", "item_id": "never_announced", "delta": "Out"},
    ])  # fmt: skip
    await socket.close()
    assert await count(Event, conversation=conversation) == 5
    assert [(u["item_id"], u["role"]) for u in await transcript(conversation)] == [
        ("never_announced", "assistant"), ("also_unknown", "user")
    ]  # fmt: skip


# --- bad input: an error frame, and the socket stays usable ------------------------------------------------


BAD_FRAMES = [
    ("not json at all", "invalid_json", None),
    ("[1, 2, 3]", "invalid_frame", None),
    ('"a string"', "invalid_frame", None),
    ({"type": "shout", "seq": 3}, "invalid_frame", 3),
    ({"type": "event", "event": {"type": "x"}}, "invalid_seq", None),
    ({"type": "event", "seq": -4, "event": {"type": "x"}}, "invalid_seq", None),
    ({"type": "event", "seq": 0, "event": {"type": "x"}}, "invalid_seq", None),
    ({"type": "event", "seq": 2.5, "event": {"type": "x"}}, "invalid_seq", None),
    ({"type": "event", "seq": "2", "event": {"type": "x"}}, "invalid_seq", None),
    ({"type": "event", "seq": True, "event": {"type": "x"}}, "invalid_seq", None),
    ({"type": "event", "seq": 2**63, "event": {"type": "x"}}, "invalid_seq", None),
    ({"type": "event", "seq": 7}, "invalid_event", 7),
    ({"type": "event", "seq": 7, "event": {"no": "type"}}, "invalid_event", 7),
    ({"type": "event", "seq": 7, "event": {"type": "x", "n": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}},
     "invalid_event", 7),
    ({"type": "event", "seq": 7, "event": {"type": "x", "blob": "b" * (17 * 1024)}}, "frame_too_large", 7),
    # Too large to parse: its seq is read from the start of the frame, so the page can drop it.
    ({"type": "event", "seq": 7, "event": {"type": "x", "blob": "b" * (256 * 1024)}}, "frame_too_large", 7),
    ({"event": {"type": "x", "blob": "b" * (256 * 1024)}, "seq": 7, "type": "event"}, "frame_too_large", None),
]


async def test_every_bad_frame_gets_an_error_and_the_socket_stays_usable(alice, conversation):
    socket = await open_socket(alice, conversation.uuid)
    await socket.communicator.send_to(bytes_data=b"\x00\x01binary")
    reply = await socket.receive()
    assert (reply["type"], reply["code"], reply["seq"]) == ("error", "binary_not_supported", None)
    for frame, code, seq in BAD_FRAMES:
        reply = await socket.request(frame)
        assert (reply["type"], reply["code"], reply["seq"]) == ("error", code, seq), frame
        assert reply["message"]
    # Still usable, and nothing of the bad frames was stored.
    await socket.events([user_text("t1", "still here")], first_seq=7)
    assert await socket.request({"type": "ping"}) == {"type": "pong"}
    await socket.close()
    assert await db(lambda: list(Event.objects.values_list("seq", flat=True)))() == [7]
    assert [u["text"] for u in await transcript(conversation)] == ["still here"]


async def test_transcript_limit_is_configurable(alice, conversation, settings):
    settings.TRANSCRIPT_MAX_CHARS = 10
    settings.TRANSCRIPT_MAX_FRAME_BYTES = 2048
    socket = await open_socket(alice, conversation.uuid)
    reply = await socket.request({"type": "event", "seq": 1, "event": {"type": "x", "pad": "p" * 2048}})
    assert reply["code"] == "frame_too_large"
    await socket.events([transcribed("u1", "eleven char")])  # kept, cut to the limit
    await socket.close()
    assert [u["text"] for u in await transcript(conversation)] == ["eleven cha"]


# --- volume, reconnects, concurrency -------------------------------------------------------------------------


async def test_a_burst_of_thousands_of_frames(alice, conversation):
    events = turn_events(500)  # 3000 frames
    socket = await open_socket(alice, conversation.uuid)
    await socket.events(events)
    await socket.close()
    assert await count(Event, conversation=conversation) == 3000
    rows = await transcript(conversation)
    assert len(rows) == 1000 and all(u["status"] == "completed" for u in rows)
    assert [u["text"] for u in rows[:4]] == ["question 0", "answer 0", "question 1", "answer 1"]
    conversation = await refreshed(conversation)
    assert (conversation.input_tokens, conversation.output_tokens, conversation.transcription_tokens) == (1000, 1500, 500)


async def test_disconnect_mid_stream_then_resend_everything(alice, conversation):
    events = turn_events(100)  # 600 frames
    socket = await open_socket(alice, conversation.uuid)
    for seq, event in enumerate(events[:400], start=1):
        await socket.send({"type": "event", "seq": seq, "event": event})
    await socket.close()  # gone before reading a single ack

    socket = await open_socket(alice, conversation.uuid)
    assert 0 <= socket.ready["last_seq"] <= 400
    await socket.events(events)  # the whole outbox again, from seq 1
    await socket.close()
    assert await count(Event, conversation=conversation) == 600
    assert await db(lambda: Event.objects.filter(conversation=conversation).values("seq").distinct().count())() == 600
    rows = await transcript(conversation)
    assert len(rows) == 200 and len({u["item_id"] for u in rows}) == 200
    assert await count(ResponseUsage, conversation=conversation) == 100
    assert (await refreshed(conversation)).input_tokens == 200


async def test_two_sockets_of_one_conversation_sending_the_same_frames(alice, conversation):
    events = turn_events(50)
    first = await open_socket(alice, conversation.uuid)
    second = await open_socket(alice, conversation.uuid)
    await asyncio.gather(first.events(events), second.events(events))
    await first.close()
    await second.close()
    assert await count(Event, conversation=conversation) == 300
    assert len(await transcript(conversation)) == 100
    assert (await refreshed(conversation)).input_tokens == 100


async def test_many_conversations_at_once(alice):
    conversations = [await db(make_conversation)(alice) for _ in range(20)]
    sockets = [await open_socket(alice, c.uuid) for c in conversations]
    await asyncio.gather(*(s.events(turn_events(10, prefix=f"c{i}")) for i, s in enumerate(sockets)))
    for s in sockets:
        await s.close()
    for c in conversations:
        assert len(await transcript(c)) == 20
        assert (await refreshed(c)).output_tokens == 30


# --- end, idle end, live updates, failures ---------------------------------------------------------------------


async def listen(conversation_uuid):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(live.group_name(conversation_uuid), channel)
    return lambda: asyncio.wait_for(layer.receive(channel), TIMEOUT)


async def test_live_update_after_commit(alice, conversation):
    receive = await listen(conversation.uuid)
    socket = await open_socket(alice, conversation.uuid)
    await socket.events([user_audio("u1")])
    message = await receive()
    assert message["type"] == "transcript.changed" and message["conversation"] == str(conversation.uuid)
    [line] = message["utterances"]
    assert {k: line[k] for k in ("item_id", "role", "kind", "status", "text", "position")} == {
        "item_id": "u1", "role": "user", "kind": "audio", "status": "pending", "text": "", "position": 0
    }  # fmt: skip
    assert line["created_at"] and line["completed_at"] is None
    # An event that changes no utterance sends nothing; the next change does.
    await socket.events([{"type": "session.updated"}, transcribed("u1", "Hi")], first_seq=2)
    message = await receive()
    assert [(u["item_id"], u["status"], u["text"]) for u in message["utterances"]] == [("u1", "completed", "Hi")]
    await socket.close()


async def test_end_marks_the_conversation_ended_after_the_events_before_it(alice, conversation):
    receive = await listen(conversation.uuid)
    socket = await open_socket(alice, conversation.uuid)
    await socket.send({"type": "event", "seq": 1, "event": user_text("t1", "bye")})
    await socket.send({"type": "end"})
    assert await socket.receive() == {"type": "ack", "seq": 1}
    assert await socket.receive() == {"type": "ended", "conversation": str(conversation.uuid)}
    # Ending twice is harmless.
    assert await socket.request({"type": "end"}) == {"type": "ended", "conversation": str(conversation.uuid)}
    await socket.close()
    conversation = await refreshed(conversation)
    assert conversation.status == "ended" and conversation.ended_at
    messages = [await receive(), await receive()]
    assert [m["type"] for m in messages] == ["transcript.changed", "conversation.ended"]


async def test_idle_conversations_end_when_the_user_connects(alice, conversation, settings):
    settings.CONVERSATION_IDLE_TIMEOUT = 600
    old = timezone.now() - timedelta(hours=1)
    idle = await db(make_conversation)(alice, created_at=old - timedelta(minutes=5))
    await db(lambda: Conversation.objects.filter(pk=idle.pk).update(last_activity_at=old))()
    never_spoke = await db(make_conversation)(alice, created_at=old)
    fresh = await db(make_conversation)(alice)
    bob_idle = await db(make_conversation)(await db(make_user)("bob"), created_at=old)
    await db(lambda: Conversation.objects.filter(pk=conversation.pk).update(created_at=old))()

    socket = await open_socket(alice, conversation.uuid)  # itself idle, but being resumed
    await socket.close()
    status = {c.pk: (await refreshed(c)).status for c in (idle, never_spoke, fresh, bob_idle, conversation)}
    assert status == {idle.pk: "ended", never_spoke.pk: "ended", fresh.pk: "active", bob_idle.pk: "active",
                      conversation.pk: "active"}  # fmt: skip
    assert (await refreshed(idle)).ended_at == old  # when it went quiet


async def test_end_idle_conversations_command(alice, settings):
    old = timezone.now() - timedelta(hours=2)
    idle = await db(make_conversation)(alice, created_at=old)
    err = io.StringIO()
    settings.CONVERSATION_IDLE_TIMEOUT = 0  # off: nothing automatic
    assert await db(actions.end_idle_conversations)() == []
    await db(call_command)("end_idle_conversations", "--timeout", "3600", stderr=err)
    assert "Ended 1 idle conversations." in err.getvalue()
    assert (await refreshed(idle)).status == "ended"
    with pytest.raises(CommandError):
        await db(call_command)("end_idle_conversations", "--timeout", "0")


async def test_conversation_deleted_while_the_socket_is_open(alice, conversation):
    socket = await open_socket(alice, conversation.uuid)
    await db(conversation.delete)()
    reply = await socket.request({"type": "event", "seq": 1, "event": user_text("t1", "anyone?")})
    assert (reply["type"], reply["code"], reply["seq"]) == ("error", "conversation_closed", 1)
    assert await socket.closed_with() == 4404
    assert await count(Event) == 0


def assert_sendable(code):
    """Daphne (autobahn) refuses to send any close code but 1000 and 3000-4999: the close then
    raises inside the consumer and the socket stays open, with no ack and no pong (a zombie)."""
    assert code == 1000 or 3000 <= code <= 4999, code


async def test_a_database_failure_closes_with_4500_and_stores_nothing(alice, conversation, monkeypatch):
    socket = await open_socket(alice, conversation.uuid)
    real = journal._append_locked

    def broken(merged):
        real(merged)  # writes everything, then fails: the transaction must roll it all back
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(journal, "_append_locked", broken)
    await socket.send({"type": "event", "seq": 1, "event": user_text("t1", "lost?")})
    code = await socket.closed_with()
    assert_sendable(code)
    assert code == 4500
    monkeypatch.setattr(journal, "_append_locked", real)
    assert await count(Event) == 0 and await count(Utterance) == 0
    # The browser reconnects and resends: stored once.
    socket = await open_socket(alice, conversation.uuid)
    await socket.events([user_text("t1", "lost?")])
    await socket.close()
    assert [u["text"] for u in await transcript(conversation)] == ["lost?"]


async def test_a_client_outrunning_the_database_is_closed_with_4503(alice, conversation, monkeypatch):
    from conversations.transcript import consumer, writer

    monkeypatch.setattr(consumer, "MAX_QUEUED_FRAMES", 5)
    slow = asyncio.Event()
    real_write = writer.JournalWriter.write

    async def stuck(self, conversation_id, frames):
        await slow.wait()
        return await real_write(self, conversation_id, frames)

    monkeypatch.setattr(writer.JournalWriter, "write", stuck)
    socket = await open_socket(alice, conversation.uuid)
    for seq in range(1, 20):
        await socket.send({"type": "event", "seq": seq, "event": user_text(f"t{seq}", "flood")})
    code = await socket.closed_with()
    slow.set()
    assert_sendable(code)
    assert code == 4503


# --- rebuild_transcripts ------------------------------------------------------------------------------------------


async def test_rebuild_command_arguments(conversation):
    with pytest.raises(CommandError, match="not a conversation id"):
        await db(call_command)("rebuild_transcripts", "--conversation", "nope")
    missing = uuid.uuid4()
    with pytest.raises(CommandError, match=f"No conversation with id {missing}"):
        await db(call_command)("rebuild_transcripts", "--conversation", str(conversation.uuid), "--conversation", str(missing))


async def test_rebuild_leaves_a_transcript_without_journal_alone(alice, conversation):
    await db(Utterance.objects.create)(conversation=conversation, item_id="imported", role="user", kind="text",
                                       text="kept", status="completed", position=0)  # fmt: skip
    empty = await db(make_conversation)(alice)
    err = io.StringIO()
    await db(call_command)("rebuild_transcripts", stderr=err)
    assert f"Skipped {conversation.uuid}" in err.getvalue()
    assert "2 conversations: 0 rebuilt, 1 unchanged, 1 skipped." in err.getvalue()
    assert [u["text"] for u in await transcript(conversation)] == ["kept"]
    assert (await db(journal.rebuild)(empty)).status == "unchanged"


# --- a reviewed conversation cannot be rewritten ----------------------------------------------------------


def rewrite_attempt():
    """What a second socket sends to rewrite an ended conversation: the assistant's text replaced,
    the user's line turned into an assistant line."""
    return [
        audio_done("a1", "r1", "No, it is closed all week."),
        {"type": "conversation.item.done",
         "item": {"id": "u1", "type": "message", "role": "assistant", "status": "completed",
                  "content": [{"type": "output_audio", "transcript": "I never asked anything."}]}},
        response_done("r9", output=[output_item("u1", "Nor this.")]),
    ]  # fmt: skip


@db
def mark_reviewed(conversation):
    staff = make_user("staff", is_staff=True)
    actions.set_reviewed(Conversation.objects.filter(pk=conversation.pk), staff)


async def test_a_reviewed_conversation_cannot_be_rewritten_by_a_new_socket(alice, conversation):
    honest = [user_audio("u1"), transcribed("u1", "Is the bridge open?"), assistant("a1"),
              audio_done("a1", "r1", "Yes, until ten."), response_done("r1", output=[output_item("a1", "Yes, until ten.")])]  # fmt: skip
    socket = await open_socket(alice, conversation.uuid)
    await socket.events(honest)
    assert await socket.request({"type": "end"}) == {"type": "ended", "conversation": str(conversation.uuid)}
    await socket.close()
    said = await transcript(conversation)
    assert [(u["role"], u["text"], u["status"]) for u in said] == [
        ("user", "Is the bridge open?", "completed"), ("assistant", "Yes, until ten.", "completed")
    ]  # fmt: skip
    await mark_reviewed(conversation)

    # The same events again under new seqs (a second tab, a replay) change nothing: still reviewed.
    socket = await open_socket(alice, conversation.uuid)
    await socket.events(honest, first_seq=6)
    assert (await refreshed(conversation)).reviewed

    attack = rewrite_attempt()
    await socket.events(attack, first_seq=11)
    await socket.close()
    assert await transcript(conversation) == said  # roles and texts as they were said
    conversation = await refreshed(conversation)
    assert conversation.conflicts == 3  # a text, a role, and a role again: visible to staff
    assert (conversation.reviewed, conversation.reviewed_at, conversation.reviewed_by_id) == (False, None, None)
    # Kept in the journal, and a rebuild from it agrees.
    assert await count(Event, conversation=conversation) == len(honest) * 2 + len(attack)
    err = io.StringIO()
    await db(call_command)("rebuild_transcripts", "--conversation", str(conversation.uuid), stderr=err)
    assert "1 unchanged" in err.getvalue()
    assert (await refreshed(conversation)).conflicts == 3
