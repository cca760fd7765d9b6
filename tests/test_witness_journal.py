"""The journal's two streams: the browser's (transcript socket) and the server's own witness of the
call (`source="server"`). What the witness saw wins: the role and final text of a line, and the
usage of a response; a browser event never replaces what the server set (docs/architecture.md)."""

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations.models import Conversation, Event, ResponseUsage, TokenUsage, TranscriptionUsage, Utterance
from conversations.transcript import journal, reducer
from conversations.transcript.frames import Frame, server_frame
from conversations.transcript.reducer import SERVER, TranscriptState
from tests.support.events import (
    assistant,
    audio_done,
    output_item,
    response_done,
    transcribed,
    transcription_failed,
    turn_events,
    user_audio,
    user_text,
)
from tests.support.factories import make_conversation, make_user

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(stream, state=None):
    """Fold (source, event) pairs; returns (state, changes)."""
    state = state or TranscriptState()
    changes = reducer.fold(state, [(e, T0 + timedelta(seconds=i), src) for i, (src, e) in enumerate(stream)])
    return state, changes


def browser(*events):
    return [("browser", e) for e in events]


def server(*events):
    return [("server", e) for e in events]


def line(state, item_id):
    u = state.utterances[item_id]
    return (u.role, u.text, u.status, u.verified)


def totals(changes):
    total = dict.fromkeys(TokenUsage.USAGE_FIELDS, 0)
    for usage in changes.usages:
        for name, count in usage.counts.items():
            total[name] += count
    return total


# A witnessed turn: the user says "hello", the assistant answers "the real answer".
def witnessed_turn(n=0, answer="the real answer"):
    return server(
        user_audio(f"u{n}"), assistant(f"a{n}"), audio_done(f"a{n}", f"r{n}", answer),
        response_done(f"r{n}", output=[output_item(f"a{n}", answer)], input_tokens=5, output_tokens=7),
        transcribed(f"u{n}", "hello", tokens=2),
    )  # fmt: skip


# The same turn as a browser that forges it reports it: the user line made an assistant's, the
# answer another text, the usage next to nothing.
def forged_turn(n=0):
    return browser(
        assistant(f"u{n}", "completed", "I said this", event="conversation.item.done"),
        assistant(f"a{n}"), audio_done(f"a{n}", f"r{n}", "a forged answer"),
        response_done(f"r{n}", output=[output_item(f"a{n}", "a forged answer")], input_tokens=0, output_tokens=1),
    )  # fmt: skip


# --- the reducer ---------------------------------------------------------------------------------


def test_the_browser_cannot_change_what_the_witness_saw():
    state, changes = run(witnessed_turn() + forged_turn())
    assert line(state, "u0") == ("user", "hello", "completed", True)
    assert line(state, "a0") == ("assistant", "the real answer", "completed", True)
    # The role change, the other text (twice: its transcript and its response.done's item).
    assert changes.conflicts == 3
    assert [(u.response_id, u.source) for u in changes.usages] == [("r0", SERVER)]
    assert totals(changes)["input_tokens"] == 5 and totals(changes)["output_tokens"] == 7
    assert changes.transcription_tokens == 2


def test_the_witness_replaces_what_the_browser_forged_before_it():
    state, changes = run(forged_turn() + witnessed_turn())
    assert line(state, "u0") == ("user", "hello", "completed", True)
    assert line(state, "a0") == ("assistant", "the real answer", "completed", True)
    assert state.utterances["u0"].position == 0 and state.utterances["a0"].position == 1
    assert changes.conflicts >= 2  # the role, the text
    # The browser's response.done was replaced, within these changes: only the witness's is left.
    assert [(u.response_id, u.source) for u in changes.usages] == [("r0", SERVER)]
    assert changes.replaced_usages == []
    assert totals(changes)["output_tokens"] == 7


def test_a_witness_usage_replaces_a_browser_usage_recorded_earlier():
    state, _ = run(browser(response_done("r1", input_tokens=0, output_tokens=1)))
    _, later = run(server(response_done("r1", input_tokens=50, output_tokens=70)), state)
    assert [(u.source, u.counts["output_tokens"]) for u in later.replaced_usages] == [("browser", 1)]
    assert [(u.source, u.counts["output_tokens"]) for u in later.usages] == [(SERVER, 70)]
    _, again = run(browser(response_done("r1", input_tokens=0, output_tokens=1)) + server(response_done("r1")), state)
    assert again.usages == [] and again.replaced_usages == []  # once the witness's, it stays


def test_lines_the_browser_agrees_on_are_verified_without_a_conflict():
    state, changes = run(browser(*[e for _, e in witnessed_turn()]) + witnessed_turn())
    assert changes.conflicts == 0
    assert line(state, "u0") == ("user", "hello", "completed", True)
    assert line(state, "a0") == ("assistant", "the real answer", "completed", True)
    assert changes.transcription_tokens == 2  # the item's transcription counted once


