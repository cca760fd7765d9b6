"""The user's history: list, search, dates, pages, one transcript, downloads, deletion."""

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pytest_django.asserts import assertContains, assertNotContains

from conversations.models import Conversation, Event, ResponseUsage, Utterance
from tests.support.factories import make_talk, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def talk(alice):
    return make_talk(
        alice,
        [
            ("user", "What is the capital of Portugal?"),
            ("assistant", "Lisbon is the capital of Portugal."),
            ("user", "", "failed"),
            ("assistant", "Shall I tell you more about", "interrupted"),
            ("user", "", "pending"),
        ],
        title="Geography",
    )


def urls_of(conversation):
    return [
        reverse("conversations:detail", args=[conversation.uuid]),
        reverse("conversations:delete", args=[conversation.uuid]),
        reverse("conversations:download", args=[conversation.uuid]) + "?format=jsonl",
    ]


class TestAccess:
    def test_anonymous_visitors_are_sent_to_log_in(self, client, talk):
        for url in [
            reverse("conversations:list"),
            reverse("conversations:download_all") + "?format=json",
            *urls_of(talk),
        ]:
            response = client.get(url)
            assert response.status_code == 302, url
            assert response.url.startswith(reverse("login") + "?next=/conversations/")

    def test_someone_elses_conversation_is_a_404_everywhere(self, client, talk, bob):
        client.force_login(bob)
        for url in urls_of(talk):
            assert client.get(url).status_code == 404, url
        assert client.post(reverse("conversations:delete", args=[talk.uuid])).status_code == 404
        assert Conversation.objects.filter(pk=talk.pk).exists()
        assert Utterance.objects.filter(conversation=talk).count() == 5

    def test_the_list_and_download_all_hold_only_ones_own(self, client, talk, bob):
        mine = make_talk(bob, [("user", "bob's secret words")], title="Bob's")
        client.force_login(bob)
        response = client.get(reverse("conversations:list"))
        assertContains(response, mine.get_absolute_url())
        assertNotContains(response, talk.get_absolute_url())
        assertNotContains(response, "Geography")
        everything = b"".join(
            client.get(reverse("conversations:download_all") + "?format=jsonl").streaming_content
        )
        records = [json.loads(line) for line in everything.decode().splitlines()]
        assert [r["id"] for r in records] == [str(mine.uuid)]

    def test_search_never_finds_another_users_words(self, client, talk, bob):
        make_talk(bob, [("user", "Madrid")])
        client.force_login(bob)
        response = client.get(reverse("conversations:list"), {"q": "Lisbon"})
        assertNotContains(response, talk.get_absolute_url())
        assertContains(response, "Nothing matches")

    def test_an_unknown_conversation_is_a_404(self, alice_client):
        assert alice_client.get("/conversations/00000000-0000-0000-0000-000000000000/").status_code == 404


class TestList:
    def test_newest_first_with_title_date_duration_turns_and_status(self, alice_client, alice, talk):
        older = make_talk(alice, [("user", "An older question")], when=timezone.now() - timedelta(days=3))
        response = alice_client.get(reverse("conversations:list"))
        body = response.content.decode()
        assert body.index(talk.get_absolute_url()) < body.index(older.get_absolute_url())
        row = body[body.index(talk.get_absolute_url()) :]
        row = row[: row.index("</tr>")]
        assert "Geography" in row
        assert '<td class="num" data-label="Duration">0:32</td>' in row  # 5 lines × 5 s + 7 s
        assert '<td class="num" data-label="Turns">5</td>' in row
        assert "badge-active" in row
        # Untitled: named by the first thing said.
        assertContains(response, "An older question")

    def test_empty_history_invites_to_talk(self, alice_client):
        response = alice_client.get(reverse("conversations:list"))
        assertContains(response, "No conversations yet")
        assertContains(response, reverse("chat"))

    def test_pages_of_twenty(self, alice_client, alice):
        start = timezone.now() - timedelta(days=1)
        for n in range(25):
            make_talk(alice, [("user", f"question number {n:02}")], when=start + timedelta(minutes=n))
        first = alice_client.get(reverse("conversations:list"))
        assert len(first.context["conversations"]) == 20
        assertContains(first, "question number 24")
        assertNotContains(first, "question number 04")
        assertContains(first, 'href="?page=2"')
        second = alice_client.get(reverse("conversations:list"), {"page": 2})
        assert [c.first_line for c in second.context["conversations"]] == [
            f"question number {n:02}" for n in range(4, -1, -1)
        ]
        # A page out of range shows the last page rather than failing.
        assert alice_client.get(reverse("conversations:list"), {"page": 99}).context["page"].number == 2
        assert alice_client.get(reverse("conversations:list"), {"page": "x"}).context["page"].number == 1

    def test_page_links_keep_the_filters(self, alice_client, alice):
        for n in range(21):
            make_talk(alice, [("user", f"about cats {n}")])
        response = alice_client.get(reverse("conversations:list"), {"q": "cats"})
        assertContains(response, 'href="?q=cats&amp;page=2"')


