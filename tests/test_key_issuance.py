"""POST /api/realtime/sessions end to end: the real HTTP client against the local stand-in."""

import io
import json
import logging
import socket
import uuid

import httpx
import pytest
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from conversations.models import Conversation
from conversations.realtime import upstream
from tests.support.api import SESSIONS_URL, error_of, post_session
from tests.support.factories import make_conversation, make_user, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _generous_limits(settings):
    """The limits have their own tests (test_key_limits.py); here they stay out of the way."""
    settings.KEY_RATE_LIMIT_PER_USER = settings.KEY_RATE_LIMIT_PER_IP = "1000/minute"


@pytest.fixture
def client(alice):
    client = signed_in(alice)
    return client


def upstream_body(standin):
    (request,) = standin.requests
    return request.json


def test_url_is_the_contract():
    assert reverse("api_realtime_sessions") == SESSIONS_URL


class TestNewConversation:
    def test_contract_body(self, client, alice, realtime_standin, settings):
        response = post_session(client)
        assert response.status_code == 201, response.content
        body = response.json()
        conversation = Conversation.objects.get()
        cid = str(conversation.uuid)
        issued = realtime_standin.issued[body["client_secret"]]
        assert body == {
            "conversation": {"id": cid, "url": f"/conversations/{cid}/"},
            "client_secret": issued.value,
            "expires_at": issued.expires_at,
            "model": settings.REALTIME_MODEL,
            "voice": settings.REALTIME_VOICE,
            "turn_detection": "server_vad",
            "language": "",  # detect automatically: no preferences saved
            "calls_url": f"{realtime_standin.url}/realtime/calls",
            "socket_url": f"/ws/conversations/{cid}/",
            "segment": 1,
            "key_ttl": settings.REALTIME_KEY_TTL,
        }
        assert body["client_secret"].startswith("ek_")
        assert response["Cache-Control"].startswith("max-age=0") and "no-store" in response["Cache-Control"]
        assert conversation.user == alice
        assert conversation.status == Conversation.Status.ACTIVE
        assert (conversation.model, conversation.voice, conversation.turn_detection) == (
            settings.REALTIME_MODEL, settings.REALTIME_VOICE, "server_vad"
        )
        assert conversation.segments == 1

    def test_the_body_sent_upstream(self, client, realtime_standin, settings):
        settings.REALTIME_KEY_TTL = 120
        post_session(client, {"voice": "cedar"})
        request = realtime_standin.requests[0]
        assert request.path == "/v1/realtime/client_secrets"
        assert request.headers["Authorization"] == f"Bearer {realtime_standin.api_key}"
        assert "OpenAI-Beta" not in request.headers
        body = request.json
        assert body["expires_after"] == {"anchor": "created_at", "seconds": 120}
        session = body["session"]
        assert session["type"] == "realtime"
        assert session["model"] == settings.REALTIME_MODEL
        assert session["instructions"] == settings.REALTIME_INSTRUCTIONS
        assert session["audio"]["input"]["transcription"] == {"model": settings.REALTIME_TRANSCRIPTION_MODEL}
        assert session["audio"]["output"] == {"voice": "cedar"}

    @pytest.mark.parametrize("voice", upstream.VOICES)
    def test_every_voice(self, client, realtime_standin, voice):
        response = post_session(client, {"voice": voice})
        assert response.status_code == 201
        assert response.json()["voice"] == voice
        assert Conversation.objects.get().voice == voice
        assert upstream_body(realtime_standin)["session"]["audio"]["output"]["voice"] == voice

    @pytest.mark.parametrize(
        "mode, upstream_type", [("server_vad", "server_vad"), ("semantic_vad", "semantic_vad"), ("manual", None)]
    )
    def test_turn_detection(self, client, realtime_standin, mode, upstream_type):
        response = post_session(client, {"turn_detection": mode})
        assert response.status_code == 201
        assert response.json()["turn_detection"] == mode
        assert Conversation.objects.get().turn_detection == mode
        detection = upstream_body(realtime_standin)["session"]["audio"]["input"]["turn_detection"]
        assert (detection and detection["type"]) == upstream_type

    @pytest.mark.parametrize("body", [None, "{}", '{"voice": null, "conversation": null, "turn_detection": null}'])
    def test_empty_and_null_mean_defaults(self, client, realtime_standin, body, settings):
        response = post_session(client, body)
        assert response.status_code == 201
        assert response.json()["voice"] == settings.REALTIME_VOICE

    def test_any_content_type_with_a_json_body(self, client, realtime_standin):
        response = post_session(client, '{"voice": "ash"}', content_type="text/plain")
        assert response.status_code == 201

    def test_each_request_gets_its_own_key_and_conversation(self, client, realtime_standin):
        first, second = post_session(client).json(), post_session(client).json()
        assert first["client_secret"] != second["client_secret"]
        assert first["conversation"]["id"] != second["conversation"]["id"]
        assert Conversation.objects.count() == 2


