"""The order of a transcript's lines: OpenAI's `previous_item_id` links (conversations/transcript/order.py),
whichever stream brings an item first and however the frames are batched."""

import dataclasses
import io
import json

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations.models import Conversation, Utterance
from conversations.transcript import journal, order, reducer
from conversations.transcript.frames import Frame
from tests.support.events import assistant, linked, turn_events, user_audio
from tests.support.factories import make_conversation, make_user


@dataclasses.dataclass(frozen=True)
class L:
    item_id: str
    position: int
    previous_item_id: str = ""


def ordered(lines) -> list[str]:
    positions = order.placement(lines)
    assert sorted(positions.values()) == sorted(
        u.position for u in lines
    )  # the same positions, handed out again
    return sorted(positions, key=positions.get)


# --- placement, without a database --------------------------------------------------------------


def test_a_chain_in_order_stays_as_it_is():
    lines = [L("u0", 0), L("a0", 1, "u0"), L("u1", 2, "a0"), L("a1", 3, "u1")]
    assert ordered(lines) == ["u0", "a0", "u1", "a1"]


def test_a_turn_stored_before_the_one_it_follows_goes_after_it():
    # The witness stored turn 2 (it follows a0, not stored yet), then the page delivered turn 1.
    lines = [L("u1", 0, "a0"), L("a1", 1, "u1"), L("u0", 2), L("a0", 3, "u0")]
    assert ordered(lines) == ["u0", "a0", "u1", "a1"]


def test_lines_that_follow_nothing_known_keep_their_order():
    # A second session's first item follows nothing (null); a line after a function call follows
    # an item that is never a line.
    lines = [L("u0", 0), L("a0", 1, "u0"), L("s2", 2), L("a2", 3, "call_output"), L("u3", 4, "a2")]
    assert ordered(lines) == ["u0", "a0", "s2", "a2", "u3"]


def test_two_lines_after_one_keep_the_order_they_were_said_in():
    lines = [L("u0", 0), L("a0", 1, "u0"), L("x", 2, "u0"), L("y", 3, "x")]
    assert ordered(lines) == ["u0", "a0", "x", "y"]


def test_forged_links_in_a_circle_lose_no_line():
    lines = [L("u0", 0), L("p", 1, "q"), L("q", 2, "p"), L("r", 3, "q"), L("self", 4, "self")]
    assert ordered(lines) == ["u0", "self", "p", "q", "r"]


def test_placing_lines_in_place_moves_nothing():
    lines = [L("u1", 3, "a0"), L("a1", 5, "u1"), L("u0", 7), L("a0", 9, "u0"), L("z", 11, "zz")]
    once = order.placed({u.item_id: u for u in lines})
    assert ordered(once.values()) == ["u0", "a0", "u1", "a1", "z"]
    again = order.placed(once)
    assert all(again[i] is once[i] for i in once)


# --- the journal: two streams, any batches ------------------------------------------------------

pytestmark = pytest.mark.django_db

TURNS = 3
TRUE_ORDER = [item for t in range(TURNS) for item in (f"u{t}", f"a{t}")]
STREAM = linked(turn_events(TURNS))  # 6 events a turn


def stored(conversation) -> list[str]:
    return list(
        Utterance.objects.filter(conversation=conversation)
        .order_by("position")
        .values_list("item_id", flat=True)
    )


def test_the_witness_storing_turn_2_first_does_not_put_it_first():
    """The flake this module is for: the witness attached late and stored turns 2 and 3 while the
    page's outbox still held turn 1. Before links were kept, turn 1 was stored after them."""
    conversation = make_conversation(make_user("olga"))
    server = [Frame("event", seq, e, source="server") for seq, e in enumerate(STREAM[6:], start=1)]
    journal.append_frames(conversation.pk, server)
    assert stored(conversation) == ["u1", "a1", "u2", "a2"]
    result = journal.append_frames(
        conversation.pk, [Frame("event", seq, e) for seq, e in enumerate(STREAM, start=1)]
    )
    assert stored(conversation) == TRUE_ORDER
    # Every line that moved is sent live too, at its new place (a history page open on it follows).
    assert [(u.item_id, u.position) for u in result.changed] == list(zip(TRUE_ORDER, range(6)))
    assert journal.rebuild(conversation).status == "unchanged"
    assert Utterance.objects.filter(conversation=conversation, verified=True).count() == 4