class TestSearch:
    def test_finds_words_in_the_transcript_in_any_case(self, alice_client, alice, talk):
        other = make_talk(alice, [("user", "Tell me about Paris")])
        response = alice_client.get(reverse("conversations:list"), {"q": "lisbon"})
        assert list(response.context["conversations"]) == [talk]
        # The line that matched is shown, the words marked.
        assertContains(response, "<mark>Lisbon</mark> is the capital of Portugal.")
        assertNotContains(response, other.get_absolute_url())

    def test_a_conversation_matching_in_several_lines_is_listed_once(self, alice_client, talk):
        response = alice_client.get(reverse("conversations:list"), {"q": "portugal"})
        assert list(response.context["conversations"]) == [talk]
        assert response.context["page"].paginator.count == 1

    def test_matched_text_is_escaped(self, alice_client, alice):
        make_talk(alice, [("user", "<script>alert(1)</script> tags")])
        response = alice_client.get(reverse("conversations:list"), {"q": "alert"})
        assertContains(response, "&lt;script&gt;<mark>alert</mark>(1)&lt;/script&gt; tags")
        assertNotContains(response, "<script>alert")

    def test_no_match(self, alice_client, talk):
        response = alice_client.get(reverse("conversations:list"), {"q": "quantum"})
        assertContains(response, "Nothing matches")
        assertContains(response, "contains “quantum”")


class TestDateFilter:
    def test_from_and_to_include_whole_days(self, alice_client, alice):
        today = timezone.localdate()
        noon = timezone.make_aware(
            timezone.datetime.combine(today, timezone.datetime.min.time())
        ) + timedelta(hours=12)
        old = make_talk(alice, [("user", "old")], when=noon - timedelta(days=10))
        recent = make_talk(alice, [("user", "recent")], when=noon - timedelta(days=2))
        latest = make_talk(alice, [("user", "latest")], when=noon)

        def listed(**params):
            return list(alice_client.get(reverse("conversations:list"), params).context["conversations"])

        assert listed(start=(today - timedelta(days=2)).isoformat()) == [latest, recent]
        assert listed(end=(today - timedelta(days=2)).isoformat()) == [recent, old]
        day = (today - timedelta(days=2)).isoformat()
        assert listed(start=day, end=day) == [recent]

    def test_a_backwards_range_is_explained(self, alice_client, talk):
        today = timezone.localdate()
        response = alice_client.get(
            reverse("conversations:list"),
            {"start": today.isoformat(), "end": (today - timedelta(days=1)).isoformat()},
        )
        assert response.status_code == 200
        assertContains(response, "The end date is before the start date.")

    def test_a_malformed_date_is_explained_not_a_500(self, alice_client, talk):
        response = alice_client.get(reverse("conversations:list"), {"start": "yesterday"})
        assert response.status_code == 200
        assertContains(response, "Enter a valid date.")
        assert list(response.context["conversations"]) == [talk]