class TestContinue:
    def test_new_segment_of_own_conversation(self, client, alice, realtime_standin):
        conversation = make_conversation(alice, voice="sage", turn_detection="manual", segments=1)
        response = post_session(client, {"conversation": str(conversation.uuid)})
        assert response.status_code == 201
        body = response.json()
        assert body["conversation"]["id"] == str(conversation.uuid)
        assert body["segment"] == 2
        # The new segment sounds like the old one unless asked otherwise.
        assert (body["voice"], body["turn_detection"]) == ("sage", "manual")
        assert upstream_body(realtime_standin)["session"]["audio"]["input"]["turn_detection"] is None
        conversation.refresh_from_db()
        assert conversation.segments == 2
        assert Conversation.objects.count() == 1

    def test_an_ended_conversation_becomes_active(self, client, alice, realtime_standin):
        from django.utils import timezone

        conversation = make_conversation(alice, status="ended", ended_at=timezone.now(), segments=3)
        response = post_session(client, {"conversation": str(conversation.uuid), "voice": "verse"})
        assert response.status_code == 201
        conversation.refresh_from_db()
        assert conversation.status == Conversation.Status.ACTIVE
        assert conversation.ended_at is None
        assert conversation.segments == 4
        assert conversation.voice == "verse"

    def test_a_retired_model_is_replaced(self, client, alice, realtime_standin, settings):
        conversation = make_conversation(alice, model="gpt-4o-realtime-preview-2024-12-17")
        response = post_session(client, {"conversation": str(conversation.uuid)})
        assert response.json()["model"] == settings.REALTIME_MODEL
        conversation.refresh_from_db()
        assert conversation.model == settings.REALTIME_MODEL

    def test_someone_elses_conversation_is_not_found(self, client, realtime_standin):
        theirs = make_conversation(make_user("mallory"))
        response = post_session(client, {"conversation": str(theirs.uuid)})
        assert response.status_code == 404
        assert error_of(response)["code"] == "not_found"
        theirs.refresh_from_db()
        assert theirs.segments == 0
        assert realtime_standin.requests == []  # no key minted for it

    def test_unknown_conversation_is_not_found(self, client, realtime_standin):
        response = post_session(client, {"conversation": str(uuid.uuid4())})
        assert response.status_code == 404
        assert error_of(response) == {"code": "not_found", "message": "You have no conversation with that id."}


class TestBadInput:
    @pytest.mark.parametrize(
        "body, fragment",
        [
            ("{not json", "not valid JSON"),
            ("\xff\xfe", "not valid JSON"),
            (b"\xff\xfe{}", "not valid JSON"),
            ("[" * 4000, "not valid JSON"),  # deeper than the parser's recursion limit
            ("[]", "must be a JSON object"),
            ('"marin"', "must be a JSON object"),
            ("null", "must be a JSON object"),
            ("42", "must be a JSON object"),
            ('{"voise": "marin"}', "Unknown field 'voise'"),
            ('{"voice": "nova"}', "Unknown voice 'nova'"),
            ('{"voice": "Marin"}', "Unknown voice"),
            ('{"voice": 3}', "Unknown voice"),
            ('{"voice": ["marin"]}', "Unknown voice"),
            ('{"turn_detection": "push"}', "Unknown turn detection"),
            ('{"turn_detection": {"type": "server_vad"}}', "Unknown turn detection"),
            ('{"conversation": "not-a-uuid"}', "must be the id (a UUID)"),
            ('{"conversation": 12}', "must be the id (a UUID)"),
            ('{"conversation": ""}', "must be the id (a UUID)"),
            ('{"conversation": {"id": "x"}}', "must be the id (a UUID)"),
            ('{"conversation": "' + "a" * 5000 + '"}', "too large"),
        ],
    )
    def test_invalid_request(self, client, realtime_standin, body, fragment):
        response = post_session(client, body)
        assert response.status_code == 400, response.content
        error = error_of(response)
        assert error["code"] == "invalid_request"
        assert fragment in error["message"]
        assert realtime_standin.requests == []
        assert not Conversation.objects.exists()

    def test_a_multipart_form(self, client, realtime_standin):
        response = client.post(SESSIONS_URL, {"voice": "marin"})  # the test client sends multipart
        assert response.status_code == 400
        assert error_of(response)["code"] == "invalid_request"

    def test_anonymous_gets_401_json_not_a_redirect(self, realtime_standin):
        response = post_session(Client())
        assert response.status_code == 401
        assert error_of(response)["code"] == "not_authenticated"
        assert realtime_standin.requests == []

    def test_anonymous_gets_401_even_without_a_csrf_token(self, realtime_standin):
        response = post_session(Client(enforce_csrf_checks=True))
        assert response.status_code == 401

    @pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
    def test_other_methods_get_405_json(self, client, method, realtime_standin):
        response = getattr(client, method)(SESSIONS_URL)
        assert response.status_code == 405
        assert response["Allow"] == "POST"
        assert error_of(response)["code"] == "method_not_allowed"

    def test_unknown_api_path_is_404_json(self, client):
        response = client.post("/api/realtime/session")
        assert response.status_code == 404
        assert error_of(response)["code"] == "not_found"

    def test_pages_keep_their_html_404(self, client):
        response = client.get("/no-such-page/")
        assert response.status_code == 404
        assert response["Content-Type"].startswith("text/html")


