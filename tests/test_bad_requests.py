"""
Addresses no page can use are answered with 400, never a 500: NUL characters in the query string
or the path (PostgreSQL text cannot hold them, so a filter passing one on made the page fail),
and admin action selections that are not ids. Run it on PostgreSQL too (DATABASE_URL).
"""

import json

import pytest
from django.contrib import admin
from django.urls import reverse
from pytest_django.asserts import assertContains

from conversations.models import Conversation
from tests.support.factories import make_talk

pytestmark = pytest.mark.django_db

# Every filter and paging parameter the admin and the history pages read, a few they do not,
# and a NUL as a parameter name.
PARAMETERS = [
    "q", "type", "model", "page", "p", "o", "e", "start", "end", "format", "next", "user__id__exact",
    "conversation__id__exact", "status__exact", "role__exact", "flagged__exact", "created_at__gte",
    "has_failed", "_changelist_filters", "\x00",
]  # fmt: skip
NUL_VALUES = ["\x00", "gpt-realtime-2.1\x00"]


@pytest.fixture
def talk(alice):
    return make_talk(alice)


def admin_urls(talk):
    changelists = [
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for model in admin.site._registry
    ]
    return [
        reverse("admin:index"),
        *changelists,
        reverse("admin:conversations_conversation_usage"),
        reverse("admin:conversations_conversation_change", args=[talk.pk]),
        reverse("admin:conversations_conversation_history", args=[talk.pk]),
        reverse("admin:conversations_conversation_live", args=[talk.pk]),
        reverse("admin:conversations_event_change", args=[talk.events.first().pk]),
    ]


def history_urls(talk):
    return [
        reverse("home"),
        reverse("chat"),
        reverse("conversations:list"),
        reverse("conversations:download_all"),
        reverse("conversations:detail", args=[talk.uuid]),
        reverse("conversations:download", args=[talk.uuid]),
        reverse("conversations:delete", args=[talk.uuid]),
        reverse("password_change"),
    ]


def assert_bad_request(response, url):
    assert response.status_code == 400, (url, response.status_code)
    assertContains(response, "Error 400", status_code=400)


def answers(client, urls, value):
    """{(url, parameter): status} of every answer that is not the 400 page (a 500 included)."""
    client.raise_request_exception = False  # a failing page is a 500 here, as for a visitor
    wrong = {}
    for url in urls:
        for name in PARAMETERS:
            response = client.get(url, {name: value})
            if response.status_code != 400 or b"Error 400" not in response.content:
                wrong[url, name] = response.status_code
    return wrong


class TestNulCharacters:
    @pytest.mark.parametrize("value", NUL_VALUES)
    def test_every_admin_page_answers_400(self, staff_client, talk, value):
        urls = admin_urls(talk)
        assert len(urls) >= 10
        wrong = answers(staff_client, urls, value)
        assert {page for page, status in wrong.items() if status >= 500} == set()
        assert wrong == {}

    @pytest.mark.parametrize("value", NUL_VALUES)
    def test_every_history_page_answers_400(self, client, alice, talk, value):
        client.force_login(alice)
        wrong = answers(client, history_urls(talk), value)
        assert {page for page, status in wrong.items() if status >= 500} == set()
        assert wrong == {}

    def test_pages_for_visitors_answer_400(self, client):
        for url in (reverse("login"), reverse("signup"), reverse("admin:login"), reverse("healthz")):
            assert_bad_request(client.get(url, {"next": "/\x00"}), url)

    def test_a_nul_in_the_path_is_a_400(self, staff_client, talk):
        for url in (
            "/admin/conversations/conversation/%00/change/",
            "/admin/conversations/conversation/%00/live/",
            f"/admin/conversations/conversation/{talk.pk}%00/change/",
            "/conversations/%00/",
        ):
            assert_bad_request(staff_client.get(url), url)

    def test_the_api_answers_400_json(self, client, alice):
        client.force_login(alice)
        response = client.post(
            reverse("api_realtime_sessions") + "?voice=%00", "{}", content_type="application/json"
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_request"

    def test_the_same_pages_still_work_without_the_nul(self, staff_client, talk):
        for url in admin_urls(talk):
            assert staff_client.get(url, {"q": "hello"}).status_code in (200, 302), url
        response = staff_client.get(
            reverse("admin:conversations_conversation_changelist"), {"model": "gpt-realtime-2.1"}
        )
        assert list(response.context["cl"].result_list) == [talk]


class TestOtherBadValues:
    """Values without NUL that still no page can use: an answer, never a 500, on every backend."""

    @pytest.mark.parametrize("value", ["x", "1.5", "-1", "99999999999999999999", " "])
    def test_admin_list_filters(self, staff_client, talk, value):
        changelist = reverse("admin:conversations_conversation_changelist")
        for name in ("user__id__exact", "p", "o", "created_at__gte", "model", "has_failed"):
            response = staff_client.get(changelist, {name: value})
            assert response.status_code in (200, 302), (name, response.status_code)
        for model in ("event", "utterance", "responseusage"):
            url = reverse(f"admin:conversations_{model}_changelist")
            for name in ("conversation__id__exact", "type", "p"):
                assert staff_client.get(url, {name: value}).status_code in (200, 302), (url, name)

    @pytest.mark.parametrize("selected", ["\x00", "x", "1 OR 1=1", "99999999999999999999"])
    def test_an_action_on_a_selection_that_is_not_ids_is_a_400(self, staff_client, talk, selected):
        response = staff_client.post(
            reverse("admin:conversations_conversation_changelist"),
            {"action": "flag", "_selected_action": [talk.pk, selected]},
        )
        assert_bad_request(response, selected)
        assert not Conversation.objects.filter(flagged=True).exists()

    def test_an_action_on_ids_that_do_not_exist_does_nothing(self, staff_client, talk):
        response = staff_client.post(
            reverse("admin:conversations_conversation_changelist"),
            {"action": "flag", "_selected_action": [str(talk.pk + 1000)]},
        )
        assert response.status_code == 302
        assert not Conversation.objects.filter(flagged=True).exists()

    def test_a_bad_download_format_is_still_the_explained_400(self, client, alice, talk):
        client.force_login(alice)
        response = client.get(reverse("conversations:download", args=[talk.uuid]), {"format": "xml"})
        assertContains(response, "is not a download format", status_code=400)


def test_the_400_page_is_plain_and_json_stays_json(client, alice):
    """The page renders without a request context (Django's handler400): no template tags."""
    response = client.get("/?x=%00")
    assert response["Content-Type"].startswith("text/html")
    assertContains(response, "That address is not valid", status_code=400)
    client.force_login(alice)
    response = client.get(reverse("api_realtime_sessions"), {"x": "\x00"})
    assert json.loads(response.content)["error"]["code"] == "invalid_request"


@pytest.mark.asyncio
async def test_the_asgi_handler_answers_400_too(async_client):
    # The server runs Django under ASGI (daphne): the middleware must work on that path as well.
    response = await async_client.get("/conversations/", {"q": "\x00"})
    assert response.status_code == 400
    response = await async_client.post(reverse("api_realtime_sessions") + "?voice=%00")
    assert response.json()["error"]["code"] == "invalid_request"
