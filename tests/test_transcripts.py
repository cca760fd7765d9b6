"""The reducer (conversations/transcript/reducer.py) and the frame parser (conversations/transcript/frames.py).

Pure code: no database. The same scenarios run through the socket and `rebuild_transcripts` in
test_consumer.py.
"""

import copy
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conversations.models import TokenUsage
from conversations.transcript import frames, reducer
from conversations.transcript.frames import MAX_SEQ, FrameError, parse_frame
from conversations.transcript.reducer import (
    ASSISTANT,
    AUDIO,
    COMPLETED,
    DELETED,
    FAILED,
    INTERRUPTED,
    MAX_COUNT,
    PENDING,
    TEXT,
    USER,
    TranscriptState,
    fold,
    reduce,
)
from tests.support.events import (
    SCENARIOS,
    assistant,
    audio_done,
    load_scenario,
    output_item,
    response_done,
    text_done,
    transcribed,
    transcription_failed,
    user_audio,
    user_text,
)

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def run(events, state=None):
    """Fold events (one second apart) into a fresh or given state; returns (state, changes)."""
    state = state or TranscriptState()
    changes = fold(state, [(e, T0 + timedelta(seconds=i)) for i, e in enumerate(events)])
    return state, changes


def ordered(state):
    return sorted(state.utterances.values(), key=lambda u: u.position)


def lines(state):
    return [(u.role, u.kind, u.status, u.text) for u in ordered(state)]


def usage_totals(changes):
    return {name: sum(u.counts[name] for u in changes.usages) for name in TokenUsage.USAGE_FIELDS}


# --- the recorded scenarios ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIOS)
def test_recorded_scenario_gives_the_expected_transcript(name):
    scenario = load_scenario(name)
    expected = scenario["expected"]
    state, changes = run(scenario["events"])
    got = [
        {k: getattr(u, k) for k in ("item_id", "role", "kind", "status", "text", "error", "response_id")}
        for u in ordered(state)
    ]
    assert got == expected["utterances"]
    assert [u.position for u in ordered(state)] == list(range(len(got)))
    assert usage_totals(changes) == expected["usage"]
    assert {u.response_id: u.status for u in changes.usages} == expected["responses"]
    assert changes.transcription_tokens == expected["transcription_tokens"]
    assert changes.title == expected["title"]


def test_scenarios_cover_the_issue():
    assert {"voice_turn", "typed_turn", "barge_in", "failed_transcription", "beta_spellings"} <= set(SCENARIOS)


@pytest.mark.parametrize("name", SCENARIOS)
def test_replaying_a_scenario_twice_changes_nothing(name):
    events = load_scenario(name)["events"]
    state, _ = run(events)
    before = copy.deepcopy(state)
    _, again = run(events, state)
    assert not again.utterances and not again.usages and not again.transcription_tokens and again.title is None
    assert state.utterances == before.utterances


# --- ordering -------------------------------------------------------------------------------------


def test_late_user_transcript_stays_before_the_reply():
    state, _ = run([
        user_audio("u1"), assistant("a1"), audio_done("a1", "r1", "Hello!"), response_done("r1"),
        transcribed("u1", "Hi"),
    ])  # fmt: skip
    assert lines(state) == [(USER, AUDIO, COMPLETED, "Hi"), (ASSISTANT, AUDIO, COMPLETED, "Hello!")]


def test_position_is_fixed_by_the_first_event_that_names_the_item():
    # The transcript of an item never announced places it; its late item event does not move it.
    state, _ = run([audio_done("a1", "r1", "Hello!"), user_audio("u1"), assistant("a1", "completed", "Hello!")])
    assert [(u.item_id, u.position) for u in ordered(state)] == [("a1", 0), ("u1", 1)]


def test_transcript_for_an_unknown_user_item_creates_it():
    state, _ = run([transcribed("u9", "Out of nowhere", tokens=5)])
    assert lines(state) == [(USER, AUDIO, COMPLETED, "Out of nowhere")]


def test_failure_for_an_unknown_item_creates_it_failed():
    state, _ = run([transcription_failed("u9")])
    [u] = ordered(state)
    assert (u.role, u.status, u.error) == (USER, FAILED, "Audio is unintelligible.")