class TestCsrf:
    @pytest.fixture
    def csrf_client(self, alice):
        client = signed_in(alice, enforce_csrf_checks=True)
        return client

    def test_missing_token_is_403_json(self, csrf_client, realtime_standin):
        response = post_session(csrf_client)
        assert response.status_code == 403
        assert error_of(response)["code"] == "csrf_failed"
        assert realtime_standin.requests == []

    def test_wrong_token_is_403_json(self, csrf_client, realtime_standin):
        csrf_client.get(reverse("chat"))  # sets the csrftoken cookie
        response = post_session(csrf_client, HTTP_X_CSRFTOKEN="x" * 32)
        assert response.status_code == 403
        assert error_of(response)["code"] == "csrf_failed"

    def test_with_the_token(self, csrf_client, realtime_standin):
        csrf_client.get(reverse("chat"))
        token = csrf_client.cookies["csrftoken"].value
        response = post_session(csrf_client, HTTP_X_CSRFTOKEN=token)
        assert response.status_code == 201

    def test_pages_keep_the_html_csrf_page(self, alice):
        client = Client(enforce_csrf_checks=True)
        response = client.post(reverse("login"), {"username": "alice", "password": "x"})
        assert response.status_code == 403
        assert response["Content-Type"].startswith("text/html")
        assert "Form expired" in response.content.decode()


class TestUpstreamFailures:
    @pytest.mark.parametrize("status", [400, 401, 403, 429, 500, 503])
    def test_openai_errors_are_502_with_its_message(self, client, realtime_standin, status):
        realtime_standin.fail_next(status, message="Upstream says no.")
        response = post_session(client)
        assert response.status_code == 502
        error = error_of(response)
        assert error["code"] == "upstream_error"
        assert "Upstream says no." in error["message"]

    def test_bad_api_key(self, client, realtime_standin, settings):
        settings.OPENAI_API_KEY = "sk-proj-wrong-key-0123456789"
        response = post_session(client)
        assert response.status_code == 502
        message = error_of(response)["message"]
        assert "Incorrect API key provided: [redacted]" in message  # the stand-in quotes it masked, like OpenAI
        assert "sk-" not in message

    def test_beta_shape_refusal_is_passed_on(self, client, realtime_standin):
        realtime_standin.fail_next(400, code="beta_api_shape_disabled", message="The beta is gone.")
        response = post_session(client)
        assert response.status_code == 502
        assert "The beta is gone." in error_of(response)["message"]

    @pytest.mark.parametrize("kind", ["garbage", "incomplete"])
    def test_garbage_is_502(self, client, realtime_standin, kind):
        realtime_standin.fail_next(kind)
        response = post_session(client)
        assert response.status_code == 502
        assert error_of(response) == {"code": "upstream_error", "message": "OpenAI sent an answer that could not be read."}

    def test_dropped_connection_is_502(self, client, realtime_standin):
        realtime_standin.fail_next("disconnect")
        response = post_session(client)
        assert response.status_code == 502
        assert error_of(response)["code"] == "upstream_error"

    def test_slow_upstream_is_504(self, client, realtime_standin, settings):
        settings.REALTIME_READ_TIMEOUT = 0.2
        realtime_standin.fail_next("slow", delay=3)
        response = post_session(client)
        assert response.status_code == 504
        assert error_of(response)["code"] == "upstream_timeout"

    def test_slow_but_in_time_is_fine(self, client, realtime_standin, settings):
        realtime_standin.fail_next("slow", delay=0.1)
        assert post_session(client).status_code == 201

    def test_upstream_down_is_502(self, client, settings):
        with socket.socket() as sock:  # a port that nothing listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        settings.OPENAI_API_KEY = "sk-anything"
        settings.OPENAI_BASE_URL = f"http://127.0.0.1:{port}/v1"
        response = post_session(client)
        assert response.status_code == 502
        assert error_of(response) == {"code": "upstream_error", "message": "OpenAI could not be reached. Please try again."}

    def test_connect_timeout_is_504(self, client, settings, monkeypatch):
        def handler(request):
            raise httpx.ConnectTimeout("timed out", request=request)

        settings.OPENAI_API_KEY = "sk-anything"
        monkeypatch.setattr(upstream, "http_client", lambda: httpx.AsyncClient(transport=httpx.MockTransport(handler)))
        response = post_session(client)
        assert response.status_code == 504

    def test_not_configured_is_503(self, client, settings, realtime_standin):
        settings.OPENAI_API_KEY = ""
        response = post_session(client)
        assert response.status_code == 503
        error = error_of(response)
        assert error["code"] == "not_configured"
        assert "no OpenAI API key" in error["message"]
        assert realtime_standin.requests == []


