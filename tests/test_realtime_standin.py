"""The offline Realtime stand-in answers like OpenAI's GA API, and fails when told to."""

import asyncio
import contextlib
import copy
import json
import subprocess
import sys
import time

import aiohttp
import httpx
import pytest

from tests.realtime_standin import DEFAULT_API_KEY, RealtimeStandIn, scripts
from tests.realtime_standin.clients import BrowserPeer, Sideband

GA_BODY = {
    "expires_after": {"anchor": "created_at", "seconds": 60},
    "session": {
        "type": "realtime",
        "model": "gpt-realtime-2.1",
        "instructions": "Be brief.",
        "audio": {
            "input": {
                "transcription": {"model": "gpt-4o-mini-transcribe"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500, "create_response": True},
            },
            "output": {"voice": "marin"},
        },
    },
}


@pytest.fixture
def standin(_realtime_standin_server):
    _realtime_standin_server.reset()
    yield _realtime_standin_server
    _realtime_standin_server.reset()


def mint(standin, body=GA_BODY, key=DEFAULT_API_KEY, **headers):
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(f"{standin.url}/realtime/client_secrets", json=body, headers=headers, timeout=5)


def changed(path, value):
    """GA_BODY with the value at `path` (dotted) replaced; value=... deletes it."""
    body = copy.deepcopy(GA_BODY)
    *parents, last = path.split(".")
    node = body
    for name in parents:
        node = node[name]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return body


