"""Staff review in the admin: list, filters, search, actions, read-only transcripts, usage."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pytest_django.asserts import assertContains, assertNotContains

from conversations.models import Conversation, Event, ResponseUsage, TranscriptionUsage, Utterance
from tests.support.factories import make_talk, make_user

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:conversations_conversation_changelist")
USAGE = reverse("admin:conversations_conversation_usage")


@pytest.fixture
def talks(alice):
    bob = make_user("bob")
    return {
        "weather": make_talk(
            alice,
            [("user", "Will it rain in Oslo?"), ("assistant", "Probably, bring an umbrella.")],
            title="Weather",
        ),
        "failed": make_talk(alice, [("user", "", "failed"), ("assistant", "Sorry, I didn't catch that.")]),
        "interrupted": make_talk(
            bob,
            [("user", "Tell me a long story"), ("assistant", "Once upon a time", "interrupted")],
            model="gpt-realtime-2.1-mini",
            status=Conversation.Status.ENDED,
            when=timezone.now() - timedelta(days=3),
        ),
    }


def changelist(client, **params):
    response = client.get(CHANGELIST, params)
    assert response.status_code == 200
    return set(response.context["cl"].result_list)


class TestAccess:
    def test_non_staff_users_are_refused(self, client, alice, talks):
        client.force_login(alice)
        for url in (
            CHANGELIST,
            USAGE,
            reverse("admin:conversations_conversation_change", args=[talks["weather"].pk]),
            reverse("admin:conversations_conversation_live", args=[talks["weather"].pk]),
            reverse("admin:conversations_event_changelist"),
        ):
            response = client.get(url)
            assert response.status_code == 302, url
            assert response.url.startswith(reverse("admin:login")), url

    def test_anonymous_visitors_are_refused(self, client, talks):
        assert client.get(USAGE).url.startswith(reverse("admin:login"))

    def test_staff_without_permission_cannot_see_usage(self, client, talks):
        client.force_login(make_user("intern", is_staff=True))
        assert client.get(USAGE).status_code == 403
        assert client.get(CHANGELIST).status_code == 403

    def test_staff_with_view_permission_can_review(self, client, talks):
        viewer = make_user("viewer", is_staff=True)
        viewer.user_permissions.add(Permission.objects.get(codename="view_conversation"))
        client.force_login(viewer)
        assert client.get(CHANGELIST).status_code == 200
        assert client.get(USAGE).status_code == 200


class TestList:
    def test_columns(self, staff_client, talks):
        response = staff_client.get(CHANGELIST)
        for text in (
            "Weather",
            "alice",
            "bob",
            "0:17",
            "1,000 / 500",
            "$0.0447",
            "to review",
            "Usage per user and day",
        ):
            assertContains(response, text)
        row = {c.pk: c for c in response.context["cl"].result_list}[talks["weather"].pk]
        assert row.turns == 2

    @pytest.mark.parametrize(
        "params, expected",
        [
            ({"has_failed": "yes"}, {"failed"}),
            ({"has_failed": "no"}, {"weather", "interrupted"}),
            ({"has_interrupted": "yes"}, {"interrupted"}),
            ({"model": "gpt-realtime-2.1-mini"}, {"interrupted"}),
            ({"status__exact": "ended"}, {"interrupted"}),
            ({"flagged__exact": "1"}, set()),
            ({"reviewed__exact": "0"}, {"weather", "failed", "interrupted"}),
            ({"created_at__gte": "DATE-1 00:00:00+00:00"}, {"weather", "failed"}),
        ],
    )
    def test_filters(self, staff_client, talks, params, expected):
        yesterday = timezone.localdate() - timedelta(days=1)
        params = {k: v.replace("DATE-1", yesterday.isoformat()) for k, v in params.items()}
        assert changelist(staff_client, **params) == {talks[name] for name in expected}

    def test_filter_by_user(self, staff_client, talks, alice):
        assert changelist(staff_client, user__id__exact=alice.pk) == {talks["weather"], talks["failed"]}

    @pytest.mark.parametrize(
        "term, expected",
        [
            ("umbrella", {"weather"}),  # what the assistant said
            ("OSLO", {"weather"}),  # what the user said, any case
            ("bob", {"interrupted"}),  # a username
            ("weather", {"weather"}),  # a title
            ("story bob", {"interrupted"}),  # every word must match somewhere
            ('"long story"', {"interrupted"}),  # a quoted phrase
            ("nothing-like-this", set()),
        ],
    )
    def test_search(self, staff_client, talks, term, expected):
        assert changelist(staff_client, q=term) == {talks[name] for name in expected}

    def test_search_lists_a_conversation_once(self, staff_client, talks):
        response = staff_client.get(CHANGELIST, {"q": "a"})
        pks = [c.pk for c in response.context["cl"].result_list]
        assert len(pks) == len(set(pks)) == 3

    def test_sorting_by_turns_and_duration(self, staff_client, alice, talks):
        longer = make_talk(alice, [("user", "a"), ("assistant", "b"), ("user", "c")])
        # Columns count from 1 after the action checkbox: 4 = duration, 5 = turns.
        by_duration = staff_client.get(CHANGELIST, {"o": "-4"}).context["cl"].result_list
        assert by_duration[0] == longer
        by_turns = staff_client.get(CHANGELIST, {"o": "5"}).context["cl"].result_list
        assert [c.turns for c in by_turns] == [2, 2, 2, 3]


class TestActions:
    def act(self, client, action, *conversations):
        return client.post(CHANGELIST, {"action": action, "_selected_action": [c.pk for c in conversations]})

    def test_mark_reviewed_records_who_and_when(self, staff_client, reviewer, talks):
        response = self.act(staff_client, "mark_reviewed", talks["weather"], talks["failed"])
        assert response.status_code == 302
        for name in ("weather", "failed"):
            talks[name].refresh_from_db()
            assert talks[name].reviewed and talks[name].reviewed_by == reviewer
            assert timezone.now() - talks[name].reviewed_at < timedelta(minutes=1)
        talks["interrupted"].refresh_from_db()
        assert not talks["interrupted"].reviewed
        assert changelist(staff_client, reviewed__exact="1") == {talks["weather"], talks["failed"]}

    def test_flag_and_unflag(self, staff_client, talks):
        self.act(staff_client, "flag", talks["weather"], talks["failed"])
        assert changelist(staff_client, flagged__exact="1") == {talks["weather"], talks["failed"]}
        assertContains(staff_client.get(CHANGELIST), "⚑ flagged", count=2)
        self.act(staff_client, "unflag", talks["weather"])
        assert changelist(staff_client, flagged__exact="1") == {talks["failed"]}

    def test_export_jsonl(self, staff_client, talks):
        response = self.act(staff_client, "export_jsonl", talks["weather"], talks["interrupted"])
        assert response["Content-Type"].startswith("application/x-ndjson")
        assert response["Content-Disposition"].startswith('attachment; filename="conversations-')
        records = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
        assert {r["id"] for r in records} == {str(talks["weather"].uuid), str(talks["interrupted"].uuid)}
        assert all("review" in r for r in records)

    def test_export_csv(self, staff_client, talks):
        response = self.act(staff_client, "export_csv", talks["weather"])
        assert response["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert [r["text"] for r in rows] == ["Will it rain in Oslo?", "Probably, bring an umbrella."]


class TestChangePage:
    def url(self, conversation):
        return reverse("admin:conversations_conversation_change", args=[conversation.pk])

    def test_shows_the_ordered_read_only_transcript_and_the_journal_link(self, staff_client, talks):
        conversation = talks["failed"]
        response = staff_client.get(self.url(conversation))
        body = response.content.decode()
        inline = body[body.index("transcript-inline") :]
        assert inline.index("Sorry, I didn&#x27;t catch that.") > inline.index("Transcription failed")
        assertContains(response, "audio_unintelligible")
        assertNotContains(response, 'name="utterances-0-text"')  # not editable
        journal = (
            reverse("admin:conversations_event_changelist") + f"?conversation__id__exact={conversation.pk}"
        )
        assertContains(response, f'href="{journal}"')
        assertContains(response, "2 events — open the journal")
        assertNotContains(response, "View on site")

    def test_only_the_review_fields_are_editable(self, staff_client, reviewer, talks):
        conversation = talks["weather"]
        form = staff_client.get(self.url(conversation)).context["adminform"].form
        assert set(form.fields) == {"reviewed", "flagged", "review_note"}
        response = staff_client.post(
            self.url(conversation),
            {
                "reviewed": "on",
                "review_note": "Checked: fine.",
                "title": "Hacked",
                "utterances-TOTAL_FORMS": "2",
                "utterances-INITIAL_FORMS": "2",
                "utterances-MIN_NUM_FORMS": "0",
                "utterances-MAX_NUM_FORMS": "0",
            },
        )
        assert response.status_code == 302, response.context and response.context["errors"]
        conversation.refresh_from_db()
        assert conversation.review_note == "Checked: fine."
        assert conversation.reviewed and conversation.reviewed_by == reviewer and conversation.reviewed_at
        assert conversation.title == "Weather"

    def test_unticking_reviewed_clears_who_and_when(self, staff_client, reviewer, talks):
        conversation = talks["weather"]
        Conversation.objects.filter(pk=conversation.pk).update(
            reviewed=True, reviewed_by=reviewer, reviewed_at=timezone.now()
        )
        staff_client.post(
            self.url(conversation),
            {
                "review_note": "",
                "utterances-TOTAL_FORMS": "2",
                "utterances-INITIAL_FORMS": "2",
                "utterances-MIN_NUM_FORMS": "0",
                "utterances-MAX_NUM_FORMS": "0",
            },
        )
        conversation.refresh_from_db()
        assert (
            not conversation.reviewed
            and conversation.reviewed_by is None
            and conversation.reviewed_at is None
        )

    def test_the_journal_is_viewable_with_pretty_json(self, staff_client, talks):
        conversation = talks["weather"]
        response = staff_client.get(
            reverse("admin:conversations_event_changelist"), {"conversation__id__exact": conversation.pk}
        )
        assert list(response.context["cl"].result_list) == list(conversation.events.order_by("seq"))
        event = conversation.events.first()
        response = staff_client.get(reverse("admin:conversations_event_change", args=[event.pk]))
        assertContains(response, '<pre class="json-payload">{\n  &quot;')
        assertContains(response, "\n  &quot;type&quot;: &quot;conversation.item.added&quot;")  # indented

    def test_the_live_view(self, staff_client, talks):
        conversation = talks["weather"]
        response = staff_client.get(self.url(conversation))
        live = reverse("admin:conversations_conversation_live", args=[conversation.pk])
        assertContains(response, live)
        response = staff_client.get(live)
        assertContains(response, f'data-live-url="/ws/conversations/{conversation.uuid}/live/"')
        assertContains(response, ">alice</span>")  # the user is named, not "You"
        assertContains(response, "Probably, bring an umbrella.")
        ended = talks["interrupted"]
        assertNotContains(staff_client.get(self.url(ended)), "Watch live")
        response = staff_client.get(reverse("admin:conversations_conversation_live", args=[ended.pk]))
        assertContains(response, "This conversation has ended")
        assertNotContains(response, "data-live-url")

    def test_no_one_adds_conversations(self, staff_client):
        assert staff_client.get(reverse("admin:conversations_conversation_add")).status_code == 403


class TestReadOnlyTranscripts:
    @pytest.mark.parametrize("model", [Utterance, Event, ResponseUsage, TranscriptionUsage])
    def test_no_add_change_or_delete(self, staff_client, talks, model):
        name = model._meta.model_name
        if model is TranscriptionUsage:
            TranscriptionUsage.objects.create(conversation=talks["weather"], item_id="item_0", input_tokens=5)
        row = model.objects.first()
        assert staff_client.get(reverse(f"admin:conversations_{name}_changelist")).status_code == 200
        assert staff_client.get(reverse(f"admin:conversations_{name}_add")).status_code == 403
        change = reverse(f"admin:conversations_{name}_change", args=[row.pk])
        assert staff_client.get(change).status_code == 200  # view only
        assert "adminform" in staff_client.get(change).context
        assert staff_client.post(change, {"text": "rewritten"}).status_code == 403
        assert (
            staff_client.post(
                reverse(f"admin:conversations_{name}_delete", args=[row.pk]), {"post": "yes"}
            ).status_code
            == 403
        )
        assert model.objects.filter(pk=row.pk).exists()

    def test_the_per_transcription_link_lists_only_that_conversations_items(self, staff_client, talks):
        TranscriptionUsage.objects.create(conversation=talks["weather"], item_id="item_weather", input_tokens=5)
        TranscriptionUsage.objects.create(conversation=talks["failed"], item_id="item_failed", input_tokens=7)
        page = staff_client.get(reverse("admin:conversations_conversation_change", args=[talks["weather"].pk]))
        link = reverse("admin:conversations_transcriptionusage_changelist") + (
            f"?conversation__id__exact={talks['weather'].pk}"
        )
        assertContains(page, f'<a href="{link}">per transcription</a>', html=True)
        listing = staff_client.get(link)
        assertContains(listing, "item_weather")
        assertNotContains(listing, "item_failed")

    def test_deleting_a_conversation_takes_everything_with_it(self, staff_client, talks):
        conversation = talks["weather"]
        url = reverse("admin:conversations_conversation_delete", args=[conversation.pk])
        response = staff_client.get(url)
        assertContains(response, "Are you sure")
        assert response.context["perms_lacking"] == set()
        assertContains(response, "Journal events: 2")
        assert staff_client.post(url, {"post": "yes"}).status_code == 302
        assert not Conversation.objects.filter(pk=conversation.pk).exists()
        for model in (Utterance, Event, ResponseUsage, TranscriptionUsage):
            assert not model.objects.filter(conversation_id=conversation.pk).exists()

    def test_bulk_delete_action(self, staff_client, talks):
        ids = [talks["weather"].pk, talks["failed"].pk]
        response = staff_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": ids})
        assertContains(response, "Are you sure")
        staff_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": ids, "post": "yes"})
        assert list(Conversation.objects.all()) == [talks["interrupted"]]
        assert not Event.objects.filter(conversation_id__in=ids).exists()


class TestUsageView:
    def test_totals_per_user_and_per_day(self, staff_client, talks, alice):
        response = staff_client.get(USAGE, {"start": "", "end": ""})
        per_user = {row.key: row for row in response.context["per_user"]}
        assert per_user["alice"].conversations == 2
        assert per_user["alice"].tokens["input_tokens"] == 2000
        assert per_user["bob"].tokens["output_tokens"] == 500
        assert per_user["alice"].cost > per_user["bob"].cost > 0  # bob used the mini model
        assert response.context["per_user"][0].key == "alice"  # the biggest spender first
        days = [row.key for row in response.context["per_day"]]
        assert days == [timezone.localdate(), timezone.localdate() - timedelta(days=3)]
        assertContains(response, f"{CHANGELIST}?user__id__exact={alice.pk}")

    def test_defaults_to_the_last_thirty_days(self, staff_client, alice, talks):
        make_talk(alice, when=timezone.now() - timedelta(days=45))
        response = staff_client.get(USAGE)
        assert response.context["user_total"].conversations == 3
        everything = staff_client.get(USAGE, {"start": "", "end": ""})
        assert everything.context["user_total"].conversations == 4

    def test_unpriced_models_are_counted_apart(self, staff_client, alice):
        make_talk(alice, model="mystery-model")
        response = staff_client.get(USAGE)
        [row] = response.context["per_user"]
        assert row.unpriced == 1 and row.cost == 0
        assertContains(response, "used a model without a price")

    def test_a_bad_range_is_explained(self, staff_client):
        response = staff_client.get(USAGE, {"start": "2026-02-01", "end": "2026-01-01"})
        assertContains(response, "The end date is before the start date.")


class TestQueryCounts:
    """List pages cost the same number of queries for 1 conversation as for 20."""

    @staticmethod
    def get(client, url, params=None):
        assert client.get(url, params or {}).status_code == 200

    @pytest.mark.parametrize(
        "url, params",
        [
            (CHANGELIST, {}),
            (CHANGELIST, {"q": "question", "has_failed": "no", "has_interrupted": "no"}),
            (USAGE, {}),
            (reverse("admin:conversations_utterance_changelist"), {}),
            (reverse("admin:conversations_event_changelist"), {}),
        ],
    )
    def test_constant(self, staff_client, url, params, django_assert_num_queries):
        users = [make_user(f"user{n}") for n in range(3)]
        make_talk(users[0], [("user", "question 0"), ("assistant", "answer")])
        with CaptureQueriesContext(connection) as one:
            self.get(staff_client, url, params)
        for n in range(1, 20):
            make_talk(
                users[n % 3],
                [("user", f"question {n}"), ("assistant", "answer")],
                model=["gpt-realtime-2.1", "x"][n % 2],
            )
        with django_assert_num_queries(len(one)):
            self.get(staff_client, url, params)


def test_conflicts_are_shown_read_only_and_filterable(staff_client, talks):
    Conversation.objects.filter(pk=talks["failed"].pk).update(conflicts=2)
    assert changelist(staff_client, has_conflicts="yes") == {talks["failed"]}
    assert changelist(staff_client, has_conflicts="no") == {talks["weather"], talks["interrupted"]}
    response = staff_client.get(reverse("admin:conversations_conversation_change", args=[talks["failed"].pk]))
    assertContains(response, "field-conflicts")
    assert "conflicts" not in response.context["adminform"].form.fields  # read-only, never posted
    body = response.content.decode()
    block = body[body.index("field-conflicts") :]
    assert '<div class="readonly">2</div>' in block[: block.index("</div>") + 6]
