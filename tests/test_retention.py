"""Deleting conversations with their children in batches; manage.py purge_sessions."""

import datetime
import io
import uuid
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations import actions
from conversations.models import BudgetHold, Conversation, DailyStorage, Event, ResponseUsage, Utterance
from tests.support.factories import make_conversation, make_full_conversation, make_user
from tests.support.processes import run_manage

pytestmark = pytest.mark.django_db


def counts():
    return [m.objects.count() for m in (Conversation, Utterance, Event, ResponseUsage)]


def purge(*args, **options):
    out = io.StringIO()
    call_command("purge_sessions", *args, stdout=out, **options)
    return out.getvalue()


def days_ago(days):
    return timezone.now() - datetime.timedelta(days=days)


def test_delete_conversations_removes_children_and_counts_per_model(alice):
    doomed = [make_full_conversation(alice, utterances=4, events=3) for _ in range(5)]
    kept = make_full_conversation(alice, utterances=2, events=1)
    deleted = actions.delete_conversations(Conversation.objects.exclude(pk=kept.pk), batch_size=2)
    assert deleted == {
        "conversations.Conversation": 5,
        "conversations.Utterance": 20,
        "conversations.Event": 15,
        "conversations.ResponseUsage": 10,
        "conversations.TranscriptionUsage": 0,
        "conversations.Recording": 0,
        "conversations.RecordingChunk": 0,
    }
    assert counts() == [1, 2, 1, 1]
    assert not Conversation.objects.filter(pk__in=[c.pk for c in doomed]).exists()


def test_deleting_nothing_counts_zeros():
    assert set(actions.delete_conversations(Conversation.objects.none()).values()) == {0}


def test_dry_run_counts_match_what_is_deleted(alice):
    for _ in range(3):
        make_full_conversation(alice, utterances=3, events=2)
    queryset = Conversation.objects.all()
    assert actions.count_conversations(queryset) == actions.delete_conversations(queryset)


def test_each_batch_costs_the_same_queries_whatever_the_children(alice, django_assert_num_queries):
    """Children go by `conversation_id IN (…)`: no row is loaded to be deleted."""

    def conversations(utterances):
        for _ in range(4):
            make_full_conversation(alice, utterances=utterances, events=utterances)
        return Conversation.objects.all()

    few = conversations(1)
    with CaptureQueriesContext(connection) as small:
        actions.delete_conversations(few, batch_size=2)
    many = conversations(30)
    with django_assert_num_queries(len(small)) as large:
        actions.delete_conversations(many, batch_size=2)
    sql = [q["sql"] for q in large.captured_queries]
    # No SELECT reads an utterance or event row one by one.
    assert not [s for s in sql if s.startswith("SELECT") and "conversations_utterance" in s]


def test_the_user_deletes_one_conversation(alice):
    """What the per-conversation delete view will call."""
    mine = make_full_conversation(alice)
    other = make_full_conversation(alice)
    actions.delete_conversations(Conversation.objects.filter(uuid=mine.uuid, user=alice))
    assert list(Conversation.objects.all()) == [other]


# --- The command ----------------------------------------------------------------------------
@pytest.fixture
def aged(alice):
    bob = make_user("bob")
    return {
        "old": make_full_conversation(alice, at=days_ago(40)),
        # Created long ago but talked in yesterday: still in use.
        "revived": make_conversation(alice, created_at=days_ago(40), last_activity_at=days_ago(1)),
        # Never received an event: its creation time counts.
        "silent": make_conversation(alice, created_at=days_ago(31)),
        "recent": make_full_conversation(alice, at=days_ago(2)),
        "bobs": make_full_conversation(bob, at=days_ago(50)),
    }


def test_dry_run_only_counts(aged):
    before = counts()
    out = purge(older_than=30, dry_run=True)
    assert out.startswith(
        "Dry run: would delete 3 conversations, 8 utterances, 6 journal events, 4 response usage records"
    )
    assert counts() == before


def test_purge_deletes_old_conversations_with_everything_they_hold(aged):
    out = purge("--older-than", "30")
    assert out.startswith("Deleted 3 conversations, 8 utterances, 6 journal events, 4 response usage records")
    assert set(Conversation.objects.values_list("pk", flat=True)) == {aged["revived"].pk, aged["recent"].pk}
    assert counts() == [2, 4, 3, 2]
    assert purge(older_than=30).startswith("Deleted 0 conversations, 0 utterances")


def test_purge_drops_old_daily_storage_counters_and_keeps_todays(aged, alice):
    today = timezone.now().date()
    for day in (today, today - datetime.timedelta(days=40)):
        DailyStorage.objects.create(user=alice, day=day, bytes=100)
    purge(older_than=30, dry_run=True)
    assert DailyStorage.objects.count() == 2
    purge(older_than=30)
    assert list(DailyStorage.objects.values_list("day", flat=True)) == [today]


def test_purge_drops_lapsed_budget_holds_and_keeps_live_ones(aged, alice):
    now = timezone.now()
    for minutes in (-1, 30):  # lapsed a minute ago; a session running now
        BudgetHold.objects.create(
            user=alice, conversation_uuid=uuid.uuid4(), usd=Decimal("0.50"),
            created_at=now, expires_at=now + datetime.timedelta(minutes=minutes),
        )  # fmt: skip
    purge(older_than=30, dry_run=True)
    assert BudgetHold.objects.count() == 2
    purge(older_than=30)
    assert [hold.expires_at > now for hold in BudgetHold.objects.all()] == [True]


def test_purge_one_user(aged):
    out = purge(older_than=30, user=["bob"], batch_size=1)
    assert out.startswith("Deleted 1 conversation, 4 utterances, 3 journal events, 2 response usage records")
    assert not Conversation.objects.filter(user__username="bob").exists()
    assert Conversation.objects.filter(pk=aged["old"].pk).exists()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"older_than": "0"}, "--older-than: expected a whole number of at least 1, got '0'"),
        ({"older_than": "-3"}, "--older-than: expected a whole number of at least 1"),
        ({"older_than": "soon"}, "--older-than: expected a whole number of at least 1, got 'soon'"),
        ({"older_than": "30", "user": ["nobody"]}, "Unknown user(s): nobody."),
        ({"older_than": "30", "batch_size": "0"}, "--batch-size: expected a whole number"),
    ],
)
def test_bad_input_is_a_command_error(aged, options, message):
    before = counts()
    with pytest.raises(CommandError) as error:
        purge(**options)
    assert message in str(error.value)
    assert counts() == before


def test_older_than_is_required():
    with pytest.raises(CommandError, match="--older-than"):
        purge()
    result = run_manage("purge_sessions", "--older-than", "zero", text=True)
    assert result.returncode == 1
    assert "--older-than: expected a whole number of at least 1, got 'zero'" in result.stderr
    assert "Traceback" not in result.stderr
