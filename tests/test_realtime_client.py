"""conversations/upstream.py: the request OpenAI receives, and every way minting can fail."""

import asyncio
import json
import logging

import httpx
import pytest

from conversations.realtime import upstream
from voiceproject.loopbound import PerLoop

API_KEY = "sk-proj-unit-test-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def _configured(settings):
    settings.OPENAI_API_KEY = API_KEY
    settings.OPENAI_BASE_URL = "https://openai.invalid/v1"


def mock_client(handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def ok(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    return httpx.Response(200, json={"value": "ek_test", "expires_at": 1767000000, "session": body["session"]})


def mint(handler, **options):
    options = {"model": "gpt-realtime-2.1", "voice": "marin", **options}
    return asyncio.run(upstream.create_client_secret(client=mock_client(handler), **options))


class TestRequestBody:
    def test_ga_shape_with_transcription_on(self, settings):
        settings.REALTIME_KEY_TTL = 90
        seen = []
        mint(lambda request: seen.append(request) or ok(request), voice="cedar")
        (request,) = seen
        assert request.method == "POST"
        assert str(request.url) == "https://openai.invalid/v1/realtime/client_secrets"
        assert request.headers["Authorization"] == f"Bearer {API_KEY}"
        assert request.headers["Content-Type"] == "application/json"
        assert "OpenAI-Beta" not in request.headers
        body = json.loads(request.content)
        assert body == {
            "expires_after": {"anchor": "created_at", "seconds": 90},
            "session": {
                "type": "realtime",
                "model": "gpt-realtime-2.1",
                "instructions": settings.REALTIME_INSTRUCTIONS,
                "audio": {
                    "input": {
                        "transcription": {"model": settings.REALTIME_TRANSCRIPTION_MODEL},
                        "turn_detection": upstream.SERVER_VAD_CONFIG,
                    },
                    "output": {"voice": "cedar"},
                },
            },
        }

    @pytest.mark.parametrize(
        "mode, expected",
        [
            ("server_vad", {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                            "silence_duration_ms": 500, "create_response": True, "interrupt_response": True}),
            ("semantic_vad", {"type": "semantic_vad", "eagerness": "auto", "create_response": True,
                              "interrupt_response": True}),
            ("manual", None),
        ],
    )
    def test_turn_detection(self, mode, expected):
        config = upstream.session_config(model="gpt-realtime-2.1", voice="marin", turn_detection=mode)
        assert config["audio"]["input"]["turn_detection"] == expected
        assert "turn_detection" in config["audio"]["input"]  # manual is an explicit null

    def test_no_beta_fields(self):
        config = upstream.session_config(model="gpt-realtime-2.1", voice="marin")
        for beta in ("modalities", "voice", "temperature", "input_audio_transcription", "turn_detection"):
            assert beta not in config

    def test_config_is_a_copy(self):
        config = upstream.session_config(model="gpt-realtime-2.1", voice="marin")
        config["audio"]["input"]["turn_detection"]["threshold"] = 0.9
        assert upstream.SERVER_VAD_CONFIG["threshold"] == 0.5

    @pytest.mark.parametrize("voice", ["Marin", "nova", "", "marin "])
    def test_unknown_voice(self, voice):
        with pytest.raises(ValueError, match="Unknown voice"):
            upstream.session_config(model="gpt-realtime-2.1", voice=voice)

    def test_model_outside_the_allow_list(self):
        with pytest.raises(ValueError, match="not allowed"):
            upstream.session_config(model="gpt-4o-realtime-preview-2024-12-17", voice="marin")

    def test_unknown_turn_detection(self):
        with pytest.raises(ValueError, match="Unknown turn detection"):
            upstream.turn_detection_config("push")


class TestSuccess:
    def test_returns_the_key(self):
        secret = mint(ok)
        assert secret.value == "ek_test"
        assert secret.expires_at == 1767000000
        assert secret.session["type"] == "realtime"
        assert "ek_test" not in repr(secret)


class TestFailures:
    def test_not_configured(self, settings):
        settings.OPENAI_API_KEY = ""
        with pytest.raises(upstream.NotConfigured):
            mint(ok)

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503])
    def test_error_status_carries_openais_message(self, status):
        def handler(request):
            return httpx.Response(status, json={"error": {"message": "Something specific.", "type": "x",
                                                          "param": None, "code": "some_code"}})

        with pytest.raises(upstream.UpstreamError) as caught:
            mint(handler)
        assert caught.value.status == status
        assert caught.value.code == "some_code"
        assert "Something specific." in str(caught.value)

    def test_error_without_a_body(self):
        with pytest.raises(upstream.UpstreamError, match="HTTP 502"):
            mint(lambda request: httpx.Response(502, text="<html>bad gateway</html>"))

    def test_openais_message_loses_the_key(self):
        def handler(request):
            message = f"Incorrect API key provided: {API_KEY}. Or masked: sk-proj-****cdef, ek_abc123."
            return httpx.Response(401, json={"error": {"message": message, "code": "invalid_api_key"}})

        with pytest.raises(upstream.UpstreamError) as caught:
            mint(handler)
        text = str(caught.value)
        assert API_KEY not in text
        assert "sk-" not in text and "ek_" not in text
        assert "Incorrect API key provided: [redacted]" in text

    def test_long_messages_are_cut(self):
        def handler(request):
            return httpx.Response(500, json={"error": {"message": "x" * 5000}})

        with pytest.raises(upstream.UpstreamError) as caught:
            mint(handler)
        assert len(str(caught.value)) <= upstream.MAX_MESSAGE_LENGTH

    @pytest.mark.parametrize(
        "response",
        [
            httpx.Response(200, text="<html>not json</html>"),
            httpx.Response(200, json=["a", "list"]),
            httpx.Response(200, json={"expires_at": 1}),  # no key
            httpx.Response(200, json={"value": "", "expires_at": 1}),
            httpx.Response(200, json={"value": "ek_x", "expires_at": "soon"}),
            httpx.Response(200, json={"value": "ek_x", "expires_at": True}),
            httpx.Response(200, json={"value": {"nested": 1}, "expires_at": 1}),
            httpx.Response(200, json={"client_secret": {"value": "ek_x", "expires_at": 1}}),  # the beta shape
        ],
    )
    def test_garbage(self, response):
        with pytest.raises(upstream.UpstreamError, match="could not be read"):
            mint(lambda request: response)

    @pytest.mark.parametrize("exception", [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.PoolTimeout])
    def test_timeouts(self, exception):
        def handler(request):
            raise exception("timed out", request=request)

        with pytest.raises(upstream.UpstreamTimeout):
            mint(handler)

    @pytest.mark.parametrize("exception", [httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError])
    def test_unreachable(self, exception):
        def handler(request):
            raise exception("connection refused", request=request)

        with pytest.raises(upstream.UpstreamError, match="could not be reached") as caught:
            mint(handler)
        assert caught.value.status is None
        assert caught.value.__cause__ is None and caught.value.__suppress_context__

    def test_a_mistyped_base_url(self, settings):
        settings.OPENAI_BASE_URL = "http://exa mple.com:port/v1"
        with pytest.raises(upstream.UpstreamError, match="could not be reached"):
            asyncio.run(upstream.create_client_secret(model="gpt-realtime-2.1", voice="marin",
                                                      client=httpx.AsyncClient()))

    def test_timeouts_come_from_settings(self, settings):
        settings.REALTIME_CONNECT_TIMEOUT, settings.REALTIME_READ_TIMEOUT = 1.5, 7.0
        seen = []
        mint(lambda request: seen.append(request.extensions["timeout"]) or ok(request))
        assert seen == [{"connect": 1.5, "read": 7.0, "write": 7.0, "pool": 7.0}]

    def test_nothing_secret_in_the_log(self, caplog):
        caplog.set_level(logging.DEBUG)
        for logger in ("httpx", "httpcore", "conversations"):
            caplog.set_level(logging.DEBUG, logger=logger)

        def handler(request):
            return httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {API_KEY}"}})

        with pytest.raises(upstream.UpstreamError):
            mint(handler)
        mint(ok)
        assert "OpenAI client_secrets failed: HTTP 401" in caplog.text
        assert API_KEY not in caplog.text
        assert "ek_test" not in caplog.text


