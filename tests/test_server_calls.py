"""
Server mode: POST /api/realtime/calls makes the WebRTC call with the real key (OpenAI's unified
interface), and /api/realtime/sessions hands out no keys. OpenAI is an httpx.MockTransport here
(the local stand-in learns the unified interface separately).
"""

import asyncio
import hashlib
import json
import logging

import httpx
import pytest
from django.test import Client
from django.urls import reverse

from conversations.models import Conversation, RealtimeCall
from conversations.realtime import upstream
from tests.support.api import SESSIONS_URL, error_of, post_session
from tests.support.factories import make_conversation, make_user, signed_in
from tests.support.server_calls import (
    ANSWER,
    API_KEY,
    BASE_URL,
    CALL_ID,
    CALLS_URL,
    OFFER,
    FakeOpenAI,
    parts,
    post_call,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(alice):
    return signed_in(alice)


def test_the_url():
    assert reverse("api_realtime_calls") == CALLS_URL


# --- the upstream request (upstream.create_call) ------------------------------------------------


class TestUpstreamRequest:
    @pytest.fixture(autouse=True)
    def _configured(self, settings):
        settings.OPENAI_API_KEY = API_KEY
        settings.OPENAI_BASE_URL = BASE_URL

    def call(self, fake, **options):
        session = upstream.session_config(model="gpt-realtime-2.1", voice="cedar", turn_detection="manual")
        return asyncio.run(upstream.create_call(OFFER, session, client=fake.client(), **options)), session

    def test_multipart_offer_and_session_with_the_real_key(self):
        fake = FakeOpenAI()
        call, session = self.call(fake, safety_id="abc123")
        (request,) = fake.requests
        assert request.method == "POST"
        assert str(request.url) == f"{BASE_URL}/realtime/calls"  # no ?model=
        assert request.headers["Authorization"] == f"Bearer {API_KEY}"
        assert request.headers["OpenAI-Safety-Identifier"] == "abc123"
        assert "OpenAI-Beta" not in request.headers
        assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
        found = parts(request)
        assert set(found) == {"sdp", "session"}
        assert found["sdp"] == ("application/sdp", OFFER)
        assert found["session"][0] == "application/json"
        assert json.loads(found["session"][1]) == session
        assert session["audio"]["input"]["turn_detection"] is None and session["audio"]["output"]["voice"] == "cedar"
        assert (call.call_id, call.sdp) == (CALL_ID, ANSWER)

    def test_no_safety_identifier_unless_given(self):
        fake = FakeOpenAI()
        self.call(fake)
        assert "OpenAI-Safety-Identifier" not in fake.requests[0].headers

    @pytest.mark.parametrize(
        "location, call_id",
        [("/v1/realtime/calls/rtc_abc", "rtc_abc"), ("https://api.openai.com/v1/realtime/calls/rtc_a-b_c/", "rtc_a-b_c"),
         ("/v1/realtime/calls/rtc_abc?x=1", "rtc_abc"), ("/v1/realtime/calls/", None), ("", None), (None, None),
         ("/v1/realtime/calls/sess_abc", None), ("/v1/realtime/calls/rtc_a%2Fb", None)],
    )
    def test_the_call_id_is_the_last_segment_of_location(self, location, call_id):
        assert upstream.call_id_from_location(location) == call_id

    @pytest.mark.parametrize(
        "response",
        [
            httpx.Response(201, text=ANSWER, headers={"Content-Type": "application/sdp"}),  # no Location
            httpx.Response(201, text=ANSWER, headers={"Location": "/v1/realtime/calls/nope"}),
            httpx.Response(201, json={"sdp": ANSWER}, headers={"Location": f"/v1/realtime/calls/{CALL_ID}"}),
            httpx.Response(201, text="<html>", headers={"Location": f"/v1/realtime/calls/{CALL_ID}"}),
        ],
        ids=["no-location", "bad-location", "json-body", "not-sdp"],
    )
    def test_an_answer_without_sdp_or_call_id_is_an_upstream_error(self, response):
        fake = FakeOpenAI()
        fake.reply = lambda request: response
        with pytest.raises(upstream.UpstreamError) as raised:
            self.call(fake)
        assert "could not be read" in str(raised.value)

    def test_errors_are_those_of_key_issuance(self):
        fake = FakeOpenAI()
        fake.reply = lambda request: httpx.Response(
            401, json={"error": {"message": f"Incorrect API key provided: {API_KEY}", "code": "invalid_api_key"}}
        )
        with pytest.raises(upstream.UpstreamError) as raised:
            self.call(fake)
        assert raised.value.status == 401 and raised.value.code == "invalid_api_key"
        assert API_KEY not in str(raised.value) and "[redacted]" in str(raised.value)

        def slow(request):
            raise httpx.ReadTimeout("slow", request=request)

        fake.reply = slow
        with pytest.raises(upstream.UpstreamTimeout):
            self.call(fake)

    def test_not_configured(self, settings):
        settings.OPENAI_API_KEY = ""
        fake = FakeOpenAI()
        with pytest.raises(upstream.NotConfigured):
            self.call(fake)
        assert fake.requests == []


# --- POST /api/realtime/calls -------------------------------------------------------------------


class TestCallsEndpoint:
    def test_contract_body_and_the_call_recorded_as_certain(self, client, alice, openai, settings):
        response = post_call(client, {"sdp": OFFER, "voice": "ash", "turn_detection": "semantic_vad"})
        assert response.status_code == 201, response.content
        conversation = Conversation.objects.get()
        cid = str(conversation.uuid)
        assert response.json() == {
            "conversation": {"id": cid, "url": f"/conversations/{cid}/"},
            "sdp": ANSWER,
            "model": settings.REALTIME_MODEL,
            "voice": "ash",
            "turn_detection": "semantic_vad",
            "language": "",
            "socket_url": f"/ws/conversations/{cid}/",
            "segment": 1,
        }
        assert "no-store" in response["Cache-Control"]
        assert (conversation.user, conversation.voice, conversation.segments) == (alice, "ash", 1)
        assert list(RealtimeCall.objects.values_list("call_id", "conversation", "source")) == [
            (CALL_ID, conversation.pk, "server")
        ]
        (request,) = openai.requests
        session = json.loads(parts(request)["session"][1])
        assert session == upstream.session_config(model=settings.REALTIME_MODEL, voice="ash",
                                                  turn_detection="semantic_vad")
        assert request.headers["OpenAI-Safety-Identifier"] == hashlib.sha256(str(alice.pk).encode()).hexdigest()

    def test_no_key_leaves_the_server(self, client, openai, caplog):
        caplog.set_level(logging.DEBUG)
        text = post_call(client).content.decode()
        assert API_KEY not in text and "client_secret" not in text and "ek_" not in text
        assert API_KEY not in caplog.text

    def test_continuing_a_conversation(self, client, alice, openai):
        conversation = make_conversation(alice, voice="cedar", segments=1)
        response = post_call(client, {"sdp": OFFER, "conversation": str(conversation.uuid)})
        assert response.status_code == 201
        assert response.json()["voice"] == "cedar" and response.json()["segment"] == 2
        assert RealtimeCall.objects.get().conversation == conversation

    def test_works_in_browser_mode_too(self, client, openai, settings):
        assert settings.REALTIME_CONNECT == "browser"
        assert post_call(client).status_code == 201

    @pytest.mark.parametrize(
        "body, fragment",
        [
            ("", "sdp is missing"),
            ({}, "sdp is missing"),
            ({"voice": "ash"}, "sdp is missing"),
            ({"sdp": None}, "sdp is missing"),
            ({"sdp": 17}, "SDP offer"),
            ({"sdp": "hello"}, 'start with "v=0"'),
            ({"sdp": ""}, 'start with "v=0"'),
            ({"sdp": "v=0\r\n\x00"}, "SDP offer"),
            ({"sdp": "v=0\r\n" + "a" * upstream.MAX_SDP_BYTES}, "at most"),
            ("x" * (2 * upstream.MAX_SDP_BYTES + 5000), "too large"),
            ("{bad json", "not valid JSON"),
            ('["v=0"]', "must be a JSON object"),
            ({"sdp": OFFER, "key": "x"}, "Unknown field 'key'"),
            ({"sdp": OFFER, "voice": "nobody"}, "Unknown voice"),
            ({"sdp": OFFER, "conversation": "nope"}, "conversation must be the id"),
        ],
    )
    def test_invalid_request(self, client, openai, body, fragment):
        response = post_call(client, body)
        assert response.status_code == 400, response.content
        error = error_of(response)
        assert error["code"] == "invalid_request" and fragment in error["message"]
        assert openai.requests == []
        assert not Conversation.objects.exists()

    def test_someone_elses_conversation_is_not_found(self, client, openai):
        other = make_conversation(make_user("bob"))
        response = post_call(client, {"sdp": OFFER, "conversation": str(other.uuid)})
        assert response.status_code == 404 and error_of(response)["code"] == "not_found"
        assert openai.requests == []

    def test_anonymous_is_401(self, openai):
        assert post_call(Client()).status_code == 401
        assert openai.requests == []

    def test_csrf(self, alice, openai):
        csrf_client = signed_in(alice, enforce_csrf_checks=True)
        response = post_call(csrf_client)
        assert response.status_code == 403 and error_of(response)["code"] == "csrf_failed"
        csrf_client.get(reverse("chat"))
        assert post_call(csrf_client, HTTP_X_CSRFTOKEN=csrf_client.cookies["csrftoken"].value).status_code == 201

    def test_the_key_limits_count_calls_too(self, client, openai, settings):
        settings.KEY_RATE_LIMIT_PER_USER = "1/minute"
        assert post_call(client).status_code == 201
        response = post_call(client)
        assert response.status_code == 429 and error_of(response)["code"] == "rate_limited"
        assert int(response["Retry-After"]) > 0
        # …and keys and calls share them.
        assert post_session(client).status_code == 429
        assert len(openai.requests) == 1

    def test_not_configured_is_503(self, client, openai, settings):
        settings.OPENAI_API_KEY = ""
        response = post_call(client)
        assert response.status_code == 503 and error_of(response)["code"] == "not_configured"
        assert openai.requests == []

    @pytest.mark.parametrize(
        "reply, status, code",
        [
            (lambda r: httpx.Response(500, json={"error": {"message": "Upstream says no."}}), 502, "upstream_error"),
            (lambda r: httpx.Response(201, text="not an answer"), 502, "upstream_error"),
            (lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)), 502, "upstream_error"),
            (lambda r: (_ for _ in ()).throw(httpx.ConnectTimeout("slow", request=r)), 504, "upstream_timeout"),
        ],
        ids=["openai-error", "unreadable", "unreachable", "timeout"],
    )
    def test_upstream_failures_record_nothing(self, client, alice, openai, reply, status, code):
        continued = make_conversation(alice, segments=1)
        openai.reply = reply
        for body in ({"sdp": OFFER}, {"sdp": OFFER, "conversation": str(continued.uuid)}):
            response = post_call(client, body)
            assert response.status_code == status and error_of(response)["code"] == code
        assert Conversation.objects.get() == continued
        continued.refresh_from_db()
        assert continued.segments == 1
        assert not RealtimeCall.objects.exists()