def test_committed_buffer_names_the_user_item_first():
    state, _ = run([
        {"type": "input_audio_buffer.committed", "item_id": "u1", "previous_item_id": None},
        assistant("a1"), user_audio("u1"),
    ])  # fmt: skip
    assert [u.item_id for u in ordered(state)] == ["u1", "a1"]


# --- user items -------------------------------------------------------------------------------------


def test_user_audio_is_pending_until_transcribed():
    state, _ = run([user_audio("u1"), {**user_audio("u1"), "type": "conversation.item.done"}])
    assert lines(state) == [(USER, AUDIO, PENDING, "")]
    state, _ = run([transcribed("u1", "  spoken words ")], state)
    assert lines(state) == [(USER, AUDIO, COMPLETED, "  spoken words ")]
    assert state.utterances["u1"].completed_at is not None


def test_failed_transcription_keeps_the_reason():
    state, _ = run([user_audio("u1"), transcription_failed("u1")])
    u = state.utterances["u1"]
    assert (u.status, u.error, u.text) == (FAILED, "Audio is unintelligible.", "")


def test_failure_without_message_keeps_the_code_and_a_late_success_wins():
    event = transcription_failed("u1")
    del event["error"]["message"]
    state, _ = run([user_audio("u1"), event])
    assert state.utterances["u1"].error == "audio_unintelligible"
    state, _ = run([transcribed("u1", "after all")], state)
    assert (state.utterances["u1"].status, state.utterances["u1"].error) == (COMPLETED, "")
    # ...but a failure after a success does not undo it.
    state, changes = run([transcription_failed("u1")], state)
    assert state.utterances["u1"].status == COMPLETED and not changes.utterances


def test_typed_user_message_is_a_completed_text_utterance():
    state, _ = run([user_text("t1", "Hello there")])
    assert lines(state) == [(USER, TEXT, COMPLETED, "Hello there")]


def test_transcription_events_do_not_touch_typed_or_assistant_items():
    state, _ = run([user_text("t1", "typed"), assistant("a1"), transcribed("t1", "x", 5), transcribed("a1", "y", 5)])
    assert lines(state) == [(USER, TEXT, COMPLETED, "typed"), (ASSISTANT, AUDIO, PENDING, "")]


# --- assistant items ----------------------------------------------------------------------------------


def test_barge_in_marks_the_reply_interrupted_and_keeps_its_text():
    state, changes = run([
        user_audio("u1"), assistant("a1"), audio_done("a1", "r1", "There are three"),
        response_done("r1", "cancelled", [output_item("a1", "There are three", "incomplete")]),
    ])  # fmt: skip
    assert state.utterances["a1"].status == INTERRUPTED
    assert state.utterances["a1"].text == "There are three"
    assert [u.status for u in changes.usages] == ["cancelled"]


def test_transcript_arriving_after_a_cancelled_response_stays_interrupted():
    state, _ = run([assistant("a1"), response_done("r1", "cancelled", [output_item("a1", None, "incomplete")])])
    state, _ = run([audio_done("a1", "r1", "partial words")], state)
    assert (state.utterances["a1"].status, state.utterances["a1"].text) == (INTERRUPTED, "partial words")


def test_a_partial_state_knows_a_cancelled_response_through_the_utterance():
    # The journal loads only what a batch names: here the transcript names no response id.
    state, _ = run([assistant("a1"), response_done("r1", "cancelled", [output_item("a1", None, "incomplete")])])
    partial = TranscriptState(utterances={"a1": state.utterances["a1"]}, responses={"r1": state.responses["r1"]},
                              next_position=1)  # fmt: skip
    event = audio_done("a1", "r1", "words")
    del event["response_id"]
    run([event], partial)
    assert partial.utterances["a1"].status == INTERRUPTED


def test_incomplete_item_is_interrupted():
    state, _ = run([assistant("a1"), assistant("a1", "incomplete", "cut", event="conversation.item.done")])
    assert (state.utterances["a1"].status, state.utterances["a1"].text) == (INTERRUPTED, "cut")


def test_failed_response_keeps_its_error():
    event = response_done("r1", "failed", [output_item("a1", "", "incomplete")])
    event["response"]["status_details"] = {"type": "failed", "error": {"type": "server_error", "message": "Boom."}}
    state, _ = run([assistant("a1"), event])
    assert (state.utterances["a1"].status, state.utterances["a1"].error) == (INTERRUPTED, "Boom.")
    # Without a reason, a failed reply still says it failed (an interrupted one says nothing).
    state, _ = run([assistant("a1"), response_done("r1", "failed", [output_item("a1", "Let me", "incomplete")])])
    assert (state.utterances["a1"].status, state.utterances["a1"].error) == (INTERRUPTED, "The reply failed.")
    assert state.utterances["a1"].text == "Let me"


