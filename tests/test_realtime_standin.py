"""The offline Realtime stand-in answers like OpenAI's GA API, and fails when told to."""

import copy
import subprocess
import sys
import time

import httpx
import pytest

from tests.realtime_standin import DEFAULT_API_KEY, RealtimeStandIn

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