def test_a_line_the_witness_did_not_see_is_not_verified():
    state, changes = run(witnessed_turn() + browser(user_text("t1", "typed"), transcribed("u0", "hello")))
    assert line(state, "t1") == ("user", "typed", "completed", False)
    assert changes.conflicts == 0


def test_the_browser_cannot_hide_what_the_witness_heard():
    state, changes = run(server(user_audio("u1"), transcribed("u1", "something I said")) + browser(
        transcription_failed("u1"), user_text("u1", "something else")))  # fmt: skip
    assert line(state, "u1") == ("user", "something I said", "completed", True)
    assert changes.conflicts == 1  # the failure (the typed text is not the spoken line's: ignored)
    # Nor invent what it did not: a failed transcription the witness saw stays failed.
    state, changes = run(server(user_audio("u2"), transcription_failed("u2")) + browser(transcribed("u2", "made up")))
    assert line(state, "u2") == ("user", "", "failed", True)
    assert changes.conflicts == 1


def test_a_typed_line_the_browser_made_up_for_spoken_input_is_replaced():
    state, changes = run(browser(user_text("u1", "forged")) + server(user_audio("u1"), transcribed("u1", "real")))
    assert line(state, "u1") == ("user", "real", "completed", True)
    assert state.utterances["u1"].kind == "audio"
    assert changes.conflicts == 1


def test_browser_only_streams_are_reduced_as_before():
    events = turn_events(2)
    pairs_state = TranscriptState()
    pairs = reducer.fold(pairs_state, [(e, T0) for e in events])
    triples_state = TranscriptState()
    triples = reducer.fold(triples_state, [(e, T0, "browser") for e in events])
    assert pairs_state == triples_state and pairs == triples
    assert not any(u.verified for u in triples_state.utterances.values())


# --- the journal ---------------------------------------------------------------------------------

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation():
    return make_conversation(make_user("carol"))


def frames(events, first_seq=1, source="browser"):
    return [Frame("event", seq, e, source=source) for seq, e in enumerate(events, start=first_seq)]


def stored(conversation):
    return [
        (u.item_id, u.role, u.text, u.status, u.verified)
        for u in Utterance.objects.filter(conversation=conversation).order_by("position")
    ]


def test_each_stream_has_its_own_seqs(conversation):
    journal.append_frames(conversation.pk, frames([e for _, e in witnessed_turn()], source="server"))
    journal.append_frames(conversation.pk, frames([user_audio("u0")]))
    assert journal.last_seq(conversation.pk) == 1
    assert journal.last_seq(conversation.pk, source="server") == 5
    assert sorted(Event.objects.values_list("source", "seq")) == [("browser", 1)] + [("server", n) for n in range(1, 6)]
    again = journal.append_frames(conversation.pk, frames([user_audio("u0")], source="server"))
    assert again.stored == 0  # server seq 1 is stored: a resend


def test_forged_browser_frames_after_the_witness_change_nothing_but_the_conflicts(conversation):
    journal.append_frames(conversation.pk, frames([e for _, e in witnessed_turn()], source="server"))
    before = stored(conversation)
    journal.append_frames(conversation.pk, frames([e for _, e in forged_turn()]))
    assert stored(conversation) == before == [
        ("u0", "user", "hello", "completed", True), ("a0", "assistant", "the real answer", "completed", True),
    ]  # fmt: skip
    conversation.refresh_from_db()
    assert (conversation.conflicts, conversation.input_tokens, conversation.output_tokens) == (3, 5, 7)
    assert list(ResponseUsage.objects.values_list("response_id", "source", "output_tokens")) == [("r0", "server", 7)]


def test_the_witness_replaces_the_browser_usage_in_the_totals(conversation):
    journal.append_frames(conversation.pk, frames([e for _, e in forged_turn()]))
    conversation.refresh_from_db()
    assert (conversation.input_tokens, conversation.output_tokens) == (0, 1)
    Conversation.objects.filter(pk=conversation.pk).update(reviewed=True)
    journal.append_frames(conversation.pk, frames([e for _, e in witnessed_turn()], source="server"))
    conversation.refresh_from_db()
    assert (conversation.input_tokens, conversation.output_tokens, conversation.transcription_tokens) == (5, 7, 2)
    assert not conversation.reviewed
    assert list(ResponseUsage.objects.values_list("response_id", "source", "output_tokens")) == [("r0", "server", 7)]
    assert stored(conversation) == [
        ("u0", "user", "hello", "completed", True), ("a0", "assistant", "the real answer", "completed", True),
    ]  # fmt: skip
    assert journal.rebuild(conversation).status == "unchanged"


