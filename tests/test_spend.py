"""conversations/spend.py: what a user spent over the last 24 hours, from the usage the server
trusts (the witness's; the browser's where the witness saw nothing, marked unverified), with the
per-item transcription usage (`TranscriptionUsage`) the journal keeps for it."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from conversations import actions, spend
from conversations.history import pricing
from conversations.models import Conversation, ResponseUsage, TranscriptionUsage
from conversations.transcript import journal
from conversations.transcript.frames import Frame
from tests.support.events import response_done, transcribed, user_audio
from tests.support.factories import make_conversation, signed_in

pytestmark = pytest.mark.django_db

MODEL = "gpt-realtime-2.1"  # text in $4, audio out $64 per 1M tokens (response_done's shape)


@pytest.fixture(autouse=True)
def _transcription_model(settings):
    settings.REALTIME_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"  # audio in $3, text out $5 per 1M


def frames(events, source="browser", first_seq=1):
    return [Frame("event", seq, e, source=source) for seq, e in enumerate(events, start=first_seq)]


def transcription(item_id, audio_in, text_out, transcript="hello"):
    event = transcribed(item_id, transcript)
    event["usage"] = {"type": "tokens", "total_tokens": audio_in + text_out, "input_tokens": audio_in,
                      "input_token_details": {"text_tokens": 0, "audio_tokens": audio_in}, "output_tokens": text_out}  # fmt: skip
    return event


def response_usd(input_tokens, output_tokens):
    return (input_tokens * Decimal(4) + output_tokens * Decimal(64)) / 1_000_000


def transcription_usd(audio_in, text_out):
    return (audio_in * Decimal(3) + text_out * Decimal(5)) / 1_000_000


def transcriptions(conversation):
    return list(
        TranscriptionUsage.objects.filter(conversation=conversation)
        .order_by("item_id")
        .values_list("item_id", "source", "input_audio_tokens", "output_tokens")
    )


def age(model, conversation, by: timedelta, now):
    model.objects.filter(conversation=conversation).update(created_at=now - by)


# --- the ledger the journal keeps ------------------------------------------------------------------


def test_a_transcription_is_recorded_once_per_item(alice):
    conversation = make_conversation(alice, model=MODEL)
    journal.append_frames(conversation.pk, frames([user_audio("u1"), transcription("u1", 100, 10)]))
    journal.append_frames(conversation.pk, frames([transcription("u1", 900, 90)], first_seq=3))  # a repeat
    assert transcriptions(conversation) == [("u1", "browser", 100, 10)]
    conversation.refresh_from_db()
    assert conversation.transcription_tokens == 110


def test_the_witness_transcription_replaces_the_browsers_and_never_the_reverse(alice):
    conversation = make_conversation(alice, model=MODEL)
    # The browser under-reports (it could say anything); the witness's count replaces it, in the
    # rows and in the conversation's total (which counted the browser's before: the old defect).
    journal.append_frames(conversation.pk, frames([user_audio("u1"), transcription("u1", 1, 1)]))
    journal.append_frames(conversation.pk, frames([user_audio("u1"), transcription("u1", 400, 40)], "server"))
    assert transcriptions(conversation) == [("u1", "server", 400, 40)]
    conversation.refresh_from_db()
    assert conversation.transcription_tokens == 440
    journal.append_frames(conversation.pk, frames([transcription("u1", 1, 1)], first_seq=3))
    assert transcriptions(conversation) == [("u1", "server", 400, 40)]
    conversation.refresh_from_db()
    assert conversation.transcription_tokens == 440
    assert journal.rebuild(conversation).status == "unchanged"


def test_rebuild_reproduces_the_transcription_rows(alice):
    conversation = make_conversation(alice, model=MODEL)
    journal.append_frames(conversation.pk, frames([user_audio("u1"), transcription("u1", 10, 1),
                                                   user_audio("u2"), transcription("u2", 20, 2)]))  # fmt: skip
    journal.append_frames(conversation.pk, frames([transcription("u2", 30, 3)], "server"))
    before = list(TranscriptionUsage.objects.order_by("item_id").values_list(
        "item_id", "source", "input_tokens", "input_audio_tokens", "output_tokens", "seconds", "created_at"))  # fmt: skip
    spent_before = spend.spent(alice.pk)
    TranscriptionUsage.objects.all().delete()
    Conversation.objects.filter(pk=conversation.pk).update(transcription_tokens=0)
    assert journal.rebuild(conversation).transcriptions == 2
    after = list(TranscriptionUsage.objects.order_by("item_id").values_list(
        "item_id", "source", "input_tokens", "input_audio_tokens", "output_tokens", "seconds", "created_at"))  # fmt: skip
    assert after == before
    assert spend.spent(alice.pk) == spent_before
    conversation.refresh_from_db()
    assert conversation.transcription_tokens == 11 + 33


def test_a_duration_billed_transcription_keeps_its_seconds(alice, settings):
    settings.REALTIME_TRANSCRIPTION_MODEL = "whisper-1"  # $0.006 a minute
    conversation = make_conversation(alice, model=MODEL)
    event = transcribed("u1", "hi")
    event["usage"] = {"type": "duration", "seconds": 90.5}
    journal.append_frames(conversation.pk, frames([user_audio("u1"), event]))
    assert TranscriptionUsage.objects.get().seconds == Decimal("90.5")
    assert spend.spent(alice.pk).total == Decimal("90.5") / 60 * Decimal("0.006")


def test_deleting_a_conversation_deletes_its_transcription_usage(alice):
    conversation = make_conversation(alice, model=MODEL)
    journal.append_frames(conversation.pk, frames([user_audio("u1"), transcription("u1", 10, 1)]))
    counts = actions.delete_conversations(Conversation.objects.filter(pk=conversation.pk))
    assert counts["conversations.TranscriptionUsage"] == 1
    assert not TranscriptionUsage.objects.exists()
    assert spend.spent(alice.pk).total == 0


# --- what spend.py counts ---------------------------------------------------------------------------


def test_witness_usage_is_verified_and_replaces_the_browsers_for_both_kinds(alice):
    conversation = make_conversation(alice, model=MODEL)
    forged = [
        user_audio("u1"),
        transcription("u1", 1, 1),
        response_done("r1", input_tokens=1, output_tokens=1),
    ]
    witnessed = [
        user_audio("u1"),
        transcription("u1", 200, 20),
        response_done("r1", input_tokens=1000, output_tokens=500),
    ]
    journal.append_frames(conversation.pk, frames(forged))
    journal.append_frames(conversation.pk, frames(witnessed, "server"))
    spent = spend.spent(alice.pk)
    assert spent.total == response_usd(1000, 500) + transcription_usd(200, 20)
    assert spent.unverified == 0
    assert [c.verified for c in spent.charges] == [True, True]


def test_browser_only_usage_counts_but_is_unverified(alice):
    witnessed = make_conversation(alice, model=MODEL)
    journal.append_frames(
        witnessed.pk, frames([response_done("r1", input_tokens=100, output_tokens=100)], "server")
    )
    browser_only = make_conversation(alice, model=MODEL)
    journal.append_frames(browser_only.pk, frames([user_audio("u1"), transcription("u1", 300, 30),
                                                   response_done("r2", input_tokens=10, output_tokens=10)]))  # fmt: skip
    spent = spend.spent(alice.pk)
    unverified = transcription_usd(300, 30) + response_usd(10, 10)
    assert spent.total == response_usd(100, 100) + unverified
    assert spent.unverified == unverified
    assert sorted(c.verified for c in spent.charges) == [False, False, True]


def test_the_window_is_the_last_24_hours_oldest_first(alice, bob):
    now = timezone.now()
    old, edge, recent = (make_conversation(alice, model=MODEL) for _ in range(3))
    for conversation, rid in ((old, "r_old"), (edge, "r_edge"), (recent, "r_new")):
        journal.append_frames(conversation.pk, frames([user_audio("u"), transcription("u", 100, 10),
                                                       response_done(rid, input_tokens=100, output_tokens=100)]))  # fmt: skip
    for model in (ResponseUsage, TranscriptionUsage):
        age(model, old, spend.WINDOW + timedelta(seconds=1), now)  # just out of the window
        age(model, edge, spend.WINDOW, now)  # exactly 24 hours old: still in it
        age(model, recent, timedelta(minutes=5), now)
    make_conversation(bob, model=MODEL)  # someone else's spend is not alice's
    journal.append_frames(
        Conversation.objects.get(user=bob).pk, frames([response_done("rb", input_tokens=10**6)])
    )

    spent = spend.spent(alice.pk, now=now)
    each = response_usd(100, 100) + transcription_usd(100, 10)
    assert spent.total == 2 * each
    assert [c.at for c in spent.charges] == [now - spend.WINDOW] * 2 + [now - timedelta(minutes=5)] * 2
    # An hour later the edge has left the window; charges(since=…) has no upper bound.
    assert spend.spent(alice.pk, now=now + timedelta(hours=1)).total == each
    assert len(spend.charges(alice.pk, since=now - spend.WINDOW - timedelta(seconds=2))) == 6
    # As of an hour ago: the two older ones, not what was recorded after then.
    earlier = spend.spent(alice.pk, now=now - timedelta(hours=1))
    assert [c.at for c in earlier.charges] == [now - spend.WINDOW - timedelta(seconds=1)] * 2 + [
        now - spend.WINDOW
    ] * 2


def test_transcription_and_unknown_models_are_never_free(alice, settings):
    conversation = make_conversation(alice, model="gpt-realtime-from-the-future")
    journal.append_frames(conversation.pk, frames([user_audio("u1"), transcription("u1", 10**6, 10**6),
                                                   response_done("r1", input_tokens=10**6, output_tokens=10**6)]))  # fmt: skip
    settings.REALTIME_TRANSCRIPTION_MODEL = "gpt-4o-transcribe"  # audio in $6, text out $10
    known = spend.spent(alice.pk).total
    settings.REALTIME_TRANSCRIPTION_MODEL = "gpt-transcribe-from-the-future"
    # The unknown realtime model at the dearest known rates (text in $4, audio out $64), and the
    # unknown transcription model at the dearest known transcription rates (audio $6, text out $10).
    assert known == spend.spent(alice.pk).total == Decimal(4 + 64 + 6 + 10)
    assert (
        pricing.estimate_cost({"input_tokens": 5}, "gpt-realtime-from-the-future") is None
    )  # history: no estimate


def test_the_queries_do_not_grow_with_users_conversations_or_charges(alice, bob):
    users = [alice, bob]
    for user in users:
        for n in range(3):
            conversation = make_conversation(user, model=MODEL)
            journal.append_frames(conversation.pk, frames([user_audio(f"u{n}"), transcription(f"u{n}", 10, 1),
                                                           response_done(f"r{n}")]))  # fmt: skip
    with CaptureQueriesContext(connection) as one:
        spend.spent(alice.pk)
    with CaptureQueriesContext(connection) as many:
        by_user = spend.spent_by_user([alice.pk, bob.pk, 10**9])
    assert len(one) == len(many) == 2
    assert by_user[alice.pk] == spend.spent(alice.pk) and len(by_user[bob.pk].charges) == 6
    assert by_user[10**9] == spend.Spent()
    with CaptureQueriesContext(connection) as none:
        assert spend.spent_by_user([]) == {}
    assert len(none) == 0


# --- the estimated costs staff and users see include transcription ----------------------------------


@pytest.fixture
def talk_with_transcription(alice):
    conversation = make_conversation(alice, model=MODEL)
    journal.append_frames(conversation.pk, frames([user_audio("u1"), transcription("u1", 10**6, 10**6),
                                                   response_done("r1", input_tokens=10**6, output_tokens=0)]))  # fmt: skip
    return conversation  # $4 of response, $3 + $5 of transcription


def test_the_history_page_cost_includes_transcription(talk_with_transcription, alice):
    response = signed_in(alice).get(talk_with_transcription.get_absolute_url())
    assert response.context["cost"] == 12
    assert "$12.00" in response.content.decode()


def test_the_admin_list_and_usage_view_costs_include_transcription(talk_with_transcription, reviewer):
    client = signed_in(reviewer)
    response = client.get(reverse("admin:conversations_conversation_changelist"))
    assert "$12.00" in response.content.decode()
    response = client.get(reverse("admin:conversations_conversation_usage"))
    assert [row.cost for row in response.context["per_user"]] == [12]
    assert [row.cost for row in response.context["per_day"]] == [12]


def test_usage_of_a_conversation_without_recorded_activity_still_counts(alice):
    # Usage is written with its conversation's activity; rows made some other way (an import of an
    # old record, a test) on a conversation with none recorded are not missed.
    conversation = make_conversation(alice, model=MODEL)
    ResponseUsage.objects.create(
        conversation=conversation, response_id="r1", input_tokens=10**6, source="server"
    )
    TranscriptionUsage.objects.create(conversation=conversation, item_id="u1", output_tokens=10**6)
    spent = spend.spent(alice.pk)
    assert (spent.total, spent.unverified) == (Decimal(4 + 5), Decimal(5))