# --- truncated and deleted items ----------------------------------------------------------------------


def truncated(item_id, audio_end_ms=1200):
    return {"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0, "audio_end_ms": audio_end_ms}


def deleted(item_id):
    return {"type": "conversation.item.deleted", "item_id": item_id}


def test_a_truncated_reply_is_interrupted_and_keeps_the_generated_text():
    state, _ = run([assistant("a1"), audio_done("a1", "r1", "All of it."), response_done("r1"), truncated("a1")])
    assert lines(state) == [(ASSISTANT, AUDIO, INTERRUPTED, "All of it.")]
    # Cut before its transcript arrived: the transcript keeps the mark.
    state, _ = run([assistant("a1"), truncated("a1"), audio_done("a1", "r1", "Some")])
    assert lines(state) == [(ASSISTANT, AUDIO, INTERRUPTED, "Some")]


def test_truncation_of_a_user_or_unknown_item_changes_nothing():
    state, _ = run([user_audio("u1"), truncated("u1"), truncated("nope")])
    assert lines(state) == [(USER, AUDIO, PENDING, "")]


def test_a_deleted_item_stays_marked_and_changes_no_more():
    state, _ = run([user_audio("u1"), assistant("a1"), audio_done("a1", "r1", "Hello"), deleted("a1"), deleted("u1")])
    assert lines(state) == [(USER, AUDIO, DELETED, ""), (ASSISTANT, AUDIO, DELETED, "Hello")]
    state, changes = run([transcribed("u1", "late"), audio_done("a1", "r1", "Other"), truncated("a1"),
                          response_done("r1", "cancelled", [output_item("a1", "x")]), deleted("a1")], state)  # fmt: skip
    assert lines(state)[1] == (ASSISTANT, AUDIO, DELETED, "Hello") and lines(state)[0][2:] == (DELETED, "")
    assert not changes.utterances and changes.conflicts == 0
    state, _ = run([deleted("unknown")])
    assert not state.utterances


# --- closed lines stay closed ------------------------------------------------------------------------


def test_a_line_never_changes_role_and_each_attempt_is_a_conflict():
    state, _ = run([user_audio("u1"), transcribed("u1", "Hi"), assistant("a1"), audio_done("a1", "r1", "Hello")])
    before = lines(state)
    state, changes = run([
        assistant("u1", "completed", "I am the assistant now", event="conversation.item.done"),
        audio_done("u1", "r2", "Me too"),
        user_text("a1", "The assistant's line, typed by the user"),
        transcribed("a1", "spoken by the user"),
        response_done("r2", output=[output_item("u1", "from the output")]),
    ], state)  # fmt: skip
    assert lines(state) == before
    assert changes.conflicts == 5 and not changes.utterances


def test_a_different_final_text_for_a_closed_line_is_a_conflict_not_applied():
    state, _ = run([user_audio("u1"), transcribed("u1", "Hi"), user_text("t1", "typed"), assistant("a1"),
                    audio_done("a1", "r1", "Hello"), response_done("r1")])  # fmt: skip
    before = lines(state)
    state, changes = run([
        transcribed("u1", "Hi"), audio_done("a1", "r1", "Hello"),  # the same again: no conflict
        transcribed("u1", "Bye"), user_text("t1", "edited"), audio_done("a1", "r1", "Goodbye"),
        assistant("a1", "completed", "Goodbye", event="conversation.item.done"),
    ], state)  # fmt: skip
    assert lines(state) == before
    assert changes.conflicts == 4


def test_a_closed_line_without_text_yet_still_gets_its_text():
    # Cancelled before its transcript: the transcript that follows fills it, no conflict.
    state, changes = run([assistant("a1"), response_done("r1", "cancelled", [output_item("a1", None, "incomplete")]),
                          audio_done("a1", "r1", "Well")])  # fmt: skip
    assert lines(state) == [(ASSISTANT, AUDIO, INTERRUPTED, "Well")] and changes.conflicts == 0
    state, changes = run([audio_done("a1", "r1", "Well, the")], state)
    assert lines(state) == [(ASSISTANT, AUDIO, INTERRUPTED, "Well")] and changes.conflicts == 1


def test_text_reply_is_a_text_utterance_in_both_spellings():
    for beta in (False, True):
        state, _ = run([assistant("a1"), text_done("a1", "r1", "Bonjour", beta=beta)])
        assert lines(state) == [(ASSISTANT, TEXT, COMPLETED, "Bonjour")]
        assert state.utterances["a1"].response_id == "r1"


def test_response_done_creates_items_never_announced():
    state, _ = run([response_done("r1", "completed", [output_item("a1", "From the output list")])])
    assert lines(state) == [(ASSISTANT, AUDIO, COMPLETED, "From the output list")]
    assert state.utterances["a1"].response_id == "r1"


def test_empty_item_done_does_not_erase_a_transcript():
    state, _ = run([assistant("a1"), audio_done("a1", "r1", "words"),
                    assistant("a1", "completed", "", event="conversation.item.done")])  # fmt: skip
    assert state.utterances["a1"].text == "words"


# --- usage ---------------------------------------------------------------------------------------------


def test_usage_is_counted_once_per_response():
    state, changes = run([response_done("r1", input_tokens=7, output_tokens=9), response_done("r1"),
                          response_done("r2", input_tokens=1, output_tokens=1)])  # fmt: skip
    assert [u.response_id for u in changes.usages] == ["r1", "r2"]
    assert usage_totals(changes)["input_tokens"] == 8
    # Known from an earlier batch: not counted again.
    _, again = run([response_done("r1")], TranscriptState(responses={"r1": state.responses["r1"]}))
    assert again.usages == []


def test_response_without_id_or_usage():
    _, changes = run([response_done(None), response_done("r1", usage=False)])
    assert [(u.response_id, sum(u.counts.values())) for u in changes.usages] == [("r1", 0)]


@pytest.mark.parametrize("bad", [True, -5, "12", 1.5, None, [], {}])
def test_bad_token_counts_are_zero(bad):
    event = response_done("r1")
    event["response"]["usage"]["input_tokens"] = bad
    event["response"]["usage"]["input_token_details"] = bad
    _, changes = run([event])
    assert changes.usages[0].counts["input_tokens"] == 0
    assert changes.usages[0].counts["input_text_tokens"] == 0


def test_huge_token_counts_saturate():
    event = response_done("r1", input_tokens=10**30)
    _, changes = run([event, response_done("r2", input_tokens=MAX_COUNT)])
    assert changes.usages[0].counts["input_tokens"] == MAX_COUNT
    assert reducer.saturating_add(MAX_COUNT, MAX_COUNT) == MAX_COUNT


def test_transcription_usage_is_counted_once():
    _, changes = run([user_audio("u1"), transcribed("u1", "hi", tokens=12), transcribed("u1", "hi", tokens=12)])
    assert changes.transcription_tokens == 12
    duration = transcribed("u2", "x")
    duration["usage"] = {"type": "duration", "seconds": 3}
    _, changes = run([duration])
    assert changes.transcription_tokens == 0


# --- conversation facts ---------------------------------------------------------------------------------


def test_title_comes_from_the_first_user_text():
    _, changes = run([assistant("a1"), audio_done("a1", "r1", "Assistant first"),
                      user_text("t1", "  Plan a\n trip   to Rome  "), user_text("t2", "second")])  # fmt: skip
    assert changes.title == "Plan a trip to Rome"


def test_title_is_at_most_200_characters_and_never_replaces_one():
    _, changes = run([user_text("t1", "word " * 100)])
    assert len(changes.title) == 200 and changes.title.endswith("…")
    _, changes = run([user_text("t1", "hello")], TranscriptState(has_title=True))
    assert changes.title is None
    _, changes = run([user_text("t1", "   ")])
    assert changes.title is None


def test_start_and_last_activity():
    state, changes = run([{"type": "session.created"}, {"type": "whatever"}, user_text("t1", "x")])
    assert (changes.started_at, changes.last_activity_at) == (T0, T0 + timedelta(seconds=2))
    # An event stamped earlier than the last activity does not move it back.
    changes = reduce(state, {"type": "x"}, T0)
    assert changes.started_at is None and changes.last_activity_at is None


# --- garbage in --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        {"type": "conversation.item.added", "item": {"id": "f1", "type": "function_call", "name": "x"}},
        {"type": "conversation.item.added", "item": {"id": "s1", "type": "message", "role": "system", "content": []}},
        {"type": "conversation.item.added", "item": {"id": "x" * 101, "type": "message", "role": "user", "content": []}},
        {"type": "conversation.item.added", "item": "not an object"},
        {"type": "conversation.item.added"},
        {"type": "response.output_audio_transcript.done", "item_id": 5, "transcript": "x"},
        {"type": "response.output_audio_transcript.done", "item_id": "a1", "transcript": None},
        {"type": "conversation.item.input_audio_transcription.completed", "item_id": ["u1"], "transcript": "x"},
        {"type": "response.done", "response": [1, 2]},
        {"type": "error", "error": {"code": "session_expired"}},
        {"type": ["unhashable"]},
        {"no": "type"},
        "not even an object",
    ],
)
def test_events_that_name_no_usable_item_change_no_utterance(event):
    state, changes = run([event])
    assert not state.utterances and not changes.usages