class TestDetail:
    def test_the_transcript_in_order_with_speaker_time_and_status(self, alice_client, talk):
        response = alice_client.get(talk.get_absolute_url())
        body = response.content.decode()
        texts = ["What is the capital of Portugal?", "Lisbon is the capital", "Shall I tell you more about"]
        assert [body.index(t) for t in texts] == sorted(body.index(t) for t in texts)
        assert re.findall(r'<li class="line line-(\w+)"[^>]*data-status="(\w+)"', body) == [
            ("user", "completed"),
            ("assistant", "completed"),
            ("user", "failed"),
            ("assistant", "interrupted"),
            ("user", "pending"),
        ]
        assertContains(response, "Transcription failed")
        assertContains(response, "audio_unintelligible")
        assertContains(response, ">You</span>", count=3)
        start = timezone.localtime(talk.started_at)
        assertContains(response, (start + timedelta(seconds=5)).strftime("%H:%M:%S"))

    def test_model_voice_duration_usage_and_cost(self, alice_client, talk):
        response = alice_client.get(talk.get_absolute_url())
        assertContains(response, "<code>gpt-realtime-2.1</code>")
        assertContains(response, "Marin")
        assertContains(response, "<dd>0:32</dd>")
        assertContains(response, "<dd>2,000</dd>")  # input tokens of two responses
        assert response.context["cost"] is not None
        assertContains(response, "Estimated cost")

    def test_no_estimate_for_an_unknown_model(self, alice_client, alice):
        conversation = make_talk(alice, model="some-future-model")
        response = alice_client.get(conversation.get_absolute_url())
        assert response.context["cost"] is None
        assertContains(response, "no price for this model")

    def test_a_live_conversation_connects_its_socket_an_ended_one_does_not(self, alice_client, talk):
        response = alice_client.get(talk.get_absolute_url())
        assertContains(response, f'data-live-url="/ws/conversations/{talk.uuid}/live/"')
        assertContains(response, "history/live.js")
        talk.status = Conversation.Status.ENDED
        talk.save()
        response = alice_client.get(talk.get_absolute_url())
        assertNotContains(response, "data-live-url")
        assertNotContains(response, "history/live.js")

    def test_no_inline_script_or_style(self, alice_client, talk):
        body = alice_client.get(talk.get_absolute_url()).content.decode()
        assert "style=" not in body
        for tag in body.split("<script")[1:]:
            head = tag[: tag.index(">")]
            assert "src=" in head or 'type="application/json"' in head

    def test_offers_every_download_and_delete(self, alice_client, talk):
        response = alice_client.get(talk.get_absolute_url())
        for name in ("markdown", "json", "jsonl", "csv"):
            assertContains(response, f"/conversations/{talk.uuid}/download/?format={name}")
        assertContains(response, f"/conversations/{talk.uuid}/delete/")


class TestDownload:
    @pytest.mark.parametrize(
        "name, content_type, extension",
        [
            ("jsonl", "application/x-ndjson", "jsonl"),
            ("json", "application/json", "json"),
            ("csv", "text/csv", "csv"),
            ("markdown", "text/markdown", "md"),
        ],
    )
    def test_each_format_is_an_attachment(self, alice_client, talk, name, content_type, extension):
        response = alice_client.get(reverse("conversations:download", args=[talk.uuid]), {"format": name})
        assert response.status_code == 200
        assert response["Content-Type"].startswith(content_type)
        assert (
            response["Content-Disposition"] == f'attachment; filename="conversation-{talk.uuid}.{extension}"'
        )
        body = b"".join(response.streaming_content).decode()
        assert "Lisbon is the capital of Portugal." in body

    def test_the_records_hold_the_ordered_transcript(self, alice_client, talk):
        response = alice_client.get(reverse("conversations:download", args=[talk.uuid]), {"format": "json"})
        [record] = json.loads(b"".join(response.streaming_content))
        assert record["id"] == str(talk.uuid)
        assert [u["position"] for u in record["utterances"]] == [0, 1, 2, 3, 4]
        assert "review" not in record  # staff notes are not the user's to download
        response = alice_client.get(reverse("conversations:download", args=[talk.uuid]), {"format": "csv"})
        rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert [row["text"] for row in rows][:2] == [
            "What is the capital of Portugal?",
            "Lisbon is the capital of Portugal.",
        ]

    @pytest.mark.parametrize("query", [{"format": "xml"}, {}, {"format": ""}])
    def test_an_unknown_format_is_a_400_that_says_which_exist(self, alice_client, talk, query):
        response = alice_client.get(reverse("conversations:download", args=[talk.uuid]), query)
        assert response.status_code == 400
        for name in ("jsonl", "json", "csv", "markdown"):
            assertContains(response, f"<code>{name}</code>", status_code=400)
        if query.get("format"):
            assertContains(response, "“xml” is not a download format", status_code=400)

    def test_download_all_my_data(self, alice_client, alice, talk):
        second = make_talk(alice, [("user", "Another day")])
        response = alice_client.get(reverse("conversations:download_all"), {"format": "jsonl"})
        assert response["Content-Disposition"] == 'attachment; filename="alice-conversations.jsonl"'
        records = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
        assert {r["id"] for r in records} == {str(talk.uuid), str(second.uuid)}
        assert alice_client.get(reverse("conversations:download_all"), {"format": "pdf"}).status_code == 400

    def test_download_all_is_offered_on_the_list(self, alice_client, talk):
        response = alice_client.get(reverse("conversations:list"))
        assertContains(response, "Download all my data")
        assertContains(response, "/conversations/download/?format=markdown")