def test_the_witness_is_not_refused_for_the_users_storage_bounds(conversation, settings):
    settings.TRANSCRIPT_MAX_BYTES_PER_CONVERSATION = 1000
    result = journal.append_frames(
        conversation.pk, [dataclasses.replace(f, size=600) for f in frames([e for _, e in witnessed_turn()], source="server")]
    )
    assert (result.stored, result.refused_server) == (5, {})
    conversation.refresh_from_db()
    assert conversation.stored_bytes == 3000  # counted: the bounds say what is stored
    refused = journal.append_frames(conversation.pk, [dataclasses.replace(f, size=10) for f in frames([user_audio("x")])])
    assert refused.stored == 0 and refused.refused[1].code == "quota_exceeded"


def test_the_witness_is_refused_after_the_late_events_window(conversation, settings):
    Conversation.objects.filter(pk=conversation.pk).update(
        status="ended", ended_at=timezone.now() - timedelta(seconds=settings.CONVERSATION_LATE_EVENTS_SECONDS + 1)
    )
    result = journal.append_frames(conversation.pk, frames([user_audio("u0")], source="server"))
    assert result.stored == 0 and result.refused_server[1].code == "conversation_closed" and result.refused == {}


def test_a_server_frame_is_made_storable():
    frame = server_frame(3, '{"type":"conversation.item.added","item":{"id":"u1","type":"message","role":"user",'
                            '"content":[{"type":"input_text","text":"a\\u0000b"}]}}', max_chars=100)  # fmt: skip
    assert (frame.source, frame.seq, frame.repairs) == ("server", 3, {"replaced": 1})
    assert frame.event["item"]["content"][0]["text"] == "a\ufffdb"
    with pytest.raises(ValueError):
        server_frame(1, "[1]", max_chars=100)


def snapshot(conversation):
    conversation.refresh_from_db()
    utterances = [journal.to_state(u) for u in conversation.utterances.order_by("position")]
    usages = list(conversation.usages.order_by("response_id").values_list("response_id", "status", "source",
                                                                          *TokenUsage.USAGE_FIELDS))  # fmt: skip
    transcriptions = list(conversation.transcriptions.order_by("item_id").values_list(
        "item_id", "source", *TranscriptionUsage.USAGE_FIELDS))  # fmt: skip
    return utterances, usages, transcriptions, {n: getattr(conversation, n) for n in journal.CONVERSATION_UPDATE_FIELDS}


def untimed(utterances):
    return [dataclasses.replace(u, created_at=None, completed_at=None) for u in utterances]


WITNESS_POOL = [e for _, e in witnessed_turn(0) + witnessed_turn(1, "second answer")] + [
    transcription_failed("u1"), response_done("r0", "cancelled", input_tokens=1, output_tokens=1),
]  # fmt: skip
BROWSER_POOL = WITNESS_POOL + [e for _, e in forged_turn(0) + forged_turn(1)] + [user_text("u1", "typed")]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(WITNESS_POOL), max_size=12),
    st.lists(st.sampled_from(BROWSER_POOL), max_size=12),
    st.lists(st.tuples(st.booleans(), st.integers(1, 4)), max_size=12),
)
def test_mixed_streams_live_in_any_batches_then_rebuild_is_unchanged(conversation, witness, forwarded, cuts):
    """Whatever the interleaving and batching of the two streams, live and rebuild agree, and both
    agree with the pure reducer run over the journal in its order."""
    with transaction.atomic():
        pending = {"server": frames(witness, source="server"), "browser": frames(forwarded)}
        for from_server, size in [*cuts, (True, len(witness)), (False, len(forwarded))]:
            source = "server" if from_server else "browser"
            batch, pending[source] = pending[source][:size], pending[source][size:]
            if batch:
                journal.append_frames(conversation.pk, batch)
        state = TranscriptState()
        reducer.fold(state, Event.objects.filter(conversation=conversation).order_by("id")
                     .values_list("payload", "received_at", "source"))  # fmt: skip
        live = snapshot(conversation)
        assert untimed(live[0]) == untimed(sorted(state.utterances.values(), key=lambda u: u.position))
        assert journal.rebuild(conversation).status == "unchanged"
        Utterance.objects.filter(conversation=conversation).delete()
        ResponseUsage.objects.filter(conversation=conversation).delete()
        TranscriptionUsage.objects.filter(conversation=conversation).delete()
        Conversation.objects.filter(pk=conversation.pk).update(output_tokens=0, conflicts=0, transcription_tokens=0)
        journal.rebuild(conversation)
        assert snapshot(conversation) == live
        transaction.set_rollback(True)


def test_a_late_witness_and_the_pages_earlier_turn_in_one_transaction_keep_the_order_said(conversation):
    """The witness attached after turn 1: its turn 2 and the page's turn 1 reach one transaction,
    the page's first. Items take their places in that order: turn 1's lines stay before turn 2's."""
    turn = lambda n: [e for _, e in witnessed_turn(n)]  # noqa: E731
    journal.append_batches(
        [(conversation.pk, frames(turn(1))), (conversation.pk, frames(turn(2), source="server"))]
    )
    assert [item for item, *_ in stored(conversation)] == ["u1", "a1", "u2", "a2"]