def test_reduce_does_not_mutate_the_state():
    state, _ = run(load_scenario("voice_turn")["events"][:12])
    frozen = copy.deepcopy(state)
    for event in load_scenario("voice_turn")["events"]:
        reduce(state, event, T0)
    assert state == frozen


def test_referenced_ids():
    assert reducer.referenced_ids(audio_done("a1", "r1", "x")) == ({"a1"}, {"r1"})
    assert reducer.referenced_ids(response_done("r1", output=[output_item("a1", "x")])) == ({"a1"}, {"r1"})
    assert reducer.referenced_ids(user_audio("u1")) == ({"u1"}, set())
    assert reducer.referenced_ids(truncated("a1")) == reducer.referenced_ids(deleted("a1")) == ({"a1"}, set())
    assert reducer.referenced_ids({"type": "response.done", "response": {"id": "y" * 101}}) == (set(), set())


# --- property tests: the reducer ---------------------------------------------------------------------------

ITEMS = st.sampled_from(["i1", "i2", "i3", "i4", "i5"])
RESPONSES = st.sampled_from(["r1", "r2", "r3"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
TOKENS = st.one_of(st.integers(min_value=-5, max_value=2**40), JSON)
STATUS = st.sampled_from(["completed", "cancelled", "incomplete", "failed", "in_progress", "weird"])
EVENT_TYPES = sorted(
    reducer.ITEM_EVENTS | reducer.AUDIO_TRANSCRIPT_DONE | reducer.TEXT_DONE
    | {reducer.TRANSCRIPTION_COMPLETED, reducer.TRANSCRIPTION_FAILED, reducer.RESPONSE_DONE,
       reducer.BUFFER_COMMITTED, reducer.ITEM_TRUNCATED, reducer.ITEM_DELETED, "error", "response.created"}
)  # fmt: skip


@st.composite
def items(draw):
    part = st.fixed_dictionaries(
        {"type": st.sampled_from(["input_audio", "input_text", "output_audio", "output_text", "audio", "text", "x"])},
        optional={"transcript": st.none() | st.text(max_size=5), "text": st.none() | st.text(max_size=5)},
    )
    return draw(
        st.fixed_dictionaries(
            {"id": ITEMS, "type": st.sampled_from(["message", "message", "function_call"]),
             "role": st.sampled_from(["user", "assistant", "system"]), "content": st.lists(part, max_size=2)},
            optional={"status": STATUS},
        )
    )  # fmt: skip


EVENTS = st.one_of(
    st.builds(lambda t, i: {"type": t, "item": i}, st.sampled_from(sorted(reducer.ITEM_EVENTS)), items()),
    st.builds(lambda i, t, n: transcribed(i, t, n), ITEMS, st.text(max_size=6), st.integers(0, 50)),
    st.builds(transcription_failed, ITEMS),
    st.builds(audio_done, ITEMS, RESPONSES, st.text(max_size=6), st.booleans()),
    st.builds(text_done, ITEMS, RESPONSES, st.text(max_size=6), st.booleans()),
    st.builds(
        lambda r, s, out, i, o: response_done(r, s, out, i, o),
        RESPONSES, STATUS, st.lists(items(), max_size=2), TOKENS, TOKENS,
    ),
    st.builds(lambda i: {"type": "input_audio_buffer.committed", "item_id": i}, ITEMS),
    st.builds(lambda i: {"type": "conversation.item.truncated", "item_id": i, "audio_end_ms": 100}, ITEMS),
    st.builds(lambda i: {"type": "conversation.item.deleted", "item_id": i}, ITEMS),
    # Arbitrary JSON under a known type, and arbitrary JSON altogether.
    st.builds(lambda t, d: {**(d if isinstance(d, dict) else {}), "type": t}, st.sampled_from(EVENT_TYPES), JSON),
    JSON,
)


def check_invariants(state, changes, events):
    positions = [u.position for u in state.utterances.values()]
    assert sorted(positions) == list(range(len(positions)))  # unique, no gaps
    assert state.next_position == len(positions)
    assert all(u.item_id == key for key, u in state.utterances.items())
    for u in state.utterances.values():
        assert u.role in (USER, ASSISTANT) and u.kind in (AUDIO, TEXT)
        assert u.status in (PENDING, COMPLETED, FAILED, INTERRUPTED, DELETED)
        assert (u.completed_at is None) == (u.status == PENDING)
    counted = [u.response_id for u in changes.usages]
    assert len(counted) == len(set(counted))  # usage once per response
    named = {
        e["response"]["id"] for e in events
        if isinstance(e, dict) and e.get("type") == "response.done" and isinstance(e.get("response"), dict)
        and reducer._id(e["response"].get("id"))
    }  # fmt: skip
    assert set(counted) == named
    for usage in changes.usages:
        assert all(0 <= v <= MAX_COUNT for v in usage.counts.values())


@settings(max_examples=400, deadline=None)
@given(st.lists(EVENTS, max_size=25))
def test_reducer_never_raises_and_keeps_its_invariants(events):
    state, changes = run(events)
    check_invariants(state, changes, events)


@settings(max_examples=300, deadline=None)
@given(st.lists(EVENTS, max_size=20))
@example(  # found by hypothesis: one item listed twice in a response's output, as audio then as text
    [response_done("r1", output=[{"id": "i2", "type": "message", "role": "assistant", "content": [{"type": kind}]}
                                 for kind in ("output_audio", "output_text")])]
)  # fmt: skip
def test_every_event_is_idempotent(events):
    state = TranscriptState()
    for i, event in enumerate(events):
        at = T0 + timedelta(seconds=i)
        reducer.advance(state, reduce(state, event, at))
        again = reduce(state, event, at)
        assert not again.utterances and not again.usages and not again.transcription_tokens
        assert again.title is None


def partial(full: TranscriptState, events) -> TranscriptState:
    """What the journal loads for a batch (journal._append_locked), taken from a full state."""
    items, responses = set(), set()
    for event in events:
        i, r = reducer.referenced_ids(event)
        items |= i
        responses |= r
    utterances = {k: u for k, u in full.utterances.items() if k in items}
    responses |= {u.response_id for u in utterances.values() if u.response_id}
    completions = [e for e in events if isinstance(e, dict) and e.get("type") == reducer.TRANSCRIPTION_COMPLETED]
    transcribed_items = {i for e in completions for i in reducer.referenced_ids(e)[0]}
    return TranscriptState(
        utterances=utterances,
        responses={r: s for r, s in full.responses.items() if r in responses},
        transcriptions={i: t for i, t in full.transcriptions.items() if i in transcribed_items},
        next_position=full.next_position, has_title=full.has_title,
        started_at=full.started_at, last_activity_at=full.last_activity_at,
    )  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EVENTS, max_size=25), st.lists(st.integers(1, 6), max_size=10))
