"""Staff see the calls the server hung up, and why: the usage page (latest, bounded) and a
conversation's calls table."""

import pytest
from django.urls import reverse
from django.utils import timezone

from conversations.history import usage
from conversations.models import RealtimeCall
from tests.support.factories import make_conversation

pytestmark = pytest.mark.django_db

USAGE = reverse("admin:conversations_conversation_usage")


def hung_up(conversation, call_id, reason, **fields):
    return RealtimeCall.objects.create(
        conversation=conversation, call_id=call_id, source="server", hangup_reason=reason,
        hangup_requested_at=timezone.now(), **fields,
    )  # fmt: skip


def test_the_usage_page_lists_the_calls_hung_up_and_why(staff_client, alice):
    talk = make_conversation(alice, title="Long chat")
    hung_up(talk, "rtc_capped", "session_cap", hung_up_at=timezone.now(), hangup_attempts=1)
    hung_up(
        talk,
        "rtc_broke",
        "budget",
        hangup_attempts=3,
        hangup_error="OpenAI could not be reached. Please try again.",
    )
    RealtimeCall.objects.create(conversation=talk, call_id="rtc_normal", source="browser")

    page = staff_client.get(USAGE).content.decode()
    section = page[page.index('id="hung-up"') :]
    assert "rtc_capped" in section and "Session length cap" in section and "hung up" in section
    assert "rtc_broke" in section and "Daily budget spent" in section
    assert "failed after 3 tries: OpenAI could not be reached." in section
    assert "rtc_normal" not in section
    assert "alice" in section and "Long chat" in section


def test_the_list_is_bounded_and_one_query(alice, django_assert_num_queries):
    talk = make_conversation(alice)
    for n in range(usage.HUNG_UP_SHOWN + 5):
        hung_up(talk, f"rtc_{n}", "session_cap")
    with django_assert_num_queries(1):
        shown = usage.hung_up_calls()
        assert [c.conversation.user.username for c in shown][:1] == ["alice"]
    assert len(shown) == usage.HUNG_UP_SHOWN


def test_a_conversations_calls_table_says_who_hung_up(staff_client, alice):
    talk = make_conversation(alice)
    hung_up(talk, "rtc_capped", "session_cap", hung_up_at=timezone.now(), hangup_attempts=2)
    page = staff_client.get(
        reverse("admin:conversations_conversation_change", args=[talk.pk])
    ).content.decode()
    assert "Session length cap at" in page and "(2 tries)" in page
