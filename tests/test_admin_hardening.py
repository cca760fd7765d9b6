"""
The admin against staff who may only look, and against conversations built to be huge:
review actions need the change permission, and pages stay bounded however many lines, events,
models or users there are.
"""

import re
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone
from pytest_django.asserts import assertContains, assertNotContains

from conversations.admin import FirstLinesFormSet
from conversations.models import Event, Utterance
from conversations.transcript.forwarded import forwarded_types
from tests.support.factories import make_conversation, make_talk, make_user

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:conversations_conversation_changelist")
JOURNAL = reverse("admin:conversations_event_changelist")
LINES = reverse("admin:conversations_utterance_changelist")


def change_url(conversation):
    return reverse("admin:conversations_conversation_change", args=[conversation.pk])


def staff_with(*codenames, username="staff"):
    user = make_user(username, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def review_state(conversation):
    conversation.refresh_from_db()
    return conversation.reviewed, conversation.reviewed_by_id, conversation.flagged, conversation.review_note


class FormFields(HTMLParser):
    """The fields a browser would post from the change form, as (name, value) pairs."""

    def __init__(self):
        super().__init__()
        self.fields, self._textarea = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and "name" in attrs and attrs.get("type") not in ("submit", "checkbox"):
            self.fields.append((attrs["name"], attrs.get("value") or ""))
        elif tag == "input" and attrs.get("type") == "checkbox" and "checked" in attrs:
            self.fields.append((attrs["name"], "on"))
        elif tag == "textarea":
            self._textarea = attrs["name"]

    def handle_data(self, data):
        if self._textarea:
            self.fields.append((self._textarea, data.strip("\n")))
            self._textarea = None

    def handle_endtag(self, tag):
        if tag == "textarea" and self._textarea:
            self.fields.append((self._textarea, ""))
            self._textarea = None


def form_fields(response) -> dict:
    parser = FormFields()
    parser.feed(response.content.decode())
    data = {}
    for name, value in parser.fields:
        data.setdefault(name, []).append(value)
    return data


class TestViewOnlyStaff:
    """Staff with only the view permission read, search and export; they do not review."""

    @pytest.fixture
    def viewer_client(self, client):
        client.force_login(staff_with("view_conversation", username="viewer"))
        return client

    @pytest.fixture
    def talk(self, alice):
        return make_talk(alice, title="Weather")

    @pytest.mark.parametrize("action", ["mark_reviewed", "flag", "unflag"])
    def test_review_actions_change_nothing(self, viewer_client, alice, action):
        flagged = make_talk(alice, flagged=True)
        plain = make_talk(alice)
        before = {c.pk: review_state(c) for c in (flagged, plain)}
        response = viewer_client.post(
            CHANGELIST, {"action": action, "_selected_action": [flagged.pk, plain.pk]}, follow=True
        )
        assertContains(response, "No action selected.")
        assert {c.pk: review_state(c) for c in (flagged, plain)} == before

    def test_only_the_reading_actions_are_offered(self, viewer_client, talk):
        response = viewer_client.get(CHANGELIST)
        offered = {name for name, _label in response.context["action_form"].fields["action"].choices}
        assert offered == {"", "export_jsonl", "export_csv"}
        assertNotContains(response, "Mark selected conversations as reviewed")

    def test_they_can_still_export(self, viewer_client, talk):
        response = viewer_client.post(CHANGELIST, {"action": "export_jsonl", "_selected_action": [talk.pk]})
        assert response.status_code == 200
        assert str(talk.uuid) in b"".join(response.streaming_content).decode()

    def test_the_change_form_refuses_review_fields(self, viewer_client, talk):
        before = review_state(talk)
        response = viewer_client.get(change_url(talk))
        assert response.status_code == 200  # they may look
        assert "reviewed" not in response.context["adminform"].form.fields
        assertNotContains(response, 'name="review_note"')
        response = viewer_client.post(
            change_url(talk),
            {
                "reviewed": "on",
                "flagged": "on",
                "review_note": "I was not allowed to write this.",
                "utterances-TOTAL_FORMS": "2",
                "utterances-INITIAL_FORMS": "2",
                "utterances-MIN_NUM_FORMS": "0",
                "utterances-MAX_NUM_FORMS": "0",
            },
        )
        assert response.status_code == 403
        assert review_state(talk) == before

    def test_with_the_change_permission_the_actions_work(self, client, alice):
        reviewer = staff_with("view_conversation", "change_conversation", username="reviewer")
        client.force_login(reviewer)
        talk = make_talk(alice)
        client.post(CHANGELIST, {"action": "mark_reviewed", "_selected_action": [talk.pk]})
        client.post(CHANGELIST, {"action": "flag", "_selected_action": [talk.pk]})
        assert review_state(talk) == (True, reviewer.pk, True, "")


def make_huge_talk(user, lines=5000, text="Say something. ", **extra):
    """A conversation with `lines` utterances and as many journal events (bulk inserts)."""
    conversation = make_conversation(user, **extra)
    now = timezone.now()
    Utterance.objects.bulk_create(
        Utterance(
            conversation=conversation,
            item_id=f"item_{n}",
            role="user" if n % 2 == 0 else "assistant",
            text=f"{text}{n}",
            status="completed",
            position=n,
            created_at=now,
        )
        for n in range(lines)
    )
    Event.objects.bulk_create(
        Event(conversation=conversation, seq=n + 1, type="conversation.item.added", payload={"n": n})
        for n in range(lines)
    )
    return conversation


class TestBoundedPages:
    def test_a_huge_conversation_shows_its_first_lines_and_links_to_all(self, staff_client, alice):
        conversation = make_huge_talk(alice, lines=5000)
        response = staff_client.get(change_url(conversation))
        body = response.content.decode()
        shown = FirstLinesFormSet.max_lines
        assert body.count('<tr class="form-row') == shown
        assert "Say something. 0<" in body and f"Say something. {shown - 1}<" in body
        assert f"Say something. {shown}<" not in body
        # 5,000 rows made this page MEASURED; the first 200 keep it bounded, whatever the count.
        assert len(response.content) < 500_000
        assertContains(response, f"Showing the first {shown} of 5,000 lines.")
        assertContains(response, f'href="{LINES}?conversation__id__exact={conversation.pk}"')

    def test_the_review_of_a_huge_conversation_can_be_saved(self, staff_client, alice):
        # The browser posts every field of the form: one per line would pass Django's limit
        # (DATA_UPLOAD_MAX_NUMBER_FIELDS) and the save would fail with a 400.
        conversation = make_huge_talk(alice, lines=3000)
        data = form_fields(staff_client.get(change_url(conversation)))
        assert sum(len(values) for values in data.values()) < settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        data.update({"reviewed": ["on"], "review_note": ["Read the first lines: spam."], "_save": ["Save"]})
        response = staff_client.post(change_url(conversation), data)
        assert response.status_code == 302, response.context and response.context["errors"]
        conversation.refresh_from_db()
        assert conversation.reviewed and conversation.review_note == "Read the first lines: spam."
        assert Utterance.objects.filter(conversation=conversation).count() == 3000  # untouched

    def test_the_live_page_of_a_huge_conversation_starts_with_the_latest_lines(self, staff_client, alice):
        conversation = make_huge_talk(alice, lines=5000)
        response = staff_client.get(reverse("admin:conversations_conversation_live", args=[conversation.pk]))
        body = response.content.decode()
        assert body.count('data-item-id="item_') == 200
        assert "Say something. 4999<" in body and "Say something. 4800<" in body
        assert "Say something. 4799<" not in body
        assert body.index("Say something. 4800<") < body.index("Say something. 4999<")  # in order
        assertContains(response, "4,800 earlier lines not shown.")
        assertContains(response, f'href="{LINES}?conversation__id__exact={conversation.pk}"')
        assert len(response.content) < 250_000

    def test_a_short_conversation_has_no_more_link(self, staff_client, alice):
        talk = make_talk(alice)
        response = staff_client.get(change_url(talk))
        assert response.content.decode().count('<tr class="form-row') == 2
        assertNotContains(response, "Showing the first")
        response = staff_client.get(reverse("admin:conversations_conversation_live", args=[talk.pk]))
        assert response.content.decode().count('data-item-id="item_') == 2
        assertNotContains(response, "earlier line")

    def test_a_very_long_line_is_cut_short_in_lists(self, staff_client, alice):
        long_text = "blah " * 6000  # 30,000 characters
        conversation = make_talk(alice, [("user", long_text), ("assistant", "Hm.")])
        for url in (change_url(conversation), LINES):
            response = staff_client.get(url)
            assertNotContains(response, long_text.strip())
            assertContains(response, "(29,000 more characters)")
            assert len(response.content) < 60_000
        line = conversation.utterances.get(position=0)
        full = staff_client.get(reverse("admin:conversations_utterance_change", args=[line.pk]))
        assertContains(full, long_text.strip())  # one line's own page shows all of it

    def test_the_journal_of_a_huge_conversation_is_paged(self, staff_client, alice):
        conversation = make_huge_talk(alice, lines=2000)
        response = staff_client.get(JOURNAL, {"conversation__id__exact": conversation.pk})
        assert len(response.context["cl"].result_list) == 200
        assert len(response.content) < 250_000

    def test_the_journal_type_filter_lists_known_types_not_every_type_sent(self, staff_client, alice):
        conversation = make_conversation(alice)
        Event.objects.bulk_create(
            Event(conversation=conversation, seq=n + 1, type=f"junk.{n}", payload={}) for n in range(500)
        )
        Event.objects.create(conversation=conversation, seq=1000, type="response.done", payload={})
        response = staff_client.get(JOURNAL)
        links = re.findall(r'href="\?type=([^"&]*)"', response.content.decode())
        assert len(links) == len(forwarded_types()) + 1  # and "Other"
        assert "junk.7" not in links and "response.done" in links
        other = staff_client.get(JOURNAL, {"type": "_other"}).context["cl"]
        assert other.result_count == 500
        one = staff_client.get(JOURNAL, {"type": "junk.7"})
        assert [e.type for e in one.context["cl"].result_list] == ["junk.7"]
        assertContains(one, 'href="?type=junk.7"')  # what is filtered is shown
        done = staff_client.get(JOURNAL, {"type": "response.done"}).context["cl"]
        assert [e.seq for e in done.result_list] == [1000]

    def test_the_model_filter_lists_allowed_models(self, staff_client, alice):
        for n in range(100):
            make_conversation(alice, model=f"imported-model-{n}")
        allowed = make_conversation(alice, model=settings.REALTIME_MODELS[0])
        response = staff_client.get(CHANGELIST)
        links = re.findall(r'href="\?model=([^"&]*)"', response.content.decode())
        assert links == [*settings.REALTIME_MODELS, "_other"]
        assert staff_client.get(CHANGELIST, {"model": "_other"}).context["cl"].result_count == 100
        chosen = staff_client.get(CHANGELIST, {"model": settings.REALTIME_MODELS[0]}).context["cl"]
        assert list(chosen.result_list) == [allowed]
        imported = staff_client.get(CHANGELIST, {"model": "imported-model-7"}).context["cl"]
        assert imported.result_count == 1

    def test_the_user_filter_does_not_list_every_user(self, staff_client):
        users = [make_user(f"user{n}") for n in range(100)]
        for user in users:
            make_conversation(user)
        response = staff_client.get(CHANGELIST)
        assert 'href="?user__id__exact=' not in response.content.decode()
        one = staff_client.get(CHANGELIST, {"user__id__exact": users[7].pk})
        assert [c.user for c in one.context["cl"].result_list] == [users[7]]
        [user_filter] = [spec for spec in one.context["cl"].filter_specs if spec.title == "user"]
        assert user_filter.lookup_choices == [(str(users[7].pk), "user7")]
        assert staff_client.get(CHANGELIST, {"user__id__exact": "x"}).status_code == 302  # ?e=1
        gone = staff_client.get(CHANGELIST, {"user__id__exact": users[-1].pk + 1000})
        assert gone.context["cl"].result_count == 0