def test_batches_with_partial_state_give_the_same_result_as_one_fold(events, cuts):
    """Live (batch by batch, loading only what each batch names) == rebuild (one fold)."""
    whole, whole_changes = run(events)
    store, tokens, usages, title, conflicts = TranscriptState(), 0, [], None, 0
    timed = [(e, T0 + timedelta(seconds=i)) for i, e in enumerate(events)]
    start = 0
    for size in [*cuts, len(events)]:
        batch = timed[start : start + size]
        start += size
        if not batch:
            continue
        view = partial(store, [e for e, _ in batch])
        changes = fold(view, batch)
        reducer.advance(store, changes)
        tokens += changes.transcription_tokens
        conflicts += changes.conflicts
        usages += changes.usages
        title = title if title is not None else changes.title
    assert store.utterances == whole.utterances
    assert usages == whole_changes.usages
    assert tokens == whole_changes.transcription_tokens
    assert conflicts == whole_changes.conflicts
    assert title == whole_changes.title


# --- the frame parser ----------------------------------------------------------------------------------------

LIMITS = {"max_bytes": 4096, "max_chars": 100}


def parse(value, **limits):
    text = value if isinstance(value, str) or value is None else json.dumps(value)
    return parse_frame(text, **{**LIMITS, **limits})


def rejected(value, **limits):
    with pytest.raises(FrameError) as caught:
        parse(value, **limits)
    return caught.value.code, caught.value.seq