class TestDelete:
    def test_get_asks_for_confirmation_and_deletes_nothing(self, alice_client, talk):
        response = alice_client.get(reverse("conversations:delete", args=[talk.uuid]))
        assertContains(response, "Delete this conversation?")
        assertContains(response, 'method="post"')
        assertContains(response, "5 turns")
        assert Conversation.objects.filter(pk=talk.pk).exists()

    def test_post_deletes_transcript_journal_and_usage(self, alice_client, alice, talk):
        kept = make_talk(alice)
        assert Event.objects.filter(conversation=talk).exists()
        assert ResponseUsage.objects.filter(conversation=talk).exists()
        response = alice_client.post(reverse("conversations:delete", args=[talk.uuid]), follow=True)
        assert response.redirect_chain == [(reverse("conversations:list"), 302)]
        assertContains(response, "Deleted Geography.")
        assert not Conversation.objects.filter(pk=talk.pk).exists()
        for model in (Utterance, Event, ResponseUsage):
            assert not model.objects.filter(conversation_id=talk.pk).exists()
            assert model.objects.filter(conversation=kept).exists()

    def test_needs_the_csrf_token(self, alice, talk):

        client = signed_in(alice, enforce_csrf_checks=True)
        assert client.post(reverse("conversations:delete", args=[talk.uuid])).status_code == 403
        assert Conversation.objects.filter(pk=talk.pk).exists()


class TestQueryCounts:
    """The list pages cost the same number of queries for 1 conversation as for 20."""

    @staticmethod
    def get(client, url, params=None):
        assert client.get(url, params or {}).status_code == 200

    @pytest.mark.parametrize("params", [{}, {"q": "question"}, {"start": "2000-01-01", "end": "2100-01-01"}])
    def test_history_list(
        self, alice_client, alice, params, django_assert_max_num_queries, django_assert_num_queries
    ):
        make_talk(alice, [("user", "question 0"), ("assistant", "answer")])
        with django_assert_max_num_queries(4) as one:  # session, user, count, page
            self.get(alice_client, reverse("conversations:list"), params)
        for n in range(1, 20):
            make_talk(alice, [("user", f"question {n}"), ("assistant", "answer")])
        with django_assert_num_queries(len(one)):
            self.get(alice_client, reverse("conversations:list"), params)

    def test_transcript_page(self, alice_client, alice, django_assert_num_queries):
        short = make_talk(alice, [("user", "hi")])
        long = make_talk(alice, [("user" if n % 2 else "assistant", f"line {n}") for n in range(20)])
        with CaptureQueriesContext(connection) as one:
            self.get(alice_client, short.get_absolute_url())
        with django_assert_num_queries(len(one)):
            self.get(alice_client, long.get_absolute_url())