# --- server mode: no keys -----------------------------------------------------------------------


class TestServerMode:
    def test_sessions_answer_403_ephemeral_keys_disabled(self, client, openai, server_mode):
        response = post_session(client)
        assert response.status_code == 403
        error = error_of(response)
        assert error["code"] == "ephemeral_keys_disabled" and "/api/realtime/calls" in error["message"]
        assert openai.requests == []
        assert not Conversation.objects.exists()

    def test_the_refusal_costs_no_limit(self, client, openai, server_mode, settings):
        settings.KEY_RATE_LIMIT_PER_USER = "1/minute"
        for _ in range(3):
            assert post_session(client).status_code == 403
        assert post_call(client).status_code == 201

    def test_anonymous_still_gets_401(self, openai, server_mode):
        assert post_session(Client()).status_code == 401

    def test_calls_work(self, client, openai, server_mode):
        assert post_call(client).status_code == 201

    def test_the_page_is_told_the_mode(self, client, openai, settings):
        for mode in ("browser", "server"):
            settings.REALTIME_CONNECT = mode
            page = client.get(reverse("chat"))
            config = json.loads(page.content.decode().split('id="voice-config" type="application/json">')[1]
                                .split("</script>")[0])
            assert config["connect"] == mode and config["callsApiUrl"] == CALLS_URL
            assert config["apiUrl"] == SESSIONS_URL


def test_deleting_a_conversation_deletes_its_calls(client, openai):
    from conversations import actions

    post_call(client)
    assert RealtimeCall.objects.count() == 1
    counts = actions.delete_conversations(Conversation.objects.all())
    assert counts["conversations.Conversation"] == 1
    assert not RealtimeCall.objects.exists()