def test_valid_frames():
    frame = parse({"type": "event", "seq": 3, "event": {"type": "response.done", "response": {}}})
    assert (frame.type, frame.seq, frame.event["type"]) == ("event", 3, "response.done")
    assert parse({"type": "ping"}).type == "ping"
    assert parse({"type": "end"}).type == "end"
    assert parse({"type": "event", "seq": MAX_SEQ, "event": {"type": "x"}, "extra": 1}).seq == MAX_SEQ


@pytest.mark.parametrize(
    "value, code, seq",
    [
        (None, "binary_not_supported", None),
        ("", "invalid_json", None),
        ("{not json", "invalid_json", None),
        ('{"type": "event", "seq": 1, "event": {"type": "x", "v": NaN}}', "invalid_json", 1),
        ('{"type": "event", "seq": 1, "event": {"type": "x", "v": 1e999}}', "invalid_json", 1),
        ("[" * 2000 + "]" * 2000, "invalid_json", None),
        ([1, 2], "invalid_frame", None),
        ("3", "invalid_frame", None),
        ({"type": "nope", "seq": 4}, "invalid_frame", 4),
        ({"seq": 4}, "invalid_frame", 4),
        ({"type": "event", "event": {"type": "x"}}, "invalid_seq", None),
        ({"type": "event", "seq": 0, "event": {"type": "x"}}, "invalid_seq", None),
        ({"type": "event", "seq": -1, "event": {"type": "x"}}, "invalid_seq", None),
        ({"type": "event", "seq": 1.0, "event": {"type": "x"}}, "invalid_seq", None),
        ({"type": "event", "seq": "1", "event": {"type": "x"}}, "invalid_seq", None),
        ({"type": "event", "seq": True, "event": {"type": "x"}}, "invalid_seq", None),
        ({"type": "event", "seq": MAX_SEQ + 1, "event": {"type": "x"}}, "invalid_seq", None),
        ({"type": "event", "seq": 2}, "invalid_event", 2),
        ({"type": "event", "seq": 2, "event": "x"}, "invalid_event", 2),
        ({"type": "event", "seq": 2, "event": {}}, "invalid_event", 2),
        ({"type": "event", "seq": 2, "event": {"type": 5}}, "invalid_event", 2),
        ({"type": "event", "seq": 2, "event": {"type": ""}}, "invalid_event", 2),
        ({"type": "event", "seq": 2, "event": {"type": "x" * 101}}, "invalid_event", 2),
        ({"type": "event", "seq": 2, "event": {"type": "x", "n": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}},
         "invalid_event", 2),
        ({"type": "event", "seq": 2, "event": {"type": "x", "pad": "y" * 5000}}, "frame_too_large", 2),
        ({"seq": 2, "type": "event", "event": {"type": "x", "pad": "y" * 5000}}, "frame_too_large", None),
        ({"type": "event", "seq": 2, "event": {"type": "x", "pad": "y" * 1100}}, "frame_too_large", 2),
        ({"type": "event", "seq": 2, "event": {"type": "x", "transcript": "y" * 100, "pad": "y" * 1000}},
         "frame_too_large", 2),
    ],
)  # fmt: skip
def test_rejected_frames(value, code, seq):
    assert rejected(value, max_non_text_bytes=1024) == (code, seq)


