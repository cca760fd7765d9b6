"""What the transcript socket stores, bounded: the attacks of issue 12 (items 4, 6, 10), replayed.

- One socket filling the disk: stored bytes are bounded per conversation and per user and day
  (quota_exceeded), and an event's non-text part is bounded (frame_too_large).
- A NUL or a lone surrogate no longer loses the event (and its token usage): repaired, recorded.
- Frames for a conversation that ended more than CONVERSATION_LATE_EVENTS_SECONDS ago are refused
  (conversation_closed), checked in the append transaction, not only at connect.

Runs on both legs (SQLite + in-memory layer, PostgreSQL + Redis).
"""

import asyncio
import json
import threading
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.utils import timezone

from conversations.models import Conversation, DailyStorage, Event, ResponseUsage, Utterance
from conversations.realtime.issuing import SessionPlan, arecord_session
from conversations.transcript import journal
from conversations.transcript.frames import parse_frame
from tests.support.events import output_item, response_done, transcribed, user_audio, user_text
from tests.support.factories import make_conversation, make_user
from tests.support.sockets import open_socket

db = database_sync_to_async

KB = 1024


def fat_event(n, chars=30_000):
    """About n × chars bytes, all of it transcript text (the non-text bound lets it through)."""
    return {"type": "conversation.item.added",
            "item": {"id": "fat", "type": "message", "role": "user",
                     "content": [{"type": "input_text", "text": "x" * chars} for _ in range(n)]}}  # fmt: skip


def frame(seq, event):
    return {"type": "event", "seq": seq, "event": event}


@db
def stored(conversation):
    return list(Event.objects.filter(conversation=conversation).order_by("seq").values_list("seq", flat=True))


@db
def stored_bytes(conversation):
    return Conversation.objects.get(pk=conversation.pk).stored_bytes


@db
def day_bytes(user):
    return sum(DailyStorage.objects.filter(user=user).values_list("bytes", flat=True))