def test_the_witness_relinking_a_line_places_it_by_its_word():
    conversation = make_conversation(make_user("pia"))
    # The page says the reply followed u0, before u1 was said; the witness says it followed u1.
    page = [
        user_audio("u0"),
        {**assistant("a0"), "previous_item_id": "u0"},
        {**user_audio("u1"), "previous_item_id": "u0"},
    ]
    journal.append_frames(conversation.pk, [Frame("event", seq, e) for seq, e in enumerate(page, start=1)])
    assert stored(conversation) == ["u0", "a0", "u1"]
    witness = {**assistant("a0"), "previous_item_id": "u1"}
    result = journal.append_frames(conversation.pk, [Frame("event", 1, witness, source="server")])
    assert stored(conversation) == ["u0", "u1", "a0"]
    assert [(u.item_id, u.position) for u in result.changed] == [("u1", 1), ("a0", 2)]
    conversation.refresh_from_db()
    assert conversation.conflicts == 1
    assert journal.rebuild(conversation).status == "unchanged"


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    attach=st.integers(0, len(STREAM)),
    interleaving=st.lists(st.booleans(), min_size=2 * len(STREAM), max_size=2 * len(STREAM)),
    cuts=st.lists(st.integers(1, 6), max_size=12),
)
def test_any_interleaving_of_the_two_streams_in_any_batches_stores_the_true_order(attach, interleaving, cuts):
    """The page forwards the whole stream; the witness, attached at any event, the rest. The two
    reach the writer interleaved in any way, in batches of any size: the stored order is OpenAI's,
    and a rebuild from the journal finds nothing to change."""
    with transaction.atomic():
        conversation = make_conversation(make_user("quinn"))
        browser = [Frame("event", seq, e) for seq, e in enumerate(STREAM, start=1)]
        server = [Frame("event", seq, e, source="server") for seq, e in enumerate(STREAM[attach:], start=1)]
        arrival = []
        for take_server in interleaving:
            source = server if (take_server and server) or not browser else browser
            if source:
                arrival.append(source.pop(0))
        arrival += browser + server
        start = 0
        for size in [*cuts, len(arrival)]:
            if arrival[start : start + size]:
                journal.append_frames(conversation.pk, arrival[start : start + size])
            start += size
        assert stored(conversation) == TRUE_ORDER
        assert journal.rebuild(conversation).status == "unchanged"
        transaction.set_rollback(True)


def test_the_reducer_keeps_the_first_link_and_the_witness_word():
    state = reducer.TranscriptState()
    at = timezone.now()
    reducer.fold(
        state, [({"type": "input_audio_buffer.committed", "item_id": "u1", "previous_item_id": "a0"}, at)]
    )
    reducer.fold(state, [({**STREAM[6], "previous_item_id": "elsewhere"}, at)])  # the page cannot move it
    assert state.utterances["u1"].previous_item_id == "a0"
    changes = reducer.fold(state, [({**STREAM[6], "previous_item_id": "a9"}, at, "server")])
    assert (state.utterances["u1"].previous_item_id, changes.conflicts, changes.relinked) == ("a9", 1, True)


def test_exports_keep_the_links_and_older_records_still_import(tmp_path):
    conversation = make_conversation(make_user("rhea"))
    journal.append_frames(conversation.pk, [Frame("event", seq, e) for seq, e in enumerate(STREAM, start=1)])
    out = io.StringIO()
    call_command("export_sessions", stdout=out, stderr=io.StringIO())
    (record,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [u["previous_item_id"] for u in record["utterances"]] == ["", *TRUE_ORDER[:-1]]
    path = tmp_path / "backup.jsonl"
    for written_before_links in (False, True):
        if written_before_links:
            for u in record["utterances"]:
                del u["previous_item_id"]
        path.write_text(json.dumps(record) + "\n")
        Conversation.objects.all().delete()
        call_command("import_sessions", str(path), stdout=io.StringIO())
        links = list(Utterance.objects.order_by("position").values_list("item_id", "previous_item_id"))
        expected = ["", *TRUE_ORDER[:-1]] if not written_before_links else [""] * len(TRUE_ORDER)
        assert links == list(zip(TRUE_ORDER, expected))