@pytest.mark.parametrize(
    "text, event, repairs",
    [
        ('{"type": "x", "t": "a\\u0000b"}', {"type": "x", "t": "a\ufffdb"}, {"replaced": 1}),
        ('{"type": "x", "a\\u0000": 1}', {"type": "x", "a\ufffd": 1}, {"replaced": 1}),
        ('{"type": "x", "t": ["\\ud800", "\\udfff\\ud83d"]}', {"type": "x", "t": ["\ufffd", "\ufffd\ufffd"]},
         {"replaced": 3}),
        # A valid pair is one character, kept; the type itself is repaired like any string.
        ('{"type": "x\\u0000", "t": "\\ud83d\\ude00"}', {"type": "x\ufffd", "t": "\U0001f600"}, {"replaced": 1}),
        ('{"type": "x", "transcript": "%s"}' % ("y" * 101), {"type": "x", "transcript": "y" * 100},
         {"truncated": [{"field": "transcript", "chars": 101}]}),
        ('{"type": "x", "item": {"content": [{"text": "%s\\u0000"}]}}' % ("y" * 100),
         {"type": "x", "item": {"content": [{"text": "y" * 100}]}},
         {"replaced": 1, "truncated": [{"field": "text", "chars": 101}]}),
        # Only transcript/text/delta are cut: other strings are bounded by the frame size alone.
        ('{"type": "x", "name": "%s"}' % ("y" * 101), {"type": "x", "name": "y" * 101}, None),
    ],
)  # fmt: skip
def test_unstorable_text_is_repaired_and_recorded(text, event, repairs):
    frame = parse_frame('{"type": "event", "seq": 2, "event": ' + text + "}", **LIMITS)
    assert (frame.seq, frame.event, frame.repairs) == (2, event, repairs)
    json.dumps(frame.event).encode("utf-8")  # storable