# --- item 4: stored bytes per conversation, per user and day ---------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_one_socket_cannot_fill_the_disk(alice, settings):
    """The attack: frames of ~240 KB back to back. Past the conversation's bound each one is refused
    with its seq, the socket stays usable, and what was stored is untouched."""
    settings.TRANSCRIPT_MAX_BYTES_PER_CONVERSATION = 1000 * KB
    conversation = await db(make_conversation)(alice)
    socket = await open_socket(alice, conversation.uuid)
    fat = json.dumps(frame(1, fat_event(8)))
    assert 230 * KB < len(fat) < settings.TRANSCRIPT_MAX_FRAME_BYTES
    for seq in range(1, 21):  # sent without waiting, as the attacker did
        await socket.send(frame(seq, fat_event(8)))
    replies = [await socket.receive() for _ in range(20)]
    assert replies[:4] == [{"type": "ack", "seq": seq} for seq in range(1, 5)]
    for seq, reply in enumerate(replies[4:], start=5):
        assert (reply["type"], reply["seq"], reply["code"]) == ("error", seq, "quota_exceeded")
        assert "storage limit" in reply["message"]
    assert await stored(conversation) == [1, 2, 3, 4]
    assert 4 * 230 * KB < await stored_bytes(conversation) <= 1000 * KB

    # Still usable: a resend of a stored frame is acked (not refused), a small one still fits,
    # and nothing stored was touched.
    assert await socket.request(frame(2, fat_event(8))) == {"type": "ack", "seq": 2}
    assert await socket.request({"type": "ping"}) == {"type": "pong"}
    assert await socket.request(frame(21, user_text("t1", "still here"))) == {"type": "ack", "seq": 21}
    reply = await socket.request(frame(22, fat_event(8)))
    assert (reply["seq"], reply["code"]) == (22, "quota_exceeded")
    await socket.close()
    assert await stored(conversation) == [1, 2, 3, 4, 21]
    assert await db(lambda: Utterance.objects.get(conversation=conversation, item_id="t1").text)() == "still here"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_many_conversations_of_one_user_share_a_daily_bound(alice, settings):
    """Spreading the attack over conversations (a new key each) runs into the per-user, per-day bound,
    with several sockets writing at once."""
    settings.TRANSCRIPT_MAX_BYTES_PER_USER_PER_DAY = 2000 * KB
    conversations = [await db(make_conversation)(alice) for _ in range(4)]
    sockets = [await open_socket(alice, c.uuid) for c in conversations]

    async def attack(socket):
        for seq in range(1, 6):
            await socket.send(frame(seq, fat_event(8)))
        return [await socket.receive() for _ in range(5)]

    replies = [r for rs in await asyncio.gather(*(attack(s) for s in sockets)) for r in rs]
    acked = [r for r in replies if r["type"] == "ack"]
    refused = [r for r in replies if r["type"] == "error"]
    assert len(acked) + len(refused) == 20
    assert {r["code"] for r in refused} == {"quota_exceeded"} and all("today" in r["message"] for r in refused)
    assert 7 <= len(acked) <= 8  # 8 × ~240 KB fit in 2000 KB
    assert await day_bytes(alice) <= 2000 * KB
    assert await db(Event.objects.count)() == len(acked)
    # Bob has his own bound.
    bob = await db(make_user)("bob")
    theirs = await db(make_conversation)(bob)
    socket = await open_socket(bob, theirs.uuid)
    assert await socket.request(frame(1, fat_event(8))) == {"type": "ack", "seq": 1}
    for s in [*sockets, socket]:
        await s.close()


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_in_separate_transactions_cannot_both_pass_the_bound(settings):
    """Two server processes appending to two conversations of one user at the same moment: the
    per-day row is locked in the append transaction, so the sum stays within the bound."""
    settings.TRANSCRIPT_MAX_BYTES_PER_USER_PER_DAY = 1000 * KB
    user = make_user("mallory")
    conversations = [make_conversation(user) for _ in range(6)]
    big = parse_frame(json.dumps(frame(1, fat_event(8))), max_bytes=256 * KB, max_chars=32000)
    start = threading.Barrier(len(conversations))
    results = {}

    def append(conversation):
        try:
            start.wait()
            results[conversation.pk] = journal.append_frames(conversation.pk, [big])
        finally:
            connection.close()

    threads = [threading.Thread(target=append, args=(c,)) for c in conversations]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not any(r.failed for r in results.values())
    stored_count = sum(r.stored for r in results.values())
    refused = [r.refused[1].code for r in results.values() if r.refused]
    assert stored_count == 4 and refused == ["quota_exceeded"] * 2  # 4 × ~240 KB ≤ 1000 KB < 5 × …
    assert Event.objects.count() == 4
    assert DailyStorage.objects.get(user=user).bytes == 4 * big.size
    assert sum(Conversation.objects.values_list("stored_bytes", flat=True)) == 4 * big.size


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_non_text_part_of_an_event_is_bounded(alice, conversation_for_alice, settings):
    socket = await open_socket(alice, conversation_for_alice.uuid)
    blob = {"type": "conversation.item.added", "item": {"id": "i1", "blob": "b" * (20 * KB)}}
    reply = await socket.request(frame(1, blob))
    assert (reply["type"], reply["seq"], reply["code"]) == ("error", 1, "frame_too_large")
    assert "besides its transcript text" in reply["message"]
    # The same size as transcript text is fine.
    assert await socket.request(frame(2, user_text("t1", "y" * (20 * KB)))) == {"type": "ack", "seq": 2}
    settings.TRANSCRIPT_MAX_EVENT_NON_TEXT_BYTES = 32 * KB
    assert await socket.request(frame(1, blob)) == {"type": "ack", "seq": 1}
    await socket.close()
    assert await stored(conversation_for_alice) == [1, 2]


@pytest.fixture
def conversation_for_alice(alice):
    return make_conversation(alice)