def openai_error(response, status, code=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code is not None:
        assert error["code"] == code
    return error


class TestClientSecrets:
    def test_answers_like_openai(self, standin):
        before = int(time.time())
        response = mint(standin)
        assert response.status_code == 200
        body = response.json()
        assert body["value"].startswith("ek_")
        assert before + 60 <= body["expires_at"] <= int(time.time()) + 60
        session = body["session"]
        assert session["type"] == "realtime" and session["object"] == "realtime.session"
        assert session["audio"]["output"]["voice"] == "marin"
        assert session["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe"}
        assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 500
        assert standin.issued[body["value"]].session == session

    def test_records_requests(self, standin):
        mint(standin)
        (request,) = standin.requests
        assert request.method == "POST" and request.path == "/v1/realtime/client_secrets"
        assert request.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}"
        assert request.json == GA_BODY

    @pytest.mark.parametrize("detection", [None, {"type": "semantic_vad", "eagerness": "low"}])
    def test_other_turn_detection(self, standin, detection):
        assert mint(standin, changed("session.audio.input.turn_detection", detection)).status_code == 200

    def test_missing_key(self, standin):
        error = openai_error(mint(standin, key=None), 401)
        assert "didn't provide an API key" in error["message"]

    def test_wrong_key_is_quoted_masked(self, standin):
        error = openai_error(mint(standin, key="sk-wrong-0123456789abcdef"), 401, "invalid_api_key")
        assert "sk-wrong********cdef" in error["message"]
        assert "sk-wrong-0123456789abcdef" not in error["message"]

    @pytest.mark.parametrize(
        "body, param, code",
        [
            (changed("session.type", ...), "session.type", "missing_required_parameter"),
            (changed("session.type", "transcription"), "session.type", "invalid_value"),
            (changed("session", ...), "session", "missing_required_parameter"),
            (changed("session.audio.output.voice", "nova"), "session.audio.output.voice", "invalid_value"),
            (changed("session.model", "gpt-4o-realtime-preview-2024-12-17"), "session.model", "invalid_value"),
            (changed("session.audio.input.transcription.model", "nope"), "session.audio.input.transcription.model",
             "invalid_value"),
            (changed("session.audio.input.turn_detection", {"type": "vad"}), "session.audio.input.turn_detection.type",
             "invalid_value"),
            (changed("session.audio.input.turn_detection.threshold", 2), "session.audio.input.turn_detection.threshold",
             "invalid_value"),
            (changed("session.audio.input.turn_detection.create_response", "yes"),
             "session.audio.input.turn_detection.create_response", "invalid_type"),
            (changed("expires_after.seconds", 5), "expires_after.seconds", "invalid_value"),
            (changed("expires_after.anchor", "now"), "expires_after.anchor", "invalid_value"),
            (changed("session.colour", "blue"), "session.colour", "unknown_parameter"),
            (changed("session.audio", "loud"), "session.audio", "invalid_type"),
        ],
    )
    def test_invalid_bodies(self, standin, body, param, code):
        error = openai_error(mint(standin, body), 400, code)
        assert error["param"] == param

    @pytest.mark.parametrize(
        "body",
        [
            changed("session.voice", "marin"),
            changed("session.modalities", ["audio", "text"]),
            changed("session.input_audio_transcription", {"model": "whisper-1"}),
            changed("session.temperature", 0.8),
            {"model": "gpt-realtime-2.1", "voice": "marin"},  # the old /realtime/sessions body
        ],
    )
    def test_beta_shapes_are_refused(self, standin, body):
        openai_error(mint(standin, body), 400, "beta_api_shape_disabled")

    def test_beta_header_is_refused(self, standin):
        openai_error(mint(standin, **{"OpenAI-Beta": "realtime=v1"}), 400, "beta_api_shape_disabled")

    @pytest.mark.parametrize("path", ["/v1/realtime/sessions", "/v1/realtime?model=gpt-realtime-2.1"])
    def test_beta_routes_are_refused(self, standin, path):
        response = httpx.post(standin.origin + path, json={}, headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"})
        openai_error(response, 400, "beta_api_shape_disabled")

    def test_not_json(self, standin):
        response = httpx.post(f"{standin.url}/realtime/client_secrets", content=b"{oops",
                              headers={"Authorization": f"Bearer {DEFAULT_API_KEY}", "Content-Type": "application/json"})
        openai_error(response, 400)


class TestFailures:
    @pytest.mark.parametrize("status, code", [(401, "invalid_api_key"), (429, "insufficient_quota"), (500, None)])
    def test_fail_with_a_status(self, standin, status, code):
        standin.fail_next(status)
        openai_error(mint(standin), status, code)
        assert mint(standin).status_code == 200  # only the next one

    def test_times_and_message(self, standin):
        standin.fail_next(503, times=2, message="Overloaded.", code="busy")
        assert [openai_error(mint(standin), 503, "busy")["message"] for _ in range(2)] == ["Overloaded."] * 2
        assert mint(standin).status_code == 200

    def test_slow(self, standin):
        standin.fail_next("slow", delay=0.3)
        started = time.monotonic()
        assert mint(standin).status_code == 200
        assert time.monotonic() - started >= 0.3

    def test_slow_then_a_status(self, standin):
        standin.fail_next("slow", delay=0.1, status=500)
        assert mint(standin).status_code == 500

    def test_garbage(self, standin):
        standin.fail_next("garbage")
        response = mint(standin)
        assert response.status_code == 200
        with pytest.raises(ValueError):
            response.json()

    def test_incomplete(self, standin):
        standin.fail_next("incomplete")
        assert "value" not in mint(standin).json()

    def test_disconnect(self, standin):
        standin.fail_next("disconnect")
        with pytest.raises(httpx.HTTPError):
            mint(standin)

    def test_unknown_kind(self, standin):
        with pytest.raises(ValueError):
            standin.fail_next("explode")

    def test_control_api(self, standin):
        control = standin.origin + "/_standin"
        assert httpx.post(f"{control}/fail", json={"kind": "error", "status": 429}).json() == {"ok": True}
        openai_error(mint(standin), 429)
        listed = httpx.get(f"{control}/requests").json()
        assert [r["path"] for r in listed] == ["/v1/realtime/client_secrets"]
        assert listed[0]["body"] == GA_BODY
        assert httpx.post(f"{control}/fail", json={"kind": "nope"}).status_code == 400
        httpx.post(f"{control}/reset")
        assert standin.requests == []


def test_own_thread_on_a_free_port():
    with RealtimeStandIn(api_key="sk-other") as one, RealtimeStandIn(api_key="sk-other") as two:
        assert one.port != two.port
        assert mint(one, key="sk-other").status_code == 200
        assert two.requests == []
    with pytest.raises(httpx.HTTPError):
        mint(one, key="sk-other")  # stopped


def test_runs_on_its_own(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.realtime_standin", "--port", str(port), "--api-key", "sk-cli", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/realtime/client_secrets"
        for _ in range(100):
            try:
                response = httpx.post(url, json=GA_BODY, headers={"Authorization": "Bearer sk-cli"})
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert response.status_code == 200
        assert response.json()["value"].startswith("ek_")
    finally:
        process.terminate()
        process.wait(10)


# --- the unified interface, the sideband, hang-up ------------------------------------------------

SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def ephemeral_key(standin):
    return mint(standin).json()["value"]


def post_unified(standin, session_text, key=DEFAULT_API_KEY, sdp=SDP):
    files = {"session": (None, session_text, "application/json")}
    if sdp is not None:
        files["sdp"] = (None, sdp, "application/sdp")
    return httpx.post(f"{standin.url}/realtime/calls", files=files, headers={"Authorization": f"Bearer {key}"},
                      timeout=10)


@contextlib.asynccontextmanager
async def browser_call(standin, script=None):
    """A call made as the page makes it (ephemeral key), its `session.created` already received."""
    if script is not None:
        standin.calls.script_next(script)
    async with BrowserPeer() as browser:
        answer = await browser.call(standin.url, ephemeral_key(standin))
        assert answer.status == 201, answer.body
        assert (await browser.next_event())["type"] == "session.created"
        yield browser, standin.calls.find(answer.call_id)


def hang_up(standin, call_id, key=DEFAULT_API_KEY):
    return httpx.post(f"{standin.url}/realtime/calls/{call_id}/hangup", headers={"Authorization": f"Bearer {key}"},
                      timeout=10)


class TestUnifiedCalls:
    def test_server_posts_offer_and_session_with_the_real_key(self, standin):
        async def scenario():
            async with BrowserPeer() as browser:
                answer = await browser.call(standin.url, DEFAULT_API_KEY, session=GA_BODY["session"],
                                            headers={"OpenAI-Safety-Identifier": "user-hash"})
                assert answer.status == 201, answer.body
                assert answer.headers["Content-Type"].startswith("application/sdp")
                assert answer.body.startswith("v=0")
                assert answer.location.startswith("/v1/realtime/calls/rtc_")
                assert answer.headers["Access-Control-Expose-Headers"] == "Location"
                created = await browser.next_event()  # the peer really answers on oai-events
                assert created["type"] == "session.created"
                assert created["session"]["instructions"] == "Be brief."
                assert created["session"]["audio"]["output"]["voice"] == "marin"
                call = standin.calls.find(answer.call_id)
                assert call.unified and call.safety_identifier == "user-hash"

        run(scenario())

    def test_ephemeral_key_is_refused(self, standin):
        response = post_unified(standin, json.dumps(GA_BODY["session"]), key=ephemeral_key(standin))
        assert "standard API key" in openai_error(response, 401, "invalid_api_key")["message"]
        assert standin.calls.calls == []

    def test_wrong_key_is_refused(self, standin):
        openai_error(post_unified(standin, json.dumps(GA_BODY["session"]), key="sk-wrong-0123456789abcdef"), 401,
                     "invalid_api_key")

    @pytest.mark.parametrize(
        "session_text, param, code",
        [
            ("{oops", "session", "invalid_json"),
            (json.dumps({"model": "gpt-realtime-2.1"}), "session.type", "missing_required_parameter"),
            (json.dumps({"type": "transcription", "model": "gpt-realtime-2.1"}), "session.type", "invalid_value"),
            (json.dumps({"type": "realtime", "model": "gpt-realtime-2.1", "voice": "marin"}), None,
             "beta_api_shape_disabled"),
        ],
    )
    def test_bad_session_is_refused(self, standin, session_text, param, code):
        error = openai_error(post_unified(standin, session_text), 400, code)
        assert error["param"] == param
        assert standin.calls.calls == []

    def test_sdp_part_is_required(self, standin):
        error = openai_error(post_unified(standin, json.dumps(GA_BODY["session"]), sdp=None), 400,
                             "missing_required_parameter")
        assert error["param"] == "sdp"


class TestSideband:
    def test_gets_the_data_channels_events_from_the_moment_it_attaches(self, standin):
        async def scenario():
            async with (
                browser_call(standin, [{"gate": "attached"}] + scripts.conversation(2)) as (browser, call),
                Sideband(standin.url, call.id, DEFAULT_API_KEY) as sideband,
            ):
                call.release("attached")
                await asyncio.to_thread(call.wait_finished)
                count = len(call.sent) - 1  # all but session.created, sent before the attach
                on_sideband = [await sideband.next_event() for _ in range(count)]
                on_channel = [await browser.next_event() for _ in range(count)]
            assert count > 20
            assert on_sideband == on_channel == call.sent[1:]  # same events, order and event_ids
            assert "session.created" not in [event["type"] for event in on_sideband]

        run(scenario())

    def test_session_update_is_answered_with_session_updated(self, standin):
        async def scenario():
            async with (
                browser_call(standin, [{"gate": "never"}]) as (browser, call),
                Sideband(standin.url, call.id, DEFAULT_API_KEY) as sideband,
            ):
                await sideband.send({"type": "session.update",
                                     "session": {"type": "realtime", "instructions": "Answer in French."}})
                updated = await sideband.next_event()
                assert updated["type"] == "session.updated"
                assert updated["session"]["instructions"] == "Answer in French."
                assert updated["session"]["audio"]["output"]["voice"] == "marin"  # the rest is kept
                assert await browser.next_event() == updated  # one stream: the page sees it too
                assert call.received_from("sideband")[0]["type"] == "session.update"
                assert call.received_from("data_channel") == []

        run(scenario())

    def test_client_events_drive_the_call_like_the_data_channels(self, standin):
        async def scenario():
            async with browser_call(standin) as (browser, call):  # the default script: greeting, then replies
                await browser.events_until("response.done")
                async with Sideband(standin.url, call.id, DEFAULT_API_KEY) as sideband:
                    await sideband.send({"type": "conversation.item.create", "item": {
                        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "From the server"}]}})
                    await sideband.send({"type": "response.create"})
                    events = await sideband.events_until("response.done")
                    assert 'You wrote: \"From the server\"' in events[-1]["response"]["output"][0]["content"][0]["transcript"]
                    assert await browser.events_until("response.done") == events

        run(scenario())

    def test_response_cancel_stops_the_answer(self, standin):
        async def scenario():
            async with (
                browser_call(standin, scripts.barge_in()) as (browser, call),
                Sideband(standin.url, call.id, DEFAULT_API_KEY) as sideband,
            ):
                await browser.events_until("response.output_audio_transcript.delta")
                await sideband.send({"type": "response.cancel"})
                events = await sideband.events_until("response.done")
                assert events[-1]["response"]["status"] == "cancelled"

        run(scenario())

    def test_ephemeral_key_is_refused_after_a_moment(self, standin, monkeypatch):
        monkeypatch.setattr(standin.sideband, "ephemeral_grace", 0.3)

        async def scenario():
            async with browser_call(standin, [{"gate": "never"}]) as (browser, call):
                started = time.monotonic()
                async with Sideband(standin.url, call.id, ephemeral_key(standin)) as sideband:  # accepted...
                    call.send({"type": "rate_limits.updated", "rate_limits": []})
                    error = await sideband.next_event()  # ...then refused, without the call's events
                    assert error["type"] == "error" and error["error"]["code"] == "invalid_api_key"
                    assert await sideband.next_event() is None
                    assert sideband.close_code == 1008
                    assert time.monotonic() - started >= 0.3
                assert (await browser.next_event())["type"] == "rate_limits.updated"
                assert not call.closed.is_set()

        run(scenario())

    def test_wrong_key_or_call_is_refused_at_the_handshake(self, standin):
        async def scenario():
            async with browser_call(standin, [{"gate": "never"}]) as (_browser, call):
                for call_id, key, status in [(call.id, "sk-wrong-0123456789abcdef", 401), (call.id, None, 401),
                                             ("rtc_unknown", DEFAULT_API_KEY, 404)]:
                    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                        await Sideband(standin.url, call_id, key).open()
                    assert refused.value.status == status
                call.close()
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # an ended call
                    await Sideband(standin.url, call.id, DEFAULT_API_KEY).open()
                assert refused.value.status == 404

        run(scenario())
        response = httpx.get(f"{standin.url}/realtime", params={"call_id": "rtc_unknown"},
                             headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"})
        openai_error(response, 404, "call_id_not_found")


class TestHangup:
    def test_hangup_closes_the_peer_and_the_sideband(self, standin):
        async def scenario():
            async with (
                browser_call(standin, [{"gate": "never"}]) as (browser, call),
                Sideband(standin.url, call.id, DEFAULT_API_KEY) as sideband,
            ):
                openai_error(hang_up(standin, call.id, key=ephemeral_key(standin)), 401)  # the real key only
                assert not call.closed.is_set()
                response = await asyncio.to_thread(hang_up, standin, call.id)
                assert response.status_code == 200
                assert await sideband.next_event() is None
                assert sideband.close_code == 1000
                await asyncio.wait_for(browser.channel_closed.wait(), 10)
                assert call.closed.is_set() and call.ended_by == "hangup"
                assert call.pc.connectionState == "closed"

        run(scenario())

    def test_unknown_call(self, standin):
        openai_error(hang_up(standin, "rtc_unknown"), 404, "call_id_not_found")


class TestSidebandFaults:
    def test_refuse_an_attach(self, standin):
        async def scenario():
            async with browser_call(standin, [{"gate": "never"}]) as (_browser, call):
                control = await asyncio.to_thread(httpx.post, f"{standin.origin}/_standin/fail",
                                                  json={"route": "sideband", "kind": "error"})
                assert control.json() == {"ok": True}
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await Sideband(standin.url, call.id, DEFAULT_API_KEY).open()
                assert refused.value.status == 404
                async with Sideband(standin.url, call.id, DEFAULT_API_KEY):  # only the next one
                    pass

        run(scenario())
        standin.fail_next(route="sideband")
        response = httpx.get(f"{standin.url}/realtime", params={"call_id": "rtc_any"},
                             headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"})
        openai_error(response, 404, "call_id_not_found")

    def test_drop_the_sideband_mid_call(self, standin):
        async def scenario():
            async with browser_call(standin, [{"gate": "never"}]) as (_browser, call):
                standin.fail_next("disconnect", route="sideband", delay=0.3)
                async with Sideband(standin.url, call.id, DEFAULT_API_KEY) as sideband:
                    call.send({"type": "rate_limits.updated", "rate_limits": []})
                    assert (await sideband.next_event())["type"] == "rate_limits.updated"
                    assert await sideband.next_event() is None  # dropped, no close frame
                    assert sideband.close_code != 1000
                assert not call.closed.is_set()  # the call goes on
                async with Sideband(standin.url, call.id, DEFAULT_API_KEY) as again:
                    call.send({"type": "rate_limits.updated", "rate_limits": [{"name": "tokens"}]})
                    assert (await again.next_event())["rate_limits"] == [{"name": "tokens"}]

        run(scenario())

    def test_delay_the_attach(self, standin):
        async def scenario():
            async with browser_call(standin, [{"gate": "never"}]) as (_browser, call):
                standin.fail_next("slow", route="sideband", delay=0.4)
                started = time.monotonic()
                async with Sideband(standin.url, call.id, DEFAULT_API_KEY) as sideband:
                    assert time.monotonic() - started >= 0.4
                    call.send({"type": "rate_limits.updated", "rate_limits": []})
                    assert (await sideband.next_event())["type"] == "rate_limits.updated"

        run(scenario())

    def test_unknown_route_is_refused(self, standin):
        with pytest.raises(ValueError):
            standin.fail_next(route="sidebands")


def test_requests_list_attaches_and_hangups(standin):
    async def scenario():
        async with browser_call(standin, [{"gate": "never"}]) as (_browser, call):
            async with Sideband(standin.url, call.id, DEFAULT_API_KEY):
                await asyncio.to_thread(hang_up, standin, call.id)
            return call.id

    call_id = run(scenario())
    listed = httpx.get(f"{standin.origin}/_standin/requests").json()
    assert [(r["method"], r["path"], r["query"]) for r in listed[-2:]] == [
        ("GET", "/v1/realtime", f"call_id={call_id}"),
        ("POST", f"/v1/realtime/calls/{call_id}/hangup", ""),
    ]
    assert listed[-2]["headers"]["Authorization"] == f"Bearer {DEFAULT_API_KEY}"


class TestBareCalls:
    """Calls without WebRTC, for benchmarks that need hundreds of calls (bench/witness.py)."""

    def test_a_bare_call_plays_its_script_to_its_sideband_and_ends(self, standin):
        script = [{"gate": "go"}, *scripts.assistant_turn("item_a", "resp_a", "Hello there."), {"close": "peer"}]
        made = httpx.post(f"{standin.origin}/_standin/calls", json={"count": 2, "script": script}, timeout=5)
        assert made.status_code == 201
        first, second = made.json()["call_ids"]
        assert first.startswith("rtc_") and first != second

        async def scenario():
            async with Sideband(standin.url, first, DEFAULT_API_KEY) as sideband:
                released = await asyncio.to_thread(httpx.post, f"{standin.origin}/_standin/calls/release",
                                                   json={"gate": "go", "call_ids": [first]})
                assert released.json() == {"released": 1}
                events = await sideband.events_until("response.done")
                assert [e["type"] for e in events if e["type"].endswith(".done")][-1] == "response.done"
                assert "session.created" not in [e["type"] for e in events]
                assert await sideband.next_event() is None  # the script's close ends the call
                assert sideband.close_code == 1000
            # The other call waits at its gate; it is attachable and can be hung up like any call.
            async with Sideband(standin.url, second, DEFAULT_API_KEY) as other:
                assert (await asyncio.to_thread(hang_up, standin, second)).status_code == 200
                assert await other.next_event() is None

        run(scenario())
        assert standin.calls.find(first).ended_by == "script"
        assert standin.calls.find(second).ended_by == "hangup"
        assert standin.calls.find(first).pc is None  # no WebRTC: no SDP, no media

    def test_bad_requests_for_bare_calls_are_refused(self, standin):
        refused = httpx.post(f"{standin.origin}/_standin/calls", json={"count": 0}, timeout=5)
        assert refused.status_code == 400
        assert standin.calls.calls == []
        for body in ({}, {"gate": 3}, {"gate": "go", "call_ids": 5}):
            refused = httpx.post(f"{standin.origin}/_standin/calls/release", json=body, timeout=5)
            assert refused.status_code == 400 and "gate name" in refused.json()["error"]
