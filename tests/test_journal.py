"""conversations/transcript/journal.py and live.py without a socket: appending, rebuilding, ending."""

import dataclasses
import subprocess
import sys
import uuid

import pytest
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations import actions
from conversations.models import Conversation, Event, ResponseUsage, TokenUsage, TranscriptionUsage, Utterance
from conversations.transcript import journal, live, order, reducer
from conversations.transcript.frames import Frame
from tests.support.events import (
    SCENARIOS,
    assistant,
    audio_done,
    load_scenario,
    output_item,
    response_done,
    transcribed,
    turn_events,
    user_audio,
)
from tests.support.factories import make_conversation, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation():
    return make_conversation(make_user("carol"))


def frames(events, first_seq=1):
    return [Frame("event", seq, e) for seq, e in enumerate(events, start=first_seq)]


def untimed(utterances):
    return [dataclasses.replace(u, created_at=None, completed_at=None) for u in utterances]


def snapshot(conversation):
    conversation.refresh_from_db()
    utterances = [
        reducer.UtteranceState(**{n: getattr(u, n) for n in reducer.UtteranceState.FIELDS})
        for u in conversation.utterances.order_by("position")
    ]
    usages = list(conversation.usages.order_by("response_id").values_list("response_id", "status", *TokenUsage.USAGE_FIELDS))
    transcriptions = list(
        conversation.transcriptions.order_by("item_id").values_list("item_id", "source", *TranscriptionUsage.USAGE_FIELDS)
    )
    fields = {n: getattr(conversation, n) for n in journal.CONVERSATION_UPDATE_FIELDS}
    return utterances, usages, transcriptions, fields


def test_append_is_idempotent(conversation):
    batch = frames(turn_events(5))
    first = journal.append_frames(conversation.pk, batch[:7])
    assert (first.stored, first.seqs, first.found, first.failed) == (7, list(range(1, 8)), True, False)
    assert [u.item_id for u in first.changed] == ["u0", "a0", "u1"]
    before = snapshot(conversation)
    again = journal.append_frames(conversation.pk, batch[:7])
    assert (again.stored, again.changed) == (0, [])
    assert snapshot(conversation) == before
    rest = journal.append_frames(conversation.pk, batch)  # the whole outbox again
    assert rest.stored == len(batch) - 7
    assert Event.objects.filter(conversation=conversation).count() == len(batch)


def test_started_at_is_the_first_batch_and_last_activity_the_latest(conversation):
    batch = frames(turn_events(2))
    journal.append_frames(conversation.pk, batch[:3])
    conversation.refresh_from_db()
    started = conversation.started_at
    assert started is not None and conversation.last_activity_at == started
    journal.append_frames(conversation.pk, batch[3:])
    conversation.refresh_from_db()
    assert conversation.started_at == started
    assert conversation.last_activity_at > started


def test_repeated_seq_within_one_batch_is_stored_once(conversation):
    batch = frames([{"type": "x"}, {"type": "y"}])
    result = journal.append_frames(conversation.pk, [batch[0], batch[0], batch[1], batch[0]])
    assert result.stored == 2 and result.seqs == [1, 1, 2, 1]


def test_a_gap_filled_later_is_stored(conversation):
    batch = frames([{"type": "a"}, {"type": "b"}, {"type": "c"}])
    journal.append_frames(conversation.pk, [batch[0], batch[2]])
    assert journal.append_frames(conversation.pk, batch).stored == 1
    assert journal.last_seq(conversation.pk) == 3


def test_unknown_conversation():
    result = journal.append_frames(10**9, frames([{"type": "x"}]))
    assert (result.found, result.stored) == (False, 0)


def test_one_failing_conversation_does_not_hold_back_the_others(conversation, monkeypatch):
    other = make_conversation(conversation.user)
    real = journal._append_locked

    def flaky(merged):
        if conversation.pk in merged:
            raise RuntimeError("this one is broken")
        return real(merged)

    monkeypatch.setattr(journal, "_append_locked", flaky)
    results = journal.append_batches([(conversation.pk, frames([{"type": "x"}])), (other.pk, frames([{"type": "y"}]))])
    assert results[conversation.pk].failed and not results[other.pk].failed
    assert list(Event.objects.values_list("conversation_id", flat=True)) == [other.pk]


def test_many_conversations_in_one_transaction():
    user = make_user("dave")
    conversations = [make_conversation(user) for _ in range(30)]
    events = turn_events(3)
    for start in range(0, len(events), 4):
        results = journal.append_batches(
            [(c.pk, frames(events[start : start + 4], first_seq=start + 1)) for c in conversations]
        )
        assert all(r.stored == len(events[start : start + 4]) for r in results.values())
    for c in conversations:
        assert list(c.utterances.order_by("position").values_list("text", flat=True)) == [
            "question 0", "answer 0", "question 1", "answer 1", "question 2", "answer 2"
        ]  # fmt: skip
        c.refresh_from_db()
        assert (c.input_tokens, c.output_tokens, c.transcription_tokens, c.title) == (6, 9, 3, "question 0")


@pytest.mark.parametrize("name", SCENARIOS)
def test_rebuild_gives_what_live_gave(name, conversation):
    events = load_scenario(name)["events"]
    for start in range(0, len(events), 3):
        journal.append_frames(conversation.pk, frames(events[start : start + 3], first_seq=start + 1))
    live_result = snapshot(conversation)
    assert journal.rebuild(conversation).status == "unchanged"
    Utterance.objects.filter(conversation=conversation).delete()
    ResponseUsage.objects.filter(conversation=conversation).delete()
    TranscriptionUsage.objects.filter(conversation=conversation).delete()
    Conversation.objects.filter(pk=conversation.pk).update(output_tokens=0, started_at=None, transcription_tokens=0)
    result = journal.rebuild(conversation)
    assert (result.status, result.events) == ("rebuilt", len(events))
    assert result.transcriptions == len(live_result[2])
    assert snapshot(conversation) == live_result
    assert journal.rebuild(conversation).status == "unchanged"