def test_a_raw_lone_surrogate_is_repaired_too():
    """Not possible off the wire (UTF-8 decoding refuses it), but a str can hold one."""
    frame = parse_frame('{"type": "event", "seq": 2, "event": {"type": "x", "t": "\udc00é"}}', **LIMITS)
    assert (frame.event["t"], frame.repairs) == ("\ufffdé", {"replaced": 1})


def test_non_text_bound_counts_everything_but_the_text_fields():
    event = {"type": "x", "item": {"content": [{"transcript": "t" * 90}] * 20}}
    assert parse({"type": "event", "seq": 1, "event": event}, max_non_text_bytes=1024).size > 2048
    padded = {**event, "pad": "p" * 1000}
    assert rejected({"type": "event", "seq": 1, "event": padded}, max_non_text_bytes=1024) == ("frame_too_large", 1)


def test_size_counts_bytes_not_characters():
    frame = {"type": "event", "seq": 1, "event": {"type": "x", "pad": "é" * 2500}}
    assert len(json.dumps(frame, ensure_ascii=False)) < 4096 < len(json.dumps(frame, ensure_ascii=False).encode())
    with pytest.raises(FrameError) as caught:
        parse_frame(json.dumps(frame, ensure_ascii=False), **LIMITS)
    assert caught.value.code == "frame_too_large"


def test_error_reply_shape():
    error = FrameError("invalid_seq", "bad", None)
    assert error.reply() == {"type": "error", "seq": None, "code": "invalid_seq", "message": "bad"}


SEQS = st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=3), st.none(), st.just(MAX_SEQ))


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=200), st.none(), JSON.map(json.dumps),
                 st.fixed_dictionaries({"type": st.sampled_from(["event", "ping", "end", "x"]), "seq": SEQS,
                                        "event": JSON | st.fixed_dictionaries({"type": JSON}, optional={"text": JSON})})
                 .map(json.dumps)))  # fmt: skip
def test_frame_parser_only_ever_raises_frame_errors(text):
    try:
        frame = parse_frame(text, **LIMITS)
    except FrameError as error:
        assert error.code and error.message
        assert error.seq is None or (type(error.seq) is int and 1 <= error.seq <= MAX_SEQ)
        return
    assert frame.type in ("event", "ping", "end")
    if frame.type == "event":
        assert type(frame.seq) is int and 1 <= frame.seq <= MAX_SEQ
        assert isinstance(frame.event, dict) and isinstance(frame.event["type"], str)
        assert 0 < len(frame.event["type"]) <= 100
        # What passed can be stored: it encodes back to valid UTF-8 JSON without NaN...
        json.dumps(frame.event, allow_nan=False).encode("utf-8")
        # ...and the fast path never skipped a repair that was needed.
        assert frames._repair(frame.event, frame.seq, LIMITS["max_chars"])[0] is None