class TestSharedClient:
    def test_one_client_per_loop(self):
        async def twice():
            return upstream.http_client(), upstream.http_client()

        first, second = asyncio.run(twice())
        assert first is second
        third, _ = asyncio.run(twice())
        assert third is not first  # a new loop cannot use the old loop's connections

    def test_closed_loops_are_forgotten(self):
        objects = PerLoop(object)
        for _ in range(5):
            asyncio.run(_get(objects))
        assert len(objects) == 0

    def test_objects_are_closed_with_their_loop(self):
        closed = []

        class Resource:
            async def aclose(self):
                closed.append(asyncio.get_running_loop())  # inside the loop, while it still runs

        objects = PerLoop(Resource)
        asyncio.run(_get(objects))
        assert len(closed) == 1 and len(objects) == 0

    def test_the_http_client_is_closed_with_its_loop(self):
        client = asyncio.run(_get_client())
        assert client.is_closed

    def test_a_loop_closed_without_shutdown_is_dropped_later(self):
        objects = PerLoop(object)
        loop = asyncio.new_event_loop()
        loop.run_until_complete(_get(objects))
        loop.close()  # no shutdown_asyncgens()
        asyncio.run(_get(objects))
        assert loop not in objects._objects

    def test_a_live_loop_keeps_its_object(self):
        objects = PerLoop(object)
        loop = asyncio.new_event_loop()
        try:
            mine = loop.run_until_complete(_get(objects))
            asyncio.run(_get(objects))  # another loop (another thread's, a test's) comes and goes
            assert loop.run_until_complete(_get(objects)) is mine
        finally:
            loop.close()


async def _get(objects):
    return objects.get()


async def _get_client():
    return upstream.http_client()


def test_system_check_catches_an_unknown_default_voice(settings):
    from conversations.checks import realtime_settings

    assert realtime_settings(None) == []
    settings.REALTIME_VOICE = "nova"
    (error,) = realtime_settings(None)
    assert error.id == "conversations.E001"