EVENT_POOL = turn_events(4) + load_scenario("barge_in")["events"] + load_scenario("failed_transcription")["events"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(EVENT_POOL), min_size=1, max_size=30),
    st.lists(st.integers(1, 8), max_size=8),
    st.randoms(use_true_random=False),
)
def test_live_in_any_batches_then_rebuild_is_unchanged(conversation, events, cuts, rnd):
    """Whatever the batching (and resends of earlier frames), a rebuild finds nothing to change."""
    with transaction.atomic():
        all_frames = frames(events)
        start = 0
        for size in [*cuts, len(all_frames)]:
            batch = all_frames[start : start + size]
            if start and rnd.random() < 0.3:
                prior = all_frames[:start]
                batch = rnd.sample(prior, min(len(prior), 3)) + batch  # a resend mixed in
            start += size
            if batch:
                journal.append_frames(conversation.pk, batch)
        state = reducer.TranscriptState()
        reducer.fold(state, [(f.event, timezone.now()) for f in all_frames])
        state.utterances = order.placed(state.utterances)
        utterances, *_ = snapshot(conversation)
        assert untimed(utterances) == untimed(sorted(state.utterances.values(), key=lambda u: u.position))
        assert journal.rebuild(conversation).status == "unchanged"
        transaction.set_rollback(True)


def test_serialize_utterance_is_the_same_for_rows_and_reducer_states(conversation):
    journal.append_frames(conversation.pk, frames(turn_events(1)))
    row = conversation.utterances.get(position=0)
    state = journal.to_state(row)
    assert live.serialize_utterance(row) == live.serialize_utterance(state)
    assert live.serialize_utterance(row) == {
        "item_id": "u0", "role": "user", "kind": "audio", "text": "question 0", "status": "completed", "error": "",
        "response_id": "", "position": 0, "created_at": row.created_at.isoformat(),
        "completed_at": row.completed_at.isoformat(), "verified": False, "previous_item_id": "",
    }  # fmt: skip


def test_group_name_is_a_valid_channel_layer_name():
    value = uuid.uuid4()
    assert live.group_name(value) == live.group_name(str(value)) == f"conversation.{value.hex}"
    assert get_channel_layer().require_valid_group_name(live.group_name(value))


def test_rebuild_command_exits_non_zero_without_traceback():
    result = subprocess.run(
        [sys.executable, "manage.py", "rebuild_transcripts", "--conversation", "not-a-uuid"],
        capture_output=True, text=True, timeout=60,
        env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode != 0
    assert "not a conversation id" in result.stderr and "Traceback" not in result.stderr


# --- conflicts and the review mark ---------------------------------------------------------------------


def attacked_stream():
    return [
        user_audio("u1"), transcribed("u1", "Hello?"), assistant("a1"), audio_done("a1", "r1", "Hi."),
        response_done("r1", output=[output_item("a1", "Hi.")]),
        transcribed("u1", "Goodbye."), audio_done("a1", "r1", "Go away."), assistant("u1", "completed", "x"),
        {"type": "conversation.item.deleted", "item_id": "a1"}, audio_done("a1", "r1", "Hi."),
    ]  # fmt: skip


@pytest.mark.parametrize("size", [1, 3, 10])
def test_conflicts_counted_live_are_what_a_rebuild_counts(conversation, size):
    events = attacked_stream()
    for start in range(0, len(events), size):
        journal.append_frames(conversation.pk, frames(events[start : start + size], first_seq=start + 1))
    conversation.refresh_from_db()
    assert conversation.conflicts == 3
    assert [(u.role, u.text, u.status) for u in conversation.utterances.order_by("position")] == [
        ("user", "Hello?", "completed"), ("assistant", "Hi.", "deleted")
    ]  # fmt: skip
    assert journal.rebuild(conversation).status == "unchanged"
    Conversation.objects.filter(pk=conversation.pk).update(conflicts=0)
    assert journal.rebuild(conversation).status == "rebuilt"
    conversation.refresh_from_db()
    assert conversation.conflicts == 3


def test_a_change_clears_the_review_mark_and_nothing_else_does(conversation):
    reviewer = make_user("staff", is_staff=True)
    events = turn_events(1)
    journal.append_frames(conversation.pk, frames(events))
    actions.set_reviewed(Conversation.objects.filter(pk=conversation.pk), reviewer)
    # Events that change nothing (a resend, a session event, the same final text again) keep it.
    journal.append_frames(conversation.pk, frames(events))
    journal.append_frames(conversation.pk, frames([{"type": "session.updated"}, events[2]], first_seq=len(events) + 1))
    conversation.refresh_from_db()
    assert conversation.reviewed and conversation.reviewed_by == reviewer
    assert journal.rebuild(conversation).status == "unchanged"
    conversation.refresh_from_db()
    assert conversation.reviewed
    # A rebuild that changes what staff saw clears it too (the journal says something else).
    Utterance.objects.filter(conversation=conversation, item_id="a0").update(text="garbled")
    assert journal.rebuild(conversation).status == "rebuilt"
    conversation.refresh_from_db()
    assert (conversation.reviewed, conversation.reviewed_at, conversation.reviewed_by) == (False, None, None)
    # And so does a new line.
    actions.set_reviewed(Conversation.objects.filter(pk=conversation.pk), reviewer)
    journal.append_frames(conversation.pk, frames(turn_events(1, prefix="x")[:1], first_seq=len(events) + 3))
    conversation.refresh_from_db()
    assert not conversation.reviewed and conversation.reviewed_by is None