class TestNoOrphans:
    """A failed mint leaves nothing behind: the conversation is recorded only once there is a key."""

    @pytest.mark.parametrize("failure", [500, 401, "garbage", "disconnect"])
    def test_no_conversation_when_the_mint_fails(self, client, realtime_standin, failure):
        realtime_standin.fail_next(failure)
        assert post_session(client).status_code == 502
        assert not Conversation.objects.exists()

    def test_no_conversation_on_timeout(self, client, realtime_standin, settings):
        settings.REALTIME_READ_TIMEOUT = 0.2
        realtime_standin.fail_next("slow", delay=3)
        assert post_session(client).status_code == 504
        assert not Conversation.objects.exists()

    def test_a_continued_conversation_is_untouched(self, client, alice, realtime_standin):
        from django.utils import timezone

        ended = timezone.now()
        conversation = make_conversation(alice, status="ended", ended_at=ended, segments=2, voice="ash")
        realtime_standin.fail_next(500)
        response = post_session(client, {"conversation": str(conversation.uuid), "voice": "coral"})
        assert response.status_code == 502
        conversation.refresh_from_db()
        assert (conversation.status, conversation.ended_at, conversation.segments, conversation.voice) == (
            "ended", ended, 2, "ash"
        )


class TestSecrets:
    def dump_database(self) -> str:
        out = io.StringIO()
        call_command("dumpdata", stdout=out)
        sessions = [json.dumps(s.get_decoded()) for s in Session.objects.all()]
        return out.getvalue() + "\n".join(sessions)

    def test_no_key_in_responses_logs_or_database(self, client, realtime_standin, settings, caplog):
        caplog.set_level(logging.DEBUG)
        for logger in ("httpx", "httpcore", "django", "conversations"):
            caplog.set_level(logging.DEBUG, logger=logger)
        api_key = realtime_standin.api_key
        responses = [post_session(client)]
        for failure in (401, 429, 500, "garbage", "incomplete", "disconnect"):
            realtime_standin.fail_next(failure)
            responses.append(post_session(client))
        settings.OPENAI_API_KEY = api_key[:-1] + "X"  # a wrong key: OpenAI quotes it back, masked
        responses.append(post_session(client))
        settings.OPENAI_API_KEY = api_key
        responses.append(post_session(client, {"voice": "nova"}))
        responses.append(client.get(SESSIONS_URL))
        responses.append(client.get(reverse("chat")))

        assert [r.status_code for r in responses] == [201, 502, 502, 502, 502, 502, 502, 502, 400, 405, 200]
        ephemeral = responses[0].json()["client_secret"]
        for response in responses:
            assert api_key not in response.content.decode()
            assert api_key[:-1] not in response.content.decode()
        assert api_key not in caplog.text and api_key[:-1] not in caplog.text
        assert ephemeral not in caplog.text
        database = self.dump_database()
        assert Conversation.objects.count() == 1
        assert api_key not in database
        assert ephemeral not in database
        assert "ek_" not in database


class TestChatPage:
    def test_says_plainly_when_there_is_no_api_key(self, client, settings):
        settings.OPENAI_API_KEY = ""
        page = client.get(reverse("chat")).content.decode()
        assert "Voice conversations are not set up on this server." in page
        assert "OPENAI_API_KEY" in page

    def test_no_notice_when_configured(self, client, settings):
        settings.OPENAI_API_KEY = "sk-configured-0123456789"
        page = client.get(reverse("chat")).content.decode()
        assert "not set up" not in page
        assert "sk-configured-0123456789" not in page