# --- item 10: text the database cannot store is repaired, not refused ------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_nul_and_lone_surrogate_no_longer_lose_the_event_or_its_usage(alice, conversation_for_alice):
    conversation = conversation_for_alice
    socket = await open_socket(alice, conversation.uuid)
    done = response_done("r1", output=[output_item("a1", "Hi\x00 there \ud83d")], input_tokens=100, output_tokens=50)
    # json.dumps escapes them as \u0000 and \ud83d: what a browser's JSON.stringify sends.
    assert "\\u0000" in json.dumps(done) and "\\ud83d" in json.dumps(done)
    await socket.events([user_audio("u1"), transcribed("u1", "nul\x00 \udc00here"), done])
    await socket.close()
    conversation = await db(Conversation.objects.get)(pk=conversation.pk)
    assert (conversation.input_tokens, conversation.output_tokens) == (100, 50)
    assert await db(ResponseUsage.objects.filter(conversation=conversation).count)() == 1
    texts = await db(lambda: dict(Utterance.objects.values_list("item_id", "text")))()
    assert texts == {"u1": "nul\ufffd \ufffdhere", "a1": "Hi\ufffd there \ufffd"}
    events = await db(lambda: list(Event.objects.order_by("seq").values_list("seq", "repairs", "payload")))()
    assert [(seq, repairs) for seq, repairs, _ in events] == [(1, None), (2, {"replaced": 2}), (3, {"replaced": 2})]
    assert events[1][2]["transcript"] == "nul\ufffd \ufffdhere"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_over_long_text_is_cut_and_recorded(alice, conversation_for_alice, settings):
    settings.TRANSCRIPT_MAX_CHARS = 10
    socket = await open_socket(alice, conversation_for_alice.uuid)
    await socket.events([user_audio("u1"), transcribed("u1", "eleven char", tokens=7)])
    await socket.close()
    assert await db(lambda: Utterance.objects.get(item_id="u1").text)() == "eleven cha"
    assert (await db(Conversation.objects.get)(pk=conversation_for_alice.pk)).transcription_tokens == 7
    repairs = await db(lambda: Event.objects.get(seq=2).repairs)()
    assert repairs == {"truncated": [{"field": "transcript", "chars": 11}]}


# --- item 6: late frames for an ended conversation -------------------------------------------------------


@db
def end_at(conversation, seconds_ago, status=Conversation.Status.ENDED):
    Conversation.objects.filter(pk=conversation.pk).update(
        status=status, ended_at=timezone.now() - timedelta(seconds=seconds_ago)
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_frames_after_the_late_window_are_refused(alice, conversation_for_alice, settings):
    conversation = conversation_for_alice
    socket = await open_socket(alice, conversation.uuid)
    await socket.events([user_audio("u1")])
    # Ended while the socket is open: the check is made when storing, not at connect.
    await end_at(conversation, settings.CONVERSATION_LATE_EVENTS_SECONDS - 30)
    assert await socket.request(frame(2, transcribed("u1", "late but in time"))) == {"type": "ack", "seq": 2}
    await end_at(conversation, settings.CONVERSATION_LATE_EVENTS_SECONDS + 1)
    reply = await socket.request(frame(3, user_text("t1", "too late")))
    assert (reply["type"], reply["seq"], reply["code"]) == ("error", 3, "conversation_closed")
    # A resend of what was stored is still acked; the socket stays usable.
    assert await socket.request(frame(2, transcribed("u1", "late but in time"))) == {"type": "ack", "seq": 2}
    assert await socket.request({"type": "ping"}) == {"type": "pong"}
    await socket.close()
    assert await stored(conversation) == [1, 2]

    # A new segment (a new key for the same conversation) makes it active again: frames are stored.
    conversation = await db(Conversation.objects.get)(pk=conversation.pk)
    plan = SessionPlan(model=conversation.model, voice=conversation.voice, turn_detection="server_vad")
    await arecord_session(alice, plan, conversation)
    socket = await open_socket(alice, conversation.uuid)
    assert await socket.request(frame(3, user_text("t1", "back again"))) == {"type": "ack", "seq": 3}
    await socket.close()
    assert await stored(conversation) == [1, 2, 3]


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_end_then_late_transcript_is_kept(alice, conversation_for_alice, settings):
    socket = await open_socket(alice, conversation_for_alice.uuid)
    await socket.events([user_audio("u1")])
    await socket.send({"type": "end"})
    assert (await socket.receive())["type"] == "ended"
    # The user's transcript arrives after they pressed Stop: within the window, stored.
    assert await socket.request(frame(2, transcribed("u1", "said before stop"))) == {"type": "ack", "seq": 2}
    settings.CONVERSATION_LATE_EVENTS_SECONDS = 0
    reply = await socket.request(frame(3, user_text("t1", "much later")))
    assert reply["code"] == "conversation_closed"
    await socket.close()
    assert await db(lambda: Utterance.objects.get(item_id="u1").text)() == "said before stop"
